/* model-dir.h — finding the Chatterbox model files on disk.
 *
 * The five files upstream's ChatterboxTTS.from_pretrained downloads from the Hugging Face repo
 * ResembleAI/chatterbox are looked for, in this order:
 *   1. an explicit location (the element's `model-location` property): a directory holding the files,
 *      or a Hugging Face cache root / repo folder (…/hub or …/models--ResembleAI--chatterbox);
 *   2. the directory named by $CHATTERBOX_MODEL_DIR (same forms);
 *   3. the Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
 *      $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; inside it
 *      models--ResembleAI--chatterbox/snapshots/<rev>/ with <rev> taken from refs/main first, then
 *      any complete snapshot (newest first).
 * An explicit location or $CHATTERBOX_MODEL_DIR that is set but incomplete is an error: the user
 * asked for that model, so no other is silently used in its place. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

#define CB_MODEL_REPO "ResembleAI/chatterbox"

/* The files a model directory must hold (NULL-terminated). */
extern const char *const cb_model_required_files[];
/* Optional file beside the weights that overrides hyperparameters (small test models). */
#define CB_MODEL_CONFIG_FILE "chatterbox-config.json"

/* Returns the directory holding all required files (free with g_free), or NULL with a
 * CB_ERROR_NOT_FOUND error that lists every place searched, what was missing there, and how to
 * download the model. `explicit_location` may be NULL. */
char *cb_model_dir_locate (const char *explicit_location, GError **error);

/* The Hugging Face hub cache directory in effect (env rules above); free with g_free. */
char *cb_model_hf_hub_cache (void);

G_END_DECLS
