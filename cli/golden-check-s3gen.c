/* golden-check-s3gen.c — stages "s3gen" and "hift" of `chatterbox-cli --check-golden` (see
 * golden-check-s3gen.h; what the harness writes: tests/reference/golden/README-s3gen.md).
 *
 * A case is judged by the tensors it holds, not by its name, so any mix the harness writes (the
 * detailed tokens_* cases, stream_* windows, e2e_* decodes, HiFT-only mels with or without a
 * cache) is checked with the same code. Every size comes from the model config and the case's own
 * tensors; every tensor is looked up with its expected dtype and shape, and a missing or misshapen
 * one is a FAIL line naming the file and the tensor.
 *
 * Each stage is fed upstream's own inputs where the file holds them (the CFM from upstream's mu,
 * the source from upstream's F0, the generator from upstream's source), so an error is reported
 * where it arises; the chained engine path that synthesis runs (tokens → mel, mel → waveform,
 * tokens → waveform) is measured as well. Errors are relative, max|ours − ref| / max|ref|, with
 * the Check suites' tolerances. */
#include "golden-check-s3gen.h"

#include <math.h>
#include <string.h>

#include "conds.h"
#include "engine-internal.h"
#include "s3gen-golden.h"

#define EXACT      0.0

struct _CliGoldenS3Gen {
  CbSafetensors *file;
  CbS3Gen       *s3;          /* NULL when it could not be built; `error` says why */
  char          *error;
  gboolean       voice_tried;
  gboolean       have_voice;
  CbS3GenVoice   voice;       /* the model's conds.pt, for cases that hold no voice of their own */
  char          *voice_error;
};

static CbS3Gen *
golden_s3gen (CliGolden *g, GError **error)
{
  if (!g->s3gen) {
    CliGoldenS3Gen *m = g->s3gen = g_new0 (CliGoldenS3Gen, 1);
    char *path = g_build_filename (g->model_dir, "s3gen.safetensors", NULL);
    GError *err = NULL;
    m->file = cb_safetensors_open (path, &err);
    if (m->file)
      m->s3 = cb_s3gen_new (&g->cfg, m->file, &err);
    if (!m->s3)
      m->error = g_strdup (err->message);
    g_clear_error (&err);
    g_free (path);
  }
  if (!g->s3gen->s3)
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND, "no S3Gen: %s", g->s3gen->error);
  return g->s3gen->s3;
}

void
cli_golden_s3gen_clear (CliGolden *g)
{
  CliGoldenS3Gen *m = g->s3gen;
  if (!m)
    return;
  if (m->have_voice)
    cb_s3gen_voice_clear (&m->voice);
  g_free (m->voice_error);
  cb_s3gen_free (m->s3);
  cb_safetensors_free (m->file);
  g_free (m->error);
  g_free (m);
  g->s3gen = NULL;
}

/* ---- one case: its tensors, its measures, its first error ---- */

typedef struct {
  char   *label;
  double  err, tol;
} Measure;

typedef struct {
  CliGolden     *g;
  CbSafetensors *st;
  GPtrArray     *owned;    /* converted copies and our outputs, freed with the case */
  GHashTable    *read;     /* names of the tensors looked up */
  GArray        *measures; /* Measure, in the order taken */
  GError        *err;      /* the first problem: the case FAILs with it */
} Case;

static void
clear_measure (gpointer m)
{
  g_free (((Measure *) m)->label);
}

static gboolean
case_open (Case *c, CliGolden *g, const char *path)
{
  memset (c, 0, sizeof *c);
  c->g = g;
  c->owned = g_ptr_array_new_with_free_func (g_free);
  c->read = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  c->measures = g_array_new (FALSE, FALSE, sizeof (Measure));
  g_array_set_clear_func (c->measures, clear_measure);
  c->st = cb_safetensors_open (path, &c->err);
  return c->st != NULL;
}

static void
case_close (Case *c)
{
  g_clear_error (&c->err);
  cb_safetensors_free (c->st);
  g_array_unref (c->measures);
  g_hash_table_unref (c->read);
  g_ptr_array_unref (c->owned);
}

static gboolean
case_has (const Case *c, const char *name)
{
  return cb_safetensors_find (c->st, name) != NULL;
}

/* `p` (from g_malloc), freed with the case. */
static gpointer
case_keep (Case *c, gpointer p)
{
  g_ptr_array_add (c->owned, p);
  return p;
}

static float *
case_alloc (Case *c, gsize n)
{
  return case_keep (c, g_new0 (float, MAX (n, 1)));
}

