/* t3-guard.c — the alignment-stream guard (see t3-guard.h; upstream AlignmentStreamAnalyzer,
 * chatterbox-tts 0.1.7, spec §4.4).
 *
 * Upstream keeps the whole alignment matrix A (rows × S) and re-reduces slices of it every step.
 * Every slice it reads is either "all rows" (a running maximum suffices), "the last rows" (a small
 * ring), or "rows since completion" (running sums that start after the completing step), so the
 * guard keeps those aggregates instead of A. Sums run in float, in row order, like torch's. */
#include "t3-guard.h"

#include <math.h>
#include <string.h>

/* Rows read in one step: the prefill's rows after the text (two BOS rows in T3's layout). */
#define MAX_CHUNK_ROWS 8
/* Longest "last rows × last columns" window of the false-start test. */
#define MAX_TAIL 8

struct CbT3Guard {
  CbT3GuardConfig cfg;
  int             max_text;          /* S ≤ this */

  /* Forward-pass capture (built once): one CbAttnCapture per layer, heads grouped by layer. */
  int             n_layers;
  CbAttnCapture  *layer_capture;     /* (n_layers) n_heads 0 where the layer has no guard head */
  int            *capture_heads;     /* (n_heads) head index within its layer, grouped by layer */
  float         **capture_probs;     /* (n_heads) buffer per grouped head */
  const float    *capture_of[CB_T3_GUARD_MAX_HEADS]; /* config order → its buffer */
  float          *capture;           /* (n_heads, capture_rows, capture_stride) */
  int             capture_rows;
  size_t          capture_stride;

  float          *chunk;             /* (MAX_CHUNK_ROWS, max_text) the last step's rows */
  int             chunk_rows;

  /* Per utterance (reset by begin). */
  CbT3GuardState  st;
  float           head_max;          /* max of A[:, :head_cols] over all rows */
  float           tail_ring[MAX_TAIL]; /* max of A[r, S−k:] for the last k rows, k = tail_cols */
  int             tail_count;        /* rows pushed into the ring */
  float           tail_sum[MAX_TAIL];/* Σ_{rows ≥ completed_at} A[r, S−long_tail_cols + c] */
  float           repetition_sum;    /* Σ_{rows ≥ completed_at} max A[r, 0 : S−skip] */
  gint32          last_tokens[2];    /* the two most recent last_token values */
  int             n_tokens_seen;     /* saturates: only "≥ 3" is asked */
};

CbT3GuardConfig
cb_t3_guard_config_default (void)
{
  CbT3GuardConfig c = {
    .n_heads = 3,
    .layer = { 12, 13, 9 },
    .head = { 15, 11, 2 },
    .eos_id = 6562,
    .discontinuity_back = 4,
    .discontinuity_forward = 7,
    .false_start_head_cols = 4,
    .false_start_head_min = 0.5f,
    .false_start_tail_cols = 2,
    .false_start_tail_max = 0.1f,
    .complete_margin = 3,
    .long_tail_cols = 3,
    .long_tail_frames = 5.0f,
    .repetition_skip_cols = 5,
    .repetition_frames = 5.0f,
    .suppress_min_text = 5,
    .suppress_margin = 3,
    .force_value = 32768.0f,
    .token_repetition = TRUE,
  };
  return c;
}

static gboolean
config_valid (const CbT3GuardConfig *c, int n_layers, int n_heads_per_layer, const char **why)
{
  if (c->n_heads < 1 || c->n_heads > CB_T3_GUARD_MAX_HEADS) {
    *why = "head count out of range";
    return FALSE;
  }
  for (int h = 0; h < c->n_heads; h++)
    if (c->layer[h] < 0 || c->layer[h] >= n_layers || c->head[h] < 0 ||
        c->head[h] >= n_heads_per_layer) {
      *why = "a guard head is not in the model";
      return FALSE;
    }
  if (c->false_start_tail_cols < 1 || c->false_start_tail_cols > MAX_TAIL ||
      c->long_tail_cols < 1 || c->long_tail_cols > MAX_TAIL || c->false_start_head_cols < 1 ||
      c->repetition_skip_cols < 0 || c->eos_id < 0) {
    *why = "column counts out of range";
    return FALSE;
  }
  return TRUE;
}

