/* config.c — defaults, the JSON override file and validation, all driven by one key table so that
 * a field is declared once (name, type, range) and the loader, the validator and the documentation
 * cannot drift apart. */
#include "config.h"

#include "cb-json.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

#include <glib/gstdio.h>

/* The override file is a few kB; refuse anything that is clearly not one. */
#define CB_CONFIG_MAX_FILE (1u << 20)

/* Limits that no Chatterbox-like model comes near but that keep every product of two sizes far
 * from overflowing and catch typos such as an extra zero run. */
#define SIZE_MAX_  (1 << 20)  /* widths, vocabularies, lengths */
#define DEPTH_MAX  4096       /* layers, heads, blocks */

typedef enum {
  K_INT,        /* JSON integer -> int */
  K_REAL,       /* JSON number -> double */
  K_BOOL,       /* JSON boolean -> gboolean */
  K_CHOICE,     /* JSON string, one of `choices` ("a|b"); index stored if off >= 0 */
  K_LIST,       /* JSON array of integers -> CbIntList */
  K_LIST_LIST,  /* JSON array of arrays of integers -> CbIntListList */
  K_OBJECT,     /* nested group "<group>.<key>"; null stores 0 into the int at off if off >= 0 */
  K_IGNORED,    /* accepted (any value) and ignored: training-only or backend-selection options */
} KeyType;

typedef struct {
  const char *group;
  const char *key;
  KeyType     type;
  gssize      off;      /* offset in CbConfig, -1 when nothing is stored */
  double      min, max; /* inclusive; for lists, per element */
  const char *choices;
} ConfigKey;

#define F(field) ((gssize) offsetof (CbConfig, field))
#define INT(g, k, field, lo, hi) { g, k, K_INT, F (field), lo, hi, NULL }
#define SIZE(g, k, field) INT (g, k, field, 1, SIZE_MAX_)
#define DEPTH(g, k, field) INT (g, k, field, 1, DEPTH_MAX)
#define REAL(g, k, field, lo, hi) { g, k, K_REAL, F (field), lo, hi, NULL }
#define EPS(g, k, field) REAL (g, k, field, 1e-30, 0.1)
#define BOOL(g, k, field) { g, k, K_BOOL, F (field), 0, 0, NULL }
#define FIXED(g, k, value) { g, k, K_CHOICE, -1, 0, 0, value }
#define CHOICE(g, k, field, choices) { g, k, K_CHOICE, F (field), 0, 0, choices }
#define LIST(g, k, field, lo, hi) { g, k, K_LIST, F (field), lo, hi, NULL }
#define LIST2(g, k, field, lo, hi) { g, k, K_LIST_LIST, F (field), lo, hi, NULL }
#define OBJECT(g, k, off) { g, k, K_OBJECT, off, 0, 0, NULL }
#define IGNORED(g, k) { g, k, K_IGNORED, -1, 0, 0, NULL }

