/* t3-golden.c — teacher-forced comparison of our T3 forward pass with an upstream golden case.
 * The golden file is untrusted input: every tensor is looked up with its expected dtype and shape,
 * and a problem is a GError naming it. */
#include "t3-golden.h"

#include <math.h>
#include <string.h>

#include "safetensors.h"
#include "t3-decode.h"

/* A golden case being read. */
typedef struct {
  const CbSafetensors *st;
  GPtrArray           *owned;  /* widened / realigned float copies */
  GError             **error;
  gboolean             ok;
} Case;

static const float *
f32 (Case *c, const char *name, int ndim, const int64_t *shape)
{
  if (!c->ok)
    return NULL;
  float *owned = NULL;
  const float *p = cb_safetensors_get_f32 (c->st, name, ndim, shape, &owned, c->error);
  if (owned)
    g_ptr_array_add (c->owned, owned);
  c->ok = p != NULL;
  return p;
}

/* An I64 tensor as int64 values (copied: the mapping need not be 8-byte aligned). */
static int64_t *
i64 (Case *c, const char *name, int ndim, const int64_t *shape, guint64 *numel)
{
  if (!c->ok)
    return NULL;
  const CbTensorInfo *t = cb_safetensors_get (c->st, name, CB_DTYPE_I64, ndim, shape, c->error);
  if (!t) {
    c->ok = FALSE;
    return NULL;
  }
  int64_t *v = g_new (int64_t, MAX (t->numel, 1));
  memcpy (v, t->data, t->numel * sizeof (int64_t));
  g_ptr_array_add (c->owned, v);
  if (numel)
    *numel = t->numel;
  return v;
}

static int64_t
dim (Case *c, const char *name, int axis)
{
  const CbTensorInfo *t = c->ok ? cb_safetensors_find (c->st, name) : NULL;
  if (c->ok && (!t || axis >= t->ndim)) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_MISMATCH, "%s: tensor %s missing or of rank < %d",
                 cb_safetensors_path (c->st), name, axis + 1);
    c->ok = FALSE;
  }
  return c->ok ? t->shape[axis] : 0;
}

/* max|a − b| / max|b| over n values (a strided by sa, b by sb); 0 when b is all zero and a = b. */
static double
rel_err (const float *a, gsize sa, const float *b, gsize sb, gsize n)
{
  double diff = 0, ref = 0;
  for (gsize i = 0; i < n; i++) {
    diff = fmax (diff, fabs ((double) a[i * sa] - b[i * sb]));
    ref = fmax (ref, fabs ((double) b[i * sb]));
  }
  return ref > 0 ? diff / ref : (diff > 0 ? INFINITY : 0);
}

double
cb_t3_golden_report_max (const CbT3GoldenReport *r)
{
  const double v[] = { r->cond_embeds, r->prefill_embeds, r->prefill_logits, r->step_logits,
                       r->decode_embeds, r->attn };
  double m = 0;
  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    m = fmax (m, isnan (v[i]) ? INFINITY : v[i]);
  return m;
}

/* Our logits of the current step at the golden ids vs the golden values of step s: top-K ids,
 * the sampled token and EOS, for the conditional row and the unconditional one (at cfg_weight 0
 * upstream's second row is conditional too, so ours is row 0). */
static double
step_error (const CbT3State *s, const int64_t *topk_ids, int K, const float *const golden[2][3],
            int step, int token, int eos)
{
  double worst = 0;
  for (int r = 0; r < 2; r++) {
    const float *ours = cb_t3_logits (s, MIN (r, cb_t3_n_rows (s) - 1));
    float mine[66], ref[66];
    int n = 0;
    for (int k = 0; k < K && k < 64; k++, n++) {
      mine[n] = ours[topk_ids[(gsize) step * K + k]];
      ref[n] = golden[r][0][(gsize) step * K + k];
    }
    mine[n] = ours[token], ref[n++] = golden[r][1][step];
    mine[n] = ours[eos], ref[n++] = golden[r][2][step];
    worst = fmax (worst, rel_err (mine, 1, ref, 1, n));
  }
  return worst;
}

