/* t3.c — T3's forward pass: the per-engine CbT3 (weights, RoPE table, guard-head map, voice
 * cache) and the per-stream CbT3State (KV caches, activations), prefill and one token per step.
 * See t3.h for the sequence layout and the CFG rows. */
#include "t3.h"

#include <math.h>
#include <string.h>

#include "tensor.h"

/* Voices whose conditioning a CbT3 keeps (least recently used one replaced). */
#define COND_CACHE_SIZE 4

/* One voice + exaggeration: the key (copies of the inputs), the cond embeddings and the KV of the
 * cond prefix, which is the same for both CFG rows. Buffers are allocated with the CbT3. */
typedef struct {
  gboolean used;
  guint64  last_use;
  float   *speaker_emb;   /* (speaker_embed_size) */
  int32_t *prompt;        /* (speech_cond_prompt_len) */
  int      n_prompt;
  float    exaggeration;
  int      cond_len;
  guint64  generation;    /* bumped whenever the entry is (re)filled */
  float   *embeds;        /* (max_cond_len, H) */
  float   *kv;            /* (layers, 2, max_cond_len, kvdim): keys then values of each layer */
} CondEntry;

struct CbT3 {
  const CbConfig *cfg;
  CbT3Weights     w;
  CbRopeTable    *rope;
  CbT3Options     opt;
  int             max_cond_len;
  int             qdim, kvdim;
  /* guard heads by layer: layer l captures n_capture[l] heads, query heads capture_head[l][..]
   * into guard slot capture_slot[l][..] */
  int            *n_capture;
  int           (*capture_head)[CB_T3_MAX_GUARD_HEADS];
  int           (*capture_slot)[CB_T3_MAX_GUARD_HEADS];
  GMutex          cache_lock;   /* states of several streams share the cache */
  CondEntry       cache[COND_CACHE_SIZE];
  guint64         cache_tick;
};

struct CbT3State {
  CbT3    *t3;
  int      max_text, max_steps;
  int      max_seq;      /* KV cache rows: max cond + max text + 2 BOS + max steps */
  int      max_T;        /* positions one forward handles: max(cond, text + 2) */
  CbArena *arena;
  float   *kcache[2], *vcache[2];  /* per CFG row: (layers, max_seq, kvdim) */
  float   *embeds;       /* (rows, T, H) backbone input of the last forward */
  float   *x, *xn;       /* (2 max_T, H) residual stream, normalised / projected */
  float   *q, *att;      /* (2 max_T, qdim) */
  float   *k, *v;        /* (2 max_T, kvdim) new keys/values before they enter the caches */
  float   *gate, *up;    /* (2 max_T, intermediate) */
  float   *hlast;        /* (2, H) final norm of each row's last position */
  float   *logits;       /* (2, speech vocab) */
  float   *guard;        /* (n_guard, 2, max_seq) captured attention rows */
  float   *cond;         /* (max_cond_len, H) current voice's cond embeddings */
  float   *cond_scratch;
  /* Which voice's prefix rows [0, C) of each CFG row's KV cache hold: an utterance only writes
   * positions >= C, so when the next utterance has the same voice (the usual case: one voice, many
   * sentences) the prefix is still there and begin copies nothing. */
  const CondEntry *prefix_entry;
  guint64  prefix_generation;
  guint    prefix_rows;  /* bit r: row r holds prefix_entry's KV */
  /* per utterance */
  int      n_rows;       /* 2 with CFG, 1 at cfg_weight 0 */
  int      cond_len, n_text;
  int      pos;          /* positions in the KV caches */
  int      steps;        /* tokens fed back */
  int      last_T;       /* positions of the last forward */
  int      guard_rows;   /* captured query rows of the last forward */
  gboolean begun;
  guint    cond_misses;
  gint64   setup_us;     /* last begin: entry to the prefill forward */
};

