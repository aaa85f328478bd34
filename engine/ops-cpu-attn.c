/* ops-cpu-attn.c — rotary position embedding and scaled dot-product attention on the CPU. */
#include "cb-common.h"
#include "ops.h"
#include "parallel.h"
#include "vecmath.h"

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
 * Three paths with the same arithmetic definition:
 *  - many query rows, causal or captured (T3 prefill): per head, in blocks of rows, S = scale·Q·Kᵀ
 *    (one GEMM), bias, mask and softmax row by row (our pool), then O = S·V (a second GEMM). Q, K, V
 *    and O are addressed in place through the GEMM's leading dimensions (rows of H·D or Hkv·D
 *    floats). Heads run one after another so OpenBLAS has the cores for each GEMM.
 *  - many query rows, full attention without capture (the S3Gen estimator and encoder, the
 *    perceiver): fused. Work items are (head, chunk of query rows) on our pool; an item transposes
 *    its head's keys once into its thread's scratch, then for a few rows at a time computes scores,
 *    softmax and the output with register-tiled kernels while the score rows are still in cache.
 *    With one GEMM pair per head, OpenBLAS wrote, re-read and zeroed a Tq × L score block per head
 *    (L = 1000: 4 MB, far out of cache) and the pool and OpenBLAS took turns waking their threads.
 *    Measured on 2 threads (a loaded machine): S3Gen-sized calls (8 heads × 64, T = L = 1000 or
 *    2500) 1.2–1.45× faster, a whole S3Gen estimator evaluation at T = 1000 about 1.3×.
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

      cb_gemm (FALSE, TRUE, rows, keys, D, a->scale, qb, q_ld, kh, kv_ld, 0.0f, scores, keys);
      RowsJob job = { a, scores, keys, t0, h };
      cb_parallel_for (rows, 1 + CB_PARALLEL_GRAIN / keys, finish_rows_body, &job);
      capture_rows (a, h, t0, rows, scores, keys);
      cb_gemm (FALSE, FALSE, rows, D, keys, 1.0f, scores, keys, vh, kv_ld, 0.0f, ob, q_ld);
    }
  }
}

/* ---- fused path (full attention, no capture) ---- */

/* Query rows per work item, and the most score floats one block of rows holds (128 KiB: the rows
 * stay in L2 between the score, softmax and output passes). */
#define FUSED_CHUNK_ROWS 64
#define FUSED_SCORE_FLOATS (1 << 15)
/* Register tile: FUSED_MR query rows × FUSED_NR columns (two vectors: of keys for the scores, of
 * head dims for the output): 12 accumulators, which leaves room for the operands in 16 vector
 * registers. */
#define FUSED_MR 6
#define FUSED_NR (2 * CB_VEC_LANES)

/* x in every lane as one broadcast. cb_vf_splat's `0 + x` has to be kept (it turns −0 into +0):
 * an extra add per use and a register for the zero, which these tiles need for accumulators; and
 * gcc builds a brace-initialised vector lane by lane inside target_clones functions. */
G_STATIC_ASSERT (CB_VEC_LANES == 8);
CB_VEC_INLINE cb_vf
fused_bcast (float x)
{
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_shuffle ((cb_vf) { x }, (cb_vi) { 0 });
#else
  return (cb_vf) { x, x, x, x, x, x, x, x };
#endif
}

/* s[r, 0..FUSED_NR) = scale · q[r] · keys for MR query rows against one panel of packed keys
 * (panel[d·FUSED_NR + i] = key i's dim d: one contiguous stream per tile). Every score is the same
 * d-ordered sum whatever the tile. */
CB_VEC_INLINE void
fused_scores_tile (const float *q, int q_ld, const float *panel, int D, float scale, float *s,
                   int s_ld, int MR)
{
  cb_vf acc[FUSED_MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++)
    acc[r][0] = acc[r][1] = fused_bcast (0.0f);
  for (int d = 0; d < D; d++) {
    const cb_vf k0 = cb_vf_load (panel + (size_t) d * FUSED_NR);
    const cb_vf k1 = cb_vf_load (panel + (size_t) d * FUSED_NR + CB_VEC_LANES);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const cb_vf qv = fused_bcast (q[(size_t) r * q_ld + d]);
      acc[r][0] += qv * k0;
      acc[r][1] += qv * k1;
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    cb_vf_store (s + (size_t) r * s_ld, acc[r][0] * fused_bcast (scale));
    cb_vf_store (s + (size_t) r * s_ld + CB_VEC_LANES, acc[r][1] * fused_bcast (scale));
  }
}

/* o[r, 0..NV·lanes) = inv[r] · Σ_j p[r, j] · v[j, 0..NV·lanes) over keys j < L, for MR rows;
 * v is the head's values packed as (L, D) rows. */
