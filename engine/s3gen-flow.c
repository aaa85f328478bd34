/* s3gen-flow.c — S3Gen flow front end: x-vector projection and the UpsampleConformerEncoder
 * (see s3gen-flow.h). Functions read top to bottom in upstream's order: weights, positions,
 * conformer layer, the encoder stages, then the public calls. */
#include "s3gen-flow.h"

#include "cb-common.h"
#include "ops.h"
#include "weights-view.h"

#include <math.h>
#include <string.h>

/* PreLookaheadLayer.conv2: upstream hard-codes kernel 3 with 2 frames of left padding (causal). */
#define LOOKAHEAD_CONV2_KERNEL 3
/* Query rows per block of the relative-position term (see self_attention). */
#define ATTN_ROW_BLOCK 64
/* F.leaky_relu's default slope, which PreLookaheadLayer uses. */
#define LEAKY_SLOPE 0.01f
/* F.normalize's eps for the x-vector. */
#define XVEC_NORM_EPS 1e-12

/* LinearNoSubsampling (encoder.embed, encoder.up_embed): out.0 Linear, out.1 LayerNorm. */
typedef struct {
  const float *linear, *linear_bias;  /* (C, Cin), (C) */
  const float *norm, *norm_bias;      /* (C), (C) */
} LinearEmbed;

/* ConformerEncoderLayer with RelPositionMultiHeadedAttention (encoders.N, up_encoders.N). */
typedef struct {
  const float *norm_mha, *norm_mha_bias;      /* (C), (C) */
  const float *linear_q, *linear_q_bias;      /* (C, C), (C) */
  const float *linear_k, *linear_k_bias;      /* (C, C), (C) or NULL without key_bias */
  const float *linear_v, *linear_v_bias;      /* (C, C), (C) */
  const float *linear_out, *linear_out_bias;  /* (C, C), (C) */
  const float *linear_pos;                    /* (C, C), no bias */
  const float *pos_bias_u, *pos_bias_v;       /* (H, D) */
  const float *norm_ff, *norm_ff_bias;        /* (C), (C) */
  const float *w_1, *w_1_bias;                /* feed_forward.w_1 (I, C), (I) */
  const float *w_2, *w_2_bias;                /* feed_forward.w_2 (C, I), (C) */
} ConformerLayer;

struct _CbS3GenFlow {
  CbFlowConfig        fc;
  CbFlowEncoderConfig ec;
  int C, H, D, I, M, E;  /* encoder width, heads, head width, FFN units, mel bins, x-vector */
  int stride, k_lookahead, k_up;  /* up-sampling factor; conv1 and up_layer kernels */

  const float *input_embedding;                    /* (vocab_size, input_size) */
  const float *spk_affine, *spk_affine_bias;       /* spk_embed_affine_layer (M, E), (M) */
  LinearEmbed  embed, up_embed;
  const float *lookahead_conv1, *lookahead_conv1_bias;  /* (C, C, pre_lookahead_len + 1), (C) */
  const float *lookahead_conv2, *lookahead_conv2_bias;  /* (C, C, 3), (C) */
  ConformerLayer *encoders;                        /* (num_blocks) */
  const float *up_conv, *up_conv_bias;             /* up_layer.conv (C, C, 2·stride + 1), (C) */
  ConformerLayer *up_encoders;                     /* (num_up_blocks) */
  const float *after_norm, *after_norm_bias;       /* (C), (C) */
  const float *encoder_proj, *encoder_proj_bias;   /* (M, C), (M) */

  float     *inv_freq;  /* (C/2) sinusoid frequencies ω_m, as upstream rounds them */
  float      xscale;    /* √C, the embedding scale */
  int        max_tokens;
  GPtrArray *owned;
};

/* ---- weights ---- */

static void
load_linear_embed (CbWeightLoader *ld, LinearEmbed *m, int64_t C, int64_t Cin, const char *name)
{
  cb_wl_linear (ld, &m->linear, &m->linear_bias, C, Cin, TRUE, "flow.encoder.%s.out.0", name);
  m->norm = cb_wl_vec (ld, C, "flow.encoder.%s.out.1.weight", name);
  m->norm_bias = cb_wl_vec (ld, C, "flow.encoder.%s.out.1.bias", name);
}