static const ConfigKey config_keys[] = {
  SIZE ("t3", "text_tokens_dict_size", t3.text_tokens_dict_size),
  INT ("t3", "start_text_token", t3.start_text_token, 0, SIZE_MAX_),
  INT ("t3", "stop_text_token", t3.stop_text_token, 0, SIZE_MAX_),
  SIZE ("t3", "max_text_tokens", t3.max_text_tokens),
  SIZE ("t3", "speech_tokens_dict_size", t3.speech_tokens_dict_size),
  INT ("t3", "start_speech_token", t3.start_speech_token, 0, SIZE_MAX_),
  INT ("t3", "stop_speech_token", t3.stop_speech_token, 0, SIZE_MAX_),
  SIZE ("t3", "max_speech_tokens", t3.max_speech_tokens),
  SIZE ("t3", "speech_cond_prompt_len", t3.speech_cond_prompt_len),
  SIZE ("t3", "speaker_embed_size", t3.speaker_embed_size),
  BOOL ("t3", "use_perceiver_resampler", t3.use_perceiver_resampler),
  BOOL ("t3", "emotion_adv", t3.emotion_adv),
  FIXED ("t3", "llama_config_name", "Llama_520M"),
  FIXED ("t3", "input_pos_emb", "learned"),
  FIXED ("t3", "encoder_type", "voice_encoder"),

  SIZE ("llama", "hidden_size", llama.hidden_size),
  DEPTH ("llama", "num_hidden_layers", llama.num_hidden_layers),
  DEPTH ("llama", "num_attention_heads", llama.num_attention_heads),
  DEPTH ("llama", "num_key_value_heads", llama.num_key_value_heads),
  SIZE ("llama", "head_dim", llama.head_dim),
  SIZE ("llama", "intermediate_size", llama.intermediate_size),
  INT ("llama", "max_position_embeddings", llama.max_position_embeddings, 1, G_MAXINT32),
  SIZE ("llama", "vocab_size", llama.vocab_size),
  EPS ("llama", "rms_norm_eps", llama.rms_norm_eps),
  REAL ("llama", "rope_theta", llama.rope_theta, 1.0, 1e12),
  BOOL ("llama", "attention_bias", llama.attention_bias),
  BOOL ("llama", "mlp_bias", llama.mlp_bias),
  FIXED ("llama", "hidden_act", "silu"),
  FIXED ("llama", "model_type", "llama"),
  OBJECT ("llama", "rope_scaling", F (llama.rope_type)),
  CHOICE ("llama.rope_scaling", "rope_type", llama.rope_type, "default|llama3"),
  REAL ("llama.rope_scaling", "factor", llama.rope_factor, 1.0, 1e6),
  REAL ("llama.rope_scaling", "low_freq_factor", llama.rope_low_freq_factor, 1e-6, 1e6),
  REAL ("llama.rope_scaling", "high_freq_factor", llama.rope_high_freq_factor, 1e-6, 1e6),
  INT ("llama.rope_scaling", "original_max_position_embeddings",
       llama.rope_original_max_position_embeddings, 1, G_MAXINT32),
  IGNORED ("llama", "attn_implementation"),
  IGNORED ("llama", "attention_dropout"),
  IGNORED ("llama", "initializer_range"),
  IGNORED ("llama", "pretraining_tp"),
  IGNORED ("llama", "tie_word_embeddings"),
  IGNORED ("llama", "torch_dtype"),
  IGNORED ("llama", "use_cache"),

  DEPTH ("perceiver", "pre_attention_query_token", perceiver.pre_attention_query_token),
  SIZE ("perceiver", "pre_attention_query_size", perceiver.pre_attention_query_size),
  SIZE ("perceiver", "embedding_dim", perceiver.embedding_dim),
  DEPTH ("perceiver", "num_attn_heads", perceiver.num_attn_heads),
  EPS ("perceiver", "layer_norm_eps", perceiver.layer_norm_eps),

  LIST2 ("t3_guard", "llama_aligned_heads", t3_guard.llama_aligned_heads, 0, DEPTH_MAX),
  INT ("t3_guard", "discontinuity_back", t3_guard.discontinuity_back, 1, SIZE_MAX_),
  INT ("t3_guard", "discontinuity_forward", t3_guard.discontinuity_forward, 1, SIZE_MAX_),
  INT ("t3_guard", "false_start_head_cols", t3_guard.false_start_head_cols, 1, SIZE_MAX_),
  REAL ("t3_guard", "false_start_head_min", t3_guard.false_start_head_min, 0.0, 1.0),
  INT ("t3_guard", "false_start_tail_cols", t3_guard.false_start_tail_cols, 1, SIZE_MAX_),
  REAL ("t3_guard", "false_start_tail_max", t3_guard.false_start_tail_max, 0.0, 1.0),
  INT ("t3_guard", "complete_margin", t3_guard.complete_margin, 0, SIZE_MAX_),
  INT ("t3_guard", "long_tail_cols", t3_guard.long_tail_cols, 1, SIZE_MAX_),
  REAL ("t3_guard", "long_tail_frames", t3_guard.long_tail_frames, 0.0, 1e9),
  INT ("t3_guard", "repetition_skip_cols", t3_guard.repetition_skip_cols, 0, SIZE_MAX_),
  REAL ("t3_guard", "repetition_frames", t3_guard.repetition_frames, 0.0, 1e9),
  INT ("t3_guard", "suppress_min_text", t3_guard.suppress_min_text, 0, SIZE_MAX_),
  INT ("t3_guard", "suppress_margin", t3_guard.suppress_margin, 0, SIZE_MAX_),
  REAL ("t3_guard", "force_value", t3_guard.force_value, 1.0, 65504.0),
  BOOL ("t3_guard", "token_repetition", t3_guard.token_repetition),

  SIZE ("ve", "num_mels", ve.num_mels),
  INT ("ve", "sample_rate", ve.sample_rate, 1000, 384000),
  SIZE ("ve", "speaker_embed_size", ve.speaker_embed_size),
  SIZE ("ve", "ve_hidden_size", ve.ve_hidden_size),
  DEPTH ("ve", "num_layers", ve.num_layers),
  INT ("ve", "n_fft", ve.n_fft, 2, 65536),
  INT ("ve", "hop_size", ve.hop_size, 1, 65536),
  INT ("ve", "win_size", ve.win_size, 2, 65536),
  INT ("ve", "fmin", ve.fmin, 0, 192000),
  INT ("ve", "fmax", ve.fmax, 1, 192000),
  REAL ("ve", "mel_power", ve.mel_power, 0.5, 4.0),
  SIZE ("ve", "ve_partial_frames", ve.ve_partial_frames),
  REAL ("ve", "rate", ve.rate, 1e-3, 1e3),
  REAL ("ve", "min_coverage", ve.min_coverage, 1e-6, 1.0),
  BOOL ("ve", "ve_final_relu", ve.ve_final_relu),
  FIXED ("ve", "mel_type", "amp"),
  IGNORED ("ve", "flatten_lstm_params"),
  IGNORED ("ve", "normalized_mels"),
  IGNORED ("ve", "preemphasis"),
  IGNORED ("ve", "stft_magnitude_min"),

  SIZE ("s3tokenizer", "n_mels", s3tokenizer.n_mels),
  SIZE ("s3tokenizer", "n_audio_ctx", s3tokenizer.n_audio_ctx),
  SIZE ("s3tokenizer", "n_audio_state", s3tokenizer.n_audio_state),
  DEPTH ("s3tokenizer", "n_audio_head", s3tokenizer.n_audio_head),
  DEPTH ("s3tokenizer", "n_audio_layer", s3tokenizer.n_audio_layer),
  SIZE ("s3tokenizer", "n_codebook_size", s3tokenizer.n_codebook_size),
  INT ("s3tokenizer", "fsmn_kernel_size", s3tokenizer.fsmn_kernel_size, 1, 1023),
  INT ("s3tokenizer", "sample_rate", s3tokenizer.sample_rate, 1000, 384000),
  INT ("s3tokenizer", "n_fft", s3tokenizer.n_fft, 2, 65536),
  INT ("s3tokenizer", "hop_length", s3tokenizer.hop_length, 1, 65536),
  EPS ("s3tokenizer", "attn_ln_eps", s3tokenizer.attn_ln_eps),
  EPS ("s3tokenizer", "mlp_ln_eps", s3tokenizer.mlp_ln_eps),

  SIZE ("campplus", "feat_dim", campplus.feat_dim),
  SIZE ("campplus", "embedding_size", campplus.embedding_size),
  SIZE ("campplus", "growth_rate", campplus.growth_rate),
  DEPTH ("campplus", "bn_size", campplus.bn_size),
  SIZE ("campplus", "init_channels", campplus.init_channels),
  SIZE ("campplus", "m_channels", campplus.m_channels),
  SIZE ("campplus", "seg_len", campplus.seg_len),
  LIST ("campplus", "block_num_layers", campplus.block_num_layers, 1, DEPTH_MAX),
  LIST ("campplus", "block_kernel_sizes", campplus.block_kernel_sizes, 1, 1023),
  LIST ("campplus", "block_dilations", campplus.block_dilations, 1, 1023),
  EPS ("campplus", "batch_norm_eps", campplus.batch_norm_eps),
  FIXED ("campplus", "config_str", "batchnorm-relu"),
  FIXED ("campplus", "output_level", "segment"),
  IGNORED ("campplus", "memory_efficient"),

  SIZE ("s3gen_flow", "input_size", flow.input_size),
  SIZE ("s3gen_flow", "output_size", flow.output_size),
  SIZE ("s3gen_flow", "spk_embed_dim", flow.spk_embed_dim),
  SIZE ("s3gen_flow", "vocab_size", flow.vocab_size),
  INT ("s3gen_flow", "input_frame_rate", flow.input_frame_rate, 1, 1000),
  INT ("s3gen_flow", "token_mel_ratio", flow.token_mel_ratio, 1, 64),
  INT ("s3gen_flow", "pre_lookahead_len", flow.pre_lookahead_len, 0, 1024),
  FIXED ("s3gen_flow", "output_type", "mel"),
  IGNORED ("s3gen_flow", "only_mask_loss"),

  SIZE ("s3gen_flow_encoder", "input_size", flow_encoder.input_size),
  SIZE ("s3gen_flow_encoder", "output_size", flow_encoder.output_size),
  DEPTH ("s3gen_flow_encoder", "attention_heads", flow_encoder.attention_heads),
  SIZE ("s3gen_flow_encoder", "linear_units", flow_encoder.linear_units),
  DEPTH ("s3gen_flow_encoder", "num_blocks", flow_encoder.num_blocks),
  DEPTH ("s3gen_flow_encoder", "num_up_blocks", flow_encoder.num_up_blocks),
  INT ("s3gen_flow_encoder", "upsample_stride", flow_encoder.upsample_stride, 1, 64),
  INT ("s3gen_flow_encoder", "pre_lookahead_len", flow_encoder.pre_lookahead_len, 0, 1024),
  BOOL ("s3gen_flow_encoder", "key_bias", flow_encoder.key_bias),
  EPS ("s3gen_flow_encoder", "layer_norm_eps", flow_encoder.layer_norm_eps),
  EPS ("s3gen_flow_encoder", "embed_norm_eps", flow_encoder.embed_norm_eps),
  FIXED ("s3gen_flow_encoder", "input_layer", "linear"),
  FIXED ("s3gen_flow_encoder", "pos_enc_layer_type", "rel_pos_espnet"),
  FIXED ("s3gen_flow_encoder", "selfattention_layer_type", "rel_selfattn"),
  FIXED ("s3gen_flow_encoder", "activation_type", "swish"),
  IGNORED ("s3gen_flow_encoder", "dropout_rate"),
  IGNORED ("s3gen_flow_encoder", "positional_dropout_rate"),
  IGNORED ("s3gen_flow_encoder", "attention_dropout_rate"),
  IGNORED ("s3gen_flow_encoder", "normalize_before"),
  IGNORED ("s3gen_flow_encoder", "use_cnn_module"),
  IGNORED ("s3gen_flow_encoder", "macaron_style"),

  SIZE ("s3gen_flow_decoder", "in_channels", flow_decoder.in_channels),
  SIZE ("s3gen_flow_decoder", "out_channels", flow_decoder.out_channels),
  LIST ("s3gen_flow_decoder", "channels", flow_decoder.channels, 1, SIZE_MAX_),
  DEPTH ("s3gen_flow_decoder", "n_blocks", flow_decoder.n_blocks),
  INT ("s3gen_flow_decoder", "num_mid_blocks", flow_decoder.num_mid_blocks, 0, DEPTH_MAX),
  DEPTH ("s3gen_flow_decoder", "num_heads", flow_decoder.num_heads),
  SIZE ("s3gen_flow_decoder", "attention_head_dim", flow_decoder.attention_head_dim),
  INT ("s3gen_flow_decoder", "ff_mult", flow_decoder.ff_mult, 1, 64),
  BOOL ("s3gen_flow_decoder", "meanflow", flow_decoder.meanflow),
  EPS ("s3gen_flow_decoder", "layer_norm_eps", flow_decoder.layer_norm_eps),
  FIXED ("s3gen_flow_decoder", "act_fn", "gelu"),
  IGNORED ("s3gen_flow_decoder", "causal"),
  IGNORED ("s3gen_flow_decoder", "dropout"),

  DEPTH ("s3gen_cfm", "n_timesteps", cfm.n_timesteps),
  REAL ("s3gen_cfm", "inference_cfg_rate", cfm.inference_cfg_rate, 0.0, 100.0),
  REAL ("s3gen_cfm", "temperature", cfm.temperature, 0.0, 100.0),
  SIZE ("s3gen_cfm", "spk_emb_dim", cfm.spk_emb_dim),
  FIXED ("s3gen_cfm", "solver", "euler"),
  FIXED ("s3gen_cfm", "t_scheduler", "cosine"),
  IGNORED ("s3gen_cfm", "sigma_min"),
  IGNORED ("s3gen_cfm", "training_cfg_rate"),
  IGNORED ("s3gen_cfm", "reg_loss_type"),

  SIZE ("s3gen_hift", "in_channels", hift.in_channels),
  SIZE ("s3gen_hift", "base_channels", hift.base_channels),
  INT ("s3gen_hift", "nb_harmonics", hift.nb_harmonics, 0, 1024),
  INT ("s3gen_hift", "sampling_rate", hift.sampling_rate, 1000, 384000),
  REAL ("s3gen_hift", "nsf_alpha", hift.nsf_alpha, 0.0, 100.0),
  REAL ("s3gen_hift", "nsf_sigma", hift.nsf_sigma, 0.0, 100.0),
  REAL ("s3gen_hift", "nsf_voiced_threshold", hift.nsf_voiced_threshold, 0.0, 1e5),
  LIST ("s3gen_hift", "upsample_rates", hift.upsample_rates, 1, 64),
  LIST ("s3gen_hift", "upsample_kernel_sizes", hift.upsample_kernel_sizes, 1, 1023),
  OBJECT ("s3gen_hift", "istft_params", -1),
  INT ("s3gen_hift.istft_params", "n_fft", hift.istft_n_fft, 2, 65536),
  INT ("s3gen_hift.istft_params", "hop_len", hift.istft_hop_len, 1, 65536),
  LIST ("s3gen_hift", "resblock_kernel_sizes", hift.resblock_kernel_sizes, 1, 1023),
  LIST2 ("s3gen_hift", "resblock_dilation_sizes", hift.resblock_dilation_sizes, 1, 1023),
  LIST ("s3gen_hift", "source_resblock_kernel_sizes", hift.source_resblock_kernel_sizes, 1, 1023),
  LIST2 ("s3gen_hift", "source_resblock_dilation_sizes", hift.source_resblock_dilation_sizes, 1,
         1023),
  REAL ("s3gen_hift", "lrelu_slope", hift.lrelu_slope, 0.0, 1.0),
  REAL ("s3gen_hift", "audio_limit", hift.audio_limit, 1e-6, 1.0),

  INT ("s3gen_f0_predictor", "num_class", f0_predictor.num_class, 1, 1),
  SIZE ("s3gen_f0_predictor", "in_channels", f0_predictor.in_channels),
  SIZE ("s3gen_f0_predictor", "cond_channels", f0_predictor.cond_channels),
  DEPTH ("s3gen_f0_predictor", "num_layers", f0_predictor.num_layers),
};

