/* tokenizer.c — tokenizer.json reader and encoder with the semantics of Hugging Face `tokenizers`
 * (tokenizer/added_vocabulary.rs, pre_tokenizers/whitespace.rs, models/bpe/{model,word}.rs).
 *
 * The file is untrusted: every field is type-checked, ids are bounded and unique, merges must name
 * known tokens, and every string is valid UTF-8. */
#include <string.h>

#include <glib/gstdio.h>

#include "cb-json.h"
#include "tokenizer.h"

/* Far above any real text vocabulary (704; 2454 multilingual); keeps vocab_size sane. */
#define CB_TOKENIZER_MAX_ID (1 << 24)
/* Real files are 20 KB (English) to 100 KB (multilingual): refuse to read anything absurd. */
#define CB_TOKENIZER_MAX_FILE_BYTES (64u << 20)
/* JSON nesting of a tokenizer.json is about 4; Sequences of Sequences add a little. */
#define CB_TOKENIZER_MAX_DEPTH 16
/* Nesting limit for pre-tokenizer Sequences. */
#define CB_TOKENIZER_MAX_PRE 8

typedef enum { PRE_WHITESPACE, PRE_WHITESPACE_SPLIT } PreTokenizer;

typedef struct {
  guint64 pair;           /* left id << 32 | right id: the hash key */
  guint32 rank;           /* position in the merges list: lower merges first */
  gint32 new_id;          /* id of the merged token */
} BpeMerge;

typedef struct {
  char *content;
  gint32 id;
  gboolean single_word, lstrip, rstrip, normalized;
} AddedToken;

struct _CbTokenizer {
  char *path;                       /* for messages */
  GHashTable *vocab;                /* model vocabulary: token (owned) -> id */
  GHashTable *added_ids;            /* added tokens: content -> id (contents owned by `added`) */
  GHashTable *merges;               /* &BpeMerge.pair -> BpeMerge* */
  BpeMerge *merge_list;
  AddedToken *added;
  guint n_added;
  PreTokenizer pre[CB_TOKENIZER_MAX_PRE];
  guint n_pre;
  gint32 unk_id;                    /* -1 when the model has no unk_token */
  gboolean fuse_unk, byte_fallback, ignore_merges;
  char *prefix, *suffix;            /* continuing_subword_prefix, end_of_word_suffix, or NULL */
  guint vocab_size;                 /* largest id + 1 */
};

/* ---- character classes of the Rust regex crate ------------------------------------------- */

gboolean
cb_tokenizer_is_rust_space (gunichar c)
{
  return cb_unichar_is_white_space (c);
}

gboolean
cb_tokenizer_is_rust_word (gunichar c)
{
  switch (g_unichar_type (c)) {
    case G_UNICODE_LOWERCASE_LETTER: case G_UNICODE_MODIFIER_LETTER: case G_UNICODE_OTHER_LETTER:
    case G_UNICODE_TITLECASE_LETTER: case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_SPACING_MARK: case G_UNICODE_ENCLOSING_MARK: case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_DECIMAL_NUMBER: case G_UNICODE_LETTER_NUMBER: case G_UNICODE_CONNECT_PUNCTUATION:
      return TRUE;
    default:
      break;
  }
  /* Join_Control, and the symbols that Other_Alphabetic makes alphabetic (circled and squared
   * Latin letters). */
  return c == 0x200c || c == 0x200d || (c >= 0x24b6 && c <= 0x24e9)
      || (c >= 0x1f130 && c <= 0x1f149) || (c >= 0x1f150 && c <= 0x1f169)
      || (c >= 0x1f170 && c <= 0x1f189);
}

/* ---- loading ------------------------------------------------------------------------------ */

void
cb_tokenizer_free (CbTokenizer *tok)
{
  if (!tok)
    return;
  g_clear_pointer (&tok->vocab, g_hash_table_unref);
  g_clear_pointer (&tok->added_ids, g_hash_table_unref);
  g_clear_pointer (&tok->merges, g_hash_table_unref);
  g_free (tok->merge_list);
  for (guint i = 0; i < tok->n_added; i++)
    g_free (tok->added[i].content);
  g_free (tok->added);
  g_free (tok->prefix);
  g_free (tok->suffix);
  g_free (tok->path);
  g_free (tok);
}

static gboolean
fail (GError **error, CbError code, const CbTokenizer *tok, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
fail (GError **error, CbError code, const CbTokenizer *tok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CB_ERROR, code, "%s: %s", tok->path, msg);
  g_free (msg);
  return FALSE;
}

/* A member that is absent or JSON null reads as NULL. */
static JsonNode *
member (JsonObject *obj, const char *name)
{
  JsonNode *n = json_object_get_member (obj, name);
  return (n && !JSON_NODE_HOLDS_NULL (n)) ? n : NULL;
}

/* The string value of a node, or NULL (with the error set) naming `what`. */
static const char *
node_string (const CbTokenizer *tok, JsonNode *n, const char *what, GError **error)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING) {
    fail (error, CB_ERROR_FORMAT, tok, "%s: expected a string, found %s", what, cb_json_kind (n));
    return NULL;
  }
  const char *s = json_node_get_string (n);
  if (!g_utf8_validate (s, -1, NULL)) {
    fail (error, CB_ERROR_FORMAT, tok, "%s: string is not valid UTF-8", what);
    return NULL;
  }
  return s;
}

