/* s3gen.h — S3Gen + HiFT as one vocoder: speech tokens → 80-bin mel → 24 kHz PCM (upstream
 * S3Token2Wav; spec §5), whole-utterance and streamed.
 *
 * Built once per engine (CbS3Gen): the flow front end and conformer encoder (s3gen-flow.c), the
 * CFM estimator and Euler solver (s3gen-cfm.c), HiFT (hift.c). A voice's S3Gen conditioning
 * (CbS3GenVoice: x-vector projection, prompt tokens, prompt mel as the CFM's `cond`) is computed
 * once per voice, exactly as every upstream call would recompute it.
 *
 * Randomness. Upstream draws the CFM start noise with randn_like over the whole window and HiFT's
 * source phases and noise per call, so no two calls agree on anything. Ours is keyed by position:
 * the start noise of mel frame t (prompt frames included: frame 0 is the first prompt frame) and
 * the source noise of output sample n are functions of (seed, t) and (seed, n) only
 * (cb_s3gen_noise_*), and the harmonic phases of (seed) only. A streamed decode therefore sees the
 * same noise at every frame as the whole decode of the same tokens, which is what keeps the two
 * close (other ports that redraw noise per chunk end up far from their whole decode). Tests inject
 * upstream's own draws instead (CbS3GenNoise). */
#pragma once

#include "conds.h"
#include "config.h"
#include "safetensors.h"
#include "tensor.h"

G_BEGIN_DECLS

typedef struct CbS3Gen CbS3Gen;

/* `cfg` and `st` must outlive the CbS3Gen (weights are views into `st`). */
CbS3Gen *cb_s3gen_new (const CbConfig *cfg, const CbSafetensors *st, GError **error);
void     cb_s3gen_free (CbS3Gen *s);
/* The BF16 weight option for the CFM estimator (see cb_s3gen_cfm_to_bf16): returns the bytes of
 * the copies. Call once, before any decode. */
gsize    cb_s3gen_use_bf16 (CbS3Gen *s);
const CbConfig *cb_s3gen_config (const CbS3Gen *s);
/* Output samples per mel frame (480) and mel frames per speech token (2). */
int      cb_s3gen_samples_per_frame (const CbS3Gen *s);
int      cb_s3gen_frames_per_token (const CbS3Gen *s);
/* Harmonics of HiFT's source (nb_harmonics + 1). */
int      cb_s3gen_n_harmonics (const CbS3Gen *s);
/* Estimator frame-evaluations since the CbS3Gen was made (the streaming work measure). */
guint64  cb_s3gen_frame_evals (const CbS3Gen *s);
/* Wall time spent in each stage since the CbS3Gen was made, in microseconds (benchmarks). */
typedef struct {
  gint64 encoder_us;  /* tokens → mu (flow front end + conformer encoder) */
  gint64 cfm_us;      /* the Euler solve (all estimator evaluations) */
  gint64 hift_us;     /* F0, source, generator, iSTFT */
} CbS3GenTimes;
void     cb_s3gen_times (const CbS3Gen *s, CbS3GenTimes *t);
/* For s3gen-stream.c: adds to hift_us. */
void     cb_s3gen_add_hift_us (CbS3Gen *s, gint64 us);

/* ---- voice ---- */

typedef struct {
  int      n_prompt_tokens;  /* Tp' = min(Tp, Tm / 2) (spec §6.5) */
  int32_t *prompt_tokens;    /* (Tp') */
  int      n_prompt_frames;  /* Tm */
  float   *prompt_mel;       /* (80, Tm) channels-first: the CFM's cond for frames [0, Tm) */
  float   *spks;             /* (80) spk_embed_affine_layer(normalize(x-vector)) */
} CbS3GenVoice;

/* From a voice's conds.gen; FALSE with CB_ERROR_INVALID_ARGUMENT on sizes or ids the model does
 * not take. */
gboolean cb_s3gen_voice_init (CbS3GenVoice *v, const CbS3Gen *s, const CbConds *conds,
                              GError **error);
void     cb_s3gen_voice_clear (CbS3GenVoice *v);

/* ---- noise ---- */

/* Upstream's draws, injected (tests, --noise): any member may be NULL (then ours is used). */
typedef struct {
  const float *cfm_z;        /* (80, T) start noise of the whole window, T = 2(Tp' + N) frames */
  const float *sine_phase;   /* (n_harmonics) as used (index 0 is 0) */
  const float *sine_noise;   /* (n_harmonics, L) unscaled ε of the whole output */
} CbS3GenNoise;

/* Position-keyed standard normal values: out[i] for i in [0, n) is value (first + i) of stream
 * `stream` under `seed` (independent of how the range is split into calls). */
void cb_s3gen_noise_normal (guint64 seed, guint32 stream, guint64 first, float *out, gsize n);
/* The CFM start noise of mel frames [t0, t0 + T) as (80, T) channels-first. */
void cb_s3gen_noise_cfm (guint64 seed, int t0, int T, float *z);
/* SineGen's initial phases (index 0 is 0, others uniform in [−π, π)), (n_harmonics). */
void cb_s3gen_noise_phases (guint64 seed, int n_harmonics, float *phases);
/* SineGen's ε for output samples [n0, n0 + L) as (n_harmonics, L). */
void cb_s3gen_noise_source (guint64 seed, int n_harmonics, gint64 n0, int L, float *eps);

