/* conds.c — read the built-in voice (conds.pt); see conds.h for the structure. */
#include "conds.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "torchzip.h"

/* The largest storage a conds.pt tensor may sit in: a 10 s prompt mel is 160 kB. */
#define MAX_STORAGE_BYTES (64u << 20)

void
cb_conds_expect_default (CbCondsExpect *expect)
{
  *expect = (CbCondsExpect) {
    .speaker_embed_size = 256,
    .mel_bins = 80,
    .xvector_size = 192,
    .max_cond_prompt_tokens = 150,
    .max_prompt_tokens = 250,
    .speech_vocab = 6561,
  };
}

/* One dimension of an expected shape: a fixed size (name NULL), or a free size `name` in [1, max]. */
typedef struct {
  const char *name;
  gint64 size;
} Dim;

typedef struct {
  CbTorchZip *z;
  const char *file;     /* base name, for messages */
  const char *group;    /* "t3" or "gen" */
  const CbPickleValue *dict;
  const CbCondsExpect *expect;
} Group;

static char *
shape_text (const guint64 *shape, int ndim)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static char *
expected_text (const Dim *dims, int ndim)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++) {
    g_string_append (s, i ? ", " : "");
    if (dims[i].name)
      g_string_append (s, dims[i].name);
    else
      g_string_append_printf (s, "%" G_GINT64_FORMAT, dims[i].size);
  }
  g_string_append_c (s, ']');
  for (int i = 0; i < ndim; i++)
    if (dims[i].name)
      g_string_append_printf (s, " with 1 <= %s <= %" G_GINT64_FORMAT, dims[i].name, dims[i].size);
  return g_string_free (s, FALSE);
}

/* g->dict[key]; NULL with an error when absent and required, NULL without one when optional. */
static const CbPickleValue *
get (const Group *g, const char *key, gboolean required, GError **error)
{
  const CbPickleValue *v = cb_pickle_dict_get (g->dict, key);
  if (!v && required)
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s.%s is missing", g->file, g->group, key);
  return v;
}

/* Refuse keys upstream's T3Cond(**t3) / flow.inference(**gen) would not accept either. */
static gboolean
check_keys (const Group *g, const char *const *allowed, GError **error)
{
  for (guint i = 0; i < g->dict->u.dict.keys->len; i++) {
    const CbPickleValue *k = g_ptr_array_index (g->dict->u.dict.keys, i);
    if (!g_strv_contains (allowed, k->u.str.s)) {
      g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: unexpected key %s.%s", g->file, g->group, k->u.str.s);
      return FALSE;
    }
  }
  return TRUE;
}

/* Read tensor g.key of `dtype` whose shape matches `dims`; the free sizes are returned in `shape`. */
static gpointer
read_tensor (const Group *g, const char *key, CbDType dtype, const Dim *dims, int ndim, guint64 *shape,
             GError **error)
{
  const CbPickleValue *v = get (g, key, TRUE, error);
  if (!v)
    return NULL;
  char *item = g_strconcat (g->group, ".", key, NULL);
  gpointer data = NULL;
  if (v->kind != CB_PICKLE_TENSOR) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s is a %s, expected a tensor", g->file, item,
                 cb_pickle_kind_name (v->kind));
    goto out;
  }
  const CbPickleTensor *t = &v->u.tensor;
  gboolean shape_ok = (t->ndim == ndim);
  for (int i = 0; shape_ok && i < ndim; i++)
    shape_ok = dims[i].name ? (t->shape[i] >= 1 && t->shape[i] <= (guint64) dims[i].size)
                            : (t->shape[i] == (guint64) dims[i].size);
  if (!shape_ok) {
    char *found = shape_text (t->shape, t->ndim), *want = expected_text (dims, ndim);
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s has shape %s, expected %s", g->file, item, found, want);
    g_free (found);
    g_free (want);
    goto out;
  }
  if (!cb_torchzip_read_tensor (g->z, t, item, dtype, MAX_STORAGE_BYTES, &data, error))
    goto out;
  memcpy (shape, t->shape, ndim * sizeof *shape);
out:
  g_free (item);
  return data;
}

/* An F32 tensor; every value must be finite (a NaN in a voice would silently poison every output). */
static float *
read_f32 (const Group *g, const char *key, const Dim *dims, int ndim, guint64 *shape, GError **error)
{
  float *x = read_tensor (g, key, CB_DTYPE_F32, dims, ndim, shape, error);
  guint64 n = 1;
  for (int i = 0; x && i < ndim; i++)
    n *= shape[i]; /* bounded: the tensor was read */
  for (guint64 i = 0; x && i < n; i++)
    if (!isfinite (x[i])) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: %s.%s[%" G_GUINT64_FORMAT "] is %g, expected a finite value",
                   g->file, g->group, key, i, x[i]);
      g_clear_pointer (&x, g_free);
    }
  return x;
}

