/* t3-cond.c — T3's conditioning encoder (upstream T3.prepare_conditioning + T3CondEnc + Perceiver;
 * spec §3.3). Runs once per voice and exaggeration (t3.c caches the result). */
#include "t3.h"

#include <math.h>
#include <string.h>

static int
max_int (int a, int b)
{
  return a > b ? a : b;
}

gsize
cb_t3_cond_scratch_floats (const CbConfig *cfg, int max_prompt)
{
  const gsize E = cfg->perceiver.embedding_dim;
  const gsize rows = max_int (max_prompt, cfg->perceiver.pre_attention_query_token);
  /* prompt embeddings, two normalised inputs, k, v, and query-side q/attention/output/result */
  return 5 * rows * E + 4 * (gsize) cfg->perceiver.pre_attention_query_token * E;
}

/* AttentionBlock2.forward(x1, x2): out = x1 + proj_out(attention(to_q(norm(x1)),
 * to_k(norm(x2)), to_v(norm(x2)))), one LayerNorm for both inputs, no mask, scale 1/sqrt(head).
 * x1 (Tq, E), x2 (Tk, E); out (Tq, E) must not alias x1 or x2. `rows` scratch buffers hold Tk
 * rows, `qrows` ones Tq rows. */
static void
perceiver_block (const CbT3Weights *w, const CbPerceiverConfig *pc, float *out, const float *x1,
                 int Tq, const float *x2, int Tk, float *x2n, float *k, float *v, float *x1n,
                 float *q, float *att)
{
  const int E = pc->embedding_dim, heads = pc->num_attn_heads, D = E / heads;
  const float eps = (float) pc->layer_norm_eps;
  cb_layernorm (x1n, x1, w->perceiver_norm, w->perceiver_norm_bias, eps, Tq, E);
  cb_layernorm (x2n, x2, w->perceiver_norm, w->perceiver_norm_bias, eps, Tk, E);
  cb_matmul (q, x1n, w->perceiver_to_q, w->perceiver_to_q_bias, Tq, E, E);
  cb_matmul (k, x2n, w->perceiver_to_k, w->perceiver_to_k_bias, Tk, E, E);
  cb_matmul (v, x2n, w->perceiver_to_v, w->perceiver_to_v_bias, Tk, E, E);
  cb_attention (att, q, k, v, Tq, Tk, heads, heads, D, 1.0f / sqrtf ((float) D), NULL, 0, 0, NULL);
  cb_matmul (out, att, w->perceiver_proj_out, w->perceiver_proj_out_bias, Tq, E, E);
  cb_add (out, out, x1, (gsize) Tq * E);
}

void
cb_t3_cond_compute (const CbT3Weights *w, const CbConfig *cfg, const float *speaker_emb,
                    const int32_t *prompt, int n_prompt, float exaggeration, float *out,
                    float *scratch)
{
  const int H = cfg->llama.hidden_size;
  const CbPerceiverConfig *pc = &cfg->perceiver;
  const int Q = pc->pre_attention_query_token;
  const gsize rows = max_int (n_prompt, Q);

  /* speaker: spkr_enc(speaker_emb) */
  cb_matmul (out, speaker_emb, w->spkr_enc, w->spkr_enc_bias, 1, cfg->t3.speaker_embed_size, H);
  float *row = out + H;

  if (n_prompt > 0) {
    float *h = scratch, *x2n = h + rows * H, *k = x2n + rows * H, *v = k + rows * H;
    float *x1n = v + rows * H, *q = x1n + rows * H, *att = q + (gsize) Q * H;
    float *pre = att + (gsize) Q * H;
    /* prepare_conditioning: speech_emb(tokens) + speech_pos_emb(positions 0..P-1) */
    for (int i = 0; i < n_prompt; i++)
      cb_add (h + (gsize) i * H, w->speech_emb + (gsize) prompt[i] * H,
              w->speech_pos_emb + (gsize) i * H, H);
    /* Perceiver: cross-attention of the learned queries to the prompt, then self-attention of
     * the result, with the same block both times. */
    perceiver_block (w, pc, pre, w->perceiver_query, Q, h, n_prompt, x2n, k, v, x1n, q, att);
    perceiver_block (w, pc, row, pre, Q, pre, Q, x2n, k, v, x1n, q, att);
    row += (gsize) Q * H;
  }

  /* emotion_adv_fc: Linear(1, H) without bias of the exaggeration value */
  if (w->emotion_adv_fc)
    cb_scale (row, w->emotion_adv_fc, exaggeration, H);
}