/* What T3.inference was given: text ids, the voice, the settings in the metadata. */
typedef struct {
  int64_t  Lt, P, S;
  int32_t *ids, *prompt;   /* (Lt), (P): in c->owned */
  CbConds  voice;          /* T3 part only, pointing into the case */
  double   exaggeration;
} Inputs;

/* A numeric metadata value; FALSE (error set) when absent or not a number. */
static double
meta (Case *c, const char *key)
{
  const char *v = c->ok ? cb_safetensors_metadata (c->st, key) : NULL;
  char *end = NULL;
  double x = v ? g_ascii_strtod (v, &end) : NAN;
  if (c->ok && (!v || end == v || !isfinite (x))) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_FORMAT, "%s: metadata '%s' missing or not a number",
                 cb_safetensors_path (c->st), key);
    c->ok = FALSE;
  }
  return x;
}

static int32_t *
ids32 (Case *c, const int64_t *v, int64_t n)
{
  int32_t *out = g_new (int32_t, MAX (n, 1));
  g_ptr_array_add (c->owned, out);
  for (int64_t i = 0; i < n; i++)
    out[i] = (int32_t) CLAMP (v[i], -1, G_MAXINT32);
  return out;
}

static gboolean
read_inputs (Case *c, Inputs *in)
{
  in->Lt = dim (c, "input.text_ids", 1);
  in->P = dim (c, "input.cond_prompt_speech_tokens", 1);
  in->S = dim (c, "input.speaker_emb", 1);
  int64_t sh[3] = { 2, in->Lt };
  const int64_t *text = i64 (c, "input.text_ids", 2, sh, NULL);
  sh[0] = 1, sh[1] = in->P;
  const int64_t *prompt = i64 (c, "input.cond_prompt_speech_tokens", 2, sh, NULL);
  sh[1] = in->S;
  const float *speaker = f32 (c, "input.speaker_emb", 2, sh);
  sh[1] = 1, sh[2] = 1;
  const float *emotion = f32 (c, "input.emotion_adv", 3, sh);
  if (!c->ok)
    return FALSE;
  in->ids = ids32 (c, text, in->Lt);
  in->prompt = ids32 (c, prompt, in->P);
  memset (&in->voice, 0, sizeof in->voice);
  in->voice.speaker_emb = (float *) speaker;
  in->voice.speaker_embed_size = (int) in->S;
  in->voice.cond_prompt_tokens = in->prompt;
  in->voice.n_cond_prompt_tokens = (int) in->P;
  in->exaggeration = emotion[0];
  return TRUE;
}

