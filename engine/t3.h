/* t3.h — T3, the text-to-speech-token model (upstream t3/t3.py, modules/cond_enc.py,
 * modules/perceiver.py, transformers LlamaModel; spec §3), forward pass on the CPU.
 *
 * Split as in whisper.cpp: a CbT3 holds what is built once per engine (weight views, the RoPE table,
 * the guard-head map, a small cache of conditioning per voice), a CbT3State what one stream needs
 * (KV caches of both CFG rows, activations, logits, captured attention rows), all preallocated in
 * one arena when the state is made, so an utterance allocates nothing.
 *
 * Sequence layout of one utterance (upstream T3.inference):
 *   [ cond (C) | text ids + text_pos_emb[0..Lt) (Lt) | BOS, BOS (2) ]  = prefill, L = C + Lt + 2
 *   cond  = spkr_enc(speaker_emb), perceiver(speech_emb[prompt] + speech_pos_emb[0..P)),
 *           emotion_adv_fc(exaggeration)          (C = 1 + 32 + 1 for the English model)
 *   BOS   = speech_emb[start_speech_token] + speech_pos_emb[0]: both BOS rows are the same vector
 *           (the initial speech token and inference()'s own BOS both use position 0)
 *   then the k-th fed-back token y (k = 1, 2, ...) enters as speech_emb[y] + speech_pos_emb[k].
 * CFG: row 0 is conditional, row 1 the same with the text token embeddings zeroed (text positions
 * kept). cfg_weight 0 computes row 0 only (upstream's cfg0 layout has two equal conditional rows).
 *
 * The conditioning prefix is the same in both rows, and causal attention makes its keys and values
 * independent of what follows; so each voice's cond embeddings and the prefix's KV (one copy) are
 * cached in the CbT3 and copied into both rows at the start of each utterance. */
#pragma once

#include "conds.h"
#include "config.h"
#include "ops.h"
#include "safetensors.h"

G_BEGIN_DECLS

/* One LlamaDecoderLayer (tfmr.layers.N.*). Biases are NULL unless the config asks for them. */
typedef struct {
  const float *input_layernorm;          /* (H) */
  const float *q_proj, *q_bias;          /* (Hq*D, H), (Hq*D) */
  const float *k_proj, *k_bias;          /* (Hkv*D, H), (Hkv*D) */
  const float *v_proj, *v_bias;          /* (Hkv*D, H), (Hkv*D) */
  const float *o_proj, *o_bias;          /* (H, Hq*D), (H) */
  const float *post_attention_layernorm; /* (H) */
  const float *gate_proj, *gate_bias;    /* (I, H), (I) */
  const float *up_proj, *up_bias;        /* (I, H), (I) */
  const float *down_proj, *down_bias;    /* (H, I), (H) */
  /* BF16 copies of the seven matrices above (CB_T3_PRECISION_BF16; owned, in CbT3Weights.owned),
   * NULL in FP32: where one is set the forward multiplies by it instead of the F32 view */
  const guint16 *q_proj_bf16, *k_proj_bf16, *v_proj_bf16, *o_proj_bf16;
  const guint16 *gate_proj_bf16, *up_proj_bf16, *down_proj_bf16;
} CbT3Layer;

/* t3_cfg.safetensors, the tensors inference reads (text_head and tfmr.embed_tokens are unused). */
typedef struct {
  const float *text_emb;          /* text_emb.weight (text_vocab, H) */
  const float *speech_emb;        /* speech_emb.weight (speech_vocab, H) */
  const float *text_pos_emb;      /* text_pos_emb.emb.weight (max_text_tokens + 2, H) */
  const float *speech_pos_emb;    /* speech_pos_emb.emb.weight (max_speech_tokens + 4, H) */
  const float *spkr_enc, *spkr_enc_bias; /* cond_enc.spkr_enc (H, speaker_embed_size), (H) */
  const float *emotion_adv_fc;    /* cond_enc.emotion_adv_fc.weight (H, 1); NULL without emotion_adv */
  /* cond_enc.perceiver: one AttentionBlock2 used for cross- then self-attention */
  const float *perceiver_query;   /* pre_attention_query (1, Q, H) */
  const float *perceiver_norm, *perceiver_norm_bias; /* attn.norm (H), (H) shared by both inputs */
  const float *perceiver_to_q, *perceiver_to_q_bias; /* (H, H), (H) */
  const float *perceiver_to_k, *perceiver_to_k_bias;
  const float *perceiver_to_v, *perceiver_to_v_bias;
  const float *perceiver_proj_out, *perceiver_proj_out_bias;
  CbT3Layer   *layers;            /* (num_hidden_layers) tfmr.layers.* */
  const float *norm;              /* tfmr.norm.weight (H) */
  const float *speech_head;       /* speech_head.weight (speech_vocab, H) */
  const guint16 *speech_head_bf16; /* its BF16 copy (CB_T3_PRECISION_BF16), else NULL */
  GPtrArray   *owned;             /* buffers of tensors stored as F16/BF16, widened to F32 */
} CbT3Weights;

/* Views of every tensor in `st` (already validated against `cfg`); FALSE naming the tensor. */
gboolean cb_t3_weights_init (CbT3Weights *w, const CbConfig *cfg, const CbSafetensors *st,
                             GError **error);
void     cb_t3_weights_clear (CbT3Weights *w);
/* Stores BF16 copies (round to nearest even) of every layer's attention and MLP matrices and of
 * speech_head: half the bytes a decode step streams. Embeddings, norms, the conditioning encoder
 * and the perceiver stay F32 (small, or read a few rows per utterance). Returns the bytes added. */
