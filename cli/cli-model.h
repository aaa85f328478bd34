/* cli-model.h — what chatterbox-cli reads from a model directory besides building the engine: the
 * config, the tokenizer and the tensor counts of the validated weight files (the text front end is
 * the engine's: cb_utterance_begin). */
#pragma once

#include "config.h"
#include "tokenizer.h"

G_BEGIN_DECLS

/* Upstream's defaults overridden by <model_dir>/chatterbox-config.json when present (as the
 * engine does). */
gboolean     cli_model_config (const char *model_dir, CbConfig *cfg, GError **error);

/* <model_dir>/tokenizer.json, checked against the config's start/stop text ids. */
CbTokenizer *cli_model_tokenizer (const char *model_dir, const CbConfig *cfg, GError **error);

/* "t3_cfg.safetensors 292, ve.safetensors 16, s3gen.safetensors 2489 (1 optional buffer)": every
 * weight file opened and validated against the config (g_free). */
char        *cli_model_tensor_counts (const char *model_dir, const CbConfig *cfg, GError **error);

/* Integer ids from the first of `names` (NULL-terminated, tried in order) in a safetensors file:
 * an I64 or I32 tensor of any shape, at least one value; values clamped to [-1, G_MAXINT32]
 * (range checks are the engine's). g_free the result. */
gint32      *cli_read_ids (const char *path, const char *const *names, int *n, GError **error);
/* Same with one name. */
gint32      *cli_read_tokens (const char *path, const char *name, int *n, GError **error);

G_END_DECLS