static void G_GNUC_PRINTF (2, 3)
case_fail (Case *c, const char *fmt, ...)
{
  if (c->err)
    return;
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (&c->err, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s", cb_safetensors_path (c->st), msg);
  g_free (msg);
}

/* A float tensor of exactly `shape` (entries may be CB_DIM_ANY) as F32; NULL once the case has
 * failed. */
static const float *
case_f32 (Case *c, const char *name, int ndim, const int64_t *shape)
{
  if (c->err)
    return NULL;
  g_hash_table_add (c->read, g_strdup (name));
  float *owned = NULL;
  const float *p = cb_safetensors_get_f32 (c->st, name, ndim, shape, &owned, &c->err);
  if (owned)
    case_keep (c, owned);
  return p;
}

/* The extent of dimension `axis` of a tensor case_f32 has just returned. */
static int
case_dim (const Case *c, const char *name, int axis)
{
  const CbTensorInfo *t = cb_safetensors_find (c->st, name);
  return t && axis < t->ndim && t->shape[axis] <= G_MAXINT ? (int) t->shape[axis] : 0;
}

/* An integer tensor (I64 or I32) of `shape` as ids in [0, bound); *n its values. */
static const int32_t *
case_ids (Case *c, const char *name, int ndim, const int64_t *shape, gint64 bound, int *n)
{
  *n = 0;
  if (c->err)
    return NULL;
  g_hash_table_add (c->read, g_strdup (name));
  const CbTensorInfo *t = cb_safetensors_get (c->st, name, CB_DTYPE_ANY, ndim, shape, &c->err);
  if (!t)
    return NULL;
  if (t->dtype != CB_DTYPE_I64 && t->dtype != CB_DTYPE_I32) {
    case_fail (c, "tensor '%s' has dtype %s, expected I64", name, cb_dtype_name (t->dtype));
    return NULL;
  }
  if (t->numel > G_MAXINT / 2) {
    case_fail (c, "tensor '%s' is too long", name);
    return NULL;
  }
  int32_t *ids = case_keep (c, g_new (int32_t, MAX (t->numel, 1)));
  for (guint64 i = 0; i < t->numel; i++) {
    gint64 v;
    if (t->dtype == CB_DTYPE_I64) {
      memcpy (&v, t->data + 8 * i, 8);  /* views may be unaligned */
    } else {
      gint32 w;
      memcpy (&w, t->data + 4 * i, 4);
      v = w;
    }
    if (v < 0 || v >= bound) {
      case_fail (c, "tensor '%s'[%" G_GUINT64_FORMAT "] = %" G_GINT64_FORMAT " is outside "
                 "[0, %" G_GINT64_FORMAT ")", name, i, v, bound);
      return NULL;
    }
    ids[i] = (int32_t) v;
  }
  *n = (int) t->numel;
  return ids;
}

/* Takes `label`. */
static void
measure (Case *c, char *label, double err, double tol)
{
  Measure m = { label, err, tol };
  g_array_append_val (c->measures, m);
}

static void
compare (Case *c, const char *label, const float *ours, const float *ref, gsize n, double tol)
{
  measure (c, g_strdup (label), cb_rel_max_err (ours, ref, n), tol);
}

/* A scratch arena of `floats` floats (0: the size is out of what the engine takes). */
static CbArena *
case_arena (Case *c, guint64 floats, const char *what)
{
  if (c->err)
    return NULL;
  if (floats == 0 || floats > G_MAXSIZE / sizeof (float)) {
    case_fail (c, "%s: sizes out of what the engine takes", what);
    return NULL;
  }
  return cb_arena_new ((gsize) floats * sizeof (float), &c->err);
}

/* " (tol 1e-04)" for a round tolerance, " (tol 1.23e-03)" for a computed one */
static void
append_tolerance (GString *s, double tol)
{
  char round[32];
  g_snprintf (round, sizeof round, "%.0e", tol);
  if (g_ascii_strtod (round, NULL) == tol)
    g_string_append_printf (s, " (tol %s)", round);
  else
    g_string_append_printf (s, " (tol %.2e)", tol);
}

/* "<head>; rel max err a 1.00e-07, b 2.00e-07 (tol 1e-05); c 0.00e+00 (exact); ..." grouping the
 * measures of one tolerance in their first order, a measure over its tolerance marked EXCEEDS;
 * then the error that stopped the case, or the tensors it holds but did not compare. */
static void
case_verdict (Case *c, const char *stage, const char *name, const char *head)
{
  GString *s = g_string_new (head);
  gboolean pass = c->err == NULL && c->measures->len > 0;
  gboolean *done = g_new0 (gboolean, MAX (c->measures->len, 1));
  for (guint i = 0; i < c->measures->len; i++) {
    if (done[i])
      continue;
    const double tol = g_array_index (c->measures, Measure, i).tol;
    g_string_append (s, i > 0 ? "; " : s->len ? "; rel max err " : "rel max err ");
    for (guint j = i, first = TRUE; j < c->measures->len; j++) {
      const Measure *m = &g_array_index (c->measures, Measure, j);
      if (done[j] || m->tol != tol)
        continue;
      done[j] = TRUE;
      gboolean ok = m->err <= m->tol;
      pass &= ok;
      g_string_append_printf (s, "%s%s %.2e%s", first ? "" : ", ", m->label, m->err,
                              ok ? "" : " EXCEEDS");
      first = FALSE;
    }
    if (tol == EXACT)
      g_string_append (s, " (exact)");
    else
      append_tolerance (s, tol);
  }
  g_free (done);
  const char *sep = s->len ? "; " : "";
  if (c->err) {
    g_string_append_printf (s, "%s%s", sep, c->err->message);
  } else {
    if (c->measures->len == 0)
      g_string_append_printf (s, "%snothing to compare", sep);
    GString *unread = g_string_new (NULL);
    for (guint i = 0; i < cb_safetensors_n_tensors (c->st); i++) {
      const char *t = cb_safetensors_nth (c->st, i)->name;
      if (!g_hash_table_contains (c->read, t))
        g_string_append_printf (unread, "%s%s", unread->len ? ", " : "", t);
    }
    if (unread->len)
      g_string_append_printf (s, "; not compared: %s", unread->str);
    g_string_free (unread, TRUE);
  }
  cli_golden_verdict (c->g, stage, name, pass, "%s", s->str);
  g_string_free (s, TRUE);
}

/* ---- the voice ---- */

/* The model's built-in voice (conds.pt), which the harness also gives upstream for the cases that
 * do not store one (stream_*: "conds.gen in full"). */
static const CbS3GenVoice *
builtin_voice (CliGolden *g, CbS3Gen *s3, GError **error)
{
  CliGoldenS3Gen *m = g->s3gen;
  if (!m->voice_tried) {
    m->voice_tried = TRUE;
    CbCondsExpect expect;
    cb_conds_expect_from_config (&expect, &g->cfg);
    char *path = g_build_filename (g->model_dir, "conds.pt", NULL);
    GError *err = NULL;
    CbConds *conds = cb_conds_load (path, &expect, &err);
    m->have_voice = conds && cb_s3gen_voice_init (&m->voice, s3, conds, &err);
    if (!m->have_voice)
      m->voice_error = g_strdup (err->message);
    g_clear_error (&err);
    cb_conds_free (conds);
    g_free (path);
  }
  if (!m->have_voice)
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND, "no built-in voice: %s", m->voice_error);
  return m->have_voice ? &m->voice : NULL;
}