static gboolean
run_case (CbT3State *s, Case *c, CbT3GoldenReport *rep)
{
  Inputs in;
  const double cfg_weight = meta (c, "cfg_weight");
  if (!read_inputs (c, &in))
    return FALSE;
  const int64_t Lt = in.Lt;
  const int64_t n = dim (c, "step.tokens", 0), nd = dim (c, "decode.input_embeds", 0);
  const int64_t K = dim (c, "step.topk_ids", 1);
  const int64_t V = dim (c, "prefill.logits", 1), H = dim (c, "cond.embeds", 1);
  const int64_t C = dim (c, "cond.embeds", 0);
  int64_t sh[3];
  if (c->ok && (Lt < 2 || n < 1 || nd > n || K > 64 || nd < n - 1)) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_FORMAT, "%s: not a T3 golden case (text length %"
                 G_GINT64_FORMAT ", %" G_GINT64_FORMAT " steps, %" G_GINT64_FORMAT
                 " decode forwards, top-%" G_GINT64_FORMAT ")",
                 cb_safetensors_path (c->st), Lt, n, nd, K);
    c->ok = FALSE;
  }
  if (!c->ok)
    return FALSE;
  CbT3Params params = { (float) cfg_weight, (float) in.exaggeration };
  if (!cb_t3_begin (s, in.ids, (int) Lt, &in.voice, &params, c->error))
    return FALSE;

  /* golden tensors */
  const int rows = cb_t3_n_rows (s);
  int cond_len = 0;
  const float *cond = cb_t3_cond_embeds (s, &cond_len);
  const int64_t L = C + Lt + 2;
  rep->text_len = (int) Lt, rep->cond_len = cond_len, rep->steps = (int) n;
  rep->decode_forwards = (int) nd, rep->n_rows = rows;
  sh[0] = C, sh[1] = H;
  const float *g_cond = f32 (c, "cond.embeds", 2, sh);
  sh[0] = 2, sh[1] = L, sh[2] = H;
  const float *g_embeds = f32 (c, "prefill.input_embeds", 3, sh);
  sh[0] = 2, sh[1] = V;
  const float *g_logits = f32 (c, "prefill.logits", 2, sh);
  sh[0] = nd, sh[1] = H;
  const float *g_dec = f32 (c, "decode.input_embeds", 2, sh);
  const int64_t *tokens = i64 (c, "step.tokens", 1, &n, NULL);
  sh[0] = n, sh[1] = K;
  const int64_t *topk = i64 (c, "step.topk_ids", 2, sh, NULL);
  const float *g_step[2][3] = {
    { f32 (c, "step.cond_topk", 2, sh), f32 (c, "step.cond_at_token", 1, &n),
      f32 (c, "step.cond_at_eos", 1, &n) },
    { f32 (c, "step.uncond_topk", 2, sh), f32 (c, "step.uncond_at_token", 1, &n),
      f32 (c, "step.uncond_at_eos", 1, &n) },
  };
  /* full rows (not in every case) */
  guint64 F = 0, Fa = 0;
  const gboolean have_full = c->ok && cb_safetensors_find (c->st, "full.steps") != NULL;
  const int64_t *full_steps = have_full ? i64 (c, "full.steps", 1, NULL, &F) : NULL;
  sh[0] = F, sh[1] = 2, sh[2] = V;
  const float *g_full = have_full ? f32 (c, "full.logits", 3, sh) : NULL;
  sh[0] = 3, sh[1] = nd, sh[2] = Lt;
  const float *g_attn_text = f32 (c, "attn.decode_text", 3, sh);
  const int64_t *full_index = i64 (c, "attn.decode_full_index", 1, NULL, &Fa);
  sh[0] = 3, sh[1] = Fa, sh[2] = L + nd;
  const float *g_attn_full = f32 (c, "attn.decode_full", 3, sh);
  const gboolean whole = c->ok && cb_safetensors_find (c->st, "attn.prefill") != NULL;
  sh[0] = 3, sh[1] = whole ? L : 2, sh[2] = L;
  const float *g_attn_prefill = f32 (c, whole ? "attn.prefill" : "attn.prefill_rows", 3, sh);
  const CbConfig *cfg = cb_t3_state_config (s);
  if (c->ok && (cond_len != C || V != cfg->t3.speech_tokens_dict_size
                || H != cfg->llama.hidden_size)) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: case made for another model (cond %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                 ", vocab %" G_GINT64_FORMAT "; ours cond %d × %d, vocab %d)",
                 cb_safetensors_path (c->st), C, H, V, cond_len, cfg->llama.hidden_size,
                 cfg->t3.speech_tokens_dict_size);
    c->ok = FALSE;
  }
  if (!c->ok)
    return FALSE;

  /* prefill: cond embeddings, backbone input of every row, logits, the guard's two BOS rows */
  int T = 0;
  rep->cond_embeds = rel_err (cond, 1, g_cond, 1, (gsize) C * H);
  rep->prefill_embeds = rep->prefill_logits = 0;
  for (int r = 0; r < rows; r++) {
    const float *ours = cb_t3_input_embeds (s, r, &T);
    const float *ref = g_embeds + (gsize) r * L * H;
    rep->prefill_embeds = fmax (rep->prefill_embeds, rel_err (cond, 1, ref, 1, (gsize) C * H));
    rep->prefill_embeds = fmax (rep->prefill_embeds,
                                rel_err (ours, 1, ref + (gsize) C * H, 1, (gsize) T * H));
    rep->prefill_logits = fmax (rep->prefill_logits,
                                rel_err (cb_t3_logits (s, r), 1, g_logits + (gsize) r * V, 1, V));
  }
  rep->attn = 0;
  for (int g = 0; g < 3; g++)
    for (int j = 0; j < 2; j++) {
      const float *ours = cb_t3_guard_attn (s, g, j);
      const float *ref = g_attn_prefill + ((gsize) g * (whole ? L : 2) + (whole ? L - 2 : 0) + j) * L;
      rep->attn = fmax (rep->attn, ours ? rel_err (ours, 1, ref, 1, L) : INFINITY);
    }

  /* steps: logits of step i come from the prefill (i = 0) or from decode forward i − 1, which
   * fed token i − 1; a run that did not end by EOS made one more decode forward (nd = n) whose
   * logits are not recorded */
  const int eos = cfg->t3.stop_speech_token;
  rep->step_logits = 0;
  rep->decode_embeds = 0;
  guint next_full = 0, next_attn_full = 0;
  for (int64_t i = 0; i <= n && c->ok; i++) {
    if (i > 0 && i - 1 < nd) {
      const int64_t j = i - 1;
      if (!cb_t3_forward_step (s, (int32_t) CLAMP (tokens[j], -1, G_MAXINT32), c->error)) {
        c->ok = FALSE;
        break;
      }
      rep->decode_embeds = fmax (rep->decode_embeds,
                                 rel_err (cb_t3_input_embeds (s, 0, NULL), 1,
                                          g_dec + (gsize) j * H, 1, H));
      const gboolean full_row = next_attn_full < Fa && full_index[next_attn_full] == j;
      for (int g = 0; g < 3; g++) {
        const float *ours = cb_t3_guard_attn (s, g, 0);
        rep->attn = fmax (rep->attn, rel_err (ours + C, 1,
                                              g_attn_text + ((gsize) g * nd + j) * Lt, 1, Lt));
        if (full_row)
          rep->attn = fmax (rep->attn,
                            rel_err (ours, 1, g_attn_full + ((gsize) g * Fa + next_attn_full)
                                     * (L + nd), 1, L + j + 1));
      }
      next_attn_full += full_row;
    }
    if (i == n)
      break;
    rep->step_logits = fmax (rep->step_logits,
                             step_error (s, topk, (int) K, g_step, (int) i,
                                         (int) CLAMP (tokens[i], 0, V - 1), eos));
    if (next_full < F && full_steps[next_full] == i) {
      for (int r = 0; r < 2; r++)
        rep->step_logits = fmax (rep->step_logits,
                                 rel_err (cb_t3_logits (s, MIN (r, rows - 1)), 1,
                                          g_full + ((gsize) next_full * 2 + r) * V, 1, V));
      next_full++;
    }
  }
  if (c->ok && (next_full != F || next_attn_full != Fa)) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: full.steps or attn.decode_full_index not increasing within the run",
                 cb_safetensors_path (c->st));
    c->ok = FALSE;
  }
  return c->ok;
}

