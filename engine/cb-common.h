/* cb-common.h — error domain, element types and small helpers shared by every engine file.
 *
 * The engine is plain C + GLib: no GStreamer types. Every function that can fail on untrusted
 * input takes a GError ** and returns FALSE/NULL; messages name the file, the item and what was
 * expected versus found. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stddef.h>

G_BEGIN_DECLS

#define CB_ERROR (cb_error_quark ())
GQuark cb_error_quark (void);

typedef enum {
  CB_ERROR_NOT_FOUND,       /* a model file or directory does not exist */
  CB_ERROR_IO,              /* open/map/read failed */
  CB_ERROR_FORMAT,          /* the file's bytes are malformed */
  CB_ERROR_MISMATCH,        /* well-formed, but not what the model config expects (name, dtype, shape) */
  CB_ERROR_UNSUPPORTED,     /* a valid feature of the format that this reader does not implement */
  CB_ERROR_INVALID_ARGUMENT,/* bad value passed by the caller (text, parameters) */
  CB_ERROR_CANCELLED,       /* interrupted by the caller */
  CB_ERROR_NOT_IMPLEMENTED, /* a part of the engine that is not written yet */
} CbError;

/* Element types as they appear in safetensors headers and torch storages. */
typedef enum {
  CB_DTYPE_F32,
  CB_DTYPE_F16,
  CB_DTYPE_BF16,
  CB_DTYPE_F64,
  CB_DTYPE_I64,
  CB_DTYPE_I32,
  CB_DTYPE_I16,
  CB_DTYPE_I8,
  CB_DTYPE_U8,
  CB_DTYPE_BOOL,
  CB_DTYPE_COUNT
} CbDType;

/* Byte size of one element; 0 for an invalid value. */
gsize        cb_dtype_size (CbDType dt);
/* Name as written in safetensors ("F32", "BF16", ...). */
const char  *cb_dtype_name (CbDType dt);
/* Parse a safetensors dtype name; FALSE if unknown. */
gboolean     cb_dtype_from_name (const char *name, CbDType *out);

/* Largest rank any loader accepts. */
#define CB_MAX_DIMS 8

/* Multiply a and b into *out; FALSE on uint64 overflow. Every size computed from file data goes
 * through these, never a bare `*`. */
static inline gboolean
cb_mul_u64 (guint64 a, guint64 b, guint64 *out)
{
  if (a != 0 && b > G_MAXUINT64 / a)
    return FALSE;
  *out = a * b;
  return TRUE;
}

static inline gboolean
cb_add_u64 (guint64 a, guint64 b, guint64 *out)
{
  if (b > G_MAXUINT64 - a)
    return FALSE;
  *out = a + b;
  return TRUE;
}

/* Unicode White_Space property (what Rust's regex \s and char::is_whitespace test; Python's
 * str.split() adds U+001C..U+001F to it). */
gboolean cb_unichar_is_white_space (gunichar c);

/* Half-precision conversions (exact; round-to-nearest-even is not needed for widening). */
float cb_f16_to_f32 (uint16_t h);
float cb_bf16_to_f32 (uint16_t b);

/* How far `ours` is from a golden `ref` (n values): max|ours − ref| / max|ref|, the absolute
 * difference when ref is all zero. A non-finite value on either side gives INFINITY, so neither a
 * NaN of ours nor a damaged reference can pass a tolerance. Shared by the Check suites and
 * `chatterbox-cli --check-golden` so both judge by the same measure. */
double cb_rel_max_err (const float *ours, const float *ref, gsize n);

/* cos ∠(a, b) of two arrays of n values; with `centred`, of the two with their means removed (a
 * log-mel around −5 has a plain cosine near 1 whatever its shape). Accumulated in double. */
double cb_cosine (const float *a, const float *b, gsize n, gboolean centred);

G_END_DECLS
