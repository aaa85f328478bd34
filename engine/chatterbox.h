/* chatterbox.h — the engine's public API (the only header gst/ includes).
 *
 * A CbEngine is everything built once: the model files mapped and validated, the tokenizer, the
 * hyperparameters, the built-in voice. It is made in the element's NULL→READY transition and reused
 * for every utterance until a `recompile` asks for a new one.
 *
 * Status: this is the foundation (issue 2). cb_engine_new() locates, opens and validates the model
 * files; synthesis (T3, S3Gen, HiFT) comes with the following issues, and until then
 * cb_engine_synthesis_available() is FALSE and says why. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

typedef struct CbEngine CbEngine;

typedef struct {
  const char *model_location; /* NULL: $CHATTERBOX_MODEL_DIR, then the Hugging Face cache */
  int threads;                /* <= 0: all online CPUs */
} CbEngineParams;

void        cb_engine_params_init (CbEngineParams *p);

/* Locates and validates the model; NULL with a GError naming the file and the problem. */
CbEngine   *cb_engine_new (const CbEngineParams *p, GError **error);
void        cb_engine_free (CbEngine *e);

/* Directory the model was loaded from. */
const char *cb_engine_model_dir (const CbEngine *e);

/* CPU threads in effect (the `threads` parameter resolved; honoured by OpenBLAS and our loops). */
int         cb_engine_threads (const CbEngine *e);

/* Whether text can be turned into audio yet; FALSE sets a CB_ERROR_NOT_IMPLEMENTED error that says
 * which part is missing. */
gboolean    cb_engine_synthesis_available (const CbEngine *e, GError **error);

/* Output format of every engine: 24 kHz mono float PCM. */
#define CB_SAMPLE_RATE 24000

G_END_DECLS
