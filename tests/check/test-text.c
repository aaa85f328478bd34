/* Units of engine/text.c: punc_norm against upstream's own output, the Python character classes
 * over every code point, the sentence splitter and the streaming sentence detector. */
#include <stdio.h>
#include <string.h>

#include "text-fixtures.h"
#include "text.h"

START_TEST (test_punc_norm_golden)
{
  JsonParser *parser;
  JsonArray *cases = text_fixture_cases (text_fixture_load ("golden.json", &parser));
  guint n = json_array_get_length (cases);
  for (guint i = 0; i < n; i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    const char *input = json_object_get_string_member (c, "input");
    const char *want = json_object_get_string_member (c, "norm");
    char *got = cb_punc_norm (input);
    ck_assert_msg (got && strcmp (got, want) == 0, "case %u %s: got '%s' want '%s'", i, input,
                   got, want);
    g_free (got);
  }
  printf ("punc_norm: %u upstream cases compared\n", n);
  g_object_unref (parser);
}
END_TEST

START_TEST (test_python_classes_every_code_point)
{
  JsonParser *parser;
  JsonObject *u = text_fixture_load ("unicode.json", &parser);
  JsonArray *space = json_object_get_array_member (u, "python_space");
  JsonArray *lower = json_object_get_array_member (u, "python_lower_upper");
  JsonArray *unassigned = json_object_get_array_member (u, "python_unassigned");
  ck_assert (space && lower && unassigned && json_array_get_length (lower) > 2000);

  GHashTable *spaces = g_hash_table_new (NULL, NULL);
  for (guint i = 0; i < json_array_get_length (space); i++)
    g_hash_table_add (spaces, GUINT_TO_POINTER (json_array_get_int_element (space, i)));
  GHashTable *uppers = g_hash_table_new (NULL, NULL);
  for (guint i = 0; i < json_array_get_length (lower); i++) {
    JsonArray *pair = json_array_get_array_element (lower, i);
    g_hash_table_insert (uppers, GUINT_TO_POINTER (json_array_get_int_element (pair, 0)),
                         (gpointer) json_array_get_string_element (pair, 1));
  }

  guint compared = 0;
  for (gunichar c = 0; c < 0x110000; c++) {
    if (c >= 0xd800 && c <= 0xdfff)
      continue;
    ck_assert_msg (cb_text_is_python_space (c) == g_hash_table_contains (spaces, GUINT_TO_POINTER (c)),
                   "isspace U+%04X", c);
    /* Characters newer than Python's Unicode tables are judged by GLib's newer ones. */
    if (text_fixture_in_ranges (unassigned, c))
      continue;
    const char *want = g_hash_table_lookup (uppers, GUINT_TO_POINTER (c));
    ck_assert_msg (cb_text_is_python_lower (c) == (want != NULL), "islower U+%04X", c);
    if (want) {
      char *got = cb_text_python_upper (c);
      ck_assert_msg (strcmp (got, want) == 0, "upper U+%04X: got %s want %s", c, got, want);
      g_free (got);
    }
    compared++;
  }
  printf ("python classes: %u code points compared (Unicode %s)\n", compared,
          json_object_get_string_member (u, "python_unicode"));
  g_hash_table_unref (spaces);
  g_hash_table_unref (uppers);
  g_object_unref (parser);
}
END_TEST

/* Reference for the splitter's join property: words split on Python whitespace, single spaces. */
static char *
normalise_spaces (const char *s, guint *longest_word)
{
  GString *out = g_string_new (NULL);
  guint word = 0;
  *longest_word = 0;
  for (const char *p = s; *p; p = g_utf8_next_char (p)) {
    if (cb_text_is_python_space (g_utf8_get_char (p))) {
      word = 0;
      continue;
    }
    if (word == 0 && out->len > 0)
      g_string_append_c (out, ' ');
    g_string_append_len (out, p, g_utf8_next_char (p) - p);
    *longest_word = MAX (*longest_word, ++word);
  }
  return g_string_free (out, FALSE);
}

