/* hift.c — the HiFT vocoder on the CPU; see hift.h.
 *
 * Upstream: chatterbox 0.1.7 s3gen/hifigan.py (HiFTGenerator, ResBlock, SineGen, SourceModuleHnNSF,
 * Snake), f0_predictor.py (ConvRNNF0Predictor), s3gen.py (hift_inference, trim_fade).
 *
 * Every convolution goes through cb_conv1d / cb_conv_transpose1d (im2col or col2im around one
 * SGEMM). The STFT and the iSTFT are convolutions too: a frame of the STFT is the padded signal
 * times a windowed DFT basis ([n_fft + 2, 1, n_fft], stride hop), and the iSTFT's windowed inverse
 * DFT followed by overlap-add and the n_fft/2 trim is a transposed convolution with the matching
 * inverse basis (padding n_fft/2); only the division by the summed squared window is left. */
#include "hift.h"

#include "cb-common.h"

#include "ops.h"
#include "parallel.h"
#include "vecmath.h"
#include "weights-view.h"

#include <math.h>
#include <string.h>

#define MAX_LIST CB_CONFIG_MAX_LIST

/* One dilation of a ResBlock: x += conv2(snake2(conv1(snake1(x)))), conv1 dilated. */
typedef struct {
  int          dilation;
  const float *conv1, *conv1_bias;  /* convs1.j (C, C, K) weight-norm folded, (C) */
  const float *conv2, *conv2_bias;  /* convs2.j (C, C, K), (C); dilation 1 */
  const float *alpha1, *alpha2;     /* activations1.j.alpha, activations2.j.alpha (C) */
} HiftResUnit;

typedef struct {
  int         channels, kernel, n_units;
  HiftResUnit units[MAX_LIST];
} HiftResBlock;

/* Upsampling stage i: LeakyReLU, ups[i], (last stage: reflection pad (1, 0)), + the source branch
 * source_resblocks[i](source_downs[i](STFT)), then the mean of the n_kernels resblocks. */
typedef struct {
  int           in_channels, channels;   /* base >> i, base >> (i + 1) */
  int           rate, kernel;            /* ups.i stride and kernel; padding (kernel - rate) / 2 */
  const float  *up, *up_bias;            /* ups.i (C_in, C, kernel) folded over dim 0 (C_in), (C) */
  int           down_kernel, down_stride, down_pad;
  const float  *down, *down_bias;        /* source_downs.i (C, n_fft + 2, down_kernel), (C) */
  HiftResBlock  source_block;            /* source_resblocks.i */
  HiftResBlock *blocks;                  /* resblocks.{i·n_kernels + j}, j < n_kernels */
} HiftStage;

struct _CbHift {
  int n_mels, base_channels, n_stages, n_kernels;
  int n_fft, hop, n_bins;   /* n_bins = n_fft/2 + 1; the spectrum has 2·n_bins = n_fft + 2 rows */
  int spf;                  /* samples per mel frame = prod(rates) · hop */
  int n_harm;               /* nb_harmonics + 1 */
  int sampling_rate;
  float sine_amp, noise_std, voiced_threshold, lrelu_slope, audio_limit;

  /* ConvRNNF0Predictor */
  int           cond_channels, f0_layers;
  const float **condnet, **condnet_bias;   /* condnet.{2l} (Cc, C_in, 3), (Cc) */
  const float  *classifier, *classifier_bias; /* (1, Cc), (1) */

  const float  *l_linear, *l_linear_bias;  /* m_source.l_linear (1, n_harm), (1) */
  const float  *conv_pre, *conv_pre_bias;  /* (base, n_mels, 7), (base) */
  HiftStage     stages[MAX_LIST];
  HiftResBlock *resblocks;                 /* n_stages · n_kernels */
  const float  *conv_post, *conv_post_bias; /* (n_fft + 2, base >> n_stages, 7), (n_fft + 2) */

  float        *window;       /* (n_fft) periodic Hann, as scipy get_window("hann", fftbins=True) */
  float        *stft_basis;   /* (n_fft + 2, 1, n_fft): rows w·cos(2πkn/N), then −w·sin */
  float        *istft_basis;  /* (n_fft + 2, 1, n_fft): the windowed one-sided inverse DFT */
  GPtrArray    *owned;        /* folded weights and the buffers above */
};

/* Upstream hard-codes conv_pre and conv_post as k 7, padding 3, and the F0 convs as k 3, padding 1. */
#define PRE_POST_KERNEL 7
#define F0_KERNEL       3

/* Slack per arena allocation: cb_arena_alloc rounds every request up to CB_ARENA_ALIGN bytes. */
#define ALIGN_FLOATS (CB_ARENA_ALIGN / sizeof (float))

/* ---------------------------------------------------------------------------------------------- */
/* building */

static void
load_resblock (CbWeightLoader *ld, HiftResBlock *b, int channels, int kernel,
               const CbIntList *dilations, const char *prefix)
{
  const int64_t C = channels, K = kernel;
  b->channels = channels;
  b->kernel = kernel;
  b->n_units = dilations->n;
  for (int j = 0; j < dilations->n; j++) {
    HiftResUnit *u = &b->units[j];
    u->dilation = dilations->v[j];
    u->conv1 = cb_wl_weight_norm (ld, C, C, K, "%s.convs1.%d", prefix, j);
    u->conv1_bias = cb_wl_vec (ld, C, "%s.convs1.%d.bias", prefix, j);
    u->conv2 = cb_wl_weight_norm (ld, C, C, K, "%s.convs2.%d", prefix, j);
    u->conv2_bias = cb_wl_vec (ld, C, "%s.convs2.%d.bias", prefix, j);
    u->alpha1 = cb_wl_vec (ld, C, "%s.activations1.%d.alpha", prefix, j);
    u->alpha2 = cb_wl_vec (ld, C, "%s.activations2.%d.alpha", prefix, j);
  }
}

