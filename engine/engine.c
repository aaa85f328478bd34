/* engine.c — building the engine once: locate the files, read the config, open and validate
 * every model file, set the thread count, build T3 (weights, RoPE table, guard heads, voice cache,
 * the built-in voice's conditioning primed). Then the per-stream utterance: text front end, T3
 * decoding one token per call. */
#include "engine-internal.h"
#include "parallel.h"

#include <string.h>

#include "model-dir.h"
#include "ops.h"
#include "s3gen.h"
#include "safetensors.h"
#include "text.h"
#include "tokenizer.h"
#include "weights-layout.h"

struct CbEngine {
  char *model_dir;
  int threads;
  CbConfig config;
  CbSafetensors *t3_weights;    /* t3_cfg.safetensors */
  CbSafetensors *s3gen_weights; /* s3gen.safetensors */
  CbSafetensors *ve_weights;    /* ve.safetensors */
  CbTokenizer *tokenizer;
  CbConds *builtin_voice;       /* conds.pt */
  CbT3 *t3;                     /* built once: weight views, RoPE, guard heads, voice cache */
  CbS3Gen *s3gen;               /* built once: flow encoder, CFM estimator, HiFT */
  CbS3GenVoice builtin_s3gen_voice;
};

struct CbVoice {
  CbConds *conds;
  CbS3GenVoice s3gen;           /* the voice's S3Gen conditioning, computed once */
};

struct CbUtterance {
  CbEngine    *engine;
  CbT3Decoder *decoder;
  int          max_text_tokens;
  GString     *text;           /* normalised text of the current utterance (kept: no allocation) */
  CbTokenizerScratch *tok_scratch;
  GArray      *text_ids;       /* gint32, start and stop included */
  gint32      *speech_tokens;  /* (max_tokens) post-processed */
  int          n_speech_tokens;
  /* audio: T3 runs on `worker` while the reader's thread vocodes (cb_utterance_read_audio) */
  CbS3GenStream *stream;
  gint         cancel;         /* set from any thread: the current utterance stops */
  GThread     *worker;         /* started by the first read_audio, kept for the stream's life */
  GMutex       lock;           /* guards the members below */
  GCond        cond;
  enum { WORKER_IDLE, WORKER_RUN, WORKER_QUIT } worker_state;
  gint32      *produced;       /* (max_tokens) T3's tokens as drawn, handed to the reader */
  int          n_produced;
  gboolean     t3_done;        /* T3 finished (or failed: t3_error) */
  GError      *t3_error;
  /* reader side */
  int          n_fed;          /* produced tokens looked at for the stream */
  gboolean     stop_seen, audio_started, audio_done;
};

/* The public guard bits are t3-guard.h's. */
G_STATIC_ASSERT ((int) CB_GUARD_FALSE_START == (int) CB_T3_GUARD_FALSE_START);
G_STATIC_ASSERT ((int) CB_GUARD_EOS_SUPPRESSED == (int) CB_T3_GUARD_EOS_SUPPRESSED);
G_STATIC_ASSERT ((int) CB_GUARD_FORCED_EOS == (int) CB_T3_GUARD_FORCED_EOS);
G_STATIC_ASSERT ((int) CB_GUARD_TOKEN_REPETITION == (int) CB_T3_GUARD_TOKEN_REPETITION);

void
cb_engine_params_init (CbEngineParams *p)
{
  p->model_location = NULL;
  p->threads = 0;
  p->precision = CB_PRECISION_FP32;
}

static char *
model_file (const CbEngine *e, const char *name)
{
  return g_build_filename (e->model_dir, name, NULL);
}

/* chatterbox-config.json is optional: absent means upstream's hyperparameters. */
static gboolean
load_config (CbEngine *e, GError **error)
{
  cb_config_init_default (&e->config);
  char *path = model_file (e, CB_MODEL_CONFIG_FILE);
  gboolean ok = TRUE;
  if (g_file_test (path, G_FILE_TEST_EXISTS)) {
    ok = cb_config_load_json (&e->config, path, error);
    if (ok) {
      CbConfig base;
      cb_config_init_default (&base);
      char *changes = cb_config_describe_changes (&base, &e->config);
      g_info ("%s overrides: %s", path, changes);
      g_free (changes);
    }
  }
  g_free (path);
  return ok;
}

