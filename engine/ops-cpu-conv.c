/* ops-cpu-conv.c — 1-D convolution and transposed convolution on the CPU, channels-first.
 *
 * Both are a GEMM plus a data rearrangement: conv1d unfolds the input into columns (im2col) so the
 * weight [OC, C·K] multiplies it directly; the transposed conv multiplies first (weight^T · input
 * gives every (output channel, tap) contribution) and folds the columns back by overlap-add
 * (col2im). Depthwise convolutions have nothing to share between channels and run as a direct loop. */
#include "ops.h"
#include "parallel.h"

#include <string.h>

int
cb_conv1d_out_len (int T, int K, int stride, int pad_left, int pad_right, int dilation)
{
  int64_t span = (int64_t) T + pad_left + pad_right - (int64_t) dilation * (K - 1) - 1;
  return span < 0 ? 0 : (int) (span / stride + 1);
}

/* One input channel per group (OC a multiple of C: a channel multiplier is allowed). */
static gboolean
is_depthwise (int C, int groups)
{
  return groups > 1 && groups == C;
}

/* The input itself already is the column matrix: no unfolding, no scratch. */
static gboolean
is_pointwise (int K, int stride, int pad_left, int pad_right, int groups)
{
  return K == 1 && stride == 1 && pad_left == 0 && pad_right == 0 && groups == 1;
}

size_t
cb_conv1d_scratch_floats (int C, int T, int K, int stride, int pad_left, int pad_right,
                          int dilation, int groups)
{
  if (is_depthwise (C, groups) || is_pointwise (K, stride, pad_left, pad_right, groups))
    return 0;
  int Tout = cb_conv1d_out_len (T, K, stride, pad_left, pad_right, dilation);
  return (size_t) (C / groups) * K * Tout;
}

typedef struct {
  float       *out;
  const float *inp, *weight, *bias;
  int          C, T, OC, K, Tout, stride, pad_left, dilation;
} ConvJob;

/* col[(c·K + k), to] = inp[c0 + c, to·stride + k·dilation − pad_left], zero outside the input.
 * Items are rows of col. */
static void
im2col_body (void *ctx, int64_t begin, int64_t end)
{
  const ConvJob *j = ctx;  /* j->inp already points at the group's first channel */
  for (int64_t row = begin; row < end; row++) {
    int c = (int) (row / j->K), k = (int) (row % j->K);
    const float *x = j->inp + (size_t) c * j->T;
    float *col = j->out + (size_t) row * j->Tout;
    int offset = k * j->dilation - j->pad_left;
    /* the output range whose input index to·stride + offset stays inside [0, T): zeros around it,
     * a plain copy inside it at stride 1 (HiFT's resblocks spend most of their unfolding there) */
    int lo = offset >= 0 ? 0 : MIN (j->Tout, (-offset + j->stride - 1) / j->stride);
    int hi = j->T - 1 - offset < 0 ? 0 : MIN (j->Tout, (j->T - 1 - offset) / j->stride + 1);
    hi = MAX (hi, lo);
    memset (col, 0, sizeof (float) * (size_t) lo);
    if (j->stride == 1)
      memcpy (col + lo, x + lo + offset, sizeof (float) * (size_t) (hi - lo));
    else
      for (int to = lo; to < hi; to++)
        col[to] = x[to * j->stride + offset];
    memset (col + hi, 0, sizeof (float) * (size_t) (j->Tout - hi));
  }
}

/* Depthwise: out[oc, to] = bias[oc] + Σ_k w[oc, k] · inp[c, to·stride + k·dilation − pad_left]
 * with c = oc / (OC/C) the one input channel of the group. Items are output channels. */
static void
depthwise_body (void *ctx, int64_t begin, int64_t end)
{
  const ConvJob *j = ctx;
  const int multiplier = j->OC / j->C;
  for (int64_t oc = begin; oc < end; oc++) {
    const float *x = j->inp + (size_t) (oc / multiplier) * j->T;
    const float *w = j->weight + (size_t) oc * j->K;
    float *y = j->out + (size_t) oc * j->Tout;
    float b = j->bias ? j->bias[oc] : 0.0f;
    for (int to = 0; to < j->Tout; to++)
      y[to] = b;
    for (int k = 0; k < j->K; k++) {
      int offset = k * j->dilation - j->pad_left;
      /* the output range whose input index stays inside [0, T) for this tap */
      int lo = offset >= 0 ? 0 : (-offset + j->stride - 1) / j->stride;
      int hi = j->T - 1 - offset < 0 ? 0 : MIN (j->Tout, (j->T - 1 - offset) / j->stride + 1);
      for (int to = lo; to < hi; to++)
        y[to] += w[k] * x[to * j->stride + offset];
    }
  }
}

