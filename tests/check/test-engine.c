/* Building the engine from a model directory: every file opened and validated once, errors that
 * name the broken file, the threads setting honoured, synthesis available. */
#include <string.h>

#include "cb-alloc-count.h"
#include "cb-check.h"
#include "chatterbox.h"
#include "config.h"
#include "engine-internal.h"
#include "model-fixture.h"
#include "ops.h"
#include "t3-decode.h"
#include "t3-guard.h"
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
  ck_assert (cb_engine_synthesis_available (e, &err));
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

/* ---- utterances (the tiny model: random weights, real tokenizer and voice) ---- */

typedef struct {
  GArray *tokens;        /* as drawn */
  GArray *speech;        /* post-processed */
} Run;

static void
run_clear (Run *r)
{
  g_array_unref (r->tokens);
  g_array_unref (r->speech);
}

static Run
speak (CbUtterance *u, const char *text, guint64 seed, double exaggeration)
{
  CbUtteranceParams p;
  cb_utterance_params_init (&p);
  p.seed = seed;
  p.max_tokens = 40;
  p.exaggeration = exaggeration;
  GError *err = NULL;
  ck_assert_msg (cb_utterance_begin (u, text, NULL, &p, &err), "%s", err ? err->message : "");
  Run r = { g_array_new (FALSE, FALSE, sizeof (gint32)), g_array_new (FALSE, FALSE, sizeof (gint32)) };
  gboolean done = FALSE;
  while (!done) {
    gint32 t;
    ck_assert_msg (cb_utterance_next (u, &t, &done, &err), "%s", err ? err->message : "");
    g_array_append_val (r.tokens, t);
  }
  ck_assert (r.tokens->len >= 1 && r.tokens->len <= 40);
  int n = 0;
  const gint32 *all = cb_utterance_tokens (u, &n);
  ck_assert_int_eq (n, (int) r.tokens->len);
  ck_assert (memcmp (all, r.tokens->data, n * sizeof (gint32)) == 0);
  const gint32 *sp = cb_utterance_speech_tokens (u, &n);
  g_array_append_vals (r.speech, sp, n);
  for (int i = 0; i < n; i++)
    ck_assert (sp[i] >= 0 && sp[i] < 6561);
  /* no more tokens once done */
  gint32 t;
  ck_assert (!cb_utterance_next (u, &t, &done, &err));
  ck_assert_int_eq (err->code, CB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  return r;
}

static void
assert_same_run (const Run *a, const Run *b)
{
  ck_assert_int_eq (a->tokens->len, b->tokens->len);
  ck_assert (memcmp (a->tokens->data, b->tokens->data, a->tokens->len * sizeof (gint32)) == 0);
  ck_assert_int_eq (a->speech->len, b->speech->len);
}

/* Two utterances in a row on one engine and stream give what two fresh engines give; the second
 * begin rebuilds nothing: the built-in voice's conditioning was primed at build (no miss at all
 * at the default exaggeration), and another exaggeration is computed once, then cached. */
START_TEST (test_utterances_in_a_row)
{
  char *dir = cb_test_make_model_dir ();
  GError *err = NULL;
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  CbUtterance *u = cb_utterance_new (e, 64, 40, &err);
  ck_assert_msg (u != NULL, "%s", err ? err->message : "");
  Run a1 = speak (u, "Hello there, this is the first one.", 7, 0.5);
  ck_assert_int_eq (cb_utterance_cond_misses (u), 0);
  Run a2 = speak (u, "and a second sentence", 11, 0.5);
  ck_assert_int_eq (cb_utterance_cond_misses (u), 0);
  int n = 0;
  cb_utterance_text_ids (u, &n);
  ck_assert_int_gt (n, 2);
  ck_assert_str_eq (cb_utterance_text (u), "And a second sentence.");
  Run a3 = speak (u, "and a second sentence", 11, 0.7);
  ck_assert_int_eq (cb_utterance_cond_misses (u), 1);
  Run a4 = speak (u, "and a second sentence", 11, 0.7);
  ck_assert_int_eq (cb_utterance_cond_misses (u), 1);
  assert_same_run (&a3, &a4);

  CbEngine *f1 = engine_from (dir, 1, &err), *f2 = engine_from (dir, 1, &err);
  ck_assert (f1 && f2);
  CbUtterance *v1 = cb_utterance_new (f1, 64, 40, &err), *v2 = cb_utterance_new (f2, 64, 40, &err);
  ck_assert (v1 && v2);
  Run b1 = speak (v1, "Hello there, this is the first one.", 7, 0.5);
  Run b2 = speak (v2, "and a second sentence", 11, 0.5);
  assert_same_run (&a1, &b1);
  assert_same_run (&a2, &b2);
  Run b3 = speak (v1, "Hello there, this is the first one.", 8, 0.5);
  ck_assert_msg (b3.tokens->len != a1.tokens->len
                   || memcmp (b3.tokens->data, a1.tokens->data, a1.tokens->len * 4) != 0,
                 "seeds 7 and 8 gave the same %u tokens", a1.tokens->len);
  Run *runs[] = { &a1, &a2, &a3, &a4, &b1, &b2, &b3 };
  for (guint i = 0; i < G_N_ELEMENTS (runs); i++)
    run_clear (runs[i]);
  cb_utterance_free (v1);
  cb_utterance_free (v2);
  cb_engine_free (f1);
  cb_engine_free (f2);
  cb_utterance_free (u);
  cb_engine_free (e);
  g_free (dir);
}
END_TEST

/* Clear errors for what an utterance cannot take; the stream stays usable afterwards. */
START_TEST (test_utterance_errors)
{
  char *dir = cb_test_make_model_dir ();
  GError *err = NULL;
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  CbUtterance *u = cb_utterance_new (e, 8, 10, &err);
  ck_assert (u != NULL);
  CbUtteranceParams p;
  cb_utterance_params_init (&p);
  ck_assert (p.cfg_weight == 0.5 && p.temperature == 0.8 && p.min_p == 0.05 && p.top_p == 1.0
             && p.repetition_penalty == 1.2 && p.exaggeration == 0.5 && p.max_tokens == 1000
             && !p.alignment_guard);
  p.max_tokens = 10;
  static const struct { const char *text; const char *needle; } cases[] = {
    { "", "empty" },
    { " \t\n ", "empty" },
    { "\xff\xfe", "UTF-8" },
    { "one two three four five six seven eight nine ten eleven", "split it" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    ck_assert (!cb_utterance_begin (u, cases[i].text, NULL, &p, &err));
    ck_assert_int_eq (err->code, CB_ERROR_INVALID_ARGUMENT);
    ck_assert_msg (strstr (err->message, cases[i].needle), "%s", err->message);
    g_clear_error (&err);
  }
  gint32 t;
  gboolean done;
  ck_assert (!cb_utterance_next (u, &t, &done, &err)); /* nothing begun */
  g_clear_error (&err);
  p.max_tokens = 0;
  ck_assert (!cb_utterance_begin (u, "Hi.", NULL, &p, &err));
  ck_assert_int_eq (err->code, CB_ERROR_INVALID_ARGUMENT);
  ck_assert_msg (strstr (err->message, "max-tokens"), "%s", err->message);
  g_clear_error (&err);
  p.max_tokens = 11; /* more than the stream was made for */
  ck_assert (!cb_utterance_begin (u, "Hi.", NULL, &p, &err));
  g_clear_error (&err);
  p.max_tokens = 10;
  p.temperature = 0;
  ck_assert (!cb_utterance_begin (u, "Hi.", NULL, &p, &err));
  ck_assert_msg (strstr (err->message, "temperature"), "%s", err->message);
  g_clear_error (&err);
  p.temperature = 0.8;
  p.alignment_guard = TRUE;
  ck_assert_msg (cb_utterance_begin (u, "Hi.", NULL, &p, &err), "%s", err ? err->message : "");
  for (done = FALSE; !done;)
    ck_assert (cb_utterance_next (u, &t, &done, &err));
  cb_utterance_free (u);
  cb_engine_free (e);
  g_free (dir);
}
END_TEST

/* BF16 builds and speaks; the config's guard thresholds reach the decoder's guard. */
START_TEST (test_engine_options)
{
  char *dir = cb_test_make_model_dir ();
  char *config_path = g_build_filename (dir, "chatterbox-config.json", NULL);
  CbConfig c;
  cb_config_init_default (&c);
  GError *err = NULL;
  ck_assert (cb_config_load_json (&c, config_path, &err));
  CbEngineParams p;
  cb_engine_params_init (&p);
  ck_assert_int_eq (p.precision, CB_PRECISION_FP32);
  p.model_location = dir;
  p.threads = 1;
  p.precision = CB_PRECISION_BF16;
  CbEngine *e = cb_engine_new (&p, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  CbUtterance *u = cb_utterance_new (e, 0, 40, &err);
  ck_assert (u);
  Run r = speak (u, "Hello.", 1, 0.5);
  run_clear (&r);
  cb_utterance_free (u);
  cb_engine_free (e);

  c.t3_guard.long_tail_frames = 6;
  c.t3_guard.force_value = 1024;
  char *json = cb_config_to_json (&c);
  cb_test_model_dir_replace (dir, "chatterbox-config.json", json, -1);
  e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  u = cb_utterance_new (e, 0, 40, &err);
  ck_assert (u);
  const CbT3GuardConfig *gc = cb_t3_guard_config (cb_t3_decoder_guard (cb_utterance_decoder (u)));
  ck_assert_float_eq (gc->long_tail_frames, 6.0f);
  ck_assert_float_eq (gc->force_value, 1024.0f);
  ck_assert_int_eq (gc->repetition_skip_cols, c.t3_guard.repetition_skip_cols);
  ck_assert_int_eq (gc->n_heads, c.t3_guard.llama_aligned_heads.n);
  cb_utterance_free (u);
  cb_engine_free (e);
  g_free (json);
  g_free (config_path);
  g_free (dir);
}
END_TEST


/* After a stream's first utterance (same voice), beginning the next one allocates nothing: text
 * normalisation and the tokenizer write into the stream's buffers, T3 reuses its state and the
 * voice's cached prefix, the audio stream its arena. */
START_TEST (test_begin_allocates_nothing)
{
#ifdef COUNT_ALLOCS
  char *dir = cb_test_make_model_dir ();
  GError *err = NULL;
  CbEngine *e = engine_from (dir, 1, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  CbUtterance *u = cb_utterance_new (e, 0, 20, &err);
  ck_assert (u != NULL);
  CbUtteranceParams p;
  cb_utterance_params_init (&p);
  p.max_tokens = 20;
  ck_assert (cb_utterance_begin (u, "Hello there, this is the first one.", NULL, &p, &err));
  gboolean done = FALSE;
  while (!done) {
    const float *pcm;
    gsize n;
    ck_assert_msg (cb_utterance_read_audio (u, &pcm, &n, &done, &err), "%s", err ? err->message : "");
  }
  __atomic_store_n (&n_allocs, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n (&counting_allocs, 1, __ATOMIC_SEQ_CST);
  gboolean ok = cb_utterance_begin (u, "And a second, different sentence!", NULL, &p, NULL);
  __atomic_store_n (&counting_allocs, 0, __ATOMIC_SEQ_CST);
  ck_assert (ok);
  ck_assert_msg (n_allocs == 0, "%d heap allocations in the second begin", n_allocs);
  cb_utterance_free (u);
  cb_engine_free (e);
  g_free (dir);
#endif
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
  tc = tcase_create ("utterance");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_utterances_in_a_row);
  tcase_add_test (tc, test_begin_allocates_nothing);
  tcase_add_test (tc, test_utterance_errors);
  tcase_add_test (tc, test_engine_options);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (engine_suite)