CbT3Guard *
cb_t3_guard_new (const CbT3GuardConfig *config, int n_layers, int n_heads_per_layer,
                 int max_text, int capture_rows, size_t capture_stride, GError **error)
{
  const char *why = NULL;
  guint64 capture_floats = 0;
  if (!config_valid (config, n_layers, n_heads_per_layer, &why))
    goto bad;
  if (max_text < 1 || capture_rows < 0 || (capture_rows > 0 && capture_stride < 1) ||
      !cb_mul_u64 ((guint64) capture_rows, capture_stride, &capture_floats) ||
      !cb_mul_u64 (capture_floats, (guint64) config->n_heads, &capture_floats) ||
      capture_floats > G_MAXSIZE / sizeof (float)) {
    why = "bad sizes";
    goto bad;
  }

  CbT3Guard *g = g_new0 (CbT3Guard, 1);
  g->cfg = *config;
  g->max_text = max_text;
  g->n_layers = n_layers;
  g->capture_rows = capture_rows;
  g->capture_stride = capture_stride;
  g->chunk = g_new0 (float, (gsize) MAX_CHUNK_ROWS * max_text);
  g->layer_capture = g_new0 (CbAttnCapture, n_layers);
  g->capture_heads = g_new (int, config->n_heads);
  g->capture_probs = g_new (float *, config->n_heads);
  if (capture_floats > 0)
    g->capture = g_new0 (float, capture_floats);

  /* Group the heads by layer so that each layer's capture lists its heads contiguously. */
  const size_t per_head = (size_t) capture_rows * capture_stride;
  int slot = 0;
  for (int layer = 0; layer < n_layers; layer++)
    for (int h = 0; h < config->n_heads; h++) {
      if (config->layer[h] != layer)
        continue;
      CbAttnCapture *cap = &g->layer_capture[layer];
      if (cap->n_heads == 0) {
        cap->heads = &g->capture_heads[slot];
        cap->probs = &g->capture_probs[slot];
        cap->row_stride = (int) capture_stride;
      }
      cap->n_heads++;
      g->capture_heads[slot] = config->head[h];
      g->capture_probs[slot] = g->capture != NULL ? g->capture + (size_t) h * per_head : NULL;
      g->capture_of[h] = g->capture_probs[slot];
      slot++;
    }
  cb_t3_guard_begin (g, 0, 1, NULL);
  return g;

bad:
  g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
               "alignment guard: %s (%d layers × %d heads, max text %d, capture %d × %zu)",
               why, n_layers, n_heads_per_layer, max_text, capture_rows, capture_stride);
  return NULL;
}

void
cb_t3_guard_free (CbT3Guard *g)
{
  if (g == NULL)
    return;
  g_free (g->chunk);
  g_free (g->layer_capture);
  g_free (g->capture_heads);
  g_free (g->capture_probs);
  g_free (g->capture);
  g_free (g);
}

const CbT3GuardConfig *
cb_t3_guard_config (const CbT3Guard *g)
{
  return &g->cfg;
}

gboolean
cb_t3_guard_begin (CbT3Guard *g, int text_begin, int text_len, GError **error)
{
  if (text_begin < 0 || text_len < 1 || text_len > g->max_text) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "alignment guard: text slice [%d, %d + %d) outside its limit of %d tokens",
                 text_begin, text_begin, text_len, g->max_text);
    return FALSE;
  }
  g->st = (CbT3GuardState) {
    .text_begin = text_begin, .text_len = text_len, .frame = 0, .rows = 0, .text_position = 0,
    .started = FALSE, .started_at = -1, .complete = FALSE, .completed_at = -1,
  };
  g->chunk_rows = 0;
  g->head_max = -INFINITY;
  g->tail_count = 0;
  memset (g->tail_sum, 0, sizeof g->tail_sum);
  g->repetition_sum = 0.0f;
  g->n_tokens_seen = 0;
  return TRUE;
}

const CbAttnCapture *
cb_t3_guard_capture_for_layer (CbT3Guard *g, int layer)
{
  if (layer < 0 || layer >= g->n_layers || g->layer_capture[layer].n_heads == 0 ||
      g->capture == NULL)
    return NULL;
  return &g->layer_capture[layer];
}