void
cb_t3_options_init (CbT3Options *o)
{
  static const int layer[] = { 12, 13, 9 }, head[] = { 15, 11, 2 };
  memset (o, 0, sizeof *o);
  o->n_guard_heads = G_N_ELEMENTS (layer);
  for (int i = 0; i < o->n_guard_heads; i++) {
    o->guard_layer[i] = layer[i];
    o->guard_head[i] = head[i];
  }
}

int
cb_t3_cond_len (const CbT3 *t3, int n_prompt_tokens)
{
  const CbT3Config *t = &t3->cfg->t3;
  return 1 + (n_prompt_tokens > 0 ? t3->cfg->perceiver.pre_attention_query_token : 0)
         + (t->emotion_adv ? 1 : 0);
}

static gsize
layer_kv_floats (const CbT3 *t3, int rows)
{
  return (gsize) rows * t3->kvdim;
}

static gboolean
check_options (const CbConfig *cfg, const CbT3Options *o, GError **error)
{
  if (o->precision != CB_T3_PRECISION_FP32 && o->precision != CB_T3_PRECISION_BF16) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "T3: unknown precision %d",
                 (int) o->precision);
    return FALSE;
  }
  if (o->n_guard_heads < 0 || o->n_guard_heads > CB_T3_MAX_GUARD_HEADS) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "T3: %d guard heads (at most %d)",
                 o->n_guard_heads, CB_T3_MAX_GUARD_HEADS);
    return FALSE;
  }
  for (int i = 0; i < o->n_guard_heads; i++)
    if (o->guard_layer[i] < 0 || o->guard_layer[i] >= cfg->llama.num_hidden_layers
        || o->guard_head[i] < 0 || o->guard_head[i] >= cfg->llama.num_attention_heads) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "T3: guard head (%d, %d) does not exist in a model of %d layers of %d heads",
                   o->guard_layer[i], o->guard_head[i], cfg->llama.num_hidden_layers,
                   cfg->llama.num_attention_heads);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_config (const CbConfig *cfg, GError **error)
{
  const CbPerceiverConfig *pc = &cfg->perceiver;
  if (!cfg->t3.use_perceiver_resampler
      || pc->embedding_dim != cfg->llama.hidden_size
      || pc->pre_attention_query_size != cfg->llama.hidden_size
      || pc->embedding_dim % pc->num_attn_heads != 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "T3: the perceiver must be used and its widths (perceiver.embedding_dim %d, "
                 "perceiver.pre_attention_query_size %d) equal llama.hidden_size %d, divisible by "
                 "perceiver.num_attn_heads %d", pc->embedding_dim, pc->pre_attention_query_size,
                 cfg->llama.hidden_size, pc->num_attn_heads);
    return FALSE;
  }
  return TRUE;
}

static void
map_guard_heads (CbT3 *t3)
{
  const int layers = t3->cfg->llama.num_hidden_layers;
  t3->n_capture = g_new0 (int, layers);
  t3->capture_head = g_malloc0_n (layers, sizeof *t3->capture_head);
  t3->capture_slot = g_malloc0_n (layers, sizeof *t3->capture_slot);
  for (int g = 0; g < t3->opt.n_guard_heads; g++) {
    int l = t3->opt.guard_layer[g], n = t3->n_capture[l]++;
    t3->capture_head[l][n] = t3->opt.guard_head[g];
    t3->capture_slot[l][n] = g;
  }
}

static void
alloc_cache (CbT3 *t3)
{
  const CbConfig *cfg = t3->cfg;
  const gsize H = cfg->llama.hidden_size;
  for (int i = 0; i < COND_CACHE_SIZE; i++) {
    CondEntry *e = &t3->cache[i];
    e->speaker_emb = g_new0 (float, cfg->t3.speaker_embed_size);
    e->prompt = g_new0 (int32_t, MAX (cfg->t3.speech_cond_prompt_len, 1));
    e->embeds = g_new0 (float, t3->max_cond_len * H);
    e->kv = g_new0 (float, (gsize) cfg->llama.num_hidden_layers * 2
                               * layer_kv_floats (t3, t3->max_cond_len));
  }
}

