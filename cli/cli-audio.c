/* cli-audio.c — see cli-audio.h.
 *
 * The dump (DIR/s3gen.safetensors):
 *   tokens      I32 (N)        the speech tokens decoded
 *   flow.mu     F32 (80, T)    encoder projection of [prompt | tokens] (whole decode only)
 *   out.mel     F32 (80, F)    the mel HiFT received
 *   hift.f0     F32 (F)        (whole decode only)
 *   out.wav     F32 (L)        the PCM written */
#include "cli-audio.h"

#include <math.h>
#include <string.h>

#include "cli-model.h"
#include "engine-internal.h"
#include "safetensors.h"

gboolean
cli_write_wav (const char *path, const float *pcm, gsize n, int rate, GError **error)
{
  if (n > (G_MAXUINT32 - 44) / 2) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "%s: too long for a WAV file", path);
    return FALSE;
  }
  const guint32 data = (guint32) (2 * n);
  guint8 *buf = g_malloc (44 + (gsize) data);
  guint8 *p = buf;
#define PUT4(s) (memcpy (p, s, 4), p += 4)
#define LE32(v) (p[0] = (v) & 0xff, p[1] = ((v) >> 8) & 0xff, p[2] = ((v) >> 16) & 0xff, \
                 p[3] = ((v) >> 24) & 0xff, p += 4)
#define LE16(v) (p[0] = (v) & 0xff, p[1] = ((v) >> 8) & 0xff, p += 2)
  PUT4 ("RIFF"); LE32 (36 + data); PUT4 ("WAVE");
  PUT4 ("fmt "); LE32 (16u); LE16 (1u); LE16 (1u); LE32 ((guint32) rate);
  LE32 ((guint32) rate * 2); LE16 (2u); LE16 (16u);
  PUT4 ("data"); LE32 (data);
  for (gsize i = 0; i < n; i++) {
    const float x = isfinite (pcm[i]) ? CLAMP (pcm[i], -1.0f, 1.0f) : 0.0f;
    const gint16 v = (gint16) lrintf (x * 32767.0f);
    LE16 ((guint16) v);
  }
#undef PUT4
#undef LE32
#undef LE16
  gboolean ok = g_file_set_contents (path, (const char *) buf, (gssize) (44 + (gsize) data),
                                     error);
  g_free (buf);
  return ok;
}

static CbTensorInfo
tensor (const char *name, CbDType dtype, const void *data, gsize nbytes, int ndim,
        int64_t d0, int64_t d1)
{
  CbTensorInfo t = { 0 };
  t.name = name;
  t.dtype = dtype;
  t.data = data;
  t.nbytes = nbytes;
  t.ndim = ndim;
  t.shape[0] = d0;
  t.shape[1] = d1;
  return t;
}

static gboolean
write_dump (const char *dir, const gint32 *tokens, int n, const CbS3GenOutput *o,
            const float *wav, gsize n_samples, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: cannot create the dump directory", dir);
    return FALSE;
  }
  CbTensorInfo t[5];
  guint k = 0;
  t[k++] = tensor ("tokens", CB_DTYPE_I32, tokens, (gsize) n * 4, 1, n, 0);
  if (o && o->mu)
    t[k++] = tensor ("flow.mu", CB_DTYPE_F32, o->mu, (gsize) 80 * o->mu_frames * 4, 2, 80,
                     o->mu_frames);
  if (o && o->mel)
    t[k++] = tensor ("out.mel", CB_DTYPE_F32, o->mel, (gsize) 80 * o->n_frames * 4, 2, 80,
                     o->n_frames);
  if (o && o->f0)
    t[k++] = tensor ("hift.f0", CB_DTYPE_F32, o->f0, (gsize) o->n_frames * 4, 1, o->n_frames, 0);
  t[k++] = tensor ("out.wav", CB_DTYPE_F32, wav, n_samples * 4, 1, (int64_t) n_samples, 0);
  char *path = g_build_filename (dir, "s3gen.safetensors", NULL);
  gboolean ok = cb_safetensors_write (path, k, t, NULL, error);
  g_free (path);
  return ok;
}

/* One float tensor of `numel` values from the first name present, or NULL (absent is fine). */
static const float *
noise_tensor (const CbSafetensors *st, const char *name, gsize numel, const char *path,
              GError **error)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  if (!t)
    return NULL;
  if (t->dtype != CB_DTYPE_F32 || t->numel != numel) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: tensor \"%s\" must be F32 with %zu values for these tokens (has %"
                 G_GUINT64_FORMAT ")", path, name, numel, t->numel);
    return NULL;
  }
  return (const float *) t->data;
}

