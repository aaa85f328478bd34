/* t3-decode.c — one speech token per call: forward pass + CFG + guard + sampler (t3-decode.h). */
#include "t3-decode.h"

#include <string.h>

struct CbT3Decoder {
  CbT3        *t3;
  CbT3State   *state;
  CbT3Sampler *sampler;
  CbT3Guard   *guard;
  float       *logits;       /* (V) the CFG-combined row the processors work on */
  float       *guarded;      /* (V) the same after the guard, before the processors */
  int          vocab;
  int          max_tokens;
  gint32       last_token;   /* the previously sampled id (BOS first): the guard's next_token */
  gboolean     guard_on;
  gboolean     done;
  guint        guard_flags, guard_flags_all;
};

/* The guard's configuration: thresholds from the model config's t3_guard group, heads from the
 * options the forward pass captures with (the engine fills those from the same group). */
static CbT3GuardConfig
guard_config_from (const CbConfig *cfg, const CbT3Options *o)
{
  const CbT3GuardSettings *s = &cfg->t3_guard;
  CbT3GuardConfig gc = cb_t3_guard_config_default ();
  gc.eos_id = cfg->t3.stop_speech_token;
  gc.n_heads = MIN (o->n_guard_heads, CB_T3_GUARD_MAX_HEADS);
  for (int i = 0; i < gc.n_heads; i++)
    gc.layer[i] = o->guard_layer[i], gc.head[i] = o->guard_head[i];
  gc.discontinuity_back = s->discontinuity_back;
  gc.discontinuity_forward = s->discontinuity_forward;
  gc.false_start_head_cols = s->false_start_head_cols;
  gc.false_start_head_min = (float) s->false_start_head_min;
  gc.false_start_tail_cols = s->false_start_tail_cols;
  gc.false_start_tail_max = (float) s->false_start_tail_max;
  gc.complete_margin = s->complete_margin;
  gc.long_tail_cols = s->long_tail_cols;
  gc.long_tail_frames = (float) s->long_tail_frames;
  gc.repetition_skip_cols = s->repetition_skip_cols;
  gc.repetition_frames = (float) s->repetition_frames;
  gc.suppress_min_text = s->suppress_min_text;
  gc.suppress_margin = s->suppress_margin;
  gc.force_value = (float) s->force_value;
  gc.token_repetition = s->token_repetition;
  return gc;
}

CbT3Decoder *
cb_t3_decoder_new (CbT3 *t3, int max_text_tokens, int max_tokens, GError **error)
{
  const CbConfig *cfg = NULL;
  CbT3Decoder *d = g_new0 (CbT3Decoder, 1);
  d->t3 = t3;
  d->max_tokens = max_tokens;
  /* the last token is never fed back, so max_tokens − 1 steps are enough */
  d->state = cb_t3_state_new (t3, max_text_tokens, MAX (max_tokens - 1, 0), error);
  if (!d->state)
    goto fail;
  cfg = cb_t3_state_config (d->state);
  d->vocab = cfg->t3.speech_tokens_dict_size;
  d->sampler = cb_t3_sampler_new (d->vocab, max_tokens, cfg->t3.start_speech_token,
                                  cfg->t3.stop_speech_token, error);
  if (!d->sampler)
    goto fail;
  CbT3GuardConfig gc = guard_config_from (cfg, cb_t3_options (t3));
  d->guard = cb_t3_guard_new (&gc, cfg->llama.num_hidden_layers, cfg->llama.num_attention_heads,
                              max_text_tokens, 0, 0, error);
  if (!d->guard)
    goto fail;
  d->logits = g_new (float, d->vocab);
  d->guarded = g_new (float, d->vocab);
  d->done = TRUE;
  return d;
fail:
  cb_t3_decoder_free (d);
  return NULL;
}

void
cb_t3_decoder_free (CbT3Decoder *d)
{
  if (!d)
    return;
  cb_t3_guard_free (d->guard);
  cb_t3_sampler_free (d->sampler);
  cb_t3_state_free (d->state);
  g_free (d->logits);
  g_free (d->guarded);
  g_free (d);
}

