/* Units of gst/textqueue.c: a text stream in (word by word, split characters, markup, invalid
 * bytes, huge buffers), utterances out. Exact strings are checked throughout. */
#include <string.h>

#include "cb-check.h"
#include "text.h"
#include "textqueue.h"

static guint
push (CbsTextQueue *q, const char *s, gboolean markup)
{
  return cbs_text_queue_push (q, (const guint8 *) s, strlen (s), markup);
}

/* Pops one utterance and checks it is exactly want. */
static void
expect_pop (CbsTextQueue *q, const char *want)
{
  char *got = cbs_text_queue_pop (q);
  ck_assert_msg (got != NULL, "nothing ready, want '%s'", want);
  ck_assert_str_eq (got, want);
  g_free (got);
}

static void
expect_empty (CbsTextQueue *q)
{
  char *got = cbs_text_queue_pop (q);
  ck_assert_msg (got == NULL, "unexpected utterance '%s'", got);
  ck_assert_uint_eq (cbs_text_queue_n_ready (q), 0);
}

START_TEST (test_word_by_word_stream)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  /* A sentence is complete once whitespace follows its end, or at a line break. */
  static const struct { const char *chunk; const char *ready; gboolean pending; } steps[] = {
    { "Hello", NULL, TRUE },
    { " there.", NULL, TRUE },        /* "there." could still become "there..." */
    { " How", "Hello there.", TRUE },
    { " are you?", NULL, TRUE },
    { "\n", "How are you?", FALSE },
    { "I'm", NULL, TRUE },
    { " fine", NULL, TRUE },
    { "! Thanks. ", NULL, FALSE },     /* checked below: two at once */
    { "Bye", NULL, TRUE },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (steps); i++) {
    ck_assert_uint_eq (push (q, steps[i].chunk, FALSE), 0);
    if (i == 7) {
      ck_assert_uint_eq (cbs_text_queue_n_ready (q), 2);
      expect_pop (q, "I'm fine!");
      expect_pop (q, "Thanks.");
    } else if (steps[i].ready) {
      ck_assert_msg (cbs_text_queue_n_ready (q) == 1, "step %zu", i);
      expect_pop (q, steps[i].ready);
    }
    expect_empty (q);
    ck_assert_msg (cbs_text_queue_has_pending (q) == steps[i].pending, "step %zu", i);
  }
  ck_assert_uint_eq (cbs_text_queue_finish_pending (q), 0);
  expect_pop (q, "Bye");
  expect_empty (q);
  ck_assert (!cbs_text_queue_has_pending (q));
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_order_many_pushes)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  /* 500 sentences, each cut at an awkward place between two pushes. */
  for (guint i = 0; i < 500; i++) {
    char *s = g_strdup_printf ("Sentence number %u is here. ", i);
    gsize cut = (i * 7) % strlen (s);
    cbs_text_queue_push (q, (const guint8 *) s, cut, FALSE);
    cbs_text_queue_push (q, (const guint8 *) s + cut, strlen (s) - cut, FALSE);
    g_free (s);
  }
  cbs_text_queue_finish_pending (q);
  ck_assert_uint_eq (cbs_text_queue_n_ready (q), 500);
  for (guint i = 0; i < 500; i++) {
    char *want = g_strdup_printf ("Sentence number %u is here.", i);
    expect_pop (q, want);
    g_free (want);
  }
  expect_empty (q);
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_sentence_split_across_buffers)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  push (q, "The quick brown fo", FALSE);
  push (q, "x jumps. The la", FALSE);
  expect_pop (q, "The quick brown fox jumps.");
  expect_empty (q);
  push (q, "zy dog sleeps.\nDr. Smith", FALSE);
  expect_pop (q, "The lazy dog sleeps.");
  expect_empty (q);                            /* "Dr." is no sentence end */
  push (q, " waits. ", FALSE);
  expect_pop (q, "Dr. Smith waits.");
  expect_empty (q);
  ck_assert (!cbs_text_queue_has_pending (q));
  cbs_text_queue_free (q);
}
END_TEST

/* Pushes s one piece per entry of cuts (byte offsets) and checks nothing is replaced. */
static void
push_cut (CbsTextQueue *q, const char *s, const gsize *cuts, gsize n_cuts)
{
  gsize at = 0;
  for (gsize i = 0; i <= n_cuts; i++) {
    gsize to = i < n_cuts ? cuts[i] : strlen (s);
    ck_assert_uint_eq (cbs_text_queue_push (q, (const guint8 *) s + at, to - at, FALSE), 0);
    at = to;
  }
}

