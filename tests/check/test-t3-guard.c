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
#include "safetensors.h"
#include "t3-guard.h"

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

static CbSafetensors *
open_golden (const char *stage, const char *name)
{
  char *rel = g_strdup_printf ("golden/%s/%s.safetensors", stage, name);
  char *path = cb_test_data_path (rel);
  GError *err = NULL;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s: %s", path, err ? err->message : "");
  g_free (rel);
  g_free (path);
  return st;
}

static float *
read_f32 (const CbSafetensors *st, const char *name, guint64 *n)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  if (t == NULL)
    return NULL;
  ck_assert_int_eq (t->dtype, CB_DTYPE_F32);
  float *out = g_new (float, t->numel + 1);
  memcpy (out, t->data, t->numel * sizeof (float));
  if (n != NULL)
    *n = t->numel;
  return out;
}

static gint64 *
read_i64 (const CbSafetensors *st, const char *name, guint64 *n)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  ck_assert_msg (t != NULL && t->dtype == CB_DTYPE_I64, "golden tensor %s", name);
  gint64 *out = g_new (gint64, t->numel + 1);
  memcpy (out, t->data, t->numel * sizeof (gint64));
  if (n != NULL)
    *n = t->numel;
  return out;
}

static int
meta_int (const CbSafetensors *st, const char *key)
{
  const char *v = cb_safetensors_metadata (st, key);
  ck_assert_msg (v != NULL, "metadata %s missing", key);
  return atoi (v);
}

/* One recorded run: per-step inputs and upstream's per-step outputs. */
typedef struct {
  char     name[64];
  int      frames, text_begin, S;
  /* inputs of step f: rows[f] (CbT3GuardRows), logits row, last token */
  CbT3GuardRows *rows;
  float   *logits;           /* (frames, V) */
  gint32  *last_tokens;      /* (frames) */
  /* expected, per frame */
  gint64  *text_position, *started, *false_start, *complete, *started_at, *completed_at;
  gint64  *long_tail, *repetition, *token_repetition, *forced_eos, *eos_suppressed;
  float   *out_eos_logit;
  float   *alignment;        /* (2 + frames − 1, S) */
  guint64  alignment_rows;
  /* owned storage */
  float   *attn0, *attn_rest;
  CbSafetensors *st;
} Run;

static void
read_expected (Run *r, const char *prefix)
{
  char key[128];
#define EXPECT(field, name)                                          \
  g_snprintf (key, sizeof key, "%s%s", prefix, name);                \
  r->field = read_i64 (r->st, key, NULL);
  EXPECT (text_position, "text_position");
  EXPECT (started, "started");
  EXPECT (false_start, "false_start");
  EXPECT (complete, "complete");
  EXPECT (started_at, "started_at");
  EXPECT (completed_at, "completed_at");
  EXPECT (long_tail, "long_tail");
  EXPECT (repetition, "alignment_repetition");
  EXPECT (token_repetition, "token_repetition");
  EXPECT (forced_eos, "forced_eos");
  EXPECT (eos_suppressed, "eos_suppressed");
#undef EXPECT
  g_snprintf (key, sizeof key, "%sout_eos_logit", prefix);
  r->out_eos_logit = read_f32 (r->st, key, NULL);
  g_snprintf (key, sizeof key, "%salignment", prefix);
  guint64 n;
  r->alignment = read_f32 (r->st, key, &n);
  r->alignment_rows = n / r->S;
}

/* t3_guard/<kind>: frame 0 = the full (3, L, L) prefill, later frames one zero-padded row each. */
static void
run_open_synthetic (Run *r, const char *kind)
{
  memset (r, 0, sizeof *r);
  g_strlcpy (r->name, kind, sizeof r->name);
  r->st = open_golden ("t3_guard", kind);
  r->frames = meta_int (r->st, "frames");
  const int L = meta_int (r->st, "prefill_len");
  r->text_begin = 34;
  r->S = 12;
  ck_assert_str_eq (cb_safetensors_metadata (r->st, "text_tokens_slice"), "[34, 46]");
  r->attn0 = read_f32 (r->st, "input.attn_step0", NULL);
  r->attn_rest = read_f32 (r->st, "input.attn_rows", NULL);
  /* rows are zero-padded to the tensor's width (README-t3: L + frames; wider where the sequence was
   * cut at the forced EOS) */
  const CbTensorInfo *rest = cb_safetensors_find (r->st, "input.attn_rows");
  const int F = r->frames, W = (int) rest->shape[2];
  ck_assert_int_eq (rest->shape[1], F - 1);
  ck_assert_int_ge (W, L + F - 1);
  r->rows = g_new0 (CbT3GuardRows, F);
  for (int f = 0; f < F; f++) {
    CbT3GuardRows *rw = &r->rows[f];
    for (int h = 0; h < 3; h++)
      rw->head[h] = f == 0 ? r->attn0 + (size_t) h * L * L
                           : r->attn_rest + ((size_t) h * (F - 1) + (f - 1)) * W;
    rw->n_rows = f == 0 ? L : 1;
    rw->row_stride = f == 0 ? (size_t) L : (size_t) W;
    rw->first_query = f == 0 ? 0 : L + f - 1;
    rw->first_key = 0;
  }
  float *logits = read_f32 (r->st, "input.logits", NULL);
  r->logits = g_new (float, (size_t) F * V);
  for (int f = 0; f < F; f++)
    memcpy (r->logits + (size_t) f * V, logits, V * sizeof (float));
  g_free (logits);
  gint64 *tok = read_i64 (r->st, "input.last_tokens", NULL);
  r->last_tokens = g_new (gint32, F);
  for (int f = 0; f < F; f++)
    r->last_tokens[f] = (gint32) tok[f];
  g_free (tok);
  read_expected (r, "out.");
}

