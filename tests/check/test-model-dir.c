/* Model directory discovery: explicit location, $CHATTERBOX_MODEL_DIR, the Hugging Face cache
 * layout with HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME, and the not-found report. */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "cb-check.h"
#include "model-dir.h"

static void
make_model_dir (const char *dir, const char *skip)
{
  g_mkdir_with_parents (dir, 0755);
  for (int i = 0; cb_model_required_files[i]; i++) {
    if (skip && strcmp (skip, cb_model_required_files[i]) == 0)
      continue;
    char *p = g_build_filename (dir, cb_model_required_files[i], NULL);
    ck_assert (g_file_set_contents (p, "x", 1, NULL));
    g_free (p);
  }
}

static void
clear_env (void)
{
  const char *vars[] = { "CHATTERBOX_MODEL_DIR", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME",
                         "XDG_CACHE_HOME", NULL };
  for (int i = 0; vars[i]; i++)
    g_unsetenv (vars[i]);
}

/* Builds <root>/models--ResembleAI--chatterbox/{refs/main,snapshots/<rev>/…}; returns the snapshot. */
static char *
make_hf_cache (const char *hub, const char *rev, gboolean write_ref, const char *skip)
{
  char *repo = g_build_filename (hub, "models--ResembleAI--chatterbox", NULL);
  char *snap = g_build_filename (repo, "snapshots", rev, NULL);
  make_model_dir (snap, skip);
  if (write_ref) {
    char *refs = g_build_filename (repo, "refs", NULL);
    g_mkdir_with_parents (refs, 0755);
    char *ref = g_build_filename (refs, "main", NULL);
    ck_assert (g_file_set_contents (ref, rev, -1, NULL));
    g_free (ref);
    g_free (refs);
  }
  g_free (repo);
  return snap;
}

START_TEST (test_explicit_dir)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *dir = g_build_filename (tmp, "m", NULL);
  make_model_dir (dir, NULL);
  GError *err = NULL;
  char *found = cb_model_dir_locate (dir, &err);
  ck_assert_msg (found != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (found, dir);
  g_free (found);
  g_free (dir);
  g_free (tmp);
}
END_TEST

START_TEST (test_explicit_incomplete_is_strict)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *dir = g_build_filename (tmp, "m", NULL);
  make_model_dir (dir, "conds.pt");
  /* A complete cache exists too: it must not be used in place of the explicit location. */
  char *hub = g_build_filename (tmp, "hub", NULL);
  char *snap = make_hf_cache (hub, "0123abcd", TRUE, NULL);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  GError *err = NULL;
  char *found = cb_model_dir_locate (dir, &err);
  ck_assert_ptr_null (found);
  ck_assert_int_eq (err->code, CB_ERROR_NOT_FOUND);
  ck_assert_msg (strstr (err->message, "model-location") && strstr (err->message, "missing conds.pt"),
                 "%s", err->message);
  ck_assert_ptr_nonnull (strstr (err->message, dir));
  ck_assert_ptr_nonnull (strstr (err->message, "fetch-model.py"));
  g_error_free (err);
  g_free (snap);
  g_free (hub);
  g_free (dir);
  g_free (tmp);
}
END_TEST

START_TEST (test_env_dir)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *dir = g_build_filename (tmp, "env", NULL);
  make_model_dir (dir, NULL);
  g_setenv ("CHATTERBOX_MODEL_DIR", dir, TRUE);
  GError *err = NULL;
  char *found = cb_model_dir_locate (NULL, &err);
  ck_assert_msg (found != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (found, dir);
  g_free (found);
  /* An explicit location wins over the environment. */
  char *other = g_build_filename (tmp, "other", NULL);
  make_model_dir (other, NULL);
  found = cb_model_dir_locate (other, &err);
  ck_assert_str_eq (found, other);
  g_free (found);
  g_free (other);
  g_free (dir);
  g_free (tmp);
}
END_TEST

