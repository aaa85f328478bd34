/* weights-layout.c — expected checkpoint tensors, one table per upstream module type.
 *
 * A module table lists the tensors (and nested modules) of one upstream nn.Module class under the
 * names its state_dict uses, with shapes written in terms of the module's arguments: ARG(i) is the
 * instance's i-th argument, a number >= 0 is a literal. An entry may be conditional on an argument
 * being non-zero (a bias that a flag turns off, an affine-free BatchNorm). A '#' in a name is
 * replaced by the instance index (LSTM layers, HiFT resblock units). The file builders below only
 * loop over the config's repetition counts, name the module instances (prefixes) and pass widths;
 * tensor names live in the tables alone. */
#include "weights-layout.h"

#include <math.h>
#include <string.h>

/* Table rows leave their trailing fields (condition, type, nested module) zero unless needed. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define ARG(i) (-1 - (i))
#define MAX_ARGS 12
#define MAX_ENTRY_DIMS 6

typedef enum { T_F32 = 0, T_I64, T_OPTIONAL } EntryType;

typedef struct Module Module;

typedef struct {
  const char   *name;    /* appended to the instance prefix; ends with '.' for a nested module */
  int           n;       /* rank of a tensor, or number of arguments passed to `sub` */
  int32_t       dim[MAX_ENTRY_DIMS]; /* extents, or the nested module's arguments */
  int32_t       when;    /* 0: always; ARG(i): only when argument i is non-zero */
  EntryType     type;
  const Module *sub;     /* nested module, or NULL for a tensor */
} Entry;

struct Module {
  const char  *what;     /* upstream class, for assertion messages */
  int          n_args;
  const Entry *entries;
  int          n_entries;
};

