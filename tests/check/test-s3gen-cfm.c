/* The CFM estimator and the Euler CFG solver against upstream (tests/data/golden/s3gen,
 * README-s3gen.md): every saved estimator evaluation (both CFG rows at once and each row alone),
 * the time schedule, full solves from the recorded noise (every saved Euler state and the output
 * mel), the frame-evaluation counter, cancellation and argument errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cb-check.h"
#include "cb-golden-model.h"
#include "config.h"
#include "s3gen-cfm.h"
#include "s3gen-golden.h"
#include "safetensors.h"

#define EST_TOLERANCE CB_GOLDEN_TOL_EST
#define SOLVE_TOLERANCE CB_GOLDEN_TOL_SOLVE

static CbConfig       cfg;
static CbSafetensors *weights;
static CbS3GenCfm    *cfm;

static void
setup (void)
{
  GError *err = NULL;
  weights = cb_test_golden_model (&cfg, "s3gen.safetensors");
  cfm = cb_s3gen_cfm_new (&cfg, weights, &err);
  ck_assert_msg (cfm != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  cb_s3gen_cfm_free (cfm);
  cb_safetensors_free (weights);
}

static CbSafetensors *
open_case (const char *name)
{
  char *rel = g_strdup_printf ("s3gen/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s: %s", path, err ? err->message : "");
  g_free (path);
  g_free (rel);
  return st;
}

/* An aligned F32 copy of a golden tensor (g_free); its element count in *numel. */
static float *
golden (const CbSafetensors *st, const char *name, guint64 *numel)
{
  const CbTensorInfo *ti = cb_safetensors_find (st, name);
  ck_assert_msg (ti != NULL, "golden tensor %s missing", name);
  ck_assert_int_eq (ti->dtype, CB_DTYPE_F32);
  float *copy = g_new (float, ti->numel ? ti->numel : 1);
  memcpy (copy, ti->data, ti->nbytes);
  if (numel)
    *numel = ti->numel;
  return copy;
}

static int
meta_int (const CbSafetensors *st, const char *key)
{
  const char *v = cb_safetensors_metadata (st, key);
  ck_assert_msg (v != NULL, "metadata %s missing", key);
  return atoi (v);
}

/* max |a − ref| / max |ref| */
static double
rel_err (const float *a, const float *ref, gsize n)
{
  gboolean nonzero = FALSE;  /* a golden reference that is all zero would prove nothing */
  for (gsize i = 0; i < n && !nonzero; i++)
    nonzero = ref[i] != 0.0f;
  ck_assert (nonzero);
  return cb_rel_max_err (a, ref, n);
}

static CbArena *
arena_for (int B, int T)
{
  GError *err = NULL;
  guint64 floats = cb_s3gen_cfm_scratch_floats (cfm, B, T);
  ck_assert (floats > 0);
  CbArena *a = cb_arena_new (floats * sizeof (float), &err);
  ck_assert_msg (a != NULL, "%s", err ? err->message : "");
  return a;
}

START_TEST (test_t_span)
{
  const char *cases[] = { "tokens_0001", "tokens_0050", "tokens_0300" };
  const int n = cb_s3gen_cfm_n_steps (cfm);
  ck_assert_int_eq (n, cfg.cfm.n_timesteps);
  const float *ours = cb_s3gen_cfm_t_span (cfm);
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    CbSafetensors *st = open_case (cases[c]);
    guint64 numel;
    float *ref = golden (st, "cfm.t_span", &numel);
    ck_assert_int_eq (numel, n + 1);
    for (int k = 0; k <= n; k++)
      ck_assert_msg (ours[k] == ref[k], "%s t_span[%d]: %.9g != %.9g", cases[c], k, ours[k],
                     ref[k]);
    g_free (ref);
    cb_safetensors_free (st);
  }
  ck_assert (ours[0] == 0.0f && ours[n] == 1.0f);
}
END_TEST

/* every saved estimator evaluation: (case, step) */
static const struct {
  const char *name;
  int         step;
} evals[] = {
  { "tokens_0001", 0 }, { "tokens_0001", 5 }, { "tokens_0050", 1 },
};

