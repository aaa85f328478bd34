/* t3-sample.c — T3's logits processors, sampler and post-processing (see t3-sample.h).
 *
 * Rounding follows torch on the CPU where it decides discrete outcomes: scalars meet float tensors
 * as floats (cfg, penalty, temperature, min_p), softmax is exp(x − max) · (1/Σ), cumsum accumulates
 * in double and stores floats, and top-p compares against (float)(1 − top_p) formed in double. */
#include "t3-sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

CbT3SampleParams
cb_t3_sample_params_default (void)
{
  CbT3SampleParams p = {
    .cfg_weight = CB_T3_DEFAULT_CFG_WEIGHT,
    .temperature = CB_T3_DEFAULT_TEMPERATURE,
    .repetition_penalty = CB_T3_DEFAULT_REPETITION_PENALTY,
    .min_p = CB_T3_DEFAULT_MIN_P,
    .top_p = CB_T3_DEFAULT_TOP_P,
    .seed = CB_T3_DEFAULT_SEED,
    .max_tokens = CB_T3_DEFAULT_MAX_TOKENS,
    .alignment_guard = FALSE,
  };
  return p;
}

gboolean
cb_t3_sample_params_validate (const CbT3SampleParams *p, GError **error)
{
  const char *bad = NULL;
  /* Written so that NaN fails every test. */
  if (!(p->cfg_weight >= 0.0 && isfinite (p->cfg_weight)))
    bad = "cfg-weight must be finite and >= 0";
  else if (!(p->temperature > 0.0 && isfinite (p->temperature)))
    bad = "temperature must be finite and > 0";
  else if (!(p->repetition_penalty > 0.0 && isfinite (p->repetition_penalty)))
    bad = "repetition-penalty must be finite and > 0";
  else if (!(p->min_p >= 0.0 && p->min_p <= 1.0))
    bad = "min-p must be in [0, 1]";
  else if (!(p->top_p >= 0.0 && p->top_p <= 1.0))
    bad = "top-p must be in [0, 1]";
  else if (p->max_tokens < 1)
    bad = "max-tokens must be >= 1";
  if (bad != NULL) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "T3 sampling: %s", bad);
    return FALSE;
  }
  return TRUE;
}

/* ---- stages ---- */

void
cb_t3_cfg_combine (float *out, const float *cond, const float *uncond, int V, double cfg_weight)
{
  const float w = (float) cfg_weight;
  if (w == 0.0f) {
    if (out != cond)
      memcpy (out, cond, (size_t) V * sizeof *out);
    return;
  }
  for (int i = 0; i < V; i++) {
    /* Three roundings like torch's three ops (sub, mul, add); volatile keeps gcc from fusing. */
    volatile float scaled = w * (cond[i] - uncond[i]);
    out[i] = cond[i] + scaled;
  }
}

void
cb_t3_repetition_penalty (float *logits, const gint32 *distinct_ids, int n_ids, double penalty)
{
  const float theta = (float) penalty;
  if (theta == 1.0f)
    return;  /* x·1 and x/1 are exact: nothing changes */
  for (int k = 0; k < n_ids; k++) {
    float *x = &logits[distinct_ids[k]];
    *x = *x < 0.0f ? *x * theta : *x / theta;
  }
}

void
cb_t3_temperature (float *logits, int V, double temperature)
{
  if (temperature == 1.0)
    return;  /* upstream's loop skips it */
  const float t = (float) temperature;
  for (int i = 0; i < V; i++)
    logits[i] /= t;
}

void
cb_t3_softmax (float *probs, const float *logits, int V)
{
  float max = -INFINITY;
  for (int i = 0; i < V; i++)
    max = logits[i] > max ? logits[i] : max;
  double sum = 0.0;
  for (int i = 0; i < V; i++) {
    probs[i] = expf (logits[i] - max);
    sum += probs[i];
  }
  const float inv = 1.0f / (float) sum;
  for (int i = 0; i < V; i++)
    probs[i] *= inv;
}

void
cb_t3_min_p (float *logits, int V, double min_p, float *probs_scratch)
{
  if (min_p == 0.0)
    return;  /* p < 0 never holds */
  cb_t3_softmax (probs_scratch, logits, V);
  float top = 0.0f;
  for (int i = 0; i < V; i++)
    top = probs_scratch[i] > top ? probs_scratch[i] : top;
  /* top itself never falls below min_p·top (min_p ≤ 1), so the most probable id stays. */
  const float threshold = (float) min_p * top;
  for (int i = 0; i < V; i++)
    if (probs_scratch[i] < threshold)
      logits[i] = -INFINITY;
}