/* Opens one weights file and checks every tensor's name, dtype and shape against the config. */
static CbSafetensors *
open_weights (const CbEngine *e, CbWeightsFile which, GError **error)
{
  char *path = model_file (e, cb_weights_file_name (which));
  CbSafetensors *st = cb_safetensors_open (path, error);
  g_free (path);
  if (st && !cb_weights_validate (st, which, &e->config, error)) {
    cb_safetensors_free (st);
    return NULL;
  }
  return st;
}

static gboolean
load_tokenizer (CbEngine *e, GError **error)
{
  char *path = model_file (e, "tokenizer.json");
  e->tokenizer = cb_tokenizer_load (path, error);
  gboolean ok = e->tokenizer
      && cb_tokenizer_check_start_stop (e->tokenizer, e->config.t3.start_text_token,
                                        e->config.t3.stop_text_token, error);
  if (ok && (int) cb_tokenizer_vocab_size (e->tokenizer) > e->config.t3.text_tokens_dict_size) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: %u token ids, but T3's text embedding has %d rows (t3.text_tokens_dict_size)",
                 path, cb_tokenizer_vocab_size (e->tokenizer), e->config.t3.text_tokens_dict_size);
    ok = FALSE;
  }
  g_free (path);
  return ok;
}

static gboolean
load_builtin_voice (CbEngine *e, GError **error)
{
  CbCondsExpect expect;
  cb_conds_expect_from_config (&expect, &e->config);
  char *path = model_file (e, "conds.pt");
  e->builtin_voice = cb_conds_load (path, &expect, error);
  g_free (path);
  return e->builtin_voice != NULL;
}

/* The guard's thresholds live in t3-decode's guard (0.1.7's values); only the heads travel through
 * CbT3Options so far, so a config asking for other thresholds is refused rather than ignored. */
/* T3 with the config's guard heads; then the built-in voice's conditioning at the default
 * exaggeration is computed once into T3's voice cache, so a stream's first utterance with it
 * only copies the prefix. */
static gboolean
build_t3 (CbEngine *e, CbPrecision precision, GError **error)
{
  CbT3Options o;
  cb_t3_options_init (&o);
  o.precision = precision == CB_PRECISION_BF16 ? CB_T3_PRECISION_BF16 : CB_T3_PRECISION_FP32;
  const CbIntListList *heads = &e->config.t3_guard.llama_aligned_heads;
  o.n_guard_heads = MIN (heads->n, CB_T3_MAX_GUARD_HEADS);
  for (int i = 0; i < o.n_guard_heads; i++) {
    o.guard_layer[i] = heads->v[i].v[0];
    o.guard_head[i] = heads->v[i].v[1];
  }
  e->t3 = cb_t3_new (&e->config, e->t3_weights, &o, error);
  if (!e->t3)
    return FALSE;
  const int32_t ids[2] = { e->config.t3.start_text_token, e->config.t3.stop_text_token };
  const CbT3Params params = { (float) CB_T3_DEFAULT_CFG_WEIGHT,
                              (float) CB_T3_DEFAULT_EXAGGERATION };
  CbT3State *s = cb_t3_state_new (e->t3, 2, 0, error);
  gboolean ok = s && cb_t3_begin (s, ids, 2, e->builtin_voice, &params, error);
  cb_t3_state_free (s);
  return ok;
}

CbEngine *
cb_engine_new (const CbEngineParams *p, GError **error)
{
  char *dir = cb_model_dir_locate (p->model_location, error);
  if (!dir)
    return NULL;
  CbEngine *e = g_new0 (CbEngine, 1);
  e->model_dir = dir;
  e->threads = p->threads;
  cb_set_num_threads (p->threads);

  if (!load_config (e, error)
      || !(e->t3_weights = open_weights (e, CB_WEIGHTS_T3, error))
      || !(e->s3gen_weights = open_weights (e, CB_WEIGHTS_S3GEN, error))
      || !(e->ve_weights = open_weights (e, CB_WEIGHTS_VE, error))
      || !load_tokenizer (e, error)
      || !load_builtin_voice (e, error)
      || !build_t3 (e, p->precision, error)
      || !(e->s3gen = cb_s3gen_new (&e->config, e->s3gen_weights, error))
      || (p->precision == CB_PRECISION_BF16 && !cb_s3gen_use_bf16 (e->s3gen))
      || !cb_s3gen_voice_init (&e->builtin_s3gen_voice, e->s3gen, e->builtin_voice, error)) {
    cb_engine_free (e);
    return NULL;
  }
  return e;
}