START_TEST (test_estimate)
{
  const char *name = evals[_i].name;
  const int k = evals[_i].step;
  CbSafetensors *st = open_case (name);
  char key[64];
  guint64 n_x, n_spks, n_mask, n_t;
#define GOLD(field, np) (g_snprintf (key, sizeof key, "est.%d.%s", k, field), golden (st, key, np))
  float *x = GOLD ("in.x", &n_x), *mu = GOLD ("in.mu", NULL), *cond = GOLD ("in.cond", NULL);
  float *t = GOLD ("in.t", &n_t), *spks = GOLD ("in.spks", &n_spks);
  float *mask = GOLD ("in.mask", &n_mask), *ref = GOLD ("out", NULL);
#undef GOLD
  const int F = cfg.flow_decoder.out_channels;
  const int T = (int) (n_x / 2 / F);
  ck_assert_int_eq (n_t, 2);
  ck_assert_int_eq (n_spks, 2 * cfg.cfm.spk_emb_dim);
  ck_assert_int_eq (n_mask, 2 * T);
  for (guint64 i = 0; i < n_mask; i++)
    ck_assert (mask[i] == 1.0f);  /* the estimator is specified for all-valid frames */
  ck_assert (t[0] == cb_s3gen_cfm_t_span (cfm)[k] && t[1] == t[0]);

  const gsize n = (gsize) F * T;
  float *out = g_new (float, 2 * n);
  CbArena *arena = arena_for (2, T);
  guint64 before = cb_s3gen_cfm_frame_evals (cfm);
  cb_s3gen_cfm_estimate (cfm, arena, x, mu, t, spks, cond, 2, T, out);
  ck_assert_int_eq (cb_s3gen_cfm_frame_evals (cfm) - before, 2 * T);
  ck_assert_int_eq (arena->used, 0);
  double e_batch = rel_err (out, ref, 2 * n);
  double e_c = rel_err (out, ref, n), e_u = rel_err (out + n, ref + n, n);

  /* each row alone (B = 1) gives the same values */
  double e_single = 0.0;
  for (int row = 0; row < 2; row++) {
    memset (out, 0, sizeof (float) * n);
    cb_s3gen_cfm_estimate (cfm, arena, x + row * n, mu + row * n, t + row,
                           spks + row * cfg.cfm.spk_emb_dim, cond + row * n, 1, T, out);
    e_single = MAX (e_single, rel_err (out, ref + row * n, n));
  }
  printf ("cfm estimate %s step %d (T %d): rel max err batch %.2e (cond row %.2e, uncond row "
          "%.2e), rows alone %.2e (tol %.0e)\n", name, k, T, e_batch, e_c, e_u, e_single,
          EST_TOLERANCE);
  fflush (stdout);
  ck_assert_msg (e_batch <= EST_TOLERANCE, "%s step %d: %.3e", name, k, e_batch);
  ck_assert_msg (e_single <= EST_TOLERANCE, "%s step %d alone: %.3e", name, k, e_single);

  cb_arena_free (arena);
  g_free (x); g_free (mu); g_free (cond); g_free (t); g_free (spks); g_free (mask); g_free (ref);
  g_free (out);
  cb_safetensors_free (st);
}
END_TEST

typedef struct {
  const CbSafetensors *st;
  int                  F, T, n_traced, n_compared;
  double               max_err;
} TraceCheck;

static void
trace_cb (int k, const float *x, int T, void *user)
{
  TraceCheck *tc = user;
  ck_assert_int_eq (T, tc->T);
  ck_assert_int_eq (k, tc->n_traced);
  tc->n_traced++;
  char key[32];
  g_snprintf (key, sizeof key, "cfm.x.%d", k);
  if (!cb_safetensors_find (tc->st, key))
    return;
  float *ref = golden (tc->st, key, NULL);
  double e = rel_err (x, ref, (gsize) tc->F * T);
  tc->max_err = MAX (tc->max_err, e);
  tc->n_compared++;
  g_free (ref);
}

static const char *const solve_cases[] = { "tokens_0001", "tokens_0050", "tokens_0300" };

/* Upstream's inputs to the CFM of a case: mu (flow.mu is time-major), spks, and cond built from
 * the prompt mel as the flow does (prompt frames, then zeros), checked against flow.cond where it
 * was saved. */
