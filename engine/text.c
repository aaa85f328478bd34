/* text.c — upstream punc_norm, the sentence splitter and the streaming sentence detector.
 *
 * punc_norm must match Python semantics exactly, so the character classes below are Python's, not
 * GLib's: str.split() splits on more than g_unichar_isspace (U+001C..U+001F, U+0085), and
 * str.islower() is the Unicode Lowercase property (Ll plus Other_Lowercase), not category Ll.
 * tests/check/test-text.c compares these classes with Python over every code point. */
#include <string.h>

#include "text.h"

#include "cb-common.h"

static const char CB_EMPTY_TEXT_SENTENCE[] = "You need to add some text for me to talk.";

/* Upstream's punc_to_replace, applied in this order, each to the whole string. */
static const char *const PUNC_REPLACEMENTS[][2] = {
  { "...", ", " },
  { "\u2026", ", " },   /* … */
  { ":", "," },
  { " - ", ", " },
  { ";", ", " },
  { "\u2014", "-" },    /* — */
  { "\u2013", "-" },    /* – */
  { " ,", "," },
  { "\u201c", "\"" },   /* “ */
  { "\u201d", "\"" },   /* ” */
  { "\u2018", "'" },    /* ‘ */
  { "\u2019", "'" },    /* ’ */
};

/* Other_Lowercase (PropList.txt, Unicode 15): characters Python calls lower case although their
 * category is not Ll (modifier letters, ª º, small roman numerals, circled letters). */
static const gunichar OTHER_LOWERCASE[][2] = {
  { 0x00aa, 0x00aa }, { 0x00ba, 0x00ba }, { 0x02b0, 0x02b8 }, { 0x02c0, 0x02c1 },
  { 0x02e0, 0x02e4 }, { 0x0345, 0x0345 }, { 0x037a, 0x037a }, { 0x1d2c, 0x1d6a },
  { 0x1d78, 0x1d78 }, { 0x1d9b, 0x1dbf }, { 0x2071, 0x2071 }, { 0x207f, 0x207f },
  { 0x2090, 0x209c }, { 0x2170, 0x217f }, { 0x24d0, 0x24e9 }, { 0x2c7c, 0x2c7d },
  { 0xa69c, 0xa69d }, { 0xa770, 0xa770 }, { 0xa7f8, 0xa7f9 }, { 0xab5c, 0xab5f },
  { 0x10780, 0x10780 }, { 0x10783, 0x10785 }, { 0x10787, 0x107b0 }, { 0x107b2, 0x107ba },
  { 0x1e030, 0x1e06d },
};

gboolean
cb_text_is_python_space (gunichar c)
{
  /* Python's Py_UNICODE_ISSPACE: bidi class WS, B or S, or category Zs — White_Space plus the
   * information separators U+001C..U+001F. */
  return cb_unichar_is_white_space (c) || (c >= 0x1c && c <= 0x1f);
}

gboolean
cb_text_is_python_lower (gunichar c)
{
  if (g_unichar_type (c) == G_UNICODE_LOWERCASE_LETTER)
    return TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS (OTHER_LOWERCASE); i++)
    if (c >= OTHER_LOWERCASE[i][0] && c <= OTHER_LOWERCASE[i][1])
      return TRUE;
  return FALSE;
}

char *
cb_text_python_upper (gunichar c)
{
  /* GLib maps letters (with SpecialCasing: ß -> SS, ŉ -> ʼN) but leaves the number and symbol
   * forms alone that Python's full case mapping does convert. */
  if (c >= 0x2170 && c <= 0x217f)        /* ⅰ..ⅿ -> Ⅰ..Ⅿ */
    c -= 0x10;
  else if (c >= 0x24d0 && c <= 0x24e9)   /* ⓐ..ⓩ -> Ⓐ..Ⓩ */
    c -= 0x1a;
  char buf[8];
  int n = g_unichar_to_utf8 (c, buf);
  return g_utf8_strup (buf, n);
}

/* Python str.replace(old, new) on the whole string, in place: non-overlapping, left to right. */
static void
replace_all (GString *s, const char *old, const char *new)
{
  const gsize old_len = strlen (old), new_len = strlen (new);
  for (gsize from = 0;;) {
    const char *hit = strstr (s->str + from, old);
    if (!hit)
      return;
    const gsize at = (gsize) (hit - s->str);
    g_string_erase (s, (gssize) at, (gssize) old_len);
    g_string_insert (s, (gssize) at, new);
    from = at + new_len;
  }
}