/* An optional boolean member: absent or null gives `dflt`. */
static gboolean
opt_bool (const CbTokenizer *tok, JsonObject *obj, const char *name, const char *where,
          gboolean dflt, gboolean *out, GError **error)
{
  JsonNode *n = member (obj, name);
  if (!n) {
    *out = dflt;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return fail (error, CB_ERROR_FORMAT, tok, "%s.%s: expected true or false, found %s", where,
                 name, cb_json_kind (n));
  *out = json_node_get_boolean (n);
  return TRUE;
}

/* An optional string member: absent or null gives NULL. */
static gboolean
opt_string (const CbTokenizer *tok, JsonObject *obj, const char *name, const char *where,
            const char **out, GError **error)
{
  JsonNode *n = member (obj, name);
  *out = NULL;
  if (!n)
    return TRUE;
  char *what = g_strdup_printf ("%s.%s", where, name);
  *out = node_string (tok, n, what, error);
  g_free (what);
  return *out != NULL;
}

static gboolean
node_id (const CbTokenizer *tok, JsonNode *n, const char *what, gint32 *out, GError **error)
{
  gint64 v;
  if (!cb_json_get_int (n, &v))
    return fail (error, CB_ERROR_FORMAT, tok, "%s: expected an integer id, found %s", what,
                 cb_json_kind (n));
  if (v < 0 || v >= CB_TOKENIZER_MAX_ID)
    return fail (error, CB_ERROR_FORMAT, tok, "%s: id %" G_GINT64_FORMAT " out of range [0, %d)",
                 what, v, CB_TOKENIZER_MAX_ID);
  *out = (gint32) v;
  return TRUE;
}

static gboolean
lookup_id (GHashTable *table, const char *key, gint32 *out)
{
  gpointer v;
  if (!g_hash_table_lookup_extended (table, key, NULL, &v))
    return FALSE;
  *out = GPOINTER_TO_INT (v);
  return TRUE;
}

/* The "type" of a component object, for messages and dispatch. */
static const char *
component_type (JsonNode *n)
{
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return NULL;
  JsonNode *t = member (json_node_get_object (n), "type");
  if (!t || !JSON_NODE_HOLDS_VALUE (t) || json_node_get_value_type (t) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (t);
}

/* Anything that would change the ids and that we do not implement must be refused. */
static gboolean
reject_component (const CbTokenizer *tok, JsonObject *root, const char *name, GError **error)
{
  JsonNode *n = member (root, name);
  if (!n)
    return TRUE;
  const char *type = component_type (n);
  return fail (error, CB_ERROR_UNSUPPORTED, tok, "%s type '%s' is not supported (only null)", name,
               type ? type : cb_json_kind (n));
}

static gboolean
load_pre_tokenizer (CbTokenizer *tok, JsonNode *n, guint depth, GError **error)
{
  const char *type = component_type (n);
  if (!type)
    return fail (error, CB_ERROR_FORMAT, tok, "pre_tokenizer: expected an object with a \"type\"");
  if (strcmp (type, "Whitespace") == 0 || strcmp (type, "WhitespaceSplit") == 0) {
    if (tok->n_pre == CB_TOKENIZER_MAX_PRE)
      return fail (error, CB_ERROR_UNSUPPORTED, tok, "pre_tokenizer: more than %d steps",
                   CB_TOKENIZER_MAX_PRE);
    tok->pre[tok->n_pre++] = strcmp (type, "Whitespace") == 0 ? PRE_WHITESPACE
                                                                : PRE_WHITESPACE_SPLIT;
    return TRUE;
  }
  if (strcmp (type, "Sequence") == 0 && depth < CB_TOKENIZER_MAX_PRE) {
    JsonNode *list = member (json_node_get_object (n), "pretokenizers");
    if (!list || !JSON_NODE_HOLDS_ARRAY (list))
      return fail (error, CB_ERROR_FORMAT, tok, "pre_tokenizer Sequence: no \"pretokenizers\" list");
    JsonArray *a = json_node_get_array (list);
    for (guint i = 0; i < json_array_get_length (a); i++)
      if (!load_pre_tokenizer (tok, json_array_get_element (a, i), depth + 1, error))
        return FALSE;
    return TRUE;
  }
  return fail (error, CB_ERROR_UNSUPPORTED, tok, "pre_tokenizer type '%s' is not supported "
               "(supported: Whitespace, WhitespaceSplit, a Sequence of them)", type);
}

static gboolean
load_vocab (CbTokenizer *tok, JsonObject *model, GError **error)
{
  JsonNode *n = member (model, "vocab");
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, CB_ERROR_FORMAT, tok, "model.vocab: expected an object of token -> id");
  JsonObject *v = json_node_get_object (n);
  GHashTable *by_id = g_hash_table_new (NULL, NULL);
  gboolean ok = TRUE;
  JsonObjectIter it;
  const char *token;
  JsonNode *idn;
  json_object_iter_init (&it, v);
  while (ok && json_object_iter_next (&it, &token, &idn)) {
    gint32 id;
    char *what = g_strdup_printf ("model.vocab[\"%s\"]", token);
    ok = g_utf8_validate (token, -1, NULL)
        ? node_id (tok, idn, what, &id, error)
        : fail (error, CB_ERROR_FORMAT, tok, "model.vocab: a token is not valid UTF-8");
    if (ok && g_hash_table_contains (by_id, GINT_TO_POINTER (id)))
      ok = fail (error, CB_ERROR_FORMAT, tok, "%s: id %d already belongs to \"%s\"", what, id,
                 (const char *) g_hash_table_lookup (by_id, GINT_TO_POINTER (id)));
    if (ok) {
      g_hash_table_insert (by_id, GINT_TO_POINTER (id), (gpointer) token);
      g_hash_table_insert (tok->vocab, g_strdup (token), GINT_TO_POINTER (id));
      tok->vocab_size = MAX (tok->vocab_size, (guint) id + 1);
    }
    g_free (what);
  }
  g_hash_table_unref (by_id);
  return ok;
}

/* One merge as written: "a b" (legacy) or ["a", "b"]. */
static gboolean
merge_parts (const CbTokenizer *tok, JsonNode *n, guint index, char **a, char **b, GError **error)
{
  char what[64];
  g_snprintf (what, sizeof what, "model.merges[%u]", index);
  if (JSON_NODE_HOLDS_ARRAY (n)) {
    JsonArray *pair = json_node_get_array (n);
    if (json_array_get_length (pair) != 2)
      return fail (error, CB_ERROR_FORMAT, tok, "%s: expected 2 tokens, found %u", what,
                   json_array_get_length (pair));
    const char *l = node_string (tok, json_array_get_element (pair, 0), what, error);
    const char *r = l ? node_string (tok, json_array_get_element (pair, 1), what, error) : NULL;
    if (!r)
      return FALSE;
    *a = g_strdup (l);
    *b = g_strdup (r);
    return TRUE;
  }
  const char *s = node_string (tok, n, what, error);
  if (!s)
    return FALSE;
  const char *sp = strchr (s, ' ');
  if (!sp || strchr (sp + 1, ' '))
    return fail (error, CB_ERROR_FORMAT, tok, "%s: expected \"left right\" with one space, "
                 "found \"%s\"", what, s);
  *a = g_strndup (s, sp - s);
  *b = g_strdup (sp + 1);
  return TRUE;
}

static gboolean
load_merges (CbTokenizer *tok, JsonObject *model, GError **error)
{
  JsonNode *n = member (model, "merges");
  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    return fail (error, CB_ERROR_FORMAT, tok, "model.merges: expected a list");
  JsonArray *list = json_node_get_array (n);
  guint n_list = json_array_get_length (list);
  tok->merge_list = g_new0 (BpeMerge, MAX (n_list, 1));
  tok->merges = g_hash_table_new (g_int64_hash, g_int64_equal);
  gsize prefix_len = tok->prefix ? strlen (tok->prefix) : 0;
  guint rank = 0;
  gboolean pairs = n_list > 0 && JSON_NODE_HOLDS_ARRAY (json_array_get_element (list, 0));
  for (guint i = 0; i < n_list; i++) {
    JsonNode *e = json_array_get_element (list, i);
    if (JSON_NODE_HOLDS_ARRAY (e) != pairs)
      return fail (error, CB_ERROR_FORMAT, tok, "model.merges[%u]: mixes the \"a b\" and "
                   "[\"a\", \"b\"] forms", i);
    /* The legacy form may carry a "#version" header line, which is not a merge. */
    if (!pairs && JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
        && g_str_has_prefix (json_node_get_string (e), "#version"))
      continue;
    char *a = NULL, *b = NULL;
    if (!merge_parts (tok, e, i, &a, &b, error))
      return FALSE;
    gint32 a_id, b_id, new_id = -1;
    gboolean ok = lookup_id (tok->vocab, a, &a_id) && lookup_id (tok->vocab, b, &b_id);
    char *merged = NULL;
    /* The merged token is left + right without the right's continuing-subword prefix. */
    if (ok && strlen (b) >= prefix_len) {
      merged = g_strconcat (a, b + prefix_len, NULL);
      ok = lookup_id (tok->vocab, merged, &new_id);
    } else {
      ok = FALSE;
    }
    if (!ok)
      fail (error, CB_ERROR_FORMAT, tok, "model.merges[%u] (\"%s\", \"%s\"): %s is not in the "
            "vocabulary", i, a, b, merged ? merged : "a token");
    g_free (a);
    g_free (b);
    g_free (merged);
    if (!ok)
      return FALSE;
    BpeMerge *m = &tok->merge_list[rank];
    *m = (BpeMerge) { .pair = ((guint64) (guint32) a_id << 32) | (guint32) b_id, .rank = rank,
                      .new_id = new_id };
    /* A repeated pair takes its last rank, as the library's map insert does. */
    g_hash_table_replace (tok->merges, &m->pair, m);
    rank++;
  }
  return TRUE;
}

static gboolean
load_model (CbTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = member (root, "model");
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, CB_ERROR_FORMAT, tok, "model: expected an object");
  JsonObject *model = json_node_get_object (n);
  const char *type = component_type (n);
  if (type && strcmp (type, "BPE") != 0)
    return fail (error, CB_ERROR_UNSUPPORTED, tok, "model type '%s' is not supported (only BPE)",
                 type);
  JsonNode *dropout = member (model, "dropout");
  if (dropout) {
    if (!JSON_NODE_HOLDS_VALUE (dropout) || (json_node_get_value_type (dropout) != G_TYPE_DOUBLE
                                             && json_node_get_value_type (dropout) != G_TYPE_INT64))
      return fail (error, CB_ERROR_FORMAT, tok, "model.dropout: expected a number or null");
    double p = json_node_get_double (dropout);
    if (!(p >= 0.0 && p <= 1.0))
      return fail (error, CB_ERROR_FORMAT, tok, "model.dropout: %g is not in [0, 1]", p);
    if (p != 0.0)
      return fail (error, CB_ERROR_UNSUPPORTED, tok, "model.dropout %g: BPE dropout is random "
                   "and not supported (only null or 0)", p);
  }
  const char *unk, *prefix, *suffix;
  if (!opt_bool (tok, model, "fuse_unk", "model", FALSE, &tok->fuse_unk, error)
      || !opt_bool (tok, model, "byte_fallback", "model", FALSE, &tok->byte_fallback, error)
      || !opt_bool (tok, model, "ignore_merges", "model", FALSE, &tok->ignore_merges, error)
      || !opt_string (tok, model, "unk_token", "model", &unk, error)
      || !opt_string (tok, model, "continuing_subword_prefix", "model", &prefix, error)
      || !opt_string (tok, model, "end_of_word_suffix", "model", &suffix, error))
    return FALSE;
  tok->prefix = g_strdup (prefix);
  tok->suffix = g_strdup (suffix);
  if (!load_vocab (tok, model, error))
    return FALSE;
  tok->unk_id = -1;
  if (unk && !lookup_id (tok->vocab, unk, &tok->unk_id))
    return fail (error, CB_ERROR_FORMAT, tok, "model.unk_token \"%s\" is not in the vocabulary",
                 unk);
  return load_merges (tok, model, error);
}

