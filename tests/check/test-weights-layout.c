/* The expected checkpoint layout (engine/weights-layout.c): the real config reproduces upstream's
 * state dicts exactly (every name, dtype and shape of tests/data/weights/upstream-layout.json,
 * dumped from chatterbox-tts 0.1.7's modules) and the spec's counts; layouts follow the config; a
 * generated file passes validation; a missing tensor, a wrong shape or dtype and an unexpected
 * tensor are each refused with an error naming the file and the tensor; the engine refuses them. */
#include <string.h>

#include <json-glib/json-glib.h>

#include "cb-check.h"
#include "chatterbox.h"
#include "model-fixture.h"
#include "weights-layout.h"

static CbWeightsLayout *
default_layout (CbWeightsFile which)
{
  CbConfig c;
  cb_config_init_default (&c);
  return cb_weights_layout_new (which, &c);
}

static void
tiny_config (CbConfig *c)
{
  cb_config_init_default (c);
  char *path = cb_test_data_path ("config/tiny-model.json");
  GError *err = NULL;
  ck_assert_msg (cb_config_load_json (c, path, &err), "%s", err ? err->message : "");
  g_free (path);
}

static guint
count_prefix (const CbWeightsLayout *l, const char *prefix, gboolean optional)
{
  guint n = 0;
  for (guint i = 0; i < cb_weights_layout_size (l); i++) {
    const CbWeightSpec *s = cb_weights_layout_nth (l, i);
    n += g_str_has_prefix (s->name, prefix) && s->optional == optional;
  }
  return n;
}

/* Spec §1.4 counts: T3 292, VE 16, S3Gen 2488 = tokenizer 102 + speaker encoder 937 + flow 1121 +
 * mel2wav 328, plus the two optional tokenizer buffers. */