static void
load_layer (CbWeightLoader *ld, ConformerLayer *l, const CbS3GenFlow *f, const char *stack, int i)
{
  const int64_t C = f->C, I = f->I;
  char *p = g_strdup_printf ("flow.encoder.%s.%d", stack, i);
  l->norm_mha = cb_wl_vec (ld, C, "%s.norm_mha.weight", p);
  l->norm_mha_bias = cb_wl_vec (ld, C, "%s.norm_mha.bias", p);
  cb_wl_linear (ld, &l->linear_q, &l->linear_q_bias, C, C, TRUE, "%s.self_attn.linear_q", p);
  cb_wl_linear (ld, &l->linear_k, &l->linear_k_bias, C, C, f->ec.key_bias,
                "%s.self_attn.linear_k", p);
  cb_wl_linear (ld, &l->linear_v, &l->linear_v_bias, C, C, TRUE, "%s.self_attn.linear_v", p);
  cb_wl_linear (ld, &l->linear_out, &l->linear_out_bias, C, C, TRUE, "%s.self_attn.linear_out",
                p);
  l->linear_pos = cb_wl_mat (ld, C, C, "%s.self_attn.linear_pos.weight", p);
  l->pos_bias_u = cb_wl_mat (ld, f->H, f->D, "%s.self_attn.pos_bias_u", p);
  l->pos_bias_v = cb_wl_mat (ld, f->H, f->D, "%s.self_attn.pos_bias_v", p);
  l->norm_ff = cb_wl_vec (ld, C, "%s.norm_ff.weight", p);
  l->norm_ff_bias = cb_wl_vec (ld, C, "%s.norm_ff.bias", p);
  cb_wl_linear (ld, &l->w_1, &l->w_1_bias, I, C, TRUE, "%s.feed_forward.w_1", p);
  cb_wl_linear (ld, &l->w_2, &l->w_2_bias, C, I, TRUE, "%s.feed_forward.w_2", p);
  g_free (p);
}

static gboolean
load_weights (CbS3GenFlow *f, const CbSafetensors *st, GError **error)
{
  CbWeightLoader ld;
  cb_weight_loader_init (&ld, st, f->owned, error);
  const int64_t C = f->C, Cin = f->ec.input_size, M = f->M;

  f->input_embedding = cb_wl_mat (&ld, f->fc.vocab_size, f->fc.input_size,
                                  "flow.input_embedding.weight");
  cb_wl_linear (&ld, &f->spk_affine, &f->spk_affine_bias, M, f->E, TRUE,
                "flow.spk_embed_affine_layer");
  load_linear_embed (&ld, &f->embed, C, Cin, "embed");
  f->lookahead_conv1 = cb_wl_3d (&ld, C, C, f->k_lookahead,
                                 "flow.encoder.pre_lookahead_layer.conv1.weight");
  f->lookahead_conv1_bias = cb_wl_vec (&ld, C, "flow.encoder.pre_lookahead_layer.conv1.bias");
  f->lookahead_conv2 = cb_wl_3d (&ld, C, C, LOOKAHEAD_CONV2_KERNEL,
                                 "flow.encoder.pre_lookahead_layer.conv2.weight");
  f->lookahead_conv2_bias = cb_wl_vec (&ld, C, "flow.encoder.pre_lookahead_layer.conv2.bias");
  for (int i = 0; i < f->ec.num_blocks; i++)
    load_layer (&ld, &f->encoders[i], f, "encoders", i);
  f->up_conv = cb_wl_3d (&ld, C, C, f->k_up, "flow.encoder.up_layer.conv.weight");
  f->up_conv_bias = cb_wl_vec (&ld, C, "flow.encoder.up_layer.conv.bias");
  /* upstream builds up_embed as Linear(input_size, ...) and feeds it output_size channels; the
   * two are equal (checked in cb_s3gen_flow_new) */
  load_linear_embed (&ld, &f->up_embed, C, Cin, "up_embed");
  for (int i = 0; i < f->ec.num_up_blocks; i++)
    load_layer (&ld, &f->up_encoders[i], f, "up_encoders", i);
  f->after_norm = cb_wl_vec (&ld, C, "flow.encoder.after_norm.weight");
  f->after_norm_bias = cb_wl_vec (&ld, C, "flow.encoder.after_norm.bias");
  cb_wl_linear (&ld, &f->encoder_proj, &f->encoder_proj_bias, M, C, TRUE, "flow.encoder_proj");
  return ld.ok;
}

