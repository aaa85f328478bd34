/* s3gen-stream.c — streamed S3Gen + HiFT: speech tokens in as T3 makes them, PCM out in chunks
 * that join into (almost) the whole-utterance decode.
 *
 * Why this method. The fork (chatterbox-streaming) decodes each chunk as an independent
 * S3Gen.inference on [50 context tokens + new tokens] with fresh noise, cuts the context audio
 * and fades the chunk in: every chunk restarts the CFM from different noise and HiFT from new
 * phases, so joins dip and the stream drifts far from a whole decode (a peer measured 116 % RMS
 * difference). CosyVoice caches mel and source across calls and cross-fades the overlap. We keep
 * CosyVoice's idea of holding back what the next chunk will know better, and make the rest exact:
 *
 * 1. Noise is keyed by position (s3gen.h): a mel frame's CFM start noise and an output sample's
 *    source noise are the same in every window that contains them and in the whole decode.
 * 2. S3Gen windows are [voice prompt | left context | new tokens]. The encoder and the estimator
 *    attend in both directions and see 3 tokens ahead, so every frame of a window still changes
 *    when more tokens arrive, the last ones most. A frame becomes final only once audio depends on
 *    it: up to JOIN_FRAMES past the audio emitted so far. The rest of a window is provisional: HiFT
 *    reads it as right context up to `holdback` frames (the look-ahead, 2 × 3) plus XFADE_FRAMES
 *    before the window's end, and the next window rewrites all of it, its first XFADE_FRAMES
 *    cross-faded (raised cosine) from the provisional values. The final chunk finalises everything.
 *    The last window covers every token, so when it starts at token 0 (utterances that end by the
 *    second chunk: up to 300 tokens with a 10 s prompt) the streamed mel equals the whole decode's
 *    from JOIN_FRAMES past the first chunk's audio on. (Finalising every frame up to the
 *    look-ahead, as before, kept more of the first window's mel: log-mel distance ratio 0.069 on
 *    the golden case below, against 0.058–0.066 for JOIN_FRAMES 0–8. The cross-fade is 8 frames
 *    (80 ms): with 4, one join's spectral change reached 1.58× the whole decode's (another
 *    configuration and seed) and a later join of a 3-window stream 1.50× its roughness, over the
 *    tests' 1.5×; with 8 every join of three golden sets stays ≤ 1.4×. The first chunk then
 *    plays 0.40 s of its 1 s of tokens instead of 0.48 s; its first audio is as early.)
 * 3. HiFT is run on windows of mel with HIFT_LEFT_FRAMES frames of left context and
 *    HIFT_RIGHT_FRAMES held back on the right, which cover its receptive field (F0 convs, conv_pre,
 *    the resblocks at each rate), so each sample equals the whole decode's on the same mel and F0.
 * 4. The one global thing in HiFT is the harmonic phase: a running sum of F0 over every sample
 *    before. The left-context frames of a HiFT window use the F0 their audio was made with and its
 *    phase starts from the sum of all F0 before, so the phase is continuous. But continuity alone
 *    is not enough: measured on the golden 150-token case, the first chunk's mel (25 tokens seen)
 *    is off the whole decode's by 0.09 (mean |Δ| per bin; another seed: 1.16) and its F0 by ~3 Hz,
 *    which left the fundamental 0.54 cycles (harmonic k: k times that) behind the whole decode for
 *    the rest of the utterance although every later mel frame was exact. That phase offset alone
 *    kept the streamed audio 0.27 away from the whole decode in log-mel everywhere (another seed:
 *    0.37). So the stream keeps a reference F0 for every frame, from the best window that covered
 *    it (set_reference_f0), and bends the F0 of the frames it vocodes until its phase has caught up
 *    with the reference's (track_reference_phase): by at most PHASE_BEND_HZ in voiced frames, all
 *    at once in unvoiced ones, whose harmonics are silent. When the last window starts at token 0
 *    its F0 is the whole decode's, so the phase, and with it the audio, becomes the whole
 *    decode's a few voiced frames after the first join: on the golden case from 0.8 s on (the
 *    first join is at 0.40 s), and the distance ratio to another seed fell from 0.72 to 0.058 (0.062 with the 8-frame cross-fade)
 *    (bends of 1, 4, 8 Hz: 0.082, 0.073, 0.061 with finalisation as before; 2 Hz is under 3 % of
 *    a low voice's F0). A window that starts later cannot know how the whole decode's F0 differs
 *    over frames before it, so on longer utterances each such window leaves its own phase offset.
 *
 * Schedule (work bound). Every S3Gen window re-runs the voice prompt (500 frames for a 10 s
 * reference) and its left context through 10 CFM steps × 2 CFG rows, because bidirectional
 * attention makes none of it reusable exactly. The first chunk is small (`first_chunk_tokens`) so
 * first audio comes early; each later chunk waits until its new frames are at least the frames it
 * re-runs (prompt + left context), so a later chunk costs at most twice its own output. For a 10 s
 * utterance with the built-in 10 s prompt that means: first chunk, then the rest at the end of the
 * utterance, ~1.55× the whole decode's work (counted in estimator frame-evaluations, prompt frames
 * included). */
