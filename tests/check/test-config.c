/* Units of engine/config.c: upstream defaults, overrides from chatterbox-config.json, the JSON
 * round trip, and one clear error per kind of bad file. */
#include <string.h>

#include <glib/gstdio.h>

#include "cb-check.h"
#include "config.h"

START_TEST (test_defaults_are_upstream)
{
  CbConfig c;
  cb_config_init_default (&c);
  GError *err = NULL;
  ck_assert_msg (cb_config_validate (&c, &err), "%s", err ? err->message : "?");

  /* spec §3.1, T3Config.english_only() */
  ck_assert_int_eq (c.t3.text_tokens_dict_size, 704);
  ck_assert_int_eq (c.t3.start_text_token, 255);
  ck_assert_int_eq (c.t3.stop_text_token, 0);
  ck_assert_int_eq (c.t3.speech_tokens_dict_size, 8194);
  ck_assert_int_eq (c.t3.start_speech_token, 6561);
  ck_assert_int_eq (c.t3.stop_speech_token, 6562);
  ck_assert_int_eq (c.t3.speech_cond_prompt_len, 150);
  /* spec §1.4: text_pos_emb (2050, 1024), speech_pos_emb (4100, 1024) */
  ck_assert_int_eq (cb_config_text_pos_len (&c), 2050);
  ck_assert_int_eq (cb_config_speech_pos_len (&c), 4100);
  /* spec §3.1, Llama_520M */
  ck_assert_int_eq (c.llama.hidden_size, 1024);
  ck_assert_int_eq (c.llama.num_hidden_layers, 30);
  ck_assert_int_eq (c.llama.num_attention_heads, 16);
  ck_assert_int_eq (c.llama.num_key_value_heads, 16);
  ck_assert_int_eq (c.llama.head_dim, 64);
  ck_assert_int_eq (c.llama.intermediate_size, 4096);
  ck_assert (c.llama.rms_norm_eps == 1e-5);
  ck_assert (c.llama.rope_theta == 500000.0);
  ck_assert_int_eq (c.llama.rope_type, CB_ROPE_LLAMA3);
  ck_assert (c.llama.rope_factor == 8.0 && c.llama.rope_low_freq_factor == 1.0
             && c.llama.rope_high_freq_factor == 4.0);
  ck_assert_int_eq (c.llama.rope_original_max_position_embeddings, 8192);
  /* spec §3.3: 32 queries of 1024, 4 heads of 256 */
  ck_assert_int_eq (c.perceiver.pre_attention_query_token, 32);
  ck_assert_int_eq (c.perceiver.num_attn_heads, 4);
  /* spec §5.2 */
  ck_assert_int_eq (c.flow.vocab_size, 6561);
  ck_assert_int_eq (c.flow.spk_embed_dim, 192);
  ck_assert_int_eq (c.flow.token_mel_ratio, 2);
  /* spec §5.3 and §9.2 (conformer LayerNorm eps 1e-12) */
  ck_assert_int_eq (c.flow_encoder.output_size, 512);
  ck_assert_int_eq (c.flow_encoder.attention_heads, 8);
  ck_assert_int_eq (c.flow_encoder.linear_units, 2048);
  ck_assert_int_eq (c.flow_encoder.num_blocks, 6);
  ck_assert_int_eq (c.flow_encoder.num_up_blocks, 4);
  ck_assert (c.flow_encoder.layer_norm_eps == 1e-12);
  /* spec §5.4 */
  ck_assert_int_eq (c.flow_decoder.in_channels, 320);
  ck_assert_int_eq (c.flow_decoder.channels.n, 1);
  ck_assert_int_eq (c.flow_decoder.channels.v[0], 256);
  ck_assert_int_eq (c.flow_decoder.n_blocks, 4);
  ck_assert_int_eq (c.flow_decoder.num_mid_blocks, 12);
  ck_assert_int_eq (c.flow_decoder.num_heads, 8);
  ck_assert_int_eq (c.flow_decoder.attention_head_dim, 64);
  /* spec §5.5 */
  ck_assert_int_eq (c.cfm.n_timesteps, 10);
  ck_assert (c.cfm.inference_cfg_rate == 0.7);
  /* spec §5.7 */
  static const int rates[] = { 8, 5, 3 }, kernels[] = { 16, 11, 7 }, src[] = { 7, 7, 11 };
  ck_assert_int_eq (c.hift.upsample_rates.n, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq (c.hift.upsample_rates.v[i], rates[i]);
    ck_assert_int_eq (c.hift.upsample_kernel_sizes.v[i], kernels[i]);
    ck_assert_int_eq (c.hift.source_resblock_kernel_sizes.v[i], src[i]);
    ck_assert_int_eq (c.hift.resblock_dilation_sizes.v[i].n, 3);
    ck_assert_int_eq (c.hift.resblock_dilation_sizes.v[i].v[1], 3);
  }
  ck_assert_int_eq (c.hift.istft_n_fft, 16);
  ck_assert_int_eq (c.hift.istft_hop_len, 4);
  ck_assert_int_eq (c.hift.base_channels, 512);
  ck_assert (c.hift.lrelu_slope == 0.1 && c.hift.audio_limit == 0.99);
  /* spec §6.2, §6.3, §6.4 */
  ck_assert_int_eq (c.ve.num_mels, 40);
  ck_assert_int_eq (c.ve.ve_hidden_size, 256);
  ck_assert_int_eq (c.ve.num_layers, 3);
  ck_assert_int_eq (c.ve.ve_partial_frames, 160);
  ck_assert_int_eq (c.s3tokenizer.n_audio_state, 1280);
  ck_assert_int_eq (c.s3tokenizer.n_audio_head, 20);
  ck_assert_int_eq (c.s3tokenizer.n_audio_layer, 6);
  ck_assert_int_eq (c.campplus.block_num_layers.v[1], 24);
  ck_assert_int_eq (c.campplus.block_dilations.v[0], 1);
  ck_assert_int_eq (c.campplus.embedding_size, 192);
}
END_TEST