/* I64 speech token ids, shape [1, `len_name`] with 1 <= len <= max_len, each in [0, speech_vocab). */
static int32_t *
read_tokens (const Group *g, const char *key, const char *len_name, int max_len, int *n_out, GError **error)
{
  const Dim dims[] = { { NULL, 1 }, { len_name, max_len } };
  guint64 shape[2];
  gint64 *ids = read_tensor (g, key, CB_DTYPE_I64, dims, 2, shape, error);
  if (!ids)
    return NULL;
  int32_t *tokens = g_new (int32_t, shape[1]);
  for (guint64 i = 0; i < shape[1]; i++) {
    if (ids[i] < 0 || ids[i] >= g->expect->speech_vocab) {
      g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                   "%s: %s.%s[%" G_GUINT64_FORMAT "] = %" G_GINT64_FORMAT " is outside the speech vocabulary [0, %d)",
                   g->file, g->group, key, i, ids[i], g->expect->speech_vocab);
      g_clear_pointer (&tokens, g_free);
      break;
    }
    tokens[i] = (int32_t) ids[i];
  }
  g_free (ids);
  *n_out = (int) shape[1];
  return tokens;
}

/* clap_emb and cond_prompt_speech_emb: upstream saves None; a tensor would be a feature we lack. */
static gboolean
check_none (const Group *g, const char *key, GError **error)
{
  const CbPickleValue *v = get (g, key, FALSE, error);
  if (v && v->kind != CB_PICKLE_NONE) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED, "%s: %s.%s is a %s; only None is supported", g->file,
                 g->group, key, cb_pickle_kind_name (v->kind));
    return FALSE;
  }
  return TRUE;
}

/* emotion_adv: `exaggeration * torch.ones(1, 1, 1)` from prepare_conditionals, or T3Cond's default
 * 0.5 as a plain float when the file was made without it. */
static gboolean
read_emotion_adv (const Group *g, float *out, GError **error)
{
  const CbPickleValue *v = get (g, "emotion_adv", FALSE, error);
  *out = 0.5f;
  if (!v)
    return TRUE;
  if (v->kind == CB_PICKLE_FLOAT) {
    if (!(fabs (v->u.f) <= FLT_MAX)) { /* also NaN; a cast out of float range would be undefined */
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: t3.emotion_adv is %g, expected a finite float", g->file, v->u.f);
      return FALSE;
    }
    *out = (float) v->u.f;
  } else if (v->kind == CB_PICKLE_TENSOR) {
    const Dim dims[] = { { NULL, 1 }, { NULL, 1 }, { NULL, 1 } };
    guint64 shape[3];
    float *x = read_f32 (g, "emotion_adv", dims, 3, shape, error);
    if (!x)
      return FALSE;
    *out = x[0];
    g_free (x);
  } else {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: t3.emotion_adv is a %s, expected a tensor [1, 1, 1] or a float",
                 g->file, cb_pickle_kind_name (v->kind));
    return FALSE;
  }
  if (!isfinite (*out)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: t3.emotion_adv is %g, expected a finite value", g->file, *out);
    return FALSE;
  }
  return TRUE;
}

static gboolean
load_t3 (const Group *g, CbConds *c, GError **error)
{
  static const char *const keys[] = { "speaker_emb", "clap_emb", "cond_prompt_speech_tokens",
                                      "cond_prompt_speech_emb", "emotion_adv", NULL };
  const Dim spk_dims[] = { { NULL, 1 }, { NULL, g->expect->speaker_embed_size } };
  guint64 shape[2];
  if (!check_keys (g, keys, error) || !check_none (g, "clap_emb", error)
      || !check_none (g, "cond_prompt_speech_emb", error))
    return FALSE;
  c->speaker_embed_size = g->expect->speaker_embed_size;
  if (!(c->speaker_emb = read_f32 (g, "speaker_emb", spk_dims, 2, shape, error)))
    return FALSE;
  /* None (no speech prompt, speech_cond_prompt_len = 0 upstream) is as valid as absent */
  const CbPickleValue *tokens = get (g, "cond_prompt_speech_tokens", FALSE, error);
  if (tokens && tokens->kind != CB_PICKLE_NONE
      && !(c->cond_prompt_tokens = read_tokens (g, "cond_prompt_speech_tokens", "N", g->expect->max_cond_prompt_tokens,
                                                &c->n_cond_prompt_tokens, error)))
    return FALSE;
  return read_emotion_adv (g, &c->emotion_adv, error);
}

