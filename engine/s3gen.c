/* s3gen.c — CbS3Gen: the flow (encoder + CFM) and HiFT put together as upstream's S3Token2Wav,
 * the per-voice conditioning, position-keyed noise and the whole-utterance decode. Streaming is
 * in s3gen-stream.c. */
#include "s3gen.h"

#include "engine-internal.h"
#include "hift.h"
#include "s3gen-cfm.h"
#include "s3gen-flow.h"
#include "ops.h"

#include <math.h>
#include <string.h>

struct CbS3Gen {
  const CbConfig *cfg;
  CbS3GenFlow    *flow;
  CbS3GenCfm     *cfm;
  CbHift         *hift;
  int             n_mels;  /* 80 */
  CbS3GenTimes    times;
};

CbS3Gen *
cb_s3gen_new (const CbConfig *cfg, const CbSafetensors *st, GError **error)
{
  CbS3Gen *s = g_new0 (CbS3Gen, 1);
  s->cfg = cfg;
  s->n_mels = cfg->flow.output_size;
  if (!(s->flow = cb_s3gen_flow_new (cfg, st, error))
      || !(s->cfm = cb_s3gen_cfm_new (cfg, st, error))
      || !(s->hift = cb_hift_new (cfg, st, error))) {
    cb_s3gen_free (s);
    return NULL;
  }
  return s;
}

gsize
cb_s3gen_use_bf16 (CbS3Gen *s)
{
  return cb_s3gen_cfm_to_bf16 (s->cfm);
}

void
cb_s3gen_free (CbS3Gen *s)
{
  if (!s)
    return;
  if (s->flow)
    cb_s3gen_flow_free (s->flow);
  if (s->cfm)
    cb_s3gen_cfm_free (s->cfm);
  if (s->hift)
    cb_hift_free (s->hift);
  g_free (s);
}

const CbConfig *
cb_s3gen_config (const CbS3Gen *s)
{
  return s->cfg;
}

int
cb_s3gen_samples_per_frame (const CbS3Gen *s)
{
  return cb_hift_samples_per_frame (s->hift);
}

int
cb_s3gen_frames_per_token (const CbS3Gen *s)
{
  return s->cfg->flow.token_mel_ratio;
}

int
cb_s3gen_n_harmonics (const CbS3Gen *s)
{
  return cb_hift_n_harmonics (s->hift);
}

guint64
cb_s3gen_frame_evals (const CbS3Gen *s)
{
  return cb_s3gen_cfm_frame_evals (s->cfm);
}

/* Streams on several threads share a CbS3Gen: the timers are atomic. */
static void
add_us (gint64 *field, gint64 us)
{
  __atomic_add_fetch (field, us, __ATOMIC_RELAXED);
}

void
cb_s3gen_times (const CbS3Gen *s, CbS3GenTimes *t)
{
  t->encoder_us = __atomic_load_n (&s->times.encoder_us, __ATOMIC_RELAXED);
  t->cfm_us = __atomic_load_n (&s->times.cfm_us, __ATOMIC_RELAXED);
  t->hift_us = __atomic_load_n (&s->times.hift_us, __ATOMIC_RELAXED);
}

void
cb_s3gen_add_hift_us (CbS3Gen *s, gint64 us)
{
  add_us (&s->times.hift_us, us);
}

CbS3GenFlow *
cb_s3gen_part_flow (CbS3Gen *s)
{
  return s->flow;
}

CbS3GenCfm *
cb_s3gen_part_cfm (CbS3Gen *s)
{
  return s->cfm;
}

CbHift *
cb_s3gen_part_hift (CbS3Gen *s)
{
  return s->hift;
}

/* ---- voice ---- */

