/* T3 logits processing and sampling (engine/t3-sample.h) against upstream's recorded runs
 * (tests/data/golden/t3, README-t3.md) and against a reference written here from the HF definitions.
 *
 * Golden steps: every recorded step's CFG inputs (cond/uncond top-32, plus the values at the sampled
 * token and at EOS) go through our chain with the history of upstream's tokens (teacher forcing);
 * every stage is compared at those ids (rel err ≤ 1e-5, −∞ positions exact). Ids outside that set are
 * −∞ in the row we build, which changes nothing where upstream's final support (step.n_kept ids) lies
 * inside the set: there the probabilities and the token drawn with upstream's u are checked too. At
 * the steps with full logit rows (full.steps) the whole chain runs on the real rows, and at the last
 * step every stage's full vector is compared with last.{rep,minp,topp,probs}. */
#include <math.h>
#include <string.h>

#include "cb-check.h"
#include "safetensors.h"
#include "t3-sample.h"

/* Allocation counting: malloc, calloc and realloc of this program go through counters (glib's
 * g_malloc uses them). Not under AddressSanitizer, which owns the allocator. */
#if !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc (size_t n);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *p, size_t n);
static volatile long n_allocs;
void *malloc (size_t n) { n_allocs++; return __libc_malloc (n); }
void *calloc (size_t n, size_t size) { n_allocs++; return __libc_calloc (n, size); }
void *realloc (void *p, size_t n) { n_allocs++; return __libc_realloc (p, n); }
#endif

#define V 8194
#define BOS 6561
#define EOS 6562
#define TOL 1e-5

static const char *const model_cases[] = {
  "default", "short", "punct_cfg1_rep2_topp", "quotes_exag025_rep1_minp0",
  "lower_cfg1_topp09_temp1", "longtext", "seed2", "cfg0", "long300", "one_token",
};
#define N_MODEL_CASES G_N_ELEMENTS (model_cases)

/* ---- golden file access ---- */

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

/* Copies of tensors (the mapping may be unaligned). NULL when absent and !required. */
static float *
read_f32 (const CbSafetensors *st, const char *name, guint64 *n, gboolean required)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  if (t == NULL) {
    ck_assert_msg (!required, "golden tensor %s missing", name);
    return NULL;
  }
  ck_assert_int_eq (t->dtype, CB_DTYPE_F32);
  float *out = g_new (float, t->numel + 1);
  memcpy (out, t->data, t->numel * sizeof (float));
  if (n != NULL)
    *n = t->numel;
  return out;
}

static gint64 *
read_i64 (const CbSafetensors *st, const char *name, guint64 *n, gboolean required)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  if (t == NULL) {
    ck_assert_msg (!required, "golden tensor %s missing", name);
    return NULL;
  }
  ck_assert_int_eq (t->dtype, CB_DTYPE_I64);
  gint64 *out = g_new (gint64, t->numel + 1);
  memcpy (out, t->data, t->numel * sizeof (gint64));
  if (n != NULL)
    *n = t->numel;
  return out;
}

static double
meta_double (const CbSafetensors *st, const char *key)
{
  const char *v = cb_safetensors_metadata (st, key);
  ck_assert_msg (v != NULL, "metadata %s missing", key);
  return g_ascii_strtod (v, NULL);
}

/* ---- comparisons ---- */

typedef struct {
  double max_rel;  /* worst max|ours−ref| / max|ref| over compared vectors */
  long   values;   /* finite values compared */
} Stats;

/* Compares n values: the same positions are −∞, the finite ones within TOL of max|ref|. */
static void
compare (Stats *stats, const float *ours, const float *ref, int n, const char *what, int step)
{
  double max_ref = 0.0, max_err = 0.0;
  for (int i = 0; i < n; i++) {
    /* plain test first: Check's asserts are slow per element */
    if (!(isinf (ours[i]) == isinf (ref[i]) && (!isinf (ref[i]) || ours[i] == ref[i])))
      ck_abort_msg ("%s step %d [%d]: ours %g, upstream %g", what, step, i, ours[i], ref[i]);
    if (isinf (ref[i]))
      continue;
    max_ref = MAX (max_ref, fabs (ref[i]));
    max_err = MAX (max_err, fabs ((double) ours[i] - ref[i]));
    stats->values++;
  }
  const double rel = max_ref > 0.0 ? max_err / max_ref : max_err;
  ck_assert_msg (rel <= TOL, "%s step %d: rel err %.3g > %g", what, step, rel, TOL);
  stats->max_rel = MAX (stats->max_rel, rel);
}

/* ---- the golden steps ---- */

/* Stage rows we keep for one step: index 0..4 = rep, temp, minp, topp, probs. */
static const char *const stage_names[] = { "rep", "temp", "minp", "topp", "probs" };
#define N_STAGES 5

typedef struct {
  const char *name;
  CbSafetensors *st;
  int n, K;
  CbT3SampleParams params;
  gint64 *tokens, *topk_ids, *n_kept, *redrawn;
  float *cond_topk, *uncond_topk, *cfg_topk, *u;
  float *cond_at[2], *uncond_at[2], *cfg_at[2];      /* [0] at token, [1] at EOS */
  float *stage_topk[N_STAGES], *stage_at[N_STAGES][2];
} Case;

