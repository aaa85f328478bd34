/* t3-guard.h — the alignment-stream guard (upstream AlignmentStreamAnalyzer, chatterbox-tts 0.1.7,
 * spec §4).
 *
 * Three attention heads of the conditional CFG row — (layer 12, head 15), (13, 11), (9, 2) — are
 * averaged; their attention over the text tokens says where in the text the speech is. Each decode
 * step the guard appends that alignment chunk (the two BOS rows at the first step, one row after),
 * tracks the text position, and from it decides:
 *   - false start:  not yet started and (strong activations at the text's last 2 columns in the
 *                   last 2 rows, or none ≥ 0.5 in the first 4 columns): informational only;
 *   - complete:     text position ≥ S − 3;
 *   - long tail:    complete and a last-3 column's mass since completion ≥ 5 frames → force EOS;
 *   - repetition:   complete and Σ over rows since completion of max(A[row, 0 : S−5]) > 5 → force EOS;
 *   - token repetition: ≥ 3 tokens seen and the last two (the previously sampled ids; BOS first) are
 *                   equal → force EOS (fires on any immediate repeat: why it is OFF for English);
 *   - EOS suppression: this step's argmax column < S − 3 and S > 5 → ℓ[EOS] = −32768.
 * Forcing sets every logit to −32768 and EOS to +32768. It runs after CFG, before the repetition
 * penalty (t3-sample.h).
 *
 * Split, unlike upstream (which rebuilds the analyzer and adds hooks on every request):
 *   CbT3Guard built once with the engine — configuration, head list, capture buffers for the
 *   forward pass (CbAttnCapture per layer), chunk scratch;
 *   per utterance — text slice, counters and running sums — reset in O(1) by cb_t3_guard_begin.
 * The alignment matrix itself is not kept: every heuristic reads running aggregates (max of the first
 * columns, column sums and row maxima since completion, the previous row's last columns), so a step
 * costs O(rows · S) and the memory does not grow with the utterance. The chunk of the last step is
 * readable (cb_t3_guard_last_chunk) for tests and dumps. */
#pragma once

#include "cb-common.h"
#include "ops.h"

G_BEGIN_DECLS

#define CB_T3_GUARD_MAX_HEADS 8

/* Thresholds and heads; cb_t3_guard_config_default() holds 0.1.7's values. */
typedef struct {
  int    n_heads;                          /* 3 */
  int    layer[CB_T3_GUARD_MAX_HEADS];     /* 12, 13, 9 */
  int    head[CB_T3_GUARD_MAX_HEADS];      /* 15, 11, 2 */
  gint32 eos_id;                           /* 6562 (the engine sets it from the T3 config) */
  int    discontinuity_back;               /* 4: a jump of cur − pos ≤ −4 is a discontinuity */
  int    discontinuity_forward;            /* 7: a jump ≥ 7 is a discontinuity (position held) */
  int    false_start_head_cols;            /* 4: first columns that must reach ... */
  float  false_start_head_min;             /* 0.5 */
  int    false_start_tail_cols;            /* 2: last rows × last columns that must stay ≤ ... */
  float  false_start_tail_max;             /* 0.1 */
  int    complete_margin;                  /* 3: complete when position ≥ S − 3 */
  int    long_tail_cols;                   /* 3 */
  float  long_tail_frames;                 /* 5 (≥) */
  int    repetition_skip_cols;             /* 5: columns [0, S − 5) */
  float  repetition_frames;                /* 5 (>) */
  int    suppress_min_text;                /* 5: EOS suppressed only when S > 5 */
  int    suppress_margin;                  /* 3: ... and this step's argmax < S − 3 */
  float  force_value;                      /* 32768 (2¹⁵) */
  gboolean token_repetition;               /* TRUE: the 0.1.7 token-repetition check */
} CbT3GuardConfig;

CbT3GuardConfig cb_t3_guard_config_default (void);