START_TEST (test_hf_cache_env_precedence)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *home = g_build_filename (tmp, "hfhome", NULL);
  char *home_hub = g_build_filename (home, "hub", NULL);
  char *snap_home = make_hf_cache (home_hub, "aaaa", TRUE, NULL);
  char *xdg = g_build_filename (tmp, "xdg", NULL);
  char *xdg_hub = g_build_filename (xdg, "huggingface", "hub", NULL);
  char *snap_xdg = make_hf_cache (xdg_hub, "bbbb", TRUE, NULL);
  char *hubc = g_build_filename (tmp, "hubcache", NULL);
  char *snap_hubc = make_hf_cache (hubc, "cccc", TRUE, NULL);
  GError *err = NULL;

  g_setenv ("XDG_CACHE_HOME", xdg, TRUE);
  char *found = cb_model_dir_locate (NULL, &err);
  ck_assert_str_eq (found, snap_xdg);
  g_free (found);

  g_setenv ("HF_HOME", home, TRUE);
  found = cb_model_dir_locate (NULL, &err);
  ck_assert_str_eq (found, snap_home);
  g_free (found);

  g_setenv ("HF_HUB_CACHE", hubc, TRUE);
  found = cb_model_dir_locate (NULL, &err);
  ck_assert_str_eq (found, snap_hubc);
  g_free (found);

  /* A cache root or repo folder given as an explicit location is searched the same way. */
  found = cb_model_dir_locate (home_hub, &err);
  ck_assert_str_eq (found, snap_home);
  g_free (found);

  g_free (snap_home); g_free (home_hub); g_free (home);
  g_free (snap_xdg); g_free (xdg_hub); g_free (xdg);
  g_free (snap_hubc); g_free (hubc);
  g_free (tmp);
}
END_TEST

START_TEST (test_hf_cache_ref_and_incomplete_snapshots)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *hub = g_build_filename (tmp, "hub", NULL);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  /* refs/main points at an interrupted download; another snapshot is complete. */
  char *bad = make_hf_cache (hub, "1111", TRUE, "s3gen.safetensors");
  char *good = make_hf_cache (hub, "2222", FALSE, NULL);
  GError *err = NULL;
  char *found = cb_model_dir_locate (NULL, &err);
  ck_assert_msg (found != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (found, good);
  g_free (found);

  /* Now both incomplete: the report names each snapshot and what it lacks. */
  char *p = g_build_filename (good, "tokenizer.json", NULL);
  g_unlink (p);
  g_free (p);
  found = cb_model_dir_locate (NULL, &err);
  ck_assert_ptr_null (found);
  ck_assert_msg (strstr (err->message, "missing s3gen.safetensors") && strstr (err->message, "missing tokenizer.json")
                 && strstr (err->message, "Hugging Face cache") && strstr (err->message, "ResembleAI/chatterbox"),
                 "%s", err->message);
  g_clear_error (&err);

  /* A dangling symlink (interrupted download) does not count as a file. */
  p = g_build_filename (good, "tokenizer.json", NULL);
  ck_assert_int_eq (symlink ("../../blobs/nonexistent", p), 0);
  found = cb_model_dir_locate (NULL, &err);
  ck_assert_ptr_null (found);
  g_clear_error (&err);
  g_free (p);

  /* refs/main with a path-like value is ignored, not followed. */
  char *ref = g_build_filename (hub, "models--ResembleAI--chatterbox", "refs", "main", NULL);
  ck_assert (g_file_set_contents (ref, "../../../etc", -1, NULL));
  found = cb_model_dir_locate (NULL, &err);
  ck_assert_ptr_null (found);
  ck_assert_ptr_null (strstr (err->message, "/etc"));
  g_clear_error (&err);
  g_free (ref);

  g_free (bad);
  g_free (good);
  g_free (hub);
  g_free (tmp);
}
END_TEST

START_TEST (test_nothing_anywhere)
{
  clear_env ();
  char *tmp = cb_test_tmpdir ("model-dir");
  char *xdg = g_build_filename (tmp, "empty-xdg", NULL);
  g_setenv ("XDG_CACHE_HOME", xdg, TRUE);
  GError *err = NULL;
  char *found = cb_model_dir_locate (NULL, &err);
  ck_assert_ptr_null (found);
  ck_assert_int_eq (err->code, CB_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull (strstr (err->message, xdg));
  ck_assert_ptr_nonnull (strstr (err->message, "does not exist"));
  g_error_free (err);
  g_free (xdg);
  g_free (tmp);
}
END_TEST

static Suite *
model_dir_suite (void)
{
  Suite *s = suite_create ("model-dir");
  TCase *tc = tcase_create ("locate");
  tcase_add_test (tc, test_explicit_dir);
  tcase_add_test (tc, test_explicit_incomplete_is_strict);
  tcase_add_test (tc, test_env_dir);
  tcase_add_test (tc, test_hf_cache_env_precedence);
  tcase_add_test (tc, test_hf_cache_ref_and_incomplete_snapshots);
  tcase_add_test (tc, test_nothing_anywhere);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (model_dir_suite)
