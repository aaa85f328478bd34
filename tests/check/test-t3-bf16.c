/* T3 with BF16 weight storage (CB_T3_PRECISION_BF16) against the same model in FP32, on the golden
 * small model teacher-forced with upstream's tokens of every golden case: logits of both CFG rows,
 * the sampling distribution after the processors (KL divergence), and the top token wherever
 * FP32's top-1/top-2 margin is well above the measured logits error. BF16 is an approximation, so
 * the bounds here are loose ones, not the 1e-5 of the FP32 golden comparisons. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cb-check.h"
#include "cb-golden-model.h"
#include "config.h"
#include "safetensors.h"
#include "t3-decode.h"
#include "t3.h"

/* BF16 keeps 8 significant bits (relative rounding ≤ 2^-9 per weight); errors of dot products
 * partly cancel. Bounds with room above what was measured (see the printed figures). */
#define MAX_LOGITS_REL_ERR 2e-2
#define MAX_MEAN_KL        1e-3
/* A top token counts as decided when FP32's margin exceeds this many times the step's error. */
#define MARGIN_FACTOR      10.0

static CbConfig       cfg;
static CbSafetensors *weights;
static CbT3          *t3_fp32, *t3_bf16;

static void
setup (void)
{
  GError *err = NULL;
  weights = cb_test_golden_model (&cfg, "t3_cfg.safetensors");
  CbT3Options o;
  cb_t3_options_init (&o);
  ck_assert_int_eq (o.precision, CB_T3_PRECISION_FP32);
  t3_fp32 = cb_t3_new (&cfg, weights, &o, &err);
  ck_assert_msg (t3_fp32 != NULL, "%s", err ? err->message : "");
  o.precision = CB_T3_PRECISION_BF16;
  t3_bf16 = cb_t3_new (&cfg, weights, &o, &err);
  ck_assert_msg (t3_bf16 != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  cb_t3_free (t3_bf16);
  cb_t3_free (t3_fp32);
  cb_safetensors_free (weights);
}

static const char *const cases[] = {
  "default", "short", "punct_cfg1_rep2_topp", "quotes_exag025_rep1_minp0",
  "lower_cfg1_topp09_temp1", "longtext", "seed2", "cfg0", "long300", "one_token",
};

typedef struct {
  int    steps;
  double logits_rel;     /* max over steps and rows of max|bf16 − fp32| / max|fp32| */
  double kl_mean, kl_max; /* KL(p_fp32 ‖ p_bf16) of the final distributions, where supports agree */
  int    support_diff;   /* steps where min-p/top-p kept different id sets */
  double lost_mass;      /* largest FP32 probability of ids BF16 dropped */
  int    decided, agreed; /* steps with margin > MARGIN_FACTOR × error; of those, same top id */
} Figures;

static double
case_meta (const CbSafetensors *st, const char *key)
{
  const char *v = cb_safetensors_metadata (st, key);
  ck_assert_msg (v != NULL, "metadata %s missing", key);
  return g_ascii_strtod (v, NULL);
}

static const int64_t *
case_i64 (const CbSafetensors *st, const char *name, int64_t *n)
{
  GError *err = NULL;
  const CbTensorInfo *t = cb_safetensors_get (st, name, CB_DTYPE_I64, CB_NDIM_ANY, NULL, &err);
  ck_assert_msg (t != NULL, "%s", err ? err->message : "");
  *n = t->shape[t->ndim - 1];
  return (const int64_t *) t->data;
}

/* max|a − b| over the entries finite in both. */
static double
finite_diff (const float *a, const float *b, int V)
{
  double d = 0;
  for (int i = 0; i < V; i++)
    if (isfinite (a[i]) && isfinite (b[i]))
      d = MAX (d, fabs ((double) a[i] - b[i]));
  return d;
}

/* The top id of x and its margin over the second. */
static int
top2 (const float *x, int V, double *margin)
{
  int best = 0, second = -1;
  for (int i = 1; i < V; i++)
    if (x[i] > x[best]) {
      second = best;
      best = i;
    } else if (second < 0 || x[i] > x[second]) {
      second = i;
    }
  *margin = second >= 0 ? (double) x[best] - x[second] : INFINITY;
  return best;
}

static void
step_distribution (const float *pf, const float *pb, int V, Figures *f)
{
  double kl = 0, lost = 0;
  gboolean same_support = TRUE;
  for (int i = 0; i < V; i++) {
    if (pf[i] > 0 && pb[i] > 0)
      kl += pf[i] * log ((double) pf[i] / pb[i]);
    else if (pf[i] > 0 || pb[i] > 0) {
      same_support = FALSE;
      lost += pf[i];
    }
  }
  if (!same_support) {
    f->support_diff++;
    f->lost_mass = MAX (f->lost_mass, lost);
    return;
  }
  f->kl_mean += kl;
  f->kl_max = MAX (f->kl_max, kl);
}

static void
run_case (const char *name, Figures *f)
{
  char *rel = g_strdup_printf ("t3/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  CbT3SampleParams p = cb_t3_sample_params_default ();
  p.cfg_weight = case_meta (st, "cfg_weight");
  p.temperature = case_meta (st, "temperature");
  p.repetition_penalty = case_meta (st, "repetition_penalty");
  p.min_p = case_meta (st, "min_p");
  p.top_p = case_meta (st, "top_p");
  int64_t Lt, P, n, S;
  const int64_t *text = case_i64 (st, "input.text_ids", &Lt);
  const int64_t *prompt = case_i64 (st, "input.cond_prompt_speech_tokens", &P);
  const int64_t *tokens = case_i64 (st, "step.tokens", &n);
  ck_assert (cb_safetensors_find (st, "input.speaker_emb") != NULL);
  S = cb_safetensors_find (st, "input.speaker_emb")->shape[1];
  const int64_t speaker_shape[2] = { 1, S }, emotion_shape[3] = { 1, 1, 1 };
  float *owned_speaker = NULL, *owned_emotion = NULL;
  const float *speaker = cb_safetensors_get_f32 (st, "input.speaker_emb", 2, speaker_shape,
                                                 &owned_speaker, &err);
  ck_assert_msg (speaker != NULL, "%s", err ? err->message : "");
  const float *emotion = cb_safetensors_get_f32 (st, "input.emotion_adv", 3, emotion_shape,
                                                 &owned_emotion, &err);
  ck_assert_msg (emotion != NULL, "%s", err ? err->message : "");
  int32_t *ids = g_new (int32_t, Lt), *prompt32 = g_new (int32_t, MAX (P, 1));
  for (int64_t i = 0; i < Lt; i++)
    ids[i] = (int32_t) text[i];  /* row 0 (the conditional row's ids) */
  for (int64_t i = 0; i < P; i++)
    prompt32[i] = (int32_t) prompt[i];
  CbConds voice = { 0 };
  voice.speaker_emb = (float *) speaker;
  voice.speaker_embed_size = (int) S;
  voice.cond_prompt_tokens = prompt32;
  voice.n_cond_prompt_tokens = (int) P;
  p.max_tokens = (int) n;

  const int V = cfg.t3.speech_tokens_dict_size;
  CbT3Decoder *d[2];
  float *rows[2][2];  /* per model: the row after temperature, the final distribution */
  CbT3StageDump dump[2];
  CbT3 *models[2] = { t3_fp32, t3_bf16 };
  for (int m = 0; m < 2; m++) {
    d[m] = cb_t3_decoder_new (models[m], (int) Lt, (int) n, &err);
    ck_assert_msg (d[m] != NULL, "%s", err ? err->message : "");
    ck_assert_msg (cb_t3_decoder_begin (d[m], ids, (int) Lt, &voice, emotion[0], &p, &err), "%s",
                   err ? err->message : "");
    rows[m][0] = g_new (float, V);
    rows[m][1] = g_new (float, V);
    memset (&dump[m], 0, sizeof dump[m]);
    dump[m].temp = rows[m][0];
    dump[m].probs = rows[m][1];
  }
  gboolean done = FALSE;
  for (int64_t i = 0; i < n && !done; i++) {
    /* raw logits of both CFG rows before this step's token is drawn */
    CbT3State *sf = cb_t3_decoder_state (d[0]), *sb = cb_t3_decoder_state (d[1]);
    for (int r = 0; r < cb_t3_n_rows (sf); r++) {
      const float *lf = cb_t3_logits (sf, r), *lb = cb_t3_logits (sb, r);
      double mx = 0;
      for (int v = 0; v < V; v++)
        mx = MAX (mx, fabs (lf[v]));
      f->logits_rel = MAX (f->logits_rel, finite_diff (lf, lb, V) / mx);
    }
    gint32 forced = (gint32) tokens[i], tok;
    for (int m = 0; m < 2; m++)
      ck_assert_msg (cb_t3_decoder_next_full (d[m], NULL, &forced, &dump[m], &tok, &done, &err),
                     "%s", err ? err->message : "");
    /* the processed logits before min-p / top-p: their argmax is the distribution's mode */
    double margin, mb;
    const int top_f = top2 (rows[0][0], V, &margin), top_b = top2 (rows[1][0], V, &mb);
    const double error = finite_diff (rows[0][0], rows[1][0], V);
    if (margin > MARGIN_FACTOR * error) {
      f->decided++;
      f->agreed += top_f == top_b;
    }
    step_distribution (rows[0][1], rows[1][1], V, f);
    f->steps++;
  }
  for (int m = 0; m < 2; m++) {
    cb_t3_decoder_free (d[m]);
    g_free (rows[m][0]);
    g_free (rows[m][1]);
  }
  g_free (ids);
  g_free (prompt32);
  g_free (owned_speaker);
  g_free (owned_emotion);
  cb_safetensors_free (st);
  g_free (path);
  g_free (rel);
}

START_TEST (test_bf16_vs_fp32)
{
  Figures all = { 0 };
  int kl_steps = 0;
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    Figures f = { 0 };
    run_case (cases[c], &f);
    const int same = f.steps - f.support_diff;
    printf ("t3 bf16 %-26s steps %3d: logits rel max err %.2e, KL mean %.2e max %.2e "
            "(%d steps with other min-p/top-p support, FP32 mass dropped %.2e), top id %d/%d "
            "decided steps\n", cases[c], f.steps, f.logits_rel, same ? f.kl_mean / same : 0.0,
            f.kl_max, f.support_diff, f.lost_mass, f.agreed, f.decided);
    all.steps += f.steps;
    all.logits_rel = MAX (all.logits_rel, f.logits_rel);
    all.kl_mean += f.kl_mean;
    kl_steps += same;
    all.kl_max = MAX (all.kl_max, f.kl_max);
    all.support_diff += f.support_diff;
    all.lost_mass = MAX (all.lost_mass, f.lost_mass);
    all.decided += f.decided;
    all.agreed += f.agreed;
  }
  all.kl_mean /= MAX (kl_steps, 1);
  printf ("t3 bf16 all cases, %d steps: logits rel max err %.2e (bound %.0e), KL mean %.2e "
          "(bound %.0e) max %.2e, support differs at %d steps (FP32 mass dropped <= %.2e), "
          "top id agrees at %d/%d steps with margin > %.0fx error\n",
          all.steps, all.logits_rel, MAX_LOGITS_REL_ERR, all.kl_mean, MAX_MEAN_KL, all.kl_max,
          all.support_diff, all.lost_mass, all.agreed, all.decided, MARGIN_FACTOR);
  fflush (stdout);
  /* BF16 really is used: the logits are not FP32's */
  ck_assert_msg (all.logits_rel > 1e-6, "BF16 logits equal FP32's (%.2e)", all.logits_rel);
  ck_assert_msg (all.logits_rel < MAX_LOGITS_REL_ERR, "%.3e", all.logits_rel);
  ck_assert_msg (all.kl_mean < MAX_MEAN_KL, "%.3e", all.kl_mean);
  ck_assert_int_gt (all.decided, all.steps / 5);  /* the agreement check is not vacuous */
  ck_assert_int_eq (all.agreed, all.decided);
}
END_TEST

START_TEST (test_unknown_precision)
{
  CbT3Options o;
  cb_t3_options_init (&o);
  o.precision = (CbT3Precision) 7;
  GError *err = NULL;
  ck_assert_ptr_null (cb_t3_new (&cfg, weights, &o, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
}
END_TEST

static Suite *
t3_bf16_suite (void)
{
  Suite *s = suite_create ("t3-bf16");
  TCase *tc = tcase_create ("bf16");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_bf16_vs_fp32);
  tcase_add_test (tc, test_unknown_precision);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (t3_bf16_suite)
