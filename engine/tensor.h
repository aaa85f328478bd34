/* tensor.h — a minimal float tensor view and a bump-allocated arena for activations.
 *
 * Model code sizes one arena per stream when the engine is built and takes every activation buffer
 * from it with cb_arena_alloc, rewinding with cb_arena_mark/cb_arena_reset, so nothing is allocated
 * per token. An arena also records its high-water mark, including requests it had to refuse, so a
 * builder can run the largest case once and learn the exact size it needs. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define CB_TENSOR_MAX_DIMS 4
/* Alignment of every arena allocation (a cache line; AVX-512 loads). */
#define CB_ARENA_ALIGN 64

/* A view of contiguous row-major F32 data; does not own data. */
typedef struct {
  float  *data;
  int     ndim;
  int64_t shape[CB_TENSOR_MAX_DIMS];
} CbTensor;

/* Fill t with a view of data; FALSE (CB_ERROR_INVALID_ARGUMENT) if ndim is out of range, a
 * dimension is negative or the element count overflows. */
gboolean cb_tensor_init (CbTensor *t, float *data, int ndim, const int64_t *shape, GError **error);
/* Element count (product of the shape; 1 for ndim 0). */
guint64  cb_tensor_numel (const CbTensor *t);

typedef struct {
  guint8 *base;       /* CB_ARENA_ALIGN-aligned block of `size` bytes */
  gsize   size;
  gsize   used;       /* bytes handed out (the bump pointer) */
  gsize   high_water; /* largest `used` ever requested, refused requests included */
} CbArena;

/* One block of `bytes` (rounded up to CB_ARENA_ALIGN); NULL with CB_ERROR on failure. */
CbArena *cb_arena_new (gsize bytes, GError **error);
void     cb_arena_free (CbArena *arena);

/* n floats, CB_ARENA_ALIGN-aligned, uninitialised; NULL when the arena is full (or n overflows),
 * which is a sizing bug in the caller: the high-water mark still grows by the request. */
float   *cb_arena_alloc (CbArena *arena, guint64 n);
/* A tensor of the given shape taken from the arena; FALSE with CB_ERROR when it does not fit. */
gboolean cb_arena_tensor (CbArena *arena, CbTensor *t, int ndim, const int64_t *shape,
                          GError **error);

/* The current position, to rewind to later. */
static inline gsize cb_arena_mark (const CbArena *arena) { return arena->used; }
/* Release everything allocated since `mark` (0 releases all). */
void     cb_arena_reset (CbArena *arena, gsize mark);

G_END_DECLS
