/* s3gen-cfm.c — the CFM estimator (ConditionalDecoder) and the Euler CFG solver on the CPU.
 * See s3gen-cfm.h for the network and the time-major layout. */
#include "s3gen-cfm.h"

#include "ops.h"
#include "weights-view.h"

#include <math.h>
#include <string.h>

/* Kernel of every CausalConv1d in the estimator (hard-coded upstream: CausalConv1d(dim, dim, 3)). */
#define KSIZE 3
/* Zero rows in front of each row's frames in a padded buffer: the causal convolution's left pad. */
#define PAD (KSIZE - 1)
/* SinusoidalPosEmb's `scale` default. */
#define TIME_SCALE 1000.0f
/* Longest T a call accepts (sizes stay far from any overflow): 2^20 frames, 5.8 hours. */
#define MAX_FRAMES (1 << 20)

/* CausalConv1d(ci → co, KSIZE) with bias. The weight is reordered once so that output frame t is a
 * product with KSIZE consecutive input rows of a padded time-major buffer:
 * w[o, k·ci + c] = weight[o, c, k]. */
typedef struct {
  int          ci, co;
  float       *w;     /* (co, KSIZE·ci), owned */
  const float *bias;  /* (co) */
} CfmConv;

/* CausalBlock1D: block.0 CausalConv1d, block.2 LayerNorm over channels, then Mish. */
typedef struct {
  CfmConv      conv;
  const float *ln, *ln_bias;  /* (co) */
} CfmCausalBlock;

/* CausalResnetBlock1D(ci → C). */
typedef struct {
  CfmCausalBlock block1, block2;
  const float   *mlp, *mlp_bias;  /* mlp.1: (C, TE), (C) — applied to Mish(temb) */
  const float   *res, *res_bias;  /* res_conv: (C, ci, 1) used as (C, ci), (C) */
} CfmResnet;

/* nn.Linear: weight (out, in) as the checkpoint's F32 view and, after cb_s3gen_cfm_to_bf16, its BF16
 * copy, which is then the one used. */
typedef struct {
  int            in, out;
  const float   *w, *bias;  /* bias NULL: none */
  const guint16 *w16;
} CfmLinear;

/* BasicTransformerBlock (norm1 → attn1 → residual, norm3 → ff → residual). */
typedef struct {
  const float *norm1, *norm1_bias;  /* (C) */
  CfmLinear    to_q, to_k, to_v;    /* attn1.to_{q,k,v} (inner ← C), no bias */
  CfmLinear    to_out;              /* attn1.to_out.0 (C ← inner) */
  const float *norm3, *norm3_bias;  /* (C) */
  CfmLinear    ff_in;               /* ff.net.0.proj (FF ← C); exact GELU after it */
  CfmLinear    ff_out;              /* ff.net.2 (C ← FF) */
} CfmTransformer;

/* One U-Net stage: down_blocks.0, mid_blocks.i or up_blocks.0 (the last conv: down/up only). */
typedef struct {
  CfmResnet       resnet;
  CfmTransformer *blocks;  /* (n_blocks) */
  CfmConv         conv;    /* down_blocks.0.2 / up_blocks.0.2; w NULL for mid stages */
} CfmStage;

struct _CbS3GenCfm {
  const CbConfig *cfg;
  int             F;         /* mel bins: x, mu, cond and output channels (80) */
  int             S;         /* speaker embedding width (80) */
  int             in_ch;     /* F + F + S + F (320) */
  int             C;         /* U-Net width, channels[0] (256) */
  int             TE;        /* time embedding width, 4·C */
  int             H, D, inner, FF;
  int             n_blocks, n_stages;  /* stages: down, num_mid_blocks × mid, up */
  float           eps;
  float          *time_freqs;  /* (in_ch / 2) SinusoidalPosEmb frequencies */
  const float    *time_1, *time_1_bias;  /* time_mlp.linear_1 (TE, in_ch), (TE) */
  const float    *time_2, *time_2_bias;  /* time_mlp.linear_2 (TE, TE), (TE) */
  CfmStage       *stages;
  CfmCausalBlock  final_block;
  const float    *final_proj, *final_proj_bias;  /* (F, C, 1) as (F, C), (F) */
  int             n_steps;
  float          *t_span;  /* (n_steps + 1) */
  float           cfg_rate;
  GPtrArray      *owned;
  gboolean        bf16;         /* the transformer blocks' linears use their BF16 copies */
  guint64         frame_evals;  /* atomic */
};