static void
case_inputs (const CbSafetensors *st, int F, int T, float **mu, float **spks, float **cond)
{
  guint64 numel;
  float *mu_tm = golden (st, "flow.mu", &numel);
  ck_assert_int_eq (numel, (guint64) F * T);
  *mu = g_new (float, (gsize) F * T);
  for (int t = 0; t < T; t++)
    for (int f = 0; f < F; f++)
      (*mu)[(gsize) f * T + t] = mu_tm[(gsize) t * F + f];
  g_free (mu_tm);
  *spks = golden (st, "flow.xvec_proj", &numel);
  ck_assert_int_eq (numel, cfg.cfm.spk_emb_dim);

  float *prompt = golden (st, "input.prompt_feat", &numel);
  const int Tm = (int) (numel / F);
  ck_assert_int_eq (Tm, meta_int (st, "prompt_frames"));
  *cond = g_new0 (float, (gsize) F * T);
  for (int t = 0; t < Tm; t++)
    for (int f = 0; f < F; f++)
      (*cond)[(gsize) f * T + t] = prompt[(gsize) t * F + f];
  g_free (prompt);
  if (cb_safetensors_find (st, "flow.cond")) {
    float *ref = golden (st, "flow.cond", NULL);
    ck_assert (memcmp (ref, *cond, sizeof (float) * F * T) == 0);
    g_free (ref);
  }
}

START_TEST (test_solve)
{
  const char *name = solve_cases[_i];
  CbSafetensors *st = open_case (name);
  const int F = cfg.flow_decoder.out_channels;
  guint64 numel;
  float *z = golden (st, "noise.z", &numel);
  const int T = (int) (numel / F);
  float *mu, *spks, *cond;
  case_inputs (st, F, T, &mu, &spks, &cond);
  float *ref_mel = golden (st, "out.mel", &numel);
  const int Tm = meta_int (st, "prompt_frames");
  ck_assert_int_eq (numel, (guint64) F * (T - Tm));

  float *mel = g_new (float, (gsize) F * T);
  CbArena *arena = arena_for (2, T);
  TraceCheck tc = { st, F, T, 0, 0, 0.0 };
  GError *err = NULL;
  guint64 before = cb_s3gen_cfm_frame_evals (cfm);
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = cb_s3gen_cfm_solve (cfm, arena, z, mu, spks, cond, T, mel, NULL, trace_cb, &tc,
                                    &err);
  double ms = (g_get_monotonic_time () - t0) / 1000.0;
  ck_assert_msg (ok, "%s", err ? err->message : "");
  const int n = cb_s3gen_cfm_n_steps (cfm);
  ck_assert_int_eq (cb_s3gen_cfm_frame_evals (cfm) - before, (guint64) n * 2 * T);
  ck_assert_int_eq (tc.n_traced, n + 1);
  ck_assert_int_eq (arena->used, 0);

  /* out.mel = frames [Tm, T) */
  float *tail = g_new (float, (gsize) F * (T - Tm));
  for (int f = 0; f < F; f++)
    memcpy (tail + (gsize) f * (T - Tm), mel + (gsize) f * T + Tm, sizeof (float) * (T - Tm));
  double e_mel = rel_err (tail, ref_mel, (gsize) F * (T - Tm));
  printf ("cfm solve %s (T %d, prompt %d): rel max err states %.2e (%d saved), out.mel %.2e "
          "(tol %.0e), %.0f ms\n", name, T, Tm, tc.max_err, tc.n_compared, e_mel,
          SOLVE_TOLERANCE, ms);
  fflush (stdout);
  ck_assert_msg (tc.max_err <= SOLVE_TOLERANCE, "%s states: %.3e", name, tc.max_err);
  ck_assert_msg (e_mel <= SOLVE_TOLERANCE, "%s out.mel: %.3e", name, e_mel);
  ck_assert_int_ge (tc.n_compared, strcmp (name, "tokens_0300") == 0 ? 0 : 3);

  cb_arena_free (arena);
  g_free (tail); g_free (mel); g_free (ref_mel); g_free (z); g_free (mu); g_free (spks);
  g_free (cond);
  cb_safetensors_free (st);
}
END_TEST