/* ---- defaults ---- */

static void
set_list (CbIntList *l, int n, const int *v)
{
  l->n = n;
  memcpy (l->v, v, (gsize) n * sizeof (int));
}

void
cb_config_init_default (CbConfig *c)
{
  static const int dil[] = { 1, 3, 5 };
  memset (c, 0, sizeof *c);

  c->t3 = (CbT3Config) {
    .text_tokens_dict_size = 704, .start_text_token = 255, .stop_text_token = 0,
    .max_text_tokens = 2048, .speech_tokens_dict_size = 8194, .start_speech_token = 6561,
    .stop_speech_token = 6562, .max_speech_tokens = 4096, .speech_cond_prompt_len = 150,
    .speaker_embed_size = 256, .use_perceiver_resampler = TRUE, .emotion_adv = TRUE,
  };
  c->llama = (CbLlamaConfig) {
    .hidden_size = 1024, .num_hidden_layers = 30, .num_attention_heads = 16,
    .num_key_value_heads = 16, .head_dim = 64, .intermediate_size = 4096,
    .max_position_embeddings = 131072, .vocab_size = 8, .rms_norm_eps = 1e-5,
    .rope_theta = 500000.0, .attention_bias = FALSE, .mlp_bias = FALSE,
    .rope_type = CB_ROPE_LLAMA3, .rope_factor = 8.0, .rope_low_freq_factor = 1.0,
    .rope_high_freq_factor = 4.0, .rope_original_max_position_embeddings = 8192,
  };
  c->perceiver = (CbPerceiverConfig) {
    .pre_attention_query_token = 32, .pre_attention_query_size = 1024, .embedding_dim = 1024,
    .num_attn_heads = 4, .layer_norm_eps = 1e-5,
  };
  c->t3_guard = (CbT3GuardSettings) {
    .discontinuity_back = 4, .discontinuity_forward = 7, .false_start_head_cols = 4,
    .false_start_head_min = 0.5, .false_start_tail_cols = 2, .false_start_tail_max = 0.1,
    .complete_margin = 3, .long_tail_cols = 3, .long_tail_frames = 5.0,
    .repetition_skip_cols = 5, .repetition_frames = 5.0, .suppress_min_text = 5,
    .suppress_margin = 3, .force_value = 32768.0, .token_repetition = TRUE,
  };
  c->t3_guard.llama_aligned_heads.n = 3;
  set_list (&c->t3_guard.llama_aligned_heads.v[0], 2, (const int[]) { 12, 15 });
  set_list (&c->t3_guard.llama_aligned_heads.v[1], 2, (const int[]) { 13, 11 });
  set_list (&c->t3_guard.llama_aligned_heads.v[2], 2, (const int[]) { 9, 2 });
  c->ve = (CbVoiceEncoderConfig) {
    .num_mels = 40, .sample_rate = 16000, .speaker_embed_size = 256, .ve_hidden_size = 256,
    .num_layers = 3, .n_fft = 400, .hop_size = 160, .win_size = 400, .fmin = 0, .fmax = 8000,
    .mel_power = 2.0, .ve_partial_frames = 160, .rate = 1.3, .min_coverage = 0.8,
    .ve_final_relu = TRUE,
  };
  c->s3tokenizer = (CbS3TokenizerConfig) {
    .n_mels = 128, .n_audio_ctx = 1500, .n_audio_state = 1280, .n_audio_head = 20,
    .n_audio_layer = 6, .n_codebook_size = 6561, .fsmn_kernel_size = 31, .sample_rate = 16000,
    .n_fft = 400, .hop_length = 160, .attn_ln_eps = 1e-6, .mlp_ln_eps = 1e-5,
  };
  c->campplus = (CbCampPlusConfig) {
    .feat_dim = 80, .embedding_size = 192, .growth_rate = 32, .bn_size = 4,
    .init_channels = 128, .m_channels = 32, .seg_len = 100, .batch_norm_eps = 1e-5,
  };
  set_list (&c->campplus.block_num_layers, 3, (const int[]) { 12, 24, 16 });
  set_list (&c->campplus.block_kernel_sizes, 3, (const int[]) { 3, 3, 3 });
  set_list (&c->campplus.block_dilations, 3, (const int[]) { 1, 2, 2 });

  c->flow = (CbFlowConfig) {
    .input_size = 512, .output_size = 80, .spk_embed_dim = 192, .vocab_size = 6561,
    .input_frame_rate = 25, .token_mel_ratio = 2, .pre_lookahead_len = 3,
  };
  c->flow_encoder = (CbFlowEncoderConfig) {
    .input_size = 512, .output_size = 512, .attention_heads = 8, .linear_units = 2048,
    .num_blocks = 6, .num_up_blocks = 4, .upsample_stride = 2, .pre_lookahead_len = 3,
    .key_bias = TRUE, .layer_norm_eps = 1e-12, .embed_norm_eps = 1e-5,
  };
  c->flow_decoder = (CbFlowDecoderConfig) {
    .in_channels = 320, .out_channels = 80, .n_blocks = 4, .num_mid_blocks = 12,
    .num_heads = 8, .attention_head_dim = 64, .ff_mult = 4, .meanflow = FALSE,
    .layer_norm_eps = 1e-5,
  };
  set_list (&c->flow_decoder.channels, 1, (const int[]) { 256 });
  c->cfm = (CbCfmConfig) {
    .n_timesteps = 10, .inference_cfg_rate = 0.7, .temperature = 1.0, .spk_emb_dim = 80,
  };

  c->hift = (CbHiftConfig) {
    .in_channels = 80, .base_channels = 512, .nb_harmonics = 8, .sampling_rate = 24000,
    .nsf_alpha = 0.1, .nsf_sigma = 0.003, .nsf_voiced_threshold = 10.0, .istft_n_fft = 16,
    .istft_hop_len = 4, .lrelu_slope = 0.1, .audio_limit = 0.99,
  };
  set_list (&c->hift.upsample_rates, 3, (const int[]) { 8, 5, 3 });
  set_list (&c->hift.upsample_kernel_sizes, 3, (const int[]) { 16, 11, 7 });
  set_list (&c->hift.resblock_kernel_sizes, 3, (const int[]) { 3, 7, 11 });
  set_list (&c->hift.source_resblock_kernel_sizes, 3, (const int[]) { 7, 7, 11 });
  c->hift.resblock_dilation_sizes.n = 3;
  c->hift.source_resblock_dilation_sizes.n = 3;
  for (int i = 0; i < 3; i++) {
    set_list (&c->hift.resblock_dilation_sizes.v[i], 3, dil);
    set_list (&c->hift.source_resblock_dilation_sizes.v[i], 3, dil);
  }
  c->f0_predictor = (CbF0PredictorConfig) {
    .num_class = 1, .in_channels = 80, .cond_channels = 512, .num_layers = 5,
  };
}

