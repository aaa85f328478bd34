/* golden-check.c — `chatterbox-cli --check-golden DIR` (see golden-check.h).
 *
 * Golden files are untrusted input like any other: each is opened with the validating safetensors
 * reader, every tensor is looked up with its expected dtype and rank, and any problem becomes a
 * FAIL line naming the file and the tensor, never a crash. */
#include "golden-check.h"
#include "golden-check-internal.h"
#include "golden-check-s3gen.h"

#include <stdarg.h>
#include <string.h>

#include "chatterbox.h"
#include "cli-model.h"
#include "golden-guard.h"
#include "safetensors.h"
#include "t3-golden.h"
#include "t3-sample.h"
#include "text.h"
#include "tokenizer.h"

typedef void (*CaseCheck) (CliGolden *g, const char *stage, const char *name, const char *path);

static void check_text_case (CliGolden *g, const char *stage, const char *name, const char *path);
static void check_t3_case (CliGolden *g, const char *stage, const char *name, const char *path);
static void check_t3_guard_case (CliGolden *g, const char *stage, const char *name,
                                 const char *path);

/* Stages the harness writes, in pipeline order: the C check, or the issue that will bring it. */
static const struct {
  const char *stage;
  CaseCheck   check;
  const char *pending;
} known_stages[] = {
  { "text", check_text_case, NULL },
  { "voice", NULL, "voice cloning: VE, S3 tokenizer, CAMPPlus; no issue filed yet" },
  { "t3", check_t3_case, NULL },
  { "t3_guard", check_t3_guard_case, NULL },
  { "s3gen", cli_golden_check_s3gen_case, NULL },
  { "hift", cli_golden_check_hift_case, NULL },
};

/* ---- output ---- */

void
cli_golden_verdict (CliGolden *g, const char *stage, const char *name, gboolean pass,
                    const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *detail = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_strdelimit (detail, "\n\r", ' '); /* one line per case, whatever the message */
  fprintf (g->out, "%-8s %-24s %s  %s\n", stage, name, detail, pass ? "PASS" : "FAIL");
  g_free (detail);
  if (pass)
    g->tally->passed++;
  else
    g->tally->failed++;
}

void
cli_golden_not_implemented (CliGolden *g, const char *stage, const char *name, const char *why)
{
  fprintf (g->out, "%-8s %-24s not implemented yet (%s)\n", stage, name, why);
  g->tally->not_implemented++;
}

/* ---- reading golden tensors ---- */

/* A 1-D tensor of `dtype` (any length); NULL with `error` set when absent or of another kind. */
static const CbTensorInfo *
get_vector (const CbSafetensors *st, const char *name, CbDType dtype, GError **error)
{
  return cb_safetensors_get (st, name, dtype, 1, NULL, error);
}

/* The bytes of a U8 tensor as a NUL-terminated UTF-8 string (g_free), or NULL with an error. */
static char *
get_utf8 (const CbSafetensors *st, const char *name, GError **error)
{
  const CbTensorInfo *t = get_vector (st, name, CB_DTYPE_U8, error);
  if (!t)
    return NULL;
  if (memchr (t->data, 0, t->nbytes) || !g_utf8_validate ((const char *) t->data, (gssize) t->nbytes, NULL)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: tensor '%s' is not NUL-free UTF-8",
                 cb_safetensors_path (st), name);
    return NULL;
  }
  return g_strndup ((const char *) t->data, t->nbytes);
}

/* An I64 vector as gint32 ids (ids outside the gint32 range are an error). */
static GArray *
get_ids (const CbSafetensors *st, const char *name, GError **error)
{
  const CbTensorInfo *t = get_vector (st, name, CB_DTYPE_I64, error);
  if (!t)
    return NULL;
  GArray *ids = g_array_sized_new (FALSE, FALSE, sizeof (gint32), (guint) t->numel);
  for (guint64 i = 0; i < t->numel; i++) {
    gint64 v;
    memcpy (&v, t->data + i * sizeof v, sizeof v); /* views may be unaligned */
    if (v < G_MININT32 || v > G_MAXINT32) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: tensor '%s'[%" G_GUINT64_FORMAT "] = %"
                   G_GINT64_FORMAT " is not a token id", cb_safetensors_path (st), name, i, v);
      g_array_unref (ids);
      return NULL;
    }
    gint32 id = (gint32) v;
    g_array_append_val (ids, id);
  }
  return ids;
}

/* ---- comparisons ---- */

/* "12/12 equal" or "11/12 equal, first difference at 4 (ours 7, golden 9)": positions compared up
 * to the longer length; returns whether everything matched. */