#include "s3gen.h"

#include "engine-internal.h"
#include "hift.h"

#include <math.h>
#include <string.h>

/* Frames of the mel kept back (beyond the look-ahead frames) and cross-faded at S3Gen joins. */
#define XFADE_FRAMES 8
/* HiFT context, in mel frames, on either side of the frames a HiFT window makes final. */
#define HIFT_LEFT_FRAMES 16
#define HIFT_RIGHT_FRAMES 16
/* Mel frames past the audio emitted so far that a new S3Gen window leaves as they are, so the
 * samples just before and after a join come from the same mel around them. */
#define JOIN_FRAMES 4
/* Largest F0 change (Hz) a voiced frame takes to bring the harmonic phase onto the reference. */
#define PHASE_BEND_HZ 2.0f

struct CbS3GenStream {
  CbS3Gen             *s3gen;
  CbHift              *hift;
  int                  max_tokens;
  int                  M, R, spf, NH, sr;
  int                  holdback;        /* look-ahead frames: R · pre_lookahead_len */
  CbArena             *arena;
  /* per utterance */
  const CbS3GenVoice  *voice;
  CbS3GenStreamParams  params;
  int32_t             *tokens;          /* (max_tokens) pushed so far */
  int                  n_tokens;
  int                  decoded_tokens;  /* tokens covered by the last chunk's window */
  int                  D;               /* Tm − R·Tp': 1 when the prompt mel has one odd frame */
  float               *mel;             /* (M, max_frames) mel, channels-first */
  int                  max_frames;
  int                  n_mel;           /* frames final: no later window rewrites them */
  int                  n_ready;         /* frames HiFT may read: final, then provisional */
  int                  n_written;       /* frames written (the last window's end) */
  float               *window_mel;      /* (M, window frames) one S3Gen window's output */
  float               *f0;              /* (max_frames) F0 the source used for vocoded frames */
  float               *f0_ref;          /* (max_frames + 1) reference F0 (set_reference_f0) */
  int                 *ref_start;       /* (max_frames + 1) first token of the window it came from */
  float                voiced;          /* HiFT's voiced threshold (Hz) */
  int                  n_audio;         /* frames vocoded (audio emitted) */
  float               *phases;          /* (NH) */
  double              *cycles0;         /* (NH) harmonic phase before a HiFT window, in cycles */
  float               *fade;            /* (2 · sr / 50) the utterance fade-in */
  int                  n_fade;
  /* HiFT window buffers (hwin_f0 also holds an S3Gen window's F0 in set_reference_f0) */
  float               *hwin_mel, *hwin_f0, *source, *noise, *wav;
  float               *pcm;             /* one decode's output */
  int                  chunks;
  guint64              evals_at_begin;
  gboolean             ended;
};

void
cb_s3gen_stream_params_init (CbS3GenStreamParams *p)
{
  p->first_chunk_tokens = 25;
  p->context_tokens = 50;
  p->seed = 0;
}

