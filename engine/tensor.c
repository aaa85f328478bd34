/* tensor.c — tensor views and the activation arena. */
#include "tensor.h"
#include "cb-common.h"

#include <string.h>

gboolean
cb_tensor_init (CbTensor *t, float *data, int ndim, const int64_t *shape, GError **error)
{
  if (ndim < 0 || ndim > CB_TENSOR_MAX_DIMS) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "tensor rank %d outside 0..%d", ndim, CB_TENSOR_MAX_DIMS);
    return FALSE;
  }
  guint64 numel = 1, bytes;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !cb_mul_u64 (numel, (guint64) shape[i], &numel)) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "tensor dimension %d is %" G_GINT64_FORMAT " (negative or overflowing)", i,
                   shape[i]);
      return FALSE;
    }
  }
  if (!cb_mul_u64 (numel, sizeof (float), &bytes) || bytes > G_MAXSIZE) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "tensor of %" G_GUINT64_FORMAT " floats does not fit in memory", numel);
    return FALSE;
  }
  memset (t, 0, sizeof *t);
  t->data = data;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  return TRUE;
}

guint64
cb_tensor_numel (const CbTensor *t)
{
  guint64 n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (guint64) t->shape[i];  /* checked in cb_tensor_init */
  return n;
}

/* Round up to the arena alignment; FALSE on overflow. */
static gboolean
align_up (guint64 bytes, guint64 *out)
{
  if (!cb_add_u64 (bytes, CB_ARENA_ALIGN - 1, out))
    return FALSE;
  *out &= ~(guint64) (CB_ARENA_ALIGN - 1);
  return TRUE;
}

CbArena *
cb_arena_new (gsize bytes, GError **error)
{
  guint64 size;
  if (!align_up (bytes, &size) || size > G_MAXSIZE) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "arena of %" G_GSIZE_FORMAT
                 " bytes is too large", bytes);
    return NULL;
  }
  void *block = NULL;
  if (size > 0 && posix_memalign (&block, CB_ARENA_ALIGN, size) != 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "cannot allocate an arena of %" G_GUINT64_FORMAT
                 " bytes", size);
    return NULL;
  }
  CbArena *arena = g_new0 (CbArena, 1);
  arena->base = block;
  arena->size = size;
  return arena;
}

void
cb_arena_free (CbArena *arena)
{
  if (!arena)
    return;
  free (arena->base);
  g_free (arena);
}

float *
cb_arena_alloc (CbArena *arena, guint64 n)
{
  guint64 bytes, end;
  if (!cb_mul_u64 (n, sizeof (float), &bytes) || !align_up (bytes, &bytes)
      || !cb_add_u64 (arena->used, bytes, &end)) {
    arena->high_water = G_MAXSIZE;
    return NULL;
  }
  if (end > G_MAXSIZE) {
    arena->high_water = G_MAXSIZE;
    return NULL;
  }
  arena->high_water = MAX (arena->high_water, (gsize) end);
  if (end > arena->size)
    return NULL;
  float *p = (float *) (arena->base + arena->used);
  arena->used = end;
  return p;
}

gboolean
cb_arena_tensor (CbArena *arena, CbTensor *t, int ndim, const int64_t *shape, GError **error)
{
  if (!cb_tensor_init (t, NULL, ndim, shape, error))
    return FALSE;
  t->data = cb_arena_alloc (arena, cb_tensor_numel (t));
  if (!t->data) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "arena of %" G_GSIZE_FORMAT " bytes is full (%" G_GSIZE_FORMAT
                 " used, %" G_GUINT64_FORMAT " floats requested)", arena->size, arena->used,
                 cb_tensor_numel (t));
    return FALSE;
  }
  return TRUE;
}

void
cb_arena_reset (CbArena *arena, gsize mark)
{
  g_return_if_fail (mark <= arena->used);
  arena->used = mark;
}
