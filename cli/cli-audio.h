/* cli-audio.h — chatterbox-cli's audio runs: text → speech tokens → PCM through the engine's
 * streamed pull API, or given speech tokens → PCM with a whole-utterance S3Gen + HiFT decode
 * (--speech-tokens), optionally with upstream's noise injected (--noise); WAV out, stage dumps. */
#pragma once

#include <stdio.h>

#include "chatterbox.h"

G_BEGIN_DECLS

typedef struct {
  const char       *text;           /* speak this (T3 → streamed S3Gen/HiFT); or: */
  const char       *speech_tokens;  /* safetensors with "tokens" or "input.tokens" (I64/I32) */
  const char       *noise;          /* safetensors: "noise.z" (1|-, 80, T), "rand.sine_phase",
                                     * "rand.sine_noise" (golden names; any may be absent) */
  const char       *voice;          /* conds.pt; NULL: the model's built-in voice */
  const char       *dump;           /* directory for s3gen.safetensors; NULL: none */
  const char       *output;         /* WAV file (16-bit PCM, 24 kHz mono); NULL: none */
  CbUtteranceParams params;
  gboolean          max_tokens_set;  /* params.max_tokens given by the user */
} CliAudioRequest;

gboolean cli_audio_run (CbEngine *e, const CliAudioRequest *r, FILE *out, GError **error);

/* 16-bit PCM mono WAV (samples clamped to [-1, 1]). */
gboolean cli_write_wav (const char *path, const float *pcm, gsize n, int rate, GError **error);

G_END_DECLS