/* t3/<case>: the analyzer in shadow on the real run — prefill rows (full or the two BOS rows), then
 * each decode forward's text columns; the logits row holds the CFG logit at EOS (the only one the
 * guard reads unless it forces). */
static void
run_open_model (Run *r, const char *name)
{
  memset (r, 0, sizeof *r);
  g_strlcpy (r->name, name, sizeof r->name);
  r->st = open_golden ("t3", name);
  const int L = meta_int (r->st, "prefill_len");
  r->text_begin = meta_int (r->st, "len_cond");
  r->S = meta_int (r->st, "text_len");
  gint64 *tokens = read_i64 (r->st, "step.tokens", NULL);
  r->frames = meta_int (r->st, "steps");
  const int F = r->frames;
  float *cfg_at_eos = read_f32 (r->st, "step.cfg_at_eos", NULL);
  gboolean full_prefill = TRUE;
  r->attn0 = read_f32 (r->st, "attn.prefill", NULL);
  if (r->attn0 == NULL) {
    full_prefill = FALSE;
    r->attn0 = read_f32 (r->st, "attn.prefill_rows", NULL);
  }
  guint64 n_dec;
  r->attn_rest = read_f32 (r->st, "attn.decode_text", &n_dec);
  const int nd = (int) (n_dec / (3 * (guint64) r->S));
  ck_assert_int_ge (nd, F - 1);
  const int P = full_prefill ? L : 2;
  r->rows = g_new0 (CbT3GuardRows, F);
  r->logits = g_new0 (float, (size_t) F * V);
  r->last_tokens = g_new (gint32, F);
  for (int f = 0; f < F; f++) {
    CbT3GuardRows *rw = &r->rows[f];
    for (int h = 0; h < 3; h++)
      rw->head[h] = f == 0 ? r->attn0 + (size_t) h * P * L
                           : r->attn_rest + ((size_t) h * nd + (f - 1)) * r->S;
    rw->n_rows = f == 0 ? P : 1;
    rw->row_stride = f == 0 ? (size_t) L : (size_t) r->S;
    rw->first_query = f == 0 ? L - P : L + f - 1;
    rw->first_key = f == 0 ? 0 : r->text_begin;
    r->logits[(size_t) f * V + EOS] = cfg_at_eos[f];
    r->last_tokens[f] = f == 0 ? BOS : (gint32) tokens[f - 1];
  }
  g_free (tokens);
  g_free (cfg_at_eos);
  read_expected (r, "guard.");
}

static void
run_close (Run *r)
{
  g_free (r->rows);
  g_free (r->logits);
  g_free (r->last_tokens);
  gint64 *fields[] = { r->text_position, r->started, r->false_start, r->complete, r->started_at,
                       r->completed_at, r->long_tail, r->repetition, r->token_repetition,
                       r->forced_eos, r->eos_suppressed };
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    g_free (fields[i]);
  g_free (r->out_eos_logit);
  g_free (r->alignment);
  g_free (r->attn0);
  g_free (r->attn_rest);
  cb_safetensors_free (r->st);
}

/* What one step produced, for comparing runs with each other. */
typedef struct {
  guint flags;
  CbT3GuardState state;
  float eos_logit;
} StepResult;

/* Copies frame f's rows into the guard's capture buffers as the forward pass would, layer by layer. */
static void
fill_capture (CbT3Guard *g, const Run *r, int f)
{
  const CbT3GuardConfig *cfg = cb_t3_guard_config (g);
  const CbT3GuardRows *rw = &r->rows[f];
  for (int layer = 0; layer < N_LAYERS; layer++) {
    const CbAttnCapture *cap = cb_t3_guard_capture_for_layer (g, layer);
    ck_assert ((cap != NULL) == (layer == 9 || layer == 12 || layer == 13));
    if (cap == NULL)
      continue;
    for (int i = 0; i < cap->n_heads; i++) {
      int h = 0;
      while (!(cfg->layer[h] == layer && cfg->head[h] == cap->heads[i]))
        h++;
      for (int q = 0; q < rw->n_rows; q++)
        memcpy (cap->probs[i] + (size_t) q * cap->row_stride, rw->head[h] + q * rw->row_stride,
                rw->row_stride * sizeof (float));
    }
  }
}