gboolean
cb_t3_golden_is_model_case (const char *path)
{
  CbSafetensors *st = cb_safetensors_open (path, NULL);
  gboolean yes = st && cb_safetensors_find (st, "prefill.logits") != NULL;
  cb_safetensors_free (st);
  return yes;
}

/* A state for the case's text length and steps. */
static CbT3State *
state_for_case (CbT3 *t3, const CbSafetensors *st, GError **error)
{
  const CbTensorInfo *text = cb_safetensors_get (st, "input.text_ids", CB_DTYPE_I64, 2, NULL, error);
  const CbTensorInfo *tokens = text ? cb_safetensors_get (st, "step.tokens", CB_DTYPE_I64, 1, NULL,
                                                          error) : NULL;
  if (!tokens)
    return NULL;
  return cb_t3_state_new (t3, (int) MIN (text->shape[1], G_MAXINT / 2),
                          (int) MIN (tokens->shape[0], G_MAXINT / 2), error);
}

gboolean
cb_t3_golden_run_case (CbT3 *t3, CbT3State *s, const char *path, CbT3GoldenReport *report,
                       GError **error)
{
  memset (report, 0, sizeof *report);
  report->cond_embeds = report->prefill_embeds = report->prefill_logits = INFINITY;
  report->step_logits = report->decode_embeds = report->attn = INFINITY;
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return FALSE;
  CbT3State *own = s ? NULL : state_for_case (t3, st, error);
  gboolean ok = FALSE;
  if (s || own) {
    Case c = { st, g_ptr_array_new_with_free_func (g_free), error, TRUE };
    ok = run_case (s ? s : own, &c, report);
    g_ptr_array_unref (c.owned);
  }
  cb_t3_state_free (own);
  cb_safetensors_free (st);
  return ok;
}

