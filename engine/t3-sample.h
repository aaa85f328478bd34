/* t3-sample.h — T3's logits processing, sampling and speech-token post-processing.
 *
 * One decoding step of upstream's T3.inference (chatterbox-tts 0.1.7, spec §3.6–3.8), on one row of
 * V = speech_tokens_dict_size logits, in upstream's order:
 *
 *   cond, uncond ──CFG──▶ ℓ ──[alignment guard, t3-guard.h]──▶ repetition penalty ▶ temperature
 *     ▶ min-p ▶ top-p ▶ softmax ▶ draw u ∈ [0,1) ▶ token = first id (in id order) whose cumulative
 *     probability exceeds u
 *
 * The processors follow transformers' RepetitionPenaltyLogitsProcessor, MinPLogitsWarper and
 * TopPLogitsWarper (min_tokens_to_keep 1, filter value −∞); temperature divides, and is skipped at
 * exactly 1.0 as upstream's loop does. All stages work in place on the caller's row; the sampler owns
 * the scratch it needs (allocated once by cb_t3_sampler_new), so a step allocates nothing.
 *
 * Random numbers: our own generator (xoshiro256** seeded through splitmix64 from `seed`), one
 * double u = (next >> 11) · 2⁻⁵³ per step. Upstream's torch.multinomial stream is not reproducible;
 * instead the golden data records, per step, a u that picks upstream's token by the same inverse-CDF
 * rule, and cb_t3_sampler_step_u() takes such a u. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

/* Defaults of upstream's English ChatterboxTTS.generate() (0.1.7 / HEAD, spec §3.8). */
#define CB_T3_DEFAULT_CFG_WEIGHT         0.5
#define CB_T3_DEFAULT_TEMPERATURE        0.8
#define CB_T3_DEFAULT_REPETITION_PENALTY 1.2
#define CB_T3_DEFAULT_MIN_P              0.05
#define CB_T3_DEFAULT_TOP_P              1.0
#define CB_T3_DEFAULT_EXAGGERATION       0.5   /* conditioning, not sampling: for the T3 caller */
#define CB_T3_DEFAULT_MAX_TOKENS         1000  /* generate() passes max_new_tokens=1000 */
#define CB_T3_DEFAULT_SEED               0

/* Per-utterance decoding settings; start from cb_t3_sample_params_default(). */
/* Values are doubles like upstream's Python floats; each stage rounds them where torch does
 * (1 − top_p is formed in double before the float comparison, the others become floats). */
typedef struct {
  double   cfg_weight;          /* ≥ 0; 0: the conditional row alone (no unconditional row needed) */
  double   temperature;         /* > 0; 1.0 skips the division */
  double   repetition_penalty;  /* > 0; 1.0 leaves the logits unchanged */
  double   min_p;               /* [0, 1]; 0 keeps everything */
  double   top_p;               /* [0, 1]; 1.0 only drops ids whose probability underflows to 0 */
  guint64  seed;                /* the generator's seed: same seed, same tokens */
  int      max_tokens;          /* ≥ 1: tokens sampled at most (the stop token included) */
  gboolean alignment_guard;     /* run t3-guard.h's analyzer (FALSE for English, as upstream) */
} CbT3SampleParams;

CbT3SampleParams cb_t3_sample_params_default (void);

/* CB_ERROR_INVALID_ARGUMENT naming the field when a value is out of range (NaN included). */
gboolean cb_t3_sample_params_validate (const CbT3SampleParams *p, GError **error);

/* ---- the stages, each in place on one row of V logits (exposed for tests and the CLI's dump) ---- */

/* ℓ = cond + w·(cond − uncond) rounded per operation as torch does; w == 0: ℓ = cond and uncond
 * may be NULL. out may alias cond. */
void cb_t3_cfg_combine (float *out, const float *cond, const float *uncond, int V, double cfg_weight);

/* HF repetition penalty over distinct ids (the caller passes each id once): ℓ_u < 0 → ℓ_u·θ,
 * else ℓ_u/θ. */
void cb_t3_repetition_penalty (float *logits, const gint32 *distinct_ids, int n_ids, double penalty);

/* ℓ /= T, skipped when T == 1.0 exactly. */
void cb_t3_temperature (float *logits, int V, double temperature);

/* HF MinPLogitsWarper (min_tokens_to_keep 1): p = softmax(ℓ); ids with p < min_p·max(p) get −∞;
 * the most probable id is kept. probs_scratch: V floats. */
void cb_t3_min_p (float *logits, int V, double min_p, float *probs_scratch);

/* HF TopPLogitsWarper (min_tokens_to_keep 1): sort ascending, c = cumsum(softmax(sorted)); ids with
 * c ≤ 1 − top_p get −∞; the largest logit is kept. Scratch: V floats and V ints. At top_p = 1 the
 * removed ids are exactly those of probability 0 (−∞ or underflow): found without sorting. */