/* Runs r on g (begin first) and checks every step against upstream; results go to out. */
static void
run_and_check (CbT3Guard *g, const Run *r, gboolean via_capture, StepResult *out, double *align_err)
{
  GError *err = NULL;
  ck_assert_msg (cb_t3_guard_begin (g, r->text_begin, r->S, &err), "%s", err ? err->message : "");
  float *row = g_new (float, V);
  guint64 align_row = 0;
  double max_err = 0.0, max_ref = 0.0;
  for (int f = 0; f < r->frames; f++) {
    memcpy (row, r->logits + (size_t) f * V, V * sizeof (float));
    guint flags;
    if (via_capture) {
      fill_capture (g, r, f);
      flags = cb_t3_guard_step_captured (g, r->rows[f].n_rows, r->rows[f].first_query, row, V,
                                         r->last_tokens[f]);
    } else {
      flags = cb_t3_guard_step (g, &r->rows[f], row, V, r->last_tokens[f]);
    }
    const CbT3GuardState *s = cb_t3_guard_state (g);
#define SAME(ours, field)                                                                  \
    ck_assert_msg ((gint64) (ours) == r->field[f], "%s frame %d: " #field " %d, upstream %d", \
                   r->name, f, (int) (ours), (int) r->field[f])
    SAME (s->text_position, text_position);
    SAME (s->started, started);
    SAME (!!(flags & CB_T3_GUARD_FALSE_START), false_start);
    SAME (s->complete, complete);
    SAME (s->started_at, started_at);
    SAME (s->completed_at, completed_at);
    SAME (!!(flags & CB_T3_GUARD_LONG_TAIL), long_tail);
    SAME (!!(flags & CB_T3_GUARD_ALIGNMENT_REPETITION), repetition);
    SAME (!!(flags & CB_T3_GUARD_TOKEN_REPETITION), token_repetition);
    SAME (!!(flags & CB_T3_GUARD_FORCED_EOS), forced_eos);
    SAME (!!(flags & CB_T3_GUARD_EOS_SUPPRESSED), eos_suppressed);
#undef SAME
    ck_assert_msg (row[EOS] == r->out_eos_logit[f], "%s frame %d: EOS logit %g, upstream %g",
                   r->name, f, row[EOS], r->out_eos_logit[f]);
    /* other logits: untouched, or all −32768 when forced */
    int changed = 0;  /* counted, not asserted per element: Check's asserts are slow */
    for (int i = 0; i < V; i++)
      if (i != EOS)
        changed += row[i] != ((flags & CB_T3_GUARD_FORCED_EOS) ? -32768.0f
                                                               : r->logits[(size_t) f * V + i]);
    ck_assert_msg (changed == 0, "%s frame %d: %d other logits wrong", r->name, f, changed);
    /* the alignment rows this step appended */
    int n_chunk;
    const float *chunk = cb_t3_guard_last_chunk (g, &n_chunk);
    for (int k = 0; k < n_chunk; k++, align_row++) {
      ck_assert (align_row < r->alignment_rows);
      for (int c = 0; c < r->S; c++) {
        const float want = r->alignment[align_row * r->S + c];
        max_err = MAX (max_err, fabs ((double) chunk[(size_t) k * r->S + c] - want));
        max_ref = MAX (max_ref, fabs (want));
      }
    }
    if (out != NULL)
      out[f] = (StepResult) { flags, *s, row[EOS] };
  }
  ck_assert_int_eq (align_row, r->alignment_rows);
  const double rel = max_ref > 0 ? max_err / max_ref : max_err;
  ck_assert_msg (rel <= 1e-6, "%s: alignment rel err %.3g", r->name, rel);
  if (align_err != NULL)
    *align_err = MAX (*align_err, rel);
  g_free (row);
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
    Run r;
    run_open_synthetic (&r, kinds[k]);
    StepResult *a = g_new0 (StepResult, r.frames), *b = g_new0 (StepResult, r.frames);
    /* the shared guard, reused across kinds, through its rows API */
    run_and_check (shared, &r, FALSE, a, &align_err);
    /* a fresh guard, through the capture path */
    CbT3Guard *fresh = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 48, 96, NULL);
    run_and_check (fresh, &r, TRUE, b, &align_err);
    ck_assert_mem_eq (a, b, r.frames * sizeof *a);
    /* the shared guard again, via capture, after another run */
    run_and_check (shared, &r, TRUE, b, &align_err);
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
    run_close (&r);
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
    Run r;
    run_open_model (&r, model_cases[k]);
    StepResult *a = g_new0 (StepResult, r.frames), *b = g_new0 (StepResult, r.frames);
    run_and_check (shared, &r, FALSE, a, &align_err);
    CbT3Guard *fresh = cb_t3_guard_new (&cfg, N_LAYERS, N_HEADS, MAX_TEXT, 0, 0, NULL);
    run_and_check (fresh, &r, FALSE, b, NULL);
    ck_assert_mem_eq (a, b, r.frames * sizeof *a);
    steps += r.frames;
    cb_t3_guard_free (fresh);
    g_free (a);
    g_free (b);
    run_close (&r);
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