static char *
write_config (const char *tag, const char *json)
{
  char *dir = cb_test_tmpdir ("config");
  char *name = g_strdup_printf ("%s.json", tag);
  char *path = g_build_filename (dir, name, NULL);
  ck_assert (g_file_set_contents (path, json, -1, NULL));
  g_free (name);
  g_free (dir);
  return path;
}

/* A tiny model's file, like the ones the golden harness writes: only what it changes. */
static const char tiny_json[] =
  "{\n"
  "  \"version\": 1,\n"
  "  \"t3\": { \"text_tokens_dict_size\": 300, \"max_text_tokens\": 64 },\n"
  "  \"llama\": { \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,\n"
  "             \"num_key_value_heads\": 2, \"head_dim\": 16, \"intermediate_size\": 128,\n"
  "             \"rms_norm_eps\": 1e-6, \"rope_scaling\": null,\n"
  "             \"attn_implementation\": \"sdpa\", \"torch_dtype\": \"bfloat16\" },\n"
  "  \"perceiver\": { \"pre_attention_query_size\": 64, \"embedding_dim\": 64 },\n"
  "  \"t3_guard\": { \"llama_aligned_heads\": [[1, 3], [0, 0]], \"long_tail_frames\": 6 },\n"
  "  \"s3gen_hift\": { \"upsample_rates\": [4, 4, 5, 6], \"upsample_kernel_sizes\": [8, 8, 11, 12],\n"
  "                  \"base_channels\": 64,\n"
  "                  \"source_resblock_kernel_sizes\": [3, 3, 3, 3],\n"
  "                  \"source_resblock_dilation_sizes\": [[1], [1, 2], [1], [3]],\n"
  "                  \"istft_params\": { \"n_fft\": 8, \"hop_len\": 1 } },\n"
  "  \"s3gen_flow_decoder\": { \"channels\": [32], \"dropout\": 0.0 }\n"
  "}\n";