/* ---------------------------------------------------------------------------------------------- */
/* weights */

static void
load_conv (CbWeightLoader *ld, GPtrArray *owned, CfmConv *cv, int ci, int co, const char *prefix)
{
  cv->ci = ci;
  cv->co = co;
  const float *w = cb_wl_3d (ld, co, ci, KSIZE, "%s.weight", prefix);
  cv->bias = cb_wl_vec (ld, co, "%s.bias", prefix);
  if (!w)
    return;
  cv->w = g_new (float, (gsize) co * KSIZE * ci);
  g_ptr_array_add (owned, cv->w);
  for (int o = 0; o < co; o++)
    for (int c = 0; c < ci; c++)
      for (int k = 0; k < KSIZE; k++)
        cv->w[((gsize) o * KSIZE + k) * ci + c] = w[((gsize) o * ci + c) * KSIZE + k];
}

static void
load_causal_block (CbWeightLoader *ld, GPtrArray *owned, CfmCausalBlock *b, int ci, int co,
                   const char *prefix)
{
  char *conv = g_strdup_printf ("%s.block.0", prefix);
  load_conv (ld, owned, &b->conv, ci, co, conv);
  g_free (conv);
  b->ln = cb_wl_vec (ld, co, "%s.block.2.weight", prefix);
  b->ln_bias = cb_wl_vec (ld, co, "%s.block.2.bias", prefix);
}

static void
load_linear (CbWeightLoader *ld, CfmLinear *l, int out, int in, gboolean bias, const char *block,
             const char *name)
{
  l->in = in;
  l->out = out;
  cb_wl_linear (ld, &l->w, &l->bias, out, in, bias, "%s.%s", block, name);
}

static void
load_transformer (CbWeightLoader *ld, const CbS3GenCfm *m, CfmTransformer *t, const char *p)
{
  const int C = m->C;
  t->norm1 = cb_wl_vec (ld, C, "%s.norm1.weight", p);
  t->norm1_bias = cb_wl_vec (ld, C, "%s.norm1.bias", p);
  load_linear (ld, &t->to_q, m->inner, C, FALSE, p, "attn1.to_q");
  load_linear (ld, &t->to_k, m->inner, C, FALSE, p, "attn1.to_k");
  load_linear (ld, &t->to_v, m->inner, C, FALSE, p, "attn1.to_v");
  load_linear (ld, &t->to_out, C, m->inner, TRUE, p, "attn1.to_out.0");
  t->norm3 = cb_wl_vec (ld, C, "%s.norm3.weight", p);
  t->norm3_bias = cb_wl_vec (ld, C, "%s.norm3.bias", p);
  load_linear (ld, &t->ff_in, m->FF, C, TRUE, p, "ff.net.0.proj");
  load_linear (ld, &t->ff_out, C, m->FF, TRUE, p, "ff.net.2");
}

/* A stage under `prefix` (e.g. "...down_blocks.0"): resnet `.0`, transformers `.1.j`, and when
 * `with_conv` the causal conv `.2`. */
static void
load_stage (CbWeightLoader *ld, CbS3GenCfm *m, CfmStage *s, int ci, gboolean with_conv,
            const char *prefix)
{
  const int C = m->C;
  char *p = g_strdup_printf ("%s.0", prefix);
  char *sub = g_strdup_printf ("%s.block1", p);
  load_causal_block (ld, m->owned, &s->resnet.block1, ci, C, sub);
  g_free (sub);
  sub = g_strdup_printf ("%s.block2", p);
  load_causal_block (ld, m->owned, &s->resnet.block2, C, C, sub);
  g_free (sub);
  cb_wl_linear (ld, &s->resnet.mlp, &s->resnet.mlp_bias, C, m->TE, TRUE, "%s.mlp.1", p);
  s->resnet.res = cb_wl_3d (ld, C, ci, 1, "%s.res_conv.weight", p);
  s->resnet.res_bias = cb_wl_vec (ld, C, "%s.res_conv.bias", p);
  g_free (p);

  s->blocks = g_new0 (CfmTransformer, m->n_blocks);
  for (int j = 0; j < m->n_blocks; j++) {
    p = g_strdup_printf ("%s.1.%d", prefix, j);
    load_transformer (ld, m, &s->blocks[j], p);
    g_free (p);
  }
  if (with_conv) {
    p = g_strdup_printf ("%s.2", prefix);
    load_conv (ld, m->owned, &s->conv, C, C, p);
    g_free (p);
  }
}

