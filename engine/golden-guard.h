/* golden-guard.h — the alignment guard (t3-guard.h) step by step against upstream's
 * AlignmentStreamAnalyzer 0.1.7 on recorded sequences (tests/reference/golden/README-t3.md): the
 * synthetic t3_guard/<kind> files and the analyzer run in shadow on a t3/<case> file (guard.*).
 * Shared by test-t3-guard and `chatterbox-cli --check-golden`, so both judge by the same code. */
#pragma once

#include "t3-guard.h"

G_BEGIN_DECLS

/* One recorded run: per-step inputs and upstream's per-step outputs. */
typedef struct {
  int            frames, text_begin, S, vocab;
  CbT3GuardRows *rows;          /* (frames) inputs of each step */
  float         *logits;        /* (frames, vocab) the CFG row each step receives */
  gint32        *last_tokens;   /* (frames) */
  /* upstream, per frame */
  gint64 *text_position, *started, *false_start, *complete, *started_at, *completed_at;
  gint64 *long_tail, *repetition, *token_repetition, *forced_eos, *eos_suppressed;
  float  *out_eos_logit;
  float  *alignment;            /* (alignment_rows, S) */
  guint64 alignment_rows;
  float  *attn0, *attn_rest;    /* owned storage of the rows */
} CbGoldenGuardRun;

/* t3_guard/<kind>.safetensors: frame 0 the full prefill, later frames one zero-padded row each. */
gboolean cb_golden_guard_open_synthetic (CbGoldenGuardRun *r, const char *path, GError **error);
/* t3/<case>.safetensors: the prefill's rows, then each decode forward's text columns; the logits
 * rows hold the CFG logit at EOS only (the one the guard reads unless it forces). */
gboolean cb_golden_guard_open_model (CbGoldenGuardRun *r, const char *path, gint32 bos_id,
                                     gint32 eos_id, GError **error);
void     cb_golden_guard_close (CbGoldenGuardRun *r);

/* What one step produced, for comparing runs with each other. */
typedef struct {
  guint          flags;
  CbT3GuardState state;
  float          eos_logit;
} CbGoldenGuardStep;

typedef struct {
  int    first_mismatch;      /* −1 when every step agreed */
  char   mismatch[192];       /* what differed there */
  double alignment_error;     /* relative max error of the alignment rows (tolerance 1e-6) */
  guint  flags_seen;          /* CbT3GuardFlags ORed over the run */
  int    forced_at;           /* first frame that forced EOS, −1 none */
} CbGoldenGuardReport;

#define CB_GOLDEN_GUARD_ALIGNMENT_TOLERANCE 1e-6

/* Runs `r` on `g` (begin first), through the rows API or (via_capture) the capture buffers as the
 * forward pass fills them, and compares every step with upstream: state and decisions exactly,
 * the EOS logit exactly, the other logits untouched (or all −force_value when forced), the
 * alignment rows to 1e-6. `steps` (r->frames entries, may be NULL) receives each step's result.
 * FALSE with an error only when the guard cannot run the case (begin fails); a disagreement is
 * reported in `rep` (first_mismatch ≥ 0 or alignment_error over the tolerance). */
gboolean cb_golden_guard_run (CbT3Guard *g, const CbGoldenGuardRun *r, gboolean via_capture,
                              CbGoldenGuardStep *steps, CbGoldenGuardReport *rep, GError **error);

/* Whether the report says the run agreed with upstream. */
gboolean cb_golden_guard_report_ok (const CbGoldenGuardReport *rep);

G_END_DECLS
