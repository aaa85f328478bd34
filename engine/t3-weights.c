/* t3-weights.c — CbT3Weights: views of t3_cfg.safetensors under upstream's key names.
 *
 * The engine has already validated every tensor's name, dtype and shape against the config
 * (weights-layout.c); the shapes are checked again here so that this struct can never point at a
 * tensor of another size. F32 tensors are zero-copy views into the mapping; F16/BF16 ones are
 * widened once and kept in `owned`. */
#include "t3.h"

#include "parallel.h"
#include "weights-view.h"

#include <stdarg.h>
#include <string.h>

static void
load_layer (CbWeightLoader *ld, CbT3Layer *l, int i, const CbLlamaConfig *c)
{
  const int64_t H = c->hidden_size, I = c->intermediate_size;
  const int64_t qdim = (int64_t) c->num_attention_heads * c->head_dim;
  const int64_t kvdim = (int64_t) c->num_key_value_heads * c->head_dim;
  char *p = g_strdup_printf ("tfmr.layers.%d.", i);
  char *name = NULL;
#define SUB(s) (g_free (name), name = g_strconcat (p, s, NULL))
  l->input_layernorm = cb_wl_vec (ld, H, "%s.weight", SUB ("input_layernorm"));
  cb_wl_linear (ld, &l->q_proj, &l->q_bias, qdim, H, c->attention_bias, 
                "%s", SUB ("self_attn.q_proj"));
  cb_wl_linear (ld, &l->k_proj, &l->k_bias, kvdim, H, c->attention_bias, 
                "%s", SUB ("self_attn.k_proj"));
  cb_wl_linear (ld, &l->v_proj, &l->v_bias, kvdim, H, c->attention_bias, 
                "%s", SUB ("self_attn.v_proj"));
  cb_wl_linear (ld, &l->o_proj, &l->o_bias, H, qdim, c->attention_bias, 
                "%s", SUB ("self_attn.o_proj"));
  l->post_attention_layernorm = cb_wl_vec (ld, H, "%s.weight", SUB ("post_attention_layernorm"));
  cb_wl_linear (ld, &l->gate_proj, &l->gate_bias, I, H, c->mlp_bias, 
                "%s", SUB ("mlp.gate_proj"));
  cb_wl_linear (ld, &l->up_proj, &l->up_bias, I, H, c->mlp_bias, 
                "%s", SUB ("mlp.up_proj"));
  cb_wl_linear (ld, &l->down_proj, &l->down_bias, H, I, c->mlp_bias, 
                "%s", SUB ("mlp.down_proj"));
#undef SUB
  g_free (name);
  g_free (p);
}