/* Whole decode of given tokens (--speech-tokens). */
static gboolean
run_tokens (CbEngine *e, const CliAudioRequest *r, const CbVoice *voice, FILE *out,
            GError **error)
{
  const char *const names[] = { "tokens", "input.tokens", NULL };
  int n = 0;
  gint32 *tokens = cli_read_ids (r->speech_tokens, names, &n, error);
  if (!tokens)
    return FALSE;
  CbS3Gen *s3 = cb_engine_s3gen (e);
  const CbS3GenVoice *v = cb_engine_s3gen_voice (e, voice);
  CbS3GenNoise noise = { 0 };
  CbSafetensors *nst = NULL;
  gboolean ok = TRUE;
  const int F = cb_s3gen_window_frames (s3, v, n);
  const int T = F + v->n_prompt_frames, NH = cb_s3gen_n_harmonics (s3);
  const gsize L = (gsize) MAX (F, 0) * cb_s3gen_samples_per_frame (s3);
  if (r->noise && (ok = (nst = cb_safetensors_open (r->noise, error)) != NULL)) {
    GError *err = NULL;
    noise.cfm_z = noise_tensor (nst, "noise.z", (gsize) 80 * T, r->noise, &err);
    if (!err)
      noise.sine_phase = noise_tensor (nst, "rand.sine_phase", NH, r->noise, &err);
    if (!err)
      noise.sine_noise = noise_tensor (nst, "rand.sine_noise", (gsize) NH * L, r->noise, &err);
    if (err) {
      g_propagate_error (error, err);
      ok = FALSE;
    }
  }
  CbS3GenOutput o = { 0 };
  if (ok)
    ok = cb_s3gen_decode_whole (s3, v, tokens, n, &noise, r->params.seed, NULL, &o, error);
  if (ok) {
    fprintf (out, "speech tokens: %d\nmel frames: %d\nsamples: %zu (%.3f s)\n", n, o.n_frames,
             o.n_samples, o.n_samples / (double) CB_SAMPLE_RATE);
    if (r->output)
      ok = cli_write_wav (r->output, o.wav, o.n_samples, CB_SAMPLE_RATE, error);
    if (ok && r->dump)
      ok = write_dump (r->dump, tokens, n, &o, o.wav, o.n_samples, error);
  }
  cb_s3gen_output_clear (&o);
  if (nst)
    cb_safetensors_free (nst);
  g_free (tokens);
  return ok;
}

/* Text → streamed audio through the engine's pull API. */
static gboolean
run_text (CbEngine *e, const CliAudioRequest *r, const CbVoice *voice, FILE *out, GError **error)
{
  CbUtteranceParams params = r->params;
  if (!r->max_tokens_set)  /* the default, within what the model's position table takes */
    params.max_tokens = MIN (params.max_tokens, cb_utterance_default_max_tokens (e));
  CbUtterance *u = cb_utterance_new (e, 0, params.max_tokens, error);
  if (!u)
    return FALSE;
  GArray *pcm = g_array_new (FALSE, FALSE, sizeof (float));
  gboolean ok = cb_utterance_begin (u, r->text, voice, &params, error);
  gboolean done = !ok;
  int pieces = 0;
  while (!done && ok) {
    const float *p;
    gsize n;
    if ((ok = cb_utterance_read_audio (u, &p, &n, &done, error)) && n > 0) {
      g_array_append_vals (pcm, p, (guint) n);
      pieces++;
    }
  }
  if (ok) {
    int n_tok = 0;
    const gint32 *tok = cb_utterance_speech_tokens (u, &n_tok);
    fprintf (out, "text: %s\nspeech tokens: %d\naudio pieces: %d (S3Gen chunks %d, estimator "
             "frame-evaluations %" G_GUINT64_FORMAT ")\nsamples: %u (%.3f s)\n",
             cb_utterance_text (u), n_tok, pieces, cb_utterance_audio_chunks (u),
             cb_utterance_frame_evals (u), pcm->len, pcm->len / (double) CB_SAMPLE_RATE);
    if (r->output)
      ok = cli_write_wav (r->output, (const float *) pcm->data, pcm->len, CB_SAMPLE_RATE, error);
    if (ok && r->dump)
      ok = write_dump (r->dump, tok, n_tok, NULL, (const float *) pcm->data, pcm->len, error);
  }
  g_array_unref (pcm);
  cb_utterance_free (u);
  return ok;
}

gboolean
cli_audio_run (CbEngine *e, const CliAudioRequest *r, FILE *out, GError **error)
{
  CbVoice *voice = NULL;
  if (r->voice && !(voice = cb_voice_load (e, r->voice, error)))
    return FALSE;
  gboolean ok = r->speech_tokens ? run_tokens (e, r, voice, out, error)
                                 : run_text (e, r, voice, out, error);
  cb_voice_free (voice);
  return ok;
}