START_TEST (test_override_changes_what_it_names)
{
  CbConfig base, c;
  cb_config_init_default (&base);
  cb_config_init_default (&c);
  char *path = write_config ("tiny", tiny_json);
  GError *err = NULL;
  ck_assert_msg (cb_config_load_json (&c, path, &err), "%s", err ? err->message : "?");

  ck_assert_int_eq (c.llama.hidden_size, 64);
  ck_assert_int_eq (c.llama.num_key_value_heads, 2);
  ck_assert (c.llama.rms_norm_eps == 1e-6);
  ck_assert_int_eq (c.llama.rope_type, CB_ROPE_DEFAULT);
  ck_assert_int_eq (c.hift.upsample_rates.n, 4);
  ck_assert_int_eq (c.hift.upsample_rates.v[3], 6);
  ck_assert_int_eq (c.hift.source_resblock_dilation_sizes.v[1].n, 2);
  ck_assert_int_eq (c.hift.source_resblock_dilation_sizes.v[1].v[1], 2);
  ck_assert_int_eq (c.hift.istft_hop_len, 1);
  ck_assert_int_eq (cb_config_text_pos_len (&c), 66);
  ck_assert_int_eq (c.t3_guard.llama_aligned_heads.n, 2);
  ck_assert_int_eq (c.t3_guard.llama_aligned_heads.v[0].v[1], 3);
  ck_assert (c.t3_guard.long_tail_frames == 6.0);
  ck_assert (c.t3_guard.repetition_frames == 5.0); /* not named: upstream's */

  /* Exactly the named fields changed (the ignored keys changed nothing). */
  char *changes = cb_config_describe_changes (&base, &c);
  ck_assert_str_eq (changes,
                    "t3.text_tokens_dict_size=300 t3.max_text_tokens=64 llama.hidden_size=64 "
                    "llama.num_hidden_layers=2 llama.num_attention_heads=4 "
                    "llama.num_key_value_heads=2 llama.head_dim=16 llama.intermediate_size=128 "
                    "llama.rms_norm_eps=1e-06 llama.rope_scaling.rope_type=default "
                    "perceiver.pre_attention_query_size=64 perceiver.embedding_dim=64 "
                    "t3_guard.llama_aligned_heads=[...] t3_guard.long_tail_frames=6 "
                    "s3gen_flow_decoder.channels=[...] s3gen_hift.base_channels=64 "
                    "s3gen_hift.upsample_rates=[...] s3gen_hift.upsample_kernel_sizes=[...] "
                    "s3gen_hift.istft_params.n_fft=8 s3gen_hift.istft_params.hop_len=1 "
                    "s3gen_hift.source_resblock_kernel_sizes=[...] "
                    "s3gen_hift.source_resblock_dilation_sizes=[...]");
  g_free (changes);
  changes = cb_config_describe_changes (&base, &base);
  ck_assert_str_eq (changes, "");
  g_free (changes);
  g_free (path);
}
END_TEST

/* Every key written by cb_config_to_json reads back to the same config, for the defaults and for
 * a modified one; the committed defaults.json loads to the defaults. */
START_TEST (test_json_roundtrip)
{
  CbConfig base, c, back;
  cb_config_init_default (&base);
  cb_config_init_default (&c);
  char *tiny = write_config ("tiny-rt", tiny_json);
  ck_assert (cb_config_load_json (&c, tiny, NULL));
  g_free (tiny);

  const CbConfig *cases[] = { &base, &c };
  for (int i = 0; i < 2; i++) {
    char *json = cb_config_to_json (cases[i]);
    char *path = write_config ("roundtrip", json);
    /* Load onto the other config so that every field must come from the file. */
    back = *cases[1 - i];
    GError *err = NULL;
    ck_assert_msg (cb_config_load_json (&back, path, &err), "%s", err ? err->message : "?");
    char *diff = cb_config_describe_changes (cases[i], &back);
    ck_assert_msg (diff[0] == '\0', "round trip changed: %s", diff);
    g_free (diff);
    g_free (json);
    g_free (path);
  }

  char *defaults = cb_test_data_path ("config/defaults.json");
  back = c;
  GError *err = NULL;
  ck_assert_msg (cb_config_load_json (&back, defaults, &err), "%s", err ? err->message : "?");
  char *diff = cb_config_describe_changes (&base, &back);
  ck_assert_msg (diff[0] == '\0', "defaults.json differs from the defaults: %s", diff);
  g_free (diff);
  g_free (defaults);
}
END_TEST