/* ---- validation ---- */

#define AT(c, off, type) ((type *) ((guint8 *) (c) + (off)))

static gboolean
check_range (const ConfigKey *k, double v, const char *what, GError **error)
{
  if (!(v >= k->min && v <= k->max)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s.%s: %s%.15g is outside [%.15g, %.15g]",
                 k->group, k->key, what, v, k->min, k->max);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_list (const ConfigKey *k, const CbIntList *l, GError **error)
{
  if (l->n < 1 || l->n > CB_CONFIG_MAX_LIST) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s.%s: list of %d entries, expected 1 to %d",
                 k->group, k->key, l->n, CB_CONFIG_MAX_LIST);
    return FALSE;
  }
  for (int i = 0; i < l->n; i++)
    if (!check_range (k, l->v[i], "element ", error))
      return FALSE;
  return TRUE;
}

/* Per-key ranges, read back from the struct so defaults and loaded values get the same checks. */
static gboolean
validate_keys (const CbConfig *c, GError **error)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const ConfigKey *k = &config_keys[i];
    gboolean ok = TRUE;
    switch (k->type) {
    case K_INT:
      ok = check_range (k, *AT (c, k->off, const int), "", error);
      break;
    case K_REAL:
      ok = check_range (k, *AT (c, k->off, const double), "", error);
      break;
    case K_LIST:
      ok = check_list (k, AT (c, k->off, const CbIntList), error);
      break;
    case K_LIST_LIST: {
      const CbIntListList *ll = AT (c, k->off, const CbIntListList);
      if (ll->n < 1 || ll->n > CB_CONFIG_MAX_LIST) {
        g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                     "%s.%s: list of %d lists, expected 1 to %d", k->group, k->key, ll->n,
                     CB_CONFIG_MAX_LIST);
        ok = FALSE;
      }
      for (int j = 0; ok && j < ll->n; j++)
        ok = check_list (k, &ll->v[j], error);
      break;
    }
    default:
      break;
    }
    if (!ok)
      return FALSE;
  }
  return TRUE;
}

