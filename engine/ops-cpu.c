/* ops-cpu.c — CPU implementation of the dense ops of ops.h: matrix products (OpenBLAS), norms,
 * softmax, activations, elementwise arithmetic, and the CbOps table of the CPU backend.
 * Attention and RoPE live in ops-cpu-attn.c, convolutions in ops-cpu-conv.c. */
#include "backend.h"
#include "cb-common.h"
#include "ops.h"
#include "parallel.h"
#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* matrix products */

/* Up to this many rows a matmul streams each weight row once against all input rows (the T3 decode
 * step: one or two CFG rows), where a GEMM would pack the whole weight matrix first (measured here:
 * ~1.5 ms against ~10 ms for 5..8 rows of a 1024 × 4096 weight). */
#define SMALL_T_MAX 8

typedef struct {
  float       *out;
  const float *inp, *bias;
  const void  *weight;  /* float, or guint16 BF16 when bf16 */
  int          T, C, OC;
  gboolean     accumulate, bf16;
} MatmulJob;

/* Weights [idx, idx + lanes) as F32; `bf16` is a constant wherever this is inlined. */
CB_VEC_INLINE cb_vf
load_weights (const void *w, size_t idx, gboolean bf16)
{
  return bf16 ? cb_vf_load_bf16 ((const guint16 *) w + idx) : cb_vf_load ((const float *) w + idx);
}

static inline float
weight_at (const void *w, size_t idx, gboolean bf16)
{
  return bf16 ? cb_bf16_to_f32 (((const guint16 *) w)[idx]) : ((const float *) w)[idx];
}

/* sums[r·T + t] = w[r] · inp[t] for R weight rows (C floats apart) and T input rows. Inlined with
 * constant R and T (see below) so the R·T accumulators stay in registers: independent chains keep
 * the FMA units busy, where one chain per row would wait on each add. Each sum is formed the same
 * way whatever R is, so results do not depend on how rows were grouped. */
CB_VEC_INLINE void
dot_block (const void *w, gboolean bf16, const float *inp, int C, int R, int T, float *sums)
{
  const int L = CB_VEC_LANES;
  cb_vf acc[8];  /* R·T <= 8: see matmul_small_t_body */
#pragma GCC unroll 8
  for (int n = 0; n < R * T; n++)
    acc[n] = cb_vf_splat (0.0f);
  int i = 0;
  for (; i + L <= C; i += L) {
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      cb_vf wv = load_weights (w, (size_t) r * C + i, bf16);
#pragma GCC unroll 8
      for (int t = 0; t < T; t++)
        acc[r * T + t] += wv * cb_vf_load (inp + (size_t) t * C + i);
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) {
      float sum = 0.0f;
      for (int l = 0; l < L; l++)
        sum += acc[r * T + t][l];
      for (int c = i; c < C; c++)
        sum += weight_at (w, (size_t) r * C + c, bf16) * inp[(size_t) t * C + c];
      sums[r * T + t] = sum;
    }
}

/* out rows for output channels [o, o+R) from sums laid out as dot_block leaves them. */
static inline void
store_block (const MatmulJob *j, int64_t o, int R, const float *sums)
{
  for (int r = 0; r < R; r++)
    for (int t = 0; t < j->T; t++) {
      float *y = j->out + (size_t) t * j->OC + o + r;
      *y = (j->accumulate ? *y : 0.0f) + (j->bias ? j->bias[o + r] : 0.0f) + sums[r * j->T + t];
    }
}

/* Rows [o, o+R) of the product for T input rows; R and T constant after inlining. */
CB_VEC_INLINE void
small_t_rows (const MatmulJob *j, int64_t o, int R, int T, float *sums)
{
  size_t at = (size_t) o * j->C;
  const void *w = j->bf16 ? (const void *) ((const guint16 *) j->weight + at)
                          : (const void *) ((const float *) j->weight + at);
  if (j->bf16)
    dot_block (w, TRUE, j->inp, j->C, R, T, sums);
  else
    dot_block (w, FALSE, j->inp, j->C, R, T, sums);
}

/* Items are output channels: each weight row is read once and dotted with every input row, in
 * groups of R rows with R·T <= 8 accumulators (what 16 vector registers hold beside the operands),
 * single rows at the end. */