START_TEST (test_real_config_counts)
{
  static const struct { CbWeightsFile file; guint required, optional; } expect[] = {
    { CB_WEIGHTS_T3, 292, 0 }, { CB_WEIGHTS_VE, 16, 0 }, { CB_WEIGHTS_S3GEN, 2488, 2 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (expect); i++) {
    CbWeightsLayout *l = default_layout (expect[i].file);
    ck_assert_int_eq (cb_weights_layout_file (l), expect[i].file);
    ck_assert_uint_eq (cb_weights_layout_n_required (l), expect[i].required);
    ck_assert_uint_eq (cb_weights_layout_size (l), expect[i].required + expect[i].optional);
    cb_weights_layout_free (l);
  }
  CbWeightsLayout *s3 = default_layout (CB_WEIGHTS_S3GEN);
  ck_assert_uint_eq (count_prefix (s3, "tokenizer.", FALSE), 102);
  ck_assert_uint_eq (count_prefix (s3, "tokenizer.", TRUE), 2);
  ck_assert_uint_eq (count_prefix (s3, "speaker_encoder.", FALSE), 937);
  ck_assert_uint_eq (count_prefix (s3, "flow.", FALSE), 1121);
  ck_assert_uint_eq (count_prefix (s3, "mel2wav.", FALSE), 328);
  /* F32 parameters: T3 about 532 M (2.13 GB), S3Gen about 265 M (spec §1.2). */
  CbWeightsLayout *t3 = default_layout (CB_WEIGHTS_T3);
  guint64 t3_bytes = cb_weights_layout_nbytes (t3);
  ck_assert_msg (t3_bytes > 2100000000ull && t3_bytes < 2150000000ull, "%" G_GUINT64_FORMAT, t3_bytes);
  cb_weights_layout_free (t3);
  cb_weights_layout_free (s3);
}
END_TEST

/* Names and shapes copied literally from spec §1.4's tables. */
START_TEST (test_spec_samples)
{
  static const struct {
    CbWeightsFile file;
    const char *name;
    int ndim;
    int64_t shape[4];
  } samples[] = {
    { CB_WEIGHTS_T3, "tfmr.embed_tokens.weight", 2, { 8, 1024 } },
    { CB_WEIGHTS_T3, "tfmr.layers.0.input_layernorm.weight", 1, { 1024 } },
    { CB_WEIGHTS_T3, "tfmr.layers.29.self_attn.k_proj.weight", 2, { 1024, 1024 } },
    { CB_WEIGHTS_T3, "tfmr.layers.17.mlp.gate_proj.weight", 2, { 4096, 1024 } },
    { CB_WEIGHTS_T3, "tfmr.layers.29.mlp.down_proj.weight", 2, { 1024, 4096 } },
    { CB_WEIGHTS_T3, "tfmr.norm.weight", 1, { 1024 } },
    { CB_WEIGHTS_T3, "text_emb.weight", 2, { 704, 1024 } },
    { CB_WEIGHTS_T3, "speech_emb.weight", 2, { 8194, 1024 } },
    { CB_WEIGHTS_T3, "text_pos_emb.emb.weight", 2, { 2050, 1024 } },
    { CB_WEIGHTS_T3, "speech_pos_emb.emb.weight", 2, { 4100, 1024 } },
    { CB_WEIGHTS_T3, "text_head.weight", 2, { 704, 1024 } },
    { CB_WEIGHTS_T3, "speech_head.weight", 2, { 8194, 1024 } },
    { CB_WEIGHTS_T3, "cond_enc.spkr_enc.weight", 2, { 1024, 256 } },
    { CB_WEIGHTS_T3, "cond_enc.emotion_adv_fc.weight", 2, { 1024, 1 } },
    { CB_WEIGHTS_T3, "cond_enc.perceiver.pre_attention_query", 3, { 1, 32, 1024 } },
    { CB_WEIGHTS_T3, "cond_enc.perceiver.attn.proj_out.bias", 1, { 1024 } },
    { CB_WEIGHTS_VE, "lstm.weight_ih_l0", 2, { 1024, 40 } },
    { CB_WEIGHTS_VE, "lstm.weight_ih_l2", 2, { 1024, 256 } },
    { CB_WEIGHTS_VE, "lstm.bias_hh_l1", 1, { 1024 } },
    { CB_WEIGHTS_VE, "proj.weight", 2, { 256, 256 } },
    { CB_WEIGHTS_VE, "similarity_bias", 1, { 1 } },
    { CB_WEIGHTS_S3GEN, "tokenizer.encoder.conv1.weight", 3, { 1280, 128, 3 } },
    { CB_WEIGHTS_S3GEN, "tokenizer.encoder.blocks.5.attn.fsmn_block.weight", 3, { 1280, 1, 31 } },
    { CB_WEIGHTS_S3GEN, "tokenizer.encoder.blocks.0.mlp.0.weight", 2, { 5120, 1280 } },
    { CB_WEIGHTS_S3GEN, "tokenizer.quantizer._codebook.project_down.weight", 2, { 8, 1280 } },
    { CB_WEIGHTS_S3GEN, "tokenizer._mel_filters", 2, { 128, 201 } },
    { CB_WEIGHTS_S3GEN, "tokenizer.window", 1, { 400 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.head.conv1.weight", 4, { 32, 1, 3, 3 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.head.layer2.0.shortcut.0.weight", 4, { 32, 32, 1, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.tdnn.linear.weight", 3, { 128, 320, 5 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.block2.tdnnd24.linear1.weight", 3, { 128, 992, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.block3.tdnnd1.nonlinear1.batchnorm.running_mean", 1, { 512 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.block1.tdnnd12.cam_layer.linear_local.weight", 3, { 32, 128, 3 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.block1.tdnnd1.cam_layer.linear1.weight", 3, { 64, 128, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.block1.tdnnd1.cam_layer.linear2.weight", 3, { 32, 64, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.transit1.linear.weight", 3, { 256, 512, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.transit3.linear.weight", 3, { 512, 1024, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.out_nonlinear.batchnorm.weight", 1, { 512 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.dense.linear.weight", 3, { 192, 1024, 1 } },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.dense.nonlinear.batchnorm.running_var", 1, { 192 } },
    { CB_WEIGHTS_S3GEN, "flow.input_embedding.weight", 2, { 6561, 512 } },
    { CB_WEIGHTS_S3GEN, "flow.spk_embed_affine_layer.weight", 2, { 80, 192 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder_proj.weight", 2, { 80, 512 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.embed.out.1.bias", 1, { 512 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.pre_lookahead_layer.conv1.weight", 3, { 512, 512, 4 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.pre_lookahead_layer.conv2.weight", 3, { 512, 512, 3 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.encoders.5.self_attn.linear_pos.weight", 2, { 512, 512 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.up_encoders.3.self_attn.pos_bias_u", 2, { 8, 64 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.up_encoders.0.feed_forward.w_1.weight", 2, { 2048, 512 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.up_layer.conv.weight", 3, { 512, 512, 5 } },
    { CB_WEIGHTS_S3GEN, "flow.encoder.after_norm.weight", 1, { 512 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.time_mlp.linear_1.weight", 2, { 1024, 320 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.time_mlp.linear_2.weight", 2, { 1024, 1024 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.down_blocks.0.0.block1.block.0.weight", 3, { 256, 320, 3 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.mid_blocks.11.0.mlp.1.weight", 2, { 256, 1024 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.up_blocks.0.0.res_conv.weight", 3, { 256, 512, 1 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.mid_blocks.11.1.3.attn1.to_q.weight", 2, { 512, 256 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.up_blocks.0.1.0.attn1.to_out.0.weight", 2, { 256, 512 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.down_blocks.0.1.2.ff.net.0.proj.weight", 2, { 1024, 256 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.down_blocks.0.2.weight", 3, { 256, 256, 3 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.final_block.block.2.bias", 1, { 256 } },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.final_proj.weight", 3, { 80, 256, 1 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.conv_pre.parametrizations.weight.original1", 3, { 512, 80, 7 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.ups.0.parametrizations.weight.original0", 3, { 512, 1, 1 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.ups.1.parametrizations.weight.original1", 3, { 256, 128, 11 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.ups.2.parametrizations.weight.original1", 3, { 128, 64, 7 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_downs.0.weight", 3, { 256, 18, 30 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_downs.1.weight", 3, { 128, 18, 6 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_downs.2.weight", 3, { 64, 18, 1 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_resblocks.0.convs1.2.parametrizations.weight.original1", 3, { 256, 256, 7 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_resblocks.2.convs2.0.parametrizations.weight.original1", 3, { 64, 64, 11 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_resblocks.1.activations2.2.alpha", 1, { 128 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.resblocks.8.convs2.2.parametrizations.weight.original1", 3, { 64, 64, 11 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.resblocks.4.activations1.1.alpha", 1, { 128 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.resblocks.0.convs1.0.parametrizations.weight.original0", 3, { 256, 1, 1 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.conv_post.parametrizations.weight.original1", 3, { 18, 64, 7 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.m_source.l_linear.weight", 2, { 1, 9 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.f0_predictor.condnet.0.parametrizations.weight.original1", 3, { 512, 80, 3 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.f0_predictor.condnet.8.parametrizations.weight.original1", 3, { 512, 512, 3 } },
    { CB_WEIGHTS_S3GEN, "mel2wav.f0_predictor.classifier.weight", 2, { 1, 512 } },
  };
  /* Keys the spec says do not exist. */
  static const struct { CbWeightsFile file; const char *name; } absent[] = {
    { CB_WEIGHTS_T3, "speech_head.bias" },
    { CB_WEIGHTS_T3, "tfmr.layers.30.input_layernorm.weight" },
    { CB_WEIGHTS_T3, "tfmr.rotary_emb.inv_freq" },
    { CB_WEIGHTS_S3GEN, "tokenizer.encoder.blocks.0.attn.key.bias" },
    { CB_WEIGHTS_S3GEN, "tokenizer.encoder.blocks.0.attn.fsmn_block.bias" },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.head.layer1.1.shortcut.0.weight" },
    { CB_WEIGHTS_S3GEN, "speaker_encoder.xvector.dense.nonlinear.batchnorm.weight" },
    { CB_WEIGHTS_S3GEN, "flow.encoder.encoders.0.self_attn.linear_pos.bias" },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.time_embed_mixer.weight" },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.mid_blocks.0.1.0.norm2.weight" },
    { CB_WEIGHTS_S3GEN, "flow.decoder.estimator.mid_blocks.0.1.0.attn1.to_q.bias" },
    { CB_WEIGHTS_S3GEN, "mel2wav.ups.0.weight_g" },
    { CB_WEIGHTS_S3GEN, "mel2wav.source_downs.0.parametrizations.weight.original0" },
  };
  CbWeightsLayout *layouts[CB_WEIGHTS_N_FILES];
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++)
    layouts[w] = default_layout ((CbWeightsFile) w);
  for (guint i = 0; i < G_N_ELEMENTS (samples); i++) {
    const CbWeightSpec *s = cb_weights_layout_find (layouts[samples[i].file], samples[i].name);
    ck_assert_msg (s != NULL, "%s not in the layout", samples[i].name);
    ck_assert_str_eq (s->name, samples[i].name);
    ck_assert_int_eq (s->dtype, CB_DTYPE_F32);
    ck_assert_msg (s->ndim == samples[i].ndim, "%s: rank %d", samples[i].name, s->ndim);
    for (int d = 0; d < s->ndim; d++)
      ck_assert_msg (s->shape[d] == samples[i].shape[d], "%s: dim %d is %" G_GINT64_FORMAT,
                     samples[i].name, d, s->shape[d]);
    ck_assert_int_eq (s->optional, g_str_has_prefix (samples[i].name, "tokenizer._mel")
                                   || !strcmp (samples[i].name, "tokenizer.window"));
  }
  for (guint i = 0; i < G_N_ELEMENTS (absent); i++)
    ck_assert_msg (cb_weights_layout_find (layouts[absent[i].file], absent[i].name) == NULL,
                   "%s should not be in the layout", absent[i].name);
  const CbWeightSpec *nbt = cb_weights_layout_find (
      layouts[CB_WEIGHTS_S3GEN], "speaker_encoder.head.bn1.num_batches_tracked");
  ck_assert_ptr_nonnull (nbt);
  ck_assert_int_eq (nbt->dtype, CB_DTYPE_I64);
  ck_assert_int_eq (nbt->ndim, 0);
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++)
    cb_weights_layout_free (layouts[w]);
}
END_TEST

/* Every key, dtype and shape of upstream's own state dicts (chatterbox-tts 0.1.7, dumped by
 * tests/reference/dump_weights_layout.py), and nothing else. */
START_TEST (test_equals_upstream_state_dicts)
{
  char *path = cb_test_data_path ("weights/upstream-layout.json");
  JsonParser *parser = json_parser_new ();
  GError *err = NULL;
  ck_assert_msg (json_parser_load_from_file (parser, path, &err), "%s", err ? err->message : "");
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  ck_assert_uint_eq (json_object_get_size (root), CB_WEIGHTS_N_FILES);
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++) {
    const char *file = cb_weights_file_name ((CbWeightsFile) w);
    ck_assert_msg (json_object_has_member (root, file), "%s not in %s", file, path);
    JsonObject *keys = json_object_get_object_member (root, file);
    CbWeightsLayout *l = default_layout ((CbWeightsFile) w);
    ck_assert_uint_eq (json_object_get_size (keys), cb_weights_layout_size (l));
    GList *names = json_object_get_members (keys);
    for (GList *n = names; n; n = n->next) {
      const char *name = n->data;
      const CbWeightSpec *s = cb_weights_layout_find (l, name);
      ck_assert_msg (s != NULL, "%s: upstream's %s is not in our layout", file, name);
      JsonArray *entry = json_object_get_array_member (keys, name);
      const char *dtype = json_array_get_string_element (entry, 0);
      ck_assert_str_eq (dtype, s->dtype == CB_DTYPE_I64 ? "int64" : "float32");
      JsonArray *shape = json_array_get_array_element (entry, 1);
      ck_assert_msg ((int) json_array_get_length (shape) == s->ndim, "%s: rank %d, upstream %u",
                     name, s->ndim, json_array_get_length (shape));
      for (int d = 0; d < s->ndim; d++)
        ck_assert_msg (json_array_get_int_element (shape, d) == s->shape[d],
                       "%s: dim %d is %" G_GINT64_FORMAT ", upstream %" G_GINT64_FORMAT, name, d,
                       s->shape[d], json_array_get_int_element (shape, d));
    }
    g_list_free (names);
    cb_weights_layout_free (l);
  }
  g_object_unref (parser);
  g_free (path);
}
END_TEST

/* Layouts follow the config: each switch and count changes exactly the tensors it owns. */
START_TEST (test_layout_follows_config)
{
  static const struct {
    const char *json;
    CbWeightsFile file;
    int delta;
  } variants[] = {
    { "{\"llama\": {\"num_hidden_layers\": 29}}", CB_WEIGHTS_T3, -9 },
    { "{\"llama\": {\"attention_bias\": true}}", CB_WEIGHTS_T3, 4 * 30 },
    { "{\"llama\": {\"mlp_bias\": true}}", CB_WEIGHTS_T3, 3 * 30 },
    { "{\"t3\": {\"emotion_adv\": false}}", CB_WEIGHTS_T3, -1 },
    { "{\"t3\": {\"use_perceiver_resampler\": false}}", CB_WEIGHTS_T3, -11 },
    { "{\"ve\": {\"num_layers\": 4}}", CB_WEIGHTS_VE, 4 },
    { "{\"s3tokenizer\": {\"n_audio_layer\": 5}}", CB_WEIGHTS_S3GEN, -16 },
    { "{\"campplus\": {\"block_num_layers\": [12, 24, 17]}}", CB_WEIGHTS_S3GEN, 16 },
    { "{\"campplus\": {\"block_num_layers\": [12, 24, 16, 2], \"block_kernel_sizes\": [3, 3, 3, 3],"
      " \"block_dilations\": [1, 2, 2, 2]}}", CB_WEIGHTS_S3GEN, 2 * 16 + 6 },
    { "{\"s3gen_flow_encoder\": {\"num_up_blocks\": 3}}", CB_WEIGHTS_S3GEN, -19 },
    { "{\"s3gen_flow_encoder\": {\"key_bias\": false}}", CB_WEIGHTS_S3GEN, -10 },
    { "{\"s3gen_flow_decoder\": {\"num_mid_blocks\": 11}}", CB_WEIGHTS_S3GEN, -(12 + 4 * 13) },
    { "{\"s3gen_flow_decoder\": {\"n_blocks\": 3}}", CB_WEIGHTS_S3GEN, -14 * 13 },
    { "{\"s3gen_flow_decoder\": {\"meanflow\": true}}", CB_WEIGHTS_S3GEN, 1 },
    { "{\"s3gen_hift\": {\"resblock_kernel_sizes\": [3, 7], \"resblock_dilation_sizes\": [[1, 3, 5], [1, 3, 5]]}}",
      CB_WEIGHTS_S3GEN, -3 * 24 },
    { "{\"s3gen_f0_predictor\": {\"num_layers\": 4}}", CB_WEIGHTS_S3GEN, -3 },
  };
  char *dir = cb_test_tmpdir ("layout-config");
  char *path = g_build_filename (dir, "config.json", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (variants); i++) {
    CbConfig c;
    cb_config_init_default (&c);
    GError *err = NULL;
    ck_assert (g_file_set_contents (path, variants[i].json, -1, NULL));
    ck_assert_msg (cb_config_load_json (&c, path, &err), "%s: %s", variants[i].json, err ? err->message : "");
    CbWeightsLayout *base = default_layout (variants[i].file);
    CbWeightsLayout *l = cb_weights_layout_new (variants[i].file, &c);
    ck_assert_msg ((int) cb_weights_layout_n_required (l) - (int) cb_weights_layout_n_required (base)
                     == variants[i].delta, "%s: %u tensors (default %u), expected a change of %d",
                   variants[i].json, cb_weights_layout_n_required (l),
                   cb_weights_layout_n_required (base), variants[i].delta);
    cb_weights_layout_free (l);
    cb_weights_layout_free (base);
  }
  g_free (path);
  g_free (dir);
}
END_TEST

/* ---- files ---- */

typedef struct {
  CbConfig         cfg;
  CbWeightsLayout *layout;
  char            *dir;
  char            *valid;   /* a generated valid file */
  CbSafetensors   *st;      /* `valid`, open */
} FileFixture;

static void
file_fixture_init (FileFixture *f, CbWeightsFile which)
{
  tiny_config (&f->cfg);
  f->layout = cb_weights_layout_new (which, &f->cfg);
  f->dir = cb_test_tmpdir ("weights-layout");
  f->valid = g_build_filename (f->dir, cb_weights_file_name (which), NULL);
  GError *err = NULL;
  ck_assert_msg (cb_weights_write_random (f->valid, f->layout, 7, FALSE, 1u << 30, &err), "%s",
                 err ? err->message : "");
  f->st = cb_safetensors_open (f->valid, &err);
  ck_assert_msg (f->st != NULL, "%s", err ? err->message : "");
}

static void
file_fixture_clear (FileFixture *f)
{
  cb_safetensors_free (f->st);
  cb_weights_layout_free (f->layout);
  g_free (f->valid);
  g_free (f->dir);
}

START_TEST (test_generated_files_pass)
{
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++) {
    FileFixture f;
    file_fixture_init (&f, (CbWeightsFile) w);
    GError *err = NULL;
    ck_assert_uint_eq (cb_safetensors_n_tensors (f.st), cb_weights_layout_n_required (f.layout));
    ck_assert_msg (cb_weights_validate (f.st, (CbWeightsFile) w, &f.cfg, &err), "%s", err ? err->message : "");
    /* Validation records every tensor as used. */
    ck_assert_msg (cb_safetensors_check_all_used (f.st, NULL, &err), "%s", err ? err->message : "");
    /* With the optional buffers too. */
    char *with = g_build_filename (f.dir, "with-optional.safetensors", NULL);
    ck_assert (cb_weights_write_random (with, f.layout, 7, TRUE, 1u << 30, &err));
    CbSafetensors *st = cb_safetensors_open (with, &err);
    ck_assert_ptr_nonnull (st);
    ck_assert_uint_eq (cb_safetensors_n_tensors (st), cb_weights_layout_size (f.layout));
    ck_assert_msg (cb_weights_validate_layout (st, f.layout, &err), "%s", err ? err->message : "");
    cb_safetensors_free (st);
    g_free (with);
    file_fixture_clear (&f);
  }
}
END_TEST

START_TEST (test_refuses_too_large)
{
  CbWeightsLayout *l = default_layout (CB_WEIGHTS_T3);
  char *dir = cb_test_tmpdir ("weights-layout");
  char *path = g_build_filename (dir, "big.safetensors", NULL);
  GError *err = NULL;
  ck_assert (!cb_weights_write_random (path, l, 1, FALSE, 1u << 20, &err));
  ck_assert_int_eq (err->code, CB_ERROR_INVALID_ARGUMENT);
  ck_assert (!g_file_test (path, G_FILE_TEST_EXISTS));
  g_clear_error (&err);
  g_free (path);
  g_free (dir);
  cb_weights_layout_free (l);
}
END_TEST

/* A damage applied to the list of tensors of a valid file before it is rewritten. */
typedef enum { DROP, TRANSPOSE, RETYPE_I32, RETYPE_F16, RETYPE_BF16, ADD_EXTRA, RENAME_PREFIX } Damage;

/* Rewrites the fixture's valid file with `damage` applied to tensor `target` (all tensors for
 * RENAME_PREFIX) into `out`, and returns the opened result. */
static CbSafetensors *
damaged_copy (FileFixture *f, Damage damage, const char *target, const char *out)
{
  guint n = cb_safetensors_n_tensors (f->st);
  CbTensorInfo *t = g_new0 (CbTensorInfo, n + 1);
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  guint k = 0;
  for (guint i = 0; i < n; i++) {
    CbTensorInfo ti = *cb_safetensors_nth (f->st, i);
    gboolean hit = target && !strcmp (ti.name, target);
    if (hit && damage == DROP)
      continue;
    if (hit && damage == TRANSPOSE) {
      ck_assert (ti.ndim == 2 && ti.shape[0] != ti.shape[1]);
      int64_t d = ti.shape[0];
      ti.shape[0] = ti.shape[1];
      ti.shape[1] = d;
    }
    if (hit && (damage == RETYPE_I32 || damage == RETYPE_F16 || damage == RETYPE_BF16)) {
      ti.dtype = damage == RETYPE_I32 ? CB_DTYPE_I32 : damage == RETYPE_F16 ? CB_DTYPE_F16 : CB_DTYPE_BF16;
      ti.nbytes = ti.numel * cb_dtype_size (ti.dtype); /* never more than before: any bits do */
    }
    if (damage == RENAME_PREFIX) {
      char *name = g_strconcat ("model.", ti.name, NULL);
      g_ptr_array_add (owned, name);
      ti.name = name;
    }
    t[k++] = ti;
  }
  if (damage == ADD_EXTRA) {
    static const float extra[3] = { 1, 2, 3 };
    CbTensorInfo e = { .name = target, .dtype = CB_DTYPE_F32, .ndim = 1, .shape = { 3 },
                       .numel = 3, .data = (const guint8 *) extra, .nbytes = sizeof extra };
    t[k++] = e;
  }
  GError *err = NULL;
  ck_assert_msg (cb_safetensors_write (out, k, t, NULL, &err), "%s", err ? err->message : "");
  g_free (t);
  g_ptr_array_unref (owned);
  CbSafetensors *st = cb_safetensors_open (out, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  return st;
}

/* Each damage is refused with CB_ERROR_MISMATCH naming the file, the tensor and what is wrong. */
START_TEST (test_damage_is_named)
{
  static const struct {
    CbWeightsFile file;
    Damage damage;
    const char *tensor;
    const char *expect[4];
  } cases[] = {
    { CB_WEIGHTS_T3, DROP, "tfmr.norm.weight", { "1 tensor problem for", "1 missing: 'tfmr.norm.weight' (F32 [32])", NULL } },
    { CB_WEIGHTS_T3, TRANSPOSE, "cond_enc.spkr_enc.weight",
      { "'cond_enc.spkr_enc.weight': expected F32 (or F16/BF16) [32, 256], found F32 [256, 32]", NULL } },
    { CB_WEIGHTS_VE, RETYPE_I32, "proj.bias", { "'proj.bias'", "found I32 [256]", NULL } },
    { CB_WEIGHTS_S3GEN, ADD_EXTRA, "flow.decoder.estimator.time_embed_mixer.weight",
      { "1 unexpected: 'flow.decoder.estimator.time_embed_mixer.weight' (F32 [3])", NULL } },
    { CB_WEIGHTS_S3GEN, DROP, "mel2wav.ups.1.parametrizations.weight.original0",
      { "1 missing: 'mel2wav.ups.1.parametrizations.weight.original0' (F32 [8, 1, 1])", NULL } },
    { CB_WEIGHTS_S3GEN, RETYPE_I32, "speaker_encoder.head.bn1.num_batches_tracked",
      { "expected I64 [], found I32 []", NULL } },
    { CB_WEIGHTS_T3, RENAME_PREFIX, NULL,
      { "80 tensor problems", "40 missing: 'tfmr.layers.0.input_layernorm.weight'", "40 unexpected: 'model.tfmr.layers.0.", "prefix 'model.'" } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    FileFixture f;
    file_fixture_init (&f, cases[i].file);
    char *out = g_build_filename (f.dir, "damaged.safetensors", NULL);
    CbSafetensors *st = damaged_copy (&f, cases[i].damage, cases[i].tensor, out);
    GError *err = NULL;
    ck_assert_msg (!cb_weights_validate (st, cases[i].file, &f.cfg, &err), "case %u passed", i);
    ck_assert_int_eq (err->code, CB_ERROR_MISMATCH);
    ck_assert_msg (strstr (err->message, out) != NULL, "no file name: %s", err->message);
    for (guint j = 0; j < G_N_ELEMENTS (cases[i].expect) && cases[i].expect[j]; j++)
      ck_assert_msg (strstr (err->message, cases[i].expect[j]) != NULL, "case %u: '%s' not in: %s",
                     i, cases[i].expect[j], err->message);
    g_clear_error (&err);
    cb_safetensors_free (st);
    g_free (out);
    file_fixture_clear (&f);
  }
}
END_TEST

/* Float weights may be stored in F16 or BF16 (spec §1.2). */
START_TEST (test_half_precision_accepted)
{
  FileFixture f;
  file_fixture_init (&f, CB_WEIGHTS_T3);
  for (Damage d = RETYPE_F16; d <= RETYPE_BF16; d++) {
    char *out = g_build_filename (f.dir, "half.safetensors", NULL);
    CbSafetensors *st = damaged_copy (&f, d, "speech_head.weight", out);
    GError *err = NULL;
    ck_assert_msg (cb_weights_validate (st, CB_WEIGHTS_T3, &f.cfg, &err), "%s", err ? err->message : "");
    cb_safetensors_free (st);
    g_free (out);
  }
  file_fixture_clear (&f);
}
END_TEST

/* Many problems: the count is exact and the list is cut after a few. */
START_TEST (test_many_problems_listed_briefly)
{
  FileFixture f;
  file_fixture_init (&f, CB_WEIGHTS_VE);
  CbConfig other = f.cfg;
  other.ve.ve_hidden_size = 8; /* every LSTM and proj tensor changes shape */
  GError *err = NULL;
  ck_assert (!cb_weights_validate (f.st, CB_WEIGHTS_VE, &other, &err));
  ck_assert_msg (strstr (err->message, "9 tensor problems") && strstr (err->message, "9 with a wrong dtype or shape: ") && strstr (err->message, ", ..."), "%s",
                 err->message);
  g_clear_error (&err);
  file_fixture_clear (&f);
}
END_TEST

/* ---- the engine ---- */

static CbEngine *
engine_from (const char *dir, GError **err)
{
  CbEngineParams p;
  cb_engine_params_init (&p);
  p.model_location = dir;
  p.threads = 1;
  return cb_engine_new (&p, err);
}

/* The test model loads; a weights file with a tensor missing, or weights made for another config,
 * are refused naming the file and the tensor. */
START_TEST (test_engine_validates_weights)
{
  char *dir = cb_test_make_model_dir ();
  GError *err = NULL;
  CbEngine *e = engine_from (dir, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  cb_engine_free (e);

  FileFixture f;
  file_fixture_init (&f, CB_WEIGHTS_S3GEN);
  char *out = g_build_filename (dir, "s3gen.safetensors", NULL);
  cb_safetensors_free (damaged_copy (&f, DROP, "flow.encoder.after_norm.bias", out));
  e = engine_from (dir, &err);
  ck_assert_ptr_null (e);
  ck_assert_msg (strstr (err->message, "s3gen.safetensors")
                   && strstr (err->message, "1 missing: 'flow.encoder.after_norm.bias'"), "%s",
                 err->message);
  g_clear_error (&err);

  /* Without chatterbox-config.json the files are checked against the real model's shapes. */
  cb_test_model_dir_replace (dir, "chatterbox-config.json", "{}", -1);
  e = engine_from (dir, &err);
  ck_assert_ptr_null (e);
  ck_assert_msg (strstr (err->message, "t3_cfg.safetensors")
                   && strstr (err->message, "expected 292 tensors, the file has 40"), "%s",
                 err->message);
  g_clear_error (&err);
  file_fixture_clear (&f);
  g_free (out);
  g_free (dir);
}
END_TEST

static Suite *
weights_layout_suite (void)
{
  Suite *s = suite_create ("weights-layout");
  TCase *tc = tcase_create ("layout");
  tcase_add_test (tc, test_real_config_counts);
  tcase_add_test (tc, test_spec_samples);
  tcase_add_test (tc, test_equals_upstream_state_dicts);
  tcase_add_test (tc, test_layout_follows_config);
  suite_add_tcase (s, tc);
  tc = tcase_create ("files");
  tcase_add_test (tc, test_generated_files_pass);
  tcase_add_test (tc, test_refuses_too_large);
  tcase_add_test (tc, test_damage_is_named);
  tcase_add_test (tc, test_half_precision_accepted);
  tcase_add_test (tc, test_many_problems_listed_briefly);
  tcase_add_test (tc, test_engine_validates_weights);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (weights_layout_suite)