static gboolean
load_gen (const Group *g, CbConds *c, GError **error)
{
  static const char *const keys[] = { "prompt_token", "prompt_token_len", "prompt_feat", "prompt_feat_len",
                                      "embedding", NULL };
  const CbCondsExpect *e = g->expect;
  guint64 shape[3];
  if (!check_keys (g, keys, error))
    return FALSE;
  if (!(c->prompt_tokens = read_tokens (g, "prompt_token", "Tp", e->max_prompt_tokens, &c->n_prompt_tokens, error)))
    return FALSE;

  const Dim len_dims[] = { { NULL, 1 } };
  gint64 *len = read_tensor (g, "prompt_token_len", CB_DTYPE_I64, len_dims, 1, shape, error);
  if (!len)
    return FALSE;
  gint64 tp = len[0];
  g_free (len);
  if (tp != c->n_prompt_tokens) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: gen.prompt_token_len is %" G_GINT64_FORMAT
                 ", but gen.prompt_token holds %d tokens", g->file, tp, c->n_prompt_tokens);
    return FALSE;
  }

  /* embed_ref keeps Tm = 2·Tp, cutting tokens to ⌊Tm/2⌋ when the clip is not a multiple of 40 ms */
  const Dim feat_dims[] = { { NULL, 1 }, { "Tm", 2 * (gint64) e->max_prompt_tokens + 1 }, { NULL, e->mel_bins } };
  c->mel_bins = e->mel_bins;
  if (!(c->prompt_feat = read_f32 (g, "prompt_feat", feat_dims, 3, shape, error)))
    return FALSE;
  c->n_prompt_frames = (int) shape[1];
  if (c->n_prompt_frames / 2 != c->n_prompt_tokens) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: gen.prompt_feat has %d frames for %d prompt tokens, expected 2·Tp or 2·Tp + 1 = %d or %d",
                 g->file, c->n_prompt_frames, c->n_prompt_tokens, 2 * c->n_prompt_tokens, 2 * c->n_prompt_tokens + 1);
    return FALSE;
  }
  const CbPickleValue *feat_len = get (g, "prompt_feat_len", FALSE, error);
  if (feat_len && feat_len->kind != CB_PICKLE_NONE
      && (feat_len->kind != CB_PICKLE_INT || feat_len->u.i != c->n_prompt_frames)) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: gen.prompt_feat_len is a %s, expected None or %d",
                 g->file, cb_pickle_kind_name (feat_len->kind), c->n_prompt_frames);
    return FALSE;
  }

  const Dim emb_dims[] = { { NULL, 1 }, { NULL, e->xvector_size } };
  c->xvector_size = e->xvector_size;
  return (c->embedding = read_f32 (g, "embedding", emb_dims, 2, shape, error)) != NULL;
}

/* root["t3"] / root["gen"] as a Group, checking it is a dict. */
static gboolean
open_group (CbTorchZip *z, const CbCondsExpect *expect, const char *name, Group *g, GError **error)
{
  *g = (Group) { .z = z, .file = cb_torchzip_name (z), .group = name, .expect = expect };
  g->dict = cb_pickle_dict_get (cb_torchzip_root (z), name);
  if (!g->dict) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: no '%s' entry at the top level", g->file, name);
    return FALSE;
  }
  if (g->dict->kind != CB_PICKLE_DICT) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s is a %s, expected a dict", g->file, name,
                 cb_pickle_kind_name (g->dict->kind));
    return FALSE;
  }
  return TRUE;
}

CbConds *
cb_conds_load (const char *path, const CbCondsExpect *expect, GError **error)
{
  CbCondsExpect defaults;
  if (!expect) {
    cb_conds_expect_default (&defaults);
    expect = &defaults;
  }
  if (expect->speaker_embed_size <= 0 || expect->mel_bins <= 0 || expect->xvector_size <= 0
      || expect->max_cond_prompt_tokens <= 0 || expect->max_prompt_tokens <= 0 || expect->speech_vocab <= 0
      || expect->max_prompt_tokens > G_MAXINT / 4) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "conds expectations for %s must all be positive", path);
    return NULL;
  }
  g_autoptr (CbTorchZip) z = cb_torchzip_open (path, error);
  if (!z)
    return NULL;
  const CbPickleValue *root = cb_torchzip_root (z);
  if (root->kind != CB_PICKLE_DICT || root->u.dict.keys->len != 2) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: top level is a %s of %u items, expected a dict {t3, gen}",
                 cb_torchzip_name (z), cb_pickle_kind_name (root->kind),
                 root->kind == CB_PICKLE_DICT ? root->u.dict.keys->len : 0);
    return NULL;
  }
  CbConds *c = g_new0 (CbConds, 1);
  Group t3, gen;
  if (!open_group (z, expect, "t3", &t3, error) || !open_group (z, expect, "gen", &gen, error)
      || !load_t3 (&t3, c, error) || !load_gen (&gen, c, error)) {
    cb_conds_free (c);
    return NULL;
  }
  return c;
}

void
cb_conds_free (CbConds *conds)
{
  if (!conds)
    return;
  g_free (conds->speaker_emb);
  g_free (conds->cond_prompt_tokens);
  g_free (conds->prompt_tokens);
  g_free (conds->prompt_feat);
  g_free (conds->embedding);
  g_free (conds);
}

/* Longest voice prompt S3Gen takes: 10 s of reference audio at 25 tokens/s (spec §6.1). */
#define CB_MAX_PROMPT_TOKENS 250

void
cb_conds_expect_from_config (CbCondsExpect *expect, const CbConfig *config)
{
  cb_conds_expect_default (expect);
  expect->speaker_embed_size = config->t3.speaker_embed_size;
  expect->max_cond_prompt_tokens = config->t3.speech_cond_prompt_len;
  expect->mel_bins = config->flow.output_size;
  expect->xvector_size = config->flow.spk_embed_dim;
  expect->speech_vocab = config->flow.vocab_size;
  expect->max_prompt_tokens = CB_MAX_PROMPT_TOKENS;
}