CB_VEC_CLONES static void
matmul_small_t_body (void *ctx, int64_t begin, int64_t end)
{
  const MatmulJob *j = ctx;
  const int T = j->T, R = T <= 2 ? 4 : T <= 4 ? 2 : 1;
  float sums[8];
  int64_t o = begin;
  for (; R > 1 && o + R <= end; o += R) {
    switch (T) {  /* one specialised copy per shape */
    case 1: small_t_rows (j, o, 4, 1, sums); break;
    case 2: small_t_rows (j, o, 4, 2, sums); break;
    case 3: small_t_rows (j, o, 2, 3, sums); break;
    default: small_t_rows (j, o, 2, 4, sums); break;
    }
    store_block (j, o, R, sums);
  }
  for (; o < end; o++) {
    switch (T) {
    case 1: small_t_rows (j, o, 1, 1, sums); break;
    case 2: small_t_rows (j, o, 1, 2, sums); break;
    case 3: small_t_rows (j, o, 1, 3, sums); break;
    case 4: small_t_rows (j, o, 1, 4, sums); break;
    case 5: small_t_rows (j, o, 1, 5, sums); break;
    case 6: small_t_rows (j, o, 1, 6, sums); break;
    case 7: small_t_rows (j, o, 1, 7, sums); break;
    default: small_t_rows (j, o, 1, 8, sums); break;
    }
    store_block (j, o, 1, sums);
  }
}

/* How a product is cut: into blocks of rows of C (or columns, when C is wider than tall), each one
 * single-threaded BLAS call, spread over the pool. OpenBLAS's value for an element depends on how
 * the call around it is blocked (its M/N tiling picks different edge kernels), so the blocks are
 * a function of the shape alone, never of the thread count: about 8 of them (balanced for 2–4
 * threads), of 128–512 rows (measured here: a single-threaded sgemm loses < 10 % at 128 rows
 * against one call over 1000, from the repacked other operand). */
#define GEMM_BLOCK_MIN 128
#define GEMM_BLOCK_MAX 512
#define GEMM_BLOCKS 8
/* Products under this many multiply-adds run on the calling thread: waking the pool costs more. */
#define GEMM_MIN_PARALLEL_MACS (1 << 19)

typedef struct {
  gboolean     trans_a, trans_b, split_rows;
  int          M, N, K, lda, ldb, ldc, block;
  float        alpha, beta;
  const float *A, *B;
  float       *C;
} GemmJob;

static void
gemm_body (void *ctx, int64_t begin, int64_t end)
{
  const GemmJob *j = ctx;
  const int dim = j->split_rows ? j->M : j->N;
  for (int64_t u = begin; u < end; u++) {
    const int i0 = (int) u * j->block, n = MIN (j->block, dim - i0);
    const float *A = j->A, *B = j->B;
    float *C = j->C;
    int M = j->M, N = j->N;
    if (j->split_rows) {
      A += j->trans_a ? (size_t) i0 : (size_t) i0 * j->lda;
      C += (size_t) i0 * j->ldc;
      M = n;
    } else {
      B += j->trans_b ? (size_t) i0 * j->ldb : (size_t) i0;
      C += i0;
      N = n;
    }
    cblas_sgemm (CblasRowMajor, j->trans_a ? CblasTrans : CblasNoTrans,
                 j->trans_b ? CblasTrans : CblasNoTrans, M, N, j->K, j->alpha, A, j->lda, B,
                 j->ldb, j->beta, C, j->ldc);
  }
}

void
cb_gemm (gboolean trans_a, gboolean trans_b, int M, int N, int K, float alpha, const float *A,
         int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  cb_blas_single_threaded ();
  if (M <= 0 || N <= 0)
    return;
  GemmJob job = { trans_a, trans_b, M >= N, M, N, K, lda, ldb, ldc, 0, alpha, beta, A, B, C };
  const int dim = job.split_rows ? M : N;
  job.block = CLAMP ((dim / GEMM_BLOCKS + 15) / 16 * 16, GEMM_BLOCK_MIN, GEMM_BLOCK_MAX);
  const int64_t units = (dim + job.block - 1) / job.block;
  const double macs = (double) M * N * MAX (K, 1);
  cb_parallel_for (units, macs < GEMM_MIN_PARALLEL_MACS ? units : 1, gemm_body, &job);
}