void
cb_engine_free (CbEngine *e)
{
  if (!e)
    return;
  cb_s3gen_voice_clear (&e->builtin_s3gen_voice);
  cb_s3gen_free (e->s3gen);
  cb_t3_free (e->t3);
  cb_conds_free (e->builtin_voice);
  cb_tokenizer_free (e->tokenizer);
  cb_safetensors_free (e->ve_weights);
  cb_safetensors_free (e->s3gen_weights);
  cb_safetensors_free (e->t3_weights);
  g_free (e->model_dir);
  g_free (e);
}

const char *
cb_engine_model_dir (const CbEngine *e)
{
  return e->model_dir;
}

int
cb_engine_threads (const CbEngine *e)
{
  return cb_get_num_threads ();
}

gboolean
cb_engine_synthesis_available (const CbEngine *e, GError **error)
{
  return TRUE;
}

const CbConfig *
cb_engine_config (const CbEngine *e)
{
  return &e->config;
}

CbT3 *
cb_engine_t3 (CbEngine *e)
{
  return e->t3;
}

const CbConds *
cb_engine_voice_conds (const CbEngine *e, const CbVoice *v)
{
  return v ? v->conds : e->builtin_voice;
}

CbS3Gen *
cb_engine_s3gen (CbEngine *e)
{
  return e->s3gen;
}

const CbS3GenVoice *
cb_engine_s3gen_voice (const CbEngine *e, const CbVoice *v)
{
  return v ? &v->s3gen : &e->builtin_s3gen_voice;
}

/* ---- voices ---- */

CbVoice *
cb_voice_load (const CbEngine *e, const char *path, GError **error)
{
  CbCondsExpect expect;
  cb_conds_expect_from_config (&expect, &e->config);
  CbConds *c = cb_conds_load (path, &expect, error);
  if (!c)
    return NULL;
  CbVoice *v = g_new0 (CbVoice, 1);
  v->conds = c;
  if (!cb_s3gen_voice_init (&v->s3gen, e->s3gen, c, error)) {
    g_prefix_error (error, "%s: ", path);
    cb_voice_free (v);
    return NULL;
  }
  return v;
}

void
cb_voice_free (CbVoice *v)
{
  if (!v)
    return;
  cb_s3gen_voice_clear (&v->s3gen);
  cb_conds_free (v->conds);
  g_free (v);
}

/* ---- utterances ---- */

void
cb_utterance_params_init (CbUtteranceParams *p)
{
  CbT3SampleParams d = cb_t3_sample_params_default ();
  *p = (CbUtteranceParams) {
    .exaggeration = CB_T3_DEFAULT_EXAGGERATION, .cfg_weight = d.cfg_weight,
    .temperature = d.temperature, .min_p = d.min_p, .top_p = d.top_p,
    .repetition_penalty = d.repetition_penalty, .seed = d.seed, .max_tokens = d.max_tokens,
    .alignment_guard = d.alignment_guard, .chunk_tokens = 25, .context_tokens = 50,
  };
}

int
cb_utterance_default_max_tokens (const CbEngine *e)
{
  return MIN (CB_T3_DEFAULT_MAX_TOKENS, cb_config_speech_pos_len (&e->config));
}

