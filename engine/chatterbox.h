/* chatterbox.h — the engine's public API (the only header gst/ includes).
 *
 * A CbEngine is everything built once: the model files mapped and validated, the tokenizer, the
 * hyperparameters, the built-in voice. It is made in the element's NULL→READY transition and reused
 * for every utterance until a `recompile` asks for a new one.
 *
 * cb_engine_new() locates, opens and validates the model files and builds T3, S3Gen and HiFT; a
 * CbUtterance turns text into speech tokens (T3) and those into 24 kHz PCM in chunks
 * (cb_utterance_read_audio). */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

typedef struct CbEngine CbEngine;

typedef struct CbUtterance CbUtterance;
typedef struct CbVoice CbVoice;

/* How the large matrices of T3 and of the S3Gen estimator's transformer blocks are stored
 * (products and sums are FP32 either way). */
typedef enum {
  CB_PRECISION_FP32 = 0,  /* the checkpoint's FP32, bit-for-bit the golden path (default) */
  CB_PRECISION_BF16 = 1,  /* converted once at build: half the bytes; tokens and mel may differ */
} CbPrecision;

typedef struct {
  const char *model_location; /* NULL: $CHATTERBOX_MODEL_DIR, then the Hugging Face cache */
  int threads;                /* <= 0: all online CPUs */
  CbPrecision precision;      /* CB_PRECISION_FP32 */
} CbEngineParams;

void        cb_engine_params_init (CbEngineParams *p);

/* Locates and validates the model; NULL with a GError naming the file and the problem. */
CbEngine   *cb_engine_new (const CbEngineParams *p, GError **error);
void        cb_engine_free (CbEngine *e);

/* Directory the model was loaded from. */
const char *cb_engine_model_dir (const CbEngine *e);

/* CPU threads in effect (the `threads` parameter resolved; honoured by OpenBLAS and our loops). */
int         cb_engine_threads (const CbEngine *e);

/* Whether text can be turned into audio yet; FALSE sets a CB_ERROR_NOT_IMPLEMENTED error that says
 * which part is missing. */
gboolean    cb_engine_synthesis_available (const CbEngine *e, GError **error);

/* ---- voices ---- */

/* A voice file as upstream's Conditionals.save writes it (conds.pt), checked against the model. */
CbVoice    *cb_voice_load (const CbEngine *e, const char *path, GError **error);
void        cb_voice_free (CbVoice *v);

/* ---- utterances: text to speech tokens (T3) ---- */

/* Per-utterance settings; cb_utterance_params_init gives upstream's ChatterboxTTS.generate()
 * defaults (English, 0.1.7). */
typedef struct {
  double   exaggeration;        /* 0.5: emotion_adv conditioning */
  double   cfg_weight;          /* 0.5: classifier-free guidance; 0 runs the conditional row only */
  double   temperature;         /* 0.8 */
  double   min_p;               /* 0.05 */
  double   top_p;               /* 1.0 */
  double   repetition_penalty;  /* 1.2 */
  guint64  seed;                /* 0: same seed, same text, same voice → same tokens */
  int      max_tokens;          /* 1000 (upstream's max_new_tokens); must be 1 .. the stream's
                                 * max_tokens: 0 is CB_ERROR_INVALID_ARGUMENT */
  gboolean alignment_guard;     /* FALSE (upstream English); TRUE runs the t3_guard analyzer */
  /* audio streaming (s3gen-stream.c): the first chunk is decoded once T3 has made chunk_tokens
   * speech tokens (25 = 1 s of audio); each later one once its new frames are at least the frames
   * it re-runs (voice prompt + context_tokens of left context), so it costs at most twice its
   * output. The seed also keys the S3Gen/HiFT noise. */
  int      chunk_tokens;        /* 25 */
  int      context_tokens;      /* 50; < 0: every token so far */
} CbUtteranceParams;

void cb_utterance_params_init (CbUtteranceParams *p);

/* A stream: everything one utterance at a time needs (KV caches, sampler, guard), allocated
 * here once; begin and next allocate nothing. Sized for texts of up to `max_text_tokens` token
 * ids (start and stop included; 0: the model's t3.max_text_tokens) and up to `max_tokens`
 * speech tokens (0: cb_utterance_default_max_tokens). Several streams may share one engine (one
 * thread each). */
