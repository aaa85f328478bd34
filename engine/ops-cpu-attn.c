/* ops-cpu-attn.c — rotary position embedding and scaled dot-product attention on the CPU. */
#include "cb-common.h"
#include "ops.h"
#include "parallel.h"

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
/* attention */

/* Keys scored at once by the streaming softmax: a small stack buffer instead of a score row. */
#define KEY_BLOCK 64

typedef struct {
  float               *out;
  const float         *q, *k, *v;
  int                  Tq, L, H, Hkv, D;
  int                  pos0;         /* causal: query row t sees keys 0 .. pos0+t; -1: all L keys */
  float                scale;
  const float         *bias;
  size_t               bias_head_stride, bias_row_stride;
  const CbAttnCapture *capture;
} AttnJob;

/* Dot product with eight independent partial sums: the compiler may vectorise it, and the result
 * does not depend on how the work is split over threads. */
static inline float
dot (const float *a, const float *b, int n)
{
  float acc[8] = { 0 };
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++)
      acc[l] += a[i + l] * b[i + l];
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++)
    sum += a[i] * b[i];
  return sum;
}

static inline void
axpy (float *y, float a, const float *x, int n)
{
  for (int i = 0; i < n; i++)
    y[i] += a * x[i];
}

/* Scaled, biased scores of one query row against keys [j0, j1) into s[0 .. j1-j0). */
static void
scores (const AttnJob *j, const float *qrow, int h, int t, int j0, int j1, float *s)
{
  const int g = h / (j->H / j->Hkv);
  const float *brow = j->bias ? j->bias + h * j->bias_head_stride + t * j->bias_row_stride : NULL;
  for (int key = j0; key < j1; key++) {
    const float *krow = j->k + ((size_t) key * j->Hkv + g) * j->D;
    float x = dot (qrow, krow, j->D) * j->scale;
    s[key - j0] = brow ? x + brow[key] : x;
  }
}

/* Exact two-pass softmax into the caller's capture row p[0 .. row_len), then out = p · V. */
static void
attend_captured (const AttnJob *j, const float *qrow, int h, int t, int n_keys, int row_len,
                 float *p, float *orow)
{
  const int g = h / (j->H / j->Hkv);
  scores (j, qrow, h, t, 0, n_keys, p);
  cb_softmax (p, p, 1, n_keys);
  memset (p + n_keys, 0, sizeof (float) * (row_len - n_keys));
  memset (orow, 0, sizeof (float) * j->D);
  for (int key = 0; key < n_keys; key++)
    axpy (orow, p[key], j->v + ((size_t) key * j->Hkv + g) * j->D, j->D);
}

/* Streaming (online) softmax over blocks of keys: a running maximum m and normaliser l, with the
 * output row rescaled whenever m grows, so no row of L scores is ever stored. */
static void
attend_streaming (const AttnJob *j, const float *qrow, int h, int t, int n_keys, float *orow)
{
  const int g = h / (j->H / j->Hkv);
  float s[KEY_BLOCK];
  float m = -INFINITY, l = 0.0f;

  memset (orow, 0, sizeof (float) * j->D);
  for (int j0 = 0; j0 < n_keys; j0 += KEY_BLOCK) {
    int j1 = MIN (j0 + KEY_BLOCK, n_keys);
    scores (j, qrow, h, t, j0, j1, s);
    float bm = -INFINITY;
    for (int i = 0; i < j1 - j0; i++)
      bm = fmaxf (bm, s[i]);
    if (bm == -INFINITY)  /* every key of the block masked out */
      continue;
    if (bm > m) {
      float rescale = expf (m - bm);  /* 0 on the first block */
      for (int d = 0; d < j->D; d++)
        orow[d] *= rescale;
      l *= rescale;
      m = bm;
    }
    for (int i = 0; i < j1 - j0; i++) {
      float p = expf (s[i] - m);
      l += p;
      axpy (orow, p, j->v + ((size_t) (j0 + i) * j->Hkv + g) * j->D, j->D);
    }
  }
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int d = 0; d < j->D; d++)
    orow[d] *= inv;
}

/* Work items are (head, query row) pairs, head-major, so threads split heads evenly. */
static void
attention_body (void *ctx, int64_t begin, int64_t end)
{
  const AttnJob *j = ctx;
  const CbAttnCapture *cap = j->capture;
  const gboolean causal = j->pos0 >= 0;
  const int row_len = causal ? j->pos0 + j->Tq : j->L;

  for (int64_t item = begin; item < end; item++) {
    int h = (int) (item / j->Tq), t = (int) (item % j->Tq);
    const float *qrow = j->q + ((size_t) t * j->H + h) * j->D;
    float *orow = j->out + ((size_t) t * j->H + h) * j->D;
    int n_keys = causal ? j->pos0 + t + 1 : j->L;

    float *probs = NULL;
    for (int c = 0; cap && c < cap->n_heads; c++) {
      if (cap->heads[c] != h)
        continue;
      float *row = cap->probs[c] + (size_t) t * cap->row_stride;
      if (!probs)
        attend_captured (j, qrow, h, t, n_keys, row_len, row, orow);
      else  /* the same head asked for twice */
        memcpy (row, probs, sizeof (float) * row_len);
      probs = row;
    }
    if (!probs)
      attend_streaming (j, qrow, h, t, n_keys, orow);
  }
}

static void
run_attention (AttnJob *job)
{
  /* A few query rows per part at least: one row against a short cache is too little work. */
  int64_t items = (int64_t) job->H * job->Tq;
  int64_t grain = MAX ((int64_t) 1, 4096 / ((int64_t) job->D * MAX (job->L, 1)));
  cb_parallel_for (items, grain, attention_body, job);
}

void
cb_attention_causal (float *out, const float *q, const float *k, const float *v,
                     int T, int pos0, int H, int Hkv, int D, float scale,
                     const CbAttnCapture *capture)
{
  AttnJob job = { out, q, k, v, T, pos0 + T, H, Hkv, D, pos0, scale, NULL, 0, 0, capture };
  run_attention (&job);
}

void
cb_attention (float *out, const float *q, const float *k, const float *v,
              int Tq, int L, int H, int Hkv, int D, float scale,
              const float *bias, size_t bias_head_stride, size_t bias_row_stride,
              const CbAttnCapture *capture)
{
  AttnJob job = { out, q, k, v, Tq, L, H, Hkv, D, -1, scale, bias, bias_head_stride,
                  bias_row_stride, capture };
  run_attention (&job);
}
