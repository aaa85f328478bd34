/* bench-t3-bf16 — accuracy of T3 with BF16 weight storage against FP32 on a full-size model.
 *
 *   build-x/tests/bench/bench-t3-bf16 MODEL_DIR [threads] [steps]     # defaults: 2 threads, 100
 *
 * MODEL_DIR holds t3_cfg.safetensors, conds.pt and tokenizer.json (and chatterbox-config.json;
 * absent: upstream's sizes). tests/check/test-t3-bf16.c makes the same comparison on the small
 * golden model; this one shows that its conclusions hold at full size (30 layers, H 1024), where
 * rounding errors accumulate over more and wider dot products.
 *
 * Teacher forcing: the FP32 model decodes `steps` tokens, each sampled from its CFG-combined logits
 * by the engine's sampler (upstream's default processors: repetition penalty 1.2, temperature 0.8,
 * min-p 0.05, top-p 1.0; seed 0) with the stop token masked so every run makes all its steps; the
 * BF16 model is fed the same tokens. At the prefill and every step the two CFG-combined rows
 * ℓ = cond + 0.5·(cond − uncond) are compared: max|ℓ_bf16 − ℓ_fp32| (absolute and relative to
 * max|ℓ_fp32|), KL(softmax(ℓ_fp32/0.8) ‖ softmax(ℓ_bf16/0.8)), and the argmax, at all steps and at
 * the "confident" ones where FP32's top-1/top-2 margin exceeds 10× that step's max abs error
 * (there BF16 must pick the same top id). Step times are informational. Not run by `meson test`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "conds.h"
#include "config.h"
#include "parallel.h"
#include "safetensors.h"
#include "t3-sample.h"
#include "t3.h"
#include "text.h"
#include "tokenizer.h"

#define MARGIN_FACTOR 10.0

/* Upstream's example sentence and a bit more: about 100 ids with the start and stop ids. */
static const char TEXT[] =
  "Ezreal and Jinx teamed up with Ahri, Yasuo, and Teemo to take down the enemy's Nexus in an "
  "epic late-game pentakill. Then everyone went home happy.";

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

/* p = softmax(x / T) in double. */
static void
softmax_t (double *p, const float *x, int V, double T)
{
  double mx = -INFINITY, sum = 0;
  for (int i = 0; i < V; i++)
    mx = MAX (mx, x[i] / T);
  for (int i = 0; i < V; i++)
    sum += p[i] = exp (x[i] / T - mx);
  for (int i = 0; i < V; i++)
    p[i] /= sum;
}

/* The CFG-combined row of the state's current step, as the decoder forms it. */
static void
combined (float *out, const CbT3State *s, int V, double cfg_weight)
{
  cb_t3_cfg_combine (out, cb_t3_logits (s, 0), cb_t3_logits (s, 1), V, cfg_weight);
}

/* Text ids as upstream's generate makes them: punc_norm, the tokenizer, start and stop ids. */
static GArray *
text_ids (const char *dir, const CbConfig *cfg)
{
  GError *err = NULL;
  char *path = g_build_filename (dir, "tokenizer.json", NULL);
  CbTokenizer *tok = cb_tokenizer_load (path, &err);
  if (!tok)
    die (err);
  char *norm = cb_punc_norm (TEXT);
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  gint32 start = cfg->t3.start_text_token, stop = cfg->t3.stop_text_token;
  g_array_append_val (ids, start);
  if (!cb_tokenizer_encode (tok, norm, ids, &err))
    die (err);
  g_array_append_val (ids, stop);
  g_free (norm);
  cb_tokenizer_free (tok);
  g_free (path);
  return ids;
}

