/* Units of engine/tokenizer.c: ids against upstream EnTokenizer (the `tokenizers` library) on four
 * tokenizer.json files that together use every supported feature, the Rust character classes
 * over every code point, and refusal of malformed or unsupported files. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "text-fixtures.h"
#include "tokenizer.h"

static CbTokenizer *
load_fixture (const char *name)
{
  char *rel = g_build_filename ("text", name, NULL);
  char *path = cb_test_data_path (rel);
  GError *error = NULL;
  CbTokenizer *tok = cb_tokenizer_load (path, &error);
  ck_assert_msg (tok != NULL, "%s: %s", path, error ? error->message : "?");
  g_free (path);
  g_free (rel);
  return tok;
}

static void
assert_ids (const CbTokenizer *tok, const char *text, JsonArray *want, const char *label, guint i)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  GError *error = NULL;
  ck_assert_msg (cb_tokenizer_encode (tok, text, ids, &error), "%s", error ? error->message : "");
  guint n = json_array_get_length (want);
  gboolean same = ids->len == n;
  for (guint k = 0; same && k < n; k++)
    same = g_array_index (ids, gint32, k) == json_array_get_int_element (want, k);
  if (!same) {
    GString *got = g_string_new (NULL);
    for (guint k = 0; k < ids->len; k++)
      g_string_append_printf (got, "%d ", g_array_index (ids, gint32, k));
    ck_abort_msg ("%s case %u '%s': got [%s], %u ids wanted", label, i, text, got->str, n);
  }
  g_array_free (ids, TRUE);
}

/* Every golden case through one tokenizer file: `field` holds the ids of `text_field`. */
static void
compare_golden (const char *file, const char *text_field, const char *field)
{
  JsonParser *parser;
  JsonArray *cases = text_fixture_cases (text_fixture_load ("golden.json", &parser));
  CbTokenizer *tok = load_fixture (file);
  guint n = json_array_get_length (cases);
  for (guint i = 0; i < n; i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    assert_ids (tok, json_object_get_string_member (c, text_field),
                json_object_get_array_member (c, field), field, i);
  }
  printf ("%s: %u upstream encodings of '%s' compared\n", file, n, text_field);
  cb_tokenizer_free (tok);
  g_object_unref (parser);
}

START_TEST (test_golden_main)
{
  compare_golden ("tokenizer.json", "norm", "ids");
  compare_golden ("tokenizer.json", "input", "raw_ids");
  JsonParser *parser;
  JsonObject *golden = text_fixture_load ("golden.json", &parser);
  CbTokenizer *tok = load_fixture ("tokenizer.json");
  ck_assert_uint_eq (cb_tokenizer_vocab_size (tok), json_object_get_int_member (golden, "vocab_size"));
  ck_assert (cb_tokenizer_check_start_stop (tok, 255, 0, NULL));
  ck_assert_int_eq (cb_tokenizer_token_id (tok, "[SPACE]"), 2);
  ck_assert_int_eq (cb_tokenizer_token_id (tok, "no such token"), -1);
  cb_tokenizer_free (tok);
  g_object_unref (parser);
}
END_TEST

START_TEST (test_golden_variants)
{
  compare_golden ("tokenizer-b.json", "norm", "ids_b");
  compare_golden ("tokenizer-b.json", "input", "raw_ids_b");
  compare_golden ("tokenizer-c.json", "norm", "ids_c");
  compare_golden ("tokenizer-d.json", "norm", "ids_d");
  compare_golden ("tokenizer-d.json", "input", "raw_ids_d");
  JsonParser *parser;
  JsonObject *golden = text_fixture_load ("golden.json", &parser);
  CbTokenizer *tok = load_fixture ("tokenizer-b.json");
  ck_assert_uint_eq (cb_tokenizer_vocab_size (tok),
                     json_object_get_int_member (golden, "vocab_size_b"));
  /* its [START] is 400: the English model config's 255 must be refused */
  GError *error = NULL;
  ck_assert (!cb_tokenizer_check_start_stop (tok, 255, 0, &error));
  ck_assert (g_error_matches (error, CB_ERROR, CB_ERROR_MISMATCH));
  ck_assert (strstr (error->message, "400") != NULL);
  g_error_free (error);
  cb_tokenizer_free (tok);
  tok = load_fixture ("tokenizer-c.json");
  ck_assert_uint_eq (cb_tokenizer_vocab_size (tok),
                     json_object_get_int_member (golden, "vocab_size_c"));
  cb_tokenizer_free (tok);
  g_object_unref (parser);
}
END_TEST