/* Floats of BF16 weights widened to F32 at once on the GEMM path (16 MiB of scratch): few, large
 * GEMMs, as splitting the weight into narrow blocks costs OpenBLAS a repacked input each time. */
#define BF16_BLOCK_FLOATS (1 << 22)

typedef struct {
  float         *out;
  const guint16 *inp;
} WidenJob;

CB_VEC_CLONES static void
widen_body (void *ctx, int64_t begin, int64_t end)
{
  const WidenJob *j = ctx;
  int64_t i = begin;
  for (; i + CB_VEC_LANES <= end; i += CB_VEC_LANES)
    cb_vf_store (j->out + i, cb_vf_load_bf16 (j->inp + i));
  for (; i < end; i++)
    j->out[i] = cb_bf16_to_f32 (j->inp[i]);
}

static void
matmul (const MatmulJob *job)
{
  const int T = job->T, C = job->C, OC = job->OC;
  if (T <= SMALL_T_MAX) {
    cb_parallel_for (OC, 1 + CB_PARALLEL_GRAIN / MAX (C, 1), matmul_small_t_body, (void *) job);
    return;
  }
  float beta = job->accumulate ? 1.0f : 0.0f;
  if (job->bias) {
    /* Put the bias into out first and let the GEMM add to it: one pass instead of two. */
    for (int t = 0; t < T; t++) {
      float *row = job->out + (size_t) t * OC;
      if (job->accumulate)
        cb_add (row, row, job->bias, OC);
      else
        memcpy (row, job->bias, sizeof (float) * OC);
    }
    beta = 1.0f;
  }
  if (!job->bf16) {
    cb_gemm (FALSE, TRUE, T, OC, C, 1.0f, job->inp, C, job->weight, C, beta, job->out, OC);
    return;
  }
  /* BF16 with many rows (a prefill): widen a block of weight rows, GEMM it into its columns of out */
  const int block = (int) CLAMP (BF16_BLOCK_FLOATS / C, 1, OC);
  float *wide = cb_thread_scratch ((size_t) block * C);
  for (int o0 = 0; o0 < OC; o0 += block) {
    const int rows = MIN (block, OC - o0);
    WidenJob widen = { wide, (const guint16 *) job->weight + (size_t) o0 * C };
    cb_parallel_for ((int64_t) rows * C, CB_PARALLEL_GRAIN, widen_body, &widen);
    cb_gemm (FALSE, TRUE, T, rows, C, 1.0f, job->inp, C, wide, C, beta, job->out + o0, OC);
  }
}

void
cb_matmul (float *out, const float *inp, const float *weight, const float *bias,
           int T, int C, int OC)
{
  MatmulJob job = { out, inp, bias, weight, T, C, OC, FALSE, FALSE };
  matmul (&job);
}

void
cb_matmul_acc (float *out, const float *inp, const float *weight, const float *bias,
               int T, int C, int OC)
{
  MatmulJob job = { out, inp, bias, weight, T, C, OC, TRUE, FALSE };
  matmul (&job);
}

void
cb_matmul_bf16 (float *out, const float *inp, const guint16 *weight, const float *bias,
                int T, int C, int OC)
{
  MatmulJob job = { out, inp, bias, weight, T, C, OC, FALSE, TRUE };
  matmul (&job);
}

void
cb_matmul_bf16_acc (float *out, const float *inp, const guint16 *weight, const float *bias,
                    int T, int C, int OC)
{
  MatmulJob job = { out, inp, bias, weight, T, C, OC, TRUE, TRUE };
  matmul (&job);
}