int
main (int argc, char **argv)
{
  g_set_prgname ("bench-t3-bf16");
  if (argc < 2) {
    fprintf (stderr, "usage: %s MODEL_DIR [threads] [steps]\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  cb_set_num_threads (argc > 2 ? atoi (argv[2]) : 2);
  const int S = MAX (argc > 3 ? atoi (argv[3]) : 100, 1);

  CbConfig cfg;
  cb_config_init_default (&cfg);
  GError *err = NULL;
  char *json = g_build_filename (dir, "chatterbox-config.json", NULL);
  if (g_file_test (json, G_FILE_TEST_EXISTS) && !cb_config_load_json (&cfg, json, &err))
    die (err);
  char *st_path = g_build_filename (dir, "t3_cfg.safetensors", NULL);
  char *conds_path = g_build_filename (dir, "conds.pt", NULL);
  CbSafetensors *st = cb_safetensors_open (st_path, &err);
  if (!st)
    die (err);
  CbCondsExpect expect;
  cb_conds_expect_from_config (&expect, &cfg);
  CbConds *voice = cb_conds_load (conds_path, &expect, &err);
  if (!voice)
    die (err);
  GArray *ids = text_ids (dir, &cfg);

  /* Both models view the same mapped file; BF16 adds its converted copies of the matrices. */
  CbT3 *t3[2];
  CbT3State *state[2];
  for (int m = 0; m < 2; m++) {
    CbT3Options o;
    cb_t3_options_init (&o);
    o.precision = m ? CB_T3_PRECISION_BF16 : CB_T3_PRECISION_FP32;
    double t0 = g_get_monotonic_time ();
    if (!(t3[m] = cb_t3_new (&cfg, st, &o, &err))
        || !(state[m] = cb_t3_state_new (t3[m], (int) ids->len, S, &err)))
      die (err);
    printf ("%s model built in %.0f ms\n", m ? "BF16" : "FP32",
            (g_get_monotonic_time () - t0) / 1000.0);
  }

  CbT3SampleParams sp = cb_t3_sample_params_default ();
  sp.max_tokens = S + 1;
  const CbT3Params params = { (float) sp.cfg_weight, CB_T3_DEFAULT_EXAGGERATION };
  const int V = cfg.t3.speech_tokens_dict_size;
  const int n = S + 1;  /* compared rows: the prefill's and one per step */
  printf ("threads %d, text %u ids, voice prompt %d tokens, %d steps, cfg_weight %.1f, "
          "exaggeration %.1f, temperature %.1f\n",
          cb_get_num_threads (), ids->len, voice->n_cond_prompt_tokens, S, sp.cfg_weight,
          params.exaggeration, sp.temperature);
  fflush (stdout);

  /* ---- FP32: sample and record the tokens and the combined rows ---- */
  CbT3Sampler *sampler = cb_t3_sampler_new (V, sp.max_tokens, cfg.t3.start_speech_token,
                                            cfg.t3.stop_speech_token, &err);
  if (!sampler || !cb_t3_sampler_begin (sampler, &sp, &err))
    die (err);
  float *ref = g_new (float, (gsize) n * V), *row = g_new (float, V);
  gint32 *tokens = g_new (gint32, S);
  double *ms[2] = { g_new (double, S), g_new (double, S) }, prefill_ms[2];
  double t0 = g_get_monotonic_time ();
  if (!cb_t3_begin (state[0], (const int32_t *) ids->data, (int) ids->len, voice, &params, &err))
    die (err);
  prefill_ms[0] = (g_get_monotonic_time () - t0) / 1000.0;
  for (int k = 0; k < n; k++) {
    combined (ref + (gsize) k * V, state[0], V, sp.cfg_weight);
    if (k == S)
      break;
    memcpy (row, ref + (gsize) k * V, V * sizeof *row);
    /* random weights stop anywhere: without the stop token every step is compared */
    row[cfg.t3.stop_speech_token] = -INFINITY;
    tokens[k] = cb_t3_sampler_step (sampler, row, NULL);
    t0 = g_get_monotonic_time ();
    if (!cb_t3_forward_step (state[0], tokens[k], &err))
      die (err);
    ms[0][k] = (g_get_monotonic_time () - t0) / 1000.0;
  }

  /* ---- BF16: the same tokens, compared row by row ---- */
  double *rel = g_new (double, n), *kl = g_new (double, n), *pf = g_new (double, V),
         *pb = g_new (double, V);
  double abs_max = 0, kl_sum = 0;
  int agree = 0, confident = 0, agree_confident = 0;
  t0 = g_get_monotonic_time ();
  if (!cb_t3_begin (state[1], (const int32_t *) ids->data, (int) ids->len, voice, &params, &err))
    die (err);
  prefill_ms[1] = (g_get_monotonic_time () - t0) / 1000.0;
  for (int k = 0; k < n; k++) {
    const float *lf = ref + (gsize) k * V;
    combined (row, state[1], V, sp.cfg_weight);
    double err_abs = 0, mx = 0;
    for (int i = 0; i < V; i++) {
      err_abs = MAX (err_abs, fabs ((double) row[i] - lf[i]));
      mx = MAX (mx, fabs ((double) lf[i]));
    }
    rel[k] = err_abs / mx;
    abs_max = MAX (abs_max, err_abs);
    softmax_t (pf, lf, V, sp.temperature);
    softmax_t (pb, row, V, sp.temperature);
    kl[k] = 0;
    for (int i = 0; i < V; i++)
      if (pf[i] > 0)
        kl[k] += pf[i] * log (pf[i] / pb[i]);
    kl_sum += kl[k];
    double margin, mb;
    const gboolean same = top2 (lf, V, &margin) == top2 (row, V, &mb);
    agree += same;
    if (margin > MARGIN_FACTOR * err_abs) {
      confident++;
      agree_confident += same;
    }
    if (k == S)
      break;
    t0 = g_get_monotonic_time ();
    if (!cb_t3_forward_step (state[1], tokens[k], &err))
      die (err);
    ms[1][k] = (g_get_monotonic_time () - t0) / 1000.0;
  }

  double kl_max = 0, rel_max = 0;
  for (int k = 0; k < n; k++) {
    kl_max = MAX (kl_max, kl[k]);
    rel_max = MAX (rel_max, rel[k]);
  }
  const double rel_median = median (rel, n), kl_mean = kl_sum / n;
  const double fp32_ms = median (ms[0], S), bf16_ms = median (ms[1], S);
  printf ("CFG-combined logits over %d rows (prefill + %d steps):\n"
          "  rel max err (max|bf16-fp32|/max|fp32|): median %.2e, max %.2e; max abs err %.2e\n"
          "  KL(p_fp32 || p_bf16) at T %.1f: mean %.2e, max %.2e\n"
          "  argmax agrees: %d/%d rows; confident rows (top-1/top-2 margin > %.0fx max abs err): "
          "%d/%d\n"
          "  time: prefill FP32 %.0f ms, BF16 %.0f ms; step median FP32 %.1f ms, BF16 %.1f ms\n",
          n, S, rel_median, rel_max, abs_max, sp.temperature, kl_mean, kl_max, agree, n,
          MARGIN_FACTOR, agree_confident, confident, prefill_ms[0], prefill_ms[1], fp32_ms,
          bf16_ms);
  printf ("RESULT {\"steps\": %d, \"rows\": %d, \"threads\": %d, \"rel_err_median\": %.4g, "
          "\"rel_err_max\": %.4g, \"abs_err_max\": %.4g, \"kl_mean\": %.4g, \"kl_max\": %.4g, "
          "\"argmax_agree\": %d, \"confident\": %d, \"confident_agree\": %d, "
          "\"fp32_step_ms\": %.2f, \"bf16_step_ms\": %.2f}\n",
          S, n, cb_get_num_threads (), rel_median, rel_max, abs_max, kl_mean, kl_max, agree,
          confident, agree_confident, fp32_ms, bf16_ms);

  g_free (rel);
  g_free (kl);
  g_free (pf);
  g_free (pb);
  g_free (ms[0]);
  g_free (ms[1]);
  g_free (tokens);
  g_free (row);
  g_free (ref);
  cb_t3_sampler_free (sampler);
  for (int m = 0; m < 2; m++) {
    cb_t3_state_free (state[m]);
    cb_t3_free (t3[m]);
  }
  g_array_unref (ids);
  cb_conds_free (voice);
  cb_safetensors_free (st);
  g_free (conds_path);
  g_free (st_path);
  g_free (json);
  return 0;
}