CbT3 *
cb_t3_new (const CbConfig *cfg, const CbSafetensors *st, const CbT3Options *options,
           GError **error)
{
  CbT3Options defaults;
  if (!options) {
    cb_t3_options_init (&defaults);
    options = &defaults;
  }
  if (!check_config (cfg, error) || !check_options (cfg, options, error))
    return NULL;
  CbT3 *t3 = g_new0 (CbT3, 1);
  t3->cfg = cfg;
  t3->opt = *options;
  g_mutex_init (&t3->cache_lock);
  const CbLlamaConfig *lc = &cfg->llama;
  t3->qdim = lc->num_attention_heads * lc->head_dim;
  t3->kvdim = lc->num_key_value_heads * lc->head_dim;
  t3->max_cond_len = cb_t3_cond_len (t3, 1);
  if (!cb_t3_weights_init (&t3->w, cfg, st, error)) {
    cb_t3_free (t3);
    return NULL;
  }
  if (options->precision == CB_T3_PRECISION_BF16)
    cb_t3_weights_to_bf16 (&t3->w, cfg);
  CbRopeScaling scaling = {
    (float) lc->rope_factor, (float) lc->rope_low_freq_factor, (float) lc->rope_high_freq_factor,
    lc->rope_original_max_position_embeddings,
  };
  int max_pos = t3->max_cond_len + cb_config_text_pos_len (cfg) + 2 + cb_config_speech_pos_len (cfg);
  t3->rope = cb_rope_table_build (lc->rope_theta, lc->head_dim, max_pos,
                                  lc->rope_type == CB_ROPE_LLAMA3 ? &scaling : NULL, error);
  if (!t3->rope) {
    cb_t3_free (t3);
    return NULL;
  }
  map_guard_heads (t3);
  alloc_cache (t3);
  return t3;
}

void
cb_t3_free (CbT3 *t3)
{
  if (!t3)
    return;
  for (int i = 0; i < COND_CACHE_SIZE; i++) {
    CondEntry *e = &t3->cache[i];
    g_free (e->speaker_emb);
    g_free (e->prompt);
    g_free (e->embeds);
    g_free (e->kv);
  }
  g_free (t3->n_capture);
  g_free (t3->capture_head);
  g_free (t3->capture_slot);
  cb_rope_table_free (t3->rope);
  cb_t3_weights_clear (&t3->w);
  g_mutex_clear (&t3->cache_lock);
  g_free (t3);
}

/* ---- state ---- */

/* Takes every buffer of the state from its arena in one place, so that sizing (arena == NULL:
 * count only) and allocation cannot disagree. Returns the floats needed. */
static gsize
layout_state (CbT3State *s, CbArena *arena)
{
  const CbT3 *t3 = s->t3;
  const CbConfig *cfg = t3->cfg;
  const gsize H = cfg->llama.hidden_size, I = cfg->llama.intermediate_size;
  const gsize V = cfg->t3.speech_tokens_dict_size, L = cfg->llama.num_hidden_layers;
  const gsize T2 = 2 * (gsize) s->max_T;
  gsize total = 0;
#define TAKE(ptr, n)                                                    \
  do {                                                                  \
    gsize n_ = (n);                                                     \
    total += n_ + CB_ARENA_ALIGN / sizeof (float);                      \
    if (arena)                                                          \
      (ptr) = cb_arena_alloc (arena, n_);                               \
  } while (0)
  for (int r = 0; r < 2; r++) {
    TAKE (s->kcache[r], L * layer_kv_floats (t3, s->max_seq));
    TAKE (s->vcache[r], L * layer_kv_floats (t3, s->max_seq));
  }
  TAKE (s->embeds, T2 * H);
  TAKE (s->x, T2 * H);
  TAKE (s->xn, T2 * H);
  TAKE (s->q, T2 * t3->qdim);
  TAKE (s->att, T2 * t3->qdim);
  TAKE (s->k, T2 * t3->kvdim);
  TAKE (s->v, T2 * t3->kvdim);
  TAKE (s->gate, T2 * I);
  TAKE (s->up, T2 * I);
  TAKE (s->hlast, 2 * H);
  TAKE (s->logits, 2 * V);
  TAKE (s->guard, MAX (t3->opt.n_guard_heads, 1) * 2 * (gsize) s->max_seq);
  TAKE (s->cond, t3->max_cond_len * H);
  TAKE (s->cond_scratch, cb_t3_cond_scratch_floats (cfg, cfg->t3.speech_cond_prompt_len));
#undef TAKE
  return total;
}

