/* conds.h — the built-in voice: conds.pt as upstream's Conditionals.save writes it.
 *
 * torch.save(dict(t3=T3Cond.__dict__, gen=s3gen_ref_dict)), i.e.
 *   t3.speaker_emb (1, S) F32, t3.clap_emb None, t3.cond_prompt_speech_tokens (1, N) I64,
 *   t3.cond_prompt_speech_emb None, t3.emotion_adv (1, 1, 1) F32 or a float,
 *   gen.prompt_token (1, Tp) I64, gen.prompt_token_len (1,) I64 = Tp, gen.prompt_feat (1, Tm, M) F32,
 *   gen.prompt_feat_len None (or Tm), gen.embedding (1, X) F32.
 * See the model spec §1.5 and upstream src/chatterbox/tts.py (Conditionals). */
#pragma once

#include "cb-common.h"
#include "config.h"

G_BEGIN_DECLS

/* What the model the voice is for expects. Sizes are not hard-coded so that small test models can
 * use their own; cb_conds_expect_default() gives upstream's English model. */
typedef struct {
  int speaker_embed_size;     /* S: VoiceEncoder embedding, 256 */
  int mel_bins;               /* M: S3Gen prompt mel bins, 80 */
  int xvector_size;           /* X: CAMPPlus x-vector, 192 */
  int max_cond_prompt_tokens; /* N ≤ this: T3 speech_cond_prompt_len, 150 (Turbo 375) */
  int max_prompt_tokens;      /* Tp ≤ this: 10 s reference at 25 tokens/s, 250 */
  int speech_vocab;           /* every prompt token id in [0, speech_vocab): S3 codebook, 6561 */
} CbCondsExpect;

void cb_conds_expect_default (CbCondsExpect *expect);

/* The sizes a model configured by `config` expects of a voice. */
void cb_conds_expect_from_config (CbCondsExpect *expect, const CbConfig *config);

typedef struct {
  /* T3 conditionals */
  float   *speaker_emb;          /* (speaker_embed_size) */
  int      speaker_embed_size;
  int32_t *cond_prompt_tokens;   /* (n_cond_prompt_tokens); NULL when the file has none */
  int      n_cond_prompt_tokens;
  float    emotion_adv;          /* exaggeration the voice was saved with */
  /* S3Gen conditionals */
  int32_t *prompt_tokens;        /* (n_prompt_tokens) */
  int      n_prompt_tokens;      /* Tp */
  float   *prompt_feat;          /* (n_prompt_frames, mel_bins), row-major log-mel */
  int      n_prompt_frames;      /* Tm: 2·Tp, or 2·Tp + 1 for a clip not a multiple of 40 ms */
  int      mel_bins;
  float   *embedding;            /* (xvector_size), not normalised */
  int      xvector_size;
} CbConds;

/* Read `path`; expect NULL means cb_conds_expect_default(). Any deviation from the structure above
 * is a GError naming the file and the item, e.g.
 * "conds.pt: gen.prompt_feat has shape [1, 500, 79], expected [1, Tm, 80]". */
CbConds *cb_conds_load (const char *path, const CbCondsExpect *expect, GError **error);
void     cb_conds_free (CbConds *conds);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbConds, cb_conds_free)

G_END_DECLS
