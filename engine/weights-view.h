/* weights-view.h — typed views of checkpoint tensors for the model structs (T3, S3Gen, HiFT, ...).
 *
 * The engine validates every tensor's name, dtype and shape against the config first
 * (weights-layout.c); a model's *_weights_init then takes its pointers through a CbWeightLoader,
 * which checks each shape again, so a weights struct can never point at a tensor of another size.
 * F32 tensors are zero-copy views into the mapping; F16/BF16 ones are widened once, and
 * weight-normed convolutions folded once, into buffers kept in the caller's `owned` array.
 *
 * Errors are sticky: after the first failure every call returns NULL and the first GError is kept,
 * so an init function can load everything and test `ld.ok` once at the end. */
#pragma once

#include "safetensors.h"

G_BEGIN_DECLS

typedef struct {
  const CbSafetensors *st;
  GPtrArray           *owned;  /* g_free'd buffers the views may point into */
  GError             **error;
  gboolean             ok;
} CbWeightLoader;

void cb_weight_loader_init (CbWeightLoader *ld, const CbSafetensors *st, GPtrArray *owned,
                            GError **error);

/* The tensor named by the printf-style format, of shape dims[0..ndim); NULL on error. */
const float *cb_wl_tensor (CbWeightLoader *ld, int ndim, const int64_t *dims, const char *fmt,
                           ...) G_GNUC_PRINTF (4, 5);
const float *cb_wl_vec (CbWeightLoader *ld, int64_t n, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
const float *cb_wl_mat (CbWeightLoader *ld, int64_t rows, int64_t cols, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);
/* nn.Linear(in, out) named by its module prefix: `<prefix>.weight` [out, in] and, when `bias`,
 * `<prefix>.bias` [out] (else *b = NULL). FALSE on error. */
gboolean cb_wl_linear (CbWeightLoader *ld, const float **weight, const float **b, int64_t out,
                       int64_t in, gboolean bias, const char *fmt, ...) G_GNUC_PRINTF (7, 8);
/* A rank-3 tensor (Conv1d weight [OC, C/groups, K], ConvTranspose1d [C, OC, K]). */
const float *cb_wl_3d (CbWeightLoader *ld, int64_t d0, int64_t d1, int64_t d2, const char *fmt,
                       ...) G_GNUC_PRINTF (5, 6);

/* A convolution under torch.nn.utils.parametrizations.weight_norm (dim 0), named by its module
 * prefix: reads `<prefix>.parametrizations.weight.original0` (g, [d0, 1, 1]) and `.original1`
 * (v, [d0, d1, d2]) and returns the folded weight w[i] = g[i] · v[i] / ‖v[i]‖ (norm over dims 1, 2
 * per slice i of dim 0, as torch._weight_norm; for a ConvTranspose1d dim 0 is its input channel).
 * The norm is accumulated in double. A zero slice gives a zero row (torch would give NaN): the
 * loader reports it as an error instead, naming the tensor. */
const float *cb_wl_weight_norm (CbWeightLoader *ld, int64_t d0, int64_t d1, int64_t d2,
                                const char *fmt, ...) G_GNUC_PRINTF (5, 6);

/* A BF16 copy (round to nearest even) of n F32 values, added to `owned` (converted on all threads:
 * a full model has hundreds of millions of values to convert at load). */
const guint16 *cb_bf16_copy (GPtrArray *owned, const float *values, gsize n);

G_END_DECLS
