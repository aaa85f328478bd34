/* cb-json.h — small json-glib helpers shared by the loaders that read JSON headers and files. */
#pragma once

#include <json-glib/json-glib.h>

#include "cb-common.h"

G_BEGIN_DECLS

/* What a node holds, for error messages: "a string", "an array", "a negative integer", ... */
const char *cb_json_kind (JsonNode *node);

/* TRUE and *out set if node is a JSON integer (not a number with a fraction or exponent). */
gboolean    cb_json_get_int (JsonNode *node, gint64 *out);

/* Deepest nesting cb_json_parse accepts at all. */
#define CB_JSON_MAX_DEPTH 64

/* Parse untrusted JSON text. Besides what json-glib checks, it requires valid UTF-8 (no NUL), no
 * raw control characters inside strings (JSON forbids them; json-glib lets them through), nesting
 * no deeper than max_depth (<= CB_JSON_MAX_DEPTH; json-glib recurses per level, so "[[[[..." a
 * million deep would overflow the stack) and, unless allow_duplicate_keys, no key twice in one
 * object (json-glib silently keeps the last one). Returns the parser holding the root, or NULL
 * with a CB_ERROR_FORMAT error whose message does not name the file: callers prefix it. */
JsonParser *cb_json_parse (const char *text, gsize len, int max_depth,
                           gboolean allow_duplicate_keys, GError **error);

G_END_DECLS
