/* model-dir.c — locate the model files (order and rules in model-dir.h). */
#include "model-dir.h"

#include <glib/gstdio.h>
#include <string.h>

const char *const cb_model_required_files[] = {
  "ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt", NULL,
};

#define HF_REPO_FOLDER "models--ResembleAI--chatterbox"

char *
cb_model_hf_hub_cache (void)
{
  const char *v;
  if ((v = g_getenv ("HF_HUB_CACHE")) && *v)
    return g_strdup (v);
  if ((v = g_getenv ("HUGGINGFACE_HUB_CACHE")) && *v) /* older huggingface_hub name */
    return g_strdup (v);
  if ((v = g_getenv ("HF_HOME")) && *v)
    return g_build_filename (v, "hub", NULL);
  if ((v = g_getenv ("XDG_CACHE_HOME")) && *v)
    return g_build_filename (v, "huggingface", "hub", NULL);
  return g_build_filename (g_get_home_dir (), ".cache", "huggingface", "hub", NULL);
}

/* Appends to `missing` the required files absent from dir (comma separated); TRUE if none are. */
static gboolean
dir_is_complete (const char *dir, GString *missing)
{
  gboolean complete = TRUE;
  for (int i = 0; cb_model_required_files[i]; i++) {
    char *p = g_build_filename (dir, cb_model_required_files[i], NULL);
    /* A dangling symlink (an interrupted HF download) is not a file. */
    if (!g_file_test (p, G_FILE_TEST_IS_REGULAR)) {
      if (missing)
        g_string_append_printf (missing, "%s%s", complete ? "" : ", ", cb_model_required_files[i]);
      complete = FALSE;
    }
    g_free (p);
  }
  return complete;
}

/* Snapshot directories of a repo folder: refs/main's revision first, then the others newest first. */
static GPtrArray *
list_snapshots (const char *repo_dir)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  char *ref_path = g_build_filename (repo_dir, "refs", "main", NULL);
  char *ref = NULL;
  if (g_file_get_contents (ref_path, &ref, NULL, NULL)) {
    g_strstrip (ref);
    /* A revision is a hex commit id; anything else (e.g. "../..") is not used as a path. */
    if (*ref && strspn (ref, "0123456789abcdefABCDEF") == strlen (ref))
      g_ptr_array_add (out, g_build_filename (repo_dir, "snapshots", ref, NULL));
  }
  g_free (ref_path);

  char *snap_root = g_build_filename (repo_dir, "snapshots", NULL);
  GDir *d = g_dir_open (snap_root, 0, NULL);
  if (d) {
    GPtrArray *rest = g_ptr_array_new_with_free_func (g_free);
    const char *name;
    while ((name = g_dir_read_name (d))) {
      if (ref && strcmp (name, ref) == 0)
        continue;
      g_ptr_array_add (rest, g_build_filename (snap_root, name, NULL));
    }
    g_dir_close (d);
    /* newest first */
    for (guint i = 0; i < rest->len; i++) {
      for (guint j = i + 1; j < rest->len; j++) {
        GStatBuf a, b;
        if (g_stat (rest->pdata[i], &a) == 0 && g_stat (rest->pdata[j], &b) == 0
            && b.st_mtime > a.st_mtime) {
          gpointer t = rest->pdata[i];
          rest->pdata[i] = rest->pdata[j];
          rest->pdata[j] = t;
        }
      }
    }
    for (guint i = 0; i < rest->len; i++)
      g_ptr_array_add (out, g_strdup (rest->pdata[i]));
    g_ptr_array_unref (rest);
  }
  g_free (snap_root);
  g_free (ref);
  return out;
}

/* Tries `base` as a model directory, a repo folder or a hub cache root. Records what it looked at
 * in `report`. Returns the complete directory or NULL. */
static char *
try_location (const char *base, const char *origin, GString *report)
{
  if (!g_file_test (base, G_FILE_TEST_IS_DIR)) {
    g_string_append_printf (report, "\n  %s: %s (does not exist or is not a directory)", origin, base);
    return NULL;
  }
  GString *missing = g_string_new (NULL);
  if (dir_is_complete (base, missing)) {
    g_string_free (missing, TRUE);
    return g_strdup (base);
  }

  char *repo_dir = g_str_has_suffix (base, HF_REPO_FOLDER) ? g_strdup (base)
                                                            : g_build_filename (base, HF_REPO_FOLDER, NULL);
  char *found = NULL;
  if (g_file_test (repo_dir, G_FILE_TEST_IS_DIR)) {
    GPtrArray *snaps = list_snapshots (repo_dir);
    for (guint i = 0; i < snaps->len && !found; i++) {
      GString *m = g_string_new (NULL);
      if (dir_is_complete (snaps->pdata[i], m))
        found = g_strdup (snaps->pdata[i]);
      else
        g_string_append_printf (report, "\n  %s: %s (missing %s)", origin, (char *) snaps->pdata[i], m->str);
      g_string_free (m, TRUE);
    }
    if (snaps->len == 0)
      g_string_append_printf (report, "\n  %s: %s (no snapshots)", origin, repo_dir);
    g_ptr_array_unref (snaps);
  } else {
    g_string_append_printf (report, "\n  %s: %s (missing %s; no %s folder either)", origin, base,
                            missing->str, HF_REPO_FOLDER);
  }
  g_free (repo_dir);
  g_string_free (missing, TRUE);
  return found;
}

char *
cb_model_dir_locate (const char *explicit_location, GError **error)
{
  GString *report = g_string_new (NULL);
  char *found = NULL;
  gboolean strict = FALSE;

  const char *env = g_getenv ("CHATTERBOX_MODEL_DIR");
  if (explicit_location && *explicit_location) {
    found = try_location (explicit_location, "model-location", report);
    strict = TRUE;
  } else if (env && *env) {
    found = try_location (env, "CHATTERBOX_MODEL_DIR", report);
    strict = TRUE;
  } else {
    char *hub = cb_model_hf_hub_cache ();
    found = try_location (hub, "Hugging Face cache", report);
    g_free (hub);
  }

  if (!found) {
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND,
                 "Chatterbox model files not found (need ve.safetensors, t3_cfg.safetensors, "
                 "s3gen.safetensors, tokenizer.json, conds.pt). Searched:%s\n"
                 "%s"
                 "Download them from Hugging Face %s with scripts/fetch-model.py (or "
                 "`huggingface-cli download %s`), or point the model-location property or "
                 "CHATTERBOX_MODEL_DIR at a directory holding them.",
                 report->str,
                 strict ? "The location given explicitly is used alone; unset it to search the "
                          "Hugging Face cache.\n" : "",
                 CB_MODEL_REPO, CB_MODEL_REPO);
  }
  g_string_free (report, TRUE);
  return found;
}