CbT3State *
cb_t3_state_new (CbT3 *t3, int max_text_tokens, int max_steps, GError **error)
{
  const CbConfig *cfg = t3->cfg;
  /* text positions come from text_pos_emb, fed-back token k uses speech_pos_emb[k] */
  if (max_text_tokens < 2 || max_text_tokens > cb_config_text_pos_len (cfg)
      || max_steps < 0 || max_steps >= cb_config_speech_pos_len (cfg)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 state: max text tokens %d must be in [2, %d], max steps %d in [0, %d)",
                 max_text_tokens, cb_config_text_pos_len (cfg), max_steps,
                 cb_config_speech_pos_len (cfg));
    return NULL;
  }
  CbT3State *s = g_new0 (CbT3State, 1);
  s->t3 = t3;
  s->max_text = max_text_tokens;
  s->max_steps = max_steps;
  s->max_T = MAX (t3->max_cond_len, max_text_tokens + 2);
  s->max_seq = t3->max_cond_len + max_text_tokens + 2 + max_steps;
  gsize floats = layout_state (s, NULL);
  s->arena = cb_arena_new (floats * sizeof (float), error);
  if (!s->arena) {
    g_free (s);
    return NULL;
  }
  layout_state (s, s->arena);
  g_assert (s->arena->high_water <= s->arena->size);
  return s;
}

void
cb_t3_state_free (CbT3State *s)
{
  if (!s)
    return;
  cb_arena_free (s->arena);
  g_free (s);
}

const CbConfig *
cb_t3_state_config (const CbT3State *s)
{
  return s->t3->cfg;
}

/* ---- the Llama backbone ---- */

static float *
kv_at (const CbT3State *s, float *const cache[2], int row, int layer)
{
  return cache[row] + (gsize) layer * layer_kv_floats (s->t3, s->max_seq);
}

/* out[T, OC] = inp[T, C] · W^T (+ bias) with W as the model stores it: the BF16 copy when there
 * is one, else the F32 view. */
static void
linear (float *out, const float *inp, const float *w_f32, const guint16 *w_bf16, const float *bias,
        int T, int C, int OC)
{
  if (w_bf16)
    cb_matmul_bf16 (out, inp, w_bf16, bias, T, C, OC);
  else
    cb_matmul (out, inp, w_f32, bias, T, C, OC);
}

/* Self-attention of one CFG row in `layer`: its T new queries against its cache. On the
 * conditional row of a layer holding guard heads (when `capture`), the last min(T, 2) query
 * rows are computed in a separate call that records those heads' probabilities: the guard reads
 * the two BOS rows after the prefill and one row per step. */
static void
attend_row (CbT3State *s, int layer, int row, int T, int pos0, gboolean capture)
{
  const CbT3 *t3 = s->t3;
  const CbLlamaConfig *lc = &t3->cfg->llama;
  const float scale = 1.0f / sqrtf ((float) lc->head_dim);
  const float *kc = kv_at (s, s->kcache, row, layer), *vc = kv_at (s, s->vcache, row, layer);
  float *q = s->q + (gsize) row * T * t3->qdim, *out = s->att + (gsize) row * T * t3->qdim;
  const int n_heads = capture && row == 0 ? t3->n_capture[layer] : 0;
  const int n_cap = n_heads > 0 ? MIN (T, 2) : 0, plain = T - n_cap;
  if (plain > 0)
    cb_attention_causal (out, q, kc, vc, plain, pos0, lc->num_attention_heads,
                         lc->num_key_value_heads, lc->head_dim, scale, NULL);
  if (n_cap == 0)
    return;
  float *probs[CB_T3_MAX_GUARD_HEADS];
  for (int i = 0; i < n_heads; i++)
    probs[i] = s->guard + (gsize) t3->capture_slot[layer][i] * 2 * s->max_seq;
  CbAttnCapture cap = { n_heads, t3->capture_head[layer], probs, s->max_seq };
  cb_attention_causal (out + (gsize) plain * t3->qdim, q + (gsize) plain * t3->qdim, kc, vc, n_cap,
                       pos0 + plain, lc->num_attention_heads, lc->num_key_value_heads,
                       lc->head_dim, scale, &cap);
  s->guard_rows = n_cap;
}