/* Added tokens keep the id the library gives them: the vocabulary's id for a known content, else
 * the next id after the vocabulary (tokenizer/added_vocabulary.rs add_tokens). A file whose
 * listed id differs is refused rather than silently renumbered. */
static gboolean
load_added_tokens (CbTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = member (root, "added_tokens");
  tok->added_ids = g_hash_table_new (g_str_hash, g_str_equal);
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return fail (error, CB_ERROR_FORMAT, tok, "added_tokens: expected a list");
  JsonArray *list = json_node_get_array (n);
  guint count = json_array_get_length (list);
  tok->added = g_new0 (AddedToken, MAX (count, 1));
  gint64 next_id = g_hash_table_size (tok->vocab);
  GHashTable *vocab_ids = g_hash_table_new (NULL, NULL);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, tok->vocab);
  while (g_hash_table_iter_next (&it, &key, &value))
    g_hash_table_add (vocab_ids, value);
  gboolean ok = TRUE;
  for (guint i = 0; ok && i < count; i++) {
    char where[48];
    g_snprintf (where, sizeof where, "added_tokens[%u]", i);
    JsonNode *e = json_array_get_element (list, i);
    if (!JSON_NODE_HOLDS_OBJECT (e)) {
      ok = fail (error, CB_ERROR_FORMAT, tok, "%s: expected an object", where);
      break;
    }
    JsonObject *o = json_node_get_object (e);
    AddedToken t = { 0 };
    gboolean special;
    const char *content;
    gint32 listed;
    ok = opt_string (tok, o, "content", where, &content, error)
        && node_id (tok, member (o, "id"), where, &listed, error)
        && opt_bool (tok, o, "single_word", where, FALSE, &t.single_word, error)
        && opt_bool (tok, o, "lstrip", where, FALSE, &t.lstrip, error)
        && opt_bool (tok, o, "rstrip", where, FALSE, &t.rstrip, error)
        && opt_bool (tok, o, "special", where, FALSE, &special, error)
        && opt_bool (tok, o, "normalized", where, !special, &t.normalized, error);
    if (!ok)
      break;
    if (!content)
      ok = fail (error, CB_ERROR_FORMAT, tok, "%s: no content", where);
    else if (g_hash_table_contains (tok->added_ids, content))
      ok = fail (error, CB_ERROR_FORMAT, tok, "%s: \"%s\" is listed twice", where, content);
    if (!ok || !*content)
      continue;   /* the library ignores empty added tokens */
    if (!lookup_id (tok->vocab, content, &t.id)) {
      if (g_hash_table_contains (vocab_ids, GINT_TO_POINTER (next_id)))
        ok = fail (error, CB_ERROR_FORMAT, tok, "%s \"%s\": its id %" G_GINT64_FORMAT " is "
                   "already a vocabulary id", where, content, next_id);
      t.id = (gint32) next_id++;
    }
    if (ok && t.id != listed)
      ok = fail (error, CB_ERROR_MISMATCH, tok, "%s \"%s\": listed with id %d, but the tokenizers "
                 "library gives it id %d", where, content, listed, t.id);
    if (!ok)
      break;
    t.content = g_strdup (content);
    tok->added[tok->n_added++] = t;
    g_hash_table_insert (tok->added_ids, t.content, GINT_TO_POINTER (t.id));
    tok->vocab_size = MAX (tok->vocab_size, (guint) t.id + 1);
  }
  g_hash_table_unref (vocab_ids);
  return ok;
}