gsize    cb_t3_weights_to_bf16 (CbT3Weights *w, const CbConfig *cfg);

/* The attention heads the alignment guard reads (spec §4): (layer, head) pairs, upstream's
 * (12,15), (13,11), (9,2) in that order by default. */
#define CB_T3_MAX_GUARD_HEADS 8

/* How the large matrices are stored and multiplied (products and sums are F32 either way). */
typedef enum {
  CB_T3_PRECISION_FP32,  /* the checkpoint's F32 (zero-copy views), default */
  CB_T3_PRECISION_BF16,  /* converted once by cb_t3_new; speech tokens may differ from FP32's */
} CbT3Precision;

typedef struct {
  CbT3Precision precision;
  int n_guard_heads;
  int guard_layer[CB_T3_MAX_GUARD_HEADS];
  int guard_head[CB_T3_MAX_GUARD_HEADS];
} CbT3Options;

void cb_t3_options_init (CbT3Options *o);

typedef struct CbT3 CbT3;
typedef struct CbT3State CbT3State;

/* Built once per engine. `cfg` and `st` must outlive the CbT3 (weights are views into `st`). */
CbT3     *cb_t3_new (const CbConfig *cfg, const CbSafetensors *st, const CbT3Options *options,
                     GError **error);
void      cb_t3_free (CbT3 *t3);
/* Conditioning length C of a voice with `n_prompt_tokens` prompt tokens (34 for the real model). */
int       cb_t3_cond_len (const CbT3 *t3, int n_prompt_tokens);

/* A stream's state, sized for texts of up to `max_text_tokens` ids (start and stop included) and
 * `max_steps` fed-back tokens. */
CbT3State *cb_t3_state_new (CbT3 *t3, int max_text_tokens, int max_steps, GError **error);
void       cb_t3_state_free (CbT3State *s);
/* The config the state's model was built with. */
const CbConfig *cb_t3_state_config (const CbT3State *s);

typedef struct {
  float cfg_weight;    /* 0: conditional row only */
  float exaggeration;  /* emotion_adv value */
} CbT3Params;

/* Start an utterance: text ids as T3.inference gets them (start_text_token first, stop last),
 * the voice's T3 conditionals (speaker_emb, cond prompt tokens; its emotion_adv is not used, the
 * exaggeration parameter is), and prefill. Afterwards cb_t3_logits gives step 0's logits. */
gboolean cb_t3_begin (CbT3State *s, const int32_t *text_ids, int n_text, const CbConds *voice,
                      const CbT3Params *params, GError **error);
/* Feed back one token; afterwards cb_t3_logits gives the next step's logits. */
gboolean cb_t3_forward_step (CbT3State *s, int32_t token, GError **error);

/* Logits (speech_vocab) of CFG row `row` (0 conditional, 1 unconditional; NULL for row 1 when
 * cfg_weight is 0) at the current step. */
const float *cb_t3_logits (const CbT3State *s, int row);
/* Rows (CFG rows computed: 1 or 2). */
int          cb_t3_n_rows (const CbT3State *s);
/* The backbone input of the last forward of row `row`: (n_positions, H) — after begin the text
 * and BOS part (Lt + 2 positions), after a step the one fed-back embedding. */
const float *cb_t3_input_embeds (const CbT3State *s, int row, int *n_positions);
/* The current voice's conditioning embeddings (C, H). */
const float *cb_t3_cond_embeds (const CbT3State *s, int *cond_len);
/* Sequence positions in the KV cache (L after begin, L + k after k steps). */
int          cb_t3_n_positions (const CbT3State *s);
/* Captured attention of guard head g (options order), conditional row, from the last forward:
 * after begin the two BOS query rows (rows 0, 1: keys 0..L-2 and 0..L-1), after a step one row
 * (row 0) over keys 0..n_positions-1. Row length: cb_t3_n_positions. Entries past a row's own
 * keys are 0. */
const float *cb_t3_guard_attn (const CbT3State *s, int g, int row);
int          cb_t3_guard_attn_rows (const CbT3State *s);
/* Floats between consecutive rows of cb_t3_guard_attn (row 1 = row 0 + stride). */
gsize        cb_t3_guard_attn_stride (const CbT3State *s);
/* The guard heads the model captures (options order). */
const CbT3Options *cb_t3_options (const CbT3 *t3);
/* How many times this state's begin had to compute conditioning (cache misses), for tests. */
guint        cb_t3_state_cond_misses (const CbT3State *s);
/* Microseconds the last cb_t3_begin spent before its prefill forward (checks, the voice's cond
 * prefix: computed on a cache miss, copied on a hit, the input embeddings), for benchmarks. */
gint64       cb_t3_state_setup_us (const CbT3State *s);

/* ---- internal: the conditioning encoder (t3-cond.c), used by t3.c ---- */

/* Floats of scratch cb_t3_cond_compute needs for up to `max_prompt` prompt tokens. */
gsize cb_t3_cond_scratch_floats (const CbConfig *cfg, int max_prompt);
/* T3CondEnc: out (cond_len, H) = [spkr_enc(speaker_emb) | perceiver(speech_emb[prompt] +
 * speech_pos_emb[0..P)) | emotion_adv_fc(exaggeration)]; with P = 0 the perceiver part is absent.
 * Prompt ids must be in [0, speech vocab). */
void  cb_t3_cond_compute (const CbT3Weights *w, const CbConfig *cfg, const float *speaker_emb,
                          const int32_t *prompt, int n_prompt, float exaggeration, float *out,
                          float *scratch);

G_END_DECLS