static void
case_open (Case *c, const char *name)
{
  memset (c, 0, sizeof *c);
  c->name = name;
  c->st = open_golden ("t3", name);
  guint64 n, nk;
  c->tokens = read_i64 (c->st, "step.tokens", &n, TRUE);
  c->n = (int) n;
  c->topk_ids = read_i64 (c->st, "step.topk_ids", &nk, TRUE);
  c->K = (int) (nk / n);
  c->n_kept = read_i64 (c->st, "step.n_kept", NULL, TRUE);
  c->redrawn = read_i64 (c->st, "step.redrawn_without_eos", NULL, TRUE);
  c->cond_topk = read_f32 (c->st, "step.cond_topk", NULL, TRUE);
  c->uncond_topk = read_f32 (c->st, "step.uncond_topk", NULL, TRUE);
  c->cfg_topk = read_f32 (c->st, "step.cfg_topk", NULL, TRUE);
  c->u = read_f32 (c->st, "step.u", NULL, TRUE);
  static const char *const at[2] = { "at_token", "at_eos" };
  for (int a = 0; a < 2; a++) {
    char *k;
    k = g_strdup_printf ("step.cond_%s", at[a]);
    c->cond_at[a] = read_f32 (c->st, k, NULL, TRUE);
    g_free (k);
    k = g_strdup_printf ("step.uncond_%s", at[a]);
    c->uncond_at[a] = read_f32 (c->st, k, NULL, TRUE);
    g_free (k);
    k = g_strdup_printf ("step.cfg_%s", at[a]);
    c->cfg_at[a] = read_f32 (c->st, k, NULL, TRUE);
    g_free (k);
    for (int s = 0; s < N_STAGES; s++) {
      k = g_strdup_printf ("step.%s_%s", stage_names[s], at[a]);
      c->stage_at[s][a] = read_f32 (c->st, k, NULL, TRUE);
      g_free (k);
    }
  }
  for (int s = 0; s < N_STAGES; s++) {
    char *k = g_strdup_printf ("step.%s_topk", stage_names[s]);
    c->stage_topk[s] = read_f32 (c->st, k, NULL, TRUE);
    g_free (k);
  }
  c->params = cb_t3_sample_params_default ();
  c->params.cfg_weight = meta_double (c->st, "cfg_weight");
  c->params.temperature = meta_double (c->st, "temperature");
  c->params.repetition_penalty = meta_double (c->st, "repetition_penalty");
  c->params.min_p = meta_double (c->st, "min_p");
  c->params.top_p = meta_double (c->st, "top_p");
  c->params.max_tokens = (int) meta_double (c->st, "max_new_tokens");
}

static void
case_close (Case *c)
{
  g_free (c->tokens);
  g_free (c->topk_ids);
  g_free (c->n_kept);
  g_free (c->redrawn);
  g_free (c->cond_topk);
  g_free (c->uncond_topk);
  g_free (c->cfg_topk);
  g_free (c->u);
  for (int a = 0; a < 2; a++) {
    g_free (c->cond_at[a]);
    g_free (c->uncond_at[a]);
    g_free (c->cfg_at[a]);
    for (int s = 0; s < N_STAGES; s++)
      g_free (c->stage_at[s][a]);
  }
  for (int s = 0; s < N_STAGES; s++)
    g_free (c->stage_topk[s]);
  cb_safetensors_free (c->st);
}

/* The ids of step s we have values for: the top-K, then the token and EOS. */
static int
step_ids (const Case *c, int s, gint32 *ids)
{
  for (int k = 0; k < c->K; k++)
    ids[k] = (gint32) c->topk_ids[(size_t) s * c->K + k];
  ids[c->K] = (gint32) c->tokens[s];
  ids[c->K + 1] = EOS;
  return c->K + 2;
}

/* Golden value of stage `row` (a float array per step: K top-k values) at slot j of step_ids. */
static float
golden_at (const Case *c, const float *topk, float *const at[2], int s, int j)
{
  if (j < c->K)
    return topk[(size_t) s * c->K + j];
  return at[j - c->K][s];
}

/* Upstream's token from our probabilities and its u (EOS zeroed where long300 redrew). */
static gint32
pick_like_upstream (const Case *c, int s, float *probs)
{
  if (c->redrawn[s])
    probs[EOS] = 0.0f;
  return cb_t3_pick (probs, V, c->u[s]);
}

typedef struct {
  Stats cfg, stage[N_STAGES];
  int steps, steps_full_support, tokens_checked, full_rows;
} CaseReport;

