/* The S3Gen flow front end against upstream (tests/data/golden/s3gen, README-s3gen.md): encoder
 * output `flow.encoder_h`, `flow.mu` (upstream time-major, ours channels-first) and the x-vector
 * projection `flow.xvec_proj` on every case that holds them; the streaming windows (inputs only)
 * must run and stay finite. Also: bad tokens and counts, too little scratch, and a checkpoint with
 * a missing or mis-shaped tensor fail with an error naming the problem. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#include "cb-check.h"
#include "cb-golden-model.h"
#include "config.h"
#include "s3gen-flow.h"
#include "s3gen-golden.h"
#include "safetensors.h"

#define TOLERANCE CB_GOLDEN_TOL_FLOW

static CbConfig       cfg;
static CbSafetensors *weights;
static CbS3GenFlow   *flow;

static void
setup (void)
{
  GError *err = NULL;
  weights = cb_test_golden_model (&cfg, "s3gen.safetensors");
  flow = cb_s3gen_flow_new (&cfg, weights, &err);
  ck_assert_msg (flow != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  cb_s3gen_flow_free (flow);
  cb_safetensors_free (weights);
}

/* An I64 tensor (1, n) as int32 ids appended to `ids`; FALSE if absent. */
static gboolean
append_ids (GArray *ids, const CbSafetensors *st, const char *name)
{
  const CbTensorInfo *ti = cb_safetensors_find (st, name);
  if (!ti)
    return FALSE;
  ck_assert_int_eq (ti->dtype, CB_DTYPE_I64);
  for (guint64 i = 0; i < ti->numel; i++) {
    gint64 v;
    memcpy (&v, ti->data + i * sizeof v, sizeof v);
    ck_assert (v >= 0 && v <= G_MAXINT32);
    gint32 id = (gint32) v;
    g_array_append_val (ids, id);
  }
  return TRUE;
}

/* A float tensor as F32 (owned copy), with numel checked; NULL if absent. */
static float *
golden_f32 (const CbSafetensors *st, const char *name, guint64 numel)
{
  if (!cb_safetensors_find (st, name))
    return NULL;
  GError *err = NULL;
  float *owned = NULL;
  const float *p = cb_safetensors_get_f32 (st, name, CB_NDIM_ANY, NULL, &owned, &err);
  ck_assert_msg (p != NULL, "%s: %s", name, err ? err->message : "");
  const CbTensorInfo *ti = cb_safetensors_find (st, name);
  ck_assert_msg (ti->numel == numel, "%s has %" G_GUINT64_FORMAT " values, expected %"
                 G_GUINT64_FORMAT, name, ti->numel, numel);
  float *copy = g_memdup2 (p, numel * sizeof (float));
  g_free (owned);
  return copy;
}

static gboolean
all_finite (const float *x, gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (!isfinite (x[i]))
      return FALSE;
  return TRUE;
}

static const char *const cases[] = {
  "tokens_0001", "tokens_0050", "tokens_0300",
  "stream_0010", "stream_0030", "stream_0060", "stream_0150",
};

/* Stream windows hold only their speech tokens; their voice is conds.gen in full, whose prompt
 * tokens tokens_0300 carries. */
#define FULL_VOICE_CASE "s3gen/tokens_0300.safetensors"

