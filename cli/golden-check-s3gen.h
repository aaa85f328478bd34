/* golden-check-s3gen.h — the `s3gen` (flow: tokens → mel) and `hift` (vocoder: mel →
 * waveform) stages of `chatterbox-cli --check-golden` (tests/reference/golden/README-s3gen.md). */
#pragma once

#include "golden-check-internal.h"

G_BEGIN_DECLS

void cli_golden_check_s3gen_case (CliGolden *g, const char *stage, const char *name,
                                  const char *path);
void cli_golden_check_hift_case (CliGolden *g, const char *stage, const char *name,
                                 const char *path);
/* Frees what the first s3gen or hift case built (the model, the built-in voice). */
void cli_golden_s3gen_clear (CliGolden *g);

G_END_DECLS