CbS3GenStream *
cb_s3gen_stream_new (CbS3Gen *s, int max_tokens, GError **error)
{
  const CbConfig *cfg = cb_s3gen_config (s);
  if (max_tokens < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen stream: max_tokens must be at least 1 (got %d)", max_tokens);
    return NULL;
  }
  CbS3GenStream *st = g_new0 (CbS3GenStream, 1);
  st->s3gen = s;
  st->hift = cb_s3gen_part_hift (s);
  st->max_tokens = max_tokens;
  st->M = cfg->flow.output_size;
  st->R = cfg->flow.token_mel_ratio;
  st->spf = cb_s3gen_samples_per_frame (s);
  st->NH = cb_hift_n_harmonics (st->hift);
  st->sr = cfg->hift.sampling_rate;
  st->holdback = st->R * cfg->flow.pre_lookahead_len;
  st->max_frames = st->R * max_tokens;
  const int hift_frames = st->max_frames + HIFT_LEFT_FRAMES;
  const gsize L = (gsize) hift_frames * st->spf;
  st->tokens = g_new (int32_t, max_tokens);
  st->mel = g_new (float, (gsize) st->M * st->max_frames);
  st->window_mel = g_new (float, (gsize) st->M * (st->max_frames + 1));
  st->f0 = g_new (float, st->max_frames);
  st->f0_ref = g_new (float, st->max_frames + 1);
  st->ref_start = g_new (int, st->max_frames + 1);
  st->voiced = (float) cfg->hift.nsf_voiced_threshold;
  st->phases = g_new (float, st->NH);
  st->cycles0 = g_new (double, st->NH);
  st->n_fade = 2 * (st->sr / 50);
  st->fade = g_new (float, st->n_fade);
  for (int i = 0; i < st->n_fade; i++)
    st->fade[i] = 1.0f;
  cb_hift_trim_fade (st->fade, st->n_fade, st->sr);
  st->hwin_mel = g_new (float, (gsize) st->M * hift_frames);
  st->hwin_f0 = g_new (float, hift_frames);
  st->source = g_new (float, L);
  st->noise = g_new (float, (gsize) st->NH * L);
  st->wav = g_new (float, L);
  st->pcm = g_new (float, (gsize) st->max_frames * st->spf);
  return st;
}

void
cb_s3gen_stream_free (CbS3GenStream *st)
{
  if (!st)
    return;
  if (st->arena)
    cb_arena_free (st->arena);
  g_free (st->tokens);
  g_free (st->mel);
  g_free (st->window_mel);
  g_free (st->f0);
  g_free (st->f0_ref);
  g_free (st->ref_start);
  g_free (st->phases);
  g_free (st->cycles0);
  g_free (st->fade);
  g_free (st->hwin_mel);
  g_free (st->hwin_f0);
  g_free (st->source);
  g_free (st->noise);
  g_free (st->wav);
  g_free (st->pcm);
  g_free (st);
}

/* The arena must hold a window of the voice's prompt + max_tokens and a HiFT window; it is
 * (re)made only when a voice with a longer prompt than any before comes. */
static gboolean
ensure_arena (CbS3GenStream *st, const CbS3GenVoice *v, GError **error)
{
  const guint64 floats = MAX (cb_s3gen_window_scratch_floats (st->s3gen, v, st->max_tokens),
                              cb_hift_scratch_floats (st->hift, st->max_frames + HIFT_LEFT_FRAMES));
  const gsize bytes = floats * sizeof (float) + 64 * CB_ARENA_ALIGN;
  if (st->arena && st->arena->size >= bytes)
    return TRUE;
  if (st->arena)
    cb_arena_free (st->arena);
  st->arena = cb_arena_new (bytes, error);
  return st->arena != NULL;
}