/* ---- relative positions (EspnetRelPositionalEncoding) ---- */

/* ω_m = exp(2m · −ln(10000)/C), rounded step by step as upstream's float32 tensors are: the Python
 * double −ln(10000)/C becomes a float32 scalar, the product is a float32, exp is rounded once. */
static void
init_frequencies (CbS3GenFlow *f)
{
  const float step = (float) (-(log (10000.0) / f->C));
  for (int m = 0; m < f->C / 2; m++)
    f->inv_freq[m] = (float) exp ((double) ((float) (2 * m) * step));
}

/* pos[2T−1, C]: row r holds the sinusoid of signed distance d = T−1−r (upstream keeps d from T−1
 * down to −(T−1)): [2m] = sin(d·ω_m), [2m+1] = cos(d·ω_m). The rows for T' < T are the middle
 * 2T'−1 rows of this table, so one table serves both stages. sin is odd and cos even, exactly as
 * torch evaluates its separate negative half, so each |d| is evaluated once. */
static void
fill_positions (const CbS3GenFlow *f, float *pos, int T)
{
  const int C = f->C;
  for (int p = 0; p < T; p++) {
    float *plus = pos + (size_t) (T - 1 - p) * C, *minus = pos + (size_t) (T - 1 + p) * C;
    for (int m = 0; m < C / 2; m++) {
      /* the angle is a float32 product upstream; sin/cos of it are taken in double, correctly
       * rounded, where torch's float32 versions are within an ulp */
      const double angle = (double) ((float) p * f->inv_freq[m]);
      const float s = (float) sin (angle), c = (float) cos (angle);
      plus[2 * m] = s;
      plus[2 * m + 1] = c;
      minus[2 * m] = -s;
      minus[2 * m + 1] = c;
    }
  }
}

/* ---- scratch ---- */

/* Every activation of one encode, taken from the caller's arena in one place so that sizing
 * (arena NULL: count only) and allocation cannot disagree. Buffers are sized for the up-sampled
 * length T2 and reused by every stage, the T1 ones included. */
typedef struct {
  float *pos;                  /* (2·T2 − 1, C) sinusoids */
  float *h;                    /* (T2, C) the running hidden state */
  float *xn, *q, *k, *v;       /* (T2, C) normed input, projections (q then holds the heads' output) */
  float *p;                    /* (2·T2 − 1, C) linear_pos(pos) */
  float *hid;                  /* (T2, I) feed-forward hidden */
  float *qu, *qv, *kh, *vh, *oh;  /* (T2, D) one head: q + u, (q + v)/√D, k, v, output */
  float *ph;                   /* (2·T2 − 1, D) one head's projected positions */
  float *bd;                   /* (ATTN_ROW_BLOCK, T2 + ATTN_ROW_BLOCK − 1) a row block's position
                                  scores, before the shift */
  float *mu;                   /* (T2, M) encoder_proj output, time-major */
  float *col;                  /* convolution scratch */
} Buffers;

