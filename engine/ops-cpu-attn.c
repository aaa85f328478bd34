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
 * Per head, in blocks of query rows: S = scale·Q·Kᵀ (one GEMM), bias, mask and softmax row by row
 * (our pool), then O = S·V (a second GEMM). Q, K, V and O are addressed in place with the GEMM's
 * leading dimensions (rows of H·D or Hkv·D floats), so nothing is repacked. The score block lives in
 * the calling thread's scratch (cb_thread_scratch), sized Tq·L at most: a decode step reuses the
 * same buffer every time. Heads run one after another so OpenBLAS has the cores for each GEMM. */

/* Upper bound on a score block, in floats (16 MiB); longer inputs are processed in row blocks. */
#define SCORE_BLOCK_FLOATS (1u << 22)

typedef struct {
  float       *scores;      /* [rows, ld] */
  int          ld;          /* keys computed for this block */
  int          t0;          /* first query row of the block */
  int          h;
  int          pos0;        /* causal: query row t sees keys 0 .. pos0+t; -1: all keys */
  const float *bias;
  size_t       bias_head_stride, bias_row_stride;
} SoftmaxJob;

/* Bias, causal mask and softmax of rows [begin, end) of the score block, in place; keys a row may
 * not see end up exactly 0. */
CB_VEC_CLONES static void
masked_softmax_body (void *ctx, int64_t begin, int64_t end)
{
  const SoftmaxJob *j = ctx;
  for (int64_t r = begin; r < end; r++) {
    int t = j->t0 + (int) r;
    float *row = j->scores + r * j->ld;
    int n_keys = j->pos0 >= 0 ? MIN (j->ld, j->pos0 + t + 1) : j->ld;
    if (j->bias) {
      const float *b = j->bias + j->h * j->bias_head_stride + (size_t) t * j->bias_row_stride;
      for (int key = 0; key < n_keys; key++)
        row[key] += b[key];
    }
    cb_vec_softmax_row (row, n_keys);
    memset (row + n_keys, 0, sizeof (float) * (j->ld - n_keys));
  }
}

/* Shared by both entry points; pos0 >= 0 selects causal attention with L = pos0 + Tq. */
static void
attention (float *out, const float *q, const float *k, const float *v, int Tq, int L, int H,
           int Hkv, int D, float scale, int pos0, const float *bias, size_t bias_head_stride,
           size_t bias_row_stride, const CbAttnCapture *capture)
{
  if (Tq <= 0 || L <= 0)
    return;
  const int group = H / Hkv;
  const int q_ld = H * D, kv_ld = Hkv * D;
  const int block_rows = (int) CLAMP ((int64_t) SCORE_BLOCK_FLOATS / L, 1, Tq);
  float *scores = cb_thread_scratch ((size_t) block_rows * L);

  for (int h = 0; h < H; h++) {
    const float *kh = k + (size_t) (h / group) * D, *vh = v + (size_t) (h / group) * D;
    for (int t0 = 0; t0 < Tq; t0 += block_rows) {
      const int rows = MIN (block_rows, Tq - t0);
      /* a causal block needs keys up to its last row's position only */
      const int keys = pos0 >= 0 ? pos0 + t0 + rows : L;
      const float *qb = q + (size_t) t0 * q_ld + (size_t) h * D;
      float *ob = out + (size_t) t0 * q_ld + (size_t) h * D;

      if (rows == 1)  /* decode step: GEMV, as GEMM would pack a one-row operand */
        cblas_sgemv (CblasRowMajor, CblasNoTrans, keys, D, scale, kh, kv_ld, qb, 1, 0.0f, scores, 1);
      else
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, D, scale, qb, q_ld, kh,
                     kv_ld, 0.0f, scores, keys);
      SoftmaxJob job = { scores, keys, t0, h, pos0, bias, bias_head_stride, bias_row_stride };
      cb_parallel_for (rows, 1 + 8192 / keys, masked_softmax_body, &job);

      for (int c = 0; capture && c < capture->n_heads; c++) {
        if (capture->heads[c] != h)
          continue;
        for (int r = 0; r < rows; r++) {
          float *dst = capture->probs[c] + (size_t) (t0 + r) * capture->row_stride;
          memcpy (dst, scores + (size_t) r * keys, sizeof (float) * keys);
          memset (dst + keys, 0, sizeof (float) * (L - keys));
        }
      }

      if (rows == 1)
        cblas_sgemv (CblasRowMajor, CblasTrans, keys, D, 1.0f, vh, kv_ld, scores, 1, 0.0f, ob, 1);
      else
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, keys, 1.0f, scores, keys,
                     vh, kv_ld, 0.0f, ob, q_ld);
    }
  }
}

void
cb_attention_causal (float *out, const float *q, const float *k, const float *v,
                     int T, int pos0, int H, int Hkv, int D, float scale,
                     const CbAttnCapture *capture)
{
  attention (out, q, k, v, T, pos0 + T, H, Hkv, D, scale, pos0, NULL, 0, 0, capture);
}

void
cb_attention (float *out, const float *q, const float *k, const float *v,
              int Tq, int L, int H, int Hkv, int D, float scale,
              const float *bias, size_t bias_head_stride, size_t bias_row_stride,
              const CbAttnCapture *capture)
{
  attention (out, q, k, v, Tq, L, H, Hkv, D, scale, -1, bias, bias_head_stride, bias_row_stride,
             capture);
}