/* Cross-module consistency. Each failure names both keys and their values. */
#define REQUIRE(cond, code, ...)                                   \
  do {                                                             \
    if (!(cond)) {                                                 \
      g_set_error (error, CB_ERROR, code, __VA_ARGS__);            \
      return FALSE;                                                \
    }                                                              \
  } while (0)

#define REQUIRE_EQ(a, b, ga, ka, gb, kb)                                                       \
  REQUIRE ((a) == (b), CB_ERROR_FORMAT, "%s.%s (%d) must equal %s.%s (%d)", ga, ka, (int) (a), \
           gb, kb, (int) (b))

#define REQUIRE_DIVISIBLE(a, b, ga, ka, gb, kb)                                          \
  REQUIRE ((a) % (b) == 0, CB_ERROR_FORMAT, "%s.%s (%d) is not divisible by %s.%s (%d)", \
           ga, ka, (int) (a), gb, kb, (int) (b))

static gboolean
validate_t3 (const CbConfig *c, GError **error)
{
  const CbT3Config *t = &c->t3;
  const CbLlamaConfig *l = &c->llama;
  const CbPerceiverConfig *p = &c->perceiver;

  REQUIRE (t->start_text_token < t->text_tokens_dict_size
             && t->stop_text_token < t->text_tokens_dict_size,
           CB_ERROR_FORMAT, "t3.start_text_token (%d) and t3.stop_text_token (%d) must be below "
           "t3.text_tokens_dict_size (%d)", t->start_text_token, t->stop_text_token,
           t->text_tokens_dict_size);
  REQUIRE (t->start_speech_token < t->speech_tokens_dict_size
             && t->stop_speech_token < t->speech_tokens_dict_size,
           CB_ERROR_FORMAT, "t3.start_speech_token (%d) and t3.stop_speech_token (%d) must be "
           "below t3.speech_tokens_dict_size (%d)", t->start_speech_token, t->stop_speech_token,
           t->speech_tokens_dict_size);
  REQUIRE (t->speech_cond_prompt_len <= cb_config_speech_pos_len (c), CB_ERROR_FORMAT,
           "t3.speech_cond_prompt_len (%d) exceeds the speech position table (%d rows)",
           t->speech_cond_prompt_len, cb_config_speech_pos_len (c));
  REQUIRE_EQ (t->speaker_embed_size, c->ve.speaker_embed_size, "t3", "speaker_embed_size", "ve",
              "speaker_embed_size");

  REQUIRE_DIVISIBLE (l->hidden_size, l->num_attention_heads, "llama", "hidden_size", "llama",
                     "num_attention_heads");
  REQUIRE_DIVISIBLE (l->num_attention_heads, l->num_key_value_heads, "llama",
                     "num_attention_heads", "llama", "num_key_value_heads");
  REQUIRE (l->head_dim * l->num_attention_heads == l->hidden_size, CB_ERROR_UNSUPPORTED,
           "llama.head_dim (%d) x llama.num_attention_heads (%d) differs from llama.hidden_size "
           "(%d); projections of another width are not implemented", l->head_dim,
           l->num_attention_heads, l->hidden_size);
  REQUIRE (l->head_dim % 2 == 0, CB_ERROR_FORMAT,
           "llama.head_dim (%d) must be even for rotary embeddings", l->head_dim);
  REQUIRE (l->rope_type != CB_ROPE_LLAMA3 || l->rope_low_freq_factor < l->rope_high_freq_factor,
           CB_ERROR_FORMAT, "llama.rope_scaling.low_freq_factor (%g) must be below "
           "high_freq_factor (%g)", l->rope_low_freq_factor, l->rope_high_freq_factor);

  REQUIRE_EQ (p->embedding_dim, l->hidden_size, "perceiver", "embedding_dim", "llama",
              "hidden_size");
  REQUIRE_EQ (p->pre_attention_query_size, p->embedding_dim, "perceiver",
              "pre_attention_query_size", "perceiver", "embedding_dim");
  REQUIRE_DIVISIBLE (p->embedding_dim, p->num_attn_heads, "perceiver", "embedding_dim",
                     "perceiver", "num_attn_heads");

  /* the guard's heads must exist in this backbone (a small test model names its own) */
  const CbIntListList *gh = &c->t3_guard.llama_aligned_heads;
  for (int i = 0; i < gh->n; i++) {
    REQUIRE (gh->v[i].n == 2, CB_ERROR_FORMAT, "t3_guard.llama_aligned_heads[%d]: expected a "
             "[layer, head] pair, got %d values", i, gh->v[i].n);
    REQUIRE (gh->v[i].v[0] < l->num_hidden_layers && gh->v[i].v[1] < l->num_attention_heads,
             CB_ERROR_FORMAT, "t3_guard.llama_aligned_heads[%d] = [%d, %d]: no such head in "
             "llama.num_hidden_layers (%d) x llama.num_attention_heads (%d)", i, gh->v[i].v[0],
             gh->v[i].v[1], l->num_hidden_layers, l->num_attention_heads);
  }
  return TRUE;
}

