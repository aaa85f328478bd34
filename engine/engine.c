/* engine.c — building the engine once: locate the files, open and validate them. */
#include "chatterbox.h"

#include "model-dir.h"

struct CbEngine {
  char *model_dir;
  int threads;
};

void
cb_engine_params_init (CbEngineParams *p)
{
  p->model_location = NULL;
  p->threads = 0;
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
  return e;
}

void
cb_engine_free (CbEngine *e)
{
  if (!e)
    return;
  g_free (e->model_dir);
  g_free (e);
}

const char *
cb_engine_model_dir (const CbEngine *e)
{
  return e->model_dir;
}

gboolean
cb_engine_synthesis_available (const CbEngine *e, GError **error)
{
  g_set_error (error, CB_ERROR, CB_ERROR_NOT_IMPLEMENTED,
               "synthesis is not complete yet: the model files in %s were found and validated, but "
               "T3, S3Gen and HiFT are still being ported (issues 4-6)", e->model_dir);
  return FALSE;
}