CbTokenizer *
cb_tokenizer_load (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  CbTokenizer *tok = g_new0 (CbTokenizer, 1);
  tok->path = g_strdup (path);
  tok->vocab = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  char *data = NULL;
  gsize len = 0;
  GError *io = NULL;
  JsonParser *parser = NULL;
  gboolean ok = FALSE;
  GStatBuf st;
  if (g_stat (path, &st) == 0 && st.st_size > CB_TOKENIZER_MAX_FILE_BYTES) {
    fail (error, CB_ERROR_FORMAT, tok, "%" G_GINT64_FORMAT " bytes is too large for a tokenizer "
          "(at most %u)", (gint64) st.st_size, CB_TOKENIZER_MAX_FILE_BYTES);
    goto out;
  }
  if (!g_file_get_contents (path, &data, &len, &io)) {
    fail (error, g_error_matches (io, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? CB_ERROR_NOT_FOUND
          : CB_ERROR_IO, tok, "cannot read the tokenizer: %s", io->message);
    g_error_free (io);
    goto out;
  }
  /* Strict parse: UTF-8, nesting depth, no duplicate keys (json-glib alone checks none). */
  parser = cb_json_parse (data, len, CB_TOKENIZER_MAX_DEPTH, FALSE, &io);
  if (!parser) {
    fail (error, CB_ERROR_FORMAT, tok, "%s", io->message);
    g_error_free (io);
    goto out;
  }
  JsonNode *root_node = json_parser_get_root (parser);
  if (!root_node || !JSON_NODE_HOLDS_OBJECT (root_node)) {
    fail (error, CB_ERROR_FORMAT, tok, "expected a JSON object at the top");
    goto out;
  }
  JsonObject *root = json_node_get_object (root_node);
  JsonNode *version = member (root, "version");
  if (version && (!JSON_NODE_HOLDS_VALUE (version)
                  || json_node_get_value_type (version) != G_TYPE_STRING
                  || strcmp (json_node_get_string (version), "1.0") != 0)) {
    fail (error, CB_ERROR_UNSUPPORTED, tok, "tokenizer.json version is not \"1.0\"");
    goto out;
  }
  /* The Python encode() applies truncation, padding and the post-processor (add_special_tokens
   * defaults to True), so each would change upstream's ids: refuse them unless null. */
  JsonNode *pre = member (root, "pre_tokenizer");
  ok = reject_component (tok, root, "normalizer", error)
      && reject_component (tok, root, "truncation", error)
      && reject_component (tok, root, "padding", error)
      && reject_component (tok, root, "post_processor", error)
      && (!pre || load_pre_tokenizer (tok, pre, 0, error))
      && load_model (tok, root, error)
      && load_added_tokens (tok, root, error);
  for (guint i = 0; ok && i < 2; i++) {
    const char *need = i == 0 ? "[START]" : "[STOP]";
    if (cb_tokenizer_token_id (tok, need) < 0)
      ok = fail (error, CB_ERROR_MISMATCH, tok, "no %s token (upstream EnTokenizer requires "
                 "[START] and [STOP])", need);
  }

out:
  if (parser)
    g_object_unref (parser);
  g_free (data);
  if (!ok) {
    cb_tokenizer_free (tok);
    return NULL;
  }
  return tok;
}

gint32
cb_tokenizer_token_id (const CbTokenizer *tok, const char *token)
{
  g_return_val_if_fail (tok != NULL && token != NULL, -1);
  gint32 id;
  /* Added tokens first, as the library's token_to_id does. */
  if (lookup_id (tok->added_ids, token, &id) || lookup_id (tok->vocab, token, &id))
    return id;
  return -1;
}

guint
cb_tokenizer_vocab_size (const CbTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, 0);
  return tok->vocab_size;
}