static void
load_weights (CbWeightLoader *ld, CbHift *h, const CbConfig *cfg)
{
  const CbHiftConfig *c = &cfg->hift;
  const int64_t base = c->base_channels, nspec = (int64_t) h->n_fft + 2;

  h->conv_pre = cb_wl_weight_norm (ld, base, h->n_mels, PRE_POST_KERNEL, "mel2wav.conv_pre");
  h->conv_pre_bias = cb_wl_vec (ld, base, "mel2wav.conv_pre.bias");

  for (int i = 0; i < h->n_stages; i++) {
    HiftStage *s = &h->stages[i];
    char *prefix = g_strdup_printf ("mel2wav.ups.%d", i);
    s->up = cb_wl_weight_norm (ld, s->in_channels, s->channels, s->kernel, "%s", prefix);
    s->up_bias = cb_wl_vec (ld, s->channels, "%s.bias", prefix);
    g_free (prefix);
    s->down = cb_wl_3d (ld, s->channels, nspec, s->down_kernel, "mel2wav.source_downs.%d.weight",
                        i);
    s->down_bias = cb_wl_vec (ld, s->channels, "mel2wav.source_downs.%d.bias", i);
    prefix = g_strdup_printf ("mel2wav.source_resblocks.%d", i);
    load_resblock (ld, &s->source_block, s->channels, c->source_resblock_kernel_sizes.v[i],
                   &c->source_resblock_dilation_sizes.v[i], prefix);
    g_free (prefix);
    for (int j = 0; j < h->n_kernels; j++) {
      prefix = g_strdup_printf ("mel2wav.resblocks.%d", i * h->n_kernels + j);
      load_resblock (ld, &s->blocks[j], s->channels, c->resblock_kernel_sizes.v[j],
                     &c->resblock_dilation_sizes.v[j], prefix);
      g_free (prefix);
    }
  }
  const int64_t last = base >> h->n_stages;
  h->conv_post = cb_wl_weight_norm (ld, nspec, last, PRE_POST_KERNEL, "mel2wav.conv_post");
  h->conv_post_bias = cb_wl_vec (ld, nspec, "mel2wav.conv_post.bias");
  cb_wl_linear (ld, &h->l_linear, &h->l_linear_bias, 1, h->n_harm, TRUE,
                "mel2wav.m_source.l_linear");

  for (int l = 0; l < h->f0_layers; l++) {
    char *prefix = g_strdup_printf ("mel2wav.f0_predictor.condnet.%d", 2 * l);
    int64_t cin = l == 0 ? cfg->f0_predictor.in_channels : h->cond_channels;
    h->condnet[l] = cb_wl_weight_norm (ld, h->cond_channels, cin, F0_KERNEL, "%s", prefix);
    h->condnet_bias[l] = cb_wl_vec (ld, h->cond_channels, "%s.bias", prefix);
    g_free (prefix);
  }
  cb_wl_linear (ld, &h->classifier, &h->classifier_bias, cfg->f0_predictor.num_class,
                h->cond_channels, TRUE, "mel2wav.f0_predictor.classifier");
}

/* cos and sin of 2π·m/N, exact at the quarter turns (the DFT's DC and Nyquist rows must have an
 * exactly zero imaginary part, as torch's real FFT gives). */
static void
dft_cos_sin (int64_t m, int N, double *c, double *s)
{
  m %= N;
  if ((4 * m) % N == 0) {
    static const double qc[4] = { 1, 0, -1, 0 }, qs[4] = { 0, 1, 0, -1 };
    *c = qc[4 * m / N];
    *s = qs[4 * m / N];
    return;
  }
  double a = 2.0 * G_PI * (double) m / N;
  *c = cos (a);
  *s = sin (a);
}

/* The window and the two DFT bases (see the file comment). Row k < n_bins of the forward basis is
 * w[n]·cos(2πkn/N) (real part), row n_bins + k is −w[n]·sin(2πkn/N) (imaginary part). The inverse
 * basis is torch.istft's one-sided irfft (1/N, the bins between DC and Nyquist counted twice, the
 * imaginary parts of DC and Nyquist ignored) with the synthesis window folded in. */
static void
build_bases (CbHift *h)
{
  const int N = h->n_fft, nb = h->n_bins;
  h->window = g_new (float, N);
  h->stft_basis = g_new (float, (gsize) 2 * nb * N);
  h->istft_basis = g_new (float, (gsize) 2 * nb * N);
  g_ptr_array_add (h->owned, h->window);
  g_ptr_array_add (h->owned, h->stft_basis);
  g_ptr_array_add (h->owned, h->istft_basis);
  for (int n = 0; n < N; n++) /* scipy get_window("hann", N, fftbins=True), cast to float32 */
    h->window[n] = (float) (0.5 - 0.5 * cos (2.0 * G_PI * n / N));
  for (int k = 0; k < nb; k++) {
    const double twice = (k == 0 || 2 * k == N) ? 1.0 : 2.0;
    for (int n = 0; n < N; n++) {
      double c, s, w = h->window[n];
      dft_cos_sin ((int64_t) k * n, N, &c, &s);
      h->stft_basis[(gsize) k * N + n] = (float) (w * c);
      h->stft_basis[(gsize) (nb + k) * N + n] = (float) (-w * s);
      h->istft_basis[(gsize) k * N + n] = (float) (twice * c / N * w);
      h->istft_basis[(gsize) (nb + k) * N + n] = twice == 1.0 ? 0.0f : (float) (-twice * s / N * w);
    }
  }
}

/* Frames of the source STFT for T mel frames: 1 + L / hop (centred). */
static int
stft_frames (const CbHift *h, int T)
{
  return (int) ((int64_t) T * h->spf / h->hop + 1);
}

/* Length after stage i (the last stage adds the reflection pad's sample). */
static int
stage_len (const CbHift *h, int i, int T)
{
  int64_t n = T;
  for (int r = 0; r <= i; r++)
    n *= h->stages[r].rate;
  return (int) (n + (i == h->n_stages - 1));
}