START_TEST (test_golden_case)
{
  const char *name = cases[_i];
  char *rel = g_strdup_printf ("s3gen/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbSafetensors *gold = cb_safetensors_open (path, &err);
  ck_assert_msg (gold != NULL, "%s", err ? err->message : "");

  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  if (!append_ids (ids, gold, "input.prompt_token")) {
    char *vpath = cb_test_golden_path (FULL_VOICE_CASE);
    CbSafetensors *voice = cb_safetensors_open (vpath, &err);
    ck_assert_msg (voice != NULL, "%s", err ? err->message : "");
    ck_assert (append_ids (ids, voice, "input.prompt_token"));
    cb_safetensors_free (voice);
    g_free (vpath);
  }
  const int n_prompt = (int) ids->len;
  ck_assert (append_ids (ids, gold, "input.tokens"));
  const int n = (int) ids->len;
  const int T2 = cfg.flow.token_mel_ratio * n, C = cfg.flow_encoder.output_size;
  const int M = cfg.flow.output_size;

  /* an arena of exactly the advertised size: an undercount fails here */
  const guint64 floats = cb_s3gen_flow_scratch_floats (flow, n);
  ck_assert (floats > 0);
  CbArena *arena = cb_arena_new (floats * sizeof (float), &err);
  ck_assert_msg (arena != NULL, "%s", err ? err->message : "");
  float *mu = g_new (float, (gsize) M * T2), *h = g_new (float, (gsize) T2 * C);
  ck_assert_msg (cb_s3gen_flow_encode (flow, arena, (const int32_t *) ids->data, n, mu, h, &err),
                 "%s: %s", name, err ? err->message : "");
  ck_assert_uint_eq (cb_arena_mark (arena), 0);
  ck_assert_msg (all_finite (mu, (gsize) M * T2) && all_finite (h, (gsize) T2 * C),
                 "%s: non-finite output", name);

  double e_h = -1, e_mu = -1, e_spk = -1;
  float *ref_h = golden_f32 (gold, "flow.encoder_h", (guint64) T2 * C);
  if (ref_h)
    e_h = cb_rel_max_err (h, ref_h, (gsize) T2 * C);
  float *ref_mu = golden_f32 (gold, "flow.mu", (guint64) T2 * M);
  if (ref_mu) {
    float *mu_tm = g_new (float, (gsize) T2 * M);  /* upstream's (1, T, 80) */
    for (int t = 0; t < T2; t++)
      for (int c = 0; c < M; c++)
        mu_tm[(gsize) t * M + c] = mu[(gsize) c * T2 + t];
    e_mu = cb_rel_max_err (mu_tm, ref_mu, (gsize) T2 * M);
    g_free (mu_tm);
  }
  float *ref_spk = golden_f32 (gold, "flow.xvec_proj", (guint64) M);
  if (ref_spk) {
    float *emb = golden_f32 (gold, "input.embedding", (guint64) cfg.flow.spk_embed_dim);
    ck_assert (emb != NULL);
    float *spks = g_new (float, M);
    cb_s3gen_flow_speaker (flow, emb, spks);
    e_spk = cb_rel_max_err (spks, ref_spk, (gsize) M);
    g_free (spks);
    g_free (emb);
  }

  /* a second run on the rewound arena is bit-identical */
  float *mu2 = g_new (float, (gsize) M * T2);
  ck_assert (cb_s3gen_flow_encode (flow, arena, (const int32_t *) ids->data, n, mu2, NULL, &err));
  ck_assert_msg (memcmp (mu, mu2, sizeof (float) * M * T2) == 0, "%s: second run differs", name);

  printf ("s3gen-flow %-12s tokens %3d + %3d frames %4d: rel max err encoder_h %9.2e mu %9.2e "
          "xvec_proj %9.2e (tol %.0e; -1 = not in the golden file)\n",
          name, n_prompt, n - n_prompt, T2, e_h, e_mu, e_spk, TOLERANCE);
  fflush (stdout);
  ck_assert_msg (e_h <= TOLERANCE, "%s: encoder_h rel err %.3e", name, e_h);
  ck_assert_msg (e_mu <= TOLERANCE, "%s: mu rel err %.3e", name, e_mu);
  ck_assert_msg (e_spk <= TOLERANCE, "%s: xvec_proj rel err %.3e", name, e_spk);
  /* the three full cases must actually compare something */
  if (g_str_has_prefix (name, "tokens_"))
    ck_assert_msg (ref_mu && ref_spk, "%s: golden mu / xvec_proj missing", name);
  if (strcmp (name, "tokens_0001") == 0 || strcmp (name, "tokens_0050") == 0)
    ck_assert_msg (ref_h != NULL, "%s: golden encoder_h missing", name);

  g_free (mu2);
  g_free (ref_spk);
  g_free (ref_mu);
  g_free (ref_h);
  g_free (h);
  g_free (mu);
  cb_arena_free (arena);
  g_array_unref (ids);
  cb_safetensors_free (gold);
  g_free (path);
  g_free (rel);
}
END_TEST

/* Bad ids and counts are errors, not crashes; so is an arena too small. */
START_TEST (test_bad_input)
{
  const int V = cfg.flow.vocab_size, M = cfg.flow.output_size, r = cfg.flow.token_mel_ratio;
  int32_t tokens[4] = { 0, 1, V - 1, 2 };
  float *mu = g_new (float, (gsize) M * r * 5);
  CbArena *arena = cb_arena_new (cb_s3gen_flow_scratch_floats (flow, 4) * sizeof (float), NULL);
  GError *err = NULL;
  ck_assert (cb_s3gen_flow_encode (flow, arena, tokens, 4, mu, NULL, &err));

  const int32_t bad_ids[] = { V, -1, G_MAXINT32 };
  for (guint i = 0; i < G_N_ELEMENTS (bad_ids); i++) {
    tokens[2] = bad_ids[i];
    ck_assert (!cb_s3gen_flow_encode (flow, arena, tokens, 4, mu, NULL, &err));
    ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
    ck_assert_msg (strstr (err->message, "vocabulary") != NULL, "%s", err->message);
    g_clear_error (&err);
  }
  tokens[2] = 7;
  const int bad_counts[] = { 0, -3, cb_s3gen_flow_max_tokens (flow) + 1 };
  for (guint i = 0; i < G_N_ELEMENTS (bad_counts); i++) {
    ck_assert (!cb_s3gen_flow_encode (flow, arena, tokens, bad_counts[i], mu, NULL, &err));
    ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
    g_clear_error (&err);
    ck_assert_uint_eq (cb_s3gen_flow_scratch_floats (flow, bad_counts[i]), 0);
  }
  /* 4 tokens fit, 5 do not */
  int32_t five[5] = { 1, 2, 3, 4, 5 };
  ck_assert (!cb_s3gen_flow_encode (flow, arena, five, 5, mu, NULL, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  ck_assert_msg (strstr (err->message, "scratch") != NULL, "%s", err->message);
  g_clear_error (&err);
  ck_assert_uint_eq (cb_arena_mark (arena), 0);
  cb_arena_free (arena);
  g_free (mu);
}
END_TEST

/* Copy of the flow tensors (decoder excluded, to stay small) with `victim` renamed, or given the
 * same bytes under another shape; cb_s3gen_flow_new must fail naming it. */
static void
check_broken_checkpoint (const char *victim, gboolean reshape)
{
  GPtrArray *keep = g_ptr_array_new ();
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < cb_safetensors_n_tensors (weights); i++) {
    const CbTensorInfo *ti = cb_safetensors_nth (weights, i);
    if (g_str_has_prefix (ti->name, "flow.") && !g_str_has_prefix (ti->name, "flow.decoder."))
      g_ptr_array_add (keep, (gpointer) ti);
  }
  CbTensorInfo *infos = g_new (CbTensorInfo, keep->len);
  gboolean found = FALSE;
  for (guint i = 0; i < keep->len; i++) {
    infos[i] = *(const CbTensorInfo *) keep->pdata[i];
    if (strcmp (infos[i].name, victim) != 0)
      continue;
    found = TRUE;
    if (reshape) {  /* (a, b) → (b, a): same bytes, wrong shape */
      ck_assert_int_eq (infos[i].ndim, 2);
      int64_t a = infos[i].shape[0];
      infos[i].shape[0] = infos[i].shape[1];
      infos[i].shape[1] = a;
    } else {
      char *renamed = g_strconcat (victim, "_renamed", NULL);
      g_ptr_array_add (names, renamed);
      infos[i].name = renamed;
    }
  }
  ck_assert_msg (found, "%s not in the golden model", victim);
  char *dir = cb_test_tmpdir ("s3gen-flow");
  char *path = g_build_filename (dir, "broken.safetensors", NULL);
  GError *err = NULL;
  ck_assert_msg (cb_safetensors_write (path, keep->len, infos, NULL, &err), "%s",
                 err ? err->message : "");
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  CbS3GenFlow *f = cb_s3gen_flow_new (&cfg, st, &err);
  ck_assert (f == NULL);
  ck_assert (err != NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_MISMATCH));
  ck_assert_msg (strstr (err->message, victim) != NULL, "error does not name %s: %s", victim,
                 err->message);
  printf ("s3gen-flow broken checkpoint (%s): %s\n", reshape ? "reshaped" : "renamed",
          err->message);
  g_error_free (err);
  cb_safetensors_free (st);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (infos);
  g_ptr_array_unref (names);
  g_ptr_array_unref (keep);
}

START_TEST (test_missing_tensor)
{
  /* the last up-encoder block's (how many there are is the config's) */
  char *name = g_strdup_printf ("flow.encoder.up_encoders.%d.self_attn.linear_pos.weight",
                                cfg.flow_encoder.num_up_blocks - 1);
  check_broken_checkpoint (name, FALSE);
  g_free (name);
}
END_TEST

START_TEST (test_misshaped_tensor)
{
  check_broken_checkpoint ("flow.encoder.encoders.0.self_attn.pos_bias_u", TRUE);
}
END_TEST

/* A config this module cannot run (up_embed needs input_size == output_size) is refused. */
START_TEST (test_unsupported_config)
{
  CbConfig c = cfg;
  c.flow_encoder.output_size = 2 * c.flow_encoder.input_size;
  GError *err = NULL;
  ck_assert (cb_s3gen_flow_new (&c, weights, &err) == NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_UNSUPPORTED));
  g_error_free (err);
}
END_TEST

static Suite *
flow_suite (void)
{
  Suite *s = suite_create ("s3gen-flow");
  TCase *tc = tcase_create ("golden");
  tcase_add_unchecked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 300);
  tcase_add_loop_test (tc, test_golden_case, 0, G_N_ELEMENTS (cases));
  suite_add_tcase (s, tc);

  TCase *te = tcase_create ("errors");
  tcase_add_unchecked_fixture (te, setup, teardown);
  tcase_add_test (te, test_bad_input);
  tcase_add_test (te, test_missing_tensor);
  tcase_add_test (te, test_misshaped_tensor);
  tcase_add_test (te, test_unsupported_config);
  suite_add_tcase (s, te);
  return s;
}

CB_CHECK_MAIN (flow_suite)
