/* golden-guard.c — the guard against upstream's analyzer on recorded runs (golden-guard.h). */
#include "golden-guard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* A copy of a tensor of `dtype` (NULL with an error naming it when absent or of another type). */
static gpointer
read_copy (const CbSafetensors *st, const char *name, CbDType dtype, guint64 *n, GError **error)
{
  const CbTensorInfo *t = cb_safetensors_get (st, name, dtype, CB_NDIM_ANY, NULL, error);
  if (!t)
    return NULL;
  if (n)
    *n = t->numel;
  return g_memdup2 (t->data, t->nbytes + 1);
}

static gboolean
meta_int (const CbSafetensors *st, const char *key, int *out, GError **error)
{
  const char *v = cb_safetensors_metadata (st, key);
  if (!v) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: metadata \"%s\" missing",
                 cb_safetensors_path (st), key);
    return FALSE;
  }
  *out = atoi (v);
  return TRUE;
}

/* upstream's per-frame outputs under `prefix` ("out." or "guard.") */
static gboolean
read_expected (CbGoldenGuardRun *r, const CbSafetensors *st, const char *prefix, GError **error)
{
  static const char *const names[] = {
    "text_position", "started", "false_start", "complete", "started_at", "completed_at",
    "long_tail", "alignment_repetition", "token_repetition", "forced_eos", "eos_suppressed",
  };
  gint64 **fields[] = { &r->text_position, &r->started, &r->false_start, &r->complete,
                        &r->started_at, &r->completed_at, &r->long_tail, &r->repetition,
                        &r->token_repetition, &r->forced_eos, &r->eos_suppressed };
  G_STATIC_ASSERT (G_N_ELEMENTS (names) == G_N_ELEMENTS (fields));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    char *key = g_strconcat (prefix, names[i], NULL);
    guint64 n = 0;
    *fields[i] = read_copy (st, key, CB_DTYPE_I64, &n, error);
    g_free (key);
    if (!*fields[i])
      return FALSE;
    if ((int) n < r->frames) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: %s%s has %d frames, expected %d",
                   cb_safetensors_path (st), prefix, names[i], (int) n, r->frames);
      return FALSE;
    }
  }
  char *key = g_strconcat (prefix, "out_eos_logit", NULL);
  r->out_eos_logit = read_copy (st, key, CB_DTYPE_F32, NULL, error);
  g_free (key);
  key = g_strconcat (prefix, "alignment", NULL);
  guint64 n = 0;
  r->alignment = r->out_eos_logit ? read_copy (st, key, CB_DTYPE_F32, &n, error) : NULL;
  g_free (key);
  r->alignment_rows = r->S > 0 ? n / r->S : 0;
  return r->alignment != NULL;
}