gboolean
cb_tokenizer_check_start_stop (const CbTokenizer *tok, gint32 start_id, gint32 stop_id,
                               GError **error)
{
  g_return_val_if_fail (tok != NULL, FALSE);
  gint32 start = cb_tokenizer_token_id (tok, "[START]");
  gint32 stop = cb_tokenizer_token_id (tok, "[STOP]");
  if (start != start_id || stop != stop_id)
    return fail (error, CB_ERROR_MISMATCH, tok, "the model config expects [START] = %d and "
                 "[STOP] = %d, the tokenizer has %d and %d", start_id, stop_id, start, stop);
  return TRUE;
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct {
  gint32 id;
  gint prev, next;        /* neighbours in the word, -1 at the ends */
  gsize len;              /* bytes covered; 0 once merged into the left neighbour */
} BpeSymbol;

typedef struct {
  const CbTokenizer *tok;
  GArray *ids;            /* output, gint32 */
  GString *scratch;       /* NUL-terminated keys for vocabulary lookups */
  GString *piece;         /* byte-fallback piece with its prefix/suffix */
  GArray *symbols;        /* BpeSymbol, one word at a time */
  GArray *heap;           /* BpeMerge candidates, pair = position of the left symbol */
  GArray *spans, *spans_next;  /* pre-tokenizer steps' output: pairs of byte offsets */
} Encoder;

struct _CbTokenizerScratch {
  GString *text;          /* the input with ' ' → "[SPACE]" */
  Encoder  e;             /* its buffers (tok and ids are set per encode) */
};

static void
append_id (Encoder *e, gint32 id)
{
  g_array_append_val (e->ids, id);
}

/* Id of the vocabulary token a + b[0..b_len) + c (a and c may be NULL). */
static gboolean
vocab_id (Encoder *e, const char *a, const char *b, gsize b_len, const char *c, gint32 *out)
{
  g_string_truncate (e->scratch, 0);
  if (a)
    g_string_append (e->scratch, a);
  g_string_append_len (e->scratch, b, b_len);
  if (c)
    g_string_append (e->scratch, c);
  return lookup_id (e->tok->vocab, e->scratch->str, out);
}

static void
add_symbol (Encoder *e, gint32 id, gsize len)
{
  gint n = (gint) e->symbols->len;
  if (n > 0)
    g_array_index (e->symbols, BpeSymbol, n - 1).next = n;
  BpeSymbol s = { .id = id, .prev = n - 1, .next = -1, .len = len };
  g_array_append_val (e->symbols, s);
}

/* Min-heap on (rank, position): the library pops the lowest rank, leftmost first. */
static gboolean
merge_before (const BpeMerge *x, const BpeMerge *y)
{
  return x->rank != y->rank ? x->rank < y->rank : x->pair < y->pair;
}

static void
heap_push (GArray *heap, BpeMerge m)
{
  g_array_append_val (heap, m);
  BpeMerge *h = (BpeMerge *) heap->data;
  for (guint i = heap->len - 1; i > 0;) {
    guint parent = (i - 1) / 2;
    if (!merge_before (&h[i], &h[parent]))
      break;
    BpeMerge t = h[i]; h[i] = h[parent]; h[parent] = t;
    i = parent;
  }
}

static BpeMerge
heap_pop (GArray *heap)
{
  BpeMerge *h = (BpeMerge *) heap->data;
  BpeMerge top = h[0];
  h[0] = h[heap->len - 1];
  g_array_set_size (heap, heap->len - 1);
  for (guint i = 0;;) {
    guint l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap->len && merge_before (&h[l], &h[m]))
      m = l;
    if (r < heap->len && merge_before (&h[r], &h[m]))
      m = r;
    if (m == i)
      break;
    BpeMerge t = h[i]; h[i] = h[m]; h[m] = t;
    i = m;
  }
  return top;
}