/* torch.istft's window envelope at padded position p: Σ over the frames t covering p of
 * window[p − t·hop]²; the output is divided by it. */
static inline float
istft_envelope (const CbHift *h, int64_t p, int n_frames)
{
  int64_t t_hi = MIN (p / h->hop, (int64_t) n_frames - 1);
  int64_t first = p - h->n_fft + 1;
  int64_t t_lo = first <= 0 ? 0 : (first + h->hop - 1) / h->hop;
  float env = 0.0f;
  for (int64_t t = t_lo; t <= t_hi; t++) {
    float w = h->window[p - t * h->hop];
    env += w * w;
  }
  return env;
}

/* What upstream's modules would refuse or compute differently for some length: checked once, on a
 * few frame counts (every length below is affine in T). */
static gboolean
check_geometry (const CbHift *h, const CbConfig *cfg, GError **error)
{
  const CbHiftConfig *c = &cfg->hift;
  for (int i = 0; i < h->n_stages; i++)
    if (c->source_resblock_kernel_sizes.v[i] % 2 == 0) {
      g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                   "s3gen_hift.source_resblock_kernel_sizes[%d] (%d) is even: upstream's ResBlock "
                   "padding would change the length", i, c->source_resblock_kernel_sizes.v[i]);
      return FALSE;
    }
  if (h->spf / h->hop < 2 || h->spf <= h->n_fft / 2) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "s3gen_hift: %d samples per frame are too few for the reflection pads (STFT "
                 "n_fft %d, generator (1, 0))", h->spf, h->n_fft);
    return FALSE;
  }
  for (int T = 1; T <= 4; T++) {
    const int nfr = stft_frames (h, T);
    for (int i = 0; i < h->n_stages; i++) {
      const HiftStage *s = &h->stages[i];
      int down = cb_conv1d_out_len (nfr, s->down_kernel, s->down_stride, s->down_pad,
                                    s->down_pad, 1);
      if (down != stage_len (h, i, T)) {
        g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                     "s3gen_hift: source_downs.%d gives %d frames where stage %d has %d (T = %d)",
                     i, down, i, stage_len (h, i, T), T);
        return FALSE;
      }
    }
    for (int64_t j = 0; j < (int64_t) T * h->spf; j++)
      if (!(istft_envelope (h, j + h->n_fft / 2, nfr) > 1e-11f)) {
        g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                     "s3gen_hift.istft_params: the window does not cover sample %" G_GINT64_FORMAT
                     " (n_fft %d, hop %d): torch.istft refuses this", j, h->n_fft, h->hop);
        return FALSE;
      }
  }
  return TRUE;
}

CbHift *
cb_hift_new (const CbConfig *cfg, const CbSafetensors *st, GError **error)
{
  g_return_val_if_fail (cfg != NULL && st != NULL, NULL);
  const CbHiftConfig *c = &cfg->hift;
  if (!cb_config_validate (cfg, error))
    return NULL;

  CbHift *h = g_new0 (CbHift, 1);
  h->owned = g_ptr_array_new_with_free_func (g_free);
  h->n_mels = c->in_channels;
  h->base_channels = c->base_channels;
  h->n_stages = c->upsample_rates.n;
  h->n_kernels = c->resblock_kernel_sizes.n;
  h->n_fft = c->istft_n_fft;
  h->hop = c->istft_hop_len;
  h->n_bins = h->n_fft / 2 + 1;
  h->n_harm = c->nb_harmonics + 1;
  h->sampling_rate = c->sampling_rate;
  h->sine_amp = (float) c->nsf_alpha;
  h->noise_std = (float) c->nsf_sigma;
  h->voiced_threshold = (float) c->nsf_voiced_threshold;
  h->lrelu_slope = (float) c->lrelu_slope;
  h->audio_limit = (float) c->audio_limit;
  h->cond_channels = cfg->f0_predictor.cond_channels;
  h->f0_layers = cfg->f0_predictor.num_layers;
  h->condnet = g_new0 (const float *, h->f0_layers);
  h->condnet_bias = g_new0 (const float *, h->f0_layers);
  h->resblocks = g_new0 (HiftResBlock, (gsize) h->n_stages * h->n_kernels);

  h->spf = h->hop;
  for (int i = 0; i < h->n_stages; i++) {
    HiftStage *s = &h->stages[i];
    s->in_channels = h->base_channels >> i;
    s->channels = h->base_channels >> (i + 1);
    s->rate = c->upsample_rates.v[i];
    s->kernel = c->upsample_kernel_sizes.v[i];
    /* hifigan.py: source_downs[i] downsamples the spectrum by the product of the later rates,
     * with kernel 2u, padding u // 2 (a 1x1 conv where u is 1) */
    int u = 1;
    for (int r = i + 1; r < h->n_stages; r++)
      u *= c->upsample_rates.v[r];
    s->down_stride = u;
    s->down_kernel = u == 1 ? 1 : 2 * u;
    s->down_pad = u == 1 ? 0 : u / 2;
    s->blocks = h->resblocks + (gsize) i * h->n_kernels;
    h->spf *= s->rate;
  }

  build_bases (h);
  CbWeightLoader ld;
  cb_weight_loader_init (&ld, st, h->owned, error);
  load_weights (&ld, h, cfg);
  if (!ld.ok || !check_geometry (h, cfg, error)) {
    cb_hift_free (h);
    return NULL;
  }
  return h;
}

void
cb_hift_free (CbHift *hift)
{
  if (!hift)
    return;
  g_ptr_array_unref (hift->owned);
  g_free (hift->condnet);
  g_free (hift->condnet_bias);
  g_free (hift->resblocks);
  g_free (hift);
}

int
cb_hift_samples_per_frame (const CbHift *hift)
{
  g_return_val_if_fail (hift != NULL, 0);
  return hift->spf;
}

int
cb_hift_n_harmonics (const CbHift *hift)
{
  g_return_val_if_fail (hift != NULL, 0);
  return hift->n_harm;
}