CB_VEC_INLINE void
fused_output_tile (const float *p, int p_ld, const float *v, int D, int L, const float *inv,
                   float *o, int o_ld, int MR, int NV)
{
  cb_vf acc[FUSED_MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++)
    acc[r][0] = acc[r][1] = fused_bcast (0.0f);
  for (int j = 0; j < L; j++) {
    const float *vj = v + (size_t) j * D;
    const cb_vf v0 = cb_vf_load (vj);
    const cb_vf v1 = NV > 1 ? cb_vf_load (vj + CB_VEC_LANES) : v0;
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const cb_vf pv = fused_bcast (p[(size_t) r * p_ld + j]);
      acc[r][0] += pv * v0;
      if (NV > 1)
        acc[r][1] += pv * v1;
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    cb_vf_store (o + (size_t) r * o_ld, acc[r][0] * fused_bcast (inv[r]));
    if (NV > 1)
      cb_vf_store (o + (size_t) r * o_ld + CB_VEC_LANES, acc[r][1] * fused_bcast (inv[r]));
  }
}

/* One specialised copy per row count: MR must be a constant for the accumulators to live in
 * registers. */
#define FUSED_DISPATCH_MR(mr, call)                                                         \
  switch (mr) {                                                                             \
  case 1: call (1); break;                                                                  \
  case 2: call (2); break;                                                                  \
  case 3: call (3); break;                                                                  \
  case 4: call (4); break;                                                                  \
  case 5: call (5); break;                                                                  \
  default: call (6); break;                                                                 \
  }

/* Bias, then e^(s − max) over a score row of Lp entries (keys L.. are padding); returns 1/Σ, or 0
 * for a row whose keys are all −inf (its output is then 0, as on the other paths). */
CB_VEC_INLINE float
fused_softmax_row (const AttnArgs *a, float *row, int h, int t, int Lp)
{
  const int L = a->L;
  if (a->bias) {
    const float *b = a->bias + h * a->bias_head_stride + (size_t) t * a->bias_row_stride;
    for (int key = 0; key < L; key++)
      row[key] += b[key];
  }
  for (int key = L; key < Lp; key++)
    row[key] = -INFINITY;
  cb_vf vmax = fused_bcast (-INFINITY);
  for (int i = 0; i < Lp; i += CB_VEC_LANES)
    vmax = cb_vf_max (vmax, cb_vf_load (row + i));
  float mx = -INFINITY;
  for (int l = 0; l < CB_VEC_LANES; l++)
    mx = vmax[l] > mx ? vmax[l] : mx;
  if (mx == -INFINITY)
    mx = 0.0f;
  cb_vf vsum = fused_bcast (0.0f);
  for (int i = 0; i < Lp; i += CB_VEC_LANES) {
    cb_vf e = cb_vf_exp (cb_vf_load (row + i) - fused_bcast (mx));
    cb_vf_store (row + i, e);
    vsum += e;
  }
  float sum = 0.0f;
  for (int l = 0; l < CB_VEC_LANES; l++)
    sum += vsum[l];
  return sum > 0.0f ? 1.0f / sum : 0.0f;
}

typedef struct {
  const AttnArgs *a;
  int             n_chunks;  /* chunks of FUSED_CHUNK_ROWS query rows per head */
  int             Lp;        /* keys rounded up to FUSED_NR */
  int             block;     /* query rows per score block */
} FusedJob;

/* Pack KV head hk: keys into panels of FUSED_NR (zero past L, so every panel is whole) and values
 * into contiguous (L, D) rows. Both are streamed once per tile; in place in the (·, Hkv·D) rows
 * their 2 KiB strides map onto a few cache sets and keep evicting each other. */
static void
fused_pack_head (const AttnArgs *a, int hk, int Lp, float *kp, float *vp)
{
  const int D = a->D, L = a->L, kv_ld = a->Hkv * D;
  const float *kh = a->k + (size_t) hk * D, *vh = a->v + (size_t) hk * D;
  for (int key = 0; key < Lp; key++) {
    float *dst = kp + (size_t) (key / FUSED_NR) * D * FUSED_NR + key % FUSED_NR;
    const float *src = kh + (size_t) key * kv_ld;
    for (int d = 0; d < D; d++)
      dst[(size_t) d * FUSED_NR] = key < L ? src[d] : 0.0f;
  }
  for (int key = 0; key < L; key++)
    memcpy (vp + (size_t) key * D, vh + (size_t) key * kv_ld, sizeof (float) * D);
}