gboolean
cb_golden_guard_open_synthetic (CbGoldenGuardRun *r, const char *path, GError **error)
{
  memset (r, 0, sizeof *r);
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return FALSE;
  int L = 0, F = 0;
  gboolean ok = FALSE;
  const char *slice = cb_safetensors_metadata (st, "text_tokens_slice");
  int i = 0, j = 0;
  if (!meta_int (st, "frames", &F, error) || !meta_int (st, "prefill_len", &L, error))
    goto out;
  if (!slice || sscanf (slice, "[%d, %d]", &i, &j) != 2 || j <= i || F < 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: bad text_tokens_slice or frames", path);
    goto out;
  }
  r->frames = F;
  r->text_begin = i;
  r->S = j - i;
  const CbTensorInfo *rest = cb_safetensors_get (st, "input.attn_rows", CB_DTYPE_F32, 3, NULL,
                                                 error);
  const CbTensorInfo *logits = rest ? cb_safetensors_get (st, "input.logits", CB_DTYPE_F32, 1,
                                                          NULL, error) : NULL;
  if (!logits)
    goto out;
  /* rows are zero-padded to the tensor's width (L + frames, or wider) */
  const int W = (int) rest->shape[2];
  if (rest->shape[0] != 3 || rest->shape[1] != F - 1 || W < L + F - 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: input.attn_rows does not fit %d frames",
                 path, F);
    goto out;
  }
  const int64_t shape0[3] = { 3, L, L };
  if (!cb_safetensors_get (st, "input.attn_step0", CB_DTYPE_F32, 3, shape0, error)
      || !(r->attn0 = read_copy (st, "input.attn_step0", CB_DTYPE_F32, NULL, error))
      || !(r->attn_rest = read_copy (st, "input.attn_rows", CB_DTYPE_F32, NULL, error)))
    goto out;
  r->vocab = (int) logits->numel;
  r->rows = g_new0 (CbT3GuardRows, F);
  r->logits = g_new (float, (gsize) F * r->vocab);
  for (int f = 0; f < F; f++) {
    CbT3GuardRows *rw = &r->rows[f];
    for (int h = 0; h < 3; h++)
      rw->head[h] = f == 0 ? r->attn0 + (gsize) h * L * L
                           : r->attn_rest + ((gsize) h * (F - 1) + (f - 1)) * W;
    rw->n_rows = f == 0 ? L : 1;
    rw->row_stride = f == 0 ? (size_t) L : (size_t) W;
    rw->first_query = f == 0 ? 0 : L + f - 1;
    rw->first_key = 0;
    memcpy (r->logits + (gsize) f * r->vocab, logits->data, r->vocab * sizeof (float));
  }
  guint64 n = 0;
  gint64 *tok = read_copy (st, "input.last_tokens", CB_DTYPE_I64, &n, error);
  if (!tok)
    goto out;
  r->last_tokens = g_new (gint32, F);
  for (int f = 0; f < F; f++)
    r->last_tokens[f] = f < (int) n ? (gint32) tok[f] : -1;
  g_free (tok);
  ok = read_expected (r, st, "out.", error);
out:
  cb_safetensors_free (st);
  return ok;
}

gboolean
cb_golden_guard_open_model (CbGoldenGuardRun *r, const char *path, gint32 bos_id, gint32 eos_id,
                            GError **error)
{
  memset (r, 0, sizeof *r);
  CbSafetensors *st = cb_safetensors_open (path, error);
  if (!st)
    return FALSE;
  gboolean ok = FALSE;
  int L = 0, F = 0;
  gint64 *tokens = NULL;
  float *cfg_at_eos = NULL;
  if (!meta_int (st, "prefill_len", &L, error) || !meta_int (st, "len_cond", &r->text_begin, error)
      || !meta_int (st, "text_len", &r->S, error) || !meta_int (st, "steps", &F, error))
    goto out;
  r->frames = F;
  const CbTensorInfo *full = cb_safetensors_get (st, "prefill.logits", CB_DTYPE_F32, 2, NULL,
                                                 error);
  if (!full || !(tokens = read_copy (st, "step.tokens", CB_DTYPE_I64, NULL, error))
      || !(cfg_at_eos = read_copy (st, "step.cfg_at_eos", CB_DTYPE_F32, NULL, error)))
    goto out;
  r->vocab = (int) full->shape[1];
  if (eos_id < 0 || eos_id >= r->vocab) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "%s: EOS id %d outside %d logits",
                 path, eos_id, r->vocab);
    goto out;
  }
  gboolean full_prefill = cb_safetensors_find (st, "attn.prefill") != NULL;
  r->attn0 = read_copy (st, full_prefill ? "attn.prefill" : "attn.prefill_rows", CB_DTYPE_F32,
                        NULL, error);
  guint64 n_dec = 0;
  if (!r->attn0 || !(r->attn_rest = read_copy (st, "attn.decode_text", CB_DTYPE_F32, &n_dec,
                                               error)))
    goto out;
  const int nd = (int) (n_dec / (3 * (guint64) r->S));
  if (nd < F - 1) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: attn.decode_text has %d rows for %d "
                 "steps", path, nd, F);
    goto out;
  }
  const int P = full_prefill ? L : 2;
  r->rows = g_new0 (CbT3GuardRows, F);
  r->logits = g_new0 (float, (gsize) F * r->vocab);
  r->last_tokens = g_new (gint32, F);
  for (int f = 0; f < F; f++) {
    CbT3GuardRows *rw = &r->rows[f];
    for (int h = 0; h < 3; h++)
      rw->head[h] = f == 0 ? r->attn0 + (gsize) h * P * L
                           : r->attn_rest + ((gsize) h * nd + (f - 1)) * r->S;
    rw->n_rows = f == 0 ? P : 1;
    rw->row_stride = f == 0 ? (size_t) L : (size_t) r->S;
    rw->first_query = f == 0 ? L - P : L + f - 1;
    rw->first_key = f == 0 ? 0 : r->text_begin;
    r->logits[(gsize) f * r->vocab + eos_id] = cfg_at_eos[f];
    r->last_tokens[f] = f == 0 ? bos_id : (gint32) tokens[f - 1];
  }
  ok = read_expected (r, st, "guard.", error);