/* ---------------------------------------------------------------------------------------------- */
/* scratch */

/* A frame count every length of a call fits in an int (the ops' lengths) for. */
static gboolean
frames_ok (const CbHift *h, int T)
{
  return T >= 1 && (int64_t) T * h->spf <= G_MAXINT - h->n_fft;
}

/* One arena request of n floats as the arena counts it (rounded up to its alignment). */
static guint64
A (guint64 n)
{
  return MAX (n, 1) + ALIGN_FLOATS;
}

static float *
take (CbArena *a, guint64 n)
{
  return cb_arena_alloc (a, MAX (n, 1));
}

/* The arena must hold `need` more floats; a smaller one is the caller's sizing bug. */
static gboolean
have_scratch (const CbArena *a, guint64 need, const char *fn)
{
  guint64 room = (a->size - a->used) / sizeof (float);
  if (room >= need)
    return TRUE;
  g_critical ("%s: the scratch arena has room for %" G_GUINT64_FORMAT " floats, the call needs %"
              G_GUINT64_FORMAT " (cb_hift_scratch_floats)", fn, room, need);
  return FALSE;
}

static guint64
f0_floats (const CbHift *h, int T)
{
  guint64 col = cb_conv1d_scratch_floats (MAX (h->n_mels, h->cond_channels), T, F0_KERNEL, 1, 1,
                                          1, 1, 1);
  return 2 * A ((guint64) h->cond_channels * T) + A (col);
}

static guint64
source_floats (const CbHift *h, int T)
{
  guint64 L = (guint64) T * h->spf;
  return A (2 * ((guint64) T + 1)) + A (2 * (guint64) h->n_harm * T)
         + A ((guint64) h->n_harm * L);
}

static guint64
resblock_col_floats (const HiftResBlock *b, int T)
{
  guint64 n = 0;
  for (int j = 0; j < b->n_units; j++) {
    int d = b->units[j].dilation, p = d * (b->kernel - 1) / 2;
    n = MAX (n, cb_conv1d_scratch_floats (b->channels, T, b->kernel, 1, p, p, d, 1));
  }
  return n;
}

/* The conv scratch stage i shares between its convolutions, for T mel frames. */
static guint64
stage_col_floats (const CbHift *h, int i, int T)
{
  const HiftStage *s = &h->stages[i];
  const int Tin = i == 0 ? T : stage_len (h, i - 1, T), Tx = stage_len (h, i, T);
  guint64 n = cb_conv_transpose1d_scratch_floats (Tin, s->channels, s->kernel);
  n = MAX (n, cb_conv1d_scratch_floats (h->n_fft + 2, stft_frames (h, T), s->down_kernel,
                                        s->down_stride, s->down_pad, s->down_pad, 1, 1));
  n = MAX (n, resblock_col_floats (&s->source_block, Tx));
  for (int j = 0; j < h->n_kernels; j++)
    n = MAX (n, resblock_col_floats (&s->blocks[j], Tx));
  return n;
}

static guint64
decode_floats (const CbHift *h, int T)
{
  const guint64 L = (guint64) T * h->spf, nfr = stft_frames (h, T), nspec = h->n_fft + 2;
  const int last = h->stages[h->n_stages - 1].channels;
  /* kept for the whole call: the spectrum, conv_pre's output and each stage's output */
  guint64 kept = A (nspec * nfr) + A ((guint64) h->base_channels * T);
  /* released again: the STFT's padded signal and columns, conv_pre's columns, a stage's four
   * [C, len] buffers and columns, conv_post's output and columns (shared with the iSTFT) */
  guint64 temp = A (L + h->n_fft) + A (cb_conv1d_scratch_floats (1, L + h->n_fft, h->n_fft,
                                                                 h->hop, 0, 0, 1, 1));
  temp = MAX (temp, A (cb_conv1d_scratch_floats (h->n_mels, T, PRE_POST_KERNEL, 1, 3, 3, 1, 1)));
  for (int i = 0; i < h->n_stages; i++) {
    guint64 n = (guint64) h->stages[i].channels * stage_len (h, i, T);
    kept += A (n);
    temp = MAX (temp, 4 * A (n) + A (stage_col_floats (h, i, T)));
  }
  guint64 post_col = MAX (cb_conv1d_scratch_floats (last, nfr, PRE_POST_KERNEL, 1, 3, 3, 1, 1),
                          cb_conv_transpose1d_scratch_floats (nfr, 1, h->n_fft));
  temp = MAX (temp, A (nspec * nfr) + A (post_col));
  return kept + temp;
}

static guint64
inference_floats (const CbHift *h, int T)
{
  guint64 L = (guint64) T * h->spf;
  guint64 inner = MAX (MAX (f0_floats (h, T), source_floats (h, T)), decode_floats (h, T));
  return A (T) + A (L) + inner;
}

guint64
cb_hift_scratch_floats (const CbHift *hift, int T)
{
  g_return_val_if_fail (hift != NULL && frames_ok (hift, T), 0);
  return inference_floats (hift, T);
}

/* ---------------------------------------------------------------------------------------------- */
/* F0 predictor */

void
cb_hift_f0 (CbHift *hift, CbArena *scratch, const float *mel, int T, float *f0)
{
  g_return_if_fail (hift != NULL && scratch != NULL && mel != NULL && f0 != NULL);
  g_return_if_fail (frames_ok (hift, T));
  if (!have_scratch (scratch, f0_floats (hift, T), G_STRFUNC))
    return;
  const gsize mark = cb_arena_mark (scratch);
  const int Cc = hift->cond_channels;
  float *buf[2] = { take (scratch, (guint64) Cc * T), take (scratch, (guint64) Cc * T) };
  float *col = take (scratch, cb_conv1d_scratch_floats (MAX (hift->n_mels, Cc), T, F0_KERNEL, 1,
                                                        1, 1, 1, 1));
  const float *x = mel;
  int cin = hift->n_mels;
  for (int l = 0; l < hift->f0_layers; l++) {
    float *y = buf[l & 1];
    cb_conv1d (y, x, hift->condnet[l], hift->condnet_bias[l], cin, T, Cc, F0_KERNEL, 1, 1, 1, 1,
               1, col);
    cb_elu (y, y, (size_t) Cc * T, 1.0f);
    x = y;
    cin = Cc;
  }
  /* the classifier Linear on every frame's channels is a 1x1 conv of the channels-first data */
  cb_conv1d (f0, x, hift->classifier, hift->classifier_bias, Cc, T, 1, 1, 1, 0, 0, 1, 1, NULL);
  for (int t = 0; t < T; t++)
    f0[t] = fabsf (f0[t]);
  cb_arena_reset (scratch, mark);
}