CbUtterance *
cb_utterance_new (CbEngine *e, int max_text_tokens, int max_tokens, GError **error)
{
  if (max_text_tokens < 0 || max_tokens < 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "utterance: negative size (max_text_tokens %d, max_tokens %d)", max_text_tokens,
                 max_tokens);
    return NULL;
  }
  CbUtterance *u = g_new0 (CbUtterance, 1);
  u->engine = e;
  u->max_text_tokens = max_text_tokens ? max_text_tokens : e->config.t3.max_text_tokens;
  max_tokens = max_tokens ? max_tokens : cb_utterance_default_max_tokens (e);
  u->decoder = cb_t3_decoder_new (e->t3, u->max_text_tokens, max_tokens, error);
  if (!u->decoder) {
    cb_utterance_free (u);
    return NULL;
  }
  u->text_ids = g_array_sized_new (FALSE, FALSE, sizeof (gint32), u->max_text_tokens);
  /* text buffers sized once for the longest text a stream takes (a text id covers at least one
   * character; 8 per id is a generous bound), so a begin allocates nothing */
  u->text = g_string_sized_new (8 * (gsize) u->max_text_tokens + 64);
  u->tok_scratch = cb_tokenizer_scratch_new_sized (8 * (gsize) u->max_text_tokens);
  u->speech_tokens = g_new (gint32, max_tokens);
  u->produced = g_new (gint32, max_tokens);
  g_mutex_init (&u->lock);
  g_cond_init (&u->cond);
  u->stream = cb_s3gen_stream_new (e->s3gen, max_tokens, error);
  if (!u->stream) {
    cb_utterance_free (u);
    return NULL;
  }
  return u;
}

void
cb_utterance_free (CbUtterance *u)
{
  if (!u)
    return;
  if (u->worker) {
    g_atomic_int_set (&u->cancel, 1);
    g_mutex_lock (&u->lock);
    u->worker_state = WORKER_QUIT;
    g_cond_broadcast (&u->cond);
    g_mutex_unlock (&u->lock);
    g_thread_join (u->worker);
  }
  g_clear_error (&u->t3_error);
  g_mutex_clear (&u->lock);
  g_cond_clear (&u->cond);
  g_free (u->produced);
  cb_t3_decoder_free (u->decoder);
  cb_s3gen_stream_free (u->stream);
  if (u->text_ids)
    g_array_unref (u->text_ids);
  if (u->text)
    g_string_free (u->text, TRUE);
  cb_tokenizer_scratch_free (u->tok_scratch);
  g_free (u->speech_tokens);
  g_free (u);
}

static gboolean
is_blank (const char *utf8)
{
  for (const char *p = utf8; *p; p = g_utf8_next_char (p))
    if (!cb_text_is_python_space (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

/* tts.py generate: punc_norm, the tokenizer, then start_text_token ... stop_text_token. */
static gboolean
text_to_ids (CbUtterance *u, const char *text, GError **error)
{
  const CbEngine *e = u->engine;
  g_string_truncate (u->text, 0);
  g_array_set_size (u->text_ids, 0);
  if (!text || !g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "the text is not valid UTF-8");
    return FALSE;
  }
  /* upstream would speak a stand-in sentence; an element must not invent speech */
  if (is_blank (text)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "the text is empty");
    return FALSE;
  }
  cb_punc_norm_into (text, u->text);
  gint32 start = e->config.t3.start_text_token, stop = e->config.t3.stop_text_token;
  g_array_append_val (u->text_ids, start);
  if (!cb_tokenizer_encode_with (e->tokenizer, u->tok_scratch, u->text->str, u->text_ids, error))
    return FALSE;
  g_array_append_val (u->text_ids, stop);
  int limit = MIN (u->max_text_tokens, e->config.t3.max_text_tokens);
  if ((int) u->text_ids->len > limit) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "the text is %u token ids long (start and stop included), more than the %d this "
                 "stream takes; split it into sentences first (cb_text_split_sentences)",
                 u->text_ids->len, limit);
    return FALSE;
  }
  return TRUE;
}

static void stop_worker (CbUtterance *u);