static guint64
layout_buffers (const CbS3GenFlow *f, int n_tokens, CbArena *arena, Buffers *b)
{
  const guint64 T1 = (guint64) n_tokens, T2 = T1 * (guint64) f->stride, R = 2 * T2 - 1;
  const guint64 C = f->C, D = f->D;
  const guint64 align = CB_ARENA_ALIGN / sizeof (float);
  const size_t col = MAX (MAX (cb_conv1d_scratch_floats (f->C, (int) T1, f->k_lookahead, 1, 0,
                                                         f->fc.pre_lookahead_len, 1, 1),
                               cb_conv1d_scratch_floats (f->C, (int) T1, LOOKAHEAD_CONV2_KERNEL, 1,
                                                         LOOKAHEAD_CONV2_KERNEL - 1, 0, 1, 1)),
                          cb_conv1d_scratch_floats (f->C, (int) T2, f->k_up, 1, 2 * f->stride, 0,
                                                    1, 1));
  guint64 total = 0;
#define TAKE(ptr, n)                                                    \
  do {                                                                  \
    guint64 n_ = MAX ((guint64) (n), 1);                                \
    total += (n_ + align - 1) / align * align;                          \
    if (arena) {                                                        \
      (ptr) = cb_arena_alloc (arena, n_);                               \
      g_assert ((ptr) != NULL);                                         \
    }                                                                   \
  } while (0)
  TAKE (b->pos, R * C);
  TAKE (b->h, T2 * C);
  TAKE (b->xn, T2 * C);
  TAKE (b->q, T2 * C);
  TAKE (b->k, T2 * C);
  TAKE (b->v, T2 * C);
  TAKE (b->p, R * C);
  TAKE (b->hid, T2 * f->I);
  TAKE (b->qu, T2 * D);
  TAKE (b->qv, T2 * D);
  TAKE (b->kh, T2 * D);
  TAKE (b->vh, T2 * D);
  TAKE (b->oh, T2 * D);
  TAKE (b->ph, R * D);
  TAKE (b->bd, MIN (ATTN_ROW_BLOCK, T2) * (T2 + MIN (ATTN_ROW_BLOCK, T2) - 1));
  TAKE (b->mu, T2 * f->M);
  TAKE (b->col, col);
#undef TAKE
  return total;
}

/* ---- conformer layer (pre-norm; self-attention then feed-forward, both residual) ---- */

/* dst[t, :] = (src[t, h·D .. h·D + D) + add[h·D ..]) · scale for t < rows; add may be NULL. */
static void
gather_head (float *dst, const float *src, const float *add, float scale, int rows, int C, int D,
             int h)
{
  for (int t = 0; t < rows; t++) {
    const float *s = src + (size_t) t * C + (size_t) h * D;
    float *d = dst + (size_t) t * D;
    if (add)
      for (int i = 0; i < D; i++)
        d[i] = (s[i] + add[(size_t) h * D + i]) * scale;
    else
      memcpy (d, s, sizeof (float) * D);
  }
}

/* RelPositionMultiHeadedAttention on b->xn (T rows) with sinusoids pos (2T−1 rows); the heads'
 * concatenated output is left in b->q. Score of head h, query i, key j:
 *   [(q_i + u_h)·k_j + (q_i + v_h)·P_h(i − j)] / √D
 * Upstream multiplies (q + v_h) by all 2T−1 projected distances and then rel_shift picks, in row i,
 * column T−1−i+j (distance i − j). Row i thus reads the window of T rows of P_h starting at T−1−i,
 * so a block of query rows i0 .. i0+n−1 needs only the T+n−1 rows starting at T−i0−n: their product
 * with the block (half the work of the full one) is the block's score bias, read by the attention
 * op from bd + n−1 with a row stride of T+n−2 (column n−1−a+j of local row a) — no shift copied.
 * The 1/√D goes into q + v_h first (exact for the power-of-two widths used) so the bias is already
 * on the scores' scale. */