typedef struct {
  const char *json;
  int code;
  const char *needle1, *needle2;
} BadCase;

static const BadCase bad_cases[] = {
  { "{\"lama\": {}}", CB_ERROR_FORMAT, "unknown group 'lama'", NULL },
  { "{\"llama\": {\"hidden_sise\": 8}}", CB_ERROR_FORMAT, "'hidden_sise'", "group 'llama'" },
  { "{\"llama\": {\"rope_scaling\": {\"factr\": 8}}}", CB_ERROR_FORMAT, "'factr'",
    "'llama.rope_scaling'" },
  { "{\"llama.rope_scaling\": {\"factor\": 2}}", CB_ERROR_FORMAT, "unknown group", NULL },
  { "{\"llama\": {\"hidden_size\": \"1024\"}}", CB_ERROR_FORMAT, "llama.hidden_size",
    "expected an integer, found a string" },
  { "{\"llama\": {\"hidden_size\": 1024.0}}", CB_ERROR_FORMAT, "llama.hidden_size",
    "non-integer" },
  { "{\"llama\": {\"mlp_bias\": 0}}", CB_ERROR_FORMAT, "llama.mlp_bias", "true or false" },
  { "{\"llama\": {\"rms_norm_eps\": \"small\"}}", CB_ERROR_FORMAT, "llama.rms_norm_eps",
    "a number" },
  { "{\"llama\": {\"num_hidden_layers\": 0}}", CB_ERROR_FORMAT, "llama.num_hidden_layers",
    "outside" },
  { "{\"llama\": {\"num_hidden_layers\": -3}}", CB_ERROR_FORMAT, "llama.num_hidden_layers",
    "outside" },
  { "{\"llama\": {\"num_hidden_layers\": 10000000}}", CB_ERROR_FORMAT,
    "llama.num_hidden_layers", "outside" },
  { "{\"llama\": {\"hidden_size\": 4294967360}}", CB_ERROR_FORMAT, "llama.hidden_size",
    "outside" },
  { "{\"llama\": {\"rms_norm_eps\": 0}}", CB_ERROR_FORMAT, "llama.rms_norm_eps", "outside" },
  { "{\"t3_guard\": {\"llama_aligned_heads\": [[12, 16]]}}", CB_ERROR_FORMAT,
    "t3_guard.llama_aligned_heads[0] = [12, 16]", "no such head" },
  { "{\"t3_guard\": {\"llama_aligned_heads\": [[30, 0]]}}", CB_ERROR_FORMAT,
    "t3_guard.llama_aligned_heads[0] = [30, 0]", "llama.num_hidden_layers (30)" },
  { "{\"t3_guard\": {\"llama_aligned_heads\": [[1, 2], [3]]}}", CB_ERROR_FORMAT,
    "t3_guard.llama_aligned_heads[1]", "pair" },
  { "{\"t3_guard\": {\"false_start_head_min\": 2}}", CB_ERROR_FORMAT,
    "t3_guard.false_start_head_min", "outside" },
  { "{\"llama\": {\"hidden_size\": 1000}}", CB_ERROR_FORMAT, "llama.hidden_size (1000)",
    "not divisible by llama.num_attention_heads (16)" },
  { "{\"llama\": {\"num_key_value_heads\": 5}}", CB_ERROR_FORMAT, "llama.num_attention_heads",
    "llama.num_key_value_heads (5)" },
  { "{\"llama\": {\"head_dim\": 32}}", CB_ERROR_UNSUPPORTED, "llama.head_dim (32)", NULL },
  { "{\"llama\": {\"hidden_size\": 2048, \"head_dim\": 128}}", CB_ERROR_FORMAT,
    "perceiver.embedding_dim (1024)", "llama.hidden_size (2048)" },
  { "{\"llama\": {\"hidden_act\": \"gelu\"}}", CB_ERROR_UNSUPPORTED, "llama.hidden_act",
    "\"gelu\"" },
  { "{\"llama\": {\"rope_scaling\": {\"rope_type\": \"dynamic\"}}}", CB_ERROR_UNSUPPORTED,
    "llama.rope_scaling.rope_type", "\"dynamic\"" },
  { "{\"llama\": {\"rope_scaling\": 8}}", CB_ERROR_FORMAT, "llama.rope_scaling",
    "an object or null" },
  { "{\"llama\": {\"rope_scaling\": {\"low_freq_factor\": 4, \"high_freq_factor\": 1}}}",
    CB_ERROR_FORMAT, "low_freq_factor", NULL },
  { "{\"t3\": {\"start_speech_token\": 9000}}", CB_ERROR_FORMAT, "t3.start_speech_token (9000)",
    "speech_tokens_dict_size (8194)" },
  { "{\"t3\": {\"speaker_embed_size\": 128}}", CB_ERROR_FORMAT, "t3.speaker_embed_size (128)",
    "ve.speaker_embed_size (256)" },
  { "{\"t3\": 5}", CB_ERROR_FORMAT, "group 't3'", "found an integer" },
  { "{\"s3gen_hift\": {\"upsample_rates\": [8, 5]}}", CB_ERROR_FORMAT,
    "s3gen_hift.upsample_rates (2 entries)", "same length" },
  { "{\"s3gen_hift\": {\"resblock_kernel_sizes\": [3, 7]}}", CB_ERROR_FORMAT,
    "resblock_kernel_sizes (2 entries)", "resblock_dilation_sizes (3)" },
  { "{\"s3gen_hift\": {\"upsample_rates\": [8, 5, 4], \"upsample_kernel_sizes\": [16, 11, 8]}}",
    CB_ERROR_FORMAT, "samples per mel frame", NULL },
  { "{\"s3gen_hift\": {\"upsample_kernel_sizes\": [16, 12, 7]}}", CB_ERROR_FORMAT,
    "upsample_kernel_sizes[1] (12)", NULL },
  { "{\"s3gen_hift\": {\"upsample_rates\": [1,1,1,1,1,1,1,1,1]}}", CB_ERROR_FORMAT,
    "s3gen_hift.upsample_rates", "9 entries" },
  { "{\"s3gen_hift\": {\"upsample_rates\": [8, 0, 3]}}", CB_ERROR_FORMAT,
    "s3gen_hift.upsample_rates", "element 0" },
  { "{\"s3gen_hift\": {\"upsample_rates\": [8, \"5\", 3]}}", CB_ERROR_FORMAT,
    "s3gen_hift.upsample_rates", "array of integers" },
  { "{\"s3gen_hift\": {\"resblock_dilation_sizes\": [1, 3, 5]}}", CB_ERROR_FORMAT,
    "s3gen_hift.resblock_dilation_sizes", "array of integers" },
  { "{\"s3gen_hift\": {\"istft_params\": null}}", CB_ERROR_FORMAT, "s3gen_hift.istft_params",
    "an object" },
  { "{\"s3gen_flow_decoder\": {\"channels\": [256, 256]}}", CB_ERROR_UNSUPPORTED,
    "s3gen_flow_decoder.channels", "2 levels" },
  { "{\"s3gen_flow_decoder\": {\"in_channels\": 240}}", CB_ERROR_FORMAT,
    "s3gen_flow_decoder.in_channels (240)", NULL },
  { "{\"s3gen_flow_encoder\": {\"attention_heads\": 7}}", CB_ERROR_FORMAT,
    "s3gen_flow_encoder.output_size (512)", "attention_heads (7)" },
  { "{\"campplus\": {\"block_dilations\": [1, 2]}}", CB_ERROR_FORMAT, "campplus.block_num_layers",
    "same length" },
  { "{\"s3tokenizer\": {\"n_codebook_size\": 4096}}", CB_ERROR_FORMAT,
    "s3tokenizer.n_codebook_size (4096)", "s3gen_flow.vocab_size (6561)" },
  { "{\"version\": 2}", CB_ERROR_UNSUPPORTED, "\"version\"", NULL },
  { "[1, 2]", CB_ERROR_FORMAT, "expected a JSON object", "an array" },
  { "{\"llama\": {\"hidden_size\": 64,}}", CB_ERROR_FORMAT, "not valid JSON", NULL },
  { "{\"t3\": {\"encoder_type\": \"voice\xff\"}}", CB_ERROR_FORMAT, "UTF-8", NULL },
  { "", CB_ERROR_FORMAT, NULL, NULL },
  { "{\"llama\": {\"hidden_size\": 64, \"hidden_size\": 128}}", CB_ERROR_FORMAT,
    "'hidden_size' appears more than once", "in 'llama'" },
  { "{\"llama\": {\"rope_scaling\": {\"factor\": 2, \"fact\\u006fr\": 3}}}", CB_ERROR_FORMAT,
    "'factor' appears more than once", "in 'rope_scaling'" },
  { "{\"t3\": {}, \"t3\": {}}", CB_ERROR_FORMAT, "'t3' appears more than once",
    "top-level object" },
};

