/* ops-cpu.c — CPU implementation of the dense ops of ops.h: matrix products (OpenBLAS), norms,
 * softmax, activations, elementwise arithmetic, and the CbOps table of the CPU backend.
 * Attention and RoPE live in ops-cpu-attn.c, convolutions in ops-cpu-conv.c. */
#include "backend.h"
#include "ops.h"
#include "parallel.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Below this many elements (or rows·channels) a loop is not worth waking the pool for. */
#define ELTWISE_GRAIN 16384

/* ---------------------------------------------------------------------------------------------- */
/* matrix products */

static void
matmul (float *out, const float *inp, const float *weight, const float *bias,
        int T, int C, int OC, gboolean accumulate)
{
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias) {
    /* Put the bias into out first and let the GEMM add to it: one pass instead of two. */
    for (int t = 0; t < T; t++) {
      float *row = out + (size_t) t * OC;
      if (accumulate)
        cb_add (row, row, bias, OC);
      else
        memcpy (row, bias, sizeof (float) * OC);
    }
    beta = 1.0f;
  }
  if (T == 1)  /* a decode step: GEMV avoids GEMM's packing of a one-row operand */
    cblas_sgemv (CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, beta, out, 1);
  else
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, weight, C,
                 beta, out, OC);
}

void
cb_matmul (float *out, const float *inp, const float *weight, const float *bias,
           int T, int C, int OC)
{
  matmul (out, inp, weight, bias, T, C, OC, FALSE);
}

void
cb_matmul_acc (float *out, const float *inp, const float *weight, const float *bias,
               int T, int C, int OC)
{
  matmul (out, inp, weight, bias, T, C, OC, TRUE);
}

/* ---------------------------------------------------------------------------------------------- */
/* row-wise ops: norms and softmax over the last dim of [T, C] */

typedef enum { ROW_RMSNORM, ROW_LAYERNORM, ROW_SOFTMAX } RowKind;

typedef struct {
  RowKind      kind;
  float       *out;
  const float *inp, *weight, *bias;
  float        eps;
  int          C;
} RowJob;

static void
row_body (void *ctx, int64_t begin, int64_t end)
{
  const RowJob *j = ctx;
  const int C = j->C;
  for (int64_t t = begin; t < end; t++) {
    const float *x = j->inp + t * C;
    float *y = j->out + t * C;
    if (j->kind == ROW_SOFTMAX) {
      float mx = -INFINITY;
      for (int c = 0; c < C; c++)
        mx = fmaxf (mx, x[c]);
      double sum = 0.0;
      for (int c = 0; c < C; c++) {
        y[c] = expf (x[c] - mx);
        sum += y[c];
      }
      float inv = (float) (1.0 / sum);
      for (int c = 0; c < C; c++)
        y[c] *= inv;
      continue;
    }
    /* Norms: statistics accumulated in double so long rows lose nothing to summation order. */
    double mean = 0.0, ss = 0.0;
    if (j->kind == ROW_LAYERNORM) {
      for (int c = 0; c < C; c++)
        mean += x[c];
      mean /= C;
    }
    for (int c = 0; c < C; c++) {
      double d = x[c] - mean;
      ss += d * d;
    }
    float rstd = (float) (1.0 / sqrt (ss / C + j->eps));
    float m = (float) mean;
    for (int c = 0; c < C; c++) {
      float v = (x[c] - m) * rstd;
      if (j->weight)
        v *= j->weight[c];
      if (j->bias)
        v += j->bias[c];
      y[c] = v;
    }
  }
}

static void
run_rows (RowKind kind, float *out, const float *inp, const float *weight, const float *bias,
          float eps, int T, int C)
{
  RowJob job = { kind, out, inp, weight, bias, eps, C };
  cb_parallel_for (T, ELTWISE_GRAIN / MAX (C, 1) + 1, row_body, &job);
}