static gboolean
compare_ids (const GArray *ours, const GArray *ref, GString *detail, const char *what)
{
  guint n = MAX (ours->len, ref->len), equal = 0, first = G_MAXUINT;
  for (guint i = 0; i < MIN (ours->len, ref->len); i++) {
    if (g_array_index (ours, gint32, i) == g_array_index (ref, gint32, i))
      equal++;
    else if (first == G_MAXUINT)
      first = i;
  }
  if (first == G_MAXUINT && ours->len != ref->len)
    first = MIN (ours->len, ref->len);
  g_string_append_printf (detail, "%s%s %u/%u equal", detail->len ? ", " : "", what, equal, n);
  if (first != G_MAXUINT) {
    g_string_append_printf (detail, " (first difference at %u: ours ", first);
    if (first < ours->len)
      g_string_append_printf (detail, "%d", g_array_index (ours, gint32, first));
    else
      g_string_append (detail, "end");
    g_string_append (detail, ", golden ");
    if (first < ref->len)
      g_string_append_printf (detail, "%d)", g_array_index (ref, gint32, first));
    else
      g_string_append (detail, "end)");
  }
  return first == G_MAXUINT;
}

static gboolean
compare_text (const char *ours, const char *ref, GString *detail, const char *what)
{
  gsize a = strlen (ours), b = strlen (ref), n = MAX (a, b), equal = 0, first = G_MAXSIZE;
  for (gsize i = 0; i < MIN (a, b); i++) {
    if (ours[i] == ref[i])
      equal++;
    else if (first == G_MAXSIZE)
      first = i;
  }
  if (first == G_MAXSIZE && a != b)
    first = MIN (a, b);
  g_string_append_printf (detail, "%s%s %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT " bytes equal",
                          detail->len ? ", " : "", what, equal, n);
  if (first != G_MAXSIZE)
    g_string_append_printf (detail, " (first difference at byte %" G_GSIZE_FORMAT ")", first);
  return first == G_MAXSIZE;
}

/* ---- stage "text": punc_norm and the tokenizer (tests/reference/golden/part_text.py) ---- */

/* Encodes `normalized` as generate() does (start id, tokens, stop id); `with_start_stop` FALSE
 * gives the bare tokenizer ids. */
static GArray *
our_ids (CliGolden *g, const char *normalized, gboolean with_start_stop, GError **error)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  gint32 start = g->cfg.t3.start_text_token, stop = g->cfg.t3.stop_text_token;
  if (with_start_stop)
    g_array_append_val (ids, start);
  if (!cb_tokenizer_encode (g->tok, normalized, ids, error)) {
    g_array_unref (ids);
    return NULL;
  }
  if (with_start_stop)
    g_array_append_val (ids, stop);
  return ids;
}

/* Each of our outputs is computed from the golden input of its step (punc_norm from the raw
 * input, the ids from the golden normalised text), so one stage's error does not hide another's. */
static void
check_text_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  GError *err = NULL;
  char *input = NULL, *ref_norm = NULL, *our_norm = NULL;
  GArray *ref_ids = NULL, *ref_tok_ids = NULL, *ids = NULL, *tok_ids = NULL;
  GString *detail = g_string_new (NULL);
  gboolean pass = FALSE;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  if (!st || !(input = get_utf8 (st, "input_utf8", &err))
      || !(ref_norm = get_utf8 (st, "normalized_utf8", &err))
      || !(ref_ids = get_ids (st, "ids", &err)))
    goto done;
  if (cb_safetensors_find (st, "tokenizer_ids") && !(ref_tok_ids = get_ids (st, "tokenizer_ids", &err)))
    goto done;
  if (!g->tok) {
    g_set_error (&err, CB_ERROR, CB_ERROR_NOT_FOUND, "no tokenizer: %s", g->tok_error);
    goto done;
  }
  our_norm = cb_punc_norm (input);
  if (!(ids = our_ids (g, ref_norm, TRUE, &err))
      || (ref_tok_ids && !(tok_ids = our_ids (g, ref_norm, FALSE, &err))))
    goto done;
  pass = compare_text (our_norm, ref_norm, detail, "normalized");
  pass &= compare_ids (ids, ref_ids, detail, "ids");
  if (ref_tok_ids)
    pass &= compare_ids (tok_ids, ref_tok_ids, detail, "tokenizer ids");
  g_string_append (detail, " (tolerance: exact)");