static gboolean
validate_voice (const CbConfig *c, GError **error)
{
  const CbVoiceEncoderConfig *v = &c->ve;
  const CbS3TokenizerConfig *s = &c->s3tokenizer;
  const CbCampPlusConfig *cp = &c->campplus;

  REQUIRE (v->win_size <= v->n_fft, CB_ERROR_FORMAT, "ve.win_size (%d) exceeds ve.n_fft (%d)",
           v->win_size, v->n_fft);
  REQUIRE (v->fmin < v->fmax && 2 * v->fmax <= v->sample_rate, CB_ERROR_FORMAT,
           "ve.fmin (%d) and ve.fmax (%d) must satisfy fmin < fmax <= sample_rate / 2 (%d)",
           v->fmin, v->fmax, v->sample_rate / 2);

  REQUIRE_DIVISIBLE (s->n_audio_state, s->n_audio_head, "s3tokenizer", "n_audio_state",
                     "s3tokenizer", "n_audio_head");
  REQUIRE ((s->n_audio_state / s->n_audio_head) % 2 == 0, CB_ERROR_FORMAT,
           "s3tokenizer head width %d must be even for rotary embeddings",
           s->n_audio_state / s->n_audio_head);
  REQUIRE (s->fsmn_kernel_size % 2 == 1, CB_ERROR_FORMAT,
           "s3tokenizer.fsmn_kernel_size (%d) must be odd", s->fsmn_kernel_size);
  REQUIRE_EQ (s->n_codebook_size, c->flow.vocab_size, "s3tokenizer", "n_codebook_size",
              "s3gen_flow", "vocab_size");

  REQUIRE (cp->block_num_layers.n == cp->block_kernel_sizes.n
             && cp->block_num_layers.n == cp->block_dilations.n,
           CB_ERROR_FORMAT, "campplus.block_num_layers, block_kernel_sizes and block_dilations "
           "must have the same length (%d, %d, %d)", cp->block_num_layers.n,
           cp->block_kernel_sizes.n, cp->block_dilations.n);
  REQUIRE (cp->feat_dim % 8 == 0, CB_ERROR_FORMAT,
           "campplus.feat_dim (%d) must be divisible by 8 (the FCM head halves it three times)",
           cp->feat_dim);
  REQUIRE_EQ (cp->embedding_size, c->flow.spk_embed_dim, "campplus", "embedding_size",
              "s3gen_flow", "spk_embed_dim");
  return TRUE;
}

static gboolean
validate_s3gen (const CbConfig *c, GError **error)
{
  const CbFlowConfig *f = &c->flow;
  const CbFlowEncoderConfig *e = &c->flow_encoder;
  const CbFlowDecoderConfig *d = &c->flow_decoder;
  const CbHiftConfig *h = &c->hift;

  REQUIRE_EQ (e->input_size, f->input_size, "s3gen_flow_encoder", "input_size", "s3gen_flow",
              "input_size");
  REQUIRE_EQ (e->pre_lookahead_len, f->pre_lookahead_len, "s3gen_flow_encoder",
              "pre_lookahead_len", "s3gen_flow", "pre_lookahead_len");
  REQUIRE_DIVISIBLE (e->output_size, e->attention_heads, "s3gen_flow_encoder", "output_size",
                     "s3gen_flow_encoder", "attention_heads");
  REQUIRE (e->output_size % 2 == 0, CB_ERROR_FORMAT,
           "s3gen_flow_encoder.output_size (%d) must be even (sinusoidal positions)",
           e->output_size);
  REQUIRE_EQ (e->upsample_stride, f->token_mel_ratio, "s3gen_flow_encoder", "upsample_stride",
              "s3gen_flow", "token_mel_ratio");

  /* The estimator's input packs x, mu, speaker and prompt condition, each output_size wide. */
  REQUIRE_EQ (d->out_channels, f->output_size, "s3gen_flow_decoder", "out_channels",
              "s3gen_flow", "output_size");
  REQUIRE_EQ (d->in_channels, 4 * f->output_size, "s3gen_flow_decoder", "in_channels",
              "4 x s3gen_flow", "output_size");
  REQUIRE_EQ (c->cfm.spk_emb_dim, f->output_size, "s3gen_cfm", "spk_emb_dim", "s3gen_flow",
              "output_size");
  REQUIRE (d->channels.n == 1, CB_ERROR_UNSUPPORTED,
           "s3gen_flow_decoder.channels has %d levels; only the single-level U-Net of upstream "
           "is implemented", d->channels.n);

  int n_up = h->upsample_rates.n;
  REQUIRE (h->upsample_kernel_sizes.n == n_up && h->source_resblock_kernel_sizes.n == n_up
             && h->source_resblock_dilation_sizes.n == n_up,
           CB_ERROR_FORMAT, "s3gen_hift.upsample_rates (%d entries), upsample_kernel_sizes (%d), "
           "source_resblock_kernel_sizes (%d) and source_resblock_dilation_sizes (%d) must have "
           "the same length", n_up, h->upsample_kernel_sizes.n,
           h->source_resblock_kernel_sizes.n, h->source_resblock_dilation_sizes.n);
  REQUIRE (h->resblock_kernel_sizes.n == h->resblock_dilation_sizes.n, CB_ERROR_FORMAT,
           "s3gen_hift.resblock_kernel_sizes (%d entries) and resblock_dilation_sizes (%d) must "
           "have the same length", h->resblock_kernel_sizes.n, h->resblock_dilation_sizes.n);
  guint64 hop = (guint64) h->istft_hop_len;
  for (int i = 0; i < n_up; i++) {
    int u = h->upsample_rates.v[i], k = h->upsample_kernel_sizes.v[i];
    REQUIRE (k >= u && (k - u) % 2 == 0, CB_ERROR_FORMAT,
             "s3gen_hift.upsample_kernel_sizes[%d] (%d) must be at least upsample_rates[%d] (%d) "
             "and differ from it by an even number", i, k, i, u);
    hop *= (guint64) u; /* rates <= 64, at most 8 of them: fits */
  }
  for (int i = 0; i < h->resblock_kernel_sizes.n; i++)
    REQUIRE (h->resblock_kernel_sizes.v[i] % 2 == 1, CB_ERROR_FORMAT,
             "s3gen_hift.resblock_kernel_sizes[%d] (%d) must be odd", i,
             h->resblock_kernel_sizes.v[i]);
  REQUIRE (h->base_channels % (1 << n_up) == 0, CB_ERROR_FORMAT,
           "s3gen_hift.base_channels (%d) must halve %d times", h->base_channels, n_up);
  REQUIRE (h->istft_n_fft % 2 == 0 && h->istft_hop_len <= h->istft_n_fft, CB_ERROR_FORMAT,
           "s3gen_hift.istft_params: n_fft (%d) must be even and at least hop_len (%d)",
           h->istft_n_fft, h->istft_hop_len);
  /* One mel frame must become exactly sampling_rate / mel-frame-rate samples. */
  guint64 mel_rate = (guint64) f->input_frame_rate * (guint64) f->token_mel_ratio;
  REQUIRE (hop * mel_rate == (guint64) h->sampling_rate, CB_ERROR_FORMAT,
           "s3gen_hift: upsample_rates x istft hop_len = %" G_GUINT64_FORMAT " samples per mel "
           "frame, but sampling_rate %d / mel frame rate %" G_GUINT64_FORMAT " needs %g", hop,
           h->sampling_rate, mel_rate, (double) h->sampling_rate / (double) mel_rate);
  REQUIRE_EQ (h->in_channels, f->output_size, "s3gen_hift", "in_channels", "s3gen_flow",
              "output_size");
  REQUIRE_EQ (c->f0_predictor.in_channels, h->in_channels, "s3gen_f0_predictor", "in_channels",
              "s3gen_hift", "in_channels");
  return TRUE;
}