void
cb_rmsnorm (float *out, const float *inp, const float *weight, float eps, int T, int C)
{
  run_rows (ROW_RMSNORM, out, inp, weight, NULL, eps, T, C);
}

void
cb_layernorm (float *out, const float *inp, const float *weight, const float *bias,
              float eps, int T, int C)
{
  run_rows (ROW_LAYERNORM, out, inp, weight, bias, eps, T, C);
}

void
cb_softmax (float *out, const float *inp, int rows, int cols)
{
  run_rows (ROW_SOFTMAX, out, inp, NULL, NULL, 0.0f, rows, cols);
}

/* LayerNorm across channels of [C, T]: frames are processed in blocks of FRAME_BLOCK columns so the
 * inner loops run along contiguous time (vectorisable) while the statistics stay per frame. */
#define FRAME_BLOCK 64

typedef struct {
  float       *out;
  const float *inp, *weight, *bias;
  float        eps;
  int          C, T;
} ChannelNormJob;

static void
channel_norm_body (void *ctx, int64_t begin, int64_t end)
{
  const ChannelNormJob *j = ctx;
  const int C = j->C, T = j->T;
  double mean[FRAME_BLOCK], ss[FRAME_BLOCK];
  float m32[FRAME_BLOCK], rstd[FRAME_BLOCK];

  for (int64_t t0 = begin * FRAME_BLOCK; t0 < MIN (end * FRAME_BLOCK, T); t0 += FRAME_BLOCK) {
    int nt = (int) MIN ((int64_t) FRAME_BLOCK, T - t0);
    for (int i = 0; i < nt; i++)
      mean[i] = ss[i] = 0.0;
    for (int c = 0; c < C; c++) {
      const float *x = j->inp + (size_t) c * T + t0;
      for (int i = 0; i < nt; i++)
        mean[i] += x[i];
    }
    for (int i = 0; i < nt; i++) {
      mean[i] /= C;
      m32[i] = (float) mean[i];
    }
    for (int c = 0; c < C; c++) {
      const float *x = j->inp + (size_t) c * T + t0;
      for (int i = 0; i < nt; i++) {
        double d = x[i] - mean[i];
        ss[i] += d * d;
      }
    }
    for (int i = 0; i < nt; i++)
      rstd[i] = (float) (1.0 / sqrt (ss[i] / C + j->eps));
    for (int c = 0; c < C; c++) {
      const float *x = j->inp + (size_t) c * T + t0;
      float *y = j->out + (size_t) c * T + t0;
      float w = j->weight ? j->weight[c] : 1.0f, b = j->bias ? j->bias[c] : 0.0f;
      for (int i = 0; i < nt; i++)
        y[i] = (x[i] - m32[i]) * rstd[i] * w + b;
    }
  }
}

void
cb_layernorm_channels (float *out, const float *inp, const float *weight, const float *bias,
                       float eps, int C, int T)
{
  ChannelNormJob job = { out, inp, weight, bias, eps, C, T };
  int64_t blocks = ((int64_t) T + FRAME_BLOCK - 1) / FRAME_BLOCK;
  cb_parallel_for (blocks, ELTWISE_GRAIN / ((int64_t) FRAME_BLOCK * MAX (C, 1)) + 1,
                   channel_norm_body, &job);
}

void
cb_transpose (float *out, const float *inp, int rows, int cols)
{
  /* Tiles keep both the reads and the writes within a few cache lines. */
  const int tile = 32;
  for (int r0 = 0; r0 < rows; r0 += tile)
    for (int c0 = 0; c0 < cols; c0 += tile)
      for (int r = r0; r < MIN (r0 + tile, rows); r++)
        for (int c = c0; c < MIN (c0 + tile, cols); c++)
          out[(size_t) c * rows + r] = inp[(size_t) r * cols + c];
}

/* ---------------------------------------------------------------------------------------------- */
/* elementwise: one parallel body serves every activation and arithmetic op */

