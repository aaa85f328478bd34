/* config.h — every hyperparameter the model code needs, grouped by module.
 *
 * Upstream hard-codes these in constructors; cb_config_init_default() holds upstream's values (the
 * English model, resemble-ai/chatterbox 0.1.7 / HEAD) and cb_config_load_json() overrides them from
 * the optional `chatterbox-config.json` beside the weights (used by small test models). Model code
 * reads widths, depths, head counts, vocabulary sizes and token ids only from here.
 *
 * File format (all groups and keys optional; a key not given keeps its default):
 *
 *   {
 *     "version": 1,
 *     "t3":                 { T3Config attributes: "text_tokens_dict_size", ... },
 *     "llama":              { LlamaConfig arguments: "hidden_size", "num_hidden_layers", ...,
 *                             "rope_scaling": { "rope_type", "factor", ... } or null },
 *     "perceiver":          { Perceiver(): "pre_attention_query_token", ... },
 *     "t3_guard":           { "llama_aligned_heads": [[layer, head], ...], thresholds ... },
 *     "ve":                 { VoiceEncConfig attributes + "num_layers" (LSTM depth) },
 *     "s3tokenizer":        { S3Tokenizer ModelConfig: "n_mels", "n_audio_state", ... },
 *     "campplus":           { CAMPPlus(): "feat_dim", "embedding_size", ... + block tables },
 *     "s3gen_flow":         { CausalMaskedDiffWithXvec(): "input_size", "output_size", ... },
 *     "s3gen_flow_encoder": { UpsampleConformerEncoder(): "output_size", "num_blocks", ... },
 *     "s3gen_flow_decoder": { ConditionalDecoder(): "channels", "n_blocks", ... },
 *     "s3gen_cfm":          { CFM_PARAMS + "n_timesteps" },
 *     "s3gen_hift":         { HiFTGenerator(): "upsample_rates", ..., "istft_params": {...} },
 *     "s3gen_f0_predictor": { ConvRNNF0Predictor(): "in_channels", "cond_channels", ... }
 *   }
 *
 * The full key list with types and ranges is the table in config.c;
 * tests/data/config/defaults.json (written by cb_config_to_json) shows every key with upstream's
 * value, and tests/data/README-config.md describes the format for the scripts that write it.
 * Unknown groups or keys, wrong JSON types and out-of-range values are errors naming the file,
 * the group and the key. Keys that upstream passes but that do not affect inference (dropouts,
 * "attn_implementation", "torch_dtype", ...) are accepted and ignored. String-valued options name
 * the one implementation we have ("hidden_act": "silu"); any other value is
 * CB_ERROR_UNSUPPORTED. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

/* Longest list option (upsample rates, kernel sizes, dilations, U-Net levels). */
#define CB_CONFIG_MAX_LIST 8

typedef enum {
  CB_ROPE_DEFAULT = 0,  /* plain RoPE ("rope_scaling": null or rope_type "default") */
  CB_ROPE_LLAMA3  = 1,  /* Llama-3 frequency scaling (spec §3.2) */
} CbRopeType;

typedef struct {
  int n;
  int v[CB_CONFIG_MAX_LIST];
} CbIntList;

typedef struct {
  int       n;
  CbIntList v[CB_CONFIG_MAX_LIST];
} CbIntListList;

/* T3Config (t3/modules/t3_config.py; spec §3.1). */
typedef struct {
  int      text_tokens_dict_size;    /* 704 (multilingual 2454) */
  int      start_text_token;         /* 255 */
  int      stop_text_token;          /* 0 */
  int      max_text_tokens;          /* 2048; text_pos_emb has max_text_tokens + 2 rows */
  int      speech_tokens_dict_size;  /* 8194 */
  int      start_speech_token;       /* 6561 */
  int      stop_speech_token;        /* 6562 */
  int      max_speech_tokens;        /* 4096; speech_pos_emb has max_speech_tokens + 4 rows */
  int      speech_cond_prompt_len;   /* 150 */
  int      speaker_embed_size;       /* 256 */
  gboolean use_perceiver_resampler;  /* TRUE */
  gboolean emotion_adv;              /* TRUE */
} CbT3Config;