gboolean
cb_config_validate (const CbConfig *c, GError **error)
{
  return validate_keys (c, error) && validate_t3 (c, error) && validate_voice (c, error)
         && validate_s3gen (c, error);
}

/* ---- loading ---- */

static const ConfigKey *
find_key (const char *group, const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (!strcmp (config_keys[i].group, group) && !strcmp (config_keys[i].key, key))
      return &config_keys[i];
  return NULL;
}

static gboolean
is_group (const char *group)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (!strcmp (config_keys[i].group, group))
      return TRUE;
  return FALSE;
}

static gboolean
type_error (const ConfigKey *k, const char *expected, JsonNode *n, GError **error)
{
  g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s.%s: expected %s, found %s", k->group, k->key,
               expected, cb_json_kind (n));
  return FALSE;
}

/* A JSON array of integers, each in the key's range, into a CbIntList. */
static gboolean
read_list (const ConfigKey *k, JsonNode *n, CbIntList *out, GError **error)
{
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return type_error (k, "an array of integers", n, error);
  JsonArray *a = json_node_get_array (n);
  guint len = json_array_get_length (a);
  if (len < 1 || len > CB_CONFIG_MAX_LIST) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s.%s: list of %u entries, expected 1 to %d",
                 k->group, k->key, len, CB_CONFIG_MAX_LIST);
    return FALSE;
  }
  for (guint i = 0; i < len; i++) {
    gint64 v;
    if (!cb_json_get_int (json_array_get_element (a, i), &v))
      return type_error (k, "an array of integers", json_array_get_element (a, i), error);
    if (!check_range (k, (double) v, "element ", error))
      return FALSE;
    out->v[i] = (int) v;
  }
  out->n = (int) len;
  return TRUE;
}

static gboolean apply_group (CbConfig *c, const char *group, JsonObject *o, GError **error);

static gboolean
apply_member (CbConfig *c, const char *group, const char *key, JsonNode *n, GError **error)
{
  const ConfigKey *k = find_key (group, key);
  if (!k) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "unknown key '%s' in group '%s'", key, group);
    return FALSE;
  }
  gint64 iv;
  switch (k->type) {
  case K_INT:
    if (!cb_json_get_int (n, &iv))
      return type_error (k, "an integer", n, error);
    /* Range-check before narrowing to int. */
    if (!check_range (k, (double) iv, "", error))
      return FALSE;
    *AT (c, k->off, int) = (int) iv;
    return TRUE;
  case K_REAL:
    if (!JSON_NODE_HOLDS_VALUE (n) || (json_node_get_value_type (n) != G_TYPE_DOUBLE
                                       && json_node_get_value_type (n) != G_TYPE_INT64))
      return type_error (k, "a number", n, error);
    *AT (c, k->off, double) = json_node_get_double (n);
    return TRUE;
  case K_BOOL:
    if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
      return type_error (k, "true or false", n, error);
    *AT (c, k->off, gboolean) = json_node_get_boolean (n);
    return TRUE;
  case K_CHOICE: {
    if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
      return type_error (k, "a string", n, error);
    const char *v = json_node_get_string (n);
    char **choices = g_strsplit (k->choices, "|", -1);
    int found = -1;
    for (int i = 0; choices[i] && found < 0; i++)
      if (!strcmp (choices[i], v))
        found = i;
    g_strfreev (choices);
    if (found < 0) {
      g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                   "%s.%s: \"%s\" is not supported (implemented: %s)", k->group, k->key, v,
                   k->choices);
      return FALSE;
    }
    if (k->off >= 0)
      *AT (c, k->off, int) = found;
    return TRUE;
  }
  case K_LIST:
    return read_list (k, n, AT (c, k->off, CbIntList), error);
  case K_LIST_LIST: {
    if (!JSON_NODE_HOLDS_ARRAY (n))
      return type_error (k, "an array of arrays of integers", n, error);
    JsonArray *a = json_node_get_array (n);
    guint len = json_array_get_length (a);
    CbIntListList *ll = AT (c, k->off, CbIntListList);
    if (len < 1 || len > CB_CONFIG_MAX_LIST) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s.%s: list of %u lists, expected 1 to %d", k->group, k->key, len,
                   CB_CONFIG_MAX_LIST);
      return FALSE;
    }
    for (guint i = 0; i < len; i++)
      if (!read_list (k, json_array_get_element (a, i), &ll->v[i], error))
        return FALSE;
    ll->n = (int) len;
    return TRUE;
  }
  case K_OBJECT: {
    if (JSON_NODE_HOLDS_NULL (n) && k->off >= 0) {
      *AT (c, k->off, int) = 0;
      return TRUE;
    }
    if (!JSON_NODE_HOLDS_OBJECT (n))
      return type_error (k, k->off >= 0 ? "an object or null" : "an object", n, error);
    char *sub = g_strdup_printf ("%s.%s", group, key);
    gboolean ok = apply_group (c, sub, json_node_get_object (n), error);
    g_free (sub);
    return ok;
  }
  case K_IGNORED:
    return TRUE;
  }
  return TRUE;
}

static gboolean
apply_group (CbConfig *c, const char *group, JsonObject *o, GError **error)
{
  GList *members = json_object_get_members (o);
  gboolean ok = TRUE;
  for (GList *l = members; l && ok; l = l->next)
    ok = apply_member (c, group, l->data, json_object_get_member (o, l->data), error);
  g_list_free (members);
  return ok;
}

static gboolean
apply_root (CbConfig *c, JsonNode *root, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "expected a JSON object, found %s",
                 cb_json_kind (root));
    return FALSE;
  }
  JsonObject *o = json_node_get_object (root);
  GList *members = json_object_get_members (o);
  gboolean ok = TRUE;
  for (GList *l = members; l && ok; l = l->next) {
    const char *name = l->data;
    JsonNode *n = json_object_get_member (o, name);
    gint64 version;
    if (!strcmp (name, "version")) {
      if (!cb_json_get_int (n, &version) || version != 1) {
        g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                     "\"version\" must be the integer 1 (the only format this reader knows)");
        ok = FALSE;
      }
    } else if (strchr (name, '.') || !is_group (name)) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "unknown group '%s'", name);
      ok = FALSE;
    } else if (!JSON_NODE_HOLDS_OBJECT (n)) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "group '%s': expected an object, found %s",
                   name, cb_json_kind (n));
      ok = FALSE;
    } else {
      ok = apply_group (c, name, json_node_get_object (n), error);
    }
  }
  g_list_free (members);
  return ok;
}