typedef enum {
  EW_SILU, EW_GELU, EW_GELU_TANH, EW_MISH, EW_LEAKY_RELU, EW_ELU, EW_TANH, EW_SIGMOID,
  EW_ADD, EW_MUL, EW_SCALE, EW_SILU_MUL,
} EltwiseKind;

typedef struct {
  EltwiseKind  kind;
  float       *out;
  const float *a, *b;
  float        p;   /* slope, alpha or scale */
} EltwiseJob;

/* softplus(x) = log(1 + e^x) without overflow for large x or loss of precision for very negative x. */
static inline float
softplus (float x)
{
  return fmaxf (x, 0.0f) + log1pf (expf (-fabsf (x)));
}

static void
eltwise_body (void *ctx, int64_t begin, int64_t end)
{
  const EltwiseJob *j = ctx;
  float *y = j->out;
  const float *a = j->a, *b = j->b;
  const float p = j->p;
  /* sqrt(2/pi) for the tanh form of GELU */
  const float k_gelu = 0.7978845608028654f;

  switch (j->kind) {
  case EW_SILU:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] / (1.0f + expf (-a[i]));
    break;
  case EW_GELU:
    for (int64_t i = begin; i < end; i++)
      y[i] = 0.5f * a[i] * (1.0f + erff (a[i] * (float) M_SQRT1_2));
    break;
  case EW_GELU_TANH:
    for (int64_t i = begin; i < end; i++) {
      float x = a[i];
      y[i] = 0.5f * x * (1.0f + tanhf (k_gelu * (x + 0.044715f * x * x * x)));
    }
    break;
  case EW_MISH:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] * tanhf (softplus (a[i]));
    break;
  case EW_LEAKY_RELU:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] >= 0.0f ? a[i] : a[i] * p;
    break;
  case EW_ELU:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] > 0.0f ? a[i] : p * expm1f (a[i]);
    break;
  case EW_TANH:
    for (int64_t i = begin; i < end; i++)
      y[i] = tanhf (a[i]);
    break;
  case EW_SIGMOID:
    for (int64_t i = begin; i < end; i++)
      y[i] = 1.0f / (1.0f + expf (-a[i]));
    break;
  case EW_ADD:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] + b[i];
    break;
  case EW_MUL:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] * b[i];
    break;
  case EW_SCALE:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] * p;
    break;
  case EW_SILU_MUL:
    for (int64_t i = begin; i < end; i++)
      y[i] = a[i] / (1.0f + expf (-a[i])) * b[i];
    break;
  }
}

static void
eltwise (EltwiseKind kind, float *out, const float *a, const float *b, float p, size_t N)
{
  EltwiseJob job = { kind, out, a, b, p };
  cb_parallel_for ((int64_t) N, ELTWISE_GRAIN, eltwise_body, &job);
}

void cb_silu (float *out, const float *inp, size_t N) { eltwise (EW_SILU, out, inp, NULL, 0, N); }
void cb_gelu (float *out, const float *inp, size_t N) { eltwise (EW_GELU, out, inp, NULL, 0, N); }
void cb_gelu_tanh (float *out, const float *inp, size_t N) { eltwise (EW_GELU_TANH, out, inp, NULL, 0, N); }
void cb_mish (float *out, const float *inp, size_t N) { eltwise (EW_MISH, out, inp, NULL, 0, N); }
void cb_tanh (float *out, const float *inp, size_t N) { eltwise (EW_TANH, out, inp, NULL, 0, N); }
void cb_sigmoid (float *out, const float *inp, size_t N) { eltwise (EW_SIGMOID, out, inp, NULL, 0, N); }

void
cb_leaky_relu (float *out, const float *inp, size_t N, float slope)
{
  eltwise (EW_LEAKY_RELU, out, inp, NULL, slope, N);
}

void
cb_elu (float *out, const float *inp, size_t N, float alpha)
{
  eltwise (EW_ELU, out, inp, NULL, alpha, N);
}