/* LlamaConfig from LLAMA_520M_CONFIG_DICT (t3/llama_configs.py; spec §3.1). */
typedef struct {
  int        hidden_size;              /* 1024 */
  int        num_hidden_layers;        /* 30 */
  int        num_attention_heads;      /* 16 */
  int        num_key_value_heads;      /* 16 */
  int        head_dim;                 /* 64 */
  int        intermediate_size;        /* 4096 */
  int        max_position_embeddings;  /* 131072 */
  int        vocab_size;               /* 8 (tfmr.embed_tokens, unused) */
  double     rms_norm_eps;             /* 1e-5 */
  double     rope_theta;               /* 500000 */
  gboolean   attention_bias;           /* FALSE */
  gboolean   mlp_bias;                 /* FALSE */
  CbRopeType rope_type;                /* llama3 */
  double     rope_factor;              /* 8 */
  double     rope_low_freq_factor;     /* 1 */
  double     rope_high_freq_factor;    /* 4 */
  int        rope_original_max_position_embeddings; /* 8192 */
} CbLlamaConfig;

/* Perceiver resampler (t3/modules/perceiver.py; spec §3.3). One attention block used twice. */
typedef struct {
  int    pre_attention_query_token;  /* 32 query tokens */
  int    pre_attention_query_size;   /* 1024 */
  int    embedding_dim;              /* 1024 */
  int    num_attn_heads;             /* 4 */
  double layer_norm_eps;             /* 1e-5 */
} CbPerceiverConfig;

/* VoiceEncoder (voice_encoder/config.py; spec §6.2). */
typedef struct {
  int      num_mels;            /* 40 */
  int      sample_rate;         /* 16000 */
  int      speaker_embed_size;  /* 256 */
  int      ve_hidden_size;      /* 256 */
  int      num_layers;          /* 3 (LSTM depth, hard-coded upstream) */
  int      n_fft;               /* 400 */
  int      hop_size;            /* 160 */
  int      win_size;            /* 400 */
  int      fmin;                /* 0 */
  int      fmax;                /* 8000 */
  double   mel_power;           /* 2.0 */
  int      ve_partial_frames;   /* 160 */
  double   rate;                /* 1.3 partials per second (embeds_from_mels default) */
  double   min_coverage;        /* 0.8 */
  gboolean ve_final_relu;       /* TRUE */
} CbVoiceEncoderConfig;

/* S3 speech tokenizer v2 25 Hz (S3Tokenizer ModelConfig; spec §6.3). */
typedef struct {
  int    n_mels;          /* 128 */
  int    n_audio_ctx;     /* 1500 */
  int    n_audio_state;   /* 1280 */
  int    n_audio_head;    /* 20 */
  int    n_audio_layer;   /* 6 */
  int    n_codebook_size; /* 6561 = 3^8 */
  int    fsmn_kernel_size;/* 31 */
  int    sample_rate;     /* 16000 */
  int    n_fft;           /* 400 */
  int    hop_length;      /* 160 */
  double attn_ln_eps;     /* 1e-6 */
  double mlp_ln_eps;      /* 1e-5 */
} CbS3TokenizerConfig;

/* CAMPPlus x-vector (s3gen/xvector.py; spec §6.4). */
typedef struct {
  int       feat_dim;           /* 80 */
  int       embedding_size;     /* 192 */
  int       growth_rate;        /* 32 */
  int       bn_size;            /* 4 (bottleneck = bn_size * growth_rate = 128) */
  int       init_channels;      /* 128 */
  int       m_channels;         /* 32 (FCM head) */
  int       seg_len;            /* 100 frames (CAM segment pooling) */
  CbIntList block_num_layers;   /* [12, 24, 16] */
  CbIntList block_kernel_sizes; /* [3, 3, 3] */
  CbIntList block_dilations;    /* [1, 2, 2] */
  double    batch_norm_eps;     /* 1e-5 */
} CbCampPlusConfig;