gboolean
cb_s3gen_voice_init (CbS3GenVoice *v, const CbS3Gen *s, const CbConds *c, GError **error)
{
  memset (v, 0, sizeof *v);
  const CbConfig *cfg = s->cfg;
  const int M = s->n_mels, R = cfg->flow.token_mel_ratio;
  const char *why = NULL;
  if (c->mel_bins != M)
    why = "prompt mel has the wrong number of bins";
  else if (c->xvector_size != cfg->flow.spk_embed_dim || !c->embedding)
    why = "x-vector has the wrong size";
  else if (c->n_prompt_frames < 0 || c->n_prompt_tokens < 0
           || (c->n_prompt_frames > 0 && !c->prompt_feat)
           || (c->n_prompt_tokens > 0 && !c->prompt_tokens))
    why = "prompt sizes are inconsistent";
  /* upstream's embed_ref truncates the tokens to the mel (spec §6.5); more frames than
   * 2·tokens + 1 would put mel where the encoder has no frames */
  else if (c->n_prompt_frames > R * c->n_prompt_tokens + 1)
    why = "prompt mel is longer than its tokens cover";
  const int Tp = MIN (c->n_prompt_tokens, c->n_prompt_frames / R);
  for (int i = 0; !why && i < Tp; i++)
    if (c->prompt_tokens[i] < 0 || c->prompt_tokens[i] >= cfg->flow.vocab_size)
      why = "prompt token id out of range";
  for (gsize i = 0; !why && i < (gsize) c->n_prompt_frames * M; i++)
    if (!isfinite (c->prompt_feat[i]))
      why = "prompt mel is not finite";
  for (int i = 0; !why && i < c->xvector_size; i++)
    if (!isfinite (c->embedding[i]))
      why = "x-vector is not finite";
  if (why) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen voice: %s (%d prompt tokens, %d × %d prompt mel, x-vector %d; model: %d "
                 "mel bins, x-vector %d, %d tokens per %d frames)", why, c->n_prompt_tokens,
                 c->n_prompt_frames, c->mel_bins, c->xvector_size, M, cfg->flow.spk_embed_dim, 1,
                 R);
    return FALSE;
  }
  v->n_prompt_tokens = Tp;
  v->prompt_tokens = g_new (int32_t, MAX (Tp, 1));
  if (Tp > 0)
    memcpy (v->prompt_tokens, c->prompt_tokens, (gsize) Tp * sizeof (int32_t));
  v->n_prompt_frames = c->n_prompt_frames;
  v->prompt_mel = g_new (float, (gsize) M * MAX (c->n_prompt_frames, 1));
  if (c->n_prompt_frames > 0)
    cb_transpose (v->prompt_mel, c->prompt_feat, c->n_prompt_frames, M);
  v->spks = g_new (float, M);
  cb_s3gen_flow_speaker (s->flow, c->embedding, v->spks);
  return TRUE;
}

void
cb_s3gen_voice_clear (CbS3GenVoice *v)
{
  g_free (v->prompt_tokens);
  g_free (v->prompt_mel);
  g_free (v->spks);
  memset (v, 0, sizeof *v);
}

/* ---- noise ---- */

static inline guint64
mix64 (guint64 z)
{
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* A 64-bit value that depends on (seed, stream, index) only: splitmix64's finaliser over a key
 * that keeps the three apart. */
static inline guint64
keyed (guint64 seed, guint32 stream, guint64 index)
{
  return mix64 (mix64 (seed ^ ((guint64) stream << 56)) + index * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
}

/* Uniform in (0, 1): the top 24 bits, centred in their cell (never 0, never 1). */
static inline double
unit (guint32 bits)
{
  return ((bits >> 8) + 0.5) / 16777216.0;
}

void
cb_s3gen_noise_normal (guint64 seed, guint32 stream, guint64 first, float *out, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    const guint64 h = keyed (seed, stream, first + i);
    const double u1 = unit ((guint32) (h >> 32)), u2 = unit ((guint32) h);
    out[i] = (float) (sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2));
  }
}

enum { STREAM_CFM = 1, STREAM_PHASE = 2, STREAM_SOURCE = 3 };

void
cb_s3gen_noise_cfm (guint64 seed, int t0, int T, float *z)
{
  /* value (frame, bin) is number frame·128 + bin of the stream: a frame's column never depends on
   * the window it is drawn for */
  float col[128];
  for (int t = 0; t < T; t++) {
    cb_s3gen_noise_normal (seed, STREAM_CFM, (guint64) (t0 + t) * 128, col, 80);
    for (int m = 0; m < 80; m++)
      z[(gsize) m * T + t] = col[m];
  }
}