START_TEST (test_utf8_split_characters)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  /* é (2 bytes) cut in two; € (3 bytes) cut in three; 😀 (4 bytes) cut 1+1+2. */
  const char *s = "Caf\xc3\xa9 costs 5\xe2\x82\xac \xf0\x9f\x98\x80.\n";
  gsize e = 3, euro = strlen ("Caf\xc3\xa9 costs 5"), emoji = euro + 4;
  const gsize cuts[] = { e + 1, euro + 1, euro + 2, emoji + 1, emoji + 2 };
  push_cut (q, s, cuts, G_N_ELEMENTS (cuts));
  expect_pop (q, "Caf\xc3\xa9 costs 5\xe2\x82\xac \xf0\x9f\x98\x80.");
  expect_empty (q);

  /* A push that is nothing but the middle of a character, and an empty push between. */
  const gsize cuts2[] = { 1, 2, 2, 3 };
  push_cut (q, "\xf0\x9f\x98\x80 ok.\n", cuts2, G_N_ELEMENTS (cuts2));
  expect_pop (q, "\xf0\x9f\x98\x80 ok.");
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_invalid_utf8)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  ck_assert_uint_eq (push (q, "A\xff" "B.\n", FALSE), 1);
  expect_pop (q, "A\xef\xbf\xbd" "B.");
  /* Overlong NUL: C0 is never valid, so both bytes are replaced. */
  ck_assert_uint_eq (push (q, "x\xc0\x80y.\n", FALSE), 2);
  expect_pop (q, "x\xef\xbf\xbd\xef\xbf\xbdy.");
  /* A truncated € followed by ASCII: one replacement, the ASCII kept. */
  ck_assert_uint_eq (push (q, "5\xe2\x82" "A is fine.\n", FALSE), 1);
  expect_pop (q, "5\xef\xbf\xbd" "A is fine.");
  /* The same, cut across pushes: the carried bytes turn out invalid in the next push. */
  ck_assert_uint_eq (push (q, "7\xe2\x82", FALSE), 0);
  ck_assert (cbs_text_queue_has_pending (q));
  ck_assert_uint_eq (push (q, "B ok.\n", FALSE), 1);
  expect_pop (q, "7\xef\xbf\xbd" "B ok.");
  /* Surrogate (ED A0 80): ED's second byte must be < A0, so three replacements. */
  ck_assert_uint_eq (push (q, "s\xed\xa0\x80.\n", FALSE), 3);
  expect_pop (q, "s\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd.");
  /* NUL bytes are dropped silently. */
  ck_assert_uint_eq (cbs_text_queue_push (q, (const guint8 *) "N\0ul.\n", 6, FALSE), 0);
  expect_pop (q, "Nul.");
  /* A sequence still incomplete at EOS is replaced by finish_pending. */
  ck_assert_uint_eq (push (q, "End \xf0\x9f", FALSE), 0);
  ck_assert_uint_eq (cbs_text_queue_finish_pending (q), 1);
  expect_pop (q, "End \xef\xbf\xbd");
  expect_empty (q);
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_markup)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  push (q, "<b>Hel", TRUE);
  push (q, "lo</b> wor", TRUE);
  expect_empty (q);
  push (q, "ld. ", TRUE);
  expect_pop (q, "Hello world.");
  /* A tag cut inside its name and inside a quoted attribute holding '>'. */
  push (q, "<span fore", TRUE);
  push (q, "ground=\"a>b\" size='x'>Big</sp", TRUE);
  push (q, "an> &amp; sm&lt;all &quot;q&quot; &apos;a&apos; &#65;&#x42;&#X43;.\n", TRUE);
  expect_pop (q, "Big & sm<all \"q\" 'a' ABC.");
  /* An entity cut across pushes. */
  push (q, "Tom &a", TRUE);
  push (q, "m", TRUE);
  push (q, "p; Jerry.\n", TRUE);
  expect_pop (q, "Tom & Jerry.");
  /* Not markup: a lone '<', an unknown entity and a bare '&' stay text. */
  push (q, "a < b &nbsp; AT&T fish & chips.\n", TRUE);
  expect_pop (q, "a < b &nbsp; AT&T fish & chips.");
  /* A numeric entity naming no character is replaced and counted. */
  ck_assert_uint_eq (push (q, "bad &#0; &#xD800; &#1114112;.\n", TRUE), 3);
  expect_pop (q, "bad \xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd.");
  /* Without the markup flag, tags are text. */
  push (q, "<b>raw</b>.\n", FALSE);
  expect_pop (q, "<b>raw</b>.");
  /* A dangling entity at EOS is text; an open tag holds none. */
  push (q, "Last &am", TRUE);
  ck_assert (cbs_text_queue_has_pending (q));
  cbs_text_queue_finish_pending (q);
  expect_pop (q, "Last &am");
  push (q, "Open <i", TRUE);
  cbs_text_queue_finish_pending (q);
  expect_pop (q, "Open");
  push (q, ">italic</i>.\n", TRUE);        /* the tag's end still comes */
  expect_pop (q, "italic.");
  expect_empty (q);
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_finish_and_clear)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  push (q, "One. Two", FALSE);
  ck_assert (cbs_text_queue_has_pending (q));
  ck_assert_uint_eq (cbs_text_queue_finish_pending (q), 0);
  ck_assert (!cbs_text_queue_has_pending (q));
  expect_pop (q, "One.");
  expect_pop (q, "Two");
  expect_empty (q);
  /* finish_pending with nothing waiting does nothing. */
  cbs_text_queue_finish_pending (q);
  expect_empty (q);

  /* clear drops ready and waiting text and any half character or tag. */
  push (q, "Ready. Waiting <b", TRUE);
  push (q, "x\xe2\x82", FALSE);
  ck_assert_uint_eq (cbs_text_queue_n_ready (q), 1);
  cbs_text_queue_clear (q);
  ck_assert (!cbs_text_queue_has_pending (q));
  expect_empty (q);
  ck_assert_uint_eq (push (q, "\xac Fresh>.\n", TRUE), 1);   /* no carried € to complete */
  expect_pop (q, "\xef\xbf\xbd Fresh>.");
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_empty_and_blank)
{
  CbsTextQueue *q = cbs_text_queue_new (0);
  ck_assert_uint_eq (cbs_text_queue_push (q, NULL, 0, FALSE), 0);
  ck_assert_uint_eq (cbs_text_queue_push (q, (const guint8 *) "", 0, TRUE), 0);
  expect_empty (q);
  ck_assert (!cbs_text_queue_has_pending (q));
  push (q, "   \n\t \r\n", FALSE);
  push (q, "<b> </b>\n\n", TRUE);
  for (guint i = 0; i < 10000; i++)
    push (q, "\n", FALSE);
  ck_assert (!cbs_text_queue_has_pending (q));
  cbs_text_queue_finish_pending (q);
  expect_empty (q);
  /* Text after the blank lines is unaffected by them. */
  push (q, "  Hi.\n", FALSE);
  expect_pop (q, "Hi.");
  expect_empty (q);
  cbs_text_queue_free (q);
}
END_TEST