static const BpeMerge *
find_merge (const CbTokenizer *tok, gint32 left, gint32 right)
{
  guint64 key = ((guint64) (guint32) left << 32) | (guint32) right;
  return g_hash_table_lookup (tok->merges, &key);
}

/* Queue the merge of the symbol at pos with its right neighbour, if the pair is a merge. */
static void
queue_merge (Encoder *e, gint pos)
{
  BpeSymbol *s = (BpeSymbol *) e->symbols->data;
  if (pos < 0 || s[pos].next < 0)
    return;
  const BpeMerge *m = find_merge (e->tok, s[pos].id, s[s[pos].next].id);
  if (m)
    heap_push (e->heap, (BpeMerge) { .pair = (guint64) pos, .rank = m->rank, .new_id = m->new_id });
}

/* word.rs merge_all without dropout. Entries left over from earlier merges are recognised by the
 * pair at their position no longer producing their new id. */
static void
merge_all (Encoder *e)
{
  g_array_set_size (e->heap, 0);
  for (gint i = 0; i + 1 < (gint) e->symbols->len; i++)
    queue_merge (e, i);
  BpeSymbol *s = (BpeSymbol *) e->symbols->data;
  while (e->heap->len > 0) {
    BpeMerge top = heap_pop (e->heap);
    gint pos = (gint) top.pair;
    if (s[pos].len == 0 || s[pos].next < 0)
      continue;
    gint right = s[pos].next;
    const BpeMerge *now = find_merge (e->tok, s[pos].id, s[right].id);
    if (!now || now->new_id != top.new_id)
      continue;
    s[pos].id = top.new_id;
    s[pos].len += s[right].len;
    s[pos].next = s[right].next;
    s[right].len = 0;
    if (s[pos].next >= 0)
      s[s[pos].next].prev = pos;
    queue_merge (e, s[pos].prev);
    queue_merge (e, pos);
  }
}