/* The BF16 weight option: the same solve with BF16 copies of the transformer linears stays within
 * a close distance of FP32 (log-mel cosine ≥ 0.999 with and without the mean) and differs from it
 * (the copies are really used). */
START_TEST (test_solve_bf16)
{
  CbSafetensors *st = open_case ("tokens_0050");
  const int F = cfg.flow_decoder.out_channels;
  guint64 numel;
  float *z = golden (st, "noise.z", &numel);
  const int T = (int) (numel / F);
  const gsize n = (gsize) F * T;
  float *mu, *spks, *cond;
  case_inputs (st, F, T, &mu, &spks, &cond);
  GError *err = NULL;
  CbS3GenCfm *half = cb_s3gen_cfm_new (&cfg, weights, &err);
  ck_assert_msg (half != NULL, "%s", err ? err->message : "");
  ck_assert (!cb_s3gen_cfm_is_bf16 (half));
  const gsize bytes = cb_s3gen_cfm_to_bf16 (half);
  ck_assert (cb_s3gen_cfm_is_bf16 (half));
  ck_assert_uint_eq (cb_s3gen_cfm_to_bf16 (half), 0);  /* once */
  /* six linears per transformer block: q, k, v (inner × C), out (C × inner), ff (FF × C, C × FF) */
  const CbFlowDecoderConfig *d = &cfg.flow_decoder;
  const gsize C = d->channels.v[0], inner = (gsize) d->num_heads * d->attention_head_dim;
  const gsize per_block = 4 * inner * C + 2 * (gsize) d->ff_mult * C * C;
  ck_assert_uint_eq (bytes, (gsize) (d->num_mid_blocks + 2) * d->n_blocks * per_block * 2);

  float *m32 = g_new (float, n), *m16 = g_new (float, n);
  CbArena *arena = arena_for (2, T);
  ck_assert (cb_s3gen_cfm_solve (cfm, arena, z, mu, spks, cond, T, m32, NULL, NULL, NULL, &err));
  ck_assert (cb_s3gen_cfm_solve (half, arena, z, mu, spks, cond, T, m16, NULL, NULL, NULL, &err));
  const double plain = cb_cosine (m16, m32, n, FALSE), centred = cb_cosine (m16, m32, n, TRUE);
  const double e = cb_rel_max_err (m16, m32, n);
  printf ("cfm solve tokens_0050 BF16 vs FP32: rel max err %.2e, log-mel cosine %.6f (centred "
          "%.6f), %" G_GSIZE_FORMAT " bytes of BF16 copies\n", e, plain, centred, bytes);
  fflush (stdout);
  ck_assert_msg (e > 0.0, "the BF16 copies were not used");
  ck_assert_msg (plain >= 0.999 && centred >= 0.999, "cosine %.6f, centred %.6f", plain,
                 centred);

  cb_arena_free (arena);
  cb_s3gen_cfm_free (half);
  g_free (m32); g_free (m16); g_free (z); g_free (mu); g_free (spks); g_free (cond);
  cb_safetensors_free (st);
}
END_TEST

typedef struct {
  gint *flag;
  int   at_step;
} CancelAt;

static void
cancel_cb (int k, const float *x, int T, void *user)
{
  (void) x;
  (void) T;
  CancelAt *c = user;
  if (k == c->at_step)
    g_atomic_int_set (c->flag, 1);
}

/* A set flag stops the solve before the next evaluation: none when set up front, exactly one
 * when raised after the first step. */