gboolean
cb_utterance_begin (CbUtterance *u, const char *text, const CbVoice *voice,
                    const CbUtteranceParams *params, GError **error)
{
  u->n_speech_tokens = 0;
  stop_worker (u);
  u->n_fed = u->n_produced = 0;
  u->t3_done = u->stop_seen = u->audio_started = FALSE;
  g_clear_error (&u->t3_error);
  u->audio_done = TRUE;  /* until everything below has worked */
  g_atomic_int_set (&u->cancel, 0);
  if (!text_to_ids (u, text, error))
    return FALSE;
  if (!(params->exaggeration >= 0 && params->exaggeration <= 100)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "exaggeration: expected 0 to 100, got %g", params->exaggeration);
    return FALSE;
  }
  CbT3SampleParams sp = cb_t3_sample_params_default ();
  sp.cfg_weight = params->cfg_weight;
  sp.temperature = params->temperature;
  sp.min_p = params->min_p;
  sp.top_p = params->top_p;
  sp.repetition_penalty = params->repetition_penalty;
  sp.seed = params->seed;
  sp.max_tokens = params->max_tokens;
  sp.alignment_guard = params->alignment_guard;
  if (params->chunk_tokens < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "chunk_tokens: expected at least 1, got %d", params->chunk_tokens);
    return FALSE;
  }
  CbS3GenStreamParams stp;
  cb_s3gen_stream_params_init (&stp);
  stp.first_chunk_tokens = params->chunk_tokens;
  stp.context_tokens = params->context_tokens;
  stp.seed = params->seed;
  if (!cb_t3_decoder_begin (u->decoder, (const int32_t *) u->text_ids->data,
                            (int) u->text_ids->len, cb_engine_voice_conds (u->engine, voice),
                            params->exaggeration, &sp, error)
      || !cb_s3gen_stream_begin (u->stream, cb_engine_s3gen_voice (u->engine, voice), &stp,
                                 error))
    return FALSE;
  u->audio_done = FALSE;
  return TRUE;
}

/* The T3 side of an audio stream: decodes tokens while the reader vocodes the ones before. */
static gpointer
worker_main (gpointer data)
{
  CbUtterance *u = data;
  /* the reader's vocoding goes first: the listener waits for audio, while tokens T3 makes ahead
   * wait for the next chunk anyway (first audio = T3's first chunk + one decode, not + the rest of
   * T3 competing for the cores) */
  cb_parallel_set_background (TRUE);
  g_mutex_lock (&u->lock);
  for (;;) {
    while (u->worker_state == WORKER_IDLE)
      g_cond_wait (&u->cond, &u->lock);
    if (u->worker_state == WORKER_QUIT)
      break;
    g_mutex_unlock (&u->lock);
    gboolean done = FALSE;
    GError *err = NULL;
    while (!done && !err) {
      gint32 token;
      if (g_atomic_int_get (&u->cancel))
        g_set_error (&err, CB_ERROR, CB_ERROR_CANCELLED, "the utterance was cancelled");
      else if (cb_t3_decoder_next (u->decoder, NULL, &token, &done, &err)) {
        g_mutex_lock (&u->lock);
        u->produced[u->n_produced++] = token;
        g_cond_broadcast (&u->cond);
        g_mutex_unlock (&u->lock);
      }
    }
    g_mutex_lock (&u->lock);
    u->t3_done = TRUE;
    u->t3_error = err;
    if (u->worker_state == WORKER_RUN)
      u->worker_state = WORKER_IDLE;
    g_cond_broadcast (&u->cond);
  }
  g_mutex_unlock (&u->lock);
  return NULL;
}

/* Waits until the worker is idle (cancelling what it does), so the decoder may be reset. */
static void
stop_worker (CbUtterance *u)
{
  if (!u->worker)
    return;
  g_mutex_lock (&u->lock);
  if (u->worker_state == WORKER_RUN) {
    g_atomic_int_set (&u->cancel, 1);
    while (u->worker_state == WORKER_RUN)
      g_cond_wait (&u->cond, &u->lock);
  }
  g_mutex_unlock (&u->lock);
}

/* Hands the worker's new tokens to the stream as upstream's post-processing would keep them: up
 * to the stop token, ids below the start token only. (Upstream also drops everything before a
 * start token T3 might sample mid-utterance; a stream cannot take back audio, so such a token is
 * only dropped, like other out-of-range ids.) Called with u->lock held. */