/* ---- sampling: the whole decoding loop with upstream's recorded draws ---- */

/* The sampling settings a case was recorded with (its metadata). */
static CbT3SampleParams
case_sample_params (Case *c)
{
  CbT3SampleParams p = cb_t3_sample_params_default ();
  p.cfg_weight = meta (c, "cfg_weight");
  p.temperature = meta (c, "temperature");
  p.repetition_penalty = meta (c, "repetition_penalty");
  p.min_p = meta (c, "min_p");
  p.top_p = meta (c, "top_p");
  return p;
}

static gboolean
sample_case (CbT3 *t3, Case *c, CbT3GoldenSampling *out)
{
  Inputs in;
  CbT3SampleParams p = case_sample_params (c);
  const double max_new = meta (c, "max_new_tokens");
  if (!read_inputs (c, &in))
    return FALSE;
  guint64 n = 0;
  const int64_t *tokens = i64 (c, "out.t3_tokens", 1, NULL, &n);
  const int64_t nn = (int64_t) n;
  const int64_t *redrawn = i64 (c, "step.redrawn_without_eos", 1, &nn, NULL);
  const float *u = f32 (c, "step.u", 1, &nn);
  if (c->ok && (n < 1 || !(max_new >= n && max_new <= 100000))) {
    g_set_error (c->error, CB_ERROR, CB_ERROR_FORMAT, "%s: %" G_GUINT64_FORMAT " tokens, "
                 "max_new_tokens %g", cb_safetensors_path (c->st), n, max_new);
    c->ok = FALSE;
  }
  if (!c->ok)
    return FALSE;
  p.max_tokens = (int) max_new;
  CbT3Decoder *d = cb_t3_decoder_new (t3, (int) in.Lt, p.max_tokens, c->error);
  if (!d || !cb_t3_decoder_begin (d, in.ids, (int) in.Lt, &in.voice, in.exaggeration, &p,
                                  c->error)) {
    cb_t3_decoder_free (d);
    return FALSE;
  }
  /* upstream's draws are reproducible up to the first one long300 redrew without EOS */
  out->n_tokens = (int) n;
  out->n_comparable = 0;
  while (out->n_comparable < (int) n && !redrawn[out->n_comparable])
    out->n_comparable++;
  out->n_equal = 0;
  out->ended_as_upstream = FALSE;
  gboolean done = FALSE;
  for (int i = 0; i < out->n_comparable && !done && c->ok; i++) {
    gint32 token;
    double ui = u[i];
    if (!cb_t3_decoder_next (d, &ui, &token, &done, c->error))
      c->ok = FALSE;
    else if (token != tokens[i])
      break;
    else
      out->n_equal++;
  }
  /* the run ends where upstream's did (EOS or max_new_tokens), not earlier, not later */
  out->ended_as_upstream = out->n_comparable < (int) n || (done && out->n_equal == (int) n);
  cb_t3_decoder_free (d);
  return c->ok;
}