/* One LlamaDecoderLayer on the residual stream x (n_rows × T positions, row-major by row). */
static void
decoder_layer (CbT3State *s, int layer, int n_rows, int T, int pos0, gboolean capture)
{
  const CbT3 *t3 = s->t3;
  const CbLlamaConfig *lc = &t3->cfg->llama;
  const CbT3Layer *w = &t3->w.layers[layer];
  const int H = lc->hidden_size, I = lc->intermediate_size, RT = n_rows * T;
  const float eps = (float) lc->rms_norm_eps;

  /* attention: both rows' projections in one product (the weights are read once per step) */
  cb_rmsnorm (s->xn, s->x, w->input_layernorm, eps, RT, H);
  linear (s->q, s->xn, w->q_proj, w->q_proj_bf16, w->q_bias, RT, H, t3->qdim);
  linear (s->k, s->xn, w->k_proj, w->k_proj_bf16, w->k_bias, RT, H, t3->kvdim);
  linear (s->v, s->xn, w->v_proj, w->v_proj_bf16, w->v_bias, RT, H, t3->kvdim);
  for (int r = 0; r < n_rows; r++) {
    float *q = s->q + (gsize) r * T * t3->qdim;
    float *k = s->k + (gsize) r * T * t3->kvdim, *v = s->v + (gsize) r * T * t3->kvdim;
    cb_rope_apply (q, t3->rope, T, lc->num_attention_heads, pos0);
    cb_rope_apply (k, t3->rope, T, lc->num_key_value_heads, pos0);
    gsize at = (gsize) pos0 * t3->kvdim, n = (gsize) T * t3->kvdim;
    memcpy (kv_at (s, s->kcache, r, layer) + at, k, n * sizeof (float));
    memcpy (kv_at (s, s->vcache, r, layer) + at, v, n * sizeof (float));
    attend_row (s, layer, r, T, pos0, capture);
  }
  linear (s->xn, s->att, w->o_proj, w->o_proj_bf16, w->o_bias, RT, t3->qdim, H);
  cb_add (s->x, s->x, s->xn, (gsize) RT * H);

  /* SwiGLU MLP: down(silu(gate(x)) * up(x)) */
  cb_rmsnorm (s->xn, s->x, w->post_attention_layernorm, eps, RT, H);
  linear (s->gate, s->xn, w->gate_proj, w->gate_proj_bf16, w->gate_bias, RT, H, I);
  linear (s->up, s->xn, w->up_proj, w->up_proj_bf16, w->up_bias, RT, H, I);
  cb_silu_mul (s->gate, s->gate, s->up, (gsize) RT * I);
  linear (s->xn, s->gate, w->down_proj, w->down_proj_bf16, w->down_bias, RT, I, H);
  cb_add (s->x, s->x, s->xn, (gsize) RT * H);
}

/* The backbone on s->embeds (n_rows × T positions starting at pos0), writing both caches; with
 * `logits`, tfmr.norm and speech_head at each row's last position. */
