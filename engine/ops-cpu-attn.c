/* ops-cpu-attn.c — rotary position embedding and scaled dot-product attention on the CPU. */
#include "cb-common.h"
#include "ops.h"
#include "parallel.h"
#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* RoPE */

/* Frequencies follow HF transformers in float32 step by step (inv_freq = 1 / theta^(2i/D), then
 * _compute_llama3_parameters), because T3 was trained and is run upstream with exactly those floats;
 * the angle p·f is rounded to float32 as torch's matmul does, and only cos/sin are evaluated in
 * double (correctly rounded, where torch is within an ulp). */
static float
llama3_scale (float inv_freq, const CbRopeScaling *s)
{
  const float low_freq_wavelen = (float) s->original_max_positions / s->low_freq_factor;
  const float high_freq_wavelen = (float) s->original_max_positions / s->high_freq_factor;
  const float wavelen = (float) (2.0 * G_PI) / inv_freq;

  if (wavelen < high_freq_wavelen)  /* high frequencies: unchanged */
    return inv_freq;
  if (wavelen > low_freq_wavelen)   /* low frequencies: slowed down by the full factor */
    return inv_freq / s->factor;
  /* in between: blend the two linearly in 1/wavelen */
  float smooth = ((float) s->original_max_positions / wavelen - s->low_freq_factor)
                 / (s->high_freq_factor - s->low_freq_factor);
  return (1.0f - smooth) * inv_freq / s->factor + smooth * inv_freq;
}

CbRopeTable *
cb_rope_table_build (double theta, int head_dim, int max_pos, const CbRopeScaling *scaling,
                     GError **error)
{
  if (head_dim <= 0 || head_dim % 2 != 0 || max_pos <= 0 || !(theta > 1.0)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "rope table: head_dim %d must be even and positive, max_pos %d positive, "
                 "theta %g > 1", head_dim, max_pos, theta);
    return NULL;
  }
  if (scaling && !(scaling->factor > 0.0f && scaling->high_freq_factor > scaling->low_freq_factor
                   && scaling->low_freq_factor > 0.0f && scaling->original_max_positions > 0)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "rope table: llama3 scaling needs factor > 0, 0 < low_freq_factor < "
                 "high_freq_factor and original_max_positions > 0");
    return NULL;
  }
  const int half = head_dim / 2;
  guint64 n, bytes;
  if (!cb_mul_u64 ((guint64) max_pos, (guint64) half, &n)
      || !cb_mul_u64 (n, sizeof (float), &bytes) || bytes > G_MAXSIZE / 2) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "rope table of %d positions × %d is too large", max_pos, half);
    return NULL;
  }
  CbRopeTable *rope = g_new0 (CbRopeTable, 1);
  rope->head_dim = head_dim;
  rope->max_pos = max_pos;
  rope->inv_freq = g_new (float, half);
  rope->cos = g_try_malloc (bytes);
  rope->sin = g_try_malloc (bytes);
  if (!rope->cos || !rope->sin) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "cannot allocate a rope table of %d positions",
                 max_pos);
    cb_rope_table_free (rope);
    return NULL;
  }
  for (int i = 0; i < half; i++) {
    float exponent = (float) (2 * i) / (float) head_dim;
    float f = 1.0f / (float) pow ((float) theta, exponent);
    rope->inv_freq[i] = scaling ? llama3_scale (f, scaling) : f;
  }
  for (int p = 0; p < max_pos; p++) {
    for (int i = 0; i < half; i++) {
      float angle = (float) p * rope->inv_freq[i];
      rope->cos[(size_t) p * half + i] = (float) cos ((double) angle);
      rope->sin[(size_t) p * half + i] = (float) sin ((double) angle);
    }
  }
  return rope;
}

void
cb_rope_table_free (CbRopeTable *rope)
{
  if (!rope)
    return;
  g_free (rope->inv_freq);
  g_free (rope->cos);
  g_free (rope->sin);
  g_free (rope);
}

