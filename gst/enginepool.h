/* enginepool.h — engines shared between chatterboxsrc elements.
 *
 * Building an engine maps and validates gigabytes of weights, so elements in one process that ask
 * for the same model location, precision and threads share one (reference-counted). `recompile`
 * retires an engine: it leaves the pool, so the next acquire with its key builds a new one, while
 * elements still holding the old one keep using it until their next utterance boundary and the
 * last release frees it. Thread-safe. */
#pragma once

#include "chatterbox.h"

G_BEGIN_DECLS

typedef struct _CbsEngineHandle CbsEngineHandle;

/* The pooled engine for these parameters, built on first use (*built TRUE then; may be NULL).
 * NULL with the engine's error. */
CbsEngineHandle *cbs_engine_pool_acquire (const CbEngineParams *params, gboolean *built,
                                          GError **error);
void             cbs_engine_pool_release (CbsEngineHandle *h);
CbEngine        *cbs_engine_handle_engine (CbsEngineHandle *h);
/* TRUE once the engine was retired by cbs_engine_pool_recompile (by this holder or another). */
gboolean         cbs_engine_handle_retired (CbsEngineHandle *h);
/* Retires the engine (see above); the next acquire with the same key builds a new one. */
void             cbs_engine_pool_recompile (CbsEngineHandle *h);
/* Engines built so far in this process (tests: sharing and rebuild counts). */
guint            cbs_engine_pool_builds (void);

G_END_DECLS