gboolean
cb_t3_decoder_begin (CbT3Decoder *d, const int32_t *text_ids, int n_text, const CbConds *voice,
                     double exaggeration, const CbT3SampleParams *params, GError **error)
{
  d->done = TRUE;
  if (!cb_t3_sampler_begin (d->sampler, params, error))
    return FALSE;
  CbT3Params p = { (float) params->cfg_weight, (float) exaggeration };
  if (!cb_t3_begin (d->state, text_ids, n_text, voice, &p, error))
    return FALSE;
  int cond_len = 0;
  cb_t3_cond_embeds (d->state, &cond_len);
  d->guard_on = params->alignment_guard;
  if (d->guard_on && !cb_t3_guard_begin (d->guard, cond_len, n_text, error))
    return FALSE;
  d->last_token = cb_t3_state_config (d->state)->t3.start_speech_token;
  d->guard_flags = d->guard_flags_all = 0;
  d->done = FALSE;
  return TRUE;
}

gboolean
cb_t3_decoder_next (CbT3Decoder *d, const double *u, gint32 *token, gboolean *done,
                    GError **error)
{
  return cb_t3_decoder_next_full (d, u, NULL, NULL, token, done, error);
}

gboolean
cb_t3_decoder_next_full (CbT3Decoder *d, const double *u, const gint32 *forced,
                         const CbT3StageDump *dump, gint32 *token, gboolean *done,
                         GError **error)
{
  if (d->done) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 decoder: no utterance in progress (not begun, or already ended)");
    return FALSE;
  }
  CbT3State *s = d->state;
  cb_t3_cfg_combine (d->logits, cb_t3_logits (s, 0), cb_t3_logits (s, 1), d->vocab,
                     d->sampler->params.cfg_weight);
  d->guard_flags = 0;
  if (d->guard_on) {
    CbT3GuardRows rows = { { NULL }, cb_t3_guard_attn_rows (s), cb_t3_guard_attn_stride (s),
                           cb_t3_n_positions (s) - cb_t3_guard_attn_rows (s), 0 };
    for (int g = 0; g < cb_t3_guard_config (d->guard)->n_heads; g++)
      rows.head[g] = cb_t3_guard_attn (s, g, 0);
    d->guard_flags = cb_t3_guard_step (d->guard, &rows, d->logits, d->vocab, d->last_token);
    d->guard_flags_all |= d->guard_flags;
  }
  memcpy (d->guarded, d->logits, d->vocab * sizeof (float));
  if (forced) {
    if (*forced < 0 || *forced >= d->vocab) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "T3 decoder: forced token %d "
                   "out of range", *forced);
      return FALSE;
    }
    cb_t3_sampler_process (d->sampler, d->logits, dump);
    cb_t3_sampler_accept (d->sampler, *forced);
    *token = *forced;
  } else {
    *token = u ? cb_t3_sampler_step_u (d->sampler, d->logits, *u, dump)
               : cb_t3_sampler_step (d->sampler, d->logits, dump);
  }
  d->last_token = *token;
  d->done = cb_t3_sampler_finished (d->sampler);
  *done = d->done;
  if (!d->done && !cb_t3_forward_step (s, *token, error)) {
    d->done = TRUE;
    return FALSE;
  }
  return TRUE;
}

guint
cb_t3_decoder_guard_flags (const CbT3Decoder *d, gboolean since_begin)
{
  return since_begin ? d->guard_flags_all : d->guard_flags;
}

CbT3State *
cb_t3_decoder_state (CbT3Decoder *d)
{
  return d->state;
}

CbT3Sampler *
cb_t3_decoder_sampler (CbT3Decoder *d)
{
  return d->sampler;
}

CbT3Guard *
cb_t3_decoder_guard (CbT3Decoder *d)
{
  return d->guard;
}

const float *
cb_t3_decoder_guarded_logits (const CbT3Decoder *d)
{
  return d->guarded;
}