/* The case's voice (input.prompt_token, _len, input.prompt_feat, input.embedding: upstream's
 * ref_dict) into *own, or the built-in voice when it stores none; *where says which. */
static const CbS3GenVoice *
case_voice (Case *c, CbS3Gen *s3, CbS3GenVoice *own, const char **where)
{
  static const char *const names[] = { "input.prompt_token", "input.prompt_token_len",
                                       "input.prompt_feat", "input.embedding" };
  gboolean any = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    any |= case_has (c, names[i]);
  if (c->err)
    return NULL;
  if (!any) {
    *where = "voice of conds.pt";
    return builtin_voice (c->g, s3, &c->err);
  }
  *where = "voice of the case";
  const CbConfig *cfg = &c->g->cfg;
  const int M = cfg->flow.output_size;
  CbConds cd = { 0 };
  cd.prompt_tokens = (int32_t *) case_ids (c, "input.prompt_token", 2,
                                           (int64_t[]) { 1, CB_DIM_ANY }, cfg->flow.vocab_size,
                                           &cd.n_prompt_tokens);
  if (case_has (c, "input.prompt_token_len")) {
    int n_len;
    const int32_t *len = case_ids (c, "input.prompt_token_len", 1, (int64_t[]) { 1 }, G_MAXINT32,
                                   &n_len);
    if (len && len[0] != cd.n_prompt_tokens)
      case_fail (c, "input.prompt_token_len is %d but input.prompt_token holds %d tokens", len[0],
                 cd.n_prompt_tokens);
  }
  cd.prompt_feat = (float *) case_f32 (c, "input.prompt_feat", 3,
                                       (int64_t[]) { 1, CB_DIM_ANY, M });
  cd.n_prompt_frames = case_dim (c, "input.prompt_feat", 1);
  cd.mel_bins = M;
  cd.xvector_size = cfg->flow.spk_embed_dim;
  cd.embedding = (float *) case_f32 (c, "input.embedding", 2, (int64_t[]) { 1, cd.xvector_size });
  if (c->err || !cb_s3gen_voice_init (own, s3, &cd, &c->err))
    return NULL;
  /* upstream's flow takes every prompt token; the engine keeps those the prompt mel covers, as
   * upstream's embed_ref makes them */
  if (own->n_prompt_tokens != cd.n_prompt_tokens) {
    case_fail (c, "input.prompt_token holds %d tokens but input.prompt_feat covers %d frames: the "
               "engine's voices keep %d tokens (upstream's embed_ref), this flow call takes all",
               cd.n_prompt_tokens, cd.n_prompt_frames, own->n_prompt_tokens);
    cb_s3gen_voice_clear (own);
    return NULL;
  }
  return own;
}

/* ---- stage "s3gen": the flow, tokens → mel ---- */