/* upstream's t_span in float32: torch.linspace(0, 1, n + 1) (the first half counted up from 0, the
 * second down from 1, as ATen's linspace kernel does), then 1 − cos(t · 0.5 · π) with every product
 * rounded to float; cos is evaluated in double and rounded (torch's float cos is within an ulp). */
static void
compute_t_span (float *t_span, int n)
{
  const float step = 1.0f / (float) n;
  const int steps = n + 1, halfway = steps / 2;
  for (int i = 0; i < steps; i++) {
    float lin = i < halfway ? step * (float) i : 1.0f - step * (float) (steps - i - 1);
    float angle = lin * 0.5f * (float) G_PI;
    t_span[i] = 1.0f - (float) cos ((double) angle);
  }
}

CbS3GenCfm *
cb_s3gen_cfm_new (const CbConfig *cfg, const CbSafetensors *st, GError **error)
{
  const CbFlowDecoderConfig *d = &cfg->flow_decoder;
  if (d->meanflow) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "s3gen_flow_decoder.meanflow: the meanflow (Turbo) estimator is not implemented");
    return NULL;
  }
  if (d->channels.n != 1 || d->in_channels != 3 * d->out_channels + cfg->cfm.spk_emb_dim
      || d->in_channels % 2 != 0 || d->in_channels < 4) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "s3gen_flow_decoder: in_channels %d must be 3 × out_channels (%d) + spk_emb_dim "
                 "(%d), even, with a single U-Net level (%d given)", d->in_channels,
                 d->out_channels, cfg->cfm.spk_emb_dim, d->channels.n);
    return NULL;
  }

  CbS3GenCfm *m = g_new0 (CbS3GenCfm, 1);
  m->cfg = cfg;
  m->F = d->out_channels;
  m->S = cfg->cfm.spk_emb_dim;
  m->in_ch = d->in_channels;
  m->C = d->channels.v[0];
  m->TE = 4 * m->C;
  m->H = d->num_heads;
  m->D = d->attention_head_dim;
  m->inner = m->H * m->D;
  m->FF = d->ff_mult * m->C;
  m->n_blocks = d->n_blocks;
  m->n_stages = d->num_mid_blocks + 2;
  m->eps = (float) d->layer_norm_eps;
  m->n_steps = cfg->cfm.n_timesteps;
  m->cfg_rate = (float) cfg->cfm.inference_cfg_rate;
  m->owned = g_ptr_array_new_with_free_func (g_free);

  /* SinusoidalPosEmb: exp(k · −(ln 10000 / (half − 1))) with the exponent rounded to float as
   * torch's `arange(half).float() * -emb` is */
  const int half = m->in_ch / 2;
  const float neg = (float) -(log (10000.0) / (half - 1));
  m->time_freqs = g_new (float, half);
  for (int k = 0; k < half; k++)
    m->time_freqs[k] = (float) exp ((double) ((float) k * neg));

  m->t_span = g_new (float, m->n_steps + 1);
  compute_t_span (m->t_span, m->n_steps);

  CbWeightLoader ld;
  cb_weight_loader_init (&ld, st, m->owned, error);
  const char *E = "flow.decoder.estimator";
  cb_wl_linear (&ld, &m->time_1, &m->time_1_bias, m->TE, m->in_ch, TRUE, "%s.time_mlp.linear_1",
                E);
  cb_wl_linear (&ld, &m->time_2, &m->time_2_bias, m->TE, m->TE, TRUE, "%s.time_mlp.linear_2", E);

  m->stages = g_new0 (CfmStage, m->n_stages);
  char *p = g_strdup_printf ("%s.down_blocks.0", E);
  load_stage (&ld, m, &m->stages[0], m->in_ch, TRUE, p);
  g_free (p);
  for (int i = 0; i < d->num_mid_blocks; i++) {
    p = g_strdup_printf ("%s.mid_blocks.%d", E, i);
    load_stage (&ld, m, &m->stages[1 + i], m->C, FALSE, p);
    g_free (p);
  }
  p = g_strdup_printf ("%s.up_blocks.0", E);
  load_stage (&ld, m, &m->stages[m->n_stages - 1], 2 * m->C, TRUE, p);
  g_free (p);

  p = g_strdup_printf ("%s.final_block", E);
  load_causal_block (&ld, m->owned, &m->final_block, m->C, m->C, p);
  g_free (p);
  m->final_proj = cb_wl_3d (&ld, m->F, m->C, 1, "%s.final_proj.weight", E);
  m->final_proj_bias = cb_wl_vec (&ld, m->F, "%s.final_proj.bias", E);

  if (!ld.ok) {
    cb_s3gen_cfm_free (m);
    return NULL;
  }
  return m;
}