/* models/bpe/model.rs merge_word + word_to_tokens for one pre-token. */
static void
bpe_word (Encoder *e, const char *w, gsize len)
{
  const CbTokenizer *tok = e->tok;
  gint32 id;
  if (len == 0)
    return;
  if (tok->ignore_merges && vocab_id (e, NULL, w, len, NULL, &id)) {
    append_id (e, id);
    return;
  }
  g_array_set_size (e->symbols, 0);
  gint32 unk_pending = -1;          /* an [UNK] not yet added, kept open for fusing */
  gsize unk_len = 0;
  for (const char *p = w, *end = w + len; p < end;) {
    const char *q = g_utf8_next_char (p);
    gsize n = q - p;
    const char *prefix = p > w ? tok->prefix : NULL;
    const char *suffix = q == end ? tok->suffix : NULL;
    if (vocab_id (e, prefix, p, n, suffix, &id)) {
      if (unk_pending >= 0)
        add_symbol (e, unk_pending, unk_len);
      unk_pending = -1;
      add_symbol (e, id, n);
      p = q;
      continue;
    }
    if (tok->byte_fallback) {
      /* Every byte of the piece (with its prefix/suffix) as a <0xNN> token, or none at all. The
       * library adds them without first flushing a pending [UNK], which then lands after them. */
      GString *piece = e->piece;
      g_string_assign (piece, prefix ? prefix : "");
      g_string_append_len (piece, p, n);
      if (suffix)
        g_string_append (piece, suffix);
      gsize first = e->symbols->len;
      gboolean all = TRUE;
      for (gsize i = 0; all && i < piece->len; i++) {
        char name[8];
        g_snprintf (name, sizeof name, "<0x%02X>", (guint8) piece->str[i]);
        all = lookup_id (tok->vocab, name, &id);
        if (all)
          add_symbol (e, id, 1);
      }
      if (all) {
        p = q;
        continue;
      }
      /* undo a partial byte run */
      g_array_set_size (e->symbols, first);
      if (first > 0)
        g_array_index (e->symbols, BpeSymbol, first - 1).next = -1;
    }
    if (tok->unk_id >= 0) {
      if (unk_pending >= 0 && tok->fuse_unk) {
        unk_len += n;
      } else {
        if (unk_pending >= 0)
          add_symbol (e, unk_pending, unk_len);
        unk_pending = tok->unk_id;
        unk_len = n;
      }
    }
    p = q;
  }
  if (unk_pending >= 0)
    add_symbol (e, unk_pending, unk_len);

  merge_all (e);
  const BpeSymbol *s = (const BpeSymbol *) e->symbols->data;
  for (guint i = 0; i < e->symbols->len; i++)
    if (s[i].len > 0)
      append_id (e, s[i].id);
}

/* Pre-tokenize s[start..end) (Whitespace: runs of \w, runs of [^\w\s], spaces dropped;
 * WhitespaceSplit: runs of non-space) and BPE-encode each piece. */
static void
pre_tokenize_and_encode (Encoder *e, const char *s, gsize start, gsize end)
{
  GArray *spans = e->spans, *next = e->spans_next;
  g_array_set_size (spans, 0);
  g_array_append_val (spans, start);
  g_array_append_val (spans, end);
  for (guint k = 0; k < e->tok->n_pre; k++) {
    g_array_set_size (next, 0);
    for (guint i = 0; i < spans->len; i += 2) {
      const char *p = s + g_array_index (spans, gsize, i);
      const char *stop = s + g_array_index (spans, gsize, i + 1);
      while (p < stop) {
        gunichar c = g_utf8_get_char (p);
        if (cb_tokenizer_is_rust_space (c)) {
          p = g_utf8_next_char (p);
          continue;
        }
        /* 0: not space (WhitespaceSplit); 1: word; 2: other (Whitespace) */
        int cls = e->tok->pre[k] == PRE_WHITESPACE_SPLIT ? 0 : cb_tokenizer_is_rust_word (c) ? 1 : 2;
        const char *q = p;
        while (q < stop) {
          gunichar d = g_utf8_get_char (q);
          if (cb_tokenizer_is_rust_space (d)
              || (cls != 0 && (cb_tokenizer_is_rust_word (d) ? 1 : 2) != cls))
            break;
          q = g_utf8_next_char (q);
        }
        gsize a = p - s, b = q - s;
        g_array_append_val (next, a);
        g_array_append_val (next, b);
        p = q;
      }
    }
    GArray *t = spans; spans = next; next = t;
  }
  for (guint i = 0; i < spans->len; i += 2) {
    gsize a = g_array_index (spans, gsize, i), b = g_array_index (spans, gsize, i + 1);
    bpe_word (e, s + a, b - a);
  }
  e->spans = spans;
  e->spans_next = next;
}

/* Length of the whitespace run ending at s + end (going left, not before start). */
static gsize
space_run_before (const char *s, gsize start, gsize end)
{
  const char *p = s + end;
  while (p > s + start) {
    const char *q = g_utf8_prev_char (p);
    if (!cb_tokenizer_is_rust_space (g_utf8_get_char (q)))
      break;
    p = q;
  }
  return (s + end) - p;
}

static gsize
space_run_after (const char *s, gsize start, gsize end)
{
  const char *p = s + start;
  while (p < s + end && cb_tokenizer_is_rust_space (g_utf8_get_char (p)))
    p = g_utf8_next_char (p);
  return p - (s + start);
}

/* Leftmost-longest added token of the pass in s[from..end): its index, or -1. */
static gint
find_added (const CbTokenizer *tok, gboolean normalized, const char *s, gsize from, gsize end,
            gsize *at)
{
  for (gsize i = from; i < end; i++) {
    gint best = -1;
    gsize best_len = 0;
    for (guint k = 0; k < tok->n_added; k++) {
      const AddedToken *t = &tok->added[k];
      gsize n = strlen (t->content);
      if (t->normalized == normalized && n > best_len && n <= end - i
          && memcmp (s + i, t->content, n) == 0) {
        best = (gint) k;
        best_len = n;
      }
    }
    if (best >= 0) {
      *at = i;
      return best;
    }
  }
  return -1;
}