static void
forward (CbT3State *s, int n_rows, int T, int pos0, gboolean capture, gboolean logits)
{
  const CbT3 *t3 = s->t3;
  const CbConfig *cfg = t3->cfg;
  const int H = cfg->llama.hidden_size;
  memcpy (s->x, s->embeds, (gsize) n_rows * T * H * sizeof (float));
  s->guard_rows = 0;
  for (int l = 0; l < cfg->llama.num_hidden_layers; l++)
    decoder_layer (s, l, n_rows, T, pos0, capture);
  s->last_T = T;
  if (!logits)
    return;
  for (int r = 0; r < n_rows; r++)
    cb_rmsnorm (s->hlast + (gsize) r * H, s->x + ((gsize) r * T + T - 1) * H, t3->w.norm,
                (float) cfg->llama.rms_norm_eps, 1, H);
  linear (s->logits, s->hlast, t3->w.speech_head, t3->w.speech_head_bf16, NULL, n_rows, H,
          cfg->t3.speech_tokens_dict_size);
}

/* ---- conditioning prefix (cached per voice) ---- */

static gboolean
entry_matches (const CondEntry *e, const CbConds *voice, float exaggeration)
{
  return e->used && e->n_prompt == voice->n_cond_prompt_tokens
         && memcmp (&e->exaggeration, &exaggeration, sizeof (float)) == 0
         && memcmp (e->speaker_emb, voice->speaker_emb,
                    voice->speaker_embed_size * sizeof (float)) == 0
         && (e->n_prompt == 0
             || memcmp (e->prompt, voice->cond_prompt_tokens, e->n_prompt * sizeof (int32_t)) == 0);
}

static CondEntry *
victim (CbT3 *t3)
{
  CondEntry *best = &t3->cache[0];
  for (int i = 0; i < COND_CACHE_SIZE; i++) {
    CondEntry *e = &t3->cache[i];
    if (!e->used)
      return e;
    if (e->last_use < best->last_use)
      best = e;
  }
  return best;
}

/* Computes the voice's cond embeddings and runs them through the backbone on row 0 of the state
 * (positions 0..C-1), then stores both in `e`. */
static void
fill_entry (CbT3State *s, CondEntry *e, const CbConds *voice, float exaggeration)
{
  CbT3 *t3 = s->t3;
  const CbConfig *cfg = t3->cfg;
  const int H = cfg->llama.hidden_size, C = cb_t3_cond_len (t3, voice->n_cond_prompt_tokens);
  cb_t3_cond_compute (&t3->w, cfg, voice->speaker_emb, voice->cond_prompt_tokens,
                      voice->n_cond_prompt_tokens, exaggeration, s->embeds, s->cond_scratch);
  forward (s, 1, C, 0, FALSE, FALSE);
  s->cond_misses++;

  e->used = TRUE;
  e->generation++;
  memcpy (e->speaker_emb, voice->speaker_emb, voice->speaker_embed_size * sizeof (float));
  if (voice->n_cond_prompt_tokens > 0)
    memcpy (e->prompt, voice->cond_prompt_tokens, voice->n_cond_prompt_tokens * sizeof (int32_t));
  e->n_prompt = voice->n_cond_prompt_tokens;
  e->exaggeration = exaggeration;
  e->cond_len = C;
  memcpy (e->embeds, s->embeds, (gsize) C * H * sizeof (float));
  /* the forward above left the prefix in row 0 (and overwrote whatever row 0 held) */
  s->prefix_entry = e;
  s->prefix_generation = e->generation;
  s->prefix_rows = 1u;
  const gsize n = layer_kv_floats (t3, C);
  for (int l = 0; l < cfg->llama.num_hidden_layers; l++) {
    float *dst = e->kv + (gsize) l * 2 * layer_kv_floats (t3, t3->max_cond_len);
    memcpy (dst, kv_at (s, s->kcache, 0, l), n * sizeof (float));
    memcpy (dst + layer_kv_floats (t3, t3->max_cond_len), kv_at (s, s->vcache, 0, l),
            n * sizeof (float));
  }
}

/* Puts the voice's cond prefix into the KV caches of every row (computing it on a cache miss;
 * copying it only into rows that do not hold it already). */