static void
run_case_steps (Case *c, CaseReport *rep)
{
  GError *err = NULL;
  CbT3Sampler *smp = cb_t3_sampler_new (V, MAX (c->params.max_tokens, c->n), BOS, EOS, &err);
  ck_assert_msg (smp != NULL, "%s", err ? err->message : "");
  CbT3SampleParams params = c->params;
  params.max_tokens = MAX (params.max_tokens, c->n);
  ck_assert_msg (cb_t3_sampler_begin (smp, &params, &err), "%s", err ? err->message : "");

  float *row = g_new (float, V);
  float *dumps[N_STAGES];
  for (int i = 0; i < N_STAGES; i++)
    dumps[i] = g_new (float, V);
  CbT3StageDump dump = { dumps[0], dumps[1], dumps[2], dumps[3], dumps[4] };
  gint32 ids[64];
  float cond[64], uncond[64], cfg[64], ref[64], ours[64];

  for (int s = 0; s < c->n; s++) {
    const int m = step_ids (c, s, ids);
    for (int j = 0; j < m; j++) {
      cond[j] = golden_at (c, c->cond_topk, c->cond_at, s, j);
      uncond[j] = golden_at (c, c->uncond_topk, c->uncond_at, s, j);
      ref[j] = golden_at (c, c->cfg_topk, c->cfg_at, s, j);
    }
    cb_t3_cfg_combine (cfg, cond, uncond, m, c->params.cfg_weight);
    compare (&rep->cfg, cfg, ref, m, "cfg", s);

    for (int i = 0; i < V; i++)
      row[i] = -INFINITY;
    for (int j = 0; j < m; j++)
      row[ids[j]] = cfg[j];
    cb_t3_sampler_process (smp, row, &dump);

    /* The support upstream sampled from is inside our id set when the counts agree. */
    int finite = 0;
    for (int i = 0; i < V; i++)
      finite += isfinite (dumps[3][i]);
    const gboolean full_support = finite == (int) c->n_kept[s];
    for (int st = 0; st < N_STAGES; st++) {
      if (st >= 3 && !full_support)
        break;  /* top-p and the probabilities depend on ids we do not have */
      for (int j = 0; j < m; j++) {
        ours[j] = dumps[st][ids[j]];
        ref[j] = golden_at (c, c->stage_topk[st], c->stage_at[st], s, j);
      }
      compare (&rep->stage[st], ours, ref, m, stage_names[st], s);
    }
    if (full_support) {
      rep->steps_full_support++;
      const gint32 tok = pick_like_upstream (c, s, dumps[4]);
      ck_assert_msg (tok == c->tokens[s], "%s step %d: token %d, upstream %d", c->name, s, tok,
                     (int) c->tokens[s]);
      rep->tokens_checked++;
    }
    cb_t3_sampler_accept (smp, (gint32) c->tokens[s]);
    rep->steps++;
  }
  ck_assert_int_eq (smp->n_tokens, c->n);

  g_free (row);
  for (int i = 0; i < N_STAGES; i++)
    g_free (dumps[i]);
  cb_t3_sampler_free (smp);
}

/* The whole chain on upstream's full rows (full.steps), with every stage's full vector compared at
 * the last step. */
static void
run_case_full_rows (Case *c, CaseReport *rep)
{
  guint64 nf;
  gint64 *full_steps = read_i64 (c->st, "full.steps", &nf, FALSE);
  if (full_steps == NULL)
    return;  /* one_token records no full rows */
  float *full = read_f32 (c->st, "full.logits", NULL, TRUE);
  float *last[4] = {
    read_f32 (c->st, "last.rep", NULL, TRUE), read_f32 (c->st, "last.minp", NULL, TRUE),
    read_f32 (c->st, "last.topp", NULL, TRUE), read_f32 (c->st, "last.probs", NULL, TRUE),
  };
  static const int last_stage[4] = { 0, 2, 3, 4 };
  guint64 nh;
  gint64 *history = read_i64 (c->st, "last.history", &nh, TRUE);
  ck_assert_int_eq (nh, (guint64) c->n);  /* BOS + n−1 tokens */
  ck_assert_int_eq (history[0], BOS);

  GError *err = NULL;
  CbT3Sampler *smp = cb_t3_sampler_new (V, c->n + 1, BOS, EOS, &err);
  float *row = g_new (float, V);
  float *dumps[N_STAGES];
  for (int i = 0; i < N_STAGES; i++)
    dumps[i] = g_new (float, V);
  CbT3StageDump dump = { dumps[0], dumps[1], dumps[2], dumps[3], dumps[4] };
  gint32 ids[64];
  float ours[64], ref[64];

  for (guint64 f = 0; f < nf; f++) {
    const int s = (int) full_steps[f];
    CbT3SampleParams params = c->params;
    params.max_tokens = c->n + 1;
    ck_assert (cb_t3_sampler_begin (smp, &params, &err));
    for (int k = 0; k < s; k++)
      cb_t3_sampler_accept (smp, (gint32) c->tokens[k]);
    if (s == c->n - 1)
      for (int k = 1; k < (int) nh; k++)
        ck_assert_int_eq (history[k], c->tokens[k - 1]);

    const float *cond = full + (f * 2 + 0) * V, *uncond = full + (f * 2 + 1) * V;
    cb_t3_cfg_combine (row, cond, c->params.cfg_weight == 0.0 ? NULL : uncond, V,
                       c->params.cfg_weight);
    const int m = step_ids (c, s, ids);
    for (int j = 0; j < m; j++) {
      ours[j] = row[ids[j]];
      ref[j] = golden_at (c, c->cfg_topk, c->cfg_at, s, j);
    }
    compare (&rep->cfg, ours, ref, m, "full cfg", s);
    cb_t3_sampler_process (smp, row, &dump);
    for (int st = 0; st < N_STAGES; st++) {
      for (int j = 0; j < m; j++) {
        ours[j] = dumps[st][ids[j]];
        ref[j] = golden_at (c, c->stage_topk[st], c->stage_at[st], s, j);
      }
      compare (&rep->stage[st], ours, ref, m, stage_names[st], s);
    }
    if (s == c->n - 1)
      for (int k = 0; k < 4; k++)
        compare (&rep->stage[last_stage[k]], dumps[last_stage[k]], last[k], V,
                 stage_names[last_stage[k]], s);
    int finite = 0;
    for (int i = 0; i < V; i++)
      finite += isfinite (dumps[3][i]);
    ck_assert_int_eq (finite, c->n_kept[s]);
    const gint32 tok = pick_like_upstream (c, s, dumps[4]);
    ck_assert_msg (tok == c->tokens[s], "%s full step %d: token %d, upstream %d", c->name, s, tok,
                   (int) c->tokens[s]);
    rep->tokens_checked++;
    rep->full_rows++;
  }

  g_free (row);
  for (int i = 0; i < N_STAGES; i++)
    g_free (dumps[i]);
  for (int k = 0; k < 4; k++)
    g_free (last[k]);
  g_free (history);
  g_free (full);
  g_free (full_steps);
  cb_t3_sampler_free (smp);
}