static void
check_split_invariants (const char *text, guint max_chars)
{
  GPtrArray *pieces = cb_text_split_sentences (text, max_chars);
  ck_assert (pieces != NULL);
  guint longest;
  char *norm = normalise_spaces (text, &longest);
  GString *joined = g_string_new (NULL);
  for (guint i = 0; i < pieces->len; i++) {
    const char *p = g_ptr_array_index (pieces, i);
    ck_assert_msg (*p != '\0', "empty piece");
    ck_assert_msg (g_utf8_strlen (p, -1) <= max_chars, "piece over %u chars: '%s'", max_chars, p);
    ck_assert_msg (!cb_text_is_python_space (g_utf8_get_char (p)), "leading space: '%s'", p);
    if (i)
      g_string_append_c (joined, ' ');
    g_string_append (joined, p);
  }
  if (longest <= max_chars)
    ck_assert_msg (strcmp (joined->str, norm) == 0, "max %u: join '%s' != '%s'", max_chars,
                   joined->str, norm);
  g_string_free (joined, TRUE);
  g_free (norm);
  g_ptr_array_unref (pieces);
}

START_TEST (test_split_invariants_on_golden_inputs)
{
  JsonParser *parser;
  JsonArray *cases = text_fixture_cases (text_fixture_load ("golden.json", &parser));
  static const guint maxes[] = { 300, 80, 25, 7 };
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    for (guint m = 0; m < G_N_ELEMENTS (maxes); m++) {
      check_split_invariants (json_object_get_string_member (c, "input"), maxes[m]);
      check_split_invariants (json_object_get_string_member (c, "norm"), maxes[m]);
    }
  }
  g_object_unref (parser);
}
END_TEST

static void
check_pieces (const char *text, guint max_chars, const char *const *want)
{
  GPtrArray *pieces = cb_text_split_sentences (text, max_chars);
  ck_assert (pieces != NULL);
  guint n = g_strv_length ((char **) want);
  for (guint i = 0; i < MIN (n, pieces->len); i++)
    ck_assert_msg (strcmp (g_ptr_array_index (pieces, i), want[i]) == 0,
                   "'%s' piece %u: got '%s' want '%s'", text, i,
                   (char *) g_ptr_array_index (pieces, i), want[i]);
  ck_assert_msg (pieces->len == n, "'%s': %u pieces, want %u", text, pieces->len, n);
  g_ptr_array_unref (pieces);
}

START_TEST (test_split_sentences_rules)
{
  check_pieces ("Mr. Smith paid $1,000,000.50 on Jan 3 to Dr. Who. J. R. R. Tolkien wrote e.g. "
                "this, i.e. that, etc. and so on. Pi is 3.14159 exactly.", 0,
                (const char *[]) { "Mr. Smith paid $1,000,000.50 on Jan 3 to Dr. Who.",
                                   "J. R. R. Tolkien wrote e.g. this, i.e. that, etc. and so on.",
                                   "Pi is 3.14159 exactly.", NULL });
  check_pieces ("Hello! How are you?! Fine... thanks. \u201cQuoted.\u201d Next (aside.) Last", 0,
                (const char *[]) { "Hello!", "How are you?!", "Fine... thanks.",
                                   "\u201cQuoted.\u201d", "Next (aside.)", "Last", NULL });
  check_pieces ("Wait\u2026 What? St. Paul's at 5 p.m. sharp. U.S. law.", 0,
                (const char *[]) { "Wait\u2026", "What?", "St. Paul's at 5 p.m. sharp.",
                                   "U.S. law.", NULL });
  check_pieces ("line one\nline two\r\n\n  para three", 0,
                (const char *[]) { "line one", "line two", "para three", NULL });
  check_pieces ("1. Buy milk. 2. Eat it.", 0,
                (const char *[]) { "1. Buy milk.", "2. Eat it.", NULL });
  check_pieces ("  \t\n ", 0, (const char *[]) { NULL });
  check_pieces ("", 0, (const char *[]) { NULL });
  /* max counts characters, not bytes */
  check_pieces ("\u00e9\u00e9\u00e9 \u00e9\u00e9\u00e9", 3,
                (const char *[]) { "\u00e9\u00e9\u00e9", "\u00e9\u00e9\u00e9", NULL });
  /* a word longer than a piece is the one thing cut inside */
  check_pieces ("abcdefgh", 3, (const char *[]) { "abc", "def", "gh", NULL });
}
END_TEST

