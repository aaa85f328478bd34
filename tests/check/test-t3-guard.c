/* The alignment-stream guard (engine/t3-guard.h) against upstream's AlignmentStreamAnalyzer 0.1.7:
 * the synthetic sequences of tests/data/golden/t3_guard (one per heuristic, and one triggering none)
 * and the analyzer run in shadow on every golden T3 case's real guard-head rows (golden/t3 guard.*).
 * Every step's state and decisions are compared exactly, the EOS logit after the step exactly, the
 * alignment rows to float rounding. One guard runs every sequence in a row (O(1) reset by begin)
 * and must give what a fresh guard gives; the synthetic cases also go through the capture path (the
 * buffers the forward pass fills layer by layer). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cb-check.h"
#include "golden-guard.h"
#include "safetensors.h"

#define V 8194
#define BOS 6561
#define EOS 6562
#define N_LAYERS 14        /* the golden small model */
#define N_HEADS 16
#define MAX_TEXT 256

static const char *const kinds[] = {
  "none", "false_start", "long_tail", "repetition", "token_repetition", "discontinuity",
};
static const char *const model_cases[] = {
  "default", "short", "punct_cfg1_rep2_topp", "quotes_exag025_rep1_minp0",
  "lower_cfg1_topp09_temp1", "longtext", "seed2", "cfg0", "long300", "one_token",
};

static char *
golden_path (const char *stage, const char *name)
{
  char *rel = g_strdup_printf ("golden/%s/%s.safetensors", stage, name);
  char *path = cb_test_data_path (rel);
  g_free (rel);
  return path;
}

/* A recorded run, opened by the shared loader (golden-guard.h). */
static void
run_open (CbGoldenGuardRun *r, const char *stage, const char *name)
{
  char *path = golden_path (stage, name);
  GError *err = NULL;
  gboolean ok = !strcmp (stage, "t3_guard")
      ? cb_golden_guard_open_synthetic (r, path, &err)
      : cb_golden_guard_open_model (r, path, BOS, EOS, &err);
  ck_assert_msg (ok, "%s: %s", path, err ? err->message : "");
  ck_assert_int_eq (r->vocab, V);
  g_free (path);
}

/* Runs r on g (begin first) with the shared comparison; every step must agree with upstream. */
static void
run_and_check (CbT3Guard *g, const char *name, const CbGoldenGuardRun *r, gboolean via_capture,
               CbGoldenGuardStep *out, double *align_err)
{
  GError *err = NULL;
  CbGoldenGuardReport rep;
  ck_assert_msg (cb_golden_guard_run (g, r, via_capture, out, &rep, &err), "%s",
                 err ? err->message : "");
  ck_assert_msg (rep.first_mismatch < 0, "%s %s", name, rep.mismatch);
  ck_assert_msg (rep.alignment_error <= 1e-6, "%s: alignment rel err %.3g", name,
                 rep.alignment_error);
  if (align_err != NULL)
    *align_err = MAX (*align_err, rep.alignment_error);
}

START_TEST (test_synthetic_kinds)
{
  GError *err = NULL;
  CbT3GuardConfig cfg = cb_t3_guard_config_default ();
  /* capture buffers sized for the synthetic prefill (48 rows) and rows of up to 48 + 34 keys */
  CbT3Guard *shared = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 48, 96, &err);
  ck_assert_msg (shared != NULL, "%s", err ? err->message : "");
  double align_err = 0.0;
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++) {
    CbGoldenGuardRun r;
    run_open (&r, "t3_guard", kinds[k]);
    ck_assert_int_eq (r.text_begin, 34);
    ck_assert_int_eq (r.S, 12);
    CbGoldenGuardStep *a = g_new0 (CbGoldenGuardStep, r.frames);
    CbGoldenGuardStep *b = g_new0 (CbGoldenGuardStep, r.frames);
    /* the shared guard, reused across kinds, through its rows API */
    run_and_check (shared, kinds[k], &r, FALSE, a, &align_err);
    /* a fresh guard, through the capture path */
    CbT3Guard *fresh = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 48, 96, NULL);
    run_and_check (fresh, kinds[k], &r, TRUE, b, &align_err);
    ck_assert_mem_eq (a, b, r.frames * sizeof *a);
    /* the shared guard again, via capture, after another run */
    run_and_check (shared, kinds[k], &r, TRUE, b, &align_err);
    ck_assert_mem_eq (a, b, r.frames * sizeof *a);
    guint any = 0;
    int forced_at = -1;
    for (int f = 0; f < r.frames; f++) {
      any |= a[f].flags;
      if (forced_at < 0 && (a[f].flags & CB_T3_GUARD_FORCED_EOS))
        forced_at = f;
    }
    g_print ("guard %-16s frames %2d, forced at %2d, flags seen 0x%02x\n", kinds[k], r.frames,
             forced_at, any);
    cb_t3_guard_free (fresh);
    g_free (a);
    g_free (b);
    cb_golden_guard_close (&r);
  }
  g_print ("guard synthetic: alignment rel err %.2e (tolerance 1e-6)\n", align_err);
  cb_t3_guard_free (shared);
}
END_TEST