/* ---------------------------------------------------------------------------------------------- */
/* NSF source (SineGen + SourceModuleHnNSF) */

/* The frame torch's nearest upsampling (nn.Upsample(scale_factor = spf) → upsample_nearest1d with
 * the scale given) reads for output sample i: min(floor(float(i) · float(1 / spf)), T − 1) in
 * float, with UpSample.h's exact shortcuts for factors 1 and 2. This is i / spf until float(i) ·
 * scale rounds across a frame boundary: for spf 480 first at sample 10186559 (frame 21221, 7 min
 * of audio), where torch already reads the next frame. */
static int64_t
upsample_source_index (int64_t i, int spf, int T)
{
  if (spf == 1)
    return i;
  if (spf == 2)
    return i >> 1;
  const float scale = (float) (1.0 / spf);
  return MIN ((int64_t) floorf ((float) i * scale), (int64_t) T - 1);
}

/* run[t] = the first output sample that reads frame t or a later one (run[T] = L). */
static void
upsample_runs (int64_t *run, int spf, int T)
{
  const int64_t L = (int64_t) T * spf;
  run[0] = 0;
  run[T] = L;
  for (int t = 1; t < T; t++) {
    int64_t i = (int64_t) t * spf;
    while (i > 0 && upsample_source_index (i - 1, spf, T) >= t)
      i--;
    while (i < L && upsample_source_index (i, spf, T) < t)
      i++;
    run[t] = i;
  }
}

/* SineGen's F_mat = f0 · (h + 1) / sampling_rate, in float32 as upstream computes it. */
static inline float
harmonic_step (const CbHift *h, float f0, int harmonic)
{
  return f0 * (float) (harmonic + 1) / (float) h->sampling_rate;
}

/* torch's `x % 1` on a float: x − floor(x), exact; 0 once |x| >= 2^23, where floats are integers. */
static inline float
frac1 (float x)
{
  if (!(fabsf (x) < 8388608.0f))
    return 0.0f;
  float t = (float) (int32_t) x;
  if (t > x)
    t -= 1.0f;
  return x - t;
}

typedef struct {
  const CbHift  *h;
  const float   *f0;
  int            T;
  int64_t        L;
  const int64_t *run;       /* (T + 1) */
  const float   *phases;    /* (n_harm) */
  const float   *noise;     /* (n_harm, L) or NULL */
  const double  *cycles0;   /* (n_harm) or NULL */
  double        *start;     /* (n_harm, T): cycles accumulated before each frame's run */
  double        *cycles_end;
  float         *e;         /* (n_harm, L): SineGen output */
  float         *source;    /* (L) */
} SourceJob;

/* torch.cumsum on a float CPU tensor adds in double and rounds each prefix to float: here the
 * double sum is carried to the start of every frame's run so the frames can then be filled in
 * parallel with the very same additions. Items are harmonics. */
static void
source_cycles_body (void *ctx, int64_t begin, int64_t end)
{
  const SourceJob *j = ctx;
  for (int64_t hh = begin; hh < end; hh++) {
    double acc = j->cycles0 ? j->cycles0[hh] : 0.0;
    for (int t = 0; t < j->T; t++) {
      j->start[hh * j->T + t] = acc;
      const float F = harmonic_step (j->h, j->f0[t], (int) hh);
      for (int64_t i = j->run[t]; i < j->run[t + 1]; i++)
        acc += F;
    }
    if (j->cycles_end)
      j->cycles_end[hh] = acc - floor (acc);
  }
}

/* SineGen on one block of lanes, in place: e = sine_amp · sin(e) · uv + sigma · ε, where e held
 * θ + ψ (eps NULL: no noise). */
CB_VEC_INLINE void
sine_block (float *e, const float *eps, float amp, float uv, float sigma)
{
  cb_vf s = amp * cb_vf_sin (cb_vf_load (e)) * uv;
  if (eps)
    s = s + sigma * cb_vf_load (eps);
  cb_vf_store (e, s);
}

CB_VEC_INLINE void
sine_row (float *e, const float *eps, int64_t n, float amp, float uv, float sigma)
{
  const int L = CB_VEC_LANES;
  int64_t k = 0;
  for (; k + L <= n; k += L)
    sine_block (e + k, eps ? eps + k : NULL, amp, uv, sigma);
  if (k < n) {
    /* the tail through one zero-padded block, so it takes the same path */
    float a[CB_VEC_LANES] = { 0 }, z[CB_VEC_LANES] = { 0 };
    const size_t m = (size_t) (n - k);
    memcpy (a, e + k, sizeof (float) * m);
    if (eps)
      memcpy (z, eps + k, sizeof (float) * m);
    sine_block (a, eps ? z : NULL, amp, uv, sigma);
    memcpy (e + k, a, sizeof (float) * m);
  }
}

/* SourceModuleHnNSF's merge on one block: out = tanh(l_linear(e)), e the harmonic rows (stride
 * apart). */
CB_VEC_INLINE void
merge_block (float *out, const float *e, int64_t stride, int n_harm, const float *w, float b)
{
  cb_vf acc = cb_vf_splat (0.0f);
  for (int hh = 0; hh < n_harm; hh++)
    acc += w[hh] * cb_vf_load (e + hh * stride);
  cb_vf_store (out, cb_vf_tanh (acc + b));
}

