/* cb-json.h — small json-glib helpers shared by the loaders that read JSON headers and files. */
#pragma once

#include <json-glib/json-glib.h>

#include "cb-common.h"

G_BEGIN_DECLS

/* What a node holds, for error messages: "a string", "an array", "a negative integer", ... */
const char *cb_json_kind (JsonNode *node);

/* TRUE and *out set if node is a JSON integer (not a number with a fraction or exponent). */
gboolean    cb_json_get_int (JsonNode *node, gint64 *out);

G_END_DECLS
