/* T3's forward pass against upstream (tests/data/golden/t3, README-t3.md): conditioning, prefill
 * input embeddings and logits of both CFG rows, per-step logits and the guard heads' attention
 * rows under teacher forcing with the tokens upstream sampled, on every golden case; and the
 * per-stream state: a second utterance equals a fresh state, the voice cache hits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cb-check.h"
#include "cb-golden-model.h"
#include "config.h"
#include "safetensors.h"
#include "t3-golden.h"
#include "t3.h"

#define TOLERANCE 1e-5

#include "cb-alloc-count.h"
/* Large enough for every golden case: longtext has 169 text ids, long300 300 steps. */
#define MAX_TEXT 200
#define MAX_STEPS 310

static CbConfig       cfg;
static CbSafetensors *weights;
static CbT3          *t3;

static void
setup (void)
{
  GError *err = NULL;
  weights = cb_test_golden_model (&cfg, "t3_cfg.safetensors");
  t3 = cb_t3_new (&cfg, weights, NULL, &err);
  ck_assert_msg (t3 != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  cb_t3_free (t3);
  cb_safetensors_free (weights);
}

static const char *const cases[] = {
  "default", "short", "punct_cfg1_rep2_topp", "quotes_exag025_rep1_minp0",
  "lower_cfg1_topp09_temp1", "longtext", "seed2", "cfg0", "long300", "one_token",
};

START_TEST (test_golden_case)
{
  const char *name = cases[_i];
  char *rel = g_strdup_printf ("t3/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbT3GoldenReport r;
  gboolean ok = cb_t3_golden_run_case (t3, NULL, path, &r, &err);
  ck_assert_msg (ok, "%s: %s", name, err ? err->message : "");
  printf ("t3 %-26s Lt %3d steps %3d rows %d: rel max err cond %.2e prefill-embeds %.2e "
          "prefill-logits %.2e step-logits %.2e decode-embeds %.2e attn %.2e (tol %.0e)\n",
          name, r.text_len, r.steps, r.n_rows, r.cond_embeds, r.prefill_embeds, r.prefill_logits,
          r.step_logits, r.decode_embeds, r.attn, TOLERANCE);
  fflush (stdout);
  ck_assert_msg (cb_t3_golden_report_max (&r) <= TOLERANCE, "%s: max rel err %.3e > %.0e", name,
                 cb_t3_golden_report_max (&r), TOLERANCE);
  ck_assert_int_eq (r.n_rows, strcmp (name, "cfg0") == 0 ? 1 : 2);
  g_free (path);
  g_free (rel);
}
END_TEST

/* The full loop — CFG, processors, sampler — with upstream's draws gives upstream's tokens and
 * stops where upstream stopped. */
START_TEST (test_golden_sampling)
{
  const char *name = cases[_i];
  char *rel = g_strdup_printf ("t3/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbT3GoldenSampling r;
  ck_assert_msg (cb_t3_golden_sample_case (t3, path, &r, &err), "%s: %s", name,
                 err ? err->message : "");
  printf ("t3 %-26s sampled with upstream's u: %d/%d tokens equal (%d upstream tokens), "
          "ended as upstream: %s\n", name, r.n_equal, r.n_comparable, r.n_tokens,
          r.ended_as_upstream ? "yes" : "no");
  fflush (stdout);
  ck_assert_int_eq (r.n_equal, r.n_comparable);
  ck_assert (r.ended_as_upstream);
  ck_assert_int_gt (r.n_comparable, 0);
  g_free (path);
  g_free (rel);
}
END_TEST

/* The guard on our own captured attention rows decides as upstream's analyzer did in shadow. */
START_TEST (test_golden_guard)
{
  const char *name = cases[_i];
  char *rel = g_strdup_printf ("t3/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  CbT3GoldenGuard r;
  ck_assert_msg (cb_t3_golden_guard_case (t3, path, &r, &err), "%s: %s", name,
                 err ? err->message : "");
  printf ("t3 %-26s guard on our rows: %d/%d steps as upstream (first difference %d), "
          "EOS suppressed %d, forced %d\n", name, r.steps_equal, r.steps, r.first_mismatch,
          r.n_suppressed, r.n_forced);
  fflush (stdout);
  ck_assert_int_eq (r.steps_equal, r.steps);
  g_free (path);
  g_free (rel);
}
END_TEST

/* The comparison can fail: a state whose model has one perturbed weight is caught. */
START_TEST (test_golden_detects_difference)
{
  GError *err = NULL;
  CbT3Options o;
  cb_t3_options_init (&o);
  /* another guard head than upstream's: the attention rows must disagree */
  o.guard_head[0] = (o.guard_head[0] + 1) % cfg.llama.num_attention_heads;
  CbT3 *other = cb_t3_new (&cfg, weights, &o, &err);
  ck_assert_msg (other != NULL, "%s", err ? err->message : "");
  CbT3State *s = cb_t3_state_new (other, MAX_TEXT, MAX_STEPS, &err);
  char *path = cb_test_golden_path ("t3/one_token.safetensors");
  CbT3GoldenReport r;
  ck_assert (cb_t3_golden_run_case (other, s, path, &r, &err));
  ck_assert_msg (r.attn > 1e-2, "attention of another head matched: %.3e", r.attn);
  ck_assert (r.prefill_logits <= TOLERANCE);
  g_free (path);
  cb_t3_state_free (s);
  cb_t3_free (other);
}
END_TEST

/* Every case one after another on one state (voices, exaggerations, CFG on and off, lengths
 * changing between utterances): each as exact as on a fresh state. */
START_TEST (test_golden_cases_on_one_state)
{
  GError *err = NULL;
  CbT3State *s = cb_t3_state_new (t3, MAX_TEXT, MAX_STEPS, &err);
  ck_assert_msg (s != NULL, "%s", err ? err->message : "");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *rel = g_strdup_printf ("t3/%s.safetensors", cases[G_N_ELEMENTS (cases) - 1 - i]);
    char *path = cb_test_golden_path (rel);
    CbT3GoldenReport r;
    ck_assert_msg (cb_t3_golden_run_case (t3, s, path, &r, &err), "%s", err ? err->message : "");
    ck_assert_msg (cb_t3_golden_report_max (&r) <= TOLERANCE, "%s after other utterances: %.3e",
                   rel, cb_t3_golden_report_max (&r));
    g_free (path);
    g_free (rel);
  }
  cb_t3_state_free (s);
}
END_TEST

/* Runs a fixed teacher-forced utterance and copies its logits (both rows, every step) into out. */
static void
run_utterance (CbT3State *s, const int32_t *text, int n_text, const CbConds *voice, float cfg_w,
               float exag, const int32_t *tokens, int n_tokens, float *out)
{
  GError *err = NULL;
  CbT3Params p = { cfg_w, exag };
  const int V = cfg.t3.speech_tokens_dict_size;
  ck_assert_msg (cb_t3_begin (s, text, n_text, voice, &p, &err), "%s", err ? err->message : "");
  for (int i = 0; i <= n_tokens; i++) {
    if (i > 0)
      ck_assert (cb_t3_forward_step (s, tokens[i - 1], &err));
    for (int r = 0; r < 2; r++) {
      const float *l = cb_t3_logits (s, r);
      if (l)
        memcpy (out + ((gsize) i * 2 + r) * V, l, V * sizeof (float));
      else
        memset (out + ((gsize) i * 2 + r) * V, 0, V * sizeof (float));
    }
  }
}

START_TEST (test_no_state_leak)
{
  GError *err = NULL;
  const int V = cfg.t3.speech_tokens_dict_size, S = cfg.t3.speaker_embed_size;
  float spk_a[64], spk_b[64];
  int32_t prompt_a[20], prompt_b[12];
  for (int i = 0; i < S; i++)
    spk_a[i] = sinf (i * 0.7f), spk_b[i] = cosf (i * 1.3f);
  for (int i = 0; i < 20; i++)
    prompt_a[i] = (i * 311) % 6561;
  for (int i = 0; i < 12; i++)
    prompt_b[i] = (i * 97 + 5) % 6561;
  CbConds a = { 0 }, b = { 0 };
  a.speaker_emb = spk_a, a.speaker_embed_size = S, a.cond_prompt_tokens = prompt_a;
  a.n_cond_prompt_tokens = 20;
  b.speaker_emb = spk_b, b.speaker_embed_size = S, b.cond_prompt_tokens = prompt_b;
  b.n_cond_prompt_tokens = 12;
  const int32_t text_a[] = { 255, 20, 41, 33, 7, 0 }, text_b[] = { 255, 9, 100, 0 };
  const int32_t toks_a[] = { 5, 6000, 17, 17 }, toks_b[] = { 1000, 2, 3 };
  const gsize per = 2 * (gsize) V;
  float *first_a = g_new (float, 5 * per), *first_b = g_new (float, 4 * per);
  float *fresh_a = g_new (float, 5 * per), *fresh_b = g_new (float, 4 * per);

  CbT3State *s = cb_t3_state_new (t3, 16, 8, &err);
  run_utterance (s, text_a, 6, &a, 0.5f, 0.5f, toks_a, 4, first_a);
  run_utterance (s, text_b, 4, &b, 0.0f, 0.7f, toks_b, 3, first_b);
  guint misses = cb_t3_state_cond_misses (s);
  run_utterance (s, text_a, 6, &a, 0.5f, 0.5f, toks_a, 4, fresh_a);
  ck_assert_uint_eq (cb_t3_state_cond_misses (s), misses); /* voice a came from the cache */
  ck_assert (memcmp (first_a, fresh_a, 5 * per * sizeof (float)) == 0);
  /* same voice, but the previous utterance had one CFG row: row 1's prefix must be (re)loaded */
  run_utterance (s, text_a, 6, &a, 0.0f, 0.5f, toks_a, 4, fresh_a);
  run_utterance (s, text_a, 6, &a, 0.5f, 0.5f, toks_a, 4, fresh_a);
  ck_assert (memcmp (first_a, fresh_a, 5 * per * sizeof (float)) == 0);

  /* a fresh model and state (no cache) give the same bits */
  CbT3 *t3b = cb_t3_new (&cfg, weights, NULL, &err);
  CbT3State *f = cb_t3_state_new (t3b, 16, 8, &err);
  run_utterance (f, text_b, 4, &b, 0.0f, 0.7f, toks_b, 3, fresh_b);
  ck_assert_uint_eq (cb_t3_state_cond_misses (f), 1);
  ck_assert (memcmp (first_b, fresh_b, 4 * per * sizeof (float)) == 0);
  run_utterance (f, text_a, 6, &a, 0.5f, 0.5f, toks_a, 4, fresh_a);
  ck_assert (memcmp (first_a, fresh_a, 5 * per * sizeof (float)) == 0);
  cb_t3_state_free (f);
  cb_t3_free (t3b);

  g_free (first_a), g_free (first_b), g_free (fresh_a), g_free (fresh_b);
  cb_t3_state_free (s);
}
END_TEST

/* After the first utterance, beginning another (same voice: cached conditioning) and decoding
 * allocate nothing. */
START_TEST (test_no_allocation_per_utterance)
{
#ifdef COUNT_ALLOCS
  GError *err = NULL;
  const int S = cfg.t3.speaker_embed_size;
  float spk[64];
  int32_t prompt[20];
  for (int i = 0; i < S; i++)
    spk[i] = sinf (i * 0.3f);
  for (int i = 0; i < 20; i++)
    prompt[i] = (i * 211) % 6561;
  CbConds v = { 0 };
  v.speaker_emb = spk, v.speaker_embed_size = S, v.cond_prompt_tokens = prompt;
  v.n_cond_prompt_tokens = 20;
  const int32_t text[] = { 255, 20, 41, 33, 7, 0 }, other[] = { 255, 3, 0 };
  CbT3State *s = cb_t3_state_new (t3, 16, 8, &err);
  CbT3Params p = { 0.5f, 0.5f };
  ck_assert (cb_t3_begin (s, text, 6, &v, &p, &err));
  for (int i = 0; i < 4; i++)
    ck_assert (cb_t3_forward_step (s, 100 + i, &err));
  __atomic_store_n (&n_allocs, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n (&counting_allocs, 1, __ATOMIC_SEQ_CST);
  gboolean ok = cb_t3_begin (s, other, 3, &v, &p, NULL);
  for (int i = 0; ok && i < 4; i++)
    ok = cb_t3_forward_step (s, 200 + i, NULL);
  __atomic_store_n (&counting_allocs, 0, __ATOMIC_SEQ_CST);
  ck_assert (ok);
  ck_assert_msg (n_allocs == 0, "%d heap allocations in begin + 4 steps", n_allocs);
  ck_assert_uint_eq (cb_t3_state_cond_misses (s), 1);
  cb_t3_state_free (s);
#endif
}
END_TEST

START_TEST (test_bad_input)
{
  GError *err = NULL;
  CbT3State *s = cb_t3_state_new (t3, 8, 2, &err);
  float spk[64] = { 0 };
  CbConds v = { 0 };
  v.speaker_emb = spk, v.speaker_embed_size = cfg.t3.speaker_embed_size;
  CbT3Params p = { 0.5f, 0.5f };
  const int32_t long_text[10] = { 255, 1, 2, 3, 4, 5, 6, 7, 8, 0 }, bad[] = { 255, 9999, 0 };
  ck_assert (!cb_t3_begin (s, long_text, 10, &v, &p, &err));
  g_clear_error (&err);
  ck_assert (!cb_t3_begin (s, bad, 3, &v, &p, &err));
  g_clear_error (&err);
  ck_assert (!cb_t3_forward_step (s, 1, &err)); /* nothing begun */
  g_clear_error (&err);
  ck_assert (cb_t3_begin (s, long_text, 3, &v, &p, &err));
  ck_assert_int_eq (cb_t3_n_positions (s), cb_t3_cond_len (t3, 0) + 5);
  ck_assert (cb_t3_forward_step (s, 1, &err));
  ck_assert (!cb_t3_forward_step (s, 99999, &err)); /* token out of range */
  g_clear_error (&err);
  ck_assert (cb_t3_forward_step (s, 2, &err));
  ck_assert (!cb_t3_forward_step (s, 3, &err)); /* past max_steps */
  g_clear_error (&err);
  cb_t3_state_free (s);
}
END_TEST

static Suite *
t3_suite (void)
{
  Suite *su = suite_create ("t3");
  TCase *tc = tcase_create ("golden");
  tcase_add_unchecked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 600);
  tcase_add_loop_test (tc, test_golden_case, 0, G_N_ELEMENTS (cases));
  tcase_add_loop_test (tc, test_golden_sampling, 0, G_N_ELEMENTS (cases));
  tcase_add_loop_test (tc, test_golden_guard, 0, G_N_ELEMENTS (cases));
  tcase_add_test (tc, test_golden_detects_difference);
  tcase_add_test (tc, test_golden_cases_on_one_state);
  tcase_add_test (tc, test_no_state_leak);
  tcase_add_test (tc, test_bad_input);
  tcase_add_test (tc, test_no_allocation_per_utterance);
  suite_add_tcase (su, tc);
  return su;
}

CB_CHECK_MAIN (t3_suite)