CB_VEC_INLINE void
merge_row (float *source, const float *e, int64_t stride, int64_t n, int n_harm, const float *w,
           float b)
{
  const int L = CB_VEC_LANES;
  int64_t k = 0;
  for (; k + L <= n; k += L)
    merge_block (source + k, e + k, stride, n_harm, w, b);
  for (; k < n; k++) {
    /* the tail: the same sum, one sample at a time */
    float acc = 0.0f, a[CB_VEC_LANES] = { 0 };
    for (int hh = 0; hh < n_harm; hh++)
      acc += w[hh] * e[hh * stride + k];
    a[0] = acc + b;
    cb_vf_store (a, cb_vf_tanh (cb_vf_load (a)));
    source[k] = a[0];
  }
}

/* Items are frames (runs of samples with one F0). */
CB_VEC_CLONES static void
source_frames_body (void *ctx, int64_t begin, int64_t end)
{
  const SourceJob *j = ctx;
  const CbHift *h = j->h;
  const float two_pi = (float) (2.0 * G_PI);
  for (int64_t t = begin; t < end; t++) {
    const int64_t i0 = j->run[t], n = j->run[t + 1] - i0;
    const float f = j->f0[t];
    const float uv = f > h->voiced_threshold ? 1.0f : 0.0f;
    /* SineGen: noise_amp = uv · noise_std + (1 − uv) · sine_amp / 3 */
    const float sigma = uv * h->noise_std + (1.0f - uv) * h->sine_amp / 3.0f;
    for (int hh = 0; hh < h->n_harm; hh++) {
      const float F = harmonic_step (h, f, hh), psi = j->phases[hh];
      double acc = j->start[(int64_t) hh * j->T + t];
      float *row = j->e + hh * j->L + i0;
      for (int64_t k = 0; k < n; k++) {
        acc += F;
        const float theta = two_pi * frac1 ((float) acc);  /* 2π · (cumsum % 1) */
        row[k] = theta + psi;
      }
      sine_row (row, j->noise ? j->noise + hh * j->L + i0 : NULL, n, h->sine_amp, uv, sigma);
    }
    merge_row (j->source + i0, j->e + i0, j->L, n, h->n_harm, h->l_linear, h->l_linear_bias[0]);
  }
}

void
cb_hift_source (CbHift *hift, CbArena *scratch, const float *f0, int T, const float *phases,
                const float *noise, const double *cycles0, double *cycles_end, float *source,
                float *sine_waves)
{
  g_return_if_fail (hift != NULL && scratch != NULL && f0 != NULL && phases != NULL
                    && source != NULL);
  g_return_if_fail (frames_ok (hift, T));
  if (!have_scratch (scratch, source_floats (hift, T), G_STRFUNC))
    return;
  const gsize mark = cb_arena_mark (scratch);
  const int64_t L = (int64_t) T * hift->spf;
  SourceJob job = {
    .h = hift, .f0 = f0, .T = T, .L = L, .phases = phases, .noise = noise, .cycles0 = cycles0,
    .cycles_end = cycles_end, .source = source,
  };
  int64_t *run = (int64_t *) take (scratch, 2 * ((guint64) T + 1));
  job.start = (double *) take (scratch, 2 * (guint64) hift->n_harm * T);
  job.e = sine_waves ? sine_waves : take (scratch, (guint64) hift->n_harm * L);
  upsample_runs (run, hift->spf, T);
  job.run = run;
  cb_parallel_for (hift->n_harm, 1, source_cycles_body, &job);
  cb_parallel_for (T, 1 + CB_PARALLEL_GRAIN / ((int64_t) hift->n_harm * hift->spf),
                   source_frames_body, &job);
  cb_arena_reset (scratch, mark);
}

double
cb_hift_source_tolerance (CbHift *hift, CbArena *scratch, const float *f0, int T,
                          const float *phases, const float *noise, const float *cache_source,
                          int n_cache, double f0_error, double floor)
{
  g_return_val_if_fail (hift != NULL && f0 != NULL && T >= 1, floor);
  const gsize L = (gsize) T * hift->spf;
  float peak = 0.0f;
  for (int t = 0; t < T; t++)
    peak = MAX (peak, fabsf (f0[t]));
  const float offset = (float) (f0_error * peak);
  float *shifted = g_new (float, T), *a = g_new (float, L), *b = g_new (float, L);
  /* the offset goes into voiced frames only, so no frame changes side of the threshold */
  for (int t = 0; t < T; t++)
    shifted[t] = f0[t] > hift->voiced_threshold ? f0[t] + offset : f0[t];
  cb_hift_source (hift, scratch, f0, T, phases, noise, NULL, NULL, a, NULL);
  cb_hift_source (hift, scratch, shifted, T, phases, noise, NULL, NULL, b, NULL);
  n_cache = CLAMP (n_cache, 0, (int) L);
  if (cache_source && n_cache > 0) {
    memcpy (a, cache_source, sizeof (float) * n_cache);
    memcpy (b, cache_source, sizeof (float) * n_cache);
  }
  const double moved = cb_rel_max_err (b, a, L);
  g_free (shifted), g_free (a), g_free (b);
  return floor + moved;
}

/* ---------------------------------------------------------------------------------------------- */
/* generator */

/* out = ResBlock(inp) over [C, T] (out may be inp); t1, t2: [C, T]; col: resblock_col_floats. */
static void
resblock_run (const HiftResBlock *b, const float *inp, float *out, int T, float *t1, float *t2,
              float *col)
{
  const int C = b->channels, K = b->kernel, p1 = (K - 1) / 2;
  const float *x = inp;
  for (int j = 0; j < b->n_units; j++) {
    const HiftResUnit *u = &b->units[j];
    const int pd = u->dilation * (K - 1) / 2;
    cb_snake (t1, x, u->alpha1, C, T);
    cb_conv1d (t2, t1, u->conv1, u->conv1_bias, C, T, C, K, 1, pd, pd, u->dilation, 1, col);
    cb_snake (t2, t2, u->alpha2, C, T);
    cb_conv1d (t1, t2, u->conv2, u->conv2_bias, C, T, C, K, 1, p1, p1, 1, 1, col);
    cb_add (out, t1, x, (size_t) C * T);
    x = out;
  }
}