done:
  if (err)
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
  else
    cli_golden_verdict (g, stage, name, pass, "%s", detail->str);
  g_clear_error (&err);
  g_string_free (detail, TRUE);
  if (ids)
    g_array_unref (ids);
  if (tok_ids)
    g_array_unref (tok_ids);
  if (ref_ids)
    g_array_unref (ref_ids);
  if (ref_tok_ids)
    g_array_unref (ref_tok_ids);
  g_free (our_norm);
  g_free (ref_norm);
  g_free (input);
  cb_safetensors_free (st);
}

/* ---- stage "t3": the forward pass, teacher-forced with upstream's tokens ---- */

static CbT3 *
golden_t3 (CliGolden *g, GError **error)
{
  if (!g->t3 && !g->t3_error) {
    char *path = g_build_filename (g->model_dir, "t3_cfg.safetensors", NULL);
    GError *err = NULL;
    g->t3_file = cb_safetensors_open (path, &err);
    if (g->t3_file)
      g->t3 = cb_t3_new (&g->cfg, g->t3_file, NULL, &err);
    if (!g->t3)
      g->t3_error = g_strdup (err->message);
    g_clear_error (&err);
    g_free (path);
  }
  if (!g->t3)
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND, "no T3: %s", g->t3_error);
  return g->t3;
}

/* Post-processing before S3Gen: `input` (upstream's T3 output row) through cb_t3_postprocess
 * against `expected` (what generate() passed to S3Gen); appends to detail. */
static gboolean
check_postprocess (CliGolden *g, const CbSafetensors *st, const char *input, const char *expected,
                   GString *detail, GError **error)
{
  GArray *in = get_ids (st, input, error), *ref = in ? get_ids (st, expected, error) : NULL;
  if (!ref) {
    if (in)
      g_array_unref (in);
    return FALSE;
  }
  GArray *ours = g_array_sized_new (FALSE, TRUE, sizeof (gint32), MAX (in->len, 1));
  g_array_set_size (ours, in->len);
  int n = cb_t3_postprocess ((const gint32 *) in->data, (int) in->len, g->cfg.t3.start_speech_token,
                             g->cfg.t3.stop_speech_token, (gint32 *) ours->data);
  g_array_set_size (ours, n);
  gboolean same = compare_ids (ours, ref, detail, "speech tokens after post-processing");
  g_array_unref (ours);
  g_array_unref (ref);
  g_array_unref (in);
  return same;
}

static void
check_t3_postproc_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  GError *err = NULL;
  GString *detail = g_string_new (NULL);
  CbSafetensors *st = cb_safetensors_open (path, &err);
  gboolean pass = st && check_postprocess (g, st, "input.tokens", "out.speech_tokens", detail, &err);
  if (err)
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
  else
    cli_golden_verdict (g, stage, name, pass, "%s (tolerance: exact)", detail->str);
  g_clear_error (&err);
  g_string_free (detail, TRUE);
  cb_safetensors_free (st);
}

/* Model cases: conditioning, input embeddings, logits of both CFG rows at every step and the
 * guard heads' attention rows, teacher-forced (cb_t3_golden_run_case); then the whole decoding
 * loop with upstream's recorded draws, which must give upstream's tokens
 * (cb_t3_golden_sample_case); upstream's tokens post-processed as generate() does. Files named
 * postproc_* check post-processing alone. */
static void
check_t3_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  if (!cb_t3_golden_is_model_case (path)) {
    if (g_str_has_prefix (name, "postproc_"))
      check_t3_postproc_case (g, stage, name, path);
    else
      cli_golden_not_implemented (g, stage, name, "issue 4");
    return;
  }
  const double tol = 1e-5;
  GError *err = NULL;
  CbT3GoldenReport r;
  CbT3GoldenSampling smp;
  CbT3 *t3 = golden_t3 (g, &err);
  if (!t3 || !cb_t3_golden_run_case (t3, NULL, path, &r, &err)
      || !cb_t3_golden_sample_case (t3, path, &smp, &err)) {
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
    g_clear_error (&err);
    return;
  }
  GString *post = g_string_new (NULL);
  CbSafetensors *st = cb_safetensors_open (path, &err);
  gboolean post_ok = st && check_postprocess (g, st, "out.t3_tokens", "out.speech_tokens", post,
                                              &err);
  cb_safetensors_free (st);
  if (err) {
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
    g_clear_error (&err);
    g_string_free (post, TRUE);
    return;
  }
  double worst = cb_t3_golden_report_max (&r);
  gboolean tokens_ok = smp.n_equal == smp.n_comparable && smp.ended_as_upstream;
  cli_golden_verdict (g, stage, name, worst <= tol && tokens_ok && post_ok,
                      "forward (teacher-forced, %d steps) rel max err %.2e (cond %.1e, logits "
                      "%.1e/%.1e, guard attn %.1e; tolerance %.0e); sampling with upstream's "
                      "draws: %d/%d tokens equal%s%s; %s",
                      r.steps, worst, r.cond_embeds, r.prefill_logits, r.step_logits, r.attn, tol,
                      smp.n_equal, smp.n_comparable,
                      smp.n_comparable < smp.n_tokens ? " (before the first EOS-less redraw)" : "",
                      smp.ended_as_upstream ? "" : ", ended elsewhere", post->str);
  g_string_free (post, TRUE);
}