gboolean
cb_t3_golden_sample_case (CbT3 *t3, const char *path, CbT3GoldenSampling *out, GError **error)
{
  memset (out, 0, sizeof *out);
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return FALSE;
  Case c = { st, g_ptr_array_new_with_free_func (g_free), error, TRUE };
  gboolean ok = sample_case (t3, &c, out);
  g_ptr_array_unref (c.owned);
  cb_safetensors_free (st);
  return ok;
}

/* ---- the alignment guard on our captured rows, teacher-forced ---- */

static gboolean
guard_case (CbT3 *t3, Case *c, CbT3GoldenGuard *out)
{
  Inputs in;
  CbT3SampleParams p = case_sample_params (c);
  p.alignment_guard = TRUE;
  if (!read_inputs (c, &in))
    return FALSE;
  guint64 n = 0;
  const int64_t *tokens = i64 (c, "step.tokens", 1, NULL, &n);
  const int64_t nn = (int64_t) n;
  const int64_t *position = i64 (c, "guard.text_position", 1, &nn, NULL);
  const int64_t *started = i64 (c, "guard.started", 1, &nn, NULL);
  const int64_t *complete = i64 (c, "guard.complete", 1, &nn, NULL);
  const int64_t *suppressed = i64 (c, "guard.eos_suppressed", 1, &nn, NULL);
  const int64_t *forced = i64 (c, "guard.forced_eos", 1, &nn, NULL);
  const float *eos_logit = f32 (c, "guard.out_eos_logit", 1, &nn);
  if (!c->ok)
    return FALSE;
  p.max_tokens = (int) MAX (n, 1);
  CbT3Decoder *d = cb_t3_decoder_new (t3, (int) in.Lt, p.max_tokens, c->error);
  if (!d || !cb_t3_decoder_begin (d, in.ids, (int) in.Lt, &in.voice, in.exaggeration, &p,
                                  c->error)) {
    cb_t3_decoder_free (d);
    return FALSE;
  }
  const int eos = cb_t3_state_config (cb_t3_decoder_state (d))->t3.stop_speech_token;
  out->steps = (int) n;
  out->first_mismatch = -1;
  gboolean done = FALSE;
  for (guint64 i = 0; i < n && !done && c->ok; i++) {
    gint32 token, want = (gint32) CLAMP (tokens[i], -1, G_MAXINT32);
    if (!cb_t3_decoder_next_full (d, NULL, &want, NULL, &token, &done, c->error)) {
      c->ok = FALSE;
      break;
    }
    const CbT3GuardState *gs = cb_t3_guard_state (cb_t3_decoder_guard (d));
    const guint flags = cb_t3_decoder_guard_flags (d, FALSE);
    const float ours = cb_t3_decoder_guarded_logits (d)[eos];
    const gboolean same =
        gs->text_position == position[i] && !!gs->started == !!started[i]
        && !!gs->complete == !!complete[i]
        && !!(flags & CB_T3_GUARD_EOS_SUPPRESSED) == !!suppressed[i]
        && !!(flags & CB_T3_GUARD_FORCED_EOS) == !!forced[i]
        && fabs ((double) ours - eos_logit[i]) <= 1e-4 * fmax (1.0, fabs (eos_logit[i]));
    out->n_suppressed += !!(flags & CB_T3_GUARD_EOS_SUPPRESSED);
    out->n_forced += !!(flags & CB_T3_GUARD_FORCED_EOS);
    if (same)
      out->steps_equal++;
    else if (out->first_mismatch < 0)
      out->first_mismatch = (int) i;
  }
  cb_t3_decoder_free (d);
  return c->ok;
}

gboolean
cb_t3_golden_guard_case (CbT3 *t3, const char *path, CbT3GoldenGuard *out, GError **error)
{
  memset (out, 0, sizeof *out);
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return FALSE;
  Case c = { st, g_ptr_array_new_with_free_func (g_free), error, TRUE };
  gboolean ok = guard_case (t3, &c, out);
  g_ptr_array_unref (c.owned);
  cb_safetensors_free (st);
  return ok;
}
