/* engine.c — building the engine once: locate the files, read the config, open and validate
 * every model file, set the thread count. Nothing here runs per utterance. */
#include "chatterbox.h"

#include "conds.h"
#include "config.h"
#include "model-dir.h"
#include "ops.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "weights-layout.h"

struct CbEngine {
  char *model_dir;
  int threads;
  CbConfig config;
  CbSafetensors *t3_weights;    /* t3_cfg.safetensors */
  CbSafetensors *s3gen_weights; /* s3gen.safetensors */
  CbSafetensors *ve_weights;    /* ve.safetensors */
  CbTokenizer *tokenizer;
  CbConds *builtin_voice;       /* conds.pt */
};

void
cb_engine_params_init (CbEngineParams *p)
{
  p->model_location = NULL;
  p->threads = 0;
}

static char *
model_file (const CbEngine *e, const char *name)
{
  return g_build_filename (e->model_dir, name, NULL);
}

/* chatterbox-config.json is optional: absent means upstream's hyperparameters. */
static gboolean
load_config (CbEngine *e, GError **error)
{
  cb_config_init_default (&e->config);
  char *path = model_file (e, CB_MODEL_CONFIG_FILE);
  gboolean ok = TRUE;
  if (g_file_test (path, G_FILE_TEST_EXISTS)) {
    ok = cb_config_load_json (&e->config, path, error);
    if (ok) {
      CbConfig base;
      cb_config_init_default (&base);
      char *changes = cb_config_describe_changes (&base, &e->config);
      g_info ("%s overrides: %s", path, changes);
      g_free (changes);
    }
  }
  g_free (path);
  return ok;
}

/* Opens one weights file and checks every tensor's name, dtype and shape against the config. */
static CbSafetensors *
open_weights (const CbEngine *e, CbWeightsFile which, GError **error)
{
  char *path = model_file (e, cb_weights_file_name (which));
  CbSafetensors *st = cb_safetensors_open (path, error);
  g_free (path);
  if (st && !cb_weights_validate (st, which, &e->config, error)) {
    cb_safetensors_free (st);
    return NULL;
  }
  return st;
}

static gboolean
load_tokenizer (CbEngine *e, GError **error)
{
  char *path = model_file (e, "tokenizer.json");
  e->tokenizer = cb_tokenizer_load (path, error);
  gboolean ok = e->tokenizer
      && cb_tokenizer_check_start_stop (e->tokenizer, e->config.t3.start_text_token,
                                        e->config.t3.stop_text_token, error);
  if (ok && (int) cb_tokenizer_vocab_size (e->tokenizer) > e->config.t3.text_tokens_dict_size) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: %u token ids, but T3's text embedding has %d rows (t3.text_tokens_dict_size)",
                 path, cb_tokenizer_vocab_size (e->tokenizer), e->config.t3.text_tokens_dict_size);
    ok = FALSE;
  }
  g_free (path);
  return ok;
}

static gboolean
load_builtin_voice (CbEngine *e, GError **error)
{
  CbCondsExpect expect;
  cb_conds_expect_from_config (&expect, &e->config);
  char *path = model_file (e, "conds.pt");
  e->builtin_voice = cb_conds_load (path, &expect, error);
  g_free (path);
  return e->builtin_voice != NULL;
}

CbEngine *
cb_engine_new (const CbEngineParams *p, GError **error)
{
  char *dir = cb_model_dir_locate (p->model_location, error);
  if (!dir)
    return NULL;
  CbEngine *e = g_new0 (CbEngine, 1);
  e->model_dir = dir;
  e->threads = p->threads;
  cb_set_num_threads (p->threads);

  if (!load_config (e, error)
      || !(e->t3_weights = open_weights (e, CB_WEIGHTS_T3, error))
      || !(e->s3gen_weights = open_weights (e, CB_WEIGHTS_S3GEN, error))
      || !(e->ve_weights = open_weights (e, CB_WEIGHTS_VE, error))
      || !load_tokenizer (e, error)
      || !load_builtin_voice (e, error)) {
    cb_engine_free (e);
    return NULL;
  }
  return e;
}

void
cb_engine_free (CbEngine *e)
{
  if (!e)
    return;
  cb_conds_free (e->builtin_voice);
  cb_tokenizer_free (e->tokenizer);
  cb_safetensors_free (e->ve_weights);
  cb_safetensors_free (e->s3gen_weights);
  cb_safetensors_free (e->t3_weights);
  g_free (e->model_dir);
  g_free (e);
}

const char *
cb_engine_model_dir (const CbEngine *e)
{
  return e->model_dir;
}

int
cb_engine_threads (const CbEngine *e)
{
  return cb_get_num_threads ();
}

gboolean
cb_engine_synthesis_available (const CbEngine *e, GError **error)
{
  g_set_error (error, CB_ERROR, CB_ERROR_NOT_IMPLEMENTED,
               "synthesis is not complete yet: the model files in %s were found and validated, but "
               "T3, S3Gen and HiFT are still being ported (issues 4-6)", e->model_dir);
  return FALSE;
}
