/* t3-golden.h — run T3 teacher-forced on one of upstream's recorded cases
 * (tests/data/golden/t3/<case>.safetensors, tests/reference/golden/README-t3.md) and measure how
 * far our forward pass is from upstream's. Shared by the test suite and
 * `chatterbox-cli --check-golden`, so both judge by the same code. */
#pragma once

#include "t3.h"

G_BEGIN_DECLS

/* Relative max errors max|ours − ref| / max|ref|, each the worst over what it covers. */
typedef struct {
  int    text_len, cond_len, steps, decode_forwards, n_rows;
  double cond_embeds;     /* cond.embeds (C, H) */
  double prefill_embeds;  /* prefill.input_embeds, every row computed */
  double prefill_logits;  /* prefill.logits, every row computed */
  double step_logits;     /* every later step: cond/uncond values at the top-K ids, the sampled
                           * token and EOS (per step), and the full rows in full.logits */
  double decode_embeds;   /* decode.input_embeds */
  double attn;            /* guard-head rows: the two BOS rows of the prefill, every decode row
                           * (text columns) and the full rows of attn.decode_full */
} CbT3GoldenReport;

/* The largest of the report's errors. */
double   cb_t3_golden_report_max (const CbT3GoldenReport *r);

/* Whether the file at `path` is a model case (it has prefill logits), not a post-processing one. */
gboolean cb_t3_golden_is_model_case (const char *path);

/* Runs the case in `path` as a new utterance of `s`, or of a state made for the case when `s` is
 * NULL. FALSE with a CB_ERROR naming the file and tensor when the file is not a well-formed case
 * or the state is too small; the errors are in `report` as far as they were measured (the rest
 * are infinite). */
gboolean cb_t3_golden_run_case (CbT3 *t3, CbT3State *s, const char *path,
                                CbT3GoldenReport *report, GError **error);

/* The whole decoding loop (t3-decode.h: CFG, processors, sampler; guard off as upstream English)
 * with upstream's recorded draws step.u injected: the tokens must be upstream's out.t3_tokens. */
typedef struct {
  int      n_tokens;          /* upstream's tokens */
  int      n_comparable;      /* before the first draw long300 redrew without EOS (else all) */
  int      n_equal;           /* leading tokens equal to upstream's */
  gboolean ended_as_upstream; /* stopped exactly after upstream's last token (when comparable) */
} CbT3GoldenSampling;

gboolean cb_t3_golden_sample_case (CbT3 *t3, const char *path, CbT3GoldenSampling *out,
                                   GError **error);

/* The alignment guard switched on, fed by the attention rows our forward pass captures, teacher-
 * forced with upstream's tokens, against upstream's analyzer run in shadow on the same case
 * (guard.*): per step the text position, started, complete, EOS suppressed, EOS forced and the
 * EOS logit after the guard. */
typedef struct {
  int steps, steps_equal;
  int first_mismatch;        /* −1: none */
  int n_suppressed, n_forced; /* steps where our guard suppressed / forced EOS */
} CbT3GoldenGuard;

gboolean cb_t3_golden_guard_case (CbT3 *t3, const char *path, CbT3GoldenGuard *out,
                                  GError **error);

G_END_DECLS
