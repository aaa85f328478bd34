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