START_TEST (test_bad_files)
{
  const BadCase *bc = &bad_cases[_i];
  CbConfig base, c;
  cb_config_init_default (&base);
  cb_config_init_default (&c);
  char *tag = g_strdup_printf ("bad-%02d", _i);
  char *path = write_config (tag, bc->json);
  GError *err = NULL;
  ck_assert_msg (!cb_config_load_json (&c, path, &err), "case %d loaded: %s", _i, bc->json);
  ck_assert_msg (err->domain == CB_ERROR && err->code == bc->code, "case %d: code %d want %d: %s",
                 _i, err->code, bc->code, err->message);
  ck_assert_msg (strstr (err->message, path), "case %d: path not in: %s", _i, err->message);
  if (bc->needle1)
    ck_assert_msg (strstr (err->message, bc->needle1), "case %d: '%s' not in: %s", _i,
                   bc->needle1, err->message);
  if (bc->needle2)
    ck_assert_msg (strstr (err->message, bc->needle2), "case %d: '%s' not in: %s", _i,
                   bc->needle2, err->message);
  /* A failed load leaves the config untouched. */
  char *diff = cb_config_describe_changes (&base, &c);
  ck_assert_msg (diff[0] == '\0', "case %d changed the config: %s", _i, diff);
  g_free (diff);
  g_error_free (err);
  g_free (path);
  g_free (tag);
}
END_TEST