gboolean
cb_config_load_json (CbConfig *c, const char *path, GError **error)
{
  char *text = NULL;
  gsize len = 0;
  GError *ferr = NULL;
  GStatBuf sb;
  /* Refuse a huge file before reading it into memory. */
  if (g_stat (path, &sb) == 0 && sb.st_size > CB_CONFIG_MAX_FILE) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: file is %" G_GINT64_FORMAT " bytes, "
                 "above the %u-byte limit for a config", path, (gint64) sb.st_size,
                 CB_CONFIG_MAX_FILE);
    return FALSE;
  }
  if (!g_file_get_contents (path, &text, &len, &ferr)) {
    g_set_error (error, CB_ERROR,
                 g_error_matches (ferr, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? CB_ERROR_NOT_FOUND
                                                                         : CB_ERROR_IO,
                 "%s: cannot read model config: %s", path, ferr->message);
    g_error_free (ferr);
    return FALSE;
  }

  /* Work on a copy so that a failed load leaves the caller's config untouched. */
  CbConfig tmp = *c;
  JsonParser *parser = NULL;
  GError *err = NULL;
  if ((parser = cb_json_parse (text, len, 8, FALSE, &err))) {
    if (apply_root (&tmp, json_parser_get_root (parser), &err))
      cb_config_validate (&tmp, &err);
  }
  if (parser)
    g_object_unref (parser);
  g_free (text);
  if (err) {
    g_prefix_error (&err, "%s: ", path);
    g_propagate_error (error, err);
    return FALSE;
  }
  *c = tmp;
  return TRUE;
}

/* ---- writing and comparing ---- */

static const char *
choice_name (const ConfigKey *k, const CbConfig *c, char *buf, gsize size)
{
  int index = k->off >= 0 ? *AT (c, k->off, const int) : 0;
  char **choices = g_strsplit (k->choices, "|", -1);
  g_strlcpy (buf, (index >= 0 && (guint) index < g_strv_length (choices)) ? choices[index] : "?",
             size);
  g_strfreev (choices);
  return buf;
}

static void
build_list (JsonBuilder *b, const CbIntList *l)
{
  json_builder_begin_array (b);
  for (int i = 0; i < l->n; i++)
    json_builder_add_int_value (b, l->v[i]);
  json_builder_end_array (b);
}

static void
build_group (JsonBuilder *b, const CbConfig *c, const char *group)
{
  char buf[64];
  json_builder_begin_object (b);
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const ConfigKey *k = &config_keys[i];
    if (strcmp (k->group, group) || k->type == K_IGNORED)
      continue;
    json_builder_set_member_name (b, k->key);
    switch (k->type) {
    case K_INT:
      json_builder_add_int_value (b, *AT (c, k->off, const int));
      break;
    case K_REAL:
      json_builder_add_double_value (b, *AT (c, k->off, const double));
      break;
    case K_BOOL:
      json_builder_add_boolean_value (b, *AT (c, k->off, const gboolean));
      break;
    case K_CHOICE:
      json_builder_add_string_value (b, choice_name (k, c, buf, sizeof buf));
      break;
    case K_LIST:
      build_list (b, AT (c, k->off, const CbIntList));
      break;
    case K_LIST_LIST: {
      const CbIntListList *ll = AT (c, k->off, const CbIntListList);
      json_builder_begin_array (b);
      for (int j = 0; j < ll->n; j++)
        build_list (b, &ll->v[j]);
      json_builder_end_array (b);
      break;
    }
    case K_OBJECT: {
      char *sub = g_strdup_printf ("%s.%s", group, k->key);
      build_group (b, c, sub);
      g_free (sub);
      break;
    }
    case K_IGNORED:
      break;
    }
  }
  json_builder_end_object (b);
}

char *
cb_config_to_json (const CbConfig *c)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, 1);
  const char *last = "";
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const char *g = config_keys[i].group;
    if (!strcmp (g, last) || strchr (g, '.'))
      continue;
    json_builder_set_member_name (b, g);
    build_group (b, c, g);
    last = g;
  }
  json_builder_end_object (b);

  JsonGenerator *gen = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_indent (gen, 2);
  char *out = json_generator_to_data (gen, NULL);
  json_node_unref (root);
  g_object_unref (gen);
  g_object_unref (b);
  return out;
}

static gboolean
lists_equal (const CbIntList *a, const CbIntList *b)
{
  return a->n == b->n && memcmp (a->v, b->v, (gsize) a->n * sizeof (int)) == 0;
}

char *
cb_config_describe_changes (const CbConfig *base, const CbConfig *c)
{
  GString *s = g_string_new (NULL);
  char buf[64];
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const ConfigKey *k = &config_keys[i];
    if (k->off < 0 || k->type == K_OBJECT)
      continue;
    gboolean same = TRUE;
    switch (k->type) {
    case K_INT:
    case K_CHOICE:
      same = *AT (base, k->off, const int) == *AT (c, k->off, const int);
      break;
    case K_REAL:
      same = *AT (base, k->off, const double) == *AT (c, k->off, const double);
      break;
    case K_BOOL:
      same = !*AT (base, k->off, const gboolean) == !*AT (c, k->off, const gboolean);
      break;
    case K_LIST:
      same = lists_equal (AT (base, k->off, const CbIntList), AT (c, k->off, const CbIntList));
      break;
    case K_LIST_LIST: {
      const CbIntListList *x = AT (base, k->off, const CbIntListList);
      const CbIntListList *y = AT (c, k->off, const CbIntListList);
      same = x->n == y->n;
      for (int j = 0; same && j < x->n; j++)
        same = lists_equal (&x->v[j], &y->v[j]);
      break;
    }
    default:
      break;
    }
    if (same)
      continue;
    if (s->len)
      g_string_append_c (s, ' ');
    g_string_append_printf (s, "%s.%s=", k->group, k->key);
    if (k->type == K_INT)
      g_string_append_printf (s, "%d", *AT (c, k->off, const int));
    else if (k->type == K_REAL)
      g_string_append_printf (s, "%g", *AT (c, k->off, const double));
    else if (k->type == K_BOOL)
      g_string_append (s, *AT (c, k->off, const gboolean) ? "true" : "false");
    else if (k->type == K_CHOICE)
      g_string_append (s, choice_name (k, c, buf, sizeof buf));
    else
      g_string_append (s, "[...]");
  }
  return g_string_free (s, FALSE);
}