/* What a step did (bit flags, for the element's statistics). */
typedef enum {
  CB_T3_GUARD_NONE                 = 0,
  CB_T3_GUARD_FALSE_START          = 1 << 0,  /* not started yet (no action) */
  CB_T3_GUARD_DISCONTINUITY        = 1 << 1,  /* position jump ignored (no action) */
  CB_T3_GUARD_COMPLETE             = 1 << 2,  /* text end reached (state) */
  CB_T3_GUARD_EOS_SUPPRESSED       = 1 << 3,  /* ℓ[EOS] = −32768 (and not forced) */
  CB_T3_GUARD_LONG_TAIL            = 1 << 4,
  CB_T3_GUARD_ALIGNMENT_REPETITION = 1 << 5,
  CB_T3_GUARD_TOKEN_REPETITION     = 1 << 6,
  CB_T3_GUARD_FORCED_EOS           = 1 << 7,  /* any of the three above: EOS forced */
} CbT3GuardFlags;

/* Per-utterance state, readable after each step (−1 = upstream's None). */
typedef struct {
  int      text_begin, text_len;  /* text slice [i, j) = [text_begin, text_begin + S) */
  int      frame;                 /* steps done (upstream curr_frame_pos) */
  int      rows;                  /* alignment rows so far (T) */
  int      text_position;
  gboolean started;
  int      started_at;
  gboolean complete;
  int      completed_at;
} CbT3GuardState;

/* Attention rows of one forward for the guard heads: row r of head h is query position
 * first_query + r, its column c is key position first_key + c. */
typedef struct {
  const float *head[CB_T3_GUARD_MAX_HEADS];  /* (n_rows, row_stride) per guard head, config order */
  int          n_rows;
  size_t       row_stride;
  int          first_query;
  int          first_key;
} CbT3GuardRows;

typedef struct CbT3Guard CbT3Guard;

/* Built once: max_text = longest text slice S; capture_rows × capture_stride floats per head of
 * capture buffer for the forward pass (capture_rows ≥ the longest prefill whose rows are captured,
 * capture_stride ≥ the longest sequence); capture_rows may be 0 when the caller passes rows itself
 * (cb_t3_guard_step). n_layers bounds the head layers. */
CbT3Guard *cb_t3_guard_new (const CbT3GuardConfig *config, int n_layers, int n_heads_per_layer,
                            int max_text, int capture_rows, size_t capture_stride,
                            GError **error);
void       cb_t3_guard_free (CbT3Guard *g);
const CbT3GuardConfig *cb_t3_guard_config (const CbT3Guard *g);

/* Starts an utterance: text slice [text_begin, text_begin + text_len) of the sequence (len_cond,
 * Lt), text_len ≤ max_text. O(1). */
gboolean cb_t3_guard_begin (CbT3Guard *g, int text_begin, int text_len, GError **error);

/* For the forward pass: the capture to hand cb_attention_causal for `layer` (its guard heads into
 * the guard's buffers, n_rows ≤ capture_rows), or NULL when the layer has no guard head. */
const CbAttnCapture *cb_t3_guard_capture_for_layer (CbT3Guard *g, int layer);

/* One step with rows given by the caller. At the first step (frame 0) the rows with query position
 * ≥ text_begin + text_len are read (the BOS rows of the prefill); later, every row given (one);
 * at most 8 rows per step (more is a programming error: g_return_val_if_fail, nothing done).
 * logits: the CFG-combined row of V values, modified as upstream does. last_token: the previously
 * sampled id (BOS at the first step). Returns CbT3GuardFlags. */
guint cb_t3_guard_step (CbT3Guard *g, const CbT3GuardRows *rows, float *logits, int V,
                        gint32 last_token);

/* The same on the guard's own capture buffers, filled by the forward just run: n_rows query rows
 * (the prefill's L, or 1), first_query their first position, row length = capture_stride. */
guint cb_t3_guard_step_captured (CbT3Guard *g, int n_rows, int first_query, float *logits, int V,
                                 gint32 last_token);

const CbT3GuardState *cb_t3_guard_state (const CbT3Guard *g);

/* The alignment rows the last step appended (head mean, text columns, monotonic mask applied):
 * *n_rows rows of state->text_len floats, row stride text_len. */
const float *cb_t3_guard_last_chunk (const CbT3Guard *g, int *n_rows);

G_END_DECLS