gboolean
cb_punc_norm_into (const char *utf8, GString *out)
{
  g_string_truncate (out, 0);
  if (!utf8 || !g_utf8_validate (utf8, -1, NULL))
    return FALSE;
  if (*utf8 == '\0') {
    g_string_assign (out, CB_EMPTY_TEXT_SENTENCE);
    return TRUE;
  }

  /* Capitalise the raw first character (before whitespace handling, as upstream does), then
   * rebuild the text as its words joined by single spaces. */
  const char *p = utf8;
  gunichar first = g_utf8_get_char (p);
  char *first_upper = NULL;
  if (cb_text_is_python_lower (first)) {
    first_upper = cb_text_python_upper (first);
    p = g_utf8_next_char (p);
  }
  const char *word = first_upper;    /* the capitalised character belongs to the first word */
  gboolean pending_space = FALSE;
  for (; *p; p = g_utf8_next_char (p)) {
    if (cb_text_is_python_space (g_utf8_get_char (p))) {
      pending_space = out->len > 0 || word != NULL;
      continue;
    }
    if (word) {
      g_string_append (out, word);
      word = NULL;
    }
    if (pending_space) {
      g_string_append_c (out, ' ');
      pending_space = FALSE;
    }
    g_string_append_len (out, p, g_utf8_next_char (p) - p);
  }
  if (word)
    g_string_append (out, word);
  g_free (first_upper);

  for (gsize i = 0; i < G_N_ELEMENTS (PUNC_REPLACEMENTS); i++)
    replace_all (out, PUNC_REPLACEMENTS[i][0], PUNC_REPLACEMENTS[i][1]);

  while (out->len > 0 && out->str[out->len - 1] == ' ')
    g_string_truncate (out, out->len - 1);
  if (out->len == 0 || !strchr (".!?-,", out->str[out->len - 1]))
    g_string_append_c (out, '.');
  return TRUE;
}

char *
cb_punc_norm (const char *utf8)
{
  g_return_val_if_fail (utf8 != NULL, NULL);
  g_return_val_if_fail (g_utf8_validate (utf8, -1, NULL), NULL);
  GString *out = g_string_sized_new (strlen (utf8) + 8);
  cb_punc_norm_into (utf8, out);
  return g_string_free (out, FALSE);
}

/* ---- sentence boundaries ------------------------------------------------------------------ */

typedef struct {
  gsize start, end;        /* byte range in the text */
  guint n_chars;
  gboolean break_before;   /* the whitespace before this word holds a line break */
} TextWord;

typedef enum { END_NO, END_YES, END_NEED_NEXT } SentenceEnd;

/* Line breaks as Python's str.splitlines() knows them. */
static gboolean
is_line_break (gunichar c)
{
  return (c >= 0x0a && c <= 0x0d) || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028
      || c == 0x2029;
}

static gboolean
in_set (const char *set, gunichar c)
{
  return c != 0 && g_utf8_strchr (set, -1, c) != NULL;
}

#define CLOSERS "\"')]}\u201d\u2019\u00bb\u203a\u300d\u300f\uff09"
#define OPENERS "\"'([{\u201c\u2018\u00ab\u2039\u300c\u300e\uff08"
#define SENTENCE_ENDERS ".!?\u203d\u2026\u3002\uff01\uff1f"
#define CLAUSE_ENDERS ",;:-\u2013\u2014\u3001\uff0c\uff1b\uff1a"

/* Abbreviations after which a '.' does not end a sentence (compared without the dot, ASCII
 * case-insensitively). Dotted single letters (J. U.S. e.g.) are recognised by shape instead. */
static const char *const ABBREVIATIONS[] = {
  "mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "mt", "fig", "figs", "approx",
  "cf", "al", "gen", "gov", "sen", "rep", "capt", "lt", "col", "sgt", "rev", "hon", "ave", "blvd",
};

/* The word's characters without leading openers and trailing closers: [*a, *b). */
static void
word_core (const char *s, const TextWord *w, const char **a, const char **b)
{
  const char *start = s + w->start, *end = s + w->end;
  while (start < end && in_set (OPENERS, g_utf8_get_char (start)))
    start = g_utf8_next_char (start);
  while (end > start) {
    const char *prev = g_utf8_prev_char (end);
    if (!in_set (CLOSERS, g_utf8_get_char (prev)))
      break;
    end = prev;
  }
  *a = start;
  *b = end;
}