/* Words of s joined by single spaces. */
static char *
normalise (const char *s)
{
  char **words = g_strsplit_set (s, " \t\n", -1);
  GString *out = g_string_new (NULL);
  for (char **w = words; *w; w++) {
    if (**w == '\0')
      continue;
    if (out->len)
      g_string_append_c (out, ' ');
    g_string_append (out, *w);
  }
  g_strfreev (words);
  return g_string_free (out, FALSE);
}

/* Pops everything, checks each piece's length, returns them joined by single spaces. */
static char *
drain_checked (CbsTextQueue *q, guint max_chars, guint *n_pieces)
{
  GString *all = g_string_new (NULL);
  char *piece;
  *n_pieces = 0;
  while ((piece = cbs_text_queue_pop (q))) {
    glong n = g_utf8_strlen (piece, -1);
    ck_assert_msg (n > 0 && n <= (glong) max_chars, "piece of %ld chars", n);
    ck_assert_msg (piece[0] != ' ' && piece[strlen (piece) - 1] != ' ', "untrimmed '%s'", piece);
    if (all->len)
      g_string_append_c (all, ' ');
    g_string_append (all, piece);
    g_free (piece);
    (*n_pieces)++;
  }
  return g_string_free (all, FALSE);
}

/* A 20,000-character buffer of words (with sentence ends every few words, or none at all). */
static char *
make_long_text (gboolean punctuate)
{
  static const char *const WORDS[] = { "alpha", "be\xc3\xa9ta", "gamma", "delta,", "epsilon" };
  GString *s = g_string_new (NULL);
  for (guint i = 0; g_utf8_strlen (s->str, s->len) < 20000; i++) {
    g_string_append (s, WORDS[i % G_N_ELEMENTS (WORDS)]);
    g_string_append (s, punctuate && i % 13 == 12 ? ". " : (i % 17 == 16 ? "\t " : " "));
  }
  g_string_append (s, "last");
  return g_string_free (s, FALSE);
}