/* Ascending by value, ties by id (the order a stable sort gives); a total order, so any sorting
 * algorithm yields the same permutation. */
static inline gboolean
before (const float *keys, gint32 a, gint32 b)
{
  return keys[a] < keys[b] || (keys[a] == keys[b] && a < b);
}

/* In-place heapsort of ids by their keys: no allocation (glib's and libc's sorts may allocate a
 * temporary buffer for large arrays, and this runs once per decoding step). */
static void
sort_ids (gint32 *ids, int n, const float *keys)
{
  for (int end = n, start = n / 2 - 1;;) {
    int root;
    if (start >= 0) {
      root = start--;                /* heapify phase */
    } else {
      if (--end <= 0)
        return;
      const gint32 t = ids[0];       /* move the largest behind the heap */
      ids[0] = ids[end];
      ids[end] = t;
      root = 0;
    }
    for (int child; (child = 2 * root + 1) < end; root = child) {
      if (child + 1 < end && before (keys, ids[child], ids[child + 1]))
        child++;
      if (!before (keys, ids[root], ids[child]))
        break;
      const gint32 t = ids[root];
      ids[root] = ids[child];
      ids[child] = t;
    }
  }
}

void
cb_t3_top_p (float *logits, int V, double top_p, float *sorted_scratch, gint32 *index_scratch)
{
  if (top_p >= 1.0) {
    /* c_j ≤ 0 holds exactly on the ascending prefix of zero probabilities: drop the ids whose
     * probability is 0 (−∞ or underflow), no sort needed. */
    cb_t3_softmax (sorted_scratch, logits, V);
    for (int i = 0; i < V; i++)
      if (sorted_scratch[i] == 0.0f)
        logits[i] = -INFINITY;
    return;
  }
  /* Ids already at −∞ (min-p) sort first with probability 0: they add nothing to the cumulative
   * sum and stay −∞, so only the finite ones are sorted. */
  int n = 0;
  for (int i = 0; i < V; i++)
    if (logits[i] != -INFINITY)
      index_scratch[n++] = i;
  sort_ids (index_scratch, n, logits);

  for (int j = 0; j < n; j++)
    sorted_scratch[j] = logits[index_scratch[j]];
  cb_t3_softmax (sorted_scratch, sorted_scratch, n);

  const float limit = (float) (1.0 - top_p);
  double cum = 0.0;
  /* The last (largest) is always kept (min_tokens_to_keep 1). */
  for (int j = 0; j < n - 1; j++) {
    cum += sorted_scratch[j];
    if ((float) cum > limit)
      break;  /* cumsum only grows: the rest stays */
    logits[index_scratch[j]] = -INFINITY;
  }
}

gint32
cb_t3_pick (const float *probs, int V, double u)
{
  double total = 0.0;
  for (int i = 0; i < V; i++)
    total += probs[i];
  const double target = u * total;
  double cum = 0.0;
  gint32 last_nonzero = 0;
  for (int i = 0; i < V; i++) {
    if (probs[i] <= 0.0f)
      continue;
    cum += probs[i];
    last_nonzero = i;
    if (cum > target)
      return i;
  }
  return last_nonzero;
}

/* ---- generator: xoshiro256** (Blackman & Vigna), seeded by splitmix64 ---- */

static guint64
splitmix64 (guint64 *x)
{
  guint64 z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline guint64
rotl (guint64 x, int k)
{
  return (x << k) | (x >> (64 - k));
}

void
cb_t3_rng_seed (CbT3Rng *rng, guint64 seed)
{
  guint64 x = seed;
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64 (&x);
}

double
cb_t3_rng_uniform (CbT3Rng *rng)
{
  guint64 *s = rng->s;
  const guint64 result = rotl (s[1] * 5, 7) * 9;
  const guint64 t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return (double) (result >> 11) * 0x1.0p-53;
}

/* ---- sampler ---- */

CbT3Sampler *
cb_t3_sampler_new (int vocab, int max_tokens_cap, gint32 bos_id, gint32 eos_id, GError **error)
{
  if (vocab < 1 || max_tokens_cap < 1 || bos_id < 0 || bos_id >= vocab || eos_id < 0 ||
      eos_id >= vocab) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 sampler: bad sizes (vocab %d, max tokens %d, bos %d, eos %d)",
                 vocab, max_tokens_cap, bos_id, eos_id);
    return NULL;
  }
  CbT3Sampler *s = g_new0 (CbT3Sampler, 1);
  s->vocab = vocab;
  s->max_tokens_cap = max_tokens_cap;
  s->bos_id = bos_id;
  s->eos_id = eos_id;
  s->params = cb_t3_sample_params_default ();
  s->tokens = g_new (gint32, max_tokens_cap);
  s->distinct = g_new (gint32, (gsize) max_tokens_cap + 1);
  s->in_history = g_new0 (guint8, vocab);
  s->probs = g_new (float, vocab);
  s->sorted = g_new (float, vocab);
  s->order = g_new (gint32, vocab);
  return s;
}