static void
self_attention (const CbS3GenFlow *f, const ConformerLayer *l, const Buffers *b, const float *pos,
                int T)
{
  const int C = f->C, D = f->D, R = 2 * T - 1;
  const float scale = (float) (1.0 / sqrt ((double) D));

  cb_matmul (b->q, b->xn, l->linear_q, l->linear_q_bias, T, C, C);
  cb_matmul (b->k, b->xn, l->linear_k, l->linear_k_bias, T, C, C);
  cb_matmul (b->v, b->xn, l->linear_v, l->linear_v_bias, T, C, C);
  cb_matmul (b->p, pos, l->linear_pos, NULL, R, C, C);
  for (int h = 0; h < f->H; h++) {
    gather_head (b->qu, b->q, l->pos_bias_u, 1.0f, T, C, D, h);
    gather_head (b->qv, b->q, l->pos_bias_v, scale, T, C, D, h);
    gather_head (b->kh, b->k, NULL, 1.0f, T, C, D, h);
    gather_head (b->vh, b->v, NULL, 1.0f, T, C, D, h);
    gather_head (b->ph, b->p, NULL, 1.0f, R, C, D, h);
    for (int i0 = 0; i0 < T; i0 += ATTN_ROW_BLOCK) {
      const int n = MIN (ATTN_ROW_BLOCK, T - i0), width = T + n - 1;
      cb_matmul (b->bd, b->qv + (size_t) i0 * D, b->ph + (size_t) (T - i0 - n) * D, NULL, n, D,
                 width);
      cb_attention (b->oh + (size_t) i0 * D, b->qu + (size_t) i0 * D, b->kh, b->vh, n, T, 1, 1, D,
                    scale, b->bd + (n - 1), 0, (size_t) (width - 1), NULL);
    }
    /* head h's columns of q were consumed above, so they take its output */
    for (int t = 0; t < T; t++)
      memcpy (b->q + (size_t) t * C + (size_t) h * D, b->oh + (size_t) t * D, sizeof (float) * D);
  }
}

static void
conformer_layer (const CbS3GenFlow *f, const ConformerLayer *l, const Buffers *b,
                 const float *pos, int T)
{
  const int C = f->C, I = f->I;
  const float eps = (float) f->ec.layer_norm_eps;

  cb_layernorm (b->xn, b->h, l->norm_mha, l->norm_mha_bias, eps, T, C);
  self_attention (f, l, b, pos, T);
  cb_matmul_acc (b->h, b->q, l->linear_out, l->linear_out_bias, T, C, C);

  cb_layernorm (b->xn, b->h, l->norm_ff, l->norm_ff_bias, eps, T, C);
  cb_matmul (b->hid, b->xn, l->w_1, l->w_1_bias, T, C, I);
  cb_silu (b->hid, b->hid, (size_t) T * I);
  cb_matmul_acc (b->h, b->hid, l->w_2, l->w_2_bias, T, I, C);
}

/* ---- encoder stages ---- */

/* LinearNoSubsampling + the positional module's scaling: out = LayerNorm(x·Wᵀ + b) · √C. */
static void
linear_embed (const CbS3GenFlow *f, const LinearEmbed *m, float *out, const float *x, int T)
{
  cb_matmul (out, x, m->linear, m->linear_bias, T, f->ec.input_size, f->C);
  cb_layernorm (out, out, m->norm, m->norm_bias, (float) f->ec.embed_norm_eps, T, f->C);
  cb_scale (out, out, f->xscale, (size_t) T * f->C);
}

/* PreLookaheadLayer on b->h (T rows), channels-first: right-pad pre_lookahead_len frames, conv1,
 * LeakyReLU, left-pad 2 frames, conv2; added to its input. */
static void
pre_lookahead (const CbS3GenFlow *f, const Buffers *b, int T)
{
  const int C = f->C;
  cb_transpose (b->q, b->h, T, C);
  cb_conv1d (b->k, b->q, f->lookahead_conv1, f->lookahead_conv1_bias, C, T, C, f->k_lookahead, 1,
             0, f->fc.pre_lookahead_len, 1, 1, b->col);
  cb_leaky_relu (b->k, b->k, (size_t) C * T, LEAKY_SLOPE);
  cb_conv1d (b->v, b->k, f->lookahead_conv2, f->lookahead_conv2_bias, C, T, C,
             LOOKAHEAD_CONV2_KERNEL, 1, LOOKAHEAD_CONV2_KERNEL - 1, 0, 1, 1, b->col);
  cb_transpose (b->xn, b->v, C, T);
  cb_add (b->h, b->h, b->xn, (size_t) T * C);
}

/* Upsample1D on b->h (T1 rows) into b->xn (stride·T1 rows, time-major): nearest-neighbour repeat
 * (frame t becomes frames stride·t .. stride·t + stride − 1), left-pad 2·stride frames, conv with
 * kernel 2·stride + 1. The repeat is written channels-first straight from the time-major input. */