/* t3_guard/<kind>: upstream's analyzer on a synthetic sequence, step by step (golden-guard.h),
 * through the rows API and through the capture buffers the forward pass fills, each on a guard
 * with 0.1.7's thresholds and the model config's layer and head counts. */
static void
check_t3_guard_case (CliGolden *g, const char *stage, const char *name, const char *path)
{
  GError *err = NULL;
  CbGoldenGuardRun run;
  if (!cb_golden_guard_open_synthetic (&run, path, &err)) {
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
    g_clear_error (&err);
    cb_golden_guard_close (&run);
    return;
  }
  /* the golden model's config (the default one when it could not be read: a FAIL line says so),
   * and its guard heads, as the engine builds its guard */
  const CbConfig *model = &g->cfg;
  CbT3GuardConfig gc = cb_t3_guard_config_default ();
  const CbIntListList *heads = &model->t3_guard.llama_aligned_heads;
  gboolean pairs = heads->n > 0 && heads->n <= CB_T3_GUARD_MAX_HEADS;
  for (int i = 0; pairs && i < heads->n; i++)
    pairs = heads->v[i].n == 2;
  if (pairs) {
    gc.n_heads = heads->n;
    for (int i = 0; i < heads->n; i++) {
      gc.layer[i] = heads->v[i].v[0];
      gc.head[i] = heads->v[i].v[1];
    }
  }
  gc.eos_id = model->t3.stop_speech_token;
  size_t stride = run.rows[0].row_stride;
  if (run.frames > 1)
    stride = MAX (stride, run.rows[1].row_stride);
  CbGoldenGuardReport rep[2];
  gboolean ran = TRUE;
  for (int via_capture = 0; via_capture < 2 && ran; via_capture++) {
    CbT3Guard *guard = cb_t3_guard_new (&gc, model->llama.num_hidden_layers,
                                        model->llama.num_attention_heads, run.S,
                                        run.rows[0].n_rows, stride, &err);
    ran = guard && cb_golden_guard_run (guard, &run, via_capture, NULL, &rep[via_capture], &err);
    cb_t3_guard_free (guard);
  }
  if (!ran)
    cli_golden_verdict (g, stage, name, FALSE, "%s", err->message);
  else
    cli_golden_verdict (g, stage, name, cb_golden_guard_report_ok (&rep[0])
                                          && cb_golden_guard_report_ok (&rep[1]),
                        "%d frames, decisions %s (rows) / %s (capture)%s%s, alignment rel max "
                        "err %.1e (tolerance %.0e), EOS forced at frame %d (-1: never)", run.frames,
                        rep[0].first_mismatch < 0 ? "as upstream" : "differ",
                        rep[1].first_mismatch < 0 ? "as upstream" : "differ",
                        rep[0].first_mismatch < 0 ? "" : ": ", rep[0].mismatch,
                        MAX (rep[0].alignment_error, rep[1].alignment_error),
                        CB_GOLDEN_GUARD_ALIGNMENT_TOLERANCE, rep[0].forced_at);
  g_clear_error (&err);
  cb_golden_guard_close (&run);
}

/* ---- the model directory ---- */

static void
check_model (CliGolden *g)
{
  GError *err = NULL;
  if (!cli_model_config (g->model_dir, &g->cfg, &err)) {
    cli_golden_verdict (g, "model", "config", FALSE, "%s", err->message);
    g_clear_error (&err);
    cb_config_init_default (&g->cfg);
  }
  g->tok = cli_model_tokenizer (g->model_dir, &g->cfg, &err);
  if (!g->tok) {
    g->tok_error = g_strdup (err->message);
    g_clear_error (&err);
  }
  CbEngineParams p;
  cb_engine_params_init (&p);
  p.model_location = g->model_dir;
  p.threads = g->threads;
  CbEngine *e = cb_engine_new (&p, &err);
  char *counts = e ? cli_model_tensor_counts (g->model_dir, &g->cfg, &err) : NULL;
  if (counts)
    cli_golden_verdict (g, "model", "files", TRUE,
                        "%s tensors validated; tokenizer.json, conds.pt read", counts);
  else
    cli_golden_verdict (g, "model", "files", FALSE, "%s", err->message);
  g_clear_error (&err);
  g_free (counts);
  cb_engine_free (e);
}

