/* cli-t3.c — text to speech tokens for chatterbox-cli (cli-t3.h).
 *
 * The dump (DIR/t3.safetensors) holds what the golden files record, in full rows:
 *   cond.embeds  F32 (C, H)     the voice's conditioning
 *   text_ids     I32 (Lt)       start and stop included
 *   step.logits  F32 (n, 2, V)  backbone logits of both CFG rows (row 1 zero at cfg_weight 0)
 *   step.cfg     F32 (n, V)     CFG-combined, after the guard
 *   step.rep, step.temp, step.minp, step.topp, step.probs  F32 (n, V)  after each processor
 *   tokens       I32 (n)        the tokens taken (forced or drawn) */
#include "cli-t3.h"

#include <string.h>

#include "cli-model.h"
#include "engine-internal.h"
#include "safetensors.h"

/* The stages dumped per step, in the order above (step.logits has two rows). */
enum { D_LOGITS, D_CFG, D_REP, D_TEMP, D_MINP, D_TOPP, D_PROBS, D_N };
static const char *const dump_names[D_N] = {
  "step.logits", "step.cfg", "step.rep", "step.temp", "step.minp", "step.topp", "step.probs",
};

static void
print_ints (FILE *out, const char *what, const gint32 *v, int n)
{
  fprintf (out, "%s (%d):", what, n);
  for (int i = 0; i < n; i++)
    fprintf (out, " %d", v[i]);
  fprintf (out, "\n");
}

static CbTensorInfo
tensor (const char *name, CbDType dtype, const void *data, gsize nbytes, int ndim,
        const int64_t *shape)
{
  CbTensorInfo t = { .name = name, .dtype = dtype, .ndim = ndim, .data = data, .nbytes = nbytes,
                     .numel = 1 };
  for (int i = 0; i < ndim; i++) {
    t.shape[i] = shape[i];
    t.numel *= (guint64) shape[i];
  }
  return t;
}

static gboolean
write_dump (const char *dir, CbUtterance *u, float *const stage[D_N], int steps, int V,
            GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "--dump: cannot create %s", dir);
    return FALSE;
  }
  CbT3State *s = cb_t3_decoder_state (cb_utterance_decoder (u));
  const CbConfig *cfg = cb_t3_state_config (s);
  int C = 0, n_ids = 0, n_tok = 0;
  const float *cond = cb_t3_cond_embeds (s, &C);
  const gint32 *ids = cb_utterance_text_ids (u, &n_ids);
  const gint32 *tokens = cb_utterance_tokens (u, &n_tok);
  const int64_t H = cfg->llama.hidden_size;
  CbTensorInfo t[D_N + 3];
  guint n = 0;
  t[n++] = tensor ("cond.embeds", CB_DTYPE_F32, cond, (gsize) C * H * 4, 2, (int64_t[]) { C, H });
  t[n++] = tensor ("text_ids", CB_DTYPE_I32, ids, (gsize) n_ids * 4, 1, (int64_t[]) { n_ids });
  t[n++] = tensor ("tokens", CB_DTYPE_I32, tokens, (gsize) n_tok * 4, 1, (int64_t[]) { n_tok });
  t[n++] = tensor (dump_names[D_LOGITS], CB_DTYPE_F32, stage[D_LOGITS], (gsize) steps * 2 * V * 4,
                   3, (int64_t[]) { steps, 2, V });
  for (int d = D_CFG; d < D_N; d++)
    t[n++] = tensor (dump_names[d], CB_DTYPE_F32, stage[d], (gsize) steps * V * 4, 2,
                     (int64_t[]) { steps, V });
  char *path = g_build_filename (dir, "t3.safetensors", NULL);
  gboolean ok = cb_safetensors_write (path, n, t, NULL, error);
  g_free (path);
  return ok;
}

/* The loop: one cb_t3_decoder_next_full per token, forced or drawn, each step's stages copied
 * into the dump rows when asked. */
