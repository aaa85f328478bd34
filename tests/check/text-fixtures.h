/* text-fixtures.h — loading the JSON fixtures of tests/data/text/ (made by
 * tests/reference/make_text_golden.py) for test-text.c and test-tokenizer.c. */
#pragma once

#include <json-glib/json-glib.h>

#include "cb-check.h"

/* Parse tests/data/text/<name>; fails the test if it cannot. Unref the parser when done; the root
 * object lives as long as the parser. */
static inline JsonObject *
text_fixture_load (const char *name, JsonParser **parser_out)
{
  char *rel = g_build_filename ("text", name, NULL);
  char *path = cb_test_data_path (rel);
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  gboolean ok = json_parser_load_from_file (parser, path, &error);
  ck_assert_msg (ok, "cannot read %s: %s", path, error ? error->message : "?");
  g_free (path);
  g_free (rel);
  *parser_out = parser;
  return json_node_get_object (json_parser_get_root (parser));
}

/* Golden cases: an array of {input, norm, ids, raw_ids, ids_b}. */
static inline JsonArray *
text_fixture_cases (JsonObject *golden)
{
  JsonArray *cases = json_object_get_array_member (golden, "cases");
  ck_assert (cases != NULL && json_array_get_length (cases) >= 250);
  return cases;
}

/* Is c inside one of the sorted [first, last] pairs of a unicode.json range list? */
static inline gboolean
text_fixture_in_ranges (JsonArray *ranges, gunichar c)
{
  guint lo = 0, hi = json_array_get_length (ranges);
  while (lo < hi) {
    guint mid = (lo + hi) / 2;
    JsonArray *r = json_array_get_array_element (ranges, mid);
    if (c < (gunichar) json_array_get_int_element (r, 0))
      hi = mid;
    else if (c > (gunichar) json_array_get_int_element (r, 1))
      lo = mid + 1;
    else
      return TRUE;
  }
  return FALSE;
}