static void
load_cond_prefix (CbT3State *s, const CbConds *voice, float exaggeration)
{
  CbT3 *t3 = s->t3;
  const int H = t3->cfg->llama.hidden_size;
  g_mutex_lock (&t3->cache_lock);
  CondEntry *e = NULL;
  for (int i = 0; i < COND_CACHE_SIZE && !e; i++)
    if (entry_matches (&t3->cache[i], voice, exaggeration))
      e = &t3->cache[i];
  if (!e) {
    e = victim (t3);
    fill_entry (s, e, voice, exaggeration);
  }
  e->last_use = ++t3->cache_tick;
  s->cond_len = e->cond_len;
  memcpy (s->cond, e->embeds, (gsize) e->cond_len * H * sizeof (float));
  if (s->prefix_entry != e || s->prefix_generation != e->generation) {
    s->prefix_entry = e;
    s->prefix_generation = e->generation;
    s->prefix_rows = 0;
  }
  const gsize n = layer_kv_floats (t3, e->cond_len);
  for (int r = 0; r < s->n_rows; r++) {
    if (s->prefix_rows & (1u << r))
      continue;
    s->prefix_rows |= 1u << r;
    for (int l = 0; l < t3->cfg->llama.num_hidden_layers; l++) {
      const float *src = e->kv + (gsize) l * 2 * layer_kv_floats (t3, t3->max_cond_len);
      memcpy (kv_at (s, s->kcache, r, l), src, n * sizeof (float));
      memcpy (kv_at (s, s->vcache, r, l), src + layer_kv_floats (t3, t3->max_cond_len),
              n * sizeof (float));
    }
  }
  g_mutex_unlock (&t3->cache_lock);
}

/* ---- utterances ---- */

static gboolean
check_begin (const CbT3State *s, const int32_t *text_ids, int n_text, const CbConds *voice,
             const CbT3Params *params, GError **error)
{
  const CbT3Config *t = &s->t3->cfg->t3;
  const char *why = NULL;
  if (n_text < 2 || n_text > s->max_text)
    why = "text length out of range";
  else if (!(params->cfg_weight >= 0.0f) || !isfinite (params->cfg_weight)
           || !isfinite (params->exaggeration))
    why = "cfg_weight must be finite and >= 0, exaggeration finite";
  else if (voice->speaker_embed_size != t->speaker_embed_size || !voice->speaker_emb)
    why = "voice speaker embedding has the wrong size";
  else if (voice->n_cond_prompt_tokens < 0
           || voice->n_cond_prompt_tokens > t->speech_cond_prompt_len)
    why = "voice has too many cond prompt tokens";
  for (int i = 0; !why && i < n_text; i++)
    if (text_ids[i] < 0 || text_ids[i] >= t->text_tokens_dict_size)
      why = "text id out of range";
  for (int i = 0; !why && i < voice->n_cond_prompt_tokens; i++)
    if (voice->cond_prompt_tokens[i] < 0
        || voice->cond_prompt_tokens[i] >= t->speech_tokens_dict_size)
      why = "cond prompt token out of range";
  if (why)
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 begin: %s (text %d ids, state made for at most %d; voice %d speaker values, "
                 "%d prompt tokens; model: speaker %d, at most %d prompt tokens)", why, n_text,
                 s->max_text, voice->speaker_embed_size, voice->n_cond_prompt_tokens,
                 t->speaker_embed_size, t->speech_cond_prompt_len);
  return why == NULL;
}

/* speech_emb[token] + speech_pos_emb[speech_pos] into dst (H). */
static void
speech_embed (const CbT3 *t3, float *dst, int token, int speech_pos)
{
  const gsize H = t3->cfg->llama.hidden_size;
  cb_add (dst, t3->w.speech_emb + token * H, t3->w.speech_pos_emb + speech_pos * H, H);
}