START_TEST (test_validate_in_memory)
{
  CbConfig c;
  GError *err = NULL;
  cb_config_init_default (&c);
  c.flow_decoder.channels.n = 0;
  ck_assert (!cb_config_validate (&c, &err));
  ck_assert_int_eq (err->code, CB_ERROR_FORMAT);
  ck_assert_ptr_nonnull (strstr (err->message, "s3gen_flow_decoder.channels"));
  g_clear_error (&err);

  cb_config_init_default (&c);
  c.hift.resblock_dilation_sizes.v[2].v[0] = 0;
  ck_assert (!cb_config_validate (&c, &err));
  ck_assert_ptr_nonnull (strstr (err->message, "s3gen_hift.resblock_dilation_sizes"));
  g_clear_error (&err);

  cb_config_init_default (&c);
  c.cfm.n_timesteps = 0;
  ck_assert (!cb_config_validate (&c, &err));
  ck_assert_ptr_nonnull (strstr (err->message, "s3gen_cfm.n_timesteps"));
  g_clear_error (&err);

  cb_config_init_default (&c);
  char *missing = g_build_filename (g_get_tmp_dir (), "no-such-dir-cb", "config.json", NULL);
  ck_assert (!cb_config_load_json (&c, missing, &err));
  ck_assert_int_eq (err->code, CB_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull (strstr (err->message, missing));
  g_clear_error (&err);
  g_free (missing);
}
END_TEST

/* Hostile files end in an error, never a crash: json-glib recurses per nesting level, and the
 * reader must not read a huge file into memory. */
START_TEST (test_hostile_files)
{
  CbConfig c;
  GError *err = NULL;
  cb_config_init_default (&c);
  GString *deep = g_string_new (NULL);
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, ']');
  char *path = write_config ("deep", deep->str);
  ck_assert (!cb_config_load_json (&c, path, &err));
  ck_assert_int_eq (err->code, CB_ERROR_FORMAT);
  ck_assert_ptr_nonnull (strstr (err->message, "nested deeper"));
  g_clear_error (&err);
  g_free (path);

  /* Over the 1 MiB limit, even if it were valid. */
  g_string_truncate (deep, 0);
  g_string_append (deep, "{\"version\": 1");
  while (deep->len < (2u << 20))
    g_string_append (deep, "                                ");
  g_string_append_c (deep, '}');
  path = write_config ("huge", deep->str);
  ck_assert (!cb_config_load_json (&c, path, &err));
  ck_assert_int_eq (err->code, CB_ERROR_FORMAT);
  ck_assert_ptr_nonnull (strstr (err->message, "limit"));
  g_clear_error (&err);
  g_free (path);

  /* A raw control character inside a string (json-glib alone would accept it). */
  path = write_config ("control", "{\"t3\": {\"encoder_type\": \"voice\001encoder\"}}");
  ck_assert (!cb_config_load_json (&c, path, &err));
  ck_assert_int_eq (err->code, CB_ERROR_FORMAT);
  ck_assert_ptr_nonnull (strstr (err->message, "control character"));
  g_clear_error (&err);
  g_free (path);
  g_string_free (deep, TRUE);
}
END_TEST