/* ---- one flow call (upstream flow_inference with finalize=True) ---- */

/* Scratch floats cb_s3gen_flow_window needs for windows of up to `max_tokens` speech tokens. */
guint64  cb_s3gen_window_scratch_floats (const CbS3Gen *s, const CbS3GenVoice *v, int max_tokens);

/* The mel of tokens[0, n) after the voice prompt: [prompt tokens | tokens] → encoder → CFM (10
 * Euler steps with CFG) → window frames [Tm, T), T = 2(Tp' + n), written to mel (80, T − Tm)
 * channels-first. z: the start noise of the whole window (80, T), or NULL for ours: the window's
 * prompt frames are utterance frames [0, 2Tp') and tokens[0] is speech token `first_token` of the
 * utterance, so its frames are utterance frames 2(Tp' + first_token) + ... (keyed noise).
 * Token ids must be valid (< speech vocab). cancel: see cb_s3gen_cfm_solve.
 * mu_out: NULL or (80, T), the encoder projection (dumps). */
gboolean cb_s3gen_flow_window (CbS3Gen *s, CbArena *scratch, const CbS3GenVoice *v,
                               const int32_t *tokens, int n, int first_token, const float *z,
                               guint64 seed, const gint *cancel, float *mel, float *mu_out,
                               GError **error);
/* Frames cb_s3gen_flow_window writes for n tokens: 2(Tp' + n) − Tm. */
int      cb_s3gen_window_frames (const CbS3Gen *s, const CbS3GenVoice *v, int n);

/* ---- whole-utterance decode (upstream S3Token2Wav.inference) ---- */

typedef struct {
  float *mu;      /* (80, T) encoder projection of the whole window, T = 2(Tp' + N) */
  int    mu_frames;
  float *mel;     /* (80, F) */
  int    n_frames;
  float *f0;      /* (F) */
  float *wav;     /* (F · 480), trim-faded */
  gsize  n_samples;
} CbS3GenOutput;

void     cb_s3gen_output_clear (CbS3GenOutput *o);

/* tokens (already post-processed: ids < speech vocab) → mel → HiFT → fade. noise NULL: ours from
 * `seed`. Allocates what it needs (a whole decode is not the streaming hot path). */
gboolean cb_s3gen_decode_whole (CbS3Gen *s, const CbS3GenVoice *v, const int32_t *tokens, int n,
                                const CbS3GenNoise *noise, guint64 seed, const gint *cancel,
                                CbS3GenOutput *out, GError **error);

/* ---- streaming (s3gen-stream.c) ---- */

typedef struct CbS3GenStream CbS3GenStream;

typedef struct {
  int first_chunk_tokens;  /* speech tokens of the first chunk (25 = 1 s of audio) */
  int context_tokens;      /* left context re-run with each later chunk (50); < 0: all so far */
  guint64 seed;
} CbS3GenStreamParams;

void cb_s3gen_stream_params_init (CbS3GenStreamParams *p);

/* A stream for utterances of up to max_tokens speech tokens with `voice` (which must outlive it
 * or be replaced by a later begin). Allocates all scratch here. */
CbS3GenStream *cb_s3gen_stream_new (CbS3Gen *s, int max_tokens, GError **error);
void           cb_s3gen_stream_free (CbS3GenStream *st);
/* Starts an utterance (no allocation). */
gboolean       cb_s3gen_stream_begin (CbS3GenStream *st, const CbS3GenVoice *voice,
                                      const CbS3GenStreamParams *params, GError **error);
/* Appends speech tokens (valid ids) as T3 produces them. */
gboolean       cb_s3gen_stream_push (CbS3GenStream *st, const int32_t *tokens, int n,
                                     GError **error);
/* Whether the schedule wants a chunk decoded now (`final`: no more tokens will come). */
gboolean       cb_s3gen_stream_chunk_due (const CbS3GenStream *st, gboolean final);
/* Decodes the next chunk: PCM samples (valid until the next call) that continue the utterance;
 * *n_samples may be 0. Chunks follow the schedule whatever was pushed; with `final` (no more
 * tokens will come) the chunk that reaches the last token ends the utterance
 * (cb_s3gen_stream_ended) — call again while it has not ended. */
gboolean       cb_s3gen_stream_decode (CbS3GenStream *st, gboolean final, const gint *cancel,
                                       const float **pcm, gsize *n_samples, GError **error);
gboolean       cb_s3gen_stream_ended (const CbS3GenStream *st);
/* Chunks decoded and estimator frame-evaluations spent in this utterance. */
int            cb_s3gen_stream_chunks (const CbS3GenStream *st);
guint64        cb_s3gen_stream_frame_evals (const CbS3GenStream *st);

G_END_DECLS