/* "cfm.x.{0,1,10}" for the states ks[0..n) (ascending), runs written a..b. */
static char *
states_label (const int *ks, int n)
{
  GString *s = g_string_new ("cfm.x.{");
  for (int i = 0; i < n;) {
    int j = i;
    while (j + 1 < n && ks[j + 1] == ks[j] + 1)
      j++;
    g_string_append_printf (s, "%s%d", i ? "," : "", ks[i]);
    if (j > i)
      g_string_append_printf (s, "%s%d", j > i + 1 ? ".." : ",", ks[j]);
    i = j + 1;
  }
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

static gint
compare_ints (gconstpointer a, gconstpointer b)
{
  return *(const int *) a - *(const int *) b;
}

/* Indices k of the tensors named prefix<k>suffix, ascending; a name of that form whose k is not a
 * number in [0, max] written plainly fails the case. */
static GArray *
indexed_names (Case *c, const char *prefix, const char *suffix, int max)
{
  GArray *ks = g_array_new (FALSE, FALSE, sizeof (int));
  for (guint i = 0; i < cb_safetensors_n_tensors (c->st); i++) {
    const char *t = cb_safetensors_nth (c->st, i)->name;
    if (!g_str_has_prefix (t, prefix) || !g_str_has_suffix (t, suffix))
      continue;
    gint64 k = g_ascii_strtoll (t + strlen (prefix), NULL, 10);
    char *plain = g_strdup_printf ("%s%" G_GINT64_FORMAT "%s", prefix, k, suffix);
    if (strcmp (plain, t) != 0 || k < 0 || k > max) {
      case_fail (c, "tensor '%s': the model's solver has steps 0..%d", t, max);
    } else {
      int ki = (int) k;
      g_array_append_val (ks, ki);
    }
    g_free (plain);
  }
  g_array_sort (ks, compare_ints);
  return ks;
}

/* Everything a flow case needs once the voice and tokens are known. */
typedef struct {
  CbS3Gen            *s3;
  const CbS3GenVoice *v;
  const int32_t      *tokens;
  int                 n, T, Tm, M;
  const float        *z;
  float              *mu;    /* ours (M, T) when the encoder ran */
  float              *cond;  /* ours (M, T): the prompt mel, then zeros */
} Flow;

/* The x-vector projection, the encoder output and mu, each against upstream's where stored. */
static void
check_encoder (Case *c, Flow *f)
{
  const CbConfig *cfg = &c->g->cfg;
  const int M = f->M, T = f->T, C = cfg->flow_encoder.output_size;
  if (case_has (c, "flow.xvec_proj")) {
    const float *ref = case_f32 (c, "flow.xvec_proj", 2, (int64_t[]) { 1, M });
    if (ref)
      compare (c, "xvec_proj", f->v->spks, ref, M, CB_GOLDEN_TOL_FLOW);
  }
  const gboolean has_h = case_has (c, "flow.encoder_h"), has_mu = case_has (c, "flow.mu");
  const float *ref_h = has_h ? case_f32 (c, "flow.encoder_h", 3, (int64_t[]) { 1, T, C }) : NULL;
  const float *ref_mu = has_mu ? case_f32 (c, "flow.mu", 3, (int64_t[]) { 1, T, M }) : NULL;
  CbS3GenFlow *flow = cb_s3gen_part_flow (f->s3);
  const int Tp = f->v->n_prompt_tokens, Tt = Tp + f->n;
  CbArena *arena = case_arena (c, cb_s3gen_flow_scratch_floats (flow, Tt), "encoder");
  if (!arena)
    return;
  int32_t *ids = g_new (int32_t, Tt);
  memcpy (ids, f->v->prompt_tokens, sizeof (int32_t) * Tp);
  memcpy (ids + Tp, f->tokens, sizeof (int32_t) * f->n);
  f->mu = case_alloc (c, (gsize) M * T);
  float *h = case_alloc (c, (gsize) T * C);
  if (cb_s3gen_flow_encode (flow, arena, ids, Tt, f->mu, h, &c->err)) {
    if (ref_h)
      compare (c, "encoder_h", h, ref_h, (gsize) T * C, CB_GOLDEN_TOL_FLOW);
    if (ref_mu) {
      float *mu_tm = case_alloc (c, (gsize) T * M);  /* upstream's (1, T, 80) */
      for (int t = 0; t < T; t++)
        for (int m = 0; m < M; m++)
          mu_tm[(gsize) t * M + m] = f->mu[(gsize) m * T + t];
      compare (c, "mu", mu_tm, ref_mu, (gsize) T * M, CB_GOLDEN_TOL_FLOW);
    }
  } else {
    f->mu = NULL;
  }
  g_free (ids);
  cb_arena_free (arena);
}

/* Every stored estimator evaluation est.<k>.*, on upstream's inputs. */
static void
check_estimates (Case *c, Flow *f, int n_steps)
{
  const CbConfig *cfg = &c->g->cfg;
  const int F = cfg->flow_decoder.out_channels, S = cfg->cfm.spk_emb_dim;
  GArray *ks = indexed_names (c, "est.", ".out", n_steps - 1);
  for (guint i = 0; i < ks->len && !c->err; i++) {
    const int k = g_array_index (ks, int, i);
    char key[7][48];
    static const char *const parts[] = { "out", "in.x", "in.mu", "in.cond", "in.mask", "in.t",
                                         "in.spks" };
    for (int p = 0; p < 7; p++)
      g_snprintf (key[p], sizeof key[p], "est.%d.%s", k, parts[p]);
    const float *ref = case_f32 (c, key[0], 3, (int64_t[]) { CB_DIM_ANY, F, CB_DIM_ANY });
    const int B = case_dim (c, key[0], 0), T = case_dim (c, key[0], 2);
    if (ref && (B < 1 || B > 2 || T < 1))
      case_fail (c, "tensor '%s' has %d rows of %d frames: the estimator takes 1 or 2 rows (the "
                 "CFG pair) of at least one frame", key[0], B, T);
    const int64_t bft[3] = { B, F, T };
    const float *x = case_f32 (c, key[1], 3, bft), *mu = case_f32 (c, key[2], 3, bft);
    const float *cond = case_f32 (c, key[3], 3, bft);
    const float *mask = case_f32 (c, key[4], 3, (int64_t[]) { B, 1, T });
    const float *t = case_f32 (c, key[5], 1, (int64_t[]) { B });
    const float *spks = case_f32 (c, key[6], 2, (int64_t[]) { B, S });
    for (gsize j = 0; mask && j < (gsize) B * T && !c->err; j++)
      if (mask[j] != 1.0f)
        case_fail (c, "tensor '%s' masks frame %" G_GSIZE_FORMAT ": the estimator is specified "
                   "for all-valid frames (the only way upstream's inference calls it)", key[4], j);
    CbS3GenCfm *cfm = cb_s3gen_part_cfm (f->s3);
    CbArena *arena = case_arena (c, cb_s3gen_cfm_scratch_floats (cfm, B, T), key[0]);
    if (!arena)
      break;
    float *out = case_alloc (c, (gsize) B * F * T);
    cb_s3gen_cfm_estimate (cfm, arena, x, mu, t, spks, cond, B, T, out);
    char *label = g_strdup_printf ("est.%d", k);
    measure (c, label, cb_rel_max_err (out, ref, (gsize) B * F * T), CB_GOLDEN_TOL_EST);
    cb_arena_free (arena);
  }
  g_array_unref (ks);
}

typedef struct {
  Case               *c;
  const float *const *ref;   /* [n_steps + 1], NULL where not stored */
  int                 F, calls;
  double              worst;
} Trace;

static void
trace_state (int k, const float *x, int T, void *user)
{
  Trace *tr = user;
  tr->calls++;
  if (tr->ref[k])
    tr->worst = MAX (tr->worst, cb_rel_max_err (x, tr->ref[k], (gsize) tr->F * T));
}

/* The stored Euler states cfm.x.<k>, solving from upstream's noise, mu, spks and cond where
 * stored (ours otherwise), so the solver is judged on its own. */
static void
check_states (Case *c, Flow *f, int n_steps)
{
  const int F = f->M, T = f->T;
  GArray *ks = indexed_names (c, "cfm.x.", "", n_steps);
  const float **ref = g_new0 (const float *, n_steps + 1);
  for (guint i = 0; i < ks->len; i++) {
    char key[32];
    const int k = g_array_index (ks, int, i);
    g_snprintf (key, sizeof key, "cfm.x.%d", k);
    ref[k] = case_f32 (c, key, 3, (int64_t[]) { 1, F, T });
  }
  const float *mu = f->mu, *spks = f->v->spks, *cond = f->cond;
  if (ks->len && case_has (c, "flow.mu")) {
    const float *tm = case_f32 (c, "flow.mu", 3, (int64_t[]) { 1, T, F });
    float *cf = case_alloc (c, (gsize) F * T);
    for (int t = 0; tm && t < T; t++)
      for (int m = 0; m < F; m++)
        cf[(gsize) m * T + t] = tm[(gsize) t * F + m];
    mu = cf;
  }
  if (ks->len && case_has (c, "flow.xvec_proj"))
    spks = case_f32 (c, "flow.xvec_proj", 2, (int64_t[]) { 1, F });
  if (ks->len && case_has (c, "flow.cond"))
    cond = case_f32 (c, "flow.cond", 3, (int64_t[]) { 1, F, T });
  if (ks->len && !c->err && !mu)
    case_fail (c, "Euler states stored without flow.mu, and our encoder did not run");
  CbS3GenCfm *cfm = cb_s3gen_part_cfm (f->s3);
  CbArena *arena = ks->len ? case_arena (c, cb_s3gen_cfm_scratch_floats (cfm, 2, T), "solver")
                           : NULL;
  if (arena) {
    Trace tr = { c, ref, F, 0, 0.0 };
    float *mel = case_alloc (c, (gsize) F * T);
    if (cb_s3gen_cfm_solve (cfm, arena, f->z, mu, spks, cond, T, mel, NULL, trace_state, &tr,
                            &c->err)) {
      if (tr.calls != n_steps + 1)
        case_fail (c, "the solver reported %d states, expected %d", tr.calls, n_steps + 1);
      measure (c, states_label ((const int *) ks->data, (int) ks->len), tr.worst, CB_GOLDEN_TOL_SOLVE);
    }
    cb_arena_free (arena);
  }
  g_free (ref);
  g_array_unref (ks);
}

void
cli_golden_check_s3gen_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  Case c;
  CbS3GenVoice own = { 0 };
  const char *where = "";
  char *head = NULL;
  Flow f = { 0 };
  if (!case_open (&c, g, path) || !(f.s3 = golden_s3gen (g, &c.err)))
    goto done;
  const CbConfig *cfg = &g->cfg;
  f.M = cfg->flow.output_size;
  f.tokens = case_ids (&c, "input.tokens", 2, (int64_t[]) { 1, CB_DIM_ANY }, cfg->flow.vocab_size,
                       &f.n);
  if (!(f.v = case_voice (&c, f.s3, &own, &where)))
    goto done;
  const int Tp = f.v->n_prompt_tokens;
  if (f.n < 1 || f.n > cb_s3gen_flow_max_tokens (cb_s3gen_part_flow (f.s3)) - Tp) {
    case_fail (&c, "input.tokens holds %d tokens: the flow takes 1..%d after a %d-token prompt",
               f.n, cb_s3gen_flow_max_tokens (cb_s3gen_part_flow (f.s3)) - Tp, Tp);
    goto done;
  }
  f.T = cfg->flow.token_mel_ratio * (Tp + f.n);
  f.Tm = f.v->n_prompt_frames;
  const int M = f.M, T = f.T, Tm = f.Tm, Fr = cb_s3gen_window_frames (f.s3, f.v, f.n);
  head = g_strdup_printf ("tokens %d + prompt %d (%s): flow %d frames, mel %d", f.n, Tp, where, T,
                          Fr);
  f.z = case_f32 (&c, "noise.z", 3, (int64_t[]) { 1, M, T });
  const float *ref_mel = case_f32 (&c, "out.mel", 3, (int64_t[]) { 1, M, Fr });
  if (c.err)
    goto done;
  f.cond = case_alloc (&c, (gsize) M * T);
  for (int m = 0; m < M; m++)
    memcpy (f.cond + (gsize) m * T, f.v->prompt_mel + (gsize) m * Tm, sizeof (float) * Tm);

  check_encoder (&c, &f);
  if (case_has (&c, "flow.cond")) {
    const float *ref = case_f32 (&c, "flow.cond", 3, (int64_t[]) { 1, M, T });
    if (ref)
      compare (&c, "cond", f.cond, ref, (gsize) M * T, EXACT);
  }
  CbS3GenCfm *cfm = cb_s3gen_part_cfm (f.s3);
  const int n_steps = cb_s3gen_cfm_n_steps (cfm);
  if (case_has (&c, "cfm.t_span")) {
    const float *ref = case_f32 (&c, "cfm.t_span", 1, (int64_t[]) { n_steps + 1 });
    if (ref)
      compare (&c, "t_span", cb_s3gen_cfm_t_span (cfm), ref, n_steps + 1, EXACT);
  }
  if (!c.err)
    check_estimates (&c, &f, n_steps);
  if (!c.err)
    check_states (&c, &f, n_steps);

  /* the engine's own path: one flow window from the tokens with upstream's start noise */
  CbArena *arena = case_arena (&c, cb_s3gen_window_scratch_floats (f.s3, f.v, f.n), "flow window");
  if (arena) {
    float *mel = case_alloc (&c, (gsize) M * Fr);
    if (cb_s3gen_flow_window (f.s3, arena, f.v, f.tokens, f.n, 0, f.z, 0, NULL, mel, NULL, &c.err))
      compare (&c, "out.mel", mel, ref_mel, (gsize) M * Fr, CB_GOLDEN_TOL_SOLVE);
    cb_arena_free (arena);
  }
done:
  case_verdict (&c, stage, name, head ? head : "");
  if (f.v == &own)
    cb_s3gen_voice_clear (&own);
  g_free (head);
  case_close (&c);
}

