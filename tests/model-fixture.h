/* model-fixture.h — a complete, valid model directory assembled from the committed fixtures, for
 * the engine and element tests (GLib only, so both Check flavours can include it).
 *
 * Until the golden harness's small random-weight model lands, the three weight files are one small
 * valid safetensors file (the foundation validates containers; the model issues validate every
 * tensor), tokenizer.json is the BPE trained by tests/reference/make_text_golden.py, and conds.pt
 * is the full-size voice written by upstream's own Conditionals.save
 * (tests/reference/make_conds_fixtures.py). */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

static const struct {
  const char *name;
  const char *fixture;
} cb_model_fixture_files[] = {
  { "t3_cfg.safetensors", "safetensors/valid.safetensors" },
  { "s3gen.safetensors", "safetensors/valid.safetensors" },
  { "ve.safetensors", "safetensors/valid.safetensors" },
  { "tokenizer.json", "text/tokenizer.json" },
  { "conds.pt", "conds/conds_full.pt" },
};

/* Copies the fixtures into a new directory under $CB_TEST_TMPDIR (or the system temp dir) and
 * returns its path (g_free). Copies, not links, so a test may damage one file. */
static inline char *
cb_test_make_model_dir (void)
{
  const char *data = g_getenv ("CB_TEST_DATA");
  const char *tmp = g_getenv ("CB_TEST_TMPDIR");
  char *base = g_build_filename (tmp ? tmp : g_get_tmp_dir (), "model", NULL);
  g_mkdir_with_parents (base, 0755);
  char *tmpl = g_build_filename (base, "XXXXXX", NULL);
  g_free (base);
  char *dir = g_mkdtemp (tmpl);
  g_assert (dir);
  for (guint i = 0; i < G_N_ELEMENTS (cb_model_fixture_files); i++) {
    char *src = g_build_filename (data ? data : "tests/data", cb_model_fixture_files[i].fixture, NULL);
    char *dst = g_build_filename (dir, cb_model_fixture_files[i].name, NULL);
    char *bytes = NULL;
    gsize len = 0;
    g_assert (g_file_get_contents (src, &bytes, &len, NULL));
    g_assert (g_file_set_contents (dst, bytes, len, NULL));
    g_free (bytes);
    g_free (src);
    g_free (dst);
  }
  return dir;
}

/* Replaces one file of a model directory with `len` bytes of `contents`. */
static inline void
cb_test_model_dir_replace (const char *dir, const char *name, const char *contents, gssize len)
{
  char *p = g_build_filename (dir, name, NULL);
  g_assert (g_file_set_contents (p, contents, len, NULL));
  g_free (p);
}
