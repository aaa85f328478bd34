/* Building the engine from a model directory: every file opened and validated once, errors that
 * name the broken file, the threads setting honoured, and the honest "not complete yet" answer. */
#include <string.h>

#include "cb-check.h"
#include "chatterbox.h"
#include "config.h"
#include "model-fixture.h"
#include "ops.h"
#include "weights-layout.h"

static CbEngine *
engine_from (const char *dir, int threads, GError **err)
{
  CbEngineParams p;
  cb_engine_params_init (&p);
  p.model_location = dir;
  p.threads = threads;
  return cb_engine_new (&p, err);
}

START_TEST (test_builds_from_valid_dir)
{
  char *dir = cb_test_make_model_dir ();
  GError *err = NULL;
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cb_engine_model_dir (e), dir);
  ck_assert_int_eq (cb_engine_threads (e), 1);
  ck_assert (!cb_engine_synthesis_available (e, &err));
  ck_assert_int_eq (err->code, CB_ERROR_NOT_IMPLEMENTED);
  ck_assert_ptr_nonnull (strstr (err->message, "not complete"));
  g_clear_error (&err);
  cb_engine_free (e);

  e = engine_from (dir, 2, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  ck_assert_int_eq (cb_engine_threads (e), 2);
  cb_engine_free (e);
  g_free (dir);
}
END_TEST

/* Each damaged file must make cb_engine_new fail with an error naming that file. */
START_TEST (test_broken_file_is_named)
{
  static const struct { const char *file; const char *bytes; const char *expect; } cases[] = {
    { "t3_cfg.safetensors", "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", "t3_cfg.safetensors" },
    { "s3gen.safetensors", "short", "s3gen.safetensors" },
    { "ve.safetensors", "\xff\xff\xff\xff\xff\xff\xff\x7f", "ve.safetensors" },
    { "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"}}", "tokenizer.json" },
    { "conds.pt", "PK\x03\x04 not really a zip", "conds.pt" },
    { "chatterbox-config.json", "{\"llama\": {\"hidden_sise\": 64}}", "hidden_sise" },
  };
  GError *err = NULL;
  char *dir = cb_test_make_model_dir ();
  char *pristine = cb_test_make_model_dir ();
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    cb_test_model_dir_replace (dir, cases[i].file, cases[i].bytes, -1);
    CbEngine *e = engine_from (dir, 1, &err);
    ck_assert_msg (e == NULL, "engine built despite a broken %s", cases[i].file);
    ck_assert_msg (strstr (err->message, cases[i].expect) != NULL, "%s: error does not name it: %s",
                   cases[i].file, err->message);
    g_clear_error (&err);
    /* restore */
    char *src = g_build_filename (pristine, cases[i].file, NULL);
    char *dst = g_build_filename (dir, cases[i].file, NULL);
    char *bytes;
    gsize len;
    if (g_file_get_contents (src, &bytes, &len, NULL)) {
      cb_test_model_dir_replace (dir, cases[i].file, bytes, (gssize) len);
      g_free (bytes);
    } else {
      g_unlink (dst);
    }
    g_free (src);
    g_free (dst);
  }
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "restored directory does not load: %s", err ? err->message : "");
  cb_engine_free (e);
  g_free (dir);
  g_free (pristine);
}
END_TEST

/* A config beside the weights is applied and validated against the other files: a voice saved for
 * 256-wide speaker embeddings does not fit a model configured for 128 (weights regenerated for
 * that config, so that they pass and the voice is what fails). */
START_TEST (test_config_is_applied)
{
  char *dir = cb_test_make_model_dir ();
  char *config_path = g_build_filename (dir, "chatterbox-config.json", NULL);
  CbConfig c;
  cb_config_init_default (&c);
  GError *err = NULL;
  ck_assert_msg (cb_config_load_json (&c, config_path, &err), "%s", err ? err->message : "");
  c.t3.speaker_embed_size = c.ve.speaker_embed_size = 128;
  char *json = cb_config_to_json (&c);
  cb_test_model_dir_replace (dir, "chatterbox-config.json", json, -1);
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++) {
    CbWeightsLayout *l = cb_weights_layout_new ((CbWeightsFile) w, &c);
    char *path = g_build_filename (dir, cb_weights_file_name ((CbWeightsFile) w), NULL);
    ck_assert_msg (cb_weights_write_random (path, l, 1, FALSE, 1u << 30, &err), "%s", err ? err->message : "");
    g_free (path);
    cb_weights_layout_free (l);
  }
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_ptr_null (e);
  ck_assert_msg (strstr (err->message, "conds.pt") && strstr (err->message, "speaker_emb"), "%s", err->message);
  g_clear_error (&err);
  g_free (json);
  g_free (config_path);
  g_free (dir);
}
END_TEST

START_TEST (test_missing_dir)
{
  GError *err = NULL;
  CbEngine *e = engine_from ("/nonexistent/model", 1, &err);
  ck_assert_ptr_null (e);
  ck_assert_int_eq (err->code, CB_ERROR_NOT_FOUND);
  g_error_free (err);
}
END_TEST

static Suite *
engine_suite (void)
{
  Suite *s = suite_create ("engine");
  TCase *tc = tcase_create ("build");
  tcase_add_test (tc, test_builds_from_valid_dir);
  tcase_add_test (tc, test_broken_file_is_named);
  tcase_add_test (tc, test_config_is_applied);
  tcase_add_test (tc, test_missing_dir);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (engine_suite)