void
cb_t3_sampler_free (CbT3Sampler *s)
{
  if (s == NULL)
    return;
  g_free (s->tokens);
  g_free (s->distinct);
  g_free (s->in_history);
  g_free (s->probs);
  g_free (s->sorted);
  g_free (s->order);
  g_free (s);
}

static void
history_add (CbT3Sampler *s, gint32 id)
{
  if (s->in_history[id])
    return;
  s->in_history[id] = 1;
  s->distinct[s->n_distinct++] = id;
}

gboolean
cb_t3_sampler_begin (CbT3Sampler *s, const CbT3SampleParams *params, GError **error)
{
  if (!cb_t3_sample_params_validate (params, error))
    return FALSE;
  if (params->max_tokens > s->max_tokens_cap) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 sampling: max-tokens %d exceeds the engine's limit %d",
                 params->max_tokens, s->max_tokens_cap);
    return FALSE;
  }
  for (int k = 0; k < s->n_distinct; k++)
    s->in_history[s->distinct[k]] = 0;
  s->n_distinct = 0;
  s->n_tokens = 0;
  s->params = *params;
  cb_t3_rng_seed (&s->rng, params->seed);
  history_add (s, s->bos_id);  /* upstream's generated_ids start with BOS */
  return TRUE;
}

static void
dump_row (float *dst, const float *row, int V)
{
  if (dst != NULL)
    memcpy (dst, row, (size_t) V * sizeof *dst);
}

void
cb_t3_sampler_process (CbT3Sampler *s, float *logits, const CbT3StageDump *dump)
{
  const int V = s->vocab;
  const CbT3SampleParams *p = &s->params;
  const CbT3StageDump none = { 0 };
  if (dump == NULL)
    dump = &none;

  cb_t3_repetition_penalty (logits, s->distinct, s->n_distinct, p->repetition_penalty);
  dump_row (dump->rep, logits, V);
  cb_t3_temperature (logits, V, p->temperature);
  dump_row (dump->temp, logits, V);
  cb_t3_min_p (logits, V, p->min_p, s->probs);
  dump_row (dump->minp, logits, V);
  cb_t3_top_p (logits, V, p->top_p, s->sorted, s->order);
  dump_row (dump->topp, logits, V);
  cb_t3_softmax (s->probs, logits, V);
  dump_row (dump->probs, s->probs, V);
}

void
cb_t3_sampler_accept (CbT3Sampler *s, gint32 token)
{
  g_return_if_fail (!cb_t3_sampler_finished (s) && token >= 0 && token < s->vocab);
  s->tokens[s->n_tokens++] = token;
  history_add (s, token);
}

gint32
cb_t3_sampler_step_u (CbT3Sampler *s, float *logits, double u, const CbT3StageDump *dump)
{
  g_return_val_if_fail (!cb_t3_sampler_finished (s), s->eos_id);
  cb_t3_sampler_process (s, logits, dump);
  const gint32 token = cb_t3_pick (s->probs, s->vocab, u);
  cb_t3_sampler_accept (s, token);
  return token;
}

gint32
cb_t3_sampler_step (CbT3Sampler *s, float *logits, const CbT3StageDump *dump)
{
  return cb_t3_sampler_step_u (s, logits, cb_t3_rng_uniform (&s->rng), dump);
}

gboolean
cb_t3_sampler_finished (const CbT3Sampler *s)
{
  return s->n_tokens >= s->params.max_tokens ||
         (s->n_tokens > 0 && s->tokens[s->n_tokens - 1] == s->eos_id);
}

/* ---- post-processing ---- */

int
cb_t3_postprocess (const gint32 *tokens, int n, gint32 start_id, gint32 stop_id, gint32 *out)
{
  int begin = 0, end = n;
  for (int i = 0; i < n; i++)
    if (tokens[i] == start_id) {
      begin = i + 1;
      break;
    }
  for (int i = 0; i < n; i++)
    if (tokens[i] == stop_id) {
      end = i;
      break;
    }
  int m = 0;
  /* Python's x[s:e] with s > e is empty; the loop does the same. Forward copy: in place is safe. */
  for (int i = begin; i < end; i++)
    if (tokens[i] >= 0 && tokens[i] < start_id)
      out[m++] = tokens[i];
  return m;
}