/* ---- walking DIR ---- */

static int
stage_rank (const char *stage)
{
  for (guint i = 0; i < G_N_ELEMENTS (known_stages); i++)
    if (!strcmp (known_stages[i].stage, stage))
      return (int) i;
  return (int) G_N_ELEMENTS (known_stages);
}

static gint
compare_stages (gconstpointer a, gconstpointer b)
{
  const char *x = *(const char *const *) a, *y = *(const char *const *) b;
  int rx = stage_rank (x), ry = stage_rank (y);
  return rx != ry ? rx - ry : strcmp (x, y);
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Entries of `dir` that are directories (want_dirs) or files ending in `suffix`, sorted by `cmp`. */
static GPtrArray *
list_dir (const char *dir, gboolean want_dirs, const char *suffix, GCompareFunc cmp, GError **error)
{
  GDir *d = g_dir_open (dir, 0, error);
  if (!d)
    return NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  for (const char *name; (name = g_dir_read_name (d)) != NULL;) {
    char *path = g_build_filename (dir, name, NULL);
    gboolean is_dir = g_file_test (path, G_FILE_TEST_IS_DIR);
    g_free (path);
    if (want_dirs ? is_dir : (!is_dir && g_str_has_suffix (name, suffix)))
      g_ptr_array_add (names, g_strdup (name));
  }
  g_dir_close (d);
  g_ptr_array_sort (names, cmp);
  return names;
}

static void
check_stage (CliGolden *g, const char *stage)
{
  char *stage_dir = g_build_filename (g->dir, stage, NULL);
  GError *err = NULL;
  GPtrArray *cases = list_dir (stage_dir, FALSE, ".safetensors", compare_names, &err);
  int rank = stage_rank (stage);
  CaseCheck check = rank < (int) G_N_ELEMENTS (known_stages) ? known_stages[rank].check : NULL;
  const char *pending = rank < (int) G_N_ELEMENTS (known_stages) ? known_stages[rank].pending
                                                                 : "a stage this engine does not know";
  if (!cases)
    cli_golden_verdict (g, stage, "-", FALSE, "%s", err->message);
  else if (cases->len == 0)
    cli_golden_verdict (g, stage, "-", FALSE, "no golden files (*.safetensors) in %s", stage_dir);
  for (guint i = 0; cases && i < cases->len; i++) {
    const char *file = g_ptr_array_index (cases, i);
    char *name = g_strndup (file, strlen (file) - strlen (".safetensors"));
    char *path = g_build_filename (stage_dir, file, NULL);
    if (check)
      check (g, stage, name, path);
    else
      cli_golden_not_implemented (g, stage, name, pending);
    g_free (path);
    g_free (name);
  }
  g_clear_error (&err);
  if (cases)
    g_ptr_array_unref (cases);
  g_free (stage_dir);
}

gboolean
cli_check_golden (const char *dir, int threads, FILE *out, CliGoldenTally *tally, GError **error)
{
  memset (tally, 0, sizeof *tally);
  GPtrArray *stages = list_dir (dir, TRUE, NULL, compare_stages, error);
  if (!stages)
    return FALSE;
  CliGolden g = { .dir = dir, .threads = threads, .out = out, .tally = tally };
  g.model_dir = g_build_filename (dir, "model", NULL);
  fprintf (out, "golden directory %s\n", dir);
  check_model (&g);
  for (guint i = 0; i < stages->len; i++) {
    const char *stage = g_ptr_array_index (stages, i);
    if (strcmp (stage, "model") != 0)
      check_stage (&g, stage);
  }
  for (guint i = 0; i < G_N_ELEMENTS (known_stages); i++) {
    gboolean found = FALSE;
    for (guint j = 0; j < stages->len && !found; j++)
      found = !strcmp (known_stages[i].stage, g_ptr_array_index (stages, j));
    if (!found)
      fprintf (out, "%-8s %-24s no golden directory for this stage\n", known_stages[i].stage, "-");
  }
  fprintf (out, "summary: %u passed, %u failed, %u not implemented yet\n", tally->passed,
           tally->failed, tally->not_implemented);
  g_ptr_array_unref (stages);
  cb_tokenizer_free (g.tok);
  g_free (g.tok_error);
  cli_golden_s3gen_clear (&g);
  cb_t3_free (g.t3);
  cb_safetensors_free (g.t3_file);
  g_free (g.t3_error);
  g_free (g.model_dir);
  return TRUE;
}