gboolean
cb_t3_begin (CbT3State *s, const int32_t *text_ids, int n_text, const CbConds *voice,
             const CbT3Params *params, GError **error)
{
  const gint64 t0 = g_get_monotonic_time ();
  if (!check_begin (s, text_ids, n_text, voice, params, error))
    return FALSE;
  const CbT3 *t3 = s->t3;
  const CbConfig *cfg = t3->cfg;
  const gsize H = cfg->llama.hidden_size;
  s->n_rows = params->cfg_weight > 0.0f ? 2 : 1;
  s->n_text = n_text;
  s->steps = 0;
  load_cond_prefix (s, voice, params->exaggeration);

  /* text + text positions (row 1: text embeddings zeroed, positions kept), then BOS twice */
  const int T = n_text + 2;
  for (int r = 0; r < s->n_rows; r++) {
    float *e = s->embeds + (gsize) r * T * H;
    for (int i = 0; i < n_text; i++, e += H) {
      const float *pos = t3->w.text_pos_emb + i * H;
      if (r == 1)
        memcpy (e, pos, H * sizeof (float));
      else
        cb_add (e, t3->w.text_emb + text_ids[i] * H, pos, H);
    }
    speech_embed (t3, e, cfg->t3.start_speech_token, 0);
    speech_embed (t3, e + H, cfg->t3.start_speech_token, 0);
  }
  s->setup_us = g_get_monotonic_time () - t0;
  forward (s, s->n_rows, T, s->cond_len, TRUE, TRUE);
  s->pos = s->cond_len + T;
  s->begun = TRUE;
  return TRUE;
}

gboolean
cb_t3_forward_step (CbT3State *s, int32_t token, GError **error)
{
  const CbT3 *t3 = s->t3;
  const CbConfig *cfg = t3->cfg;
  if (!s->begun || s->steps >= s->max_steps || token < 0
      || token >= cfg->t3.speech_tokens_dict_size) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                 "T3 step: %s (token %d, step %d of at most %d)",
                 !s->begun ? "no utterance begun" : s->steps >= s->max_steps
                 ? "state's step limit reached" : "token out of range",
                 token, s->steps, s->max_steps);
    return FALSE;
  }
  const gsize H = cfg->llama.hidden_size;
  s->steps++;
  for (int r = 0; r < s->n_rows; r++)
    speech_embed (t3, s->embeds + r * H, token, s->steps);
  forward (s, s->n_rows, 1, s->pos, TRUE, TRUE);
  s->pos++;
  return TRUE;
}

/* ---- results ---- */

const float *
cb_t3_logits (const CbT3State *s, int row)
{
  if (row < 0 || row >= s->n_rows)
    return NULL;
  return s->logits + (gsize) row * s->t3->cfg->t3.speech_tokens_dict_size;
}

int
cb_t3_n_rows (const CbT3State *s)
{
  return s->n_rows;
}

const float *
cb_t3_input_embeds (const CbT3State *s, int row, int *n_positions)
{
  if (n_positions)
    *n_positions = s->last_T;
  if (row < 0 || row >= s->n_rows)
    return NULL;
  return s->embeds + (gsize) row * s->last_T * s->t3->cfg->llama.hidden_size;
}

const float *
cb_t3_cond_embeds (const CbT3State *s, int *cond_len)
{
  if (cond_len)
    *cond_len = s->cond_len;
  return s->cond;
}

int
cb_t3_n_positions (const CbT3State *s)
{
  return s->pos;
}

const float *
cb_t3_guard_attn (const CbT3State *s, int g, int row)
{
  if (g < 0 || g >= s->t3->opt.n_guard_heads || row < 0 || row >= s->guard_rows)
    return NULL;
  return s->guard + ((gsize) g * 2 + row) * s->max_seq;
}

int
cb_t3_guard_attn_rows (const CbT3State *s)
{
  return s->guard_rows;
}

gsize
cb_t3_guard_attn_stride (const CbT3State *s)
{
  return s->max_seq;
}

const CbT3Options *
cb_t3_options (const CbT3 *t3)
{
  return &t3->opt;
}

guint
cb_t3_state_cond_misses (const CbT3State *s)
{
  return s->cond_misses;
}

gint64
cb_t3_state_setup_us (const CbT3State *s)
{
  return s->setup_us;
}