/* "J." "U.S." "e.g." "a.m.": single letters each followed by a dot. */
static gboolean
is_dotted_letters (const char *a, const char *b)
{
  if (a == b)
    return FALSE;
  while (a < b) {
    if (!g_unichar_isalpha (g_utf8_get_char (a)))
      return FALSE;
    a = g_utf8_next_char (a);
    if (a >= b || *a != '.')
      return FALSE;
    a++;
  }
  return TRUE;
}

static gboolean
is_abbreviation (const char *a, const char *b)
{
  /* b points just past the final '.' */
  gsize n = (gsize) (b - a) - 1;
  for (gsize i = 0; i < G_N_ELEMENTS (ABBREVIATIONS); i++)
    if (strlen (ABBREVIATIONS[i]) == n && g_ascii_strncasecmp (a, ABBREVIATIONS[i], n) == 0)
      return TRUE;
  return is_dotted_letters (a, b);
}

static gboolean
is_number_dot (const char *a, const char *b)
{
  if (b - a < 2)
    return FALSE;
  for (const char *p = a; p < b - 1; p++)
    if (!g_ascii_isdigit (*p))
      return FALSE;
  return TRUE;
}

static gboolean
starts_lowercase (const char *s, const TextWord *w)
{
  const char *a, *b;
  word_core (s, w, &a, &b);
  return a < b && g_unichar_islower (g_utf8_get_char (a));
}

/* Does words[i] end a sentence? next is the following word, or NULL when none is known yet;
 * first is TRUE when words[i] opens its sentence. */
static SentenceEnd
sentence_end (const char *s, const TextWord *w, const TextWord *next, gboolean first)
{
  if (next && next->break_before)
    return END_YES;
  const char *a, *b;
  word_core (s, w, &a, &b);
  if (a == b)
    return END_NO;
  const char *last = g_utf8_prev_char (b);
  gunichar lc = g_utf8_get_char (last);
  if (!in_set (SENTENCE_ENDERS, lc))
    return END_NO;
  gboolean ellipsis = lc == 0x2026 || (b - a >= 3 && memcmp (b - 3, "...", 3) == 0);
  if (ellipsis) {
    /* "Wait... what" goes on; "Wait... What" is a new sentence. */
    if (!next)
      return END_NEED_NEXT;
    return starts_lowercase (s, next) ? END_NO : END_YES;
  }
  if (lc == '.' && (is_abbreviation (a, b) || (first && is_number_dot (a, b))))
    return END_NO;
  return END_YES;
}

static gboolean
is_clause_end (const char *s, const TextWord *w)
{
  const char *a, *b;
  word_core (s, w, &a, &b);
  return a < b && in_set (CLAUSE_ENDERS, g_utf8_get_char (g_utf8_prev_char (b)));
}

/* Words (runs of non-space characters) of s[0..len). *tail_space: whitespace follows the last
 * word; *tail_break: that whitespace holds a line break. */
static GArray *
scan_words (const char *s, gsize len, gboolean *tail_space, gboolean *tail_break)
{
  GArray *words = g_array_new (FALSE, FALSE, sizeof (TextWord));
  TextWord cur = { 0 };
  gboolean in_word = FALSE, saw_break = FALSE;
  const char *p = s, *end = s + len;
  while (p < end) {
    gunichar c = g_utf8_get_char (p);
    const char *q = g_utf8_next_char (p);
    if (cb_text_is_python_space (c)) {
      if (in_word) {
        cur.end = p - s;
        g_array_append_val (words, cur);
        in_word = FALSE;
        saw_break = FALSE;
      }
      saw_break = saw_break || is_line_break (c);
    } else {
      if (!in_word) {
        cur = (TextWord) { .start = p - s, .break_before = saw_break && words->len > 0 };
        in_word = TRUE;
      }
      cur.n_chars++;
    }
    p = q;
  }
  if (in_word) {
    cur.end = len;
    g_array_append_val (words, cur);
  }
  *tail_space = !in_word && words->len > 0;
  *tail_break = *tail_space && saw_break;
  return words;
}