void
cb_f32_to_bf16 (guint16 *out, const float *inp, size_t N)
{
  for (size_t i = 0; i < N; i++) {
    guint32 bits;
    memcpy (&bits, &inp[i], sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u)  /* NaN: keep it quiet NaN, never round to inf */
      out[i] = (guint16) ((bits >> 16) | 0x0040u);
    else  /* round to nearest, ties to even: add 0x7fff plus the lowest kept bit */
      out[i] = (guint16) ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  }
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

/* Σ (x[c] − shift) or Σ (x[c] − shift)² over a row, in lanes (partial sums added at the end). */
CB_VEC_INLINE float
row_sum (const float *x, int C, float shift, gboolean square)
{
  cb_vf acc = cb_vf_splat (0.0f);
  int c = 0;
  for (; c + CB_VEC_LANES <= C; c += CB_VEC_LANES) {
    cb_vf d = cb_vf_load (x + c) - shift;
    acc += square ? d * d : d;
  }
  float sum = 0.0f;
  for (int l = 0; l < CB_VEC_LANES; l++)
    sum += acc[l];
  for (; c < C; c++) {
    float d = x[c] - shift;
    sum += square ? d * d : d;
  }
  return sum;
}

CB_VEC_CLONES static void
row_body (void *ctx, int64_t begin, int64_t end)
{
  const RowJob *j = ctx;
  const int C = j->C, L = CB_VEC_LANES;
  for (int64_t t = begin; t < end; t++) {
    const float *x = j->inp + t * C;
    float *y = j->out + t * C;
    if (j->kind == ROW_SOFTMAX) {
      if (y != x)
        memcpy (y, x, sizeof (float) * C);
      cb_vec_softmax_row (y, C);
      continue;
    }
    /* norms: two passes (mean, then squared deviations), as the variance of a shifted row loses
     * nothing to cancellation */
    const float mean = j->kind == ROW_LAYERNORM ? row_sum (x, C, 0.0f, FALSE) / C : 0.0f;
    const float rstd = 1.0f / sqrtf (row_sum (x, C, mean, TRUE) / C + j->eps);
    int c = 0;
    for (; c + L <= C; c += L) {
      cb_vf v = (cb_vf_load (x + c) - mean) * rstd;
      if (j->weight)
        v *= cb_vf_load (j->weight + c);
      if (j->bias)
        v += cb_vf_load (j->bias + c);
      cb_vf_store (y + c, v);
    }
    for (; c < C; c++) {
      float v = (x[c] - mean) * rstd;
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
  cb_parallel_for (T, CB_PARALLEL_GRAIN / MAX (C, 1) + 1, row_body, &job);
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
  cb_parallel_for (blocks, CB_PARALLEL_GRAIN / ((int64_t) FRAME_BLOCK * MAX (C, 1)) + 1,
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

/* The vectorisable ops on one block of lanes; b is ignored by the unary ones. */
CB_VEC_INLINE cb_vf
eltwise_lanes (EltwiseKind kind, cb_vf a, cb_vf b, float p)
{
  switch (kind) {
  case EW_SILU:
    return a / (1.0f + cb_vf_exp (-a));
  case EW_SIGMOID:
    return 1.0f / (1.0f + cb_vf_exp (-a));
  case EW_SILU_MUL:
    return a / (1.0f + cb_vf_exp (-a)) * b;
  case EW_GELU: {
    /* 0.5·x·(1 + erf(x/√2)) written with erfc so the negative side keeps its relative precision */
    cb_vf c = cb_vf_erfc_abs (cb_vf_abs (a) * (float) M_SQRT1_2);
    return 0.5f * a * cb_vf_select (a >= 0.0f, 2.0f - c, c);
  }
  case EW_GELU_TANH: /* sqrt(2/π) = 0.79788456 */
    return 0.5f * a * (1.0f + cb_vf_tanh (0.7978845608028654f * (a + 0.044715f * a * a * a)));
  case EW_MISH: {
    /* tanh(softplus(x)) = n(n+2) / (n(n+2) + 2) with n = e^x: no log, no overflow once x is
     * capped at 20, where the ratio is 1 in float already */
    cb_vf n = cb_vf_exp (cb_vf_min (a, cb_vf_splat (20.0f)));
    cb_vf u = n * (n + 2.0f);
    return a * u / (u + 2.0f);
  }
  case EW_LEAKY_RELU:
    return cb_vf_select (a >= 0.0f, a, a * p);
  case EW_ADD:
    return a + b;
  case EW_MUL:
    return a * b;
  case EW_SCALE:
    return a * p;
  case EW_ELU:
  case EW_TANH:
    break;  /* scalar: see eltwise_scalar */
  }
  return a;
}

/* ELU and tanh keep libm (expm1f, tanhf): they are not hot, and the lane versions would lose
 * relative precision near 0. */
static void
eltwise_scalar (const EltwiseJob *j, int64_t begin, int64_t end)
{
  for (int64_t i = begin; i < end; i++) {
    float x = j->a[i];
    j->out[i] = j->kind == EW_TANH ? tanhf (x) : (x > 0.0f ? x : j->p * expm1f (x));
  }
}

CB_VEC_CLONES static void
eltwise_body (void *ctx, int64_t begin, int64_t end)
{
  const EltwiseJob *j = ctx;
  const int L = CB_VEC_LANES;
  if (j->kind == EW_ELU || j->kind == EW_TANH) {
    eltwise_scalar (j, begin, end);
    return;
  }
  const cb_vf zero = cb_vf_splat (0.0f);
  int64_t i = begin;
  for (; i + L <= end; i += L)
    cb_vf_store (j->out + i, eltwise_lanes (j->kind, cb_vf_load (j->a + i),
                                            j->b ? cb_vf_load (j->b + i) : zero, j->p));
  if (i < end) {
    /* the tail through one zero-padded block, so it takes the same path as the rest */
    float ta[CB_VEC_LANES] = { 0 }, tb[CB_VEC_LANES] = { 0 }, ty[CB_VEC_LANES];
    size_t m = (size_t) (end - i);
    memcpy (ta, j->a + i, m * sizeof (float));
    if (j->b)
      memcpy (tb, j->b + i, m * sizeof (float));
    cb_vf_store (ty, eltwise_lanes (j->kind, cb_vf_load (ta), cb_vf_load (tb), j->p));
    memcpy (j->out + i, ty, m * sizeof (float));
  }
}

static void
eltwise (EltwiseKind kind, float *out, const float *a, const float *b, float p, size_t N)
{
  EltwiseJob job = { kind, out, a, b, p };
  cb_parallel_for ((int64_t) N, CB_PARALLEL_GRAIN, eltwise_body, &job);
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

/* Snake on one block of lanes. Upstream (CosyVoice/chatterbox hifigan Snake) computes
 * x + (1 / (α + 1e-9)) · sin(x·α)²: the 1e-9 keeps α = 0 finite. */
CB_VEC_INLINE cb_vf
snake_lanes (cb_vf x, float alpha, float inv)
{
  cb_vf s = cb_vf_sin (x * alpha);
  return x + inv * (s * s);
}

CB_VEC_CLONES static void
per_channel_body (void *ctx, int64_t begin, int64_t end)
{
  const PerChannelJob *j = ctx;
  const int L = CB_VEC_LANES;
  for (int64_t c = begin; c < end; c++) {
    const float *x = j->inp + c * j->len;
    float *y = j->out + c * j->len;
    const float a = j->param[c];
    if (j->kind == PC_BIAS) {
      for (int t = 0; t < j->len; t++)
        y[t] = x[t] + a;
      continue;
    }
    const float inv = 1.0f / (a + 1e-9f);
    int t = 0;
    for (; t + L <= j->len; t += L)
      cb_vf_store (y + t, snake_lanes (cb_vf_load (x + t), a, inv));
    if (t < j->len) {
      float tail[CB_VEC_LANES] = { 0 };
      memcpy (tail, x + t, sizeof (float) * (j->len - t));
      cb_vf_store (tail, snake_lanes (cb_vf_load (tail), a, inv));
      memcpy (y + t, tail, sizeof (float) * (j->len - t));
    }
  }
}

static void
per_channel (PerChannelKind kind, float *out, const float *inp, const float *param, int C, int len)
{
  PerChannelJob job = { kind, out, inp, param, len };
  cb_parallel_for (C, CB_PARALLEL_GRAIN / MAX (len, 1) + 1, per_channel_body, &job);
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
  .matmul_bf16 = cb_matmul_bf16,
  .matmul_bf16_acc = cb_matmul_bf16_acc,
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
