/* cli-t3.h — chatterbox-cli's T3 run: text to speech tokens on the engine, optionally teacher-forced
 * (--force-tokens) and with every step dumped (--dump). */
#pragma once

#include <stdio.h>

#include "chatterbox.h"

G_BEGIN_DECLS

typedef struct {
  const char       *text;
  const char       *voice;         /* conds.pt; NULL: the model's built-in voice */
  const char       *force_tokens;  /* safetensors with an I64 or I32 tensor "tokens"; NULL: sample */
  const char       *dump;          /* directory for t3.safetensors; NULL: none */
  CbUtteranceParams params;
  gboolean          max_tokens_set;
} CliT3Request;

/* Prints the normalised text, its ids and the speech tokens to `out`. */
gboolean cli_t3_run (CbEngine *e, const CliT3Request *r, FILE *out, GError **error);

G_END_DECLS