gboolean
cb_s3gen_stream_begin (CbS3GenStream *st, const CbS3GenVoice *voice,
                       const CbS3GenStreamParams *params, GError **error)
{
  if (params->first_chunk_tokens < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen stream: the first chunk needs at least 1 token (got %d)",
                 params->first_chunk_tokens);
    return FALSE;
  }
  if (!ensure_arena (st, voice, error))
    return FALSE;
  st->voice = voice;
  st->params = *params;
  st->n_tokens = st->decoded_tokens = 0;
  st->D = voice->n_prompt_frames - st->R * voice->n_prompt_tokens;
  st->n_mel = st->n_ready = st->n_written = st->n_audio = 0;
  st->chunks = 0;
  st->ended = FALSE;
  st->evals_at_begin = cb_s3gen_frame_evals (st->s3gen);
  cb_s3gen_noise_phases (params->seed, st->NH, st->phases);
  return TRUE;
}

gboolean
cb_s3gen_stream_push (CbS3GenStream *st, const int32_t *tokens, int n, GError **error)
{
  const int V = cb_s3gen_config (st->s3gen)->flow.vocab_size;
  if (!st->voice || st->ended || n < 0 || st->n_tokens + n > st->max_tokens) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen stream: cannot take %d more tokens (%d of %d taken%s)", n, st->n_tokens,
                 st->max_tokens, st->ended || !st->voice ? ", no utterance in progress" : "");
    return FALSE;
  }
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= V) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "S3Gen stream: speech token %d is not below %d", tokens[i], V);
      return FALSE;
    }
  memcpy (st->tokens + st->n_tokens, tokens, (gsize) n * sizeof (int32_t));
  st->n_tokens += n;
  return TRUE;
}

/* First token of the next window: `context_tokens` before the previous window's end, but never
 * after the first frame the window must recompute. */
static int
window_start (const CbS3GenStream *st)
{
  if (st->chunks == 0)
    return 0;
  int s = st->params.context_tokens < 0 ? 0 : st->decoded_tokens - st->params.context_tokens;
  s = MIN (s, st->n_mel / st->R);
  return MAX (s, 0);
}

/* Last token (exclusive) of the next chunk by the schedule alone, so chunk boundaries never depend
 * on how far T3 happened to be when the reader looked: the first chunk ends at first_chunk_tokens;
 * a later one once its new frames are at least the frames its window re-runs (prompt + context). */
static int
next_chunk_end (const CbS3GenStream *st)
{
  if (st->chunks == 0)
    return st->params.first_chunk_tokens;
  const int rerun = st->voice->n_prompt_frames + st->R * (st->decoded_tokens - window_start (st));
  return st->decoded_tokens + MAX (1, (rerun + st->R - 1) / st->R);
}

gboolean
cb_s3gen_stream_chunk_due (const CbS3GenStream *st, gboolean final)
{
  if (!st->voice || st->ended)
    return FALSE;
  return final || st->n_tokens >= next_chunk_end (st);
}

gboolean
cb_s3gen_stream_ended (const CbS3GenStream *st)
{
  return st->ended;
}

/* Frames [from, to) of the utterance mel from the last window (whose frame 0 is utterance frame
 * R·w0): into `mel`, cross-fading the first XFADE_FRAMES from the provisional values there. */
static void
take_frames (CbS3GenStream *st, int w0, int wframes, int from, int to, gboolean crossfade)
{
  const int M = st->M;
  for (int f = from; f < to; f++) {
    const int j = f - st->R * w0, k = f - from;
    float w = 0.0f;
    if (crossfade && k < XFADE_FRAMES && f < st->n_written)
      w = 0.5f * (1.0f + cosf ((float) G_PI * (k + 1) / (XFADE_FRAMES + 1)));
    for (int m = 0; m < M; m++) {
      float *x = st->mel + (gsize) m * st->max_frames + f;
      const float fresh = st->window_mel[(gsize) m * wframes + j];
      *x = w > 0.0f ? w * *x + (1.0f - w) * fresh : fresh;
    }
  }
}

