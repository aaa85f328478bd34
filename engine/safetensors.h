/* safetensors.h — memory-mapped reader (and a small writer) for the safetensors format.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the first byte after the
 * header) plus an optional "__metadata__" object of strings; then the raw little-endian, row-major
 * tensor data.
 *
 * The whole header is validated when the file is opened (every dtype known, every shape consistent
 * with its byte range, every range inside the file, no overlaps, no duplicate names), so a
 * CbSafetensors that exists can be trusted; lookups then only compare against what the caller
 * expects. Tensor data are views into the mapping and live as long as the CbSafetensors. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

typedef struct _CbSafetensors CbSafetensors;

typedef struct {
  const char    *name;
  CbDType        dtype;
  int            ndim;                /* 0 for a scalar */
  int64_t        shape[CB_MAX_DIMS];  /* PyTorch order; entries past ndim are 0 */
  guint64        numel;               /* product of shape (1 for a scalar) */
  const guint8  *data;                /* nbytes bytes, little-endian; may be unaligned */
  gsize          nbytes;
} CbTensorInfo;

/* Wildcards for cb_safetensors_get: any dtype, any rank, any extent of one dimension. */
#define CB_DTYPE_ANY  CB_DTYPE_COUNT
#define CB_NDIM_ANY   (-1)
#define CB_DIM_ANY    ((int64_t) -1)

/* Map and validate `path`. Errors: CB_ERROR_NOT_FOUND (no such file), CB_ERROR_IO (cannot map),
 * CB_ERROR_FORMAT (malformed header or ranges), CB_ERROR_UNSUPPORTED (a dtype this reader does not
 * know, e.g. "F8_E4M3"). */
CbSafetensors      *cb_safetensors_open (const char *path, GError **error);
void                cb_safetensors_free (CbSafetensors *st);

const char         *cb_safetensors_path (const CbSafetensors *st);
/* Tensors in header order. */
guint               cb_safetensors_n_tensors (const CbSafetensors *st);
const CbTensorInfo *cb_safetensors_nth (const CbSafetensors *st, guint i);
/* NULL if absent. */
const CbTensorInfo *cb_safetensors_find (const CbSafetensors *st, const char *name);
/* A "__metadata__" value, NULL if absent. */
const char         *cb_safetensors_metadata (const CbSafetensors *st, const char *key);

/* Lookup with expectation; records the tensor as used (cb_safetensors_check_all_used). `dtype`
 * may be CB_DTYPE_ANY; `ndim` may be CB_NDIM_ANY (then `shape` is ignored); `shape` may be NULL
 * (rank checked only) and its entries may be CB_DIM_ANY. A missing tensor or a different dtype,
 * rank or shape is CB_ERROR_MISMATCH naming the file, the tensor, what was expected and what was
 * found. */
const CbTensorInfo *cb_safetensors_get (const CbSafetensors *st, const char *name, CbDType dtype,
                                        int ndim, const int64_t *shape, GError **error);

/* The tensor as F32 whatever float type it is stored in (F32, F16, BF16, F64). Returns a view into
 * the mapping when it is F32 and 4-byte aligned (*owned = NULL); otherwise converts or copies into a
 * new buffer, stores it in *owned as well, and the caller frees it with g_free. Meant for build
 * time, never per token. Same checks as cb_safetensors_get; an integer tensor is a mismatch. */
const float        *cb_safetensors_get_f32 (const CbSafetensors *st, const char *name, int ndim,
                                            const int64_t *shape, float **owned, GError **error);

/* Every tensor the file holds must have been looked up with cb_safetensors_get or _get_f32
 * (successfully or not), except names matching one of the glob patterns in `ignore` (`*` and `?`,
 * NULL-terminated list, may be NULL). Model builders call this last, so that a file with tensors
 * the code does not know (another variant, a renamed key) is a CB_ERROR_MISMATCH naming the first
 * few, as upstream's strict load_state_dict would fail, instead of being silently ignored. */
gboolean            cb_safetensors_check_all_used (const CbSafetensors *st,
                                                   const char *const *ignore, GError **error);

/* Write `n` tensors (laid out in the given order, each from info->data/nbytes) and optional
 * metadata (NULL-terminated key, value, key, value, ... list; may be NULL) to `path` as a
 * safetensors file; the header is padded with spaces to an 8-byte boundary as the official writer
 * does. The file is written to a temporary name and renamed, so a reader never sees half a file.
 * Errors: CB_ERROR_INVALID_ARGUMENT for inconsistent tensors, CB_ERROR_IO for write failures. */
gboolean            cb_safetensors_write (const char *path, guint n, const CbTensorInfo *tensors,
                                          const char *const *metadata, GError **error);

/* "[8194, 1024]" into buf (for messages); returns buf. */
char               *cb_format_shape (char *buf, gsize size, int ndim, const int64_t *shape);

G_END_DECLS
