/* cb-json.c — json-glib helpers for messages and strict integer reads. */
#include "cb-json.h"

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

/* The checks json-glib does not make, in one pass that tracks strings and nesting. */
static gboolean
check_structure (const char *text, gsize len, int max_depth, GError **error)
{
  int depth = 0;
  gboolean in_string = FALSE, escaped = FALSE;
  for (gsize i = 0; i < len; i++) {
    guchar c = (guchar) text[i];
    if (in_string) {
      if (c < 0x20) {
        g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                     "not valid JSON: control character 0x%02x inside a string at offset %"
                     G_GSIZE_FORMAT, c, i);
        return FALSE;
      }
      if (escaped)
        escaped = FALSE;
      else if (c == '\\')
        escaped = TRUE;
      else if (c == '"')
        in_string = FALSE;
    } else if (c == '"') {
      in_string = TRUE;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                     "JSON nested deeper than %d levels at offset %" G_GSIZE_FORMAT, max_depth, i);
        return FALSE;
      }
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return TRUE;
}

JsonParser *
cb_json_parse (const char *text, gsize len, int max_depth, GError **error)
{
  const char *bad;
  if (!g_utf8_validate (text, (gssize) len, &bad)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "not valid UTF-8 (byte 0x%02x at offset %" G_GSIZE_FORMAT ")", (guchar) *bad,
                 (gsize) (bad - text));
    return NULL;
  }
  if (!check_structure (text, len, max_depth, error))
    return NULL;
  JsonParser *parser = json_parser_new_immutable ();
  GError *jerr = NULL;
  if (!json_parser_load_from_data (parser, text, (gssize) len, &jerr)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "not valid JSON: %s", jerr->message);
    g_error_free (jerr);
    g_object_unref (parser);
    return NULL;
  }
  if (!json_parser_get_root (parser)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "no JSON value (empty text)");
    g_object_unref (parser);
    return NULL;
  }
  return parser;
}