void
cb_rope_apply (float *x, const CbRopeTable *rope, int T, int H, int pos0)
{
  const int D = rope->head_dim, half = D / 2;
  g_return_if_fail (pos0 >= 0 && pos0 + T <= rope->max_pos);
  for (int t = 0; t < T; t++) {
    const float *c = rope->cos + (size_t) (pos0 + t) * half;
    const float *s = rope->sin + (size_t) (pos0 + t) * half;
    for (int h = 0; h < H; h++) {
      float *v = x + ((size_t) t * H + h) * D;
      for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* attention
 *
 * Two paths with the same arithmetic definition:
 *  - many query rows (prefill, S3Gen): per head, in blocks of rows, S = scale·Q·Kᵀ (one GEMM), bias,
 *    mask and softmax row by row (our pool), then O = S·V (a second GEMM). Q, K, V and O are
 *    addressed in place through the GEMM's leading dimensions (rows of H·D or Hkv·D floats). Heads
 *    run one after another so OpenBLAS has the cores for each GEMM.
 *  - a few query rows (a decode step): BLAS calls on one row are all overhead, so each (head, row)
 *    is one work item of our pool: dot products, softmax and the weighted sum over V in lanes.
 * Scores live in the running thread's scratch (cb_thread_scratch): it grows to the largest call and
 * is then reused, so decode steps allocate nothing. The path depends only on Tq, never on the
 * thread count, so results do not change with it. */

/* Upper bound on a GEMM-path score block, in floats (16 MiB); longer inputs go in row blocks. */
#define SCORE_BLOCK_FLOATS (1u << 22)
/* Up to this many query rows take the direct path. */
#define DIRECT_MAX_ROWS 8

typedef struct {
  float               *out;
  const float         *q, *k, *v;
  int                  Tq, L, H, Hkv, D;
  float                scale;
  int                  pos0;  /* causal: query row t sees keys 0 .. pos0+t; -1: all L keys */
  const float         *bias;
  size_t               bias_head_stride, bias_row_stride;
  const CbAttnCapture *capture;
} AttnArgs;

/* Keys query row t may see among the first `keys` computed. */
static inline int
visible_keys (const AttnArgs *a, int t, int keys)
{
  return a->pos0 >= 0 ? MIN (keys, a->pos0 + t + 1) : keys;
}

/* Bias, causal mask and softmax of one score row of query t, head h, in place; keys the row may not
 * see end up exactly 0. */
CB_VEC_INLINE void
finish_row (const AttnArgs *a, float *row, int h, int t, int keys)
{
  int n = visible_keys (a, t, keys);
  if (a->bias) {
    const float *b = a->bias + h * a->bias_head_stride + (size_t) t * a->bias_row_stride;
    for (int key = 0; key < n; key++)
      row[key] += b[key];
  }
  cb_vec_softmax_row (row, n);
  memset (row + n, 0, sizeof (float) * (keys - n));
}

/* Copy probability rows of head h (query rows t0 ..) into every capture slot asking for h. */
static void
capture_rows (const AttnArgs *a, int h, int t0, int rows, const float *scores, int keys)
{
  const CbAttnCapture *cap = a->capture;
  for (int c = 0; cap && c < cap->n_heads; c++) {
    if (cap->heads[c] != h)
      continue;
    for (int r = 0; r < rows; r++) {
      float *dst = cap->probs[c] + (size_t) (t0 + r) * cap->row_stride;
      memcpy (dst, scores + (size_t) r * keys, sizeof (float) * keys);
      memset (dst + keys, 0, sizeof (float) * (a->L - keys));
    }
  }
}

/* ---- GEMM path ---- */

typedef struct {
  const AttnArgs *a;
  float          *scores;  /* [rows, keys] */
  int             keys, t0, h;
} RowsJob;

CB_VEC_CLONES static void
finish_rows_body (void *ctx, int64_t begin, int64_t end)
{
  const RowsJob *j = ctx;
  for (int64_t r = begin; r < end; r++)
    finish_row (j->a, j->scores + r * j->keys, j->h, j->t0 + (int) r, j->keys);
}

static void
attention_gemm (const AttnArgs *a)
{
  const int group = a->H / a->Hkv, D = a->D;
  const int q_ld = a->H * D, kv_ld = a->Hkv * D;
  const int block_rows = (int) CLAMP ((int64_t) SCORE_BLOCK_FLOATS / a->L, 1, a->Tq);
  float *scores = cb_thread_scratch ((size_t) block_rows * a->L);

  for (int h = 0; h < a->H; h++) {
    const float *kh = a->k + (size_t) (h / group) * D, *vh = a->v + (size_t) (h / group) * D;
    for (int t0 = 0; t0 < a->Tq; t0 += block_rows) {
      const int rows = MIN (block_rows, a->Tq - t0);
      /* a causal block needs keys up to its last row's position only */
      const int keys = a->pos0 >= 0 ? a->pos0 + t0 + rows : a->L;
      const float *qb = a->q + (size_t) t0 * q_ld + (size_t) h * D;
      float *ob = a->out + (size_t) t0 * q_ld + (size_t) h * D;

      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, D, a->scale, qb, q_ld, kh,
                   kv_ld, 0.0f, scores, keys);
      RowsJob job = { a, scores, keys, t0, h };
      cb_parallel_for (rows, 1 + CB_PARALLEL_GRAIN / keys, finish_rows_body, &job);
      capture_rows (a, h, t0, rows, scores, keys);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, keys, 1.0f, scores, keys,
                   vh, kv_ld, 0.0f, ob, q_ld);
    }
  }
}

/* ---- direct path ---- */

CB_VEC_INLINE float
dot_lanes (const float *x, const float *y, int n)
{
  cb_vf acc = cb_vf_splat (0.0f);
  int i = 0;
  for (; i + CB_VEC_LANES <= n; i += CB_VEC_LANES)
    acc += cb_vf_load (x + i) * cb_vf_load (y + i);
  float sum = 0.0f;
  for (int l = 0; l < CB_VEC_LANES; l++)
    sum += acc[l];
  for (; i < n; i++)
    sum += x[i] * y[i];
  return sum;
}

/* Work items are (head, query row) pairs, head-major. */
CB_VEC_CLONES static void
direct_body (void *ctx, int64_t begin, int64_t end)
{
  const AttnArgs *a = ctx;
  const int group = a->H / a->Hkv, D = a->D;
  const int keys = a->pos0 >= 0 ? a->pos0 + a->Tq : a->L;
  float *scores = cb_thread_scratch ((size_t) keys);

  for (int64_t item = begin; item < end; item++) {
    const int h = (int) (item / a->Tq), t = (int) (item % a->Tq);
    const float *qrow = a->q + ((size_t) t * a->H + h) * D;
    const float *kh = a->k + (size_t) (h / group) * D, *vh = a->v + (size_t) (h / group) * D;
    float *orow = a->out + ((size_t) t * a->H + h) * D;
    const int n = visible_keys (a, t, keys);

    for (int key = 0; key < n; key++)
      scores[key] = dot_lanes (qrow, kh + (size_t) key * a->Hkv * D, D) * a->scale;
    finish_row (a, scores, h, t, keys);
    capture_rows (a, h, t, 1, scores, keys);

    for (int d = 0; d < D; d++)
      orow[d] = 0.0f;
    for (int key = 0; key < n; key++) {
      const float p = scores[key], *vrow = vh + (size_t) key * a->Hkv * D;
      int d = 0;
      for (; d + CB_VEC_LANES <= D; d += CB_VEC_LANES)
        cb_vf_store (orow + d, cb_vf_load (orow + d) + p * cb_vf_load (vrow + d));
      for (; d < D; d++)
        orow[d] += p * vrow[d];
    }
  }
}

static void
attention (const AttnArgs *a)
{
  if (a->Tq <= 0 || a->L <= 0)
    return;
  if (a->Tq > DIRECT_MAX_ROWS) {
    attention_gemm (a);
    return;
  }
  /* a few heads per part: one head against a short cache is too little work to hand over */
  int64_t grain = 1 + CB_PARALLEL_GRAIN / ((int64_t) a->D * a->L);
  cb_parallel_for ((int64_t) a->H * a->Tq, grain, direct_body, (void *) a);
}

void
cb_attention_causal (float *out, const float *q, const float *k, const float *v,
                     int T, int pos0, int H, int Hkv, int D, float scale,
                     const CbAttnCapture *capture)
{
  AttnArgs a = { out, q, k, v, T, pos0 + T, H, Hkv, D, scale, pos0, NULL, 0, 0, capture };
  attention (&a);
}

void
cb_attention (float *out, const float *q, const float *k, const float *v,
              int Tq, int L, int H, int Hkv, int D, float scale,
              const float *bias, size_t bias_head_stride, size_t bias_row_stride,
              const CbAttnCapture *capture)
{
  AttnArgs a = { out, q, k, v, Tq, L, H, Hkv, D, scale, -1, bias, bias_head_stride,
                 bias_row_stride, capture };
  attention (&a);
}