static float
max_of (const float *x, int n)
{
  float m = -INFINITY;
  for (int i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

/* Appends one alignment row (already averaged and masked) to the aggregates. */
static void
add_row (CbT3Guard *g, const float *row, gboolean since_completion)
{
  const CbT3GuardConfig *c = &g->cfg;
  const int S = g->st.text_len;
  const int head_cols = MIN (c->false_start_head_cols, S);
  const int tail_cols = MIN (c->false_start_tail_cols, S);
  g->head_max = MAX (g->head_max, max_of (row, head_cols));
  g->tail_ring[g->tail_count % c->false_start_tail_cols] = max_of (row + S - tail_cols, tail_cols);
  g->tail_count++;
  if (since_completion) {
    const int lt = MIN (c->long_tail_cols, S);
    for (int k = 0; k < lt; k++)
      g->tail_sum[k] += row[S - lt + k];
    /* A[:, :−5] is empty when S ≤ 5: upstream's max over it raises; we count it as 0. */
    const int rep_cols = S - c->repetition_skip_cols;
    if (rep_cols > 0)
      g->repetition_sum += max_of (row, rep_cols);
  }
  g->st.rows++;
}

guint
cb_t3_guard_step (CbT3Guard *g, const CbT3GuardRows *rows, float *logits, int V,
                  gint32 last_token)
{
  const CbT3GuardConfig *c = &g->cfg;
  CbT3GuardState *st = &g->st;
  const int S = st->text_len;
  const int text_end = st->text_begin + S;
  g_return_val_if_fail (c->eos_id < V, CB_T3_GUARD_NONE);
  g_return_val_if_fail (rows->first_key <= st->text_begin &&
                        (size_t) (text_end - rows->first_key) <= rows->row_stride,
                        CB_T3_GUARD_NONE);

  /* 1. The chunk: at frame 0 the rows after the text (aligned_attn[j:, i:j]), later all rows. */
  int r0 = 0;
  if (st->frame == 0)
    r0 = MAX (0, text_end - rows->first_query);
  const int n_chunk = rows->n_rows - r0;
  g_return_val_if_fail (n_chunk >= 1 && n_chunk <= MAX_CHUNK_ROWS, CB_T3_GUARD_NONE);

  const gboolean was_complete = st->complete;
  const int col0 = st->text_begin - rows->first_key;
  const int visible = MIN (S, st->frame + 1);  /* monotonic mask: columns > frame are zeroed */
  for (int r = 0; r < n_chunk; r++) {
    float *out = g->chunk + (size_t) r * S;
    const size_t at = (size_t) (r0 + r) * rows->row_stride + (size_t) col0;
    for (int k = 0; k < visible; k++) {
      float sum = 0.0f;
      for (int h = 0; h < c->n_heads; h++)
        sum += rows->head[h][at + (size_t) k];
      out[k] = sum / (float) c->n_heads;
    }
    for (int k = visible; k < S; k++)
      out[k] = 0.0f;
    add_row (g, out, was_complete);
  }
  g->chunk_rows = n_chunk;
  const int T = st->rows;

  /* 2. Position: argmax of the chunk's last row (first maximum, as torch). */
  const float *last = g->chunk + (size_t) (n_chunk - 1) * S;
  int cur = 0;
  for (int k = 1; k < S; k++)
    if (last[k] > last[cur])
      cur = k;
  guint flags = CB_T3_GUARD_NONE;
  const int jump = cur - st->text_position;
  if (-c->discontinuity_back < jump && jump < c->discontinuity_forward)
    st->text_position = cur;
  else
    flags |= CB_T3_GUARD_DISCONTINUITY;

  /* 3. False start (informational). */
  float tail_max = -INFINITY;
  for (int k = 0; k < MIN (g->tail_count, c->false_start_tail_cols); k++)
    tail_max = MAX (tail_max, g->tail_ring[k]);
  const gboolean false_start = !st->started && (tail_max > c->false_start_tail_max ||
                                                g->head_max < c->false_start_head_min);
  st->started = !false_start;
  if (st->started && st->started_at < 0)
    st->started_at = T;
  if (false_start)
    flags |= CB_T3_GUARD_FALSE_START;

  /* 4. Completion; the sums since completion start with the next chunk. */
  st->complete = st->complete || st->text_position >= S - c->complete_margin;
  if (st->complete && st->completed_at < 0)
    st->completed_at = T;
  if (st->complete)
    flags |= CB_T3_GUARD_COMPLETE;

  /* 5. The three forcing conditions. */
  if (st->complete && max_of (g->tail_sum, MIN (c->long_tail_cols, S)) >= c->long_tail_frames)
    flags |= CB_T3_GUARD_LONG_TAIL;
  if (st->complete && g->repetition_sum > c->repetition_frames)
    flags |= CB_T3_GUARD_ALIGNMENT_REPETITION;
  g->last_tokens[0] = g->last_tokens[1];
  g->last_tokens[1] = last_token;
  g->n_tokens_seen = MIN (g->n_tokens_seen + 1, 8);
  if (c->token_repetition && g->n_tokens_seen >= 3 && g->last_tokens[0] == g->last_tokens[1])
    flags |= CB_T3_GUARD_TOKEN_REPETITION;

  /* 6. EOS suppression, then forcing (which overrides it). */
  if (cur < S - c->suppress_margin && S > c->suppress_min_text) {
    logits[c->eos_id] = -c->force_value;
    flags |= CB_T3_GUARD_EOS_SUPPRESSED;
  }
  if (flags & (CB_T3_GUARD_LONG_TAIL | CB_T3_GUARD_ALIGNMENT_REPETITION |
               CB_T3_GUARD_TOKEN_REPETITION)) {
    for (int i = 0; i < V; i++)
      logits[i] = -c->force_value;
    logits[c->eos_id] = c->force_value;
    flags = (flags & ~(guint) CB_T3_GUARD_EOS_SUPPRESSED) | CB_T3_GUARD_FORCED_EOS;
  }
  st->frame++;
  return flags;
}

guint
cb_t3_guard_step_captured (CbT3Guard *g, int n_rows, int first_query, float *logits, int V,
                           gint32 last_token)
{
  g_return_val_if_fail (g->capture != NULL && n_rows <= g->capture_rows, CB_T3_GUARD_NONE);
  CbT3GuardRows rows = {
    .n_rows = n_rows, .row_stride = g->capture_stride, .first_query = first_query, .first_key = 0,
  };
  for (int h = 0; h < g->cfg.n_heads; h++)
    rows.head[h] = g->capture_of[h];
  return cb_t3_guard_step (g, &rows, logits, V, last_token);
}

const CbT3GuardState *
cb_t3_guard_state (const CbT3Guard *g)
{
  return &g->st;
}

const float *
cb_t3_guard_last_chunk (const CbT3Guard *g, int *n_rows)
{
  *n_rows = g->chunk_rows;
  return g->chunk;
}