START_TEST (test_cancel)
{
  CbSafetensors *st = open_case ("tokens_0001");
  const int F = cfg.flow_decoder.out_channels;
  guint64 numel;
  float *z = golden (st, "noise.z", &numel);
  const int T = (int) (numel / F);
  float *mu, *spks, *cond;
  case_inputs (st, F, T, &mu, &spks, &cond);
  float *mel = g_new (float, (gsize) F * T);
  CbArena *arena = arena_for (2, T);

  gint flag = 1;
  GError *err = NULL;
  guint64 before = cb_s3gen_cfm_frame_evals (cfm);
  ck_assert (!cb_s3gen_cfm_solve (cfm, arena, z, mu, spks, cond, T, mel, &flag, NULL, NULL,
                                  &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_CANCELLED));
  ck_assert_int_eq (cb_s3gen_cfm_frame_evals (cfm) - before, 0);
  g_clear_error (&err);

  flag = 0;
  CancelAt at = { &flag, 1 };
  before = cb_s3gen_cfm_frame_evals (cfm);
  ck_assert (!cb_s3gen_cfm_solve (cfm, arena, z, mu, spks, cond, T, mel, &flag, cancel_cb, &at,
                                  &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_CANCELLED));
  ck_assert_int_eq (cb_s3gen_cfm_frame_evals (cfm) - before, 2 * T);
  ck_assert_int_eq (arena->used, 0);
  g_clear_error (&err);

  /* a clear flag changes nothing */
  flag = 0;
  ck_assert (cb_s3gen_cfm_solve (cfm, arena, z, mu, spks, cond, T, mel, &flag, NULL, NULL, &err));

  cb_arena_free (arena);
  g_free (mel); g_free (z); g_free (mu); g_free (spks); g_free (cond);
  cb_safetensors_free (st);
}
END_TEST

START_TEST (test_errors)
{
  const int F = cfg.flow_decoder.out_channels, T = 16;
  float *buf = g_new0 (float, (gsize) F * T);
  GError *err = NULL;

  /* arena too small by one allocation unit (the arena rounds its size up to CB_ARENA_ALIGN) */
  guint64 need = cb_s3gen_cfm_scratch_floats (cfm, 2, T);
  ck_assert (need > cb_s3gen_cfm_scratch_floats (cfm, 1, T));
  CbArena *small = cb_arena_new (need * sizeof (float) - CB_ARENA_ALIGN, &err);
  ck_assert (small != NULL);
  ck_assert (!cb_s3gen_cfm_solve (cfm, small, buf, buf, buf, buf, T, buf, NULL, NULL, NULL, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  ck_assert (!cb_s3gen_cfm_solve (cfm, NULL, buf, buf, buf, buf, T, buf, NULL, NULL, NULL, &err));
  g_clear_error (&err);
  cb_arena_free (small);

  CbArena *arena = arena_for (2, T);
  ck_assert (!cb_s3gen_cfm_solve (cfm, arena, buf, buf, buf, buf, 0, buf, NULL, NULL, NULL, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  ck_assert (!cb_s3gen_cfm_solve (cfm, arena, NULL, buf, buf, buf, T, buf, NULL, NULL, NULL,
                                  &err));
  g_clear_error (&err);
  ck_assert_int_eq (cb_s3gen_cfm_scratch_floats (cfm, 3, T), 0);
  ck_assert_int_eq (cb_s3gen_cfm_scratch_floats (cfm, 1, 0), 0);
  cb_arena_free (arena);

  /* meanflow is refused; a config that names tensors the file lacks fails naming one */
  CbConfig other = cfg;
  other.flow_decoder.meanflow = TRUE;
  ck_assert (cb_s3gen_cfm_new (&other, weights, &err) == NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_UNSUPPORTED));
  g_clear_error (&err);
  other = cfg;
  other.flow_decoder.n_blocks = cfg.flow_decoder.n_blocks + 1;
  ck_assert (cb_s3gen_cfm_new (&other, weights, &err) == NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_MISMATCH));
  printf ("cfm: extra block refused: %s\n", err->message);
  g_clear_error (&err);
  other = cfg;
  other.flow_decoder.attention_head_dim = cfg.flow_decoder.attention_head_dim * 2;
  ck_assert (cb_s3gen_cfm_new (&other, weights, &err) == NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_MISMATCH));
  g_clear_error (&err);
  g_free (buf);
}
END_TEST

static Suite *
cfm_suite (void)
{
  Suite *s = suite_create ("s3gen-cfm");
  TCase *tc = tcase_create ("golden");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_t_span);
  tcase_add_loop_test (tc, test_estimate, 0, G_N_ELEMENTS (evals));
  tcase_add_loop_test (tc, test_solve, 0, G_N_ELEMENTS (solve_cases));
  tcase_add_test (tc, test_solve_bf16);
  tcase_add_test (tc, test_cancel);
  tcase_add_test (tc, test_errors);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (cfm_suite)