START_TEST (test_golden_case)
{
  Case c;
  case_open (&c, model_cases[_i]);
  CaseReport rep = { 0 };
  run_case_steps (&c, &rep);
  run_case_full_rows (&c, &rep);
  g_print ("t3 %-26s steps %3d, full support %3d, tokens checked %3d, full rows %d; rel err: "
           "cfg %.2e rep %.2e temp %.2e minp %.2e topp %.2e probs %.2e\n",
           c.name, rep.steps, rep.steps_full_support, rep.tokens_checked, rep.full_rows,
           rep.cfg.max_rel, rep.stage[0].max_rel, rep.stage[1].max_rel, rep.stage[2].max_rel,
           rep.stage[3].max_rel, rep.stage[4].max_rel);
  /* The chain must really have been exercised beyond the top-k stages. */
  ck_assert_int_gt (rep.tokens_checked, 0);
  case_close (&c);
}
END_TEST

/* ---- post-processing ---- */

START_TEST (test_postproc_golden)
{
  static const char *const names[] = { "postproc_sos_eos", "postproc_no_eos", "postproc_no_sos" };
  for (guint k = 0; k < G_N_ELEMENTS (names); k++) {
    CbSafetensors *st = open_golden ("t3", names[k]);
    guint64 n, n_want;
    gint64 *in = read_i64 (st, "input.tokens", &n, TRUE);
    gint64 *want = read_i64 (st, "out.speech_tokens", &n_want, TRUE);
    gint32 *tok = g_new (gint32, n);
    for (guint64 i = 0; i < n; i++)
      tok[i] = (gint32) in[i];
    gint32 *out = g_new (gint32, n);
    const int m = cb_t3_postprocess (tok, (int) n, BOS, EOS, out);
    ck_assert_msg ((guint64) m == n_want, "%s: %d tokens, upstream %d", names[k], m, (int) n_want);
    for (int i = 0; i < m; i++)
      ck_assert_int_eq (out[i], want[i]);
    /* In place gives the same. */
    ck_assert_int_eq (cb_t3_postprocess (tok, (int) n, BOS, EOS, tok), m);
    for (int i = 0; i < m; i++)
      ck_assert_int_eq (tok[i], want[i]);
    g_free (in);
    g_free (want);
    g_free (tok);
    g_free (out);
    cb_safetensors_free (st);
  }
}
END_TEST

/* Every model case: out.t3_tokens → out.speech_tokens as generate() did. */
START_TEST (test_postproc_model_cases)
{
  for (guint k = 0; k < N_MODEL_CASES; k++) {
    CbSafetensors *st = open_golden ("t3", model_cases[k]);
    guint64 n, n_want;
    gint64 *in = read_i64 (st, "out.t3_tokens", &n, TRUE);
    gint64 *want = read_i64 (st, "out.speech_tokens", &n_want, TRUE);
    gint32 *tok = g_new (gint32, n);
    for (guint64 i = 0; i < n; i++)
      tok[i] = (gint32) in[i];
    const int m = cb_t3_postprocess (tok, (int) n, BOS, EOS, tok);
    ck_assert_msg ((guint64) m == n_want, "%s: %d, upstream %d", model_cases[k], m, (int) n_want);
    for (int i = 0; i < m; i++)
      ck_assert_int_eq (tok[i], want[i]);
    g_free (in);
    g_free (want);
    g_free (tok);
    cb_safetensors_free (st);
  }
}
END_TEST

