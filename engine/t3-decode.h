/* t3-decode.h — T3 decoding, pull style: one speech token per call.
 *
 * Joins the forward pass (t3.h), the logits processing and sampler (t3-sample.h) and the
 * alignment guard (t3-guard.h) in upstream T3.inference's order: each step takes the current
 * logits of both CFG rows, combines them, lets the guard act (when enabled), applies the
 * processors, draws the token, and — unless that ended the utterance (stop token or max_tokens) —
 * feeds it back through the backbone for the next step's logits. Everything is allocated by
 * cb_t3_decoder_new; begin and next allocate nothing. One decoder per stream. */
#pragma once

#include "t3-guard.h"
#include "t3-sample.h"
#include "t3.h"

G_BEGIN_DECLS

typedef struct CbT3Decoder CbT3Decoder;

/* For texts of up to `max_text_tokens` ids and utterances of up to `max_tokens` tokens. */
CbT3Decoder *cb_t3_decoder_new (CbT3 *t3, int max_text_tokens, int max_tokens, GError **error);
void         cb_t3_decoder_free (CbT3Decoder *d);

/* Starts an utterance (prefill included): text ids with start/stop ids, the voice, its
 * exaggeration, the sampling settings (params->max_tokens ≤ the decoder's max_tokens). */
gboolean cb_t3_decoder_begin (CbT3Decoder *d, const int32_t *text_ids, int n_text,
                              const CbConds *voice, double exaggeration,
                              const CbT3SampleParams *params, GError **error);

/* The next token into *token (the stop token included when drawn); *done TRUE when it was the
 * last one. `u`: NULL to draw from the seeded generator, or a uniform in [0, 1) to use instead
 * (reproducing a recorded draw). FALSE with an error when the utterance is already done. */
gboolean cb_t3_decoder_next (CbT3Decoder *d, const double *u, gint32 *token, gboolean *done,
                             GError **error);

/* The same with every option: `forced` non-NULL teacher-forces that token (the step is processed
 * as usual, then the forced token is taken instead of a draw), `dump` (may be NULL) receives the
 * processors' stage outputs. */
gboolean cb_t3_decoder_next_full (CbT3Decoder *d, const double *u, const gint32 *forced,
                                  const CbT3StageDump *dump, gint32 *token, gboolean *done,
                                  GError **error);

/* What the guard did at the last step (CbT3GuardFlags; 0 when it is off), and since begin
 * (all flags ORed). */
guint    cb_t3_decoder_guard_flags (const CbT3Decoder *d, gboolean since_begin);

/* The pieces, for tests and dumps. */
CbT3State   *cb_t3_decoder_state (CbT3Decoder *d);
CbT3Sampler *cb_t3_decoder_sampler (CbT3Decoder *d);
CbT3Guard   *cb_t3_decoder_guard (CbT3Decoder *d);
/* The CFG-combined row of the last step after the guard, before the processors (V floats). */
const float *cb_t3_decoder_guarded_logits (const CbT3Decoder *d);

G_END_DECLS