/* ---- splitting ---------------------------------------------------------------------------- */

static void
add_piece (GPtrArray *pieces, const char *s, const TextWord *w, guint first, guint last)
{
  GString *piece = g_string_new (NULL);
  for (guint i = first; i <= last; i++) {
    if (i > first)
      g_string_append_c (piece, ' ');
    g_string_append_len (piece, s + w[i].start, w[i].end - w[i].start);
  }
  g_ptr_array_add (pieces, g_string_free (piece, FALSE));
}

/* A word longer than a whole piece: cut it every max_chars characters (the only cut inside a
 * word; nothing better exists). */
static void
add_long_word (GPtrArray *pieces, const char *s, const TextWord *w, guint max_chars)
{
  const char *p = s + w->start, *end = s + w->end;
  while (p < end) {
    const char *q = p;
    for (guint n = 0; n < max_chars && q < end; n++)
      q = g_utf8_next_char (q);
    g_ptr_array_add (pieces, g_strndup (p, q - p));
    p = q;
  }
}

/* One sentence, words[first..last]: whole if it fits, else greedy pieces that end at the last
 * clause punctuation that keeps a piece at least a third full, or else at the last word that fits. */
static void
add_sentence (GPtrArray *pieces, const char *s, const TextWord *w, guint first, guint last,
              guint max_chars)
{
  guint start = first;
  while (start <= last) {
    guint chars = 0, k = start, clause = G_MAXUINT;
    while (k <= last) {
      guint add = w[k].n_chars + (k > start ? 1 : 0);
      if (chars + add > max_chars)
        break;
      chars += add;
      if (chars >= max_chars / 3 && is_clause_end (s, &w[k]))
        clause = k;
      k++;
    }
    if (k > last) {
      add_piece (pieces, s, w, start, last);
      return;
    }
    if (k == start) {
      add_long_word (pieces, s, &w[k], max_chars);
      start = k + 1;
      continue;
    }
    guint cut = clause != G_MAXUINT ? clause : k - 1;
    add_piece (pieces, s, w, start, cut);
    start = cut + 1;
  }
}

GPtrArray *
cb_text_split_sentences (const char *utf8, guint max_chars)
{
  g_return_val_if_fail (utf8 != NULL, NULL);
  if (!g_utf8_validate (utf8, -1, NULL))
    return NULL;
  if (max_chars == 0)
    max_chars = CB_TEXT_DEFAULT_MAX_CHARS;

  gboolean tail_space, tail_break;
  GArray *words = scan_words (utf8, strlen (utf8), &tail_space, &tail_break);
  const TextWord *w = (const TextWord *) words->data;
  GPtrArray *pieces = g_ptr_array_new_with_free_func (g_free);
  guint first = 0;
  for (guint i = 0; i < words->len; i++) {
    const TextWord *next = i + 1 < words->len ? &w[i + 1] : NULL;
    if (!next || sentence_end (utf8, &w[i], next, i == first) == END_YES) {
      add_sentence (pieces, utf8, w, first, i, max_chars);
      first = i + 1;
    }
  }
  g_array_free (words, TRUE);
  return pieces;
}

gsize
cb_text_complete_prefix (const char *utf8, gsize len)
{
  g_return_val_if_fail (utf8 != NULL || len == 0, 0);
  /* A stream can stop inside a multi-byte character: look only at the valid part, whose last
   * word is then unfinished anyway. */
  const char *valid_end;
  g_utf8_validate_len (utf8, len, &valid_end);
  gsize valid = valid_end - utf8;

  gboolean tail_space, tail_break;
  GArray *words = scan_words (utf8, valid, &tail_space, &tail_break);
  const TextWord *w = (const TextWord *) words->data;
  gsize done = 0;
  guint first = 0;
  for (guint i = 0; i < words->len; i++) {
    const TextWord *next = i + 1 < words->len ? &w[i + 1] : NULL;
    SentenceEnd e;
    if (next)
      e = sentence_end (utf8, &w[i], next, i == first);
    else if (!tail_space)
      e = END_NO;            /* the last word may still grow */
    else if (tail_break)
      e = END_YES;
    else
      e = sentence_end (utf8, &w[i], NULL, i == first);
    if (e == END_YES) {
      done = w[i].end;
      first = i + 1;
    }
  }
  g_array_free (words, TRUE);
  return done;
}