void
cb_s3gen_cfm_free (CbS3GenCfm *m)
{
  if (!m)
    return;
  for (int i = 0; m->stages && i < m->n_stages; i++)
    g_free (m->stages[i].blocks);
  g_free (m->stages);
  g_free (m->time_freqs);
  g_free (m->t_span);
  if (m->owned)
    g_ptr_array_unref (m->owned);
  g_free (m);
}

gsize
cb_s3gen_cfm_to_bf16 (CbS3GenCfm *m)
{
  if (m->bf16)
    return 0;
  gsize bytes = 0;
  for (int i = 0; i < m->n_stages; i++)
    for (int j = 0; j < m->n_blocks; j++) {
      CfmTransformer *t = &m->stages[i].blocks[j];
      CfmLinear *all[] = { &t->to_q, &t->to_k, &t->to_v, &t->to_out, &t->ff_in, &t->ff_out };
      for (guint k = 0; k < G_N_ELEMENTS (all); k++) {
        const gsize n = (gsize) all[k]->out * all[k]->in;
        all[k]->w16 = cb_bf16_copy (m->owned, all[k]->w, n);
        bytes += n * sizeof (guint16);
      }
    }
  m->bf16 = TRUE;
  return bytes;
}

gboolean
cb_s3gen_cfm_is_bf16 (const CbS3GenCfm *m)
{
  return m->bf16;
}

int
cb_s3gen_cfm_n_steps (const CbS3GenCfm *m)
{
  return m->n_steps;
}

const float *
cb_s3gen_cfm_t_span (const CbS3GenCfm *m)
{
  return m->t_span;
}