/* Cases upstream cannot do or does oddly: our documented choices. */
START_TEST (test_postproc_edge_cases)
{
  gint32 out[16];
  /* Two SOS (upstream raises): start after the first; the second is dropped by the range filter. */
  const gint32 two_sos[] = { 5, BOS, 7, BOS, 8, EOS, 9 };
  ck_assert_int_eq (cb_t3_postprocess (two_sos, 7, BOS, EOS, out), 2);
  ck_assert_int_eq (out[0], 7);
  ck_assert_int_eq (out[1], 8);
  /* EOS before SOS: Python's x[s:e] with s > e is empty. */
  const gint32 eos_first[] = { 1, EOS, 2, BOS, 3 };
  ck_assert_int_eq (cb_t3_postprocess (eos_first, 5, BOS, EOS, out), 0);
  /* A sampled SOS drops everything before it (upstream's rule, kept). */
  const gint32 mid_sos[] = { 1, 2, BOS, 3, 8000, 4 };
  ck_assert_int_eq (cb_t3_postprocess (mid_sos, 6, BOS, EOS, out), 2);
  ck_assert_int_eq (out[0], 3);
  ck_assert_int_eq (out[1], 4);
  /* Nothing at all; only invalid ids; negative ids (never produced) are dropped. */
  ck_assert_int_eq (cb_t3_postprocess (NULL, 0, BOS, EOS, out), 0);
  const gint32 invalid[] = { 6563, 8193, -1, 0 };
  ck_assert_int_eq (cb_t3_postprocess (invalid, 4, BOS, EOS, out), 1);
  ck_assert_int_eq (out[0], 0);
}
END_TEST

/* ---- reference implementation from the HF definitions (double precision, sort-based) ---- */

static int
cmp_pair (const void *a, const void *b)
{
  const double *x = a, *y = b;  /* (value, id) */
  if (x[0] != y[0])
    return x[0] < y[0] ? -1 : 1;
  return x[1] < y[1] ? -1 : 1;
}

static void
ref_softmax (double *p, const float *l, int n)
{
  double mx = -INFINITY, sum = 0.0;
  for (int i = 0; i < n; i++)
    mx = MAX (mx, (double) l[i]);
  for (int i = 0; i < n; i++)
    sum += (p[i] = exp ((double) l[i] - mx));
  for (int i = 0; i < n; i++)
    p[i] /= sum;
}

/* Result of the reference chain; `borderline` when a filter decision sits within 1e-5 (relative)
 * of its threshold, where float and double may legitimately disagree. */
typedef struct {
  float rep[V], temp[V], minp[V], topp[V];
  double probs[V];
  gboolean borderline;
} RefOut;

static void
ref_chain (RefOut *r, const float *cond, const float *uncond, const gint32 *hist, int n_hist,
           const CbT3SampleParams *p)
{
  static double pr[V], pairs[2 * V];
  const float w = (float) p->cfg_weight;
  for (int i = 0; i < V; i++)
    r->rep[i] = w == 0.0f ? cond[i] : cond[i] + w * (cond[i] - uncond[i]);
  /* gather/scatter with repeated ids: every occurrence reads the original value */
  static float orig[V];
  memcpy (orig, r->rep, sizeof orig);
  for (int k = 0; k < n_hist; k++) {
    const float x = orig[hist[k]];
    r->rep[hist[k]] = x < 0 ? x * (float) p->repetition_penalty : x / (float) p->repetition_penalty;
  }
  for (int i = 0; i < V; i++)
    r->temp[i] = p->temperature == 1.0 ? r->rep[i] : r->rep[i] / (float) p->temperature;
  /* min-p */
  ref_softmax (pr, r->temp, V);
  double top = 0.0;
  for (int i = 0; i < V; i++)
    top = MAX (top, pr[i]);
  r->borderline = FALSE;
  for (int i = 0; i < V; i++) {
    const double thr = p->min_p * top;
    r->minp[i] = pr[i] < thr ? -INFINITY : r->temp[i];
    if (thr > 0 && fabs (pr[i] - thr) <= 1e-5 * thr)
      r->borderline = TRUE;
  }
  /* top-p: ascending sort, cumulative, remove ≤ 1 − top_p, keep the last */
  ref_softmax (pr, r->minp, V);
  for (int i = 0; i < V; i++) {
    pairs[2 * i] = r->minp[i];
    pairs[2 * i + 1] = i;
  }
  qsort (pairs, V, 2 * sizeof (double), cmp_pair);
  memcpy (r->topp, r->minp, sizeof r->topp);
  double cum = 0.0;
  const double limit = 1.0 - p->top_p;
  for (int j = 0; j < V - 1; j++) {
    const int id = (int) pairs[2 * j + 1];
    /* float probabilities: those below float's range are exactly 0, as in torch */
    cum += (double) (float) pr[id];
    if (limit > 0 && fabs (cum - limit) <= 1e-5)
      r->borderline = TRUE;
    if (cum <= limit)
      r->topp[id] = -INFINITY;
  }
  ref_softmax (r->probs, r->topp, V);
}