void cb_add (float *out, const float *a, const float *b, size_t N) { eltwise (EW_ADD, out, a, b, 0, N); }
void cb_mul (float *out, const float *a, const float *b, size_t N) { eltwise (EW_MUL, out, a, b, 0, N); }
void cb_scale (float *out, const float *inp, float s, size_t N) { eltwise (EW_SCALE, out, inp, NULL, s, N); }

void
cb_silu_mul (float *out, const float *gate, const float *up, size_t N)
{
  eltwise (EW_SILU_MUL, out, gate, up, 0, N);
}

/* ---------------------------------------------------------------------------------------------- */
/* per-channel ops: a row of T values with one parameter per channel */

typedef enum { PC_BIAS, PC_SNAKE } PerChannelKind;

typedef struct {
  PerChannelKind kind;
  float         *out;
  const float   *inp, *param;
  int            len;  /* values per channel row */
} PerChannelJob;

static void
per_channel_body (void *ctx, int64_t begin, int64_t end)
{
  const PerChannelJob *j = ctx;
  for (int64_t c = begin; c < end; c++) {
    const float *x = j->inp + c * j->len;
    float *y = j->out + c * j->len;
    const float a = j->param[c];
    if (j->kind == PC_BIAS) {
      for (int t = 0; t < j->len; t++)
        y[t] = x[t] + a;
    } else {
      /* Upstream (CosyVoice/chatterbox hifigan Snake) adds 1e-9 to alpha before the reciprocal. */
      const float inv = 1.0f / (a + 1e-9f);
      for (int t = 0; t < j->len; t++) {
        float s = sinf (a * x[t]);
        y[t] = x[t] + inv * (s * s);  /* upstream: (1 / (α + ε)) · sin(x·α)² */
      }
    }
  }
}

static void
per_channel (PerChannelKind kind, float *out, const float *inp, const float *param, int C, int len)
{
  PerChannelJob job = { kind, out, inp, param, len };
  cb_parallel_for (C, ELTWISE_GRAIN / MAX (len, 1) + 1, per_channel_body, &job);
}

void
cb_snake (float *out, const float *inp, const float *alpha, int C, int T)
{
  per_channel (PC_SNAKE, out, inp, alpha, C, T);
}

void
cb_add_bias_channels (float *out, const float *inp, const float *bias, int C, int T)
{
  per_channel (PC_BIAS, out, inp, bias, C, T);
}

void
cb_add_bias (float *out, const float *inp, const float *bias, int T, int C)
{
  for (int t = 0; t < T; t++)
    cb_add (out + (size_t) t * C, inp + (size_t) t * C, bias, C);
}

/* ---------------------------------------------------------------------------------------------- */

static const CbOps cpu_ops = {
  .name = "cpu",
  .matmul = cb_matmul,
  .matmul_acc = cb_matmul_acc,
  .rmsnorm = cb_rmsnorm,
  .layernorm = cb_layernorm,
  .layernorm_channels = cb_layernorm_channels,
  .transpose = cb_transpose,
  .softmax = cb_softmax,
  .rope_apply = cb_rope_apply,
  .attention_causal = cb_attention_causal,
  .attention = cb_attention,
  .conv1d = cb_conv1d,
  .conv_transpose1d = cb_conv_transpose1d,
  .silu = cb_silu,
  .gelu = cb_gelu,
  .gelu_tanh = cb_gelu_tanh,
  .mish = cb_mish,
  .leaky_relu = cb_leaky_relu,
  .elu = cb_elu,
  .tanh = cb_tanh,
  .sigmoid = cb_sigmoid,
  .snake = cb_snake,
  .add = cb_add,
  .mul = cb_mul,
  .scale = cb_scale,
  .silu_mul = cb_silu_mul,
  .add_bias = cb_add_bias,
  .add_bias_channels = cb_add_bias_channels,
};

const CbOps *
cb_ops_cpu (void)
{
  return &cpu_ops;
}