/* ---- stage "hift": the vocoder, mel → waveform ---- */

/* Sizes of one HiFT case of T mel frames. */
typedef struct {
  int T, L, H, nb, nfr, nspec, C0;
} HiftSizes;

/* Upstream's S3Token2Wav.inference end to end (input.tokens and a voice stored): our whole decode
 * with upstream's three draws injected. */
static void
check_whole_decode (Case *c, CbS3Gen *s3, const HiftSizes *sz, const float *phases,
                    const float *noise)
{
  const CbConfig *cfg = &c->g->cfg;
  const int M = cfg->flow.output_size;
  int n;
  const int32_t *tokens = case_ids (c, "input.tokens", 2, (int64_t[]) { 1, CB_DIM_ANY },
                                    cfg->flow.vocab_size, &n);
  CbS3GenVoice own = { 0 };
  const char *where;
  const CbS3GenVoice *v = tokens ? case_voice (c, s3, &own, &where) : NULL;
  if (!v)
    return;
  if (n < 1 || n > cb_s3gen_flow_max_tokens (cb_s3gen_part_flow (s3)) - v->n_prompt_tokens)
    case_fail (c, "input.tokens holds %d tokens: out of what the flow takes", n);
  else if (cb_s3gen_window_frames (s3, v, n) != sz->T)
    case_fail (c, "input.tokens and the voice give %d mel frames but input.mel holds %d",
               cb_s3gen_window_frames (s3, v, n), sz->T);
  const int T = c->err ? 0 : cfg->flow.token_mel_ratio * (v->n_prompt_tokens + n);
  CbS3GenNoise draws = { case_f32 (c, "noise.z", 3, (int64_t[]) { 1, M, T }), phases, noise };
  CbS3GenOutput o = { 0 };
  if (!c->err && cb_s3gen_decode_whole (s3, v, tokens, n, &draws, 0, NULL, &o, &c->err)) {
    const float *mel = case_f32 (c, "input.mel", 3, (int64_t[]) { 1, M, sz->T });
    const float *f0 = case_f32 (c, "hift.f0", 2, (int64_t[]) { 1, sz->T });
    const float *wav = case_f32 (c, "out.wav", 2, (int64_t[]) { 1, sz->L });
    if (!c->err && o.n_frames == sz->T && o.n_samples == (gsize) sz->L) {
      compare (c, "e2e mel", o.mel, mel, (gsize) M * sz->T, CB_GOLDEN_TOL_SOLVE);
      compare (c, "e2e f0", o.f0, f0, sz->T, CB_GOLDEN_TOL_F0);
      compare (c, "e2e out.wav", o.wav, wav, sz->L, CB_GOLDEN_TOL_WAV);
    }
  }
  cb_s3gen_output_clear (&o);
  if (v == &own)
    cb_s3gen_voice_clear (&own);
}