static void
upsample (const CbS3GenFlow *f, const Buffers *b, int T1)
{
  const int C = f->C, s = f->stride, T2 = s * T1;
  for (int c = 0; c < C; c++) {
    float *row = b->q + (size_t) c * T2;
    for (int t = 0; t < T2; t++)
      row[t] = b->h[(size_t) (t / s) * C + c];
  }
  cb_conv1d (b->k, b->q, f->up_conv, f->up_conv_bias, C, T2, C, f->k_up, 1, 2 * s, 0, 1, 1,
             b->col);
  cb_transpose (b->xn, b->k, C, T2);
}

/* ---- public API ---- */

static gboolean
check_config (const CbConfig *cfg, GError **error)
{
  const CbFlowConfig *fc = &cfg->flow;
  const CbFlowEncoderConfig *ec = &cfg->flow_encoder;
  /* cb_config_validate enforces these; a hand-made config must not reach the arithmetic below */
  if (fc->input_size != ec->input_size || ec->input_size != ec->output_size
      || ec->attention_heads < 1 || ec->output_size % ec->attention_heads != 0
      || ec->output_size % 2 != 0
      || ec->upsample_stride < 1 || ec->upsample_stride != fc->token_mel_ratio
      || fc->pre_lookahead_len < 0 || fc->pre_lookahead_len != ec->pre_lookahead_len
      || ec->linear_units < 1 || fc->output_size < 1 || fc->spk_embed_dim < 1
      || fc->vocab_size < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "s3gen flow: needs s3gen_flow.input_size (%d) = s3gen_flow_encoder.input_size "
                 "(%d) = output_size (%d) (upstream's up_embed), an even output_size divisible by "
                 "attention_heads (%d), upsample_stride (%d) = token_mel_ratio (%d) >= 1 and "
                 "equal pre_lookahead_len (%d, %d)",
                 fc->input_size, ec->input_size, ec->output_size, ec->attention_heads,
                 ec->upsample_stride, fc->token_mel_ratio, fc->pre_lookahead_len,
                 ec->pre_lookahead_len);
    return FALSE;
  }
  return TRUE;
}

/* Keep every product of two sizes the ops see (T2 · 2T2, T2 · widths, conv columns) within int. */
static int
max_tokens (const CbS3GenFlow *f)
{
  const gint64 conv_rows = (gint64) f->C * MAX (f->k_up, f->k_lookahead);
  const gint64 widest = MAX (MAX (f->C, f->I), MAX (f->M, conv_rows));
  gint64 t2 = MIN ((gint64) sqrt ((double) G_MAXINT / 2.0), G_MAXINT / widest);
  return (int) (t2 / f->stride);
}

CbS3GenFlow *
cb_s3gen_flow_new (const CbConfig *cfg, const CbSafetensors *st, GError **error)
{
  if (!check_config (cfg, error))
    return NULL;
  CbS3GenFlow *f = g_new0 (CbS3GenFlow, 1);
  f->fc = cfg->flow;
  f->ec = cfg->flow_encoder;
  f->C = f->ec.output_size;
  f->H = f->ec.attention_heads;
  f->D = f->C / f->H;
  f->I = f->ec.linear_units;
  f->M = f->fc.output_size;
  f->E = f->fc.spk_embed_dim;
  f->stride = f->ec.upsample_stride;
  f->k_lookahead = f->fc.pre_lookahead_len + 1;
  f->k_up = 2 * f->stride + 1;
  f->xscale = (float) sqrt ((double) f->C);
  f->max_tokens = max_tokens (f);
  f->owned = g_ptr_array_new_with_free_func (g_free);
  f->encoders = g_new0 (ConformerLayer, f->ec.num_blocks);
  f->up_encoders = g_new0 (ConformerLayer, f->ec.num_up_blocks);
  f->inv_freq = g_new (float, f->C / 2);
  init_frequencies (f);
  if (!load_weights (f, st, error)) {
    cb_s3gen_flow_free (f);
    return NULL;
  }
  return f;
}

void
cb_s3gen_flow_free (CbS3GenFlow *flow)
{
  if (!flow)
    return;
  g_free (flow->encoders);
  g_free (flow->up_encoders);
  g_free (flow->inv_freq);
  g_ptr_array_unref (flow->owned);
  g_free (flow);
}