CbUtterance *cb_utterance_new (CbEngine *e, int max_text_tokens, int max_tokens, GError **error);
/* 1000, or fewer when the model's speech position table is shorter (small test models). */
int          cb_utterance_default_max_tokens (const CbEngine *e);
void         cb_utterance_free (CbUtterance *u);

/* Starts an utterance: punc_norm, the tokenizer, start/stop ids, T3's prefill. voice NULL: the
 * model's built-in voice (conds.pt). Errors (CB_ERROR_INVALID_ARGUMENT): empty text (nothing but
 * spaces included), text that is not UTF-8, more token ids than the stream takes (split the text
 * first: cb_text_split_sentences), parameters out of range. An utterance in progress is dropped. */
gboolean cb_utterance_begin (CbUtterance *u, const char *text, const CbVoice *voice,
                             const CbUtteranceParams *params, GError **error);

/* The next speech token; *done TRUE when it was the last (the stop token, a forced stop or
 * max_tokens reached). FALSE with an error when no utterance is in progress. */
gboolean cb_utterance_next (CbUtterance *u, gint32 *token, gboolean *done, GError **error);

/* The normalised text and its ids (start and stop included) of the current utterance. */
const char   *cb_utterance_text (const CbUtterance *u);
const gint32 *cb_utterance_text_ids (const CbUtterance *u, int *n);
/* T3's tokens so far, as drawn (the stop token included when drawn). */
const gint32 *cb_utterance_tokens (const CbUtterance *u, int *n);
/* The tokens S3Gen takes (upstream's post-processing: up to the stop token, ids < 6561 only);
 * valid until the next begin. */
const gint32 *cb_utterance_speech_tokens (CbUtterance *u, int *n);

/* ---- audio ---- */

/* The next piece of the utterance's audio: runs T3 until the streaming schedule calls for a chunk
 * (or T3 ends), decodes it with S3Gen and HiFT and returns its PCM (24 kHz mono float in [-1, 1],
 * valid until the next call on this stream). *done is TRUE with the last piece (which may be
 * empty). Pieces join without gaps or overlaps; their total equals a whole decode's length.
 * FALSE with an error when no utterance is in progress, on cancellation (CB_ERROR_CANCELLED) or a
 * failure; the utterance is over then. */
gboolean cb_utterance_read_audio (CbUtterance *u, const float **pcm, gsize *n_samples,
                                  gboolean *done, GError **error);
/* Stops the current utterance from any thread: the stream's next check (between T3 steps,
 * estimator evaluations and HiFT windows) ends it with CB_ERROR_CANCELLED. */
void     cb_utterance_cancel (CbUtterance *u);
/* Microseconds the last begin spent before T3's prefill (voice conditioning lookup, embeddings):
 * the per-utterance set-up that must stay near zero after an engine's first utterance. */
gint64   cb_utterance_setup_us (CbUtterance *u);
/* Audio chunks decoded and CFM estimator frame-evaluations spent since begin. */
int      cb_utterance_audio_chunks (const CbUtterance *u);
guint64  cb_utterance_frame_evals (const CbUtterance *u);

/* What the alignment guard did since begin: CbGuardEvent bits ORed (0 when it is off). */
typedef enum {
  CB_GUARD_FALSE_START          = 1 << 0,
  CB_GUARD_DISCONTINUITY        = 1 << 1,
  CB_GUARD_COMPLETE             = 1 << 2,
  CB_GUARD_EOS_SUPPRESSED       = 1 << 3,
  CB_GUARD_LONG_TAIL            = 1 << 4,
  CB_GUARD_ALIGNMENT_REPETITION = 1 << 5,
  CB_GUARD_TOKEN_REPETITION     = 1 << 6,
  CB_GUARD_FORCED_EOS           = 1 << 7,
} CbGuardEvent;

guint cb_utterance_guard_events (const CbUtterance *u);

/* Output format of every engine: 24 kHz mono float PCM. */
#define CB_SAMPLE_RATE 24000

G_END_DECLS