void
cli_golden_check_hift_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  Case c;
  CbS3Gen *s3 = NULL;
  char *head = NULL;
  CbArena *arena = NULL;
  if (!case_open (&c, g, path) || !(s3 = golden_s3gen (g, &c.err)))
    goto done;
  const CbConfig *cfg = &g->cfg;
  CbHift *hift = cb_s3gen_part_hift (s3);
  const float *mel = case_f32 (&c, "input.mel", 3,
                               (int64_t[]) { 1, cfg->hift.in_channels, CB_DIM_ANY });
  HiftSizes sz = { .T = case_dim (&c, "input.mel", 2), .H = cb_hift_n_harmonics (hift) };
  const int spf = cb_hift_samples_per_frame (hift), hop = cfg->hift.istft_hop_len;
  if (mel && (sz.T < 1 || sz.T > G_MAXINT / 64 / spf))
    case_fail (&c, "input.mel holds %d frames: HiFT takes 1..%d", sz.T, G_MAXINT / 64 / spf);
  if (c.err)
    goto done;
  sz.L = sz.T * spf;
  sz.nfr = sz.L / hop + 1;
  sz.nb = cfg->hift.istft_n_fft / 2 + 1;
  sz.nspec = cfg->hift.istft_n_fft + 2;
  sz.C0 = cfg->hift.base_channels;
  const int T = sz.T, L = sz.L, H = sz.H;
  const float *ref_f0 = case_f32 (&c, "hift.f0", 2, (int64_t[]) { 1, T });
  const float *phases = case_f32 (&c, "rand.sine_phase", 3, (int64_t[]) { 1, H, 1 });
  const float *noise = case_f32 (&c, "rand.sine_noise", 3, (int64_t[]) { 1, H, L });
  const float *ref_source = case_f32 (&c, "hift.source", 3, (int64_t[]) { 1, 1, L });
  const int64_t spec_shape[3] = { 1, sz.nb, sz.nfr };
  const float *ref_re = case_f32 (&c, "hift.source_stft_real", 3, spec_shape);
  const float *ref_im = case_f32 (&c, "hift.source_stft_imag", 3, spec_shape);
  const float *ref_pre = case_f32 (&c, "hift.conv_pre", 3, (int64_t[]) { 1, sz.C0, T });
  const float *ref_post = case_f32 (&c, "hift.conv_post", 3, (int64_t[]) { 1, sz.nspec, sz.nfr });
  const float *ref_wav = case_f32 (&c, "out.wav", 2, (int64_t[]) { 1, L });
  /* e2e cases store HiFT's own output before S3Token2Wav's fade */
  const gboolean faded = case_has (&c, "out.wav_before_fade");
  const float *ref_hift_wav = faded ? case_f32 (&c, "out.wav_before_fade", 2, (int64_t[]) { 1, L })
                                    : ref_wav;
  const float *ref_sine = case_has (&c, "hift.sine_waves")
      ? case_f32 (&c, "hift.sine_waves", 3, (int64_t[]) { 1, H, L }) : NULL;
  const float *cache = NULL;
  int n_cache = 0;
  if (case_has (&c, "input.cache_source")) {
    cache = case_f32 (&c, "input.cache_source", 3, (int64_t[]) { 1, 1, CB_DIM_ANY });
    n_cache = case_dim (&c, "input.cache_source", 2);
    if (cache && n_cache > L)
      case_fail (&c, "input.cache_source holds %d samples, more than the %d of this mel", n_cache,
                 L);
  }
  head = g_strdup_printf ("mel %d frames, %d samples, cache_source %d", T, L, n_cache);
  arena = case_arena (&c, cb_hift_scratch_floats (hift, T), "HiFT");
  if (!arena)
    goto done;

  /* each stage on upstream's inputs */
  float *f0 = case_alloc (&c, T), *source = case_alloc (&c, L), *wav = case_alloc (&c, L);
  float *sine = ref_sine ? case_alloc (&c, (gsize) H * L) : NULL;
  cb_hift_f0 (hift, arena, mel, T, f0);
  compare (&c, "hift.f0", f0, ref_f0, T, CB_GOLDEN_TOL_F0);
  cb_hift_source (hift, arena, ref_f0, T, phases, noise, NULL, NULL, source, sine);
  if (sine)
    compare (&c, "hift.sine_waves", sine, ref_sine, (gsize) H * L, CB_GOLDEN_TOL_SOURCE);
  if (n_cache)
    memcpy (source, cache, sizeof (float) * n_cache);
  compare (&c, "hift.source", source, ref_source, L, CB_GOLDEN_TOL_SOURCE);
  CbHiftTrace trace = { case_alloc (&c, (gsize) sz.C0 * T), case_alloc (&c, (gsize) sz.nb * sz.nfr),
                        case_alloc (&c, (gsize) sz.nb * sz.nfr),
                        case_alloc (&c, (gsize) sz.nspec * sz.nfr) };
  cb_hift_decode (hift, arena, mel, T, ref_source, wav, &trace);
  compare (&c, "stft_real", trace.stft_real, ref_re, (gsize) sz.nb * sz.nfr, CB_GOLDEN_TOL_STFT);
  compare (&c, "stft_imag", trace.stft_imag, ref_im, (gsize) sz.nb * sz.nfr, CB_GOLDEN_TOL_STFT);
  compare (&c, "conv_pre", trace.conv_pre, ref_pre, (gsize) sz.C0 * T, CB_GOLDEN_TOL_PRE);
  compare (&c, "conv_post", trace.conv_post, ref_post, (gsize) sz.nspec * sz.nfr, CB_GOLDEN_TOL_POST);
  compare (&c, faded ? "wav_before_fade" : "out.wav", wav, ref_hift_wav, L, CB_GOLDEN_TOL_WAV);

  /* the chain from the mel alone, as synthesis runs it */
  cb_hift_inference (hift, arena, mel, T, phases, noise, cache, n_cache, wav, source, f0);
  /* SineGen integrates F0, so our F0's rounding difference grows into a phase difference along
   * the clip: the chained source is held to what an F0 error of the measured size can explain */
  const double tol_chained = cb_hift_source_tolerance (hift, arena, ref_f0, T, phases, noise, cache,
                                                       n_cache, cb_rel_max_err (f0, ref_f0, T),
                                                       CB_GOLDEN_TOL_SOURCE);
  compare (&c, "chained source", source, ref_source, L, tol_chained);
  compare (&c, faded ? "chained wav_before_fade" : "chained out.wav", wav, ref_hift_wav, L,
           CB_GOLDEN_TOL_WAV);
  if (faded) {
    const int n_fade = 2 * cfg->hift.sampling_rate / 50;
    if (case_has (&c, "s3gen.trim_fade")) {
      const float *ref_curve = case_f32 (&c, "s3gen.trim_fade", 1, (int64_t[]) { n_fade });
      float *curve = case_alloc (&c, n_fade);
      for (int i = 0; i < n_fade; i++)
        curve[i] = 1.0f;
      cb_hift_trim_fade (curve, n_fade, cfg->hift.sampling_rate);
      if (ref_curve)
        compare (&c, "trim_fade", curve, ref_curve, n_fade, CB_GOLDEN_TOL_FADE);
    }
    cb_hift_trim_fade (wav, L, cfg->hift.sampling_rate);
    compare (&c, "chained out.wav", wav, ref_wav, L, CB_GOLDEN_TOL_WAV);
  }
  if (case_has (&c, "input.tokens") && !c.err)
    check_whole_decode (&c, s3, &sz, phases, noise);
done:
  case_verdict (&c, stage, name, head ? head : "");
  cb_arena_free (arena);
  g_free (head);
  case_close (&c);
}