int
cb_s3gen_flow_max_tokens (const CbS3GenFlow *flow)
{
  return flow->max_tokens;
}

guint64
cb_s3gen_flow_scratch_floats (const CbS3GenFlow *flow, int n_tokens)
{
  if (n_tokens < 1 || n_tokens > flow->max_tokens)
    return 0;
  Buffers b;
  return layout_buffers (flow, n_tokens, NULL, &b);
}

void
cb_s3gen_flow_speaker (const CbS3GenFlow *flow, const float *embedding, float *spks)
{
  const int E = flow->E;
  double sum = 0.0;
  for (int i = 0; i < E; i++)
    sum += (double) embedding[i] * embedding[i];
  const float norm = (float) MAX (sqrt (sum), XVEC_NORM_EPS);
  for (int o = 0; o < flow->M; o++) {
    const float *w = flow->spk_affine + (size_t) o * E;
    double acc = 0.0;
    for (int i = 0; i < E; i++)
      acc += (double) w[i] * (embedding[i] / norm);
    spks[o] = (float) (acc + flow->spk_affine_bias[o]);
  }
}

gboolean
cb_s3gen_flow_encode (CbS3GenFlow *flow, CbArena *scratch, const int32_t *tokens, int n_tokens,
                      float *mu, float *h_out, GError **error)
{
  const CbS3GenFlow *f = flow;
  if (n_tokens < 1 || n_tokens > f->max_tokens || !tokens || !mu || !scratch) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "s3gen flow: %d tokens (must be 1 .. %d, with token, mu and scratch buffers)",
                 n_tokens,
                 f->max_tokens);
    return FALSE;
  }
  for (int t = 0; t < n_tokens; t++) {
    if (tokens[t] < 0 || tokens[t] >= f->fc.vocab_size) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "s3gen flow: token %d is %d, outside the vocabulary [0, %d)", t, tokens[t],
                   f->fc.vocab_size);
      return FALSE;
    }
  }
  Buffers b;
  const guint64 need = layout_buffers (f, n_tokens, NULL, &b);
  const gsize mark = cb_arena_mark (scratch);
  if (need > (scratch->size - mark) / sizeof (float)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "s3gen flow: %d tokens need %" G_GUINT64_FORMAT " floats of scratch, the arena "
                 "has %" G_GSIZE_FORMAT " free", n_tokens, need,
                 (scratch->size - mark) / sizeof (float));
    return FALSE;
  }
  layout_buffers (f, n_tokens, scratch, &b);

  const int C = f->C, Cin = f->ec.input_size, T1 = n_tokens, T2 = f->stride * T1;
  fill_positions (f, b.pos, T2);
  const float *pos1 = b.pos + (size_t) (T2 - T1) * C;  /* the middle 2·T1 − 1 rows */

  for (int t = 0; t < T1; t++)
    memcpy (b.xn + (size_t) t * Cin, f->input_embedding + (size_t) tokens[t] * Cin,
            sizeof (float) * Cin);
  linear_embed (f, &f->embed, b.h, b.xn, T1);
  pre_lookahead (f, &b, T1);
  for (int i = 0; i < f->ec.num_blocks; i++)
    conformer_layer (f, &f->encoders[i], &b, pos1, T1);

  upsample (f, &b, T1);
  linear_embed (f, &f->up_embed, b.h, b.xn, T2);
  for (int i = 0; i < f->ec.num_up_blocks; i++)
    conformer_layer (f, &f->up_encoders[i], &b, b.pos, T2);
  cb_layernorm (b.h, b.h, f->after_norm, f->after_norm_bias, (float) f->ec.embed_norm_eps, T2, C);

  if (h_out)
    memcpy (h_out, b.h, sizeof (float) * T2 * C);
  cb_matmul (b.mu, b.h, f->encoder_proj, f->encoder_proj_bias, T2, C, f->M);
  cb_transpose (mu, b.mu, T2, f->M);
  cb_arena_reset (scratch, mark);
  return TRUE;
}
