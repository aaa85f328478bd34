/* golden-check.h — `chatterbox-cli --check-golden DIR`: compare the engine with a golden directory
 * written by tests/reference/make_golden.py.
 *
 * DIR/model/ is the model directory; DIR/<stage>/<case>.safetensors are the golden files. One
 * line is printed per stage and case:
 *
 *   <stage> <case> <measure against tolerance> PASS|FAIL
 *   <stage> <case> not implemented yet (issue N)
 *
 * then a summary line. Every stage directory found is reported, known or not; a stage without a
 * C implementation is listed case by case as "not implemented yet", never skipped. The model
 * directory itself is the first line (stage "model": every weight file validated). */
#pragma once

#include <stdio.h>

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  guint passed;
  guint failed;
  guint not_implemented;
} CliGoldenTally;

/* Runs every check with `threads` CPU threads (0: all), printing to `out`. Returns FALSE when DIR
 * cannot be read at all (error set); the verdicts are in *tally. */
gboolean cli_check_golden (const char *dir, int threads, FILE *out, CliGoldenTally *tally,
                           GError **error);

G_END_DECLS