/* CausalMaskedDiffWithXvec (s3gen/flow.py; spec §5.2). */
typedef struct {
  int input_size;         /* 512 */
  int output_size;        /* 80 mel bins */
  int spk_embed_dim;      /* 192 */
  int vocab_size;         /* 6561 */
  int input_frame_rate;   /* 25 */
  int token_mel_ratio;    /* 2 */
  int pre_lookahead_len;  /* 3 */
} CbFlowConfig;

/* UpsampleConformerEncoder (s3gen.py, transformer/upsample_encoder.py; spec §5.3). */
typedef struct {
  int      input_size;         /* 512 */
  int      output_size;        /* 512 */
  int      attention_heads;    /* 8 */
  int      linear_units;       /* 2048 */
  int      num_blocks;         /* 6 */
  int      num_up_blocks;      /* 4 (hard-coded upstream) */
  int      upsample_stride;    /* 2 (Upsample1D; its conv kernel is 2 * stride + 1) */
  int      pre_lookahead_len;  /* 3 (PreLookaheadLayer: conv k = len + 1, then k = 3) */
  gboolean key_bias;           /* TRUE */
  double   layer_norm_eps;     /* 1e-12 (norm_mha, norm_ff in every conformer layer) */
  double   embed_norm_eps;     /* 1e-5 (embed, up_embed, after_norm) */
} CbFlowEncoderConfig;

/* ConditionalDecoder, the CFM estimator (s3gen.py, decoder.py; spec §5.4). */
typedef struct {
  int       in_channels;         /* 320 = x, mu, spks, cond */
  int       out_channels;        /* 80 */
  CbIntList channels;            /* [256]; time embedding width = 4 * channels[0] */
  int       n_blocks;            /* 4 transformer blocks per resnet */
  int       num_mid_blocks;      /* 12 */
  int       num_heads;           /* 8 */
  int       attention_head_dim;  /* 64 */
  int       ff_mult;             /* 4 (BasicTransformerBlock feed-forward) */
  gboolean  meanflow;            /* FALSE (Turbo's time_embed_mixer) */
  double    layer_norm_eps;      /* 1e-5 */
} CbFlowDecoderConfig;

/* CausalConditionalCFM (flow_matching.py, configs.py; spec §5.5). */
typedef struct {
  int    n_timesteps;         /* 10 Euler steps */
  double inference_cfg_rate;  /* 0.7 */
  double temperature;         /* 1.0 */
  int    spk_emb_dim;         /* 80 */
} CbCfmConfig;

/* HiFTGenerator (s3gen.py, hifigan.py; spec §5.7). */
typedef struct {
  int           in_channels;                    /* 80 */
  int           base_channels;                  /* 512 */
  int           nb_harmonics;                   /* 8 */
  int           sampling_rate;                  /* 24000 */
  double        nsf_alpha;                      /* 0.1 */
  double        nsf_sigma;                      /* 0.003 */
  double        nsf_voiced_threshold;           /* 10 */
  CbIntList     upsample_rates;                 /* [8, 5, 3] */
  CbIntList     upsample_kernel_sizes;          /* [16, 11, 7] */
  int           istft_n_fft;                    /* 16 */
  int           istft_hop_len;                  /* 4 */
  CbIntList     resblock_kernel_sizes;          /* [3, 7, 11] */
  CbIntListList resblock_dilation_sizes;        /* [[1,3,5]] x 3 */
  CbIntList     source_resblock_kernel_sizes;   /* [7, 7, 11] */
  CbIntListList source_resblock_dilation_sizes; /* [[1,3,5]] x 3 */
  double        lrelu_slope;                    /* 0.1 */
  double        audio_limit;                    /* 0.99 */
} CbHiftConfig;