guint64
cb_s3gen_cfm_frame_evals (const CbS3GenCfm *m)
{
  return __atomic_load_n (&m->frame_evals, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------- */
/* buffers */

/* One evaluation's activations. "Padded" buffers are [B][PAD + T][width]: each row's frames follow
 * PAD zero rows, so a causal convolution reads its left context from memory. */
typedef struct {
  float *sin_emb;  /* (B, in_ch) */
  float *hid;      /* (B, TE) */
  float *temb;     /* (B, TE) Mish(time embedding): what every resnet's mlp reads */
  float *tb;       /* (B, C) one resnet's time term */
  float *inp;      /* padded (in_ch): the packed input */
  float *cat;      /* padded (2C): the up stage's [h ; skip] */
  float *pad_a;    /* padded (C): a stage's or a conv's input */
  float *pad_b;    /* padded (C): block1's output (block2's input) */
  float *h;        /* (B·T, C) the stream between blocks */
  float *xn;       /* (B·T, C) normalised stream */
  float *work;     /* (B·T, max(3·inner, FF)): q, k, v, then the feed-forward hidden layer */
  float *att;      /* (B·T, inner) */
  float *o;        /* (B·T, F) final projection, time-major */
} EstBuffers;

/* Extra buffers of a solve (B = 2). */
typedef struct {
  float *x, *mu, *cond, *v;  /* (2, F, T) */
  float *spks;               /* (2, S) */
  float  t[2];
} SolveBuffers;

/* floats rounded up to the arena's alignment */
static guint64
aligned_floats (guint64 n)
{
  const guint64 a = CB_ARENA_ALIGN / sizeof (float);
  return (n + a - 1) / a * a;
}

/* Take n floats from `arena`, or, with arena NULL, only count them in *total. */
static float *
take (CbArena *arena, guint64 n, guint64 *total)
{
  *total += aligned_floats (n);
  return arena ? cb_arena_alloc (arena, n) : NULL;
}

static guint64
est_layout (const CbS3GenCfm *m, int B, int T, CbArena *arena, EstBuffers *b)
{
  const guint64 N = (guint64) B * T, Tp = (guint64) B * (T + PAD);
  guint64 total = 0;
  EstBuffers dummy;
  if (!b)
    b = &dummy;
  b->sin_emb = take (arena, (guint64) B * m->in_ch, &total);
  b->hid = take (arena, (guint64) B * m->TE, &total);
  b->temb = take (arena, (guint64) B * m->TE, &total);
  b->tb = take (arena, (guint64) B * m->C, &total);
  b->inp = take (arena, Tp * m->in_ch, &total);
  b->cat = take (arena, Tp * 2 * m->C, &total);
  b->pad_a = take (arena, Tp * m->C, &total);
  b->pad_b = take (arena, Tp * m->C, &total);
  b->h = take (arena, N * m->C, &total);
  b->xn = take (arena, N * m->C, &total);
  b->work = take (arena, N * MAX (3 * m->inner, m->FF), &total);
  b->att = take (arena, N * m->inner, &total);
  b->o = take (arena, N * m->F, &total);
  return total;
}

static guint64
solve_layout (const CbS3GenCfm *m, int T, CbArena *arena, SolveBuffers *b)
{
  const guint64 n = 2 * (guint64) m->F * T;
  guint64 total = 0;
  SolveBuffers dummy;
  if (!b)
    b = &dummy;
  b->x = take (arena, n, &total);
  b->mu = take (arena, n, &total);
  b->cond = take (arena, n, &total);
  b->v = take (arena, n, &total);
  b->spks = take (arena, 2 * (guint64) m->S, &total);
  return total;
}

guint64
cb_s3gen_cfm_scratch_floats (const CbS3GenCfm *m, int B, int T)
{
  if (B < 1 || B > 2 || T < 1 || T > MAX_FRAMES)
    return 0;
  return est_layout (m, B, T, NULL, NULL) + (B == 2 ? solve_layout (m, T, NULL, NULL) : 0);
}

static gboolean
arena_has_room (const CbArena *arena, guint64 floats)
{
  return arena && arena->size - arena->used >= floats * sizeof (float);
}

/* ---------------------------------------------------------------------------------------------- */
/* layers (time-major) */

/* Frame t of row b in a padded buffer of `width` channels (writable when buf is; as strchr). */
static inline float *
padded_row (const float *buf, int b, int T, int width, int t)
{
  return (float *) buf + ((gsize) b * (T + PAD) + PAD + t) * width;
}

/* Zero the PAD rows in front of each row's frames. */
static void
clear_pads (float *buf, int B, int T, int width)
{
  for (int b = 0; b < B; b++)
    memset (padded_row (buf, b, T, width, -PAD), 0, sizeof (float) * PAD * width);
}

/* dst[t · dst_ld + c] = src[c · T + t] for a channels-first src (n_ch, T): a block of channels of
 * time-major rows. Tiled so reads and writes both stay within a few cache lines. */
static void
transpose_into (float *dst, int dst_ld, const float *src, int n_ch, int T)
{
  const int tile = 32;
  for (int c0 = 0; c0 < n_ch; c0 += tile)
    for (int t0 = 0; t0 < T; t0 += tile)
      for (int c = c0; c < MIN (c0 + tile, n_ch); c++)
        for (int t = t0; t < MIN (t0 + tile, T); t++)
          dst[(gsize) t * dst_ld + c] = src[(gsize) c * T + t];
}

/* Copy (T, width) time-major rows into a strided destination (ld floats apart). */
static void
copy_rows (float *dst, int dst_ld, const float *src, int src_ld, int T, int width)
{
  for (int t = 0; t < T; t++)
    memcpy (dst + (gsize) t * dst_ld, src + (gsize) t * src_ld, sizeof (float) * width);
}

/* CausalConv1d of one row: out (T, co) = Σ_k inp[t + k − PAD] · W_k, where `x` points at frame 0
 * of a padded buffer of cv->ci channels. Each tap k is one GEMM over the rows starting at frame
 * k − PAD (the zero pad supplies the causal left context), all accumulated onto the bias. */
static void
causal_conv (const CfmConv *cv, const float *x, int T, float *out)
{
  const int ci = cv->ci, co = cv->co;
  for (int t = 0; t < T; t++)
    memcpy (out + (gsize) t * co, cv->bias, sizeof (float) * co);
  for (int k = 0; k < KSIZE; k++)
    cb_gemm (FALSE, TRUE, T, co, ci, 1.0f, x + (gssize) (k - PAD) * ci, ci, cv->w + (gsize) k * ci,
             KSIZE * ci, 1.0f, out, co);
}

/* LayerNorm over channels then Mish, in place on (rows, C) time-major data (CausalBlock1D's tail). */
static void
norm_mish (const CfmCausalBlock *blk, float eps, float *x, int rows)
{
  const int C = blk->conv.co;
  cb_layernorm (x, x, blk->ln, blk->ln_bias, eps, rows, C);
  cb_mish (x, x, (size_t) rows * C);
}

/* CausalResnetBlock1D: block1(x) + mlp(Mish(temb)) → block2 → + res_conv(x).
 * x: padded buffer of r->block1.conv.ci channels; out: (B·T, C). Uses pad_b for block1's output. */
static void
resnet_forward (const CbS3GenCfm *m, const CfmResnet *r, EstBuffers *b, const float *x, int B,
                int T, float *out)
{
  const int C = m->C, ci = r->block1.conv.ci;
  cb_matmul (b->tb, b->temb, r->mlp, r->mlp_bias, B, m->TE, C);
  for (int row = 0; row < B; row++) {
    float *a = padded_row (b->pad_b, row, T, C, 0);
    causal_conv (&r->block1.conv, padded_row (x, row, T, ci, 0), T, a);
    norm_mish (&r->block1, m->eps, a, T);
    cb_add_bias (a, a, b->tb + (gsize) row * C, T, C);
  }
  for (int row = 0; row < B; row++)
    causal_conv (&r->block2.conv, padded_row (b->pad_b, row, T, C, 0), T,
                 out + (gsize) row * T * C);
  norm_mish (&r->block2, m->eps, out, B * T);
  for (int row = 0; row < B; row++)
    cb_matmul_acc (out + (gsize) row * T * C, padded_row (x, row, T, ci, 0), r->res,
                   r->res_bias, T, ci, C);
}

/* out (rows, l->out) = inp · Wᵀ + bias, or added to out when `accumulate` (the residual stream). */
static void
linear_forward (const CfmLinear *l, const float *inp, int rows, float *out, gboolean accumulate)
{
  if (l->w16)
    (accumulate ? cb_matmul_bf16_acc : cb_matmul_bf16) (out, inp, l->w16, l->bias, rows, l->in,
                                                         l->out);
  else
    (accumulate ? cb_matmul_acc : cb_matmul) (out, inp, l->w, l->bias, rows, l->in, l->out);
}

/* BasicTransformerBlock on the stream h (B·T, C), in place. Attention is full within each row. */
static void
transformer_forward (const CbS3GenCfm *m, const CfmTransformer *tb, EstBuffers *b, int B, int T)
{
  const int C = m->C, N = B * T, inner = m->inner;
  float *q = b->work, *k = q + (gsize) N * inner, *v = k + (gsize) N * inner;

  cb_layernorm (b->xn, b->h, tb->norm1, tb->norm1_bias, m->eps, N, C);
  linear_forward (&tb->to_q, b->xn, N, q, FALSE);
  linear_forward (&tb->to_k, b->xn, N, k, FALSE);
  linear_forward (&tb->to_v, b->xn, N, v, FALSE);
  const float scale = 1.0f / sqrtf ((float) m->D);
  for (int row = 0; row < B; row++) {
    gsize off = (gsize) row * T * inner;
    cb_attention (b->att + off, q + off, k + off, v + off, T, T, m->H, m->H, m->D, scale, NULL, 0,
                  0, NULL);
  }
  linear_forward (&tb->to_out, b->att, N, b->h, TRUE);

  cb_layernorm (b->xn, b->h, tb->norm3, tb->norm3_bias, m->eps, N, C);
  linear_forward (&tb->ff_in, b->xn, N, b->work, FALSE);
  cb_gelu (b->work, b->work, (size_t) N * m->FF);
  linear_forward (&tb->ff_out, b->work, N, b->h, TRUE);
}

/* resnet + transformer blocks of one stage, from the padded input x to the stream h */
static void
stage_forward (const CbS3GenCfm *m, const CfmStage *s, EstBuffers *b, const float *x, int B, int T)
{
  resnet_forward (m, &s->resnet, b, x, B, T, b->h);
  for (int j = 0; j < m->n_blocks; j++)
    transformer_forward (m, &s->blocks[j], b, B, T);
}

/* Copy the stream h into a padded buffer of C channels (the next conv's or stage's input). */
static void
h_to_padded (const CbS3GenCfm *m, EstBuffers *b, float *dst, int B, int T)
{
  for (int row = 0; row < B; row++)
    memcpy (padded_row (dst, row, T, m->C, 0), b->h + (gsize) row * T * m->C,
            sizeof (float) * T * m->C);
}

/* Sinusoidal embedding → linear_1 → SiLU → linear_2, then the Mish every resnet's mlp starts with. */
static void
time_embedding (const CbS3GenCfm *m, EstBuffers *b, const float *t, int B)
{
  const int half = m->in_ch / 2;
  for (int row = 0; row < B; row++) {
    float *e = b->sin_emb + (gsize) row * m->in_ch;
    const float st = TIME_SCALE * t[row];  /* `scale * x` is formed first upstream */
    for (int k = 0; k < half; k++) {
      const float a = st * m->time_freqs[k];
      e[k] = (float) sin ((double) a);
      e[half + k] = (float) cos ((double) a);
    }
  }
  cb_matmul (b->hid, b->sin_emb, m->time_1, m->time_1_bias, B, m->in_ch, m->TE);
  cb_silu (b->hid, b->hid, (size_t) B * m->TE);
  cb_matmul (b->temb, b->hid, m->time_2, m->time_2_bias, B, m->TE, m->TE);
  cb_mish (b->temb, b->temb, (size_t) B * m->TE);
}

/* ---------------------------------------------------------------------------------------------- */
/* estimator */

void
cb_s3gen_cfm_estimate (CbS3GenCfm *m, CbArena *scratch, const float *x, const float *mu,
                       const float *t, const float *spks, const float *cond, int B, int T,
                       float *out)
{
  g_return_if_fail (m && x && mu && t && spks && cond && out);
  g_return_if_fail (B >= 1 && B <= 2 && T >= 1 && T <= MAX_FRAMES);
  g_return_if_fail (arena_has_room (scratch, est_layout (m, B, T, NULL, NULL)));
  const int F = m->F, S = m->S, C = m->C, in_ch = m->in_ch;
  const gsize mark = cb_arena_mark (scratch);
  EstBuffers b;
  est_layout (m, B, T, scratch, &b);
  clear_pads (b.inp, B, T, in_ch);
  clear_pads (b.cat, B, T, 2 * C);
  clear_pads (b.pad_a, B, T, C);
  clear_pads (b.pad_b, B, T, C);

  time_embedding (m, &b, t, B);

  /* pack [x ; mu ; spks over time ; cond] time-major */
  for (int row = 0; row < B; row++) {
    const gsize off = (gsize) row * F * T;
    float *dst = padded_row (b.inp, row, T, in_ch, 0);
    transpose_into (dst, in_ch, x + off, F, T);
    transpose_into (dst + F, in_ch, mu + off, F, T);
    for (int f = 0; f < T; f++)
      memcpy (dst + (gsize) f * in_ch + 2 * F, spks + (gsize) row * S, sizeof (float) * S);
    transpose_into (dst + 2 * F + S, in_ch, cond + off, F, T);
  }

  /* down: resnet, transformers, skip, causal conv */
  const CfmStage *down = &m->stages[0], *up = &m->stages[m->n_stages - 1];
  stage_forward (m, down, &b, b.inp, B, T);
  for (int row = 0; row < B; row++)
    copy_rows (padded_row (b.cat, row, T, 2 * C, 0) + C, 2 * C, b.h + (gsize) row * T * C, C, T,
               C);
  h_to_padded (m, &b, b.pad_a, B, T);
  for (int row = 0; row < B; row++)
    causal_conv (&down->conv, padded_row (b.pad_a, row, T, C, 0), T, b.h + (gsize) row * T * C);

  /* mid */
  for (int i = 1; i < m->n_stages - 1; i++) {
    h_to_padded (m, &b, b.pad_a, B, T);
    stage_forward (m, &m->stages[i], &b, b.pad_a, B, T);
  }

  /* up: [h ; skip], resnet, transformers, causal conv */
  for (int row = 0; row < B; row++)
    copy_rows (padded_row (b.cat, row, T, 2 * C, 0), 2 * C, b.h + (gsize) row * T * C, C, T, C);
  stage_forward (m, up, &b, b.cat, B, T);
  h_to_padded (m, &b, b.pad_a, B, T);
  for (int row = 0; row < B; row++)
    causal_conv (&up->conv, padded_row (b.pad_a, row, T, C, 0), T,
                 padded_row (b.pad_b, row, T, C, 0));

  /* final block and 1×1 projection, back to channels-first */
  for (int row = 0; row < B; row++)
    causal_conv (&m->final_block.conv, padded_row (b.pad_b, row, T, C, 0), T,
                 b.h + (gsize) row * T * C);
  norm_mish (&m->final_block, m->eps, b.h, B * T);
  cb_matmul (b.o, b.h, m->final_proj, m->final_proj_bias, B * T, C, F);
  for (int row = 0; row < B; row++)
    cb_transpose (out + (gsize) row * F * T, b.o + (gsize) row * T * F, T, F);

  cb_arena_reset (scratch, mark);
  __atomic_add_fetch (&m->frame_evals, (guint64) B * T, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------- */
/* solver */

gboolean
cb_s3gen_cfm_solve (CbS3GenCfm *m, CbArena *scratch, const float *z, const float *mu,
                    const float *spks, const float *cond, int T, float *mel, const gint *cancel,
                    CbCfmTraceFn trace, void *trace_user, GError **error)
{
  if (!z || !mu || !spks || !cond || !mel || T < 1 || T > MAX_FRAMES) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "cfm solve: missing input or frame count %d outside [1, %d]", T, MAX_FRAMES);
    return FALSE;
  }
  const guint64 need = cb_s3gen_cfm_scratch_floats (m, 2, T);
  if (!arena_has_room (scratch, need)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "cfm solve: the scratch arena has %" G_GSIZE_FORMAT " bytes free, %d frames "
                 "need %" G_GUINT64_FORMAT, scratch ? scratch->size - scratch->used : 0, T,
                 need * sizeof (float));
    return FALSE;
  }
  const int F = m->F, S = m->S;
  const gsize n = (gsize) F * T;
  const gsize mark = cb_arena_mark (scratch);
  SolveBuffers sb;
  solve_layout (m, T, scratch, &sb);

  /* the CFG batch: row 0 conditional, row 1 with mu, spks and cond zero */
  memcpy (sb.mu, mu, sizeof (float) * n);
  memset (sb.mu + n, 0, sizeof (float) * n);
  memcpy (sb.cond, cond, sizeof (float) * n);
  memset (sb.cond + n, 0, sizeof (float) * n);
  memcpy (sb.spks, spks, sizeof (float) * S);
  memset (sb.spks + S, 0, sizeof (float) * S);

  /* upstream: (1.0 + rate) * v_c − rate * v_u with both factors rounded to float */
  const float w_c = (float) (1.0 + (double) m->cfg_rate), w_u = m->cfg_rate;
  const float *t_span = m->t_span;
  gboolean ok = TRUE;
  memcpy (mel, z, sizeof (float) * n);
  for (int k = 0; k < m->n_steps; k++) {
    if (trace)
      trace (k, mel, T, trace_user);
    if (cancel && g_atomic_int_get (cancel) != 0) {
      g_set_error (error, CB_ERROR, CB_ERROR_CANCELLED, "cfm solve cancelled before step %d", k);
      ok = FALSE;
      break;
    }
    memcpy (sb.x, mel, sizeof (float) * n);
    memcpy (sb.x + n, mel, sizeof (float) * n);
    sb.t[0] = sb.t[1] = t_span[k];
    cb_s3gen_cfm_estimate (m, scratch, sb.x, sb.mu, sb.t, sb.spks, sb.cond, 2, T, sb.v);
    const float dt = t_span[k + 1] - t_span[k];
    const float *vc = sb.v, *vu = sb.v + n;
    for (gsize i = 0; i < n; i++) {
      const float v = w_c * vc[i] - w_u * vu[i];
      mel[i] = mel[i] + dt * v;
    }
  }
  if (ok && trace)
    trace (m->n_steps, mel, T, trace_user);
  cb_arena_reset (scratch, mark);
  return ok;
}
