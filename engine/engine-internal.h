/* engine-internal.h — what the command-line tool and the tests reach inside an engine and an
 * utterance (teacher forcing, stage dumps, cache counters); not part of the public API. */
#pragma once

#include "chatterbox.h"
#include "conds.h"
#include "config.h"
#include "hift.h"
#include "s3gen.h"
#include "s3gen-cfm.h"
#include "s3gen-flow.h"
#include "t3-decode.h"

G_BEGIN_DECLS

const CbConfig *cb_engine_config (const CbEngine *e);
CbT3           *cb_engine_t3 (CbEngine *e);
/* The voice's conditionals (the built-in voice when v is NULL). */
const CbConds  *cb_engine_voice_conds (const CbEngine *e, const CbVoice *v);
CbS3Gen        *cb_engine_s3gen (CbEngine *e);
const CbS3GenVoice *cb_engine_s3gen_voice (const CbEngine *e, const CbVoice *v);

/* The stream's decoder: after cb_utterance_begin, cb_t3_decoder_next_full may drive it instead
 * of cb_utterance_next (the utterance's token lists read the same sampler). */
CbT3Decoder    *cb_utterance_decoder (CbUtterance *u);
/* Conditioning computations this stream's begins needed (0 while the voice cache hits). */
guint           cb_utterance_cond_misses (const CbUtterance *u);

/* The stages of a CbS3Gen, so that each can be fed upstream's own inputs (golden checks) and the
 * stream can run HiFT on its own windows. */
CbS3GenFlow    *cb_s3gen_part_flow (CbS3Gen *s);
CbS3GenCfm     *cb_s3gen_part_cfm (CbS3Gen *s);
CbHift         *cb_s3gen_part_hift (CbS3Gen *s);

G_END_DECLS