/* Fill rows of out [rows, len] with bias (or zeros); returns the GEMM beta to use after it. */
static float
prefill_bias (float *out, const float *bias, int rows, int len)
{
  if (!bias)
    return 0.0f;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < len; i++)
      out[(size_t) r * len + i] = bias[r];
  return 1.0f;
}

void
cb_conv1d (float *out, const float *inp, const float *weight, const float *bias,
           int C, int T, int OC, int K, int stride, int pad_left, int pad_right,
           int dilation, int groups, float *col)
{
  const int Tout = cb_conv1d_out_len (T, K, stride, pad_left, pad_right, dilation);
  ConvJob job = { out, inp, weight, bias, C, T, OC, K, Tout, stride, pad_left, dilation };
  if (Tout == 0)
    return;

  if (is_depthwise (C, groups)) {
    cb_parallel_for (OC, 1 + CB_PARALLEL_GRAIN / ((int64_t) Tout * K), depthwise_body, &job);
    return;
  }

  const int Cg = C / groups, OCg = OC / groups, rows = Cg * K;
  float beta = prefill_bias (out, bias, OC, Tout);
  if (is_pointwise (K, stride, pad_left, pad_right, groups)) {
    cb_gemm (FALSE, FALSE, OC, Tout, C, 1.0f, weight, C, inp, T, beta, out, Tout);
    return;
  }

  float *owned = NULL;
  if (!col)
    col = owned = g_new (float, cb_conv1d_scratch_floats (C, T, K, stride, pad_left, pad_right,
                                                          dilation, groups));
  for (int g = 0; g < groups; g++) {
    ConvJob unfold = job;
    unfold.inp = inp + (size_t) g * Cg * T;
    unfold.out = col;
    cb_parallel_for (rows, 1 + CB_PARALLEL_GRAIN / Tout, im2col_body, &unfold);
    cb_gemm (FALSE, FALSE, OCg, Tout, rows, 1.0f, weight + (size_t) g * OCg * rows, rows, col,
             Tout, beta, out + (size_t) g * OCg * Tout, Tout);
  }
  g_free (owned);
}

/* ---------------------------------------------------------------------------------------------- */
/* transposed convolution */

int
cb_conv_transpose1d_out_len (int T, int K, int stride, int padding)
{
  int64_t n = (int64_t) (T - 1) * stride + K - 2 * (int64_t) padding;
  return n < 0 ? 0 : (int) n;
}

size_t
cb_conv_transpose1d_scratch_floats (int T, int OC, int K)
{
  return (size_t) OC * K * T;
}

typedef struct {
  float       *out;
  const float *col, *bias;
  int          T, OC, K, Tout, stride, padding;
} Col2imJob;

/* out[oc, t·stride + k − padding] += col[oc·K + k, t]; items are output channels, so no two threads
 * write the same row. */
static void
col2im_body (void *ctx, int64_t begin, int64_t end)
{
  const Col2imJob *j = ctx;
  for (int64_t oc = begin; oc < end; oc++) {
    float *y = j->out + (size_t) oc * j->Tout;
    float b = j->bias ? j->bias[oc] : 0.0f;
    for (int to = 0; to < j->Tout; to++)
      y[to] = b;
    for (int k = 0; k < j->K; k++) {
      const float *c = j->col + ((size_t) oc * j->K + k) * j->T;
      int offset = k - j->padding;
      for (int t = 0; t < j->T; t++) {
        int to = t * j->stride + offset;
        if (to >= 0 && to < j->Tout)
          y[to] += c[t];
      }
    }
  }
}

void
cb_conv_transpose1d (float *out, const float *inp, const float *weight, const float *bias,
                     int C, int T, int OC, int K, int stride, int padding, float *col)
{
  const int Tout = cb_conv_transpose1d_out_len (T, K, stride, padding);
  if (Tout == 0 || T == 0)
    return;
  float *owned = NULL;
  if (!col)
    col = owned = g_new (float, cb_conv_transpose1d_scratch_floats (T, OC, K));
  /* col[OC·K, T] = weight[C, OC·K]^T · inp[C, T] */
  cb_gemm (TRUE, FALSE, OC * K, T, C, 1.0f, weight, OC * K, inp, T, 0.0f, col, T);
  Col2imJob job = { out, col, bias, T, OC, K, Tout, stride, padding };
  cb_parallel_for (OC, 1 + CB_PARALLEL_GRAIN / ((int64_t) T * K), col2im_body, &job);
  g_free (owned);
}
