/* model-fixture.h — a complete, valid model directory for the engine and element tests (GLib only,
 * so both Check flavours can include it).
 *
 * The build writes it once (tests/make-test-model.c, run by meson into $CB_TEST_MODEL): the three
 * weight files hold exactly the tensors engine/weights-layout.c expects for the small config
 * tests/data/config/tiny-model.json (seeded random values), tokenizer.json is the BPE trained by
 * tests/reference/make_text_golden.py, and conds.pt is the full-size voice written by upstream's own
 * Conditionals.save (tests/reference/make_conds_fixtures.py); the config keeps every size those two
 * depend on. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

/* Copies every file of $CB_TEST_MODEL into a new directory under $CB_TEST_TMPDIR (or the system
 * temp dir) and returns its path (g_free). Copies, not links, so a test may damage one file. */
static inline char *
cb_test_make_model_dir (void)
{
  const char *model = g_getenv ("CB_TEST_MODEL");
  const char *tmp = g_getenv ("CB_TEST_TMPDIR");
  g_assert (model != NULL); /* set by tests/meson.build */
  char *base = g_build_filename (tmp ? tmp : g_get_tmp_dir (), "model", NULL);
  g_mkdir_with_parents (base, 0755);
  char *tmpl = g_build_filename (base, "XXXXXX", NULL);
  g_free (base);
  char *dir = g_mkdtemp (tmpl);
  g_assert (dir);
  GDir *d = g_dir_open (model, 0, NULL);
  g_assert (d != NULL);
  guint n = 0;
  for (const char *name; (name = g_dir_read_name (d)) != NULL; n++) {
    char *src = g_build_filename (model, name, NULL);
    char *dst = g_build_filename (dir, name, NULL);
    char *bytes = NULL;
    gsize len = 0;
    g_assert (g_file_get_contents (src, &bytes, &len, NULL));
    g_assert (g_file_set_contents (dst, bytes, len, NULL));
    g_free (bytes);
    g_free (src);
    g_free (dst);
  }
  g_dir_close (d);
  g_assert (n >= 5); /* three weight files, tokenizer.json, conds.pt (+ config) */
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