/* The source's STFT (torch.stft: centred, reflect padding n_fft/2, periodic Hann, one-sided) into
 * spec [n_fft + 2, nfr]: real parts of bins 0..n_fft/2, then imaginary parts. */
static void
source_stft (const CbHift *h, CbArena *a, const float *source, int L, float *spec)
{
  const gsize mark = cb_arena_mark (a);
  const int half = h->n_fft / 2, P = L + h->n_fft;
  float *xp = take (a, P);
  /* reflect: the edge sample itself is not repeated */
  for (int j = 0; j < half; j++) {
    xp[j] = source[half - j];
    xp[half + L + j] = source[L - 2 - j];
  }
  memcpy (xp + half, source, sizeof (float) * L);
  float *col = take (a, cb_conv1d_scratch_floats (1, P, h->n_fft, h->hop, 0, 0, 1, 1));
  cb_conv1d (spec, xp, h->stft_basis, NULL, 1, P, h->n_fft + 2, h->n_fft, h->hop, 0, 0, 1, 1,
             col);
  cb_arena_reset (a, mark);
}

/* Stage i (T mel frames) on x [C_in, *len] (LeakyReLU'd in place): returns its output [C, *len']
 * taken from the arena (kept), everything else released. */
static float *
run_stage (const CbHift *h, CbArena *a, int i, int T, float *x, int *len, const float *spec,
           int nfr)
{
  const HiftStage *s = &h->stages[i];
  const int Tin = *len, Tup = Tin * s->rate, last = i == h->n_stages - 1, Tx = Tup + last;
  const size_t n = (size_t) s->channels * Tx;
  cb_leaky_relu (x, x, (size_t) s->in_channels * Tin, h->lrelu_slope);
  float *y = take (a, n);
  const gsize mark = cb_arena_mark (a);
  float *t1 = take (a, n), *t2 = take (a, n), *r = take (a, n), *xs = take (a, n);
  float *col = take (a, stage_col_floats (h, i, T));

  const int pad = (s->kernel - s->rate) / 2;
  if (last) {
    /* nn.ReflectionPad1d((1, 0)): every row gains its second sample in front */
    cb_conv_transpose1d (t1, x, s->up, s->up_bias, s->in_channels, Tin, s->channels, s->kernel,
                         s->rate, pad, col);
    for (int c = 0; c < s->channels; c++) {
      y[(size_t) c * Tx] = t1[(size_t) c * Tup + 1];
      memcpy (y + (size_t) c * Tx + 1, t1 + (size_t) c * Tup, sizeof (float) * Tup);
    }
  } else {
    cb_conv_transpose1d (y, x, s->up, s->up_bias, s->in_channels, Tin, s->channels, s->kernel,
                         s->rate, pad, col);
  }

  /* fusion: x + source_resblocks[i](source_downs[i](spec)) */
  cb_conv1d (r, spec, s->down, s->down_bias, h->n_fft + 2, nfr, s->channels, s->down_kernel,
             s->down_stride, s->down_pad, s->down_pad, 1, 1, col);
  resblock_run (&s->source_block, r, r, Tx, t1, t2, col);
  cb_add (y, y, r, n);

  /* the mean of the stage's resblocks, each applied to the same x */
  for (int j = 0; j < h->n_kernels; j++) {
    resblock_run (&s->blocks[j], y, j == 0 ? xs : r, Tx, t1, t2, col);
    if (j > 0)
      cb_add (xs, xs, r, n);
  }
  const float nk = (float) h->n_kernels;
  for (size_t e = 0; e < n; e++)
    y[e] = xs[e] / nk;
  cb_arena_reset (a, mark);
  *len = Tx;
  return y;
}

typedef struct {
  float *spec;
  int    n_bins, n_frames;
} SpectrumJob;

/* conv_post rows → the complex spectrum _istft builds: magnitude = min(exp(x), 100) (the clip is
 * on the magnitude), phase = sin(x'), then real = mag·cos(phase), imag = mag·sin(phase). */
CB_VEC_INLINE void
spectrum_block (float *re, float *im)
{
  cb_vf mag = cb_vf_min (cb_vf_exp (cb_vf_load (re)), cb_vf_splat (100.0f));
  cb_vf ph = cb_vf_sin (cb_vf_load (im));
  cb_vf half = cb_vf_sin (0.5f * ph);
  cb_vf_store (re, mag * (1.0f - 2.0f * half * half));  /* cos p = 1 − 2 sin²(p/2), exact near 0 */
  cb_vf_store (im, mag * cb_vf_sin (ph));
}

/* Items are bins. */
CB_VEC_CLONES static void
spectrum_body (void *ctx, int64_t begin, int64_t end)
{
  const SpectrumJob *j = ctx;
  const int L = CB_VEC_LANES;
  for (int64_t k = begin; k < end; k++) {
    float *re = j->spec + k * j->n_frames, *im = j->spec + (k + j->n_bins) * j->n_frames;
    int t = 0;
    for (; t + L <= j->n_frames; t += L)
      spectrum_block (re + t, im + t);
    if (t < j->n_frames) {
      float a[CB_VEC_LANES] = { 0 }, b[CB_VEC_LANES] = { 0 };
      const size_t m = (size_t) (j->n_frames - t);
      memcpy (a, re + t, sizeof (float) * m);
      memcpy (b, im + t, sizeof (float) * m);
      spectrum_block (a, b);
      memcpy (re + t, a, sizeof (float) * m);
      memcpy (im + t, b, sizeof (float) * m);
    }
  }
}