#define MODULE(id, upstream_class, n_args_, ...)                                  \
  static const Entry id##_entries[] = { __VA_ARGS__ };                            \
  static const Module id = { upstream_class, n_args_, id##_entries,               \
                             (int) G_N_ELEMENTS (id##_entries) }

/* Argument names used in the tables (each table says what its arguments are). */
#define A0 ARG (0)
#define A1 ARG (1)
#define A2 ARG (2)
#define A3 ARG (3)
#define A4 ARG (4)
#define A5 ARG (5)
#define A6 ARG (6)
#define A7 ARG (7)
#define A8 ARG (8)
#define A9 ARG (9)
#define A10 ARG (10)
#define A11 ARG (11)

/* ---- generic torch modules ---- */

/* nn.Linear. Args: out, in, has_bias. */
MODULE (linear, "nn.Linear", 3,
  { "weight", 2, { A0, A1 } },
  { "bias", 1, { A0 }, .when = A2 });

/* nn.LayerNorm. Args: width. */
MODULE (layer_norm, "nn.LayerNorm", 1,
  { "weight", 1, { A0 } },
  { "bias", 1, { A0 } });

/* nn.BatchNorm1d/2d. Args: channels, affine. */
MODULE (batch_norm, "nn.BatchNorm", 2,
  { "weight", 1, { A0 }, .when = A1 },
  { "bias", 1, { A0 }, .when = A1 },
  { "running_mean", 1, { A0 } },
  { "running_var", 1, { A0 } },
  { "num_batches_tracked", 0, { 0 }, .type = T_I64 });

/* nn.Conv1d. Args: out, in (per group), kernel, has_bias. */
MODULE (conv1d, "nn.Conv1d", 4,
  { "weight", 3, { A0, A1, A2 } },
  { "bias", 1, { A0 }, .when = A3 });

/* A conv under torch.nn.utils.parametrizations.weight_norm (dim 0): g = original0 (dim0, 1, 1),
 * v = original1. Args: dim0, dim1, kernel, bias length (Conv1d: out, in, k, out;
 * ConvTranspose1d: in, out, k, out). */
MODULE (weight_norm_conv, "weight_norm(Conv)", 4,
  { "parametrizations.weight.original0", 3, { A0, 1, 1 } },
  { "parametrizations.weight.original1", 3, { A0, A1, A2 } },
  { "bias", 1, { A3 } });

/* ---- T3 (t3/t3.py, modules/cond_enc.py, modules/perceiver.py; transformers LlamaModel) ---- */

/* LlamaDecoderLayer. Args: hidden, q width (heads x head_dim), kv width, intermediate,
 * attention_bias, mlp_bias. */
MODULE (llama_layer, "LlamaDecoderLayer", 6,
  { "input_layernorm.weight", 1, { A0 } },
  { "self_attn.q_proj.", 3, { A1, A0, A4 }, .sub = &linear },
  { "self_attn.k_proj.", 3, { A2, A0, A4 }, .sub = &linear },
  { "self_attn.v_proj.", 3, { A2, A0, A4 }, .sub = &linear },
  { "self_attn.o_proj.", 3, { A0, A1, A4 }, .sub = &linear },
  { "post_attention_layernorm.weight", 1, { A0 } },
  { "mlp.gate_proj.", 3, { A3, A0, A5 }, .sub = &linear },
  { "mlp.up_proj.", 3, { A3, A0, A5 }, .sub = &linear },
  { "mlp.down_proj.", 3, { A0, A3, A5 }, .sub = &linear });

/* AttentionBlock2 (the perceiver's one attention block). Args: width. */
MODULE (perceiver_attention, "AttentionBlock2", 1,
  { "norm.", 1, { A0 }, .sub = &layer_norm },
  { "to_q.", 3, { A0, A0, 1 }, .sub = &linear },
  { "to_k.", 3, { A0, A0, 1 }, .sub = &linear },
  { "to_v.", 3, { A0, A0, 1 }, .sub = &linear },
  { "proj_out.", 3, { A0, A0, 1 }, .sub = &linear });

/* T3 outside the decoder layers. Args: hidden, llama vocab (embed_tokens rows), text vocab,
 * speech vocab, text position rows, speech position rows, speaker embedding width, perceiver
 * query tokens, perceiver query width, perceiver width, emotion_adv, use_perceiver_resampler. */
MODULE (t3_top, "T3", 12,
  { "tfmr.embed_tokens.weight", 2, { A1, A0 } },
  { "tfmr.norm.weight", 1, { A0 } },
  { "text_emb.weight", 2, { A2, A0 } },
  { "speech_emb.weight", 2, { A3, A0 } },
  { "text_pos_emb.emb.weight", 2, { A4, A0 } },
  { "speech_pos_emb.emb.weight", 2, { A5, A0 } },
  { "text_head.weight", 2, { A2, A0 } },
  { "speech_head.weight", 2, { A3, A0 } },
  { "cond_enc.spkr_enc.", 3, { A0, A6, 1 }, .sub = &linear },
  { "cond_enc.emotion_adv_fc.weight", 2, { A0, 1 }, .when = A10 },
  { "cond_enc.perceiver.pre_attention_query", 3, { 1, A7, A8 }, .when = A11 },
  { "cond_enc.perceiver.attn.", 1, { A9 }, .when = A11, .sub = &perceiver_attention });

/* ---- VoiceEncoder (voice_encoder/voice_encoder.py) ---- */

/* One nn.LSTM layer; '#' is the layer index. Args: 4 x hidden, input width, hidden. */
MODULE (lstm_layer, "nn.LSTM layer", 3,
  { "weight_ih_l#", 2, { A0, A1 } },
  { "weight_hh_l#", 2, { A0, A2 } },
  { "bias_ih_l#", 1, { A0 } },
  { "bias_hh_l#", 1, { A0 } });

/* Args: hidden, speaker embedding width. */
MODULE (ve_top, "VoiceEncoder", 2,
  { "proj.", 3, { A1, A0, 1 }, .sub = &linear },
  { "similarity_weight", 1, { 1 } },
  { "similarity_bias", 1, { 1 } });

/* ---- S3 tokenizer v2 (s3tokenizer/model_v2.py; chatterbox s3tokenizer.py) ---- */

/* ResidualAttentionBlock with FSMN attention. Args: state, fsmn kernel, mlp width (4 x state). */
MODULE (s3tok_block, "ResidualAttentionBlock", 3,
  { "attn_ln.", 1, { A0 }, .sub = &layer_norm },
  { "attn.query.", 3, { A0, A0, 1 }, .sub = &linear },
  { "attn.key.", 3, { A0, A0, 0 }, .sub = &linear },
  { "attn.value.", 3, { A0, A0, 1 }, .sub = &linear },
  { "attn.out.", 3, { A0, A0, 1 }, .sub = &linear },
  { "attn.fsmn_block.weight", 3, { A0, 1, A1 } },
  { "mlp_ln.", 1, { A0 }, .sub = &layer_norm },
  { "mlp.0.", 3, { A2, A0, 1 }, .sub = &linear },
  { "mlp.2.", 3, { A0, A2, 1 }, .sub = &linear });

/* S3TokenizerV2 outside the blocks. Args: state, mels, fft bins (n_fft / 2 + 1), n_fft. The mel
 * filters and window are buffers upstream registers but may not store. */
MODULE (s3tok_top, "S3Tokenizer", 4,
  { "encoder.conv1.", 4, { A0, A1, 3, 1 }, .sub = &conv1d },
  { "encoder.conv2.", 4, { A0, A0, 3, 1 }, .sub = &conv1d },
  { "quantizer._codebook.project_down.", 3, { 8, A0, 1 }, .sub = &linear },
  { "_mel_filters", 2, { A1, A2 }, .type = T_OPTIONAL },
  { "window", 1, { A3 }, .type = T_OPTIONAL });

/* ---- CAMPPlus (s3gen/xvector.py) ---- */

/* BasicResBlock of the FCM head. Args: channels, has_shortcut (the first block of a layer). */
MODULE (fcm_block, "BasicResBlock", 2,
  { "conv1.weight", 4, { A0, A0, 3, 3 } },
  { "bn1.", 2, { A0, 1 }, .sub = &batch_norm },
  { "conv2.weight", 4, { A0, A0, 3, 3 } },
  { "bn2.", 2, { A0, 1 }, .sub = &batch_norm },
  { "shortcut.0.weight", 4, { A0, A0, 1, 1 }, .when = A1 },
  { "shortcut.1.", 2, { A0, 1 }, .when = A1, .sub = &batch_norm });

/* FCM outside its res blocks, and the TDNN layer after it. Args: m_channels, FCM output width
 * (m_channels x feat_dim / 8), init_channels. */
MODULE (campplus_front, "FCM + TDNNLayer", 3,
  { "head.conv1.weight", 4, { A0, 1, 3, 3 } },
  { "head.bn1.", 2, { A0, 1 }, .sub = &batch_norm },
  { "head.conv2.weight", 4, { A0, A0, 3, 3 } },
  { "head.bn2.", 2, { A0, 1 }, .sub = &batch_norm },
  { "xvector.tdnn.linear.weight", 3, { A2, A1, 5 } },
  { "xvector.tdnn.nonlinear.batchnorm.", 2, { A2, 1 }, .sub = &batch_norm });

/* CAMDenseTDNNLayer. Args: in channels, bottleneck (bn_size x growth), growth, kernel,
 * bottleneck / 2 (CAMLayer reduction 2). */
MODULE (cam_dense_layer, "CAMDenseTDNNLayer", 5,
  { "nonlinear1.batchnorm.", 2, { A0, 1 }, .sub = &batch_norm },
  { "linear1.weight", 3, { A1, A0, 1 } },
  { "nonlinear2.batchnorm.", 2, { A1, 1 }, .sub = &batch_norm },
  { "cam_layer.linear_local.weight", 3, { A2, A1, A3 } },
  { "cam_layer.linear1.", 4, { A4, A1, 1, 1 }, .sub = &conv1d },
  { "cam_layer.linear2.", 4, { A2, A4, 1, 1 }, .sub = &conv1d });

/* TransitLayer. Args: in channels, out channels. */
MODULE (cam_transit, "TransitLayer", 2,
  { "nonlinear.batchnorm.", 2, { A0, 1 }, .sub = &batch_norm },
  { "linear.weight", 3, { A1, A0, 1 } });

/* The x-vector tail: statistics pooling doubles the width; the last BatchNorm is affine-free.
 * Args: channels after the last transit, embedding size, 2 x channels. */
MODULE (campplus_tail, "CAMPPlus tail", 3,
  { "xvector.out_nonlinear.batchnorm.", 2, { A0, 1 }, .sub = &batch_norm },
  { "xvector.dense.linear.weight", 3, { A1, A2, 1 } },
  { "xvector.dense.nonlinear.batchnorm.", 2, { A1, 0 }, .sub = &batch_norm });

/* ---- S3Gen flow (s3gen/flow.py, transformer/, decoder.py, matcha/) ---- */

/* CausalMaskedDiffWithXvec outside encoder and decoder. Args: input_size, output_size (mels),
 * spk_embed_dim, vocab_size, encoder output_size. */
MODULE (flow_top, "CausalMaskedDiffWithXvec", 5,
  { "input_embedding.weight", 2, { A3, A0 } },
  { "spk_embed_affine_layer.", 3, { A1, A2, 1 }, .sub = &linear },
  { "encoder_proj.", 3, { A1, A4, 1 }, .sub = &linear });

/* LinearNoSubsampling (embed, up_embed): Linear then LayerNorm. Args: out, in. */
MODULE (linear_no_subsampling, "LinearNoSubsampling", 2,
  { "out.0.", 3, { A0, A1, 1 }, .sub = &linear },
  { "out.1.", 1, { A0 }, .sub = &layer_norm });

/* ConformerEncoderLayer with RelPositionMultiHeadedAttention, no macaron, no conv module.
 * Args: width, heads, head width, linear_units, key_bias. */
MODULE (conformer_layer, "ConformerEncoderLayer", 5,
  { "self_attn.linear_q.", 3, { A0, A0, 1 }, .sub = &linear },
  { "self_attn.linear_k.", 3, { A0, A0, A4 }, .sub = &linear },
  { "self_attn.linear_v.", 3, { A0, A0, 1 }, .sub = &linear },
  { "self_attn.linear_out.", 3, { A0, A0, 1 }, .sub = &linear },
  { "self_attn.linear_pos.", 3, { A0, A0, 0 }, .sub = &linear },
  { "self_attn.pos_bias_u", 2, { A1, A2 } },
  { "self_attn.pos_bias_v", 2, { A1, A2 } },
  { "feed_forward.w_1.", 3, { A3, A0, 1 }, .sub = &linear },
  { "feed_forward.w_2.", 3, { A0, A3, 1 }, .sub = &linear },
  { "norm_mha.", 1, { A0 }, .sub = &layer_norm },
  { "norm_ff.", 1, { A0 }, .sub = &layer_norm });

/* UpsampleConformerEncoder outside its layers. Args: input_size, output_size, pre-lookahead
 * conv1 kernel (pre_lookahead_len + 1), up_layer kernel (2 x stride + 1). */
MODULE (flow_encoder_top, "UpsampleConformerEncoder", 4,
  { "embed.", 2, { A1, A0 }, .sub = &linear_no_subsampling },
  { "pre_lookahead_layer.conv1.", 4, { A1, A1, A2, 1 }, .sub = &conv1d },
  { "pre_lookahead_layer.conv2.", 4, { A1, A1, 3, 1 }, .sub = &conv1d },
  { "up_layer.conv.", 4, { A1, A1, A3, 1 }, .sub = &conv1d },
  { "up_embed.", 2, { A1, A0 }, .sub = &linear_no_subsampling },
  { "after_norm.", 1, { A1 }, .sub = &layer_norm });

/* CausalBlock1D: CausalConv1d (k 3), Transpose, LayerNorm, Transpose, Mish. Args: in, out. */
MODULE (causal_block, "CausalBlock1D", 2,
  { "block.0.", 4, { A1, A0, 3, 1 }, .sub = &conv1d },
  { "block.2.", 1, { A1 }, .sub = &layer_norm });

/* CausalResnetBlock1D. Args: in, out, time embedding width. */
MODULE (causal_resnet, "CausalResnetBlock1D", 3,
  { "mlp.1.", 3, { A1, A2, 1 }, .sub = &linear },
  { "block1.", 2, { A0, A1 }, .sub = &causal_block },
  { "block2.", 2, { A1, A1 }, .sub = &causal_block },
  { "res_conv.", 4, { A1, A0, 1, 1 }, .sub = &conv1d });

/* BasicTransformerBlock (self-attention only, GELU feed-forward). Args: width, attention inner
 * width (heads x head dim), feed-forward width (width x ff_mult). */
MODULE (transformer_block, "BasicTransformerBlock", 3,
  { "norm1.", 1, { A0 }, .sub = &layer_norm },
  { "attn1.to_q.", 3, { A1, A0, 0 }, .sub = &linear },
  { "attn1.to_k.", 3, { A1, A0, 0 }, .sub = &linear },
  { "attn1.to_v.", 3, { A1, A0, 0 }, .sub = &linear },
  { "attn1.to_out.0.", 3, { A0, A1, 1 }, .sub = &linear },
  { "norm3.", 1, { A0 }, .sub = &layer_norm },
  { "ff.net.0.proj.", 3, { A2, A0, 1 }, .sub = &linear },
  { "ff.net.2.", 3, { A0, A2, 1 }, .sub = &linear });

/* ConditionalDecoder (single level) outside its resnet/transformer stages. Args: in_channels,
 * channels, time embedding width (4 x channels), out_channels, meanflow, 2 x time width. */
MODULE (estimator_top, "ConditionalDecoder", 6,
  { "time_mlp.linear_1.", 3, { A2, A0, 1 }, .sub = &linear },
  { "time_mlp.linear_2.", 3, { A2, A2, 1 }, .sub = &linear },
  { "down_blocks.0.2.", 4, { A1, A1, 3, 1 }, .sub = &conv1d },
  { "up_blocks.0.2.", 4, { A1, A1, 3, 1 }, .sub = &conv1d },
  { "final_block.", 2, { A1, A1 }, .sub = &causal_block },
  { "final_proj.", 4, { A3, A1, 1, 1 }, .sub = &conv1d },
  { "time_embed_mixer.weight", 2, { A2, A5 }, .when = A4 });

/* ---- HiFT vocoder (s3gen/hifigan.py, f0_predictor.py) ---- */

/* One unit of a HiFT ResBlock (one dilation); '#' is the unit index. Args: channels, kernel. */
MODULE (hift_resblock_unit, "ResBlock unit", 2,
  { "convs1.#.", 4, { A0, A0, A1, A0 }, .sub = &weight_norm_conv },
  { "convs2.#.", 4, { A0, A0, A1, A0 }, .sub = &weight_norm_conv },
  { "activations1.#.alpha", 1, { A0 } },
  { "activations2.#.alpha", 1, { A0 } });

/* HiFTGenerator outside the up/down paths. Args: in_channels (mels), base_channels, istft n_fft
 * + 2, channels after the last upsample, nb_harmonics + 1, F0 predictor cond_channels,
 * num_class. */
MODULE (hift_top, "HiFTGenerator", 7,
  { "conv_pre.", 4, { A1, A0, 7, A1 }, .sub = &weight_norm_conv },
  { "conv_post.", 4, { A2, A3, 7, A2 }, .sub = &weight_norm_conv },
  { "m_source.l_linear.", 3, { 1, A4, 1 }, .sub = &linear },
  { "f0_predictor.classifier.", 3, { A6, A5, 1 }, .sub = &linear });

/* ---- emitting a layout from the tables ---- */

struct _CbWeightsLayout {
  CbWeightsFile which;
  GArray       *specs;   /* CbWeightSpec; names in `names` */
  GStringChunk *names;
  GHashTable   *by_name; /* name -> index + 1 */
  guint         n_required;
};

static int64_t
resolve (const Module *m, int32_t d, const int64_t *args)
{
  if (d >= 0)
    return d;
  int i = ARG (0) - d;
  g_assert (i < m->n_args);
  return args[i];
}

/* `prefix` + `name` with '#' replaced by `index`. */
static char *
entry_name (const char *prefix, const char *name, int index)
{
  GString *s = g_string_new (prefix);
  for (const char *p = name; *p; p++)
    if (*p == '#')
      g_string_append_printf (s, "%d", index);
    else
      g_string_append_c (s, *p);
  return g_string_free (s, FALSE);
}

static void
add_spec (CbWeightsLayout *l, const char *name, CbDType dtype, int ndim, const int64_t *shape,
          gboolean optional)
{
  CbWeightSpec spec = { 0 };
  spec.name = g_string_chunk_insert (l->names, name);
  spec.dtype = dtype;
  spec.ndim = ndim;
  for (int i = 0; i < ndim; i++)
    spec.shape[i] = shape[i];
  spec.optional = optional;
  g_assert (!g_hash_table_contains (l->by_name, spec.name)); /* a table bug, not a file problem */
  g_array_append_val (l->specs, spec);
  g_hash_table_insert (l->by_name, (gpointer) spec.name, GUINT_TO_POINTER (l->specs->len));
  if (!optional)
    l->n_required++;
}

static void
emit (CbWeightsLayout *l, const Module *m, const char *prefix, int index, const int64_t *args,
      int n_args)
{
  if (n_args != m->n_args || n_args > MAX_ARGS) /* a table bug, caught by any test */
    g_error ("weights-layout: %s (%s) takes %d arguments, got %d", m->what, prefix, m->n_args,
             n_args);
  for (int e = 0; e < m->n_entries; e++) {
    const Entry *en = &m->entries[e];
    if (en->when && resolve (m, en->when, args) == 0)
      continue;
    g_assert (en->n <= MAX_ENTRY_DIMS);
    int64_t v[MAX_ENTRY_DIMS];
    for (int i = 0; i < en->n; i++)
      v[i] = resolve (m, en->dim[i], args);
    char *name = entry_name (prefix, en->name, index);
    if (en->sub)
      emit (l, en->sub, name, index, v, en->n);
    else
      add_spec (l, name, en->type == T_I64 ? CB_DTYPE_I64 : CB_DTYPE_F32, en->n, v,
                en->type == T_OPTIONAL);
    g_free (name);
  }
}

/* A module's arguments at a call site: emit_at (l, &module, index, ARGS (a, b), "prefix.%d.", i). */
#define ARGS(...)                                                                      \
  (const int64_t[]) { __VA_ARGS__ },                                                   \
  (int) (sizeof ((const int64_t[]) { __VA_ARGS__ }) / sizeof (int64_t))

/* emit() with the prefix from a printf format. */
static void G_GNUC_PRINTF (6, 7)
emit_at (CbWeightsLayout *l, const Module *m, int index, const int64_t *args, int n_args,
          const char *prefix_fmt, ...)
{
  va_list ap;
  va_start (ap, prefix_fmt);
  char *prefix = g_strdup_vprintf (prefix_fmt, ap);
  va_end (ap);
  emit (l, m, prefix, index, args, n_args);
  g_free (prefix);
}

/* ---- the three files ---- */

static void
build_t3 (CbWeightsLayout *l, const CbConfig *c)
{
  const CbLlamaConfig *ll = &c->llama;
  const CbT3Config *t = &c->t3;
  const CbPerceiverConfig *p = &c->perceiver;
  int64_t q_width = (int64_t) ll->num_attention_heads * ll->head_dim;
  int64_t kv_width = (int64_t) ll->num_key_value_heads * ll->head_dim;
  for (int i = 0; i < ll->num_hidden_layers; i++)
    emit_at (l, &llama_layer, i,
             ARGS (ll->hidden_size, q_width, kv_width, ll->intermediate_size, ll->attention_bias,
                   ll->mlp_bias),
             "tfmr.layers.%d.", i);
  emit_at (l, &t3_top, 0,
           ARGS (ll->hidden_size, ll->vocab_size, t->text_tokens_dict_size,
                 t->speech_tokens_dict_size, cb_config_text_pos_len (c),
                 cb_config_speech_pos_len (c), t->speaker_embed_size, p->pre_attention_query_token,
                 p->pre_attention_query_size, p->embedding_dim, t->emotion_adv,
                 t->use_perceiver_resampler),
           "%s", "");
}

static void
build_ve (CbWeightsLayout *l, const CbConfig *c)
{
  const CbVoiceEncoderConfig *v = &c->ve;
  for (int i = 0; i < v->num_layers; i++)
    emit_at (l, &lstm_layer, i,
             ARGS (4 * (int64_t) v->ve_hidden_size, i == 0 ? v->num_mels : v->ve_hidden_size,
                   v->ve_hidden_size),
             "lstm.");
  emit_at (l, &ve_top, 0, ARGS (v->ve_hidden_size, v->speaker_embed_size), "%s", "");
}

static void
build_s3_tokenizer (CbWeightsLayout *l, const CbConfig *c)
{
  const CbS3TokenizerConfig *s = &c->s3tokenizer;
  emit_at (l, &s3tok_top, 0, ARGS (s->n_audio_state, s->n_mels, s->n_fft / 2 + 1, s->n_fft),
           "tokenizer.");
  for (int i = 0; i < s->n_audio_layer; i++)
    emit_at (l, &s3tok_block, i,
             ARGS (s->n_audio_state, s->fsmn_kernel_size, 4 * (int64_t) s->n_audio_state),
             "tokenizer.encoder.blocks.%d.", i);
}

static void
build_campplus (CbWeightsLayout *l, const CbConfig *c)
{
  const CbCampPlusConfig *cp = &c->campplus;
  int64_t m = cp->m_channels;
  emit_at (l, &campplus_front, 0, ARGS (m, m * (cp->feat_dim / 8), cp->init_channels),
           "speaker_encoder.");
  /* FCM: two layers of two BasicResBlocks; the first of each has stride 2, hence a shortcut. */
  for (int layer = 1; layer <= 2; layer++)
    for (int b = 0; b < 2; b++)
      emit_at (l, &fcm_block, 0, ARGS (m, b == 0), "speaker_encoder.head.layer%d.%d.", layer, b);
  int64_t channels = cp->init_channels;
  int64_t bottleneck = (int64_t) cp->bn_size * cp->growth_rate;
  for (int b = 0; b < cp->block_num_layers.n; b++) {
    for (int n = 0; n < cp->block_num_layers.v[b]; n++)
      emit_at (l, &cam_dense_layer, 0,
               ARGS (channels + (int64_t) n * cp->growth_rate, bottleneck, cp->growth_rate,
                     cp->block_kernel_sizes.v[b], bottleneck / 2),
               "speaker_encoder.xvector.block%d.tdnnd%d.", b + 1, n + 1);
    channels += (int64_t) cp->block_num_layers.v[b] * cp->growth_rate;
    emit_at (l, &cam_transit, 0, ARGS (channels, channels / 2),
             "speaker_encoder.xvector.transit%d.", b + 1);
    channels /= 2;
  }
  emit_at (l, &campplus_tail, 0, ARGS (channels, cp->embedding_size, 2 * channels),
           "speaker_encoder.");
}

static void
build_flow (CbWeightsLayout *l, const CbConfig *c)
{
  const CbFlowConfig *f = &c->flow;
  const CbFlowEncoderConfig *e = &c->flow_encoder;
  const CbFlowDecoderConfig *d = &c->flow_decoder;
  emit_at (l, &flow_top, 0,
           ARGS (f->input_size, f->output_size, f->spk_embed_dim, f->vocab_size, e->output_size),
           "flow.");
  emit_at (l, &flow_encoder_top, 0,
           ARGS (e->input_size, e->output_size, e->pre_lookahead_len + 1,
                 2 * e->upsample_stride + 1),
           "flow.encoder.");
  const struct { const char *name; int count; } stacks[] = {
    { "encoders", e->num_blocks }, { "up_encoders", e->num_up_blocks },
  };
  for (guint s = 0; s < G_N_ELEMENTS (stacks); s++)
    for (int i = 0; i < stacks[s].count; i++)
      emit_at (l, &conformer_layer, 0,
               ARGS (e->output_size, e->attention_heads, e->output_size / e->attention_heads,
                     e->linear_units, e->key_bias),
               "flow.encoder.%s.%d.", stacks[s].name, i);

  /* The estimator: one down stage, num_mid_blocks mid stages, one up stage (skip concat doubles
   * its input), each a resnet then n_blocks transformer blocks. */
  int64_t ch = d->channels.v[0];
  int64_t time_width = 4 * ch;
  emit_at (l, &estimator_top, 0,
           ARGS (d->in_channels, ch, time_width, d->out_channels, d->meanflow, 2 * time_width),
           "flow.decoder.estimator.");
  int n_stages = d->num_mid_blocks + 2;
  for (int s = 0; s < n_stages; s++) {
    gboolean down = s == 0, up = s == n_stages - 1;
    char *stage = down ? g_strdup ("down_blocks.0") : up ? g_strdup ("up_blocks.0")
                                                         : g_strdup_printf ("mid_blocks.%d", s - 1);
    int64_t in = down ? d->in_channels : up ? 2 * ch : ch;
    emit_at (l, &causal_resnet, 0, ARGS (in, ch, time_width), "flow.decoder.estimator.%s.0.",
             stage);
    for (int j = 0; j < d->n_blocks; j++)
      emit_at (l, &transformer_block, 0,
               ARGS (ch, (int64_t) d->num_heads * d->attention_head_dim, ch * d->ff_mult),
               "flow.decoder.estimator.%s.1.%d.", stage, j);
    g_free (stage);
  }
}

/* A HiFT ResBlock: one unit per dilation. */
static void
emit_hift_resblock (CbWeightsLayout *l, const char *prefix, int64_t channels, int kernel,
                    const CbIntList *dilations)
{
  for (int j = 0; j < dilations->n; j++)
    emit (l, &hift_resblock_unit, prefix, j, ARGS (channels, kernel));
}

static void
build_hift (CbWeightsLayout *l, const CbConfig *c)
{
  const CbHiftConfig *h = &c->hift;
  const CbF0PredictorConfig *f0 = &c->f0_predictor;
  int n_up = h->upsample_rates.n;
  int64_t base = h->base_channels;
  int64_t source_ch = (int64_t) h->istft_n_fft + 2;
  emit_at (l, &hift_top, 0,
           ARGS (h->in_channels, base, source_ch, base >> n_up, (int64_t) h->nb_harmonics + 1,
                 f0->cond_channels, f0->num_class),
           "mel2wav.");
  for (int i = 0; i < n_up; i++)
    emit_at (l, &weight_norm_conv, 0,
             ARGS (base >> i, base >> (i + 1), h->upsample_kernel_sizes.v[i], base >> (i + 1)),
             "mel2wav.ups.%d.", i);

  /* Source path: source_downs[i] downsamples by the product of the later upsample rates
   * (hifigan.py: cumprod of [1] + reversed rates[:-1], reversed); stride 1 is a 1x1 conv. */
  for (int i = 0; i < n_up; i++) {
    int64_t stride = 1;
    for (int r = i + 1; r < n_up; r++)
      stride *= h->upsample_rates.v[r];
    emit_at (l, &conv1d, 0, ARGS (base >> (i + 1), source_ch, stride == 1 ? 1 : 2 * stride, 1),
             "mel2wav.source_downs.%d.", i);
    char *prefix = g_strdup_printf ("mel2wav.source_resblocks.%d.", i);
    emit_hift_resblock (l, prefix, base >> (i + 1), h->source_resblock_kernel_sizes.v[i],
                        &h->source_resblock_dilation_sizes.v[i]);
    g_free (prefix);
  }
  int n_kernels = h->resblock_kernel_sizes.n;
  for (int i = 0; i < n_up; i++)
    for (int r = 0; r < n_kernels; r++) {
      char *prefix = g_strdup_printf ("mel2wav.resblocks.%d.", i * n_kernels + r);
      emit_hift_resblock (l, prefix, base >> (i + 1), h->resblock_kernel_sizes.v[r],
                          &h->resblock_dilation_sizes.v[r]);
      g_free (prefix);
    }
  /* ConvRNNF0Predictor.condnet: Conv1d (k 3) + ELU pairs, so the convs sit at even indices. */
  for (int i = 0; i < f0->num_layers; i++)
    emit_at (l, &weight_norm_conv, 0,
             ARGS (f0->cond_channels, i == 0 ? f0->in_channels : f0->cond_channels, 3,
                   f0->cond_channels),
             "mel2wav.f0_predictor.condnet.%d.", 2 * i);
}

static const char *const file_names[CB_WEIGHTS_N_FILES] = {
  [CB_WEIGHTS_T3] = "t3_cfg.safetensors",
  [CB_WEIGHTS_VE] = "ve.safetensors",
  [CB_WEIGHTS_S3GEN] = "s3gen.safetensors",
};

const char *
cb_weights_file_name (CbWeightsFile which)
{
  g_return_val_if_fail (which < CB_WEIGHTS_N_FILES, NULL);
  return file_names[which];
}

CbWeightsLayout *
cb_weights_layout_new (CbWeightsFile which, const CbConfig *cfg)
{
  g_return_val_if_fail (which < CB_WEIGHTS_N_FILES && cfg, NULL);
  CbWeightsLayout *l = g_new0 (CbWeightsLayout, 1);
  l->which = which;
  l->specs = g_array_new (FALSE, TRUE, sizeof (CbWeightSpec));
  l->names = g_string_chunk_new (4096);
  l->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  switch (which) {
  case CB_WEIGHTS_T3:
    build_t3 (l, cfg);
    break;
  case CB_WEIGHTS_VE:
    build_ve (l, cfg);
    break;
  case CB_WEIGHTS_S3GEN:
    build_s3_tokenizer (l, cfg);
    build_campplus (l, cfg);
    build_flow (l, cfg);
    build_hift (l, cfg);
    break;
  case CB_WEIGHTS_N_FILES:
    g_assert_not_reached ();
  }
  return l;
}

void
cb_weights_layout_free (CbWeightsLayout *l)
{
  if (!l)
    return;
  g_hash_table_destroy (l->by_name);
  g_string_chunk_free (l->names);
  g_array_free (l->specs, TRUE);
  g_free (l);
}

CbWeightsFile
cb_weights_layout_file (const CbWeightsLayout *l)
{
  return l->which;
}

guint
cb_weights_layout_size (const CbWeightsLayout *l)
{
  return l->specs->len;
}

guint
cb_weights_layout_n_required (const CbWeightsLayout *l)
{
  return l->n_required;
}

const CbWeightSpec *
cb_weights_layout_nth (const CbWeightsLayout *l, guint i)
{
  g_return_val_if_fail (i < l->specs->len, NULL);
  return &g_array_index (l->specs, CbWeightSpec, i);
}

const CbWeightSpec *
cb_weights_layout_find (const CbWeightsLayout *l, const char *name)
{
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (l->by_name, name));
  return i ? &g_array_index (l->specs, CbWeightSpec, i - 1) : NULL;
}

static guint64
spec_numel (const CbWeightSpec *s)
{
  guint64 n = 1;
  for (int i = 0; i < s->ndim; i++)
    if (!cb_mul_u64 (n, (guint64) s->shape[i], &n))
      return G_MAXUINT64;
  return n;
}

static guint64
spec_nbytes (const CbWeightSpec *s)
{
  guint64 n;
  return cb_mul_u64 (spec_numel (s), cb_dtype_size (s->dtype), &n) ? n : G_MAXUINT64;
}

guint64
cb_weights_layout_nbytes (const CbWeightsLayout *l)
{
  guint64 total = 0;
  for (guint i = 0; i < l->specs->len; i++) {
    const CbWeightSpec *s = cb_weights_layout_nth (l, i);
    if (!s->optional && !cb_add_u64 (total, spec_nbytes (s), &total))
      return G_MAXUINT64;
  }
  return total;
}

/* ---- validation ---- */

/* Float weights may be stored in any of the float types the loaders widen (spec §1.2). */
static gboolean
dtype_accepted (CbDType expected, CbDType found)
{
  if (expected == CB_DTYPE_F32)
    return found == CB_DTYPE_F32 || found == CB_DTYPE_F16 || found == CB_DTYPE_BF16;
  return found == expected;
}

static const char *
expected_dtype_name (CbDType dt)
{
  return dt == CB_DTYPE_F32 ? "F32 (or F16/BF16)" : cb_dtype_name (dt);
}

/* Problems of one kind: how many, and the first few spelled out. */
#define MAX_LISTED_PER_KIND 4

typedef struct {
  const char *what;  /* "missing", ... */
  GString    *listed;
  guint       count;
} Problems;

static void G_GNUC_PRINTF (2, 3)
problem (Problems *p, const char *fmt, ...)
{
  if (p->count++ >= MAX_LISTED_PER_KIND)
    return;
  if (p->listed->len)
    g_string_append (p->listed, ", ");
  va_list ap;
  va_start (ap, fmt);
  g_string_append_vprintf (p->listed, fmt, ap);
  va_end (ap);
}

enum { MISSING, WRONG, UNEXPECTED, N_KINDS };

static void
check_expected (const CbSafetensors *st, const CbWeightSpec *s, Problems *p)
{
  char want[128], got[128];
  cb_format_shape (want, sizeof want, s->ndim, s->shape);
  const CbTensorInfo *t = cb_safetensors_find (st, s->name);
  if (!t) {
    if (!s->optional)
      problem (&p[MISSING], "'%s' (%s %s)", s->name, cb_dtype_name (s->dtype), want);
    return;
  }
  /* Recorded as used whatever its shape: it is a tensor the model knows. */
  cb_safetensors_get (st, s->name, CB_DTYPE_ANY, CB_NDIM_ANY, NULL, NULL);
  gboolean same_shape = t->ndim == s->ndim;
  for (int i = 0; same_shape && i < s->ndim; i++)
    same_shape = t->shape[i] == s->shape[i];
  if (!same_shape || !dtype_accepted (s->dtype, t->dtype)) {
    cb_format_shape (got, sizeof got, t->ndim, t->shape);
    problem (&p[WRONG], "'%s': expected %s %s, found %s %s", s->name,
             expected_dtype_name (s->dtype), want, cb_dtype_name (t->dtype), got);
  }
}

/* A file whose names all carry a prefix the layout lacks ("model.", "t3.") gets a hint. */
static char *
prefix_hint (const CbSafetensors *st, const CbWeightsLayout *layout)
{
  guint n = cb_safetensors_n_tensors (st);
  if (n == 0)
    return g_strdup ("");
  const char *first = cb_safetensors_nth (st, 0)->name;
  const char *dot = strchr (first, '.');
  if (!dot)
    return g_strdup ("");
  gsize len = (gsize) (dot - first) + 1;
  for (guint i = 0; i < n; i++) {
    const char *name = cb_safetensors_nth (st, i)->name;
    if (strncmp (name, first, len) != 0 || !cb_weights_layout_find (layout, name + len))
      return g_strdup ("");
  }
  return g_strdup_printf (" (every name carries the prefix '%.*s', which upstream's loader does "
                          "not strip either)", (int) len, first);
}

gboolean
cb_weights_validate_layout (const CbSafetensors *st, const CbWeightsLayout *layout,
                            GError **error)
{
  Problems p[N_KINDS] = {
    [MISSING] = { "missing" },
    [WRONG] = { "with a wrong dtype or shape" },
    [UNEXPECTED] = { "unexpected" },
  };
  for (int k = 0; k < N_KINDS; k++)
    p[k].listed = g_string_new (NULL);
  for (guint i = 0; i < cb_weights_layout_size (layout); i++)
    check_expected (st, cb_weights_layout_nth (layout, i), p);
  guint n = cb_safetensors_n_tensors (st);
  for (guint i = 0; i < n; i++) {
    const CbTensorInfo *t = cb_safetensors_nth (st, i);
    if (!cb_weights_layout_find (layout, t->name)) {
      char got[128];
      problem (&p[UNEXPECTED], "'%s' (%s %s)", t->name, cb_dtype_name (t->dtype),
               cb_format_shape (got, sizeof got, t->ndim, t->shape));
    }
  }
  guint total = p[MISSING].count + p[WRONG].count + p[UNEXPECTED].count;
  if (total) {
    GString *msg = g_string_new (NULL);
    for (int k = 0; k < N_KINDS; k++)
      if (p[k].count)
        g_string_append_printf (msg, "%s%u %s: %s%s", msg->len ? "; " : "", p[k].count, p[k].what,
                                p[k].listed->str, p[k].count > MAX_LISTED_PER_KIND ? ", ..." : "");
    guint n_required = cb_weights_layout_n_required (layout);
    guint n_optional = cb_weights_layout_size (layout) - n_required;
    char *expected = n_optional ? g_strdup_printf ("%u tensors + %u optional", n_required, n_optional)
                                : g_strdup_printf ("%u tensors", n_required);
    char *hint = prefix_hint (st, layout);
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: %u tensor problem%s for this model config (expected %s, the file has %u)%s: "
                 "%s", cb_safetensors_path (st), total, total == 1 ? "" : "s", expected, n, hint,
                 msg->str);
    g_free (hint);
    g_free (expected);
    g_string_free (msg, TRUE);
  }
  for (int k = 0; k < N_KINDS; k++)
    g_string_free (p[k].listed, TRUE);
  return total == 0;
}