START_TEST (test_model_cases_shadow)
{
  CbT3GuardConfig cfg = cb_t3_guard_config_default ();
  CbT3Guard *shared = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 0, 0, NULL);
  ck_assert (shared != NULL);
  double align_err = 0.0;
  int steps = 0;
  for (guint k = 0; k < G_N_ELEMENTS (model_cases); k++) {
    CbGoldenGuardRun r;
    run_open (&r, "t3", model_cases[k]);
    CbGoldenGuardStep *a = g_new0 (CbGoldenGuardStep, r.frames);
    CbGoldenGuardStep *b = g_new0 (CbGoldenGuardStep, r.frames);
    run_and_check (shared, model_cases[k], &r, FALSE, a, &align_err);
    CbT3Guard *fresh = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 0, 0, NULL);
    run_and_check (fresh, model_cases[k], &r, FALSE, b, NULL);
    ck_assert_mem_eq (a, b, r.frames * sizeof *a);
    steps += r.frames;
    cb_t3_guard_free (fresh);
    g_free (a);
    g_free (b);
    cb_golden_guard_close (&r);
  }
  g_print ("guard shadow on %d model steps: alignment rel err %.2e (tolerance 1e-6)\n", steps,
           align_err);
  cb_t3_guard_free (shared);
}
END_TEST

START_TEST (test_build_errors)
{
  GError *err = NULL;
  CbT3GuardConfig cfg = cb_t3_guard_config_default ();
  /* the full model has 30 layers; a 12-layer model lacks layers 12 and 13 */
  ck_assert (cb_t3_guard_new (&cfg, 12, 16, 64, 0, 0, &err) == NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  CbT3Guard *g = cb_t3_guard_new (&cfg, 30, 16, 64, 0, 0, &err);
  ck_assert (g != NULL);
  ck_assert (cb_t3_guard_capture_for_layer (g, 9) == NULL);  /* no capture buffers asked for */
  ck_assert (!cb_t3_guard_begin (g, 34, 65, &err));          /* text longer than built for */
  g_clear_error (&err);
  ck_assert (cb_t3_guard_begin (g, 34, 64, NULL));
  cb_t3_guard_free (g);
}
END_TEST

/* Texts of S ≤ 5 tokens: upstream never suppresses EOS there, and its repetition test reduces over
 * the empty columns [0, S − 5) and raises once the text is complete; ours counts them as 0. */
START_TEST (test_short_text)
{
  enum { S = 4, BEGIN = 2, L = BEGIN + S + 2, W = L + 40 };
  CbT3GuardConfig cfg = cb_t3_guard_config_default ();
  CbT3Guard *g = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 0, 0, NULL);
  ck_assert (cb_t3_guard_begin (g, BEGIN, S, NULL));
  static float attn[W], logits[V];
  guint all = 0;
  for (int f = 0; f < 30; f++) {
    memset (attn, 0, sizeof attn);
    attn[BEGIN + MIN (f / 3, S - 1)] = 0.9f;  /* walks to the last token and stays there */
    CbT3GuardRows rows = { { attn, attn, attn }, 1, W, f == 0 ? L - 1 : L + f - 1, 0 };
    memset (logits, 0, sizeof logits);
    const guint flags = cb_t3_guard_step (g, &rows, logits, V, f);  /* distinct tokens */
    ck_assert (!(flags & (CB_T3_GUARD_EOS_SUPPRESSED | CB_T3_GUARD_ALIGNMENT_REPETITION)));
    all |= flags;
  }
  ck_assert (all & CB_T3_GUARD_COMPLETE);
  ck_assert (all & CB_T3_GUARD_LONG_TAIL);  /* 0.9 per frame on the last column */
  cb_t3_guard_free (g);
}
END_TEST

static Suite *
t3_guard_suite (void)
{
  Suite *s = suite_create ("t3-guard");
  TCase *tc = tcase_create ("golden");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_synthetic_kinds);
  tcase_add_test (tc, test_model_cases_shadow);
  tcase_add_test (tc, test_build_errors);
  tcase_add_test (tc, test_short_text);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (t3_guard_suite)