static gboolean
feed_stream (CbUtterance *u, GError **error)
{
  const CbT3Sampler *s = cb_t3_decoder_sampler (u->decoder);
  for (; u->n_fed < u->n_produced; u->n_fed++) {
    const gint32 t = u->produced[u->n_fed];
    if (t == s->eos_id)
      u->stop_seen = TRUE;
    if (u->stop_seen || t < 0 || t >= s->bos_id)
      continue;
    if (!cb_s3gen_stream_push (u->stream, &t, 1, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
audio_failed (CbUtterance *u, GError **error, GError *err)
{
  stop_worker (u);
  u->audio_done = TRUE;
  g_propagate_error (error, err);
  return FALSE;
}

gboolean
cb_utterance_read_audio (CbUtterance *u, const float **pcm, gsize *n_samples, gboolean *done,
                         GError **error)
{
  *pcm = NULL;
  *n_samples = 0;
  *done = u->audio_done;
  if (u->audio_done) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "no utterance in progress");
    return FALSE;
  }
  if (!u->audio_started) {
    if (!u->worker)
      u->worker = g_thread_new ("cb-t3", worker_main, u);
    g_mutex_lock (&u->lock);
    u->worker_state = WORKER_RUN;
    g_cond_broadcast (&u->cond);
    g_mutex_unlock (&u->lock);
    u->audio_started = TRUE;
  }
  GError *err = NULL;
  for (;;) {
    /* take what T3 made; wait only when no chunk can be decoded yet */
    g_mutex_lock (&u->lock);
    gboolean final = FALSE;
    for (;;) {
      if (!feed_stream (u, &err))
        break;
      final = u->t3_done;
      if (final && u->t3_error)
        err = g_steal_pointer (&u->t3_error);
      if (err || g_atomic_int_get (&u->cancel) || cb_s3gen_stream_chunk_due (u->stream, final))
        break;
      g_cond_wait (&u->cond, &u->lock);
    }
    g_mutex_unlock (&u->lock);
    if (!err && g_atomic_int_get (&u->cancel))
      g_set_error (&err, CB_ERROR, CB_ERROR_CANCELLED, "the utterance was cancelled");
    if (err)
      return audio_failed (u, error, err);
    if (!cb_s3gen_stream_decode (u->stream, final, &u->cancel, pcm, n_samples, &err))
      return audio_failed (u, error, err);
    if (cb_s3gen_stream_ended (u->stream))
      u->audio_done = *done = TRUE;
    if (*n_samples > 0 || *done)
      return TRUE;
  }
}

void
cb_utterance_cancel (CbUtterance *u)
{
  g_atomic_int_set (&u->cancel, 1);
}

gint64
cb_utterance_setup_us (CbUtterance *u)
{
  return cb_t3_state_setup_us (cb_t3_decoder_state (u->decoder));
}

int
cb_utterance_audio_chunks (const CbUtterance *u)
{
  return cb_s3gen_stream_chunks (u->stream);
}

guint64
cb_utterance_frame_evals (const CbUtterance *u)
{
  return cb_s3gen_stream_frame_evals (u->stream);
}

gboolean
cb_utterance_next (CbUtterance *u, gint32 *token, gboolean *done, GError **error)
{
  if (u->audio_started) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "the utterance's tokens are being decoded for audio (cb_utterance_read_audio)");
    return FALSE;
  }
  return cb_t3_decoder_next (u->decoder, NULL, token, done, error);
}

const char *
cb_utterance_text (const CbUtterance *u)
{
  return u->text->len ? u->text->str : NULL;
}

const gint32 *
cb_utterance_text_ids (const CbUtterance *u, int *n)
{
  *n = (int) u->text_ids->len;
  return (const gint32 *) u->text_ids->data;
}

const gint32 *
cb_utterance_tokens (const CbUtterance *u, int *n)
{
  const CbT3Sampler *s = cb_t3_decoder_sampler (u->decoder);
  *n = s->n_tokens;
  return s->tokens;
}

const gint32 *
cb_utterance_speech_tokens (CbUtterance *u, int *n)
{
  const CbT3Sampler *s = cb_t3_decoder_sampler (u->decoder);
  u->n_speech_tokens = cb_t3_postprocess (s->tokens, s->n_tokens, s->bos_id, s->eos_id,
                                          u->speech_tokens);
  *n = u->n_speech_tokens;
  return u->speech_tokens;
}

guint
cb_utterance_guard_events (const CbUtterance *u)
{
  return cb_t3_decoder_guard_flags (u->decoder, TRUE);
}

CbT3Decoder *
cb_utterance_decoder (CbUtterance *u)
{
  return u->decoder;
}

guint
cb_utterance_cond_misses (const CbUtterance *u)
{
  return cb_t3_state_cond_misses (cb_t3_decoder_state (u->decoder));
}