void
cb_s3gen_noise_phases (guint64 seed, int n_harmonics, float *phases)
{
  for (int h = 0; h < n_harmonics; h++) {
    const guint64 k = keyed (seed, STREAM_PHASE, (guint64) h);
    phases[h] = h == 0 ? 0.0f : (float) ((unit ((guint32) k) * 2.0 - 1.0) * G_PI);
  }
}

void
cb_s3gen_noise_source (guint64 seed, int n_harmonics, gint64 n0, int L, float *eps)
{
  for (int h = 0; h < n_harmonics; h++)
    cb_s3gen_noise_normal (seed, STREAM_SOURCE + (guint32) h, (guint64) n0, eps + (gsize) h * L,
                           (gsize) L);
}

/* ---- one flow window ---- */

int
cb_s3gen_window_frames (const CbS3Gen *s, const CbS3GenVoice *v, int n)
{
  return s->cfg->flow.token_mel_ratio * (v->n_prompt_tokens + n) - v->n_prompt_frames;
}

static int
window_len (const CbS3Gen *s, const CbS3GenVoice *v, int n)
{
  return s->cfg->flow.token_mel_ratio * (v->n_prompt_tokens + n);
}

guint64
cb_s3gen_window_scratch_floats (const CbS3Gen *s, const CbS3GenVoice *v, int max_tokens)
{
  const int Tt = v->n_prompt_tokens + max_tokens, T = window_len (s, v, max_tokens);
  const guint64 per = (guint64) s->n_mels * T + CB_ARENA_ALIGN;
  const guint64 flow = cb_s3gen_flow_scratch_floats (s->flow, Tt);
  const guint64 cfm = cb_s3gen_cfm_scratch_floats (s->cfm, 2, T);
  /* tokens, mu, cond, z, the solver's output, then whichever of encoder/CFM needs more */
  return (guint64) Tt + CB_ARENA_ALIGN + 4 * per + MAX (flow, cfm) + 4 * CB_ARENA_ALIGN;
}

/* The window's start noise: prompt frames [0, 2Tp') keyed as utterance frames [0, 2Tp'), the
 * token frames from utterance frame 2(Tp' + first_token). */
static void
window_noise (const CbS3Gen *s, const CbS3GenVoice *v, int first_token, int T, guint64 seed,
              float *z)
{
  const int R = s->cfg->flow.token_mel_ratio, P = R * v->n_prompt_tokens, M = s->n_mels;
  float *col = g_newa (float, M);
  for (int t = 0; t < T; t++) {
    const int key = t < P ? t : t + R * first_token;
    cb_s3gen_noise_cfm (seed, key, 1, col);
    for (int m = 0; m < M; m++)
      z[(gsize) m * T + t] = col[m];
  }
}

gboolean
cb_s3gen_flow_window (CbS3Gen *s, CbArena *scratch, const CbS3GenVoice *v, const int32_t *tokens,
                      int n, int first_token, const float *z, guint64 seed, const gint *cancel,
                      float *mel, float *mu_out, GError **error)
{
  if (n < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen: a window needs at least one speech token");
    return FALSE;
  }
  const int M = s->n_mels, Tp = v->n_prompt_tokens, Tt = Tp + n, T = window_len (s, v, n);
  const int Tm = v->n_prompt_frames;
  const gsize mark = cb_arena_mark (scratch);
  int32_t *ids = (int32_t *) cb_arena_alloc (scratch, (guint64) Tt);
  float *mu = cb_arena_alloc (scratch, (guint64) M * T);
  float *cond = cb_arena_alloc (scratch, (guint64) M * T);
  float *z_own = z ? NULL : cb_arena_alloc (scratch, (guint64) M * T);
  float *full = cb_arena_alloc (scratch, (guint64) M * T);
  if (!ids || !mu || !cond || (!z && !z_own) || !full) {
    cb_arena_reset (scratch, mark);
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen: a window of %d tokens is larger than this stream was made for", n);
    return FALSE;
  }
  memcpy (ids, v->prompt_tokens, (gsize) Tp * sizeof (int32_t));
  memcpy (ids + Tp, tokens, (gsize) n * sizeof (int32_t));
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = cb_s3gen_flow_encode (s->flow, scratch, ids, Tt, mu, NULL, error);
  add_us (&s->times.encoder_us, g_get_monotonic_time () - t0);
  if (ok) {
    /* cond: the prompt mel in frames [0, Tm), zeros after */
    for (int m = 0; m < M; m++) {
      float *row = cond + (gsize) m * T;
      memcpy (row, v->prompt_mel + (gsize) m * Tm, (gsize) Tm * sizeof (float));
      memset (row + Tm, 0, (gsize) (T - Tm) * sizeof (float));
    }
    if (!z) {
      window_noise (s, v, first_token, T, seed, z_own);
      z = z_own;
    }
    t0 = g_get_monotonic_time ();
    ok = cb_s3gen_cfm_solve (s->cfm, scratch, z, mu, v->spks, cond, T, full, cancel, NULL, NULL,
                             error);
    add_us (&s->times.cfm_us, g_get_monotonic_time () - t0);
  }
  if (ok) {
    for (int m = 0; m < M; m++)
      memcpy (mel + (gsize) m * (T - Tm), full + (gsize) m * T + Tm,
              (gsize) (T - Tm) * sizeof (float));
    if (mu_out)
      memcpy (mu_out, mu, (gsize) M * T * sizeof (float));
  }
  cb_arena_reset (scratch, mark);
  return ok;
}