/* ConvRNNF0Predictor (f0_predictor.py; spec §5.7). */
typedef struct {
  int num_class;      /* 1 */
  int in_channels;    /* 80 */
  int cond_channels;  /* 512 */
  int num_layers;     /* 5 conv + ELU layers (hard-coded upstream) */
} CbF0PredictorConfig;

/* The alignment-stream guard (t3/inference/alignment_stream_analyzer.py 0.1.7; spec §4): the
 * attention heads it reads and its thresholds, named after the analyzer's own variables. Used only
 * when an utterance asks for the guard (off by default for the English model, as upstream). */
typedef struct {
  CbIntListList llama_aligned_heads;    /* [[12, 15], [13, 11], [9, 2]]: [layer, head] pairs */
  int           discontinuity_back;     /* 4: a jump cur − pos ≤ −4 is a discontinuity */
  int           discontinuity_forward;  /* 7: a jump ≥ 7 is a discontinuity */
  int           false_start_head_cols;  /* 4 */
  double        false_start_head_min;   /* 0.5 */
  int           false_start_tail_cols;  /* 2 */
  double        false_start_tail_max;   /* 0.1 */
  int           complete_margin;        /* 3: complete when text_position ≥ S − 3 */
  int           long_tail_cols;         /* 3 */
  double        long_tail_frames;       /* 5 */
  int           repetition_skip_cols;   /* 5: alignment_repetition reads columns [0, S − 5) */
  double        repetition_frames;      /* 5 */
  int           suppress_min_text;      /* 5: EOS suppressed only when S > 5 ... */
  int           suppress_margin;        /* 3: ... and this step's argmax < S − 3 */
  double        force_value;            /* 32768 = 2**15 */
  gboolean      token_repetition;       /* TRUE: 0.1.7's token_repetition check */
} CbT3GuardSettings;

typedef struct {
  CbT3Config           t3;
  CbT3GuardSettings    t3_guard;
  CbLlamaConfig        llama;
  CbPerceiverConfig    perceiver;
  CbVoiceEncoderConfig ve;
  CbS3TokenizerConfig  s3tokenizer;
  CbCampPlusConfig     campplus;
  CbFlowConfig         flow;
  CbFlowEncoderConfig  flow_encoder;
  CbFlowDecoderConfig  flow_decoder;
  CbCfmConfig          cfm;
  CbHiftConfig         hift;
  CbF0PredictorConfig  f0_predictor;
} CbConfig;

/* Upstream's values for the English model. */
void     cb_config_init_default (CbConfig *c);

/* Override fields of `c` from the JSON file at `path`. On any error `c` is left unchanged. The
 * result is validated (cb_config_validate). */
gboolean cb_config_load_json (CbConfig *c, const char *path, GError **error);

/* Every value in range and the groups consistent with each other (e.g. hidden_size divisible by
 * the head count, list lengths that must agree, widths shared by two modules equal). Errors are
 * CB_ERROR_FORMAT naming "group.key" (CB_ERROR_UNSUPPORTED for valid settings this engine does not
 * implement). */
gboolean cb_config_validate (const CbConfig *c, GError **error);

/* The whole config in the file format above, every key written (pretty-printed JSON; g_free).
 * Loading it into any config reproduces `c` exactly. */
char    *cb_config_to_json (const CbConfig *c);

/* "group.key=value ..." for every field where `c` differs from `base`, in table order; "" when
 * none (g_free). The engine logs this so a run says which overrides it used. */
char    *cb_config_describe_changes (const CbConfig *base, const CbConfig *c);

/* Rows of the learned position tables (t3.py: max + 2 for text, max + 2 + 2 for speech). */
static inline int
cb_config_text_pos_len (const CbConfig *c)
{
  return c->t3.max_text_tokens + 2;
}

static inline int
cb_config_speech_pos_len (const CbConfig *c)
{
  return c->t3.max_speech_tokens + 4;
}

G_END_DECLS