static void
check_long_buffer (gboolean punctuate, guint max_chars)
{
  CbsTextQueue *q = cbs_text_queue_new (max_chars);
  guint limit = max_chars ? max_chars : CB_TEXT_DEFAULT_MAX_CHARS;
  char *text = make_long_text (punctuate);
  push (q, text, FALSE);
  /* Even without a sentence end, at most 4 × max_chars may wait. */
  ck_assert_uint_gt (cbs_text_queue_n_ready (q), 0);
  guint n1, n2;
  char *got1 = drain_checked (q, limit, &n1);
  ck_assert (cbs_text_queue_has_pending (q));
  cbs_text_queue_finish_pending (q);
  char *got2 = drain_checked (q, limit, &n2);
  ck_assert_uint_gt (n2, 0);
  ck_assert_uint_le (g_utf8_strlen (got2, -1), 4 * limit + n2);
  if (!punctuate && limit == CB_TEXT_DEFAULT_MAX_CHARS)   /* the cuts fill their pieces */
    ck_assert_uint_le (n1, 20000 / (limit - 40) + 1);

  char *joined = g_strconcat (got1, " ", got2, NULL);
  char *want = normalise (text);
  ck_assert_str_eq (joined, want);
  g_free (joined);
  g_free (want);
  g_free (got1);
  g_free (got2);
  g_free (text);
  cbs_text_queue_free (q);
}

START_TEST (test_long_buffer_punctuated)
{
  check_long_buffer (TRUE, 0);
}
END_TEST

START_TEST (test_long_buffer_unpunctuated)
{
  check_long_buffer (FALSE, 0);
  check_long_buffer (FALSE, 37);
}
END_TEST

START_TEST (test_long_word)
{
  /* One 20,000-letter "word" arriving in small pushes: cut inside, never held whole. */
  CbsTextQueue *q = cbs_text_queue_new (50);
  GString *want = g_string_new (NULL);
  for (guint i = 0; i < 2000; i++) {
    push (q, "abcdefghi\xc3\xa9", FALSE);
    g_string_append (want, "abcdefghi\xc3\xa9");
  }
  /* 20,000 characters went in; at most 4 × 50 may still wait. */
  ck_assert_uint_ge (cbs_text_queue_n_ready (q), (20000 - 200) / 50);
  cbs_text_queue_finish_pending (q);
  GString *got = g_string_new (NULL);
  char *piece;
  while ((piece = cbs_text_queue_pop (q))) {
    ck_assert_int_le (g_utf8_strlen (piece, -1), 50);
    g_string_append (got, piece);
    g_free (piece);
  }
  ck_assert_str_eq (got->str, want->str);
  g_string_free (got, TRUE);
  g_string_free (want, TRUE);
  cbs_text_queue_free (q);
}
END_TEST

START_TEST (test_long_sentence_split)
{
  /* A complete sentence longer than max_chars is split at clause punctuation. */
  CbsTextQueue *q = cbs_text_queue_new (32);
  push (q, "This first part is long enough, and this second part also is.\n", FALSE);
  expect_pop (q, "This first part is long enough,");
  expect_pop (q, "and this second part also is.");
  expect_empty (q);
  cbs_text_queue_free (q);
}
END_TEST

static Suite *
textqueue_suite (void)
{
  Suite *s = suite_create ("textqueue");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_word_by_word_stream);
  tcase_add_test (tc, test_order_many_pushes);
  tcase_add_test (tc, test_sentence_split_across_buffers);
  tcase_add_test (tc, test_utf8_split_characters);
  tcase_add_test (tc, test_invalid_utf8);
  tcase_add_test (tc, test_markup);
  tcase_add_test (tc, test_finish_and_clear);
  tcase_add_test (tc, test_empty_and_blank);
  tcase_add_test (tc, test_long_buffer_punctuated);
  tcase_add_test (tc, test_long_buffer_unpunctuated);
  tcase_add_test (tc, test_long_word);
  tcase_add_test (tc, test_long_sentence_split);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (textqueue_suite)