START_TEST (test_split_long_sentence_at_clauses)
{
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 60; i++)
    g_string_append (s, "alpha beta gamma, ");
  g_string_append (s, "and the end.");
  GPtrArray *pieces = cb_text_split_sentences (s->str, 100);
  ck_assert_uint_gt (pieces->len, 9);
  for (guint i = 0; i + 1 < pieces->len; i++) {
    const char *p = g_ptr_array_index (pieces, i);
    ck_assert_msg (g_str_has_suffix (p, ","), "piece %u not cut at a comma: '%s'", i, p);
    ck_assert_uint_le (strlen (p), 100);
    ck_assert_uint_ge (strlen (p), 80);
  }
  /* without clause punctuation: cut between words, the pieces as full as possible */
  g_string_truncate (s, 0);
  for (int i = 0; i < 100; i++)
    g_string_append (s, "word ");
  g_ptr_array_unref (pieces);
  pieces = cb_text_split_sentences (s->str, 52);
  ck_assert_uint_eq (pieces->len, 10);
  ck_assert_str_eq (g_ptr_array_index (pieces, 0),
                    "word word word word word word word word word word");
  g_ptr_array_unref (pieces);
  check_split_invariants (s->str, 52);
  g_string_free (s, TRUE);
  ck_assert (cb_text_split_sentences ("bad \xff utf8", 0) == NULL);
}
END_TEST

static void
check_prefix (const char *text, const char *want)
{
  gsize got = cb_text_complete_prefix (text, strlen (text));
  ck_assert_msg (got == strlen (want) && strncmp (text, want, got) == 0,
                 "'%s': prefix '%.*s', want '%s'", text, (int) got, text, want);
}

START_TEST (test_complete_prefix)
{
  check_prefix ("", "");
  check_prefix ("   ", "");
  check_prefix ("Hello world", "");
  check_prefix ("Hello world.", "");
  check_prefix ("Hello world. ", "Hello world.");
  check_prefix ("Hello world. How", "Hello world.");
  check_prefix ("Hello world. How are you? I", "Hello world. How are you?");
  check_prefix ("It costs 3.", "");
  check_prefix ("It costs 3.1", "");
  check_prefix ("It costs 3.14. ", "It costs 3.14.");
  check_prefix ("It costs 1,000", "");
  check_prefix ("Ask Mr. ", "");
  check_prefix ("Ask Mr. Smith. ", "Ask Mr. Smith.");
  check_prefix ("See e.g. ", "");
  check_prefix ("J. R. ", "");
  check_prefix ("Wait... ", "");
  check_prefix ("Wait... what", "");
  check_prefix ("Wait... What", "Wait...");
  check_prefix ("line one\n", "line one");
  check_prefix ("line one\nline", "line one");
  check_prefix ("Done!\" ", "Done!\"");
  check_prefix ("1. ", "");
  check_prefix ("Hi. \xc3", "Hi.");      /* stops inside the next word's first character */
  check_prefix ("Hi.\xc3", "");

  /* Speaking the prefix's pieces first must give the same pieces as the whole text. */
  JsonParser *parser;
  JsonArray *cases = text_fixture_cases (text_fixture_load ("golden.json", &parser));
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    const char *text = json_object_get_string_member (json_array_get_object_element (cases, i),
                                                      "input");
    gsize n = cb_text_complete_prefix (text, strlen (text));
    char *head = g_strndup (text, n);
    GPtrArray *all = cb_text_split_sentences (text, 100000);
    GPtrArray *part = cb_text_split_sentences (head, 100000);
    ck_assert_uint_le (part->len, all->len);
    for (guint k = 0; k < part->len; k++)
      ck_assert_str_eq (g_ptr_array_index (part, k), g_ptr_array_index (all, k));
    g_ptr_array_unref (all);
    g_ptr_array_unref (part);
    g_free (head);
  }
  g_object_unref (parser);
}
END_TEST

static Suite *
text_suite (void)
{
  Suite *s = suite_create ("text");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_punc_norm_golden);
  tcase_add_test (tc, test_python_classes_every_code_point);
  tcase_add_test (tc, test_split_invariants_on_golden_inputs);
  tcase_add_test (tc, test_split_sentences_rules);
  tcase_add_test (tc, test_split_long_sentence_at_clauses);
  tcase_add_test (tc, test_complete_prefix);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (text_suite)