/* The reference F0 for the harmonic phase, from the window just decoded (starting at token w0):
 * for the frames it writes, and for earlier ones when it saw every token the window their
 * reference came from saw (windows never start earlier than the one before, so: when both start at
 * the same token). A window that starts later lacks their left context and is not better there.
 * A window's first frames are left alone when it starts after token 0: their F0 sees its edge. */
static void
set_reference_f0 (CbS3GenStream *st, int w0, int wframes)
{
  const int edge = w0 > 0 ? cb_s3gen_config (st->s3gen)->f0_predictor.num_layers : 0;
  float *f0 = st->hwin_f0;
  cb_hift_f0 (st->hift, st->arena, st->window_mel, wframes, f0);
  for (int j = edge; j < wframes; j++) {
    const int f = st->R * w0 + j;
    if (f >= st->n_mel || st->ref_start[f] >= w0) {
      st->f0_ref[f] = f0[j];
      st->ref_start[f] = w0;
    }
  }
}

/* One S3Gen window over tokens [w0, e): the reference F0, the mel from n_mel on. */
static gboolean
decode_window (CbS3GenStream *st, int e, gboolean final, const gint *cancel, GError **error)
{
  const int w0 = window_start (st), n = e - w0;
  const int wframes = cb_s3gen_window_frames (st->s3gen, st->voice, n);
  if (!cb_s3gen_flow_window (st->s3gen, st->arena, st->voice, st->tokens + w0, n, w0, NULL,
                             st->params.seed, cancel, st->window_mel, NULL, error))
    return FALSE;
  /* the window's frame j is utterance frame R·w0 + j; it ends at R·e − D */
  const int end = st->R * e - st->D;
  set_reference_f0 (st, w0, wframes);
  take_frames (st, w0, wframes, st->n_mel, end, st->n_audio > 0);
  st->n_written = end;
  st->n_ready = final ? end : MAX (end - st->holdback - XFADE_FRAMES, st->n_mel);
  st->decoded_tokens = e;
  st->chunks++;
  return TRUE;
}

/* Changes the F0 of frames [from, to) (f0w: the HiFT window's, frame ws at index 0) so that the
 * harmonic phase, Σ F0 over the frames before, catches up with the reference F0's. Only the phase
 * modulo one cycle of the fundamental matters (harmonic k then is off by whole cycles too). */
static void
track_reference_phase (CbS3GenStream *st, float *f0w, int ws, int from, int to)
{
  const double cycle = (double) st->sr / st->spf;  /* one cycle, in Hz·frames */
  double lag = 0.0;  /* reference phase − ours, in Hz·frames */
  for (int f = 0; f < from; f++)
    lag += (double) st->f0_ref[f] - st->f0[f];
  for (int f = from; f < to; f++) {
    float *x = f0w + (f - ws);
    lag += (double) st->f0_ref[f] - *x;
    lag -= cycle * floor (lag / cycle + 0.5);  /* the nearest way round: |lag| ≤ half a cycle */
    double d = lag;
    if (*x <= st->voiced) {
      /* unvoiced: the harmonics are multiplied by 0, so the phase may jump; stay unvoiced */
      if (*x + d > st->voiced)
        d -= cycle;
    } else {
      d = CLAMP (d, -PHASE_BEND_HZ, PHASE_BEND_HZ);
      if (*x + d <= st->voiced)
        d = 0;
    }
    *x += (float) d;
    lag -= d;
  }
}

/* Vocodes mel frames [n_audio, upto) with HiFT on the window [n_audio − HIFT_LEFT_FRAMES,
 * right_end); returns where they start in st->wav. */