/* ---- whole utterance ---- */

void
cb_s3gen_output_clear (CbS3GenOutput *o)
{
  g_free (o->mu);
  g_free (o->mel);
  g_free (o->f0);
  g_free (o->wav);
  memset (o, 0, sizeof *o);
}

gboolean
cb_s3gen_decode_whole (CbS3Gen *s, const CbS3GenVoice *v, const int32_t *tokens, int n,
                       const CbS3GenNoise *noise, guint64 seed, const gint *cancel,
                       CbS3GenOutput *out, GError **error)
{
  memset (out, 0, sizeof *out);
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= s->cfg->flow.vocab_size) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "S3Gen: speech token %d at %d is not below %d", tokens[i], i,
                   s->cfg->flow.vocab_size);
      return FALSE;
    }
  if (n < 1)  /* nothing to say: an empty (silent) result, as upstream has no frames to make */
    return TRUE;
  const int F = cb_s3gen_window_frames (s, v, n), spf = cb_hift_samples_per_frame (s->hift);
  const int NH = cb_hift_n_harmonics (s->hift);
  const gsize L = (gsize) F * spf;
  const guint64 floats = MAX (cb_s3gen_window_scratch_floats (s, v, n),
                              cb_hift_scratch_floats (s->hift, F));
  CbArena *arena = cb_arena_new (floats * sizeof (float), error);
  if (!arena)
    return FALSE;
  out->mel = g_new (float, (gsize) s->n_mels * MAX (F, 1));
  out->n_frames = F;
  out->mu_frames = window_len (s, v, n);
  out->mu = g_new (float, (gsize) s->n_mels * out->mu_frames);
  gboolean ok = F > 0
      && cb_s3gen_flow_window (s, arena, v, tokens, n, 0, noise ? noise->cfm_z : NULL, seed,
                               cancel, out->mel, out->mu, error);
  if (ok) {
    float *phases = g_new (float, NH), *eps = NULL;
    const float *ph = noise && noise->sine_phase ? noise->sine_phase : phases;
    const float *ns = noise && noise->sine_noise ? noise->sine_noise : NULL;
    if (!(noise && noise->sine_phase))
      cb_s3gen_noise_phases (seed, NH, phases);
    if (!ns) {
      eps = g_new (float, (gsize) NH * L);
      cb_s3gen_noise_source (seed, NH, 0, (int) L, eps);
      ns = eps;
    }
    out->f0 = g_new (float, F);
    out->wav = g_new (float, L);
    out->n_samples = L;
    const gint64 t0 = g_get_monotonic_time ();
    cb_hift_inference (s->hift, arena, out->mel, F, ph, ns, NULL, 0, out->wav, NULL, out->f0);
    add_us (&s->times.hift_us, g_get_monotonic_time () - t0);
    cb_hift_trim_fade (out->wav, (int) L, s->cfg->hift.sampling_rate);
    g_free (eps);
    g_free (phases);
  }
  if (!ok)
    cb_s3gen_output_clear (out);
  cb_arena_free (arena);
  return ok;
}