/* Deterministic mutations of defaults.json: each load succeeds (and then validates) or fails with
 * a CB_ERROR naming the file, leaving the config as it was; never a crash (ASan checks). */
START_TEST (test_mutation_loop)
{
  char *src = cb_test_data_path ("config/defaults.json");
  char *text;
  gsize len;
  ck_assert (g_file_get_contents (src, &text, &len, NULL));
  g_free (src);
  GRand *rng = g_rand_new_with_seed (4242);
  int loaded = 0, failed = 0;
  for (int iter = 0; iter < 300; iter++) {
    char *buf = g_memdup2 (text, len);
    gsize n = len;
    if (g_rand_boolean (rng)) {
      n = (gsize) g_rand_int_range (rng, 0, (gint32) len);
    } else {
      for (int k = g_rand_int_range (rng, 1, 4); k > 0; k--)
        buf[g_rand_int_range (rng, 0, (gint32) len)] =
          "{}[]\",:0123456789-.e \\tfnul"[g_rand_int_range (rng, 0, 26)];
    }
    char *dir = cb_test_tmpdir ("config-mut");
    char *path = g_build_filename (dir, "m.json", NULL);
    ck_assert (g_file_set_contents (path, buf, (gssize) n, NULL));
    CbConfig base, c;
    cb_config_init_default (&base);
    cb_config_init_default (&c);
    GError *err = NULL;
    if (cb_config_load_json (&c, path, &err)) {
      ck_assert (cb_config_validate (&c, NULL));
      loaded++;
    } else {
      ck_assert_msg (err->domain == CB_ERROR && strstr (err->message, path), "%s", err->message);
      char *diff = cb_config_describe_changes (&base, &c);
      ck_assert_str_eq (diff, "");
      g_free (diff);
      g_error_free (err);
      failed++;
    }
    g_unlink (path);
    g_rmdir (dir);
    g_free (path);
    g_free (dir);
    g_free (buf);
  }
  ck_assert_int_gt (loaded, 0);
  ck_assert_int_gt (failed, 100);
  g_rand_free (rng);
  g_free (text);
}
END_TEST

static Suite *
config_suite (void)
{
  Suite *s = suite_create ("config");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_defaults_are_upstream);
  tcase_add_test (tc, test_override_changes_what_it_names);
  tcase_add_test (tc, test_json_roundtrip);
  tcase_add_loop_test (tc, test_bad_files, 0, G_N_ELEMENTS (bad_cases));
  tcase_add_test (tc, test_validate_in_memory);
  tcase_add_test (tc, test_hostile_files);
  tcase_add_test (tc, test_mutation_loop);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (config_suite)
