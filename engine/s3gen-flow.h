/* s3gen-flow.h — the front of S3Gen's flow (upstream s3gen/flow.py CausalMaskedDiffWithXvec,
 * transformer/upsample_encoder.py UpsampleConformerEncoder; spec §5.2, §5.3) on the CPU: speech
 * tokens → the CFM estimator's `mu`, and the x-vector → its `spks`. The estimator itself and the
 * sampler are s3gen-cfm's.
 *
 * Encoder, for n tokens (T1 = n, T2 = upsample_stride · n frames, C = encoder width):
 *   input_embedding[tokens] → embed (Linear, LayerNorm, ×√C) → pre-lookahead conv (residual)
 *   → num_blocks conformer layers (T1) → up_layer (nearest ×stride, causal conv)
 *   → up_embed (Linear, LayerNorm, ×√C) → num_up_blocks conformer layers (T2) → after_norm = h
 *   mu = encoder_proj(h), returned channels-first [output_size, T2].
 * Conformer layers are pre-norm, attention is full (bidirectional) with ESPnet relative positions
 * (Transformer-XL terms u, v), no mask: one utterance, every frame valid. */
#pragma once

#include "config.h"
#include "safetensors.h"
#include "tensor.h"

#include <stdint.h>

G_BEGIN_DECLS

typedef struct _CbS3GenFlow CbS3GenFlow;

/* Views of the `flow.` tensors except `flow.decoder.*` (cfg and st must outlive the result).
 * A missing or mis-shaped tensor is a CB_ERROR_MISMATCH naming it; a config this module cannot run
 * is CB_ERROR_UNSUPPORTED. */
CbS3GenFlow *cb_s3gen_flow_new (const CbConfig *cfg, const CbSafetensors *st, GError **error);
void         cb_s3gen_flow_free (CbS3GenFlow *flow);

/* Largest n_tokens cb_s3gen_flow_encode accepts (sizes stay within int arithmetic). */
int          cb_s3gen_flow_max_tokens (const CbS3GenFlow *flow);
/* Floats of scratch cb_s3gen_flow_encode needs for n_tokens tokens, CbArena alignment included
 * (size one arena for the largest window); 0 if n_tokens is out of range. */
guint64      cb_s3gen_flow_scratch_floats (const CbS3GenFlow *flow, int n_tokens);

/* spks[output_size] = spk_embed_affine_layer(embedding / max(‖embedding‖, 1e-12));
 * embedding[spk_embed_dim]. */
void         cb_s3gen_flow_speaker (const CbS3GenFlow *flow, const float *embedding, float *spks);

/* tokens[n_tokens] = [prompt tokens | speech tokens], every id in [0, vocab_size).
 * mu: channels-first [output_size, T2] with T2 = token_mel_ratio · n_tokens (the estimator's
 * layout: encoder_proj(h) transposed). h_out: NULL or time-major [T2, encoder output_size], the
 * encoder output after after_norm. Every temporary comes from `scratch` (at least
 * cb_s3gen_flow_scratch_floats free), rewound before returning. FALSE with
 * CB_ERROR_INVALID_ARGUMENT for a bad id, n_tokens out of [1, max_tokens] or too little scratch. */
gboolean     cb_s3gen_flow_encode (CbS3GenFlow *flow, CbArena *scratch, const int32_t *tokens,
                                   int n_tokens, float *mu, float *h_out, GError **error);

G_END_DECLS
