/* golden-check-internal.h — what the stage checkers of `chatterbox-cli --check-golden` share:
 * the run's state and its output lines (golden-check.c; the s3gen and hift stages are in
 * golden-check-s3gen.c). */
#pragma once

#include "config.h"
#include "golden-check.h"
#include "safetensors.h"
#include "t3.h"
#include "tokenizer.h"

G_BEGIN_DECLS

typedef struct _CliGoldenS3Gen CliGoldenS3Gen;

typedef struct {
  const char     *dir;
  char           *model_dir;
  int             threads;
  FILE           *out;
  CliGoldenTally *tally;
  CbConfig        cfg;
  CbTokenizer    *tok;       /* NULL when it could not be loaded; `tok_error` says why */
  char           *tok_error;
  CbSafetensors  *t3_file;   /* built at the first t3 case */
  CbT3           *t3;        /* NULL when it could not be built; `t3_error` says why */
  char           *t3_error;
  CliGoldenS3Gen *s3gen;     /* built at the first s3gen or hift case */
} CliGolden;

/* One line for a case: its measures (`fmt`), then PASS or FAIL; counted in the tally. */
void cli_golden_verdict (CliGolden *g, const char *stage, const char *name, gboolean pass,
                         const char *fmt, ...) G_GNUC_PRINTF (5, 6);
/* One "not implemented yet (why)" line for a case. */
void cli_golden_not_implemented (CliGolden *g, const char *stage, const char *name,
                                 const char *why);

G_END_DECLS
