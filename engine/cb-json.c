/* cb-json.c — json-glib helpers for messages and strict integer reads. */
#include "cb-json.h"

#include <string.h>

const char *
cb_json_kind (JsonNode *n)
{
  if (!n)
    return "nothing";
  if (JSON_NODE_HOLDS_NULL (n))
    return "null";
  if (JSON_NODE_HOLDS_OBJECT (n))
    return "an object";
  if (JSON_NODE_HOLDS_ARRAY (n))
    return "an array";
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_STRING)
    return "a string";
  if (t == G_TYPE_BOOLEAN)
    return "a boolean";
  if (t == G_TYPE_DOUBLE)
    return "a non-integer number";
  return json_node_get_int (n) < 0 ? "a negative integer" : "an integer";
}

/* json-glib keeps integers as gint64 and anything with a fraction or exponent as double. */
gboolean
cb_json_get_int (JsonNode *n, gint64 *out)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

/* One open object or array during the raw scan. */
typedef struct {
  gboolean    is_object;
  gboolean    expect_key;  /* the next string in this object is a key */
  GHashTable *keys;        /* decoded keys seen so far (objects only, created on first key) */
  const char *name;        /* the key this container is the value of, for messages; may be NULL */
} Frame;

/* The decoded text of a raw JSON string body. Without backslashes the raw bytes are the string;
 * otherwise json-glib decodes it, so escapes mean exactly what they mean to the parser. NULL if
 * it does not decode (the parse that follows reports why). */
static char *
decode_string (const char *raw, gsize len)
{
  if (!memchr (raw, '\\', len))
    return g_strndup (raw, len);
  char *wrapped = g_strdup_printf ("[\"%.*s\"]", (int) len, raw);
  JsonParser *p = json_parser_new_immutable ();
  char *out = NULL;
  if (json_parser_load_from_data (p, wrapped, -1, NULL)) {
    JsonNode *root = json_parser_get_root (p);
    JsonArray *a = root && JSON_NODE_HOLDS_ARRAY (root) ? json_node_get_array (root) : NULL;
    if (a && json_array_get_length (a) == 1)
      out = g_strdup (json_array_get_string_element (a, 0));
  }
  g_object_unref (p);
  g_free (wrapped);
  return out;
}

/* The checks json-glib does not make, in one pass over the raw text that tracks strings and
 * nesting. The text may still be malformed JSON here; the scan only has to stay in bounds, and a
 * duplicate found in malformed text is reported only if json-glib accepts the text (*dup_error). */
static gboolean
scan (const char *text, gsize len, int max_depth, gboolean check_dups, GError **error,
      GError **dup_error)
{
  Frame stack[CB_JSON_MAX_DEPTH];
  int depth = 0;
  gboolean in_string = FALSE, escaped = FALSE, string_is_key = FALSE, ok = TRUE;
  gsize string_begin = 0;
  const char *last_key = NULL;  /* owned by the frame's key table */

  for (gsize i = 0; i < len && ok; i++) {
    guchar c = (guchar) text[i];
    Frame *top = depth > 0 ? &stack[depth - 1] : NULL;
    if (in_string) {
      if (c < 0x20) {
        g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                     "not valid JSON: control character 0x%02x inside a string at offset %"
                     G_GSIZE_FORMAT, c, i);
        ok = FALSE;
      } else if (escaped) {
        escaped = FALSE;
      } else if (c == '\\') {
        escaped = TRUE;
      } else if (c == '"') {
        in_string = FALSE;
        if (string_is_key && check_dups && top) {
          char *key = decode_string (text + string_begin, i - string_begin);
          if (!key)
            continue;
          if (!top->keys)
            top->keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
          if (g_hash_table_contains (top->keys, key)) {
            if (!*dup_error)
              g_set_error (dup_error, CB_ERROR, CB_ERROR_FORMAT,
                           "key '%s' appears more than once in %s%s%s", key,
                           top->name ? "'" : "the top-level object", top->name ? top->name : "",
                           top->name ? "'" : "");
            g_free (key);
          } else {
            g_hash_table_add (top->keys, key);
            last_key = key;
          }
        }
      }
      continue;
    }
    switch (c) {
    case '"':
      in_string = TRUE;
      string_is_key = top && top->is_object && top->expect_key;
      string_begin = i + 1;
      break;
    case '{':
    case '[':
      if (depth >= max_depth || depth >= CB_JSON_MAX_DEPTH) {
        g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                     "JSON nested deeper than %d levels at offset %" G_GSIZE_FORMAT, max_depth, i);
        ok = FALSE;
        break;
      }
      stack[depth] = (Frame) {
        .is_object = (c == '{'), .expect_key = (c == '{'), .keys = NULL,
        .name = top ? (top->is_object ? last_key : top->name) : NULL,
      };
      depth++;
      break;
    case '}':
    case ']':
      if (depth > 0) {
        depth--;
        if (stack[depth].keys)
          g_hash_table_unref (stack[depth].keys);
      }
      break;
    case ',':
      if (top && top->is_object)
        top->expect_key = TRUE;
      break;
    case ':':
      if (top && top->is_object)
        top->expect_key = FALSE;
      break;
    default:
      break;
    }
  }
  /* Names of open frames point into the key tables: free from the innermost out. */
  while (depth > 0) {
    depth--;
    if (stack[depth].keys)
      g_hash_table_unref (stack[depth].keys);
  }
  return ok;
}

JsonParser *
cb_json_parse (const char *text, gsize len, int max_depth, gboolean allow_duplicate_keys,
               GError **error)
{
  const char *bad;
  if (!g_utf8_validate (text, (gssize) len, &bad)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "not valid UTF-8 (byte 0x%02x at offset %" G_GSIZE_FORMAT ")", (guchar) *bad,
                 (gsize) (bad - text));
    return NULL;
  }
  GError *dup_error = NULL;
  if (!scan (text, len, max_depth, !allow_duplicate_keys, error, &dup_error)) {
    g_clear_error (&dup_error);
    return NULL;
  }
  JsonParser *parser = json_parser_new_immutable ();
  GError *jerr = NULL;
  if (!json_parser_load_from_data (parser, text, (gssize) len, &jerr)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "not valid JSON: %s", jerr->message);
    g_error_free (jerr);
  } else if (dup_error) {
    g_propagate_error (error, g_steal_pointer (&dup_error));
  } else if (!json_parser_get_root (parser)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "no JSON value (empty text)");
  } else {
    return parser;
  }
  g_clear_error (&dup_error);
  g_object_unref (parser);
  return NULL;
}