static gboolean
decode (CbUtterance *u, const gint32 *forced, int n_forced, float *const stage[D_N], int *steps,
        GError **error)
{
  CbT3Decoder *d = cb_utterance_decoder (u);
  CbT3State *s = cb_t3_decoder_state (d);
  const int V = cb_t3_state_config (s)->t3.speech_tokens_dict_size;
  gboolean done = FALSE;
  int k = 0;
  for (; !done && (!forced || k < n_forced); k++) {
    CbT3StageDump dump = { 0 };
    if (stage[0]) {
      float *row = stage[D_LOGITS] + (gsize) k * 2 * V;
      memcpy (row, cb_t3_logits (s, 0), V * sizeof (float));
      if (cb_t3_n_rows (s) > 1)
        memcpy (row + V, cb_t3_logits (s, 1), V * sizeof (float));
      dump = (CbT3StageDump) { stage[D_REP] + (gsize) k * V, stage[D_TEMP] + (gsize) k * V,
                               stage[D_MINP] + (gsize) k * V, stage[D_TOPP] + (gsize) k * V,
                               stage[D_PROBS] + (gsize) k * V };
    }
    gint32 token;
    if (!cb_t3_decoder_next_full (d, NULL, forced ? &forced[k] : NULL, stage[0] ? &dump : NULL,
                                  &token, &done, error))
      return FALSE;
    if (stage[0])
      memcpy (stage[D_CFG] + (gsize) k * V, cb_t3_decoder_guarded_logits (d), V * sizeof (float));
  }
  *steps = k;
  return TRUE;
}

gboolean
cli_t3_run (CbEngine *e, const CliT3Request *r, FILE *out, GError **error)
{
  CbUtteranceParams p = r->params;
  gint32 *forced = NULL;
  int n_forced = 0;
  if (r->force_tokens && !(forced = cli_read_tokens (r->force_tokens, "tokens", &n_forced, error)))
    return FALSE;
  /* teacher forcing runs as many steps as there are forced tokens (unless --max-tokens says) */
  if (forced && !r->max_tokens_set)
    p.max_tokens = n_forced;
  else if (!r->max_tokens_set)
    p.max_tokens = cb_utterance_default_max_tokens (e);
  const int V = cb_engine_config (e)->t3.speech_tokens_dict_size;
  CbVoice *voice = NULL;
  CbUtterance *u = NULL;
  float *stage[D_N] = { NULL };
  int steps = 0;
  gboolean ok = FALSE;
  if (r->voice && !(voice = cb_voice_load (e, r->voice, error)))
    goto out;
  if (!(u = cb_utterance_new (e, 0, MAX (p.max_tokens, 1), error)))
    goto out;
  if (!cb_utterance_begin (u, r->text, voice, &p, error))
    goto out;
  int n = 0;
  const gint32 *ids = cb_utterance_text_ids (u, &n);
  fprintf (out, "normalized text: %s\n", cb_utterance_text (u));
  print_ints (out, "text token ids", ids, n);
  if (r->dump)
    for (int d = 0; d < D_N; d++)
      stage[d] = g_new0 (float, (gsize) p.max_tokens * V * (d == D_LOGITS ? 2 : 1));
  if (!decode (u, forced, n_forced, stage, &steps, error))
    goto out;
  const gint32 *tokens = cb_utterance_tokens (u, &n);
  print_ints (out, forced ? "speech tokens (teacher-forced)" : "speech tokens", tokens, n);
  tokens = cb_utterance_speech_tokens (u, &n);
  print_ints (out, "speech tokens for S3Gen", tokens, n);
  if (p.alignment_guard)
    fprintf (out, "alignment guard events: 0x%02x\n", cb_utterance_guard_events (u));
  ok = !r->dump || write_dump (r->dump, u, stage, steps, V, error);
  if (ok && r->dump)
    fprintf (out, "dump: %s/t3.safetensors (%d steps)\n", r->dump, steps);
out:
  for (int d = 0; d < D_N; d++)
    g_free (stage[d]);
  cb_utterance_free (u);
  cb_voice_free (voice);
  g_free (forced);
  return ok;
}