/* Normal deviates (Box–Muller) from a GLib generator. */
static double
gauss (GRand *rng)
{
  const double u1 = 1.0 - g_rand_double (rng), u2 = g_rand_double (rng);
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

START_TEST (test_random_vs_reference)
{
  static const double cfgs[] = { 0.0, 0.5, 1.0, 2.3 };
  static const double reps[] = { 1.0, 1.2, 2.0 };
  static const double temps[] = { 1.0, 0.8, 0.5, 1.7 };
  static const double minps[] = { 0.0, 0.05, 0.2 };
  static const double topps[] = { 1.0, 0.9, 0.8, 0.5, 0.0 };
  GRand *rng = g_rand_new_with_seed (20261125);
  static float cond[V], uncond[V], row[V], d_rep[V], d_temp[V], d_minp[V], d_topp[V], d_probs[V];
  static RefOut ref;
  CbT3StageDump dump = { d_rep, d_temp, d_minp, d_topp, d_probs };
  CbT3Sampler *smp = cb_t3_sampler_new (V, 64, BOS, EOS, NULL);
  gint32 hist[80];
  Stats stats[N_STAGES] = { 0 };
  int trials = 0, borderline = 0, picks = 0;
  double max_prob_err = 0.0;

  for (int t = 0; t < 240; t++) {
    CbT3SampleParams p = cb_t3_sample_params_default ();
    p.cfg_weight = cfgs[t % 4];
    p.repetition_penalty = reps[(t / 4) % 3];
    p.temperature = temps[(t / 12) % 4];
    p.min_p = minps[(t / 48) % 3];
    p.top_p = topps[(t / 3) % 5];
    p.max_tokens = 64;
    ck_assert (cb_t3_sampler_begin (smp, &p, NULL));
    /* logits of std 4 (like T3's), every 7th trial quantised to create ties, some far below */
    const double scale = 1.0 + 3.0 * g_rand_double (rng);
    for (int i = 0; i < V; i++) {
      cond[i] = (float) (scale * gauss (rng));
      uncond[i] = cond[i] + (float) gauss (rng);
      if (t % 7 == 0) {
        cond[i] = roundf (cond[i]);
        uncond[i] = roundf (uncond[i]);
      }
      if (g_rand_int_range (rng, 0, 50) == 0)
        cond[i] -= 120.0f;  /* underflowing probabilities */
    }
    /* history: BOS + tokens with repeats, positive and negative logits */
    int n_hist = 0;
    hist[n_hist++] = BOS;
    const int n_tok = g_rand_int_range (rng, 0, 40);
    for (int k = 0; k < n_tok; k++) {
      gint32 id = g_rand_int_range (rng, 0, 4) == 0 && n_hist > 1
                  ? hist[g_rand_int_range (rng, 1, n_hist)] : g_rand_int_range (rng, 0, V);
      if (id == EOS)
        id = BOS;  /* an EOS would end the stream */
      hist[n_hist++] = id;
      cb_t3_sampler_accept (smp, id);
    }

    cb_t3_cfg_combine (row, cond, p.cfg_weight == 0.0 ? NULL : uncond, V, p.cfg_weight);
    cb_t3_sampler_process (smp, row, &dump);
    ref_chain (&ref, cond, uncond, hist, n_hist, &p);
    trials++;
    compare (&stats[0], d_rep, ref.rep, V, "random rep", t);
    compare (&stats[1], d_temp, ref.temp, V, "random temp", t);
    if (ref.borderline) {
      borderline++;
      continue;
    }
    compare (&stats[2], d_minp, ref.minp, V, "random minp", t);
    compare (&stats[3], d_topp, ref.topp, V, "random topp", t);
    for (int i = 0; i < V; i++)
      max_prob_err = MAX (max_prob_err, fabs (d_probs[i] - ref.probs[i]));
    /* inverse CDF: u just inside each of a few tokens' intervals picks that token */
    double c = 0.0;
    for (int i = 0; i < V; i++) {
      if (ref.probs[i] > 1e-4) {
        const double mid = c + 0.5 * ref.probs[i];
        const gint32 tok = cb_t3_pick (d_probs, V, mid);
        if (tok != i)
          ck_abort_msg ("trial %d: u %.9f picked %d, expected %d", t, mid, tok, i);
        picks++;
      }
      c += ref.probs[i];
    }
  }
  g_print ("random: %d trials (%d with a borderline filter decision, compared up to temperature), "
           "rel err rep %.2e temp %.2e minp %.2e topp %.2e, max abs prob err %.2e, %d picks\n",
           trials, borderline, stats[0].max_rel, stats[1].max_rel, stats[2].max_rel,
           stats[3].max_rel, max_prob_err, picks);
  ck_assert_double_le (max_prob_err, TOL);
  ck_assert_int_lt (borderline, trials / 10);
  ck_assert_int_gt (picks, trials);
  cb_t3_sampler_free (smp);
  g_rand_free (rng);
}
END_TEST

/* ---- stage semantics spelled out ---- */

START_TEST (test_stage_semantics)
{
  /* repetition penalty: divide positive, multiply negative, zero stays */
  float l[4] = { 2.0f, -2.0f, 0.0f, 3.0f };
  const gint32 ids[3] = { 0, 1, 2 };
  cb_t3_repetition_penalty (l, ids, 3, 2.0);
  ck_assert_float_eq (l[0], 1.0f);
  ck_assert_float_eq (l[1], -4.0f);
  ck_assert_float_eq (l[2], 0.0f);
  ck_assert_float_eq (l[3], 3.0f);
  /* temperature 1.0 is skipped, others divide */
  float t[2] = { 1.0f, -3.0f };
  cb_t3_temperature (t, 2, 1.0);
  ck_assert_float_eq (t[0], 1.0f);
  cb_t3_temperature (t, 2, 0.5);
  ck_assert_float_eq (t[1], -6.0f);
  /* min-p keeps the top even at 1.0; top-p 0 keeps only the largest; ties keep the first max */
  float scratch[4];
  gint32 order[4];
  float m[4] = { 1.0f, 3.0f, 3.0f, 2.0f };
  cb_t3_min_p (m, 4, 1.0, scratch);
  ck_assert (isinf (m[0]) && m[1] == 3.0f && m[2] == 3.0f && isinf (m[3]));
  float q[4] = { 1.0f, 3.0f, 2.5f, 2.0f };
  cb_t3_top_p (q, 4, 0.0, scratch, order);
  ck_assert (isinf (q[0]) && q[1] == 3.0f && isinf (q[2]) && isinf (q[3]));
  /* top-p 1.0 drops only ids of probability 0 */
  float z[3] = { 0.0f, -200.0f, -INFINITY };
  cb_t3_top_p (z, 3, 1.0, scratch, order);
  ck_assert (z[0] == 0.0f && isinf (z[1]) && isinf (z[2]));
  /* cfg 0: the conditional row, uncond not read */
  float cond[2] = { 1.5f, -2.0f }, out[2];
  cb_t3_cfg_combine (out, cond, NULL, 2, 0.0);
  ck_assert (out[0] == 1.5f && out[1] == -2.0f);
  /* pick: u = 0 picks the first nonzero, u → 1 the last nonzero */
  const float probs[4] = { 0.0f, 0.25f, 0.75f, 0.0f };
  ck_assert_int_eq (cb_t3_pick (probs, 4, 0.0), 1);
  ck_assert_int_eq (cb_t3_pick (probs, 4, 0.2499), 1);
  ck_assert_int_eq (cb_t3_pick (probs, 4, 0.25), 2);
  ck_assert_int_eq (cb_t3_pick (probs, 4, 0.9999999999), 2);
}
END_TEST

/* ---- the sampler as a stream ---- */

static int
run_stream (CbT3Sampler *smp, const CbT3SampleParams *p, GRand *logits_rng, gint32 *out)
{
  static float row[V], cond[V], uncond[V];
  ck_assert (cb_t3_sampler_begin (smp, p, NULL));
  int n = 0;
  while (!cb_t3_sampler_finished (smp)) {
    for (int i = 0; i < V; i++) {
      cond[i] = (float) (4.0 * gauss (logits_rng));
      uncond[i] = cond[i] + (float) gauss (logits_rng);
    }
    cond[EOS] = n > 20 ? 30.0f : -30.0f;  /* ends by EOS after about 21 tokens */
    cb_t3_cfg_combine (row, cond, uncond, V, p->cfg_weight);
    out[n++] = cb_t3_sampler_step (smp, row, NULL);
  }
  return n;
}

START_TEST (test_stream_seed_stop_and_reset)
{
  CbT3Sampler *smp = cb_t3_sampler_new (V, 100, BOS, EOS, NULL);
  CbT3SampleParams p = cb_t3_sample_params_default ();
  p.seed = 7;
  p.max_tokens = 100;
  gint32 a[100], b[100], c[100];
  GRand *r = g_rand_new_with_seed (1);
  const int na = run_stream (smp, &p, r, a);
  g_rand_set_seed (r, 1);
  const int nb = run_stream (smp, &p, r, b);  /* same sampler again: begin resets everything */
  ck_assert_int_eq (na, nb);
  ck_assert_mem_eq (a, b, na * sizeof *a);
  ck_assert_int_eq (a[na - 1], EOS);
  ck_assert_int_ge (na, 20);
  /* a fresh sampler gives the same; another seed gives another stream */
  CbT3Sampler *fresh = cb_t3_sampler_new (V, 100, BOS, EOS, NULL);
  g_rand_set_seed (r, 1);
  ck_assert_int_eq (run_stream (fresh, &p, r, c), na);
  ck_assert_mem_eq (a, c, na * sizeof *a);
  p.seed = 8;
  g_rand_set_seed (r, 1);
  const int nc = run_stream (smp, &p, r, c);
  ck_assert (nc != na || memcmp (a, c, na * sizeof *a) != 0);
  /* max_tokens stops the stream without EOS */
  p.max_tokens = 5;
  g_rand_set_seed (r, 1);
  ck_assert_int_eq (run_stream (smp, &p, r, c), 5);
  ck_assert_int_ne (c[4], EOS);
  /* the generator: uniform in [0, 1), mean near 1/2 */
  CbT3Rng rng;
  cb_t3_rng_seed (&rng, 42);
  double sum = 0.0;
  for (int i = 0; i < 100000; i++) {
    const double u = cb_t3_rng_uniform (&rng);
    ck_assert (u >= 0.0 && u < 1.0);
    sum += u;
  }
  ck_assert_double_eq_tol (sum / 100000, 0.5, 0.005);
  g_rand_free (r);
  cb_t3_sampler_free (fresh);
  cb_t3_sampler_free (smp);
}
END_TEST

START_TEST (test_params_validation)
{
  GError *err = NULL;
  CbT3SampleParams d = cb_t3_sample_params_default ();
  ck_assert (d.cfg_weight == 0.5 && d.temperature == 0.8 && d.repetition_penalty == 1.2 &&
             d.min_p == 0.05 && d.top_p == 1.0 && d.max_tokens == 1000 && !d.alignment_guard);
  ck_assert (cb_t3_sample_params_validate (&d, NULL));
  CbT3SampleParams p;
  p = d; p.max_tokens = 0;
  ck_assert (!cb_t3_sample_params_validate (&p, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  ck_assert (strstr (err->message, "max-tokens") != NULL);
  g_clear_error (&err);
  p = d; p.temperature = 0.0;
  ck_assert (!cb_t3_sample_params_validate (&p, NULL));
  p = d; p.top_p = NAN;
  ck_assert (!cb_t3_sample_params_validate (&p, NULL));
  p = d; p.min_p = 1.5;
  ck_assert (!cb_t3_sample_params_validate (&p, NULL));
  p = d; p.cfg_weight = -0.1;
  ck_assert (!cb_t3_sample_params_validate (&p, NULL));
  p = d; p.repetition_penalty = 0.0;
  ck_assert (!cb_t3_sample_params_validate (&p, NULL));
  /* begin refuses more tokens than the engine was built for */
  CbT3Sampler *smp = cb_t3_sampler_new (V, 10, BOS, EOS, NULL);
  p = d; p.max_tokens = 11;
  ck_assert (!cb_t3_sampler_begin (smp, &p, &err));
  ck_assert (strstr (err->message, "max-tokens") != NULL);
  g_clear_error (&err);
  cb_t3_sampler_free (smp);
  ck_assert (cb_t3_sampler_new (0, 10, BOS, EOS, NULL) == NULL);
}
END_TEST

/* After the sampler is built, an utterance (begin, steps with every setting, forced tokens) makes
 * no heap allocation. */
START_TEST (test_no_allocation_per_step)
{
#ifdef COUNT_ALLOCS
  static float row[V], base[V];
  GRand *r = g_rand_new_with_seed (3);
  for (int i = 0; i < V; i++)
    base[i] = (float) (4.0 * gauss (r));
  base[EOS] = -100.0f;
  CbT3Sampler *smp = cb_t3_sampler_new (V, 300, BOS, EOS, NULL);
  CbT3SampleParams p = cb_t3_sample_params_default ();
  p.max_tokens = 300;
  static const double topps[] = { 1.0, 0.9, 0.9 }, minps[] = { 0.05, 0.05, 0.0 };
  gboolean began = TRUE;  /* asserted afterwards: Check's asserts allocate */
  const long before = n_allocs;
  for (int k = 0; k < 3; k++) {
    p.top_p = topps[k];
    p.min_p = minps[k];
    began &= cb_t3_sampler_begin (smp, &p, NULL);
    while (!cb_t3_sampler_finished (smp)) {
      memcpy (row, base, sizeof row);
      if (smp->n_tokens % 2) {
        cb_t3_sampler_step (smp, row, NULL);
      } else {
        cb_t3_sampler_process (smp, row, NULL);
        cb_t3_sampler_accept (smp, (gint32) (smp->n_tokens * 7));
      }
    }
  }
  const long made = n_allocs - before;
  ck_assert (began);
  ck_assert_msg (made == 0, "%ld allocations in 3 utterances of 300 steps", made);
  cb_t3_sampler_free (smp);
  g_rand_free (r);
#endif
}
END_TEST

static Suite *
t3_sample_suite (void)
{
  Suite *s = suite_create ("t3-sample");
  TCase *tc = tcase_create ("golden");
  tcase_set_timeout (tc, 300);
  tcase_add_loop_test (tc, test_golden_case, 0, N_MODEL_CASES);
  tcase_add_test (tc, test_postproc_golden);
  tcase_add_test (tc, test_postproc_model_cases);
  suite_add_tcase (s, tc);
  tc = tcase_create ("semantics");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_postproc_edge_cases);
  tcase_add_test (tc, test_random_vs_reference);
  tcase_add_test (tc, test_stage_semantics);
  tcase_add_test (tc, test_stream_seed_stop_and_reset);
  tcase_add_test (tc, test_params_validation);
  tcase_add_test (tc, test_no_allocation_per_step);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (t3_sample_suite)