out:
  g_free (tokens);
  g_free (cfg_at_eos);
  cb_safetensors_free (st);
  return ok;
}

void
cb_golden_guard_close (CbGoldenGuardRun *r)
{
  gint64 *fields[] = { r->text_position, r->started, r->false_start, r->complete, r->started_at,
                       r->completed_at, r->long_tail, r->repetition, r->token_repetition,
                       r->forced_eos, r->eos_suppressed };
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    g_free (fields[i]);
  g_free (r->rows);
  g_free (r->logits);
  g_free (r->last_tokens);
  g_free (r->out_eos_logit);
  g_free (r->alignment);
  g_free (r->attn0);
  g_free (r->attn_rest);
  memset (r, 0, sizeof *r);
}

/* Copies frame f's rows into the guard's capture buffers as the forward pass would, layer by
 * layer (every layer up to the deepest guard head). */
static void
fill_capture (CbT3Guard *g, const CbGoldenGuardRun *r, int f)
{
  const CbT3GuardConfig *cfg = cb_t3_guard_config (g);
  const CbT3GuardRows *rw = &r->rows[f];
  int n_layers = 0;
  for (int h = 0; h < cfg->n_heads; h++)
    n_layers = MAX (n_layers, cfg->layer[h] + 1);
  for (int layer = 0; layer < n_layers; layer++) {
    const CbAttnCapture *cap = cb_t3_guard_capture_for_layer (g, layer);
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

/* The first field of frame f that differs from upstream, described into rep; FALSE if none. */
static gboolean
step_differs (const CbGoldenGuardRun *r, int f, guint flags, const CbT3GuardState *s,
              CbGoldenGuardReport *rep)
{
  const struct { const char *name; gint64 ours, want; } cmp[] = {
    { "text_position", s->text_position, r->text_position[f] },
    { "started", s->started, r->started[f] },
    { "false_start", !!(flags & CB_T3_GUARD_FALSE_START), r->false_start[f] },
    { "complete", s->complete, r->complete[f] },
    { "started_at", s->started_at, r->started_at[f] },
    { "completed_at", s->completed_at, r->completed_at[f] },
    { "long_tail", !!(flags & CB_T3_GUARD_LONG_TAIL), r->long_tail[f] },
    { "alignment_repetition", !!(flags & CB_T3_GUARD_ALIGNMENT_REPETITION), r->repetition[f] },
    { "token_repetition", !!(flags & CB_T3_GUARD_TOKEN_REPETITION), r->token_repetition[f] },
    { "forced_eos", !!(flags & CB_T3_GUARD_FORCED_EOS), r->forced_eos[f] },
    { "eos_suppressed", !!(flags & CB_T3_GUARD_EOS_SUPPRESSED), r->eos_suppressed[f] },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cmp); i++)
    if (cmp[i].ours != cmp[i].want) {
      g_snprintf (rep->mismatch, sizeof rep->mismatch, "frame %d: %s %" G_GINT64_FORMAT
                  ", upstream %" G_GINT64_FORMAT, f, cmp[i].name, cmp[i].ours, cmp[i].want);
      return TRUE;
    }
  return FALSE;
}

gboolean
cb_golden_guard_run (CbT3Guard *g, const CbGoldenGuardRun *r, gboolean via_capture,
                     CbGoldenGuardStep *steps, CbGoldenGuardReport *rep, GError **error)
{
  memset (rep, 0, sizeof *rep);
  rep->first_mismatch = rep->forced_at = -1;
  if (!cb_t3_guard_begin (g, r->text_begin, r->S, error))
    return FALSE;
  const int V = r->vocab;
  const gint32 eos = cb_t3_guard_config (g)->eos_id;
  const float force = cb_t3_guard_config (g)->force_value;
  float *row = g_new (float, V);
  guint64 align_row = 0;
  double max_err = 0.0, max_ref = 0.0;
  for (int f = 0; f < r->frames; f++) {
    memcpy (row, r->logits + (gsize) f * V, V * sizeof (float));
    guint flags;
    if (via_capture) {
      fill_capture (g, r, f);
      flags = cb_t3_guard_step_captured (g, r->rows[f].n_rows, r->rows[f].first_query, row, V,
                                         r->last_tokens[f]);
    } else {
      flags = cb_t3_guard_step (g, &r->rows[f], row, V, r->last_tokens[f]);
    }
    const CbT3GuardState *s = cb_t3_guard_state (g);
    rep->flags_seen |= flags;
    if (rep->forced_at < 0 && (flags & CB_T3_GUARD_FORCED_EOS))
      rep->forced_at = f;
    if (steps)
      steps[f] = (CbGoldenGuardStep) { flags, *s, row[eos] };
    if (rep->first_mismatch < 0) {
      int changed = 0;
      for (int i = 0; i < V; i++)
        if (i != eos)
          changed += row[i] != ((flags & CB_T3_GUARD_FORCED_EOS) ? -force
                                                                 : r->logits[(gsize) f * V + i]);
      if (step_differs (r, f, flags, s, rep))
        rep->first_mismatch = f;
      else if (row[eos] != r->out_eos_logit[f]) {
        g_snprintf (rep->mismatch, sizeof rep->mismatch, "frame %d: EOS logit %g, upstream %g",
                    f, row[eos], r->out_eos_logit[f]);
        rep->first_mismatch = f;
      } else if (changed) {
        g_snprintf (rep->mismatch, sizeof rep->mismatch, "frame %d: %d other logits wrong", f,
                    changed);
        rep->first_mismatch = f;
      }
    }
    /* the alignment rows this step appended */
    int n_chunk;
    const float *chunk = cb_t3_guard_last_chunk (g, &n_chunk);
    for (int k = 0; k < n_chunk; k++, align_row++) {
      if (align_row >= r->alignment_rows)
        continue;
      for (int c = 0; c < r->S; c++) {
        const float want = r->alignment[align_row * r->S + c];
        max_err = MAX (max_err, fabs ((double) chunk[(gsize) k * r->S + c] - want));
        max_ref = MAX (max_ref, fabs (want));
      }
    }
  }
  rep->alignment_error = max_ref > 0 ? max_err / max_ref : max_err;
  if (align_row != r->alignment_rows) {
    rep->alignment_error = INFINITY;
    if (rep->first_mismatch < 0) {
      g_snprintf (rep->mismatch, sizeof rep->mismatch, "%" G_GUINT64_FORMAT " alignment rows, "
                  "upstream %" G_GUINT64_FORMAT, align_row, r->alignment_rows);
      rep->first_mismatch = r->frames;
    }
  }
  g_free (row);
  return TRUE;
}

gboolean
cb_golden_guard_report_ok (const CbGoldenGuardReport *rep)
{
  return rep->first_mismatch < 0
         && rep->alignment_error <= CB_GOLDEN_GUARD_ALIGNMENT_TOLERANCE;
}
