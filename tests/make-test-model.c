/* make-test-model — writes the small valid model directory the engine and element tests load.
 *
 *   make-test-model OUT_DIR CONFIG_JSON DATA_DIR
 *
 * OUT_DIR gets CONFIG_JSON as chatterbox-config.json, the three weight files with exactly the
 * tensors engine/weights-layout.c expects for that config (seeded random values, so the files are
 * the same on every build), and tokenizer.json and conds.pt copied from the committed fixtures in
 * DATA_DIR (text/tokenizer.json, conds/conds_full.pt). The config keeps every size those two files
 * depend on (text vocabulary and token ids, speaker/x-vector widths, mel bins, speech vocabulary,
 * prompt length) and shrinks the rest. */
#include <stdio.h>

#include <glib/gstdio.h>

#include "config.h"
#include "model-dir.h"
#include "weights-layout.h"

/* Far above the tiny model (about 4 MB); stops a mistyped config from filling the disk. */
#define MAX_TEST_MODEL_BYTES (256u * 1024u * 1024u)

static gboolean
copy_file (const char *src, const char *dir, const char *name, GError **error)
{
  char *bytes = NULL;
  gsize len = 0;
  char *dst = g_build_filename (dir, name, NULL);
  gboolean ok = g_file_get_contents (src, &bytes, &len, error)
                && g_file_set_contents (dst, bytes, (gssize) len, error);
  g_free (bytes);
  g_free (dst);
  return ok;
}

static gboolean
make_model (const char *out, const char *config_path, const char *data, GError **error)
{
  CbConfig cfg;
  cb_config_init_default (&cfg);
  if (!cb_config_load_json (&cfg, config_path, error))
    return FALSE;
  if (g_mkdir_with_parents (out, 0755) != 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: cannot create the directory", out);
    return FALSE;
  }
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++) {
    CbWeightsLayout *layout = cb_weights_layout_new ((CbWeightsFile) w, &cfg);
    char *path = g_build_filename (out, cb_weights_file_name ((CbWeightsFile) w), NULL);
    gboolean ok = cb_weights_write_random (path, layout, 1000 + (guint64) w, FALSE,
                                           MAX_TEST_MODEL_BYTES, error);
    g_free (path);
    cb_weights_layout_free (layout);
    if (!ok)
      return FALSE;
  }
  char *tokenizer = g_build_filename (data, "text", "tokenizer.json", NULL);
  char *conds = g_build_filename (data, "conds", "conds_full.pt", NULL);
  gboolean ok = copy_file (config_path, out, CB_MODEL_CONFIG_FILE, error)
                && copy_file (tokenizer, out, "tokenizer.json", error)
                && copy_file (conds, out, "conds.pt", error);
  g_free (tokenizer);
  g_free (conds);
  return ok;
}

int
main (int argc, char **argv)
{
  if (argc != 4) {
    fprintf (stderr, "usage: %s OUT_DIR CONFIG_JSON DATA_DIR\n", argv[0]);
    return 2;
  }
  GError *error = NULL;
  if (!make_model (argv[1], argv[2], argv[3], &error)) {
    fprintf (stderr, "make-test-model: %s\n", error->message);
    g_error_free (error);
    return 1;
  }
  return 0;
}
