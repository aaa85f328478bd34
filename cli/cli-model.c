/* cli-model.c — model-directory helpers for chatterbox-cli (see cli-model.h). */
#include "cli-model.h"

#include "model-dir.h"
#include "safetensors.h"
#include "weights-layout.h"

#include <string.h>

gboolean
cli_model_config (const char *model_dir, CbConfig *cfg, GError **error)
{
  cb_config_init_default (cfg);
  char *path = g_build_filename (model_dir, CB_MODEL_CONFIG_FILE, NULL);
  gboolean ok = !g_file_test (path, G_FILE_TEST_EXISTS) || cb_config_load_json (cfg, path, error);
  g_free (path);
  return ok;
}

CbTokenizer *
cli_model_tokenizer (const char *model_dir, const CbConfig *cfg, GError **error)
{
  char *path = g_build_filename (model_dir, "tokenizer.json", NULL);
  CbTokenizer *tok = cb_tokenizer_load (path, error);
  g_free (path);
  if (tok && !cb_tokenizer_check_start_stop (tok, cfg->t3.start_text_token,
                                             cfg->t3.stop_text_token, error)) {
    cb_tokenizer_free (tok);
    return NULL;
  }
  return tok;
}

char *
cli_model_tensor_counts (const char *model_dir, const CbConfig *cfg, GError **error)
{
  GString *out = g_string_new (NULL);
  for (int w = 0; w < CB_WEIGHTS_N_FILES; w++) {
    const char *name = cb_weights_file_name ((CbWeightsFile) w);
    char *path = g_build_filename (model_dir, name, NULL);
    CbSafetensors *st = cb_safetensors_open (path, error);
    g_free (path);
    if (!st || !cb_weights_validate (st, (CbWeightsFile) w, cfg, error)) {
      cb_safetensors_free (st);
      g_string_free (out, TRUE);
      return NULL;
    }
    CbWeightsLayout *layout = cb_weights_layout_new ((CbWeightsFile) w, cfg);
    guint n = cb_safetensors_n_tensors (st);
    guint optional = n - cb_weights_layout_n_required (layout); /* validated: never negative */
    g_string_append_printf (out, "%s%s %u", out->len ? ", " : "", name, n);
    if (optional)
      g_string_append_printf (out, " (%u optional buffer%s)", optional, optional == 1 ? "" : "s");
    cb_weights_layout_free (layout);
    cb_safetensors_free (st);
  }
  return g_string_free (out, FALSE);
}

gint32 *
cli_read_ids (const char *path, const char *const *names, int *n, GError **error)
{
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return NULL;
  const CbTensorInfo *t = NULL;
  for (int i = 0; names[i] && !t; i++)
    t = cb_safetensors_find (st, names[i]);
  gint32 *out = NULL;
  if (!t)
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND, "%s: no tensor named \"%s\"", path,
                 names[0]);
  else if (t->dtype != CB_DTYPE_I64 && t->dtype != CB_DTYPE_I32)
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: tensor \"%s\" must be I64 or I32",
                 path, t->name);
  else if (t->numel < 1 || t->numel > G_MAXINT32 / 8)
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "%s: tensor \"%s\" has %"
                 G_GUINT64_FORMAT " values", path, t->name, t->numel);
  else {
    *n = (int) t->numel;
    out = g_new (gint32, *n);
    for (int i = 0; i < *n; i++) {
      gint64 v;
      if (t->dtype == CB_DTYPE_I64)
        memcpy (&v, t->data + 8 * (gsize) i, 8);
      else {
        gint32 v32;
        memcpy (&v32, t->data + 4 * (gsize) i, 4);
        v = v32;
      }
      out[i] = (gint32) CLAMP (v, -1, G_MAXINT32);
    }
  }
  cb_safetensors_free (st);
  return out;
}

gint32 *
cli_read_tokens (const char *path, const char *name, int *n, GError **error)
{
  const char *const names[] = { name, NULL };
  return cli_read_ids (path, names, n, error);
}