/* added_vocabulary.rs extract_and_normalize: pass 0 cuts out the non-normalized added tokens,
 * pass 1 (after the normalizer, none here) the normalized ones; pass 2 pre-tokenizes. */
static void
encode_span (Encoder *e, const char *s, gsize start, gsize end, int pass)
{
  if (pass == 2) {
    if (e->tok->n_pre == 0)
      bpe_word (e, s + start, end - start);
    else
      pre_tokenize_and_encode (e, s, start, end);
    return;
  }
  gsize cursor = start, done = start, at;
  gint k;
  while (cursor < end && (k = find_added (e->tok, pass == 1, s, cursor, end, &at)) >= 0) {
    const AddedToken *t = &e->tok->added[k];
    gsize mstart = at, mstop = at + strlen (t->content);
    cursor = mstop;   /* matches never overlap, whether kept or not */
    if (t->single_word) {
      gboolean left_ok = mstart == start
          || !cb_tokenizer_is_rust_word (g_utf8_get_char (g_utf8_prev_char (s + mstart)));
      gboolean right_ok = mstop == end || !cb_tokenizer_is_rust_word (g_utf8_get_char (s + mstop));
      if (!left_ok || !right_ok)
        continue;
    }
    if (t->lstrip)
      mstart -= space_run_before (s, start, mstart);
    if (t->rstrip)
      mstop += space_run_after (s, mstop, end);
    mstart = MAX (mstart, done);   /* spaces a previous token already took */
    if (done < mstart)
      encode_span (e, s, done, mstart, pass + 1);
    append_id (e, t->id);
    done = mstop;
  }
  if (done < end)
    encode_span (e, s, done, end, pass + 1);
}

CbTokenizerScratch *
cb_tokenizer_scratch_new_sized (gsize max_chars)
{
  /* a character is at most 4 bytes and a space becomes 7 ("[SPACE]"); a word has at most as many
   * symbols, merge candidates and spans as characters */
  const gsize n = MAX (max_chars, 16);
  CbTokenizerScratch *s = g_new0 (CbTokenizerScratch, 1);
  s->text = g_string_sized_new (7 * n + 1);
  s->e.scratch = g_string_sized_new (4 * n + 64);
  s->e.piece = g_string_sized_new (64);
  s->e.symbols = g_array_sized_new (FALSE, FALSE, sizeof (BpeSymbol), (guint) n);
  s->e.heap = g_array_sized_new (FALSE, FALSE, sizeof (BpeMerge), (guint) (2 * n));
  s->e.spans = g_array_sized_new (FALSE, FALSE, sizeof (gsize), (guint) (2 * n));
  s->e.spans_next = g_array_sized_new (FALSE, FALSE, sizeof (gsize), (guint) (2 * n));
  return s;
}

CbTokenizerScratch *
cb_tokenizer_scratch_new (void)
{
  return cb_tokenizer_scratch_new_sized (0);
}

void
cb_tokenizer_scratch_free (CbTokenizerScratch *s)
{
  if (!s)
    return;
  g_string_free (s->text, TRUE);
  g_string_free (s->e.scratch, TRUE);
  g_string_free (s->e.piece, TRUE);
  g_array_free (s->e.symbols, TRUE);
  g_array_free (s->e.heap, TRUE);
  g_array_free (s->e.spans, TRUE);
  g_array_free (s->e.spans_next, TRUE);
  g_free (s);
}

gboolean
cb_tokenizer_encode_with (const CbTokenizer *tok, CbTokenizerScratch *scratch, const char *utf8,
                          GArray *ids_out, GError **error)
{
  g_return_val_if_fail (tok != NULL && scratch != NULL && utf8 != NULL && ids_out != NULL, FALSE);
  g_return_val_if_fail (g_array_get_element_size (ids_out) == sizeof (gint32), FALSE);
  if (!g_utf8_validate (utf8, -1, NULL)) {
    g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT, "text to tokenize is not valid UTF-8");
    return FALSE;
  }
  /* EnTokenizer.encode: spaces become the literal [SPACE] token text. */
  GString *text = scratch->text;
  g_string_truncate (text, 0);
  for (const char *p = utf8; *p; p++) {
    if (*p == ' ')
      g_string_append (text, "[SPACE]");
    else
      g_string_append_c (text, *p);
  }
  Encoder *e = &scratch->e;
  e->tok = tok;
  e->ids = ids_out;
  encode_span (e, text->str, 0, text->len, 0);
  e->ids = NULL;
  return TRUE;
}

gboolean
cb_tokenizer_encode (const CbTokenizer *tok, const char *utf8, GArray *ids_out, GError **error)
{
  CbTokenizerScratch *scratch = cb_tokenizer_scratch_new ();
  gboolean ok = cb_tokenizer_encode_with (tok, scratch, utf8, ids_out, error);
  cb_tokenizer_scratch_free (scratch);
  return ok;
}
