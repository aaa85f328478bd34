/* weights-view.c — see weights-view.h. */
#include "weights-view.h"

#include "cb-common.h"
#include "ops.h"
#include "parallel.h"

#include <math.h>
#include <stdarg.h>

void
cb_weight_loader_init (CbWeightLoader *ld, const CbSafetensors *st, GPtrArray *owned,
                       GError **error)
{
  ld->st = st;
  ld->owned = owned;
  ld->error = error;
  ld->ok = TRUE;
}

static const float *
get (CbWeightLoader *ld, const char *name, int ndim, const int64_t *dims)
{
  float *owned = NULL;
  const float *p = cb_safetensors_get_f32 (ld->st, name, ndim, dims, &owned, ld->error);
  if (!p) {
    ld->ok = FALSE;
    return NULL;
  }
  if (owned)
    g_ptr_array_add (ld->owned, owned);
  return p;
}

static const float *
get_va (CbWeightLoader *ld, int ndim, const int64_t *dims, const char *fmt, va_list ap)
{
  if (!ld->ok)
    return NULL;
  char *name = g_strdup_vprintf (fmt, ap);
  const float *p = get (ld, name, ndim, dims);
  g_free (name);
  return p;
}

const float *
cb_wl_tensor (CbWeightLoader *ld, int ndim, const int64_t *dims, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  const float *p = get_va (ld, ndim, dims, fmt, ap);
  va_end (ap);
  return p;
}

const float *
cb_wl_vec (CbWeightLoader *ld, int64_t n, const char *fmt, ...)
{
  int64_t d[1] = { n };
  va_list ap;
  va_start (ap, fmt);
  const float *p = get_va (ld, 1, d, fmt, ap);
  va_end (ap);
  return p;
}

const float *
cb_wl_mat (CbWeightLoader *ld, int64_t rows, int64_t cols, const char *fmt, ...)
{
  int64_t d[2] = { rows, cols };
  va_list ap;
  va_start (ap, fmt);
  const float *p = get_va (ld, 2, d, fmt, ap);
  va_end (ap);
  return p;
}

const float *
cb_wl_3d (CbWeightLoader *ld, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...)
{
  int64_t d[3] = { d0, d1, d2 };
  va_list ap;
  va_start (ap, fmt);
  const float *p = get_va (ld, 3, d, fmt, ap);
  va_end (ap);
  return p;
}

gboolean
cb_wl_linear (CbWeightLoader *ld, const float **weight, const float **b, int64_t out, int64_t in,
              gboolean bias, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  *weight = cb_wl_mat (ld, out, in, "%s.weight", prefix);
  *b = bias ? cb_wl_vec (ld, out, "%s.bias", prefix) : NULL;
  g_free (prefix);
  return ld->ok;
}

const float *
cb_wl_weight_norm (CbWeightLoader *ld, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...)
{
  if (!ld->ok)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  char *gname = g_strconcat (prefix, ".parametrizations.weight.original0", NULL);
  char *vname = g_strconcat (prefix, ".parametrizations.weight.original1", NULL);
  int64_t gd[3] = { d0, 1, 1 }, vd[3] = { d0, d1, d2 };
  const float *g = get (ld, gname, 3, gd);
  const float *v = g ? get (ld, vname, 3, vd) : NULL;
  float *w = NULL;
  if (v) {
    const gsize row = (gsize) (d1 * d2);
    w = g_new (float, (gsize) d0 * row);
    for (int64_t i = 0; i < d0 && ld->ok; i++) {
      const float *vi = v + (gsize) i * row;
      double ss = 0;
      for (gsize j = 0; j < row; j++)
        ss += (double) vi[j] * vi[j];
      if (!(ss > 0) || !isfinite (ss)) {
        g_set_error (ld->error, CB_ERROR, CB_ERROR_FORMAT,
                     "tensor '%s': slice %" G_GINT64_FORMAT " has norm %g, so the weight-normed "
                     "weight is undefined", vname, i, sqrt (ss));
        ld->ok = FALSE;
        break;
      }
      const float s = (float) (g[i] / sqrt (ss));
      for (gsize j = 0; j < row; j++)
        w[(gsize) i * row + j] = vi[j] * s;
    }
    if (ld->ok)
      g_ptr_array_add (ld->owned, w);
    else
      g_clear_pointer (&w, g_free);
  }
  g_free (gname);
  g_free (vname);
  g_free (prefix);
  return w;
}

typedef struct {
  guint16     *out;
  const float *inp;
} Bf16Job;

static void
bf16_body (void *ctx, int64_t begin, int64_t end)
{
  Bf16Job *j = ctx;
  cb_f32_to_bf16 (j->out + begin, j->inp + begin, (size_t) (end - begin));
}

const guint16 *
cb_bf16_copy (GPtrArray *owned, const float *values, gsize n)
{
  guint16 *copy = g_new (guint16, n);
  Bf16Job job = { copy, values };
  cb_parallel_for ((int64_t) n, CB_PARALLEL_GRAIN, bf16_body, &job);
  g_ptr_array_add (owned, copy);
  return copy;
}