void cb_t3_top_p (float *logits, int V, double top_p, float *sorted_scratch, gint32 *index_scratch);

/* probs = softmax(logits) (−∞ → 0). */
void cb_t3_softmax (float *probs, const float *logits, int V);

/* Inverse CDF in id order: with c_k = Σ_{i≤k} probs_i (double) and total = c_{V−1}, the first id
 * with c_k > u·total; the last id of nonzero probability if rounding leaves none. */
gint32 cb_t3_pick (const float *probs, int V, double u);

/* ---- the generator ---- */
typedef struct { guint64 s[4]; } CbT3Rng;
void   cb_t3_rng_seed (CbT3Rng *rng, guint64 seed);
double cb_t3_rng_uniform (CbT3Rng *rng);  /* [0, 1), 53 bits */

/* ---- the sampler: history, scratch and generator of one decoding stream ---- */

/* Optional copies of one step's row after each stage (V floats each, NULL to skip): what
 * `chatterbox-cli --dump` writes and the golden tests compare. */
typedef struct {
  float *rep, *temp, *minp, *topp, *probs;
} CbT3StageDump;

typedef struct {
  int     vocab;           /* V */
  int     max_tokens_cap;  /* largest params.max_tokens accepted by begin */
  gint32  bos_id;          /* start_speech_token 6561: first entry of the penalty history */
  gint32  eos_id;          /* stop_speech_token 6562: ends the stream */

  CbT3SampleParams params; /* this utterance's settings */
  CbT3Rng rng;

  gint32  *tokens;         /* (max_tokens_cap) sampled tokens of this utterance */
  int      n_tokens;
  gint32  *distinct;       /* (max_tokens_cap + 1) distinct ids of the history (BOS + tokens) */
  int      n_distinct;
  guint8  *in_history;     /* (V) 1 where an id is in distinct[] */

  float   *probs;          /* (V) scratch: min-p probabilities, then the final distribution */
  float   *sorted;         /* (V) scratch: top-p's sorted logits */
  gint32  *order;          /* (V) scratch: top-p's sort permutation */
} CbT3Sampler;

/* Allocates everything a stream needs (V = vocab, up to max_tokens_cap tokens per utterance). */
CbT3Sampler *cb_t3_sampler_new (int vocab, int max_tokens_cap, gint32 bos_id, gint32 eos_id,
                                GError **error);
void         cb_t3_sampler_free (CbT3Sampler *s);

/* Starts an utterance: validates params (max_tokens ≤ max_tokens_cap), history = [BOS], seeds the
 * generator. No allocation; cost proportional to the previous utterance's distinct ids. */
gboolean cb_t3_sampler_begin (CbT3Sampler *s, const CbT3SampleParams *params, GError **error);

/* The processing of one step without the draw: on the CFG-combined (and guarded) row `logits`,
 * in place, repetition penalty over the history, temperature, min-p, top-p; then the distribution
 * softmax(logits) into s->probs. dump may be NULL. */
void cb_t3_sampler_process (CbT3Sampler *s, float *logits, const CbT3StageDump *dump);

/* Appends a token to the output and the penalty history (teacher forcing: process, then accept
 * the forced token). Must not be called once finished. */
void cb_t3_sampler_accept (CbT3Sampler *s, gint32 token);

/* One step: process, draw u from the generator, pick by inverse CDF, accept. Returns the token.
 * Must not be called once finished. */
gint32 cb_t3_sampler_step (CbT3Sampler *s, float *logits, const CbT3StageDump *dump);

/* The same with an injected u ∈ [0, 1) instead of the generator's (the generator does not advance). */
gint32 cb_t3_sampler_step_u (CbT3Sampler *s, float *logits, double u, const CbT3StageDump *dump);

/* TRUE once the last token was the stop token or max_tokens tokens were sampled. */
gboolean cb_t3_sampler_finished (const CbT3Sampler *s);

/* ---- post-processing before S3Gen (tts.py generate + s3tokenizer drop_invalid_tokens, spec §3.9) ----
 * From T3's output row (the sampled tokens, EOS included when the run ended by it):
 * start after the first start_speech_token (6561) if any, stop before the first stop_speech_token
 * (6562) if any (nothing when the stop comes first), then keep ids in [0, 6561) — ids below 0 are
 * dropped too (upstream's `< 6561` would keep them; T3 never produces them).
 * Upstream raises when 6561 (or 6562) occurs more than once (its index tensor is not a scalar);
 * we take the first occurrence, as spec §3.9 advises; later ones are dropped by the range filter.
 * Writes at most n ids to out (may alias tokens); returns how many. */
int cb_t3_postprocess (const gint32 *tokens, int n, gint32 start_id, gint32 stop_id,
                       gint32 *out);

G_END_DECLS