gboolean
cb_weights_validate (const CbSafetensors *st, CbWeightsFile which, const CbConfig *cfg,
                     GError **error)
{
  CbWeightsLayout *layout = cb_weights_layout_new (which, cfg);
  gboolean ok = cb_weights_validate_layout (st, layout, error);
  cb_weights_layout_free (layout);
  return ok;
}

/* ---- random model files ---- */

/* splitmix64: a fixed, portable sequence for a seed. */
static guint64
next_random (guint64 *state)
{
  guint64 z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double
next_unit (guint64 *state)
{
  return (double) (next_random (state) >> 11) * (1.0 / 9007199254740992.0);
}

static void
fill_random (const CbWeightSpec *s, guint8 *data, guint64 numel, guint64 *state)
{
  if (s->dtype == CB_DTYPE_I64) {
    memset (data, 0, numel * sizeof (int64_t)); /* num_batches_tracked */
    return;
  }
  float *f = (float *) data;
  if (g_str_has_suffix (s->name, "running_var")) {
    for (guint64 i = 0; i < numel; i++)
      f[i] = (float) (0.5 + next_unit (state));
    return;
  }
  guint64 fan_in = s->ndim >= 2 ? numel / (guint64) s->shape[0] : 1;
  double scale = 1.0 / sqrt ((double) MAX (fan_in, 1));
  for (guint64 i = 0; i < numel; i++)
    f[i] = (float) ((2.0 * next_unit (state) - 1.0) * scale);
}

gboolean
cb_weights_write_random (const char *path, const CbWeightsLayout *layout, guint64 seed,
                         gboolean with_optional, guint64 max_bytes, GError **error)
{
  guint n = cb_weights_layout_size (layout);
  guint64 total = 0;
  for (guint i = 0; i < n; i++) {
    const CbWeightSpec *s = cb_weights_layout_nth (layout, i);
    if ((with_optional || !s->optional) && !cb_add_u64 (total, spec_nbytes (s), &total))
      total = G_MAXUINT64;
  }
  if (total > max_bytes || total > G_MAXSIZE) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "%s: the layout needs %" G_GUINT64_FORMAT " bytes, over the limit of %"
                 G_GUINT64_FORMAT, path, total, max_bytes);
    return FALSE;
  }
  guint8 *buffer = g_malloc (MAX (total, 1));
  CbTensorInfo *infos = g_new0 (CbTensorInfo, n);
  guint n_out = 0;
  guint64 offset = 0, state = seed;
  for (guint i = 0; i < n; i++) {
    const CbWeightSpec *s = cb_weights_layout_nth (layout, i);
    if (s->optional && !with_optional)
      continue;
    CbTensorInfo *t = &infos[n_out++];
    t->name = s->name;
    t->dtype = s->dtype;
    t->ndim = s->ndim;
    memcpy (t->shape, s->shape, sizeof t->shape);
    t->numel = spec_numel (s);
    t->nbytes = spec_nbytes (s);
    t->data = buffer + offset;
    fill_random (s, buffer + offset, t->numel, &state);
    offset += t->nbytes;
  }
  gboolean ok = cb_safetensors_write (path, n_out, infos, NULL, error);
  g_free (infos);
  g_free (buffer);
  return ok;
}