void
cb_hift_decode (CbHift *hift, CbArena *scratch, const float *mel, int T, const float *source,
                float *wav, CbHiftTrace *trace)
{
  g_return_if_fail (hift != NULL && scratch != NULL && mel != NULL && source != NULL
                    && wav != NULL);
  g_return_if_fail (frames_ok (hift, T));
  if (!have_scratch (scratch, decode_floats (hift, T), G_STRFUNC))
    return;
  const CbHift *h = hift;
  const gsize mark = cb_arena_mark (scratch);
  const int L = T * h->spf, nfr = stft_frames (h, T), nb = h->n_bins, nspec = h->n_fft + 2;

  float *spec = take (scratch, (guint64) nspec * nfr);
  source_stft (h, scratch, source, L, spec);
  if (trace && trace->stft_real)
    memcpy (trace->stft_real, spec, sizeof (float) * nb * nfr);
  if (trace && trace->stft_imag)
    memcpy (trace->stft_imag, spec + (size_t) nb * nfr, sizeof (float) * nb * nfr);

  float *x = take (scratch, (guint64) h->base_channels * T);
  gsize m = cb_arena_mark (scratch);
  float *col = take (scratch, cb_conv1d_scratch_floats (h->n_mels, T, PRE_POST_KERNEL, 1, 3, 3,
                                                        1, 1));
  cb_conv1d (x, mel, h->conv_pre, h->conv_pre_bias, h->n_mels, T, h->base_channels,
             PRE_POST_KERNEL, 1, 3, 3, 1, 1, col);
  cb_arena_reset (scratch, m);
  if (trace && trace->conv_pre)
    memcpy (trace->conv_pre, x, sizeof (float) * h->base_channels * T);

  int len = T;
  for (int i = 0; i < h->n_stages; i++)
    x = run_stage (h, scratch, i, T, x, &len, spec, nfr);
  g_assert (len == nfr); /* checked for every T by check_geometry */

  /* F.leaky_relu(x) before conv_post: torch's default slope 0.01, not lrelu_slope */
  const int last = h->stages[h->n_stages - 1].channels;
  cb_leaky_relu (x, x, (size_t) last * len, 0.01f);
  float *post = take (scratch, (guint64) nspec * nfr);
  col = take (scratch, MAX (cb_conv1d_scratch_floats (last, nfr, PRE_POST_KERNEL, 1, 3, 3, 1, 1),
                            cb_conv_transpose1d_scratch_floats (nfr, 1, h->n_fft)));
  cb_conv1d (post, x, h->conv_post, h->conv_post_bias, last, nfr, nspec, PRE_POST_KERNEL, 1, 3, 3,
             1, 1, col);
  if (trace && trace->conv_post)
    memcpy (trace->conv_post, post, sizeof (float) * nspec * nfr);

  SpectrumJob sj = { post, nb, nfr };
  cb_parallel_for (nb, 1, spectrum_body, &sj);
  /* iSTFT: windowed inverse DFT of every frame, overlap-added, n_fft/2 trimmed at both ends */
  cb_conv_transpose1d (wav, post, h->istft_basis, NULL, nspec, nfr, 1, h->n_fft, h->hop,
                       h->n_fft / 2, col);
  /* ... divided by the summed squared window (positive everywhere: check_geometry), clamped */
  const float limit = h->audio_limit;
  for (int j = 0; j < L; j++) {
    float v = wav[j] / istft_envelope (h, j + h->n_fft / 2, nfr);
    wav[j] = v < -limit ? -limit : (v > limit ? limit : v);
  }
  cb_arena_reset (scratch, mark);
}

/* ---------------------------------------------------------------------------------------------- */

void
cb_hift_inference (CbHift *hift, CbArena *scratch, const float *mel, int T, const float *phases,
                   const float *noise, const float *cache_source, int n_cache, float *wav,
                   float *source_out, float *f0_out)
{
  g_return_if_fail (hift != NULL && scratch != NULL && mel != NULL && phases != NULL
                    && wav != NULL);
  g_return_if_fail (frames_ok (hift, T));
  const int64_t L = (int64_t) T * hift->spf;
  g_return_if_fail (n_cache >= 0 && n_cache <= L && (n_cache == 0 || cache_source != NULL));
  if (!have_scratch (scratch, inference_floats (hift, T), G_STRFUNC))
    return;
  const gsize mark = cb_arena_mark (scratch);
  float *f0 = f0_out ? f0_out : take (scratch, T);
  float *source = source_out ? source_out : take (scratch, L);
  cb_hift_f0 (hift, scratch, mel, T, f0);
  cb_hift_source (hift, scratch, f0, T, phases, noise, NULL, NULL, source, NULL);
  /* "use cache_source to avoid glitch": the previous chunk's source replaces the start */
  if (n_cache > 0)
    memcpy (source, cache_source, sizeof (float) * n_cache);
  cb_hift_decode (hift, scratch, mel, T, source, wav, NULL);
  cb_arena_reset (scratch, mark);
}

void
cb_hift_trim_fade (float *wav, int n, int sample_rate)
{
  g_return_if_fail (n >= 0 && (n == 0 || wav != NULL) && sample_rate > 0);
  const int n_trim = sample_rate / 50;  /* S3GEN_SR // 50: 20 ms */
  /* torch.linspace(π, 0, n_trim) in float32: the first half counted from the start, the second
   * from the end, with step = (end − start) / (n_trim − 1) */
  const float start = (float) G_PI, stop = 0.0f;
  const float step = n_trim > 1 ? (stop - start) / (float) (n_trim - 1) : 0.0f;
  const int halfway = n_trim / 2;
  for (int i = 0; i < MIN (n, 2 * n_trim); i++) {
    float fade = 0.0f;
    if (i >= n_trim) {
      const int k = i - n_trim;
      const float theta = n_trim == 1 ? start
                          : k < halfway ? start + step * (float) k
                          : stop - step * (float) (n_trim - k - 1);
      fade = (cosf (theta) + 1.0f) / 2.0f;
    }
    wav[i] *= fade;
  }
}
