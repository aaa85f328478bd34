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

G_END_DECLS