START_TEST (test_rust_classes_every_code_point)
{
  JsonParser *parser;
  JsonObject *u = text_fixture_load ("unicode.json", &parser);
  JsonArray *word = json_object_get_array_member (u, "rust_word");
  JsonArray *space = json_object_get_array_member (u, "rust_space");
  ck_assert (word && space);
  guint compared = 0;
  for (gunichar c = 0; c < 0x110000; c++) {
    if (c >= 0xd800 && c <= 0xdfff)
      continue;
    ck_assert_msg (cb_tokenizer_is_rust_space (c) == text_fixture_in_ranges (space, c), "\\s U+%04X", c);
    /* Characters newer than GLib's Unicode tables cannot be classified here. */
    if (g_unichar_type (c) == G_UNICODE_UNASSIGNED)
      continue;
    ck_assert_msg (cb_tokenizer_is_rust_word (c) == text_fixture_in_ranges (word, c), "\\w U+%04X", c);
    compared++;
  }
  printf ("rust classes: %u code points compared\n", compared);
  g_object_unref (parser);
}
END_TEST

START_TEST (test_long_input_is_fast)
{
  CbTokenizer *tok = load_fixture ("tokenizer.json");
  GString *s = g_string_new (NULL);
  while (s->len < 20000)
    g_string_append (s, "The quick brown fox, 3.14 times: jumps over the lazy dog! ");
  GString *word = g_string_new (NULL);
  while (word->len < 10000)
    g_string_append (word, "abcdefghij");
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  gint64 t0 = g_get_monotonic_time ();
  ck_assert (cb_tokenizer_encode (tok, s->str, ids, NULL));
  ck_assert_uint_gt (ids->len, 4000);
  g_array_set_size (ids, 0);
  ck_assert (cb_tokenizer_encode (tok, word->str, ids, NULL));
  ck_assert_uint_gt (ids->len, 0);
  double secs = (g_get_monotonic_time () - t0) / 1e6;
  /* generous: a quadratic encoder takes far longer on the 10k-character word */
  ck_assert_msg (secs < 3.0, "encoding took %.2f s", secs);
  GError *error = NULL;
  ck_assert (!cb_tokenizer_encode (tok, "bad \xc3 text", ids, &error));
  ck_assert (g_error_matches (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_error_free (error);
  g_array_free (ids, TRUE);
  g_string_free (s, TRUE);
  g_string_free (word, TRUE);
  cb_tokenizer_free (tok);
}
END_TEST

/* ---- malformed and unsupported files ------------------------------------------------------ */

typedef void (*Mutate) (JsonObject *root);

/* Load tokenizer.json, apply `mutate` (or replace `from` with `to` in its bytes), write it to a
 * temporary file and expect cb_tokenizer_load to fail with `code` and a message holding `needle`. */
static void
expect_load_error (Mutate mutate, const char *from, const char *to, CbError code,
                   const char *needle)
{
  char *src = cb_test_data_path ("text/tokenizer.json");
  char *data;
  gsize len;
  ck_assert (g_file_get_contents (src, &data, &len, NULL));
  if (mutate) {
    JsonParser *parser = json_parser_new ();
    ck_assert (json_parser_load_from_data (parser, data, len, NULL));
    mutate (json_node_get_object (json_parser_get_root (parser)));
    g_free (data);
    data = json_to_string (json_parser_get_root (parser), FALSE);
    g_object_unref (parser);
  }
  if (from) {
    char *at = strstr (data, from);
    ck_assert_msg (at != NULL, "'%s' not in the fixture", from);
    char *edited = g_strdup_printf ("%.*s%s%s", (int) (at - data), data, to, at + strlen (from));
    g_free (data);
    data = edited;
  }
  char *dir = cb_test_tmpdir ("tokenizer");
  char *path = g_build_filename (dir, "tokenizer.json", NULL);
  ck_assert (g_file_set_contents (path, data, -1, NULL));
  GError *error = NULL;
  CbTokenizer *tok = cb_tokenizer_load (path, &error);
  ck_assert_msg (tok == NULL, "a broken file (%s) was accepted", needle);
  ck_assert_msg (g_error_matches (error, CB_ERROR, code), "expected code %d for '%s', got %s",
                 code, needle, error->message);
  ck_assert_msg (strstr (error->message, needle) != NULL, "'%s' not in: %s", needle, error->message);
  ck_assert_msg (strstr (error->message, path) != NULL, "file not named: %s", error->message);
  printf ("refused as expected: %s\n", error->message + strlen (path) + 2);
  g_error_free (error);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (data);
  g_free (src);
}

static JsonNode *
typed_object (const char *type)
{
  JsonObject *o = json_object_new ();
  json_object_set_string_member (o, "type", type);
  JsonNode *n = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (n, o);
  return n;
}

static JsonObject *
model_of (JsonObject *root)
{
  return json_object_get_object_member (root, "model");
}

static JsonObject *
vocab_of (JsonObject *root)
{
  return json_object_get_object_member (model_of (root), "vocab");
}

static void set_normalizer (JsonObject *r) { json_object_set_member (r, "normalizer", typed_object ("NFKC")); }
static void set_pre_tokenizer (JsonObject *r) { json_object_set_member (r, "pre_tokenizer", typed_object ("ByteLevel")); }
static void set_post_processor (JsonObject *r) { json_object_set_member (r, "post_processor", typed_object ("TemplateProcessing")); }
static void set_model_type (JsonObject *r) { json_object_set_string_member (model_of (r), "type", "WordPiece"); }
static void set_dropout (JsonObject *r) { json_object_set_double_member (model_of (r), "dropout", 0.1); }
static void set_bad_dropout (JsonObject *r) { json_object_set_double_member (model_of (r), "dropout", 2.0); }
static void set_truncation (JsonObject *r) { json_object_set_member (r, "truncation", typed_object ("x")); }
static void set_negative_id (JsonObject *r) { json_object_set_int_member (vocab_of (r), "zz", -1); }
static void set_huge_id (JsonObject *r) { json_object_set_int_member (vocab_of (r), "zz", G_GINT64_CONSTANT (1) << 40); }
static void set_float_id (JsonObject *r) { json_object_set_double_member (vocab_of (r), "zz", 3.5); }
static void set_duplicate_id (JsonObject *r) { json_object_set_int_member (vocab_of (r), "zz", 17); }
static void drop_vocab (JsonObject *r) { json_object_remove_member (model_of (r), "vocab"); }
static void set_unk_missing (JsonObject *r) { json_object_set_string_member (model_of (r), "unk_token", "<unk>"); }

static void
drop_start (JsonObject *r)
{
  json_object_remove_member (vocab_of (r), "[START]");
  JsonArray *added = json_object_get_array_member (r, "added_tokens");
  json_array_remove_element (added, json_array_get_length (added) - 1);   /* [START] is last */
}

static void
add_merge (JsonObject *r, const char *merge)
{
  json_array_add_string_element (json_object_get_array_member (model_of (r), "merges"), merge);
}
static void add_unknown_merge (JsonObject *r) { add_merge (r, "\u00e0\u00e0 zz"); }
static void add_merge_without_result (JsonObject *r) { add_merge (r, "[STOP] [UNK]"); }
static void add_three_part_merge (JsonObject *r) { add_merge (r, "a b c"); }

static void
set_start_listed_id (JsonObject *r)
{
  JsonArray *added = json_object_get_array_member (r, "added_tokens");
  JsonObject *start = json_array_get_object_element (added, json_array_get_length (added) - 1);
  ck_assert_str_eq (json_object_get_string_member (start, "content"), "[START]");
  json_object_set_int_member (start, "id", 254);
}

START_TEST (test_unsupported_components)
{
  expect_load_error (set_normalizer, NULL, NULL, CB_ERROR_UNSUPPORTED, "NFKC");
  expect_load_error (set_pre_tokenizer, NULL, NULL, CB_ERROR_UNSUPPORTED, "ByteLevel");
  expect_load_error (set_post_processor, NULL, NULL, CB_ERROR_UNSUPPORTED, "TemplateProcessing");
  expect_load_error (set_model_type, NULL, NULL, CB_ERROR_UNSUPPORTED, "WordPiece");
  expect_load_error (set_dropout, NULL, NULL, CB_ERROR_UNSUPPORTED, "dropout");
  expect_load_error (set_truncation, NULL, NULL, CB_ERROR_UNSUPPORTED, "truncation");
  expect_load_error (NULL, "\"version\": \"1.0\"", "\"version\": \"2.0\"", CB_ERROR_UNSUPPORTED,
                     "version");
}
END_TEST

START_TEST (test_malformed_files)
{
  /* bytes that are not UTF-8 inside a vocabulary key, and a NUL byte */
  expect_load_error (NULL, "\"[MASK]\": 6", "\"[MA\xff" "SK]\": 6", CB_ERROR_FORMAT, "UTF-8");
  expect_load_error (NULL, "\"[MASK]\": 6", "\"[MA\xc3\x28SK]\": 6", CB_ERROR_FORMAT, "UTF-8");
  /* a lone surrogate written as a JSON escape decodes to no valid UTF-8 either */
  expect_load_error (NULL, "\"[MASK]\": 6", "\"[MA\\udc80SK]\": 6", CB_ERROR_FORMAT, "");
  expect_load_error (NULL, "\"model\"", "\"model\" [", CB_ERROR_FORMAT, "");
  expect_load_error (NULL, "{", "[", CB_ERROR_FORMAT, "");
  expect_load_error (NULL, "\"decoder\": null", "\"decoder\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]"
                     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", CB_ERROR_FORMAT, "");
  expect_load_error (NULL, "\"decoder\": null", "\"decoder\": null, \"decoder\": null",
                     CB_ERROR_FORMAT, "decoder");
  expect_load_error (set_bad_dropout, NULL, NULL, CB_ERROR_FORMAT, "dropout");
  expect_load_error (set_negative_id, NULL, NULL, CB_ERROR_FORMAT, "out of range");
  expect_load_error (set_huge_id, NULL, NULL, CB_ERROR_FORMAT, "out of range");
  expect_load_error (set_float_id, NULL, NULL, CB_ERROR_FORMAT, "integer");
  expect_load_error (set_duplicate_id, NULL, NULL, CB_ERROR_FORMAT, "already belongs");
  expect_load_error (drop_vocab, NULL, NULL, CB_ERROR_FORMAT, "vocab");
  expect_load_error (set_unk_missing, NULL, NULL, CB_ERROR_FORMAT, "<unk>");
  expect_load_error (drop_start, NULL, NULL, CB_ERROR_MISMATCH, "[START]");
  expect_load_error (add_unknown_merge, NULL, NULL, CB_ERROR_FORMAT, "not in the vocabulary");
  expect_load_error (add_merge_without_result, NULL, NULL, CB_ERROR_FORMAT, "[STOP][UNK]");
  expect_load_error (add_three_part_merge, NULL, NULL, CB_ERROR_FORMAT, "one space");
  expect_load_error (set_start_listed_id, NULL, NULL, CB_ERROR_MISMATCH, "254");

  GError *error = NULL;
  ck_assert (cb_tokenizer_load ("/nonexistent/tokenizer.json", &error) == NULL);
  ck_assert (g_error_matches (error, CB_ERROR, CB_ERROR_NOT_FOUND));
  g_clear_error (&error);

  /* an absurdly large file is refused before it is read (a sparse file: no disk used) */
  char *dir = cb_test_tmpdir ("tokenizer-big");
  char *path = g_build_filename (dir, "tokenizer.json", NULL);
  ck_assert (g_file_set_contents (path, "{", 1, NULL));
  ck_assert (truncate (path, 65 << 20) == 0);
  ck_assert (cb_tokenizer_load (path, &error) == NULL);
  ck_assert (g_error_matches (error, CB_ERROR, CB_ERROR_FORMAT));
  ck_assert (strstr (error->message, "too large") != NULL);
  g_error_free (error);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}
END_TEST

/* Every truncation of the file fails cleanly (and never crashes). */
START_TEST (test_truncated_file)
{
  char *src = cb_test_data_path ("text/tokenizer-b.json");
  char *data;
  gsize len;
  ck_assert (g_file_get_contents (src, &data, &len, NULL));
  char *dir = cb_test_tmpdir ("tokenizer-cut");
  char *path = g_build_filename (dir, "tokenizer.json", NULL);
  for (gsize cut = 0; cut < len; cut += 97) {
    ck_assert (g_file_set_contents (path, data, cut, NULL));
    GError *error = NULL;
    CbTokenizer *tok = cb_tokenizer_load (path, &error);
    ck_assert_msg (tok == NULL && error && error->domain == CB_ERROR, "cut at %zu", cut);
    g_error_free (error);
  }
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (data);
  g_free (src);
}
END_TEST

/* Random byte damage: every result is a clean load or a CB_ERROR, and a file that loads encodes. */
START_TEST (test_random_corruption)
{
  char *src = cb_test_data_path ("text/tokenizer-b.json");
  char *data;
  gsize len;
  ck_assert (g_file_get_contents (src, &data, &len, NULL));
  char *dir = cb_test_tmpdir ("tokenizer-fuzz");
  char *path = g_build_filename (dir, "tokenizer.json", NULL);
  GRand *rand = g_rand_new_with_seed (20260601);
  static const char bytes[] = "\"[]{},: 0123456789-.eE\\\xc3\xff#";
  guint loaded = 0;
  for (int trial = 0; trial < 300; trial++) {
    char *copy = g_memdup2 (data, len);
    int flips = g_rand_int_range (rand, 1, 4);
    for (int k = 0; k < flips; k++)
      copy[g_rand_int_range (rand, 0, (gint32) len)] = bytes[g_rand_int_range (rand, 0, sizeof bytes - 1)];
    ck_assert (g_file_set_contents (path, copy, len, NULL));
    GError *error = NULL;
    CbTokenizer *tok = cb_tokenizer_load (path, &error);
    if (tok) {
      GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
      ck_assert (cb_tokenizer_encode (tok, "The Free software, 3.14 [SPACE] the\tation \u00e9!", ids, NULL));
      g_array_free (ids, TRUE);
      cb_tokenizer_free (tok);
      loaded++;
    } else {
      ck_assert (error && error->domain == CB_ERROR && error->message[0]);
      g_error_free (error);
    }
    g_free (copy);
  }
  printf ("corruption: %u of 300 damaged files still loaded, the rest refused cleanly\n", loaded);
  g_rand_free (rand);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (data);
  g_free (src);
}
END_TEST

static Suite *
tokenizer_suite (void)
{
  Suite *s = suite_create ("tokenizer");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_golden_main);
  tcase_add_test (tc, test_golden_variants);
  tcase_add_test (tc, test_rust_classes_every_code_point);
  tcase_add_test (tc, test_long_input_is_fast);
  tcase_add_test (tc, test_unsupported_components);
  tcase_add_test (tc, test_malformed_files);
  tcase_add_test (tc, test_truncated_file);
  tcase_add_test (tc, test_random_corruption);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (tokenizer_suite)