gboolean
cb_t3_weights_init (CbT3Weights *w, const CbConfig *cfg, const CbSafetensors *st, GError **error)
{
  memset (w, 0, sizeof *w);
  w->owned = g_ptr_array_new_with_free_func (g_free);
  CbWeightLoader ld;
  cb_weight_loader_init (&ld, st, w->owned, error);
  const CbT3Config *t = &cfg->t3;
  const CbPerceiverConfig *pc = &cfg->perceiver;
  const int64_t H = cfg->llama.hidden_size;

  w->text_emb = cb_wl_mat (&ld, t->text_tokens_dict_size, H, "text_emb.weight");
  w->speech_emb = cb_wl_mat (&ld, t->speech_tokens_dict_size, H, "speech_emb.weight");
  w->text_pos_emb = cb_wl_mat (&ld, cb_config_text_pos_len (cfg), H,
                               "text_pos_emb.emb.weight");
  w->speech_pos_emb = cb_wl_mat (&ld, cb_config_speech_pos_len (cfg), H,
                                 "speech_pos_emb.emb.weight");
  cb_wl_linear (&ld, &w->spkr_enc, &w->spkr_enc_bias, H, t->speaker_embed_size, TRUE,
                "cond_enc.spkr_enc");
  if (t->emotion_adv)
    w->emotion_adv_fc = cb_wl_mat (&ld, H, 1, "cond_enc.emotion_adv_fc.weight");
  if (t->use_perceiver_resampler) {
    const int64_t E = pc->embedding_dim;
    int64_t qd[3] = { 1, pc->pre_attention_query_token, pc->pre_attention_query_size };
    w->perceiver_query = cb_wl_tensor (&ld, 3, qd, "cond_enc.perceiver.pre_attention_query");
    w->perceiver_norm = cb_wl_vec (&ld, E, "cond_enc.perceiver.attn.norm.weight");
    w->perceiver_norm_bias = cb_wl_vec (&ld, E, "cond_enc.perceiver.attn.norm.bias");
    cb_wl_linear (&ld, &w->perceiver_to_q, &w->perceiver_to_q_bias, E, E, TRUE,
                  "cond_enc.perceiver.attn.to_q");
    cb_wl_linear (&ld, &w->perceiver_to_k, &w->perceiver_to_k_bias, E, E, TRUE,
                  "cond_enc.perceiver.attn.to_k");
    cb_wl_linear (&ld, &w->perceiver_to_v, &w->perceiver_to_v_bias, E, E, TRUE,
                  "cond_enc.perceiver.attn.to_v");
    cb_wl_linear (&ld, &w->perceiver_proj_out, &w->perceiver_proj_out_bias, E, E, TRUE,
                  "cond_enc.perceiver.attn.proj_out");
  }
  w->layers = g_new0 (CbT3Layer, cfg->llama.num_hidden_layers);
  for (int i = 0; i < cfg->llama.num_hidden_layers; i++)
    load_layer (&ld, &w->layers[i], i, &cfg->llama);
  w->norm = cb_wl_vec (&ld, H, "tfmr.norm.weight");
  w->speech_head = cb_wl_mat (&ld, t->speech_tokens_dict_size, H, "speech_head.weight");
  if (!ld.ok)
    cb_t3_weights_clear (w);
  return ld.ok;
}

void
cb_t3_weights_clear (CbT3Weights *w)
{
  g_free (w->layers);
  if (w->owned)
    g_ptr_array_unref (w->owned);
  memset (w, 0, sizeof *w);
}

/* A BF16 copy of the (rows, cols) matrix m, owned by w. */
static const guint16 *
to_bf16 (CbT3Weights *w, const float *m, gsize rows, gsize cols, gsize *bytes)
{
  *bytes += rows * cols * sizeof (guint16);
  return cb_bf16_copy (w->owned, m, rows * cols);
}

gsize
cb_t3_weights_to_bf16 (CbT3Weights *w, const CbConfig *cfg)
{
  const CbLlamaConfig *c = &cfg->llama;
  const gsize H = c->hidden_size, I = c->intermediate_size;
  const gsize qdim = (gsize) c->num_attention_heads * c->head_dim;
  const gsize kvdim = (gsize) c->num_key_value_heads * c->head_dim;
  gsize bytes = 0;
  for (int i = 0; i < c->num_hidden_layers; i++) {
    CbT3Layer *l = &w->layers[i];
    l->q_proj_bf16 = to_bf16 (w, l->q_proj, qdim, H, &bytes);
    l->k_proj_bf16 = to_bf16 (w, l->k_proj, kvdim, H, &bytes);
    l->v_proj_bf16 = to_bf16 (w, l->v_proj, kvdim, H, &bytes);
    l->o_proj_bf16 = to_bf16 (w, l->o_proj, H, qdim, &bytes);
    l->gate_proj_bf16 = to_bf16 (w, l->gate_proj, I, H, &bytes);
    l->up_proj_bf16 = to_bf16 (w, l->up_proj, I, H, &bytes);
    l->down_proj_bf16 = to_bf16 (w, l->down_proj, H, I, &bytes);
  }
  w->speech_head_bf16 = to_bf16 (w, w->speech_head, cfg->t3.speech_tokens_dict_size, H, &bytes);
  return bytes;
}