/* Output rows [t0, t0 + rows) of head h from packed keys/values; scores is (rows, Lp). */
CB_VEC_CLONES static void
fused_block (const FusedJob *j, int h, int t0, int rows, const float *kp, const float *vp,
             float *scores, float *inv)
{
  const AttnArgs *a = j->a;
  const int D = a->D, L = a->L, Lp = j->Lp, q_ld = a->H * D;
  const float *qb = a->q + (size_t) t0 * q_ld + (size_t) h * D;
  float *ob = a->out + (size_t) t0 * q_ld + (size_t) h * D;

  for (int r0 = 0; r0 < rows; r0 += FUSED_MR) {
    const int mr = MIN (FUSED_MR, rows - r0);
    for (int key0 = 0; key0 < Lp; key0 += FUSED_NR) {
#define SCORES(MR) fused_scores_tile (qb + (size_t) r0 * q_ld, q_ld, kp + (size_t) key0 * D, D, \
                                      a->scale, scores + (size_t) r0 * Lp + key0, Lp, MR)
      FUSED_DISPATCH_MR (mr, SCORES);
#undef SCORES
    }
  }
  for (int r = 0; r < rows; r++)
    inv[r] = fused_softmax_row (a, scores + (size_t) r * Lp, h, t0 + r, Lp);

  for (int r0 = 0; r0 < rows; r0 += FUSED_MR) {
    const int mr = MIN (FUSED_MR, rows - r0);
    const float *pb = scores + (size_t) r0 * Lp;
    float *orow = ob + (size_t) r0 * q_ld;
    int d0 = 0;
    for (; d0 + FUSED_NR <= D; d0 += FUSED_NR) {
#define OUT2(MR) fused_output_tile (pb, Lp, vp + d0, D, L, inv + r0, orow + d0, q_ld, MR, 2)
      FUSED_DISPATCH_MR (mr, OUT2);
#undef OUT2
    }
    if (d0 + CB_VEC_LANES <= D) {
#define OUT1(MR) fused_output_tile (pb, Lp, vp + d0, D, L, inv + r0, orow + d0, q_ld, MR, 1)
      FUSED_DISPATCH_MR (mr, OUT1);
#undef OUT1
      d0 += CB_VEC_LANES;
    }
    /* head dims past the last full vector: the same j-ordered sums, one at a time */
    for (int r = 0; r < mr; r++)
      for (int d = d0; d < D; d++) {
        float sum = 0.0f;
        for (int key = 0; key < L; key++)
          sum += pb[(size_t) r * Lp + key] * vp[(size_t) key * D + d];
        orow[(size_t) r * q_ld + d] = sum * inv[r0 + r];
      }
  }
}

/* Items are (head, chunk of query rows), head-major, so a thread's consecutive items mostly share
 * the packed head. */
static void
fused_body (void *ctx, int64_t begin, int64_t end)
{
  const FusedJob *j = ctx;
  const AttnArgs *a = j->a;
  const int D = a->D, Lp = j->Lp, group = a->H / a->Hkv;
  float *kp = cb_thread_scratch ((size_t) Lp * D * 2 + (size_t) j->block * (Lp + 1));
  float *vp = kp + (size_t) Lp * D, *scores = vp + (size_t) Lp * D;
  float *inv = scores + (size_t) j->block * Lp;
  int packed = -1;

  for (int64_t item = begin; item < end; item++) {
    const int h = (int) (item / j->n_chunks), chunk = (int) (item % j->n_chunks);
    if (h / group != packed) {
      packed = h / group;
      fused_pack_head (a, packed, Lp, kp, vp);
    }
    const int t_end = MIN (a->Tq, (chunk + 1) * FUSED_CHUNK_ROWS);
    for (int t0 = chunk * FUSED_CHUNK_ROWS; t0 < t_end; t0 += j->block)
      fused_block (j, h, t0, MIN (j->block, t_end - t0), kp, vp, scores, inv);
  }
}

static void
attention_fused (const AttnArgs *a)
{
  FusedJob job = { a, (a->Tq + FUSED_CHUNK_ROWS - 1) / FUSED_CHUNK_ROWS, 0, 0 };
  job.Lp = (a->L + FUSED_NR - 1) / FUSED_NR * FUSED_NR;
  job.block = (int) CLAMP (FUSED_SCORE_FLOATS / job.Lp / FUSED_MR * FUSED_MR, FUSED_MR,
                           FUSED_CHUNK_ROWS);
  const int64_t per_item = (int64_t) FUSED_CHUNK_ROWS * a->L * a->D;
  cb_parallel_for ((int64_t) a->H * job.n_chunks, 1 + CB_PARALLEL_GRAIN / per_item, fused_body,
                   &job);
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
    if (a->pos0 < 0 && !a->capture)
      attention_fused (a);
    else
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