static gsize
vocode (CbS3GenStream *st, int upto, int right_end)
{
  const int M = st->M, spf = st->spf;
  const int ws = MAX (0, st->n_audio - HIFT_LEFT_FRAMES), W = right_end - ws;
  const gsize L = (gsize) W * spf;
  for (int m = 0; m < M; m++)
    memcpy (st->hwin_mel + (gsize) m * W, st->mel + (gsize) m * st->max_frames + ws,
            (gsize) W * sizeof (float));
  cb_hift_f0 (st->hift, st->arena, st->hwin_mel, W, st->hwin_f0);
  /* frames already vocoded keep the F0 they were vocoded with: the harmonic phase is a running
   * sum over every sample, so it must not change under their samples; the new ones follow the
   * reference phase */
  memcpy (st->hwin_f0, st->f0 + ws, (gsize) (st->n_audio - ws) * sizeof (float));
  track_reference_phase (st, st->hwin_f0, ws, st->n_audio, right_end);
  memcpy (st->f0 + st->n_audio, st->hwin_f0 + (st->n_audio - ws),
          (gsize) (upto - st->n_audio) * sizeof (float));
  double before = 0.0;  /* Σ F0 over frames [0, ws) */
  for (int f = 0; f < ws; f++)
    before += st->f0[f];
  double *c0 = st->cycles0;
  for (int h = 0; h < st->NH; h++) {
    const double c = before * spf * (h + 1) / st->sr;
    c0[h] = c - floor (c);
  }
  cb_s3gen_noise_source (st->params.seed, st->NH, (gint64) ws * spf, (int) L, st->noise);
  cb_hift_source (st->hift, st->arena, st->hwin_f0, W, st->phases, st->noise, c0, NULL,
                  st->source, NULL);
  cb_hift_decode (st->hift, st->arena, st->hwin_mel, W, st->source, st->wav, NULL);
  const gsize first = (gsize) (st->n_audio - ws) * spf, n = (gsize) (upto - st->n_audio) * spf;
  float *out = st->wav + first;
  /* the utterance's fade-in is by absolute sample */
  const gsize abs0 = (gsize) st->n_audio * spf;
  for (gsize i = 0; abs0 + i < (gsize) st->n_fade && i < n; i++)
    out[i] *= st->fade[abs0 + i];
  st->n_audio = upto;
  (void) L;
  return first;
}

gboolean
cb_s3gen_stream_decode (CbS3GenStream *st, gboolean final, const gint *cancel, const float **pcm,
                        gsize *n_samples, GError **error)
{
  *pcm = st->pcm;
  *n_samples = 0;
  if (!st->voice || st->ended) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "S3Gen stream: no utterance in progress");
    return FALSE;
  }
  /* with every token in (`final`), scheduled chunks still come first: the same tokens give the
   * same chunks and the same audio however T3 and the reader were interleaved */
  const int e = MIN (next_chunk_end (st), st->n_tokens);
  final = final && e == st->n_tokens;
  if (e > st->decoded_tokens) {
    if (!decode_window (st, e, final, cancel, error))
      return FALSE;
  } else if (final) {
    /* no new tokens since the last window, which therefore saw the whole utterance: its
     * provisional frames are already what a final window would make */
    st->n_ready = st->n_written;
  }
  const int upto = final ? st->n_ready : st->n_ready - HIFT_RIGHT_FRAMES;
  if (upto > st->n_audio) {
    if (cancel && g_atomic_int_get (cancel)) {
      g_set_error (error, CB_ERROR, CB_ERROR_CANCELLED, "S3Gen stream: cancelled");
      return FALSE;
    }
    const gsize n = (gsize) (upto - st->n_audio) * st->spf;
    const gint64 t0 = g_get_monotonic_time ();
    const gsize first = vocode (st, upto, st->n_ready);
    cb_s3gen_add_hift_us (st->s3gen, g_get_monotonic_time () - t0);
    memcpy (st->pcm, st->wav + first, n * sizeof (float));
    *n_samples = n;
  }
  /* the audio up to here depends on the frames around its end: those stay, the next window redoes
   * the rest */
  if (st->n_audio > 0)
    st->n_mel = MAX (st->n_mel, MIN (st->n_audio + JOIN_FRAMES, st->n_ready));
  if (final)
    st->ended = TRUE;
  return TRUE;
}

int
cb_s3gen_stream_chunks (const CbS3GenStream *st)
{
  return st->chunks;
}

guint64
cb_s3gen_stream_frame_evals (const CbS3GenStream *st)
{
  return cb_s3gen_frame_evals (st->s3gen) - st->evals_at_begin;
}
