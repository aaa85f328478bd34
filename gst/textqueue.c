/* textqueue.c — the element's text queue: bytes in, utterances out.
 *
 * A push runs three stages: UTF-8 decoding (a sequence cut by a buffer boundary is carried to the
 * next push), markup stripping (a tag or entity cut by a boundary is carried in the parser state),
 * and sentence detection on the decoded text waiting in `pending` (engine/text.h decides where
 * sentences end and how long ones are split). */
#include <string.h>

#include "textqueue.h"

#include "text.h"

/* The longest entity we wait for, '&' included: "&#x10FFFF" is 9, so anything longer is not one of
 * ours and is kept as text instead of swallowing the stream. */
#define MAX_ENTITY_LEN 12

/* Pending text longer than this many times max_chars without a sentence end is cut: an upstream
 * that never punctuates must not make us hold its whole output. */
#define PENDING_LIMIT_FACTOR 4

#define REPLACEMENT_CHAR "\xef\xbf\xbd"   /* U+FFFD */

typedef enum {
  MARKUP_TEXT,         /* plain text */
  MARKUP_LT,           /* just after '<': a tag only if a name (or / ! ?) follows */
  MARKUP_TAG,          /* inside <...> */
  MARKUP_TAG_QUOTE,    /* inside a quoted attribute value, where '>' does not end the tag */
  MARKUP_ENTITY,       /* after '&', collecting up to ';' */
} MarkupState;

struct _CbsTextQueue {
  guint max_chars;
  GQueue ready;                   /* char *, utterances in order */
  GString *pending;               /* decoded text without a sentence end yet; valid UTF-8 */
  guint8 carry[4];                /* an incomplete UTF-8 sequence that ended the last push */
  guint n_carry;
  MarkupState markup;
  gunichar quote;                 /* MARKUP_TAG_QUOTE: the quote that closes the value */
  char entity[MAX_ENTITY_LEN + 1];   /* MARKUP_ENTITY: the text since '&', NUL-terminated */
  guint entity_len;
};

CbsTextQueue *
cbs_text_queue_new (guint max_chars)
{
  CbsTextQueue *q = g_new0 (CbsTextQueue, 1);
  q->max_chars = max_chars ? max_chars : CB_TEXT_DEFAULT_MAX_CHARS;
  g_queue_init (&q->ready);
  q->pending = g_string_new (NULL);
  return q;
}

void
cbs_text_queue_clear (CbsTextQueue *q)
{
  g_return_if_fail (q != NULL);
  g_queue_clear_full (&q->ready, g_free);
  g_string_truncate (q->pending, 0);
  q->n_carry = 0;
  q->markup = MARKUP_TEXT;
  q->entity_len = 0;
}

void
cbs_text_queue_free (CbsTextQueue *q)
{
  if (!q)
    return;
  cbs_text_queue_clear (q);
  g_string_free (q->pending, TRUE);
  g_free (q);
}

/* ---- UTF-8 decoding ----------------------------------------------------------------------- */

/* Length of the sequence lead byte b starts, or 0 if b never starts one (a continuation byte, the
 * overlong leads C0 C1, or F5..FF beyond U+10FFFF). */
static guint
utf8_seq_len (guint8 b)
{
  if (b < 0x80)
    return 1;
  if (b >= 0xc2 && b <= 0xdf)
    return 2;
  if (b >= 0xe0 && b <= 0xef)
    return 3;
  if (b >= 0xf0 && b <= 0xf4)
    return 4;
  return 0;
}

/* Is b a valid byte after the lead byte lead at position k (1..3)? The second byte's range also
 * rules out overlong forms, surrogates and code points past U+10FFFF (Unicode Table 3-7). */
static gboolean
utf8_cont_ok (guint8 lead, guint k, guint8 b)
{
  if (k == 1) {
    switch (lead) {
      case 0xe0: return b >= 0xa0 && b <= 0xbf;
      case 0xed: return b >= 0x80 && b <= 0x9f;
      case 0xf0: return b >= 0x90 && b <= 0xbf;
      case 0xf4: return b >= 0x80 && b <= 0x8f;
      default: break;
    }
  }
  return (b & 0xc0) == 0x80;
}

/* Decodes p[0..n) into out. Each maximal ill-formed subpart becomes one U+FFFD (the Unicode
 * "best practice" that Python and browsers follow, so "\xe2\x82A" gives one replacement and "A",
 * while "\xc0\x80" gives two). A valid but incomplete sequence at the very end goes to q->carry.
 * Returns the number of replacements. */
static guint
decode_utf8 (CbsTextQueue *q, const guint8 *p, gsize n, GString *out)
{
  guint replaced = 0;
  gsize i = 0;
  while (i < n) {
    guint8 b = p[i];
    if (b < 0x80) {
      /* NUL cannot live in C strings; text sources often send a terminating one, so drop it. */
      if (b != 0)
        g_string_append_c (out, (char) b);
      i++;
      continue;
    }
    guint need = utf8_seq_len (b);
    if (need == 0) {
      g_string_append (out, REPLACEMENT_CHAR);
      replaced++;
      i++;
      continue;
    }
    guint k = 1;
    while (k < need && i + k < n && utf8_cont_ok (b, k, p[i + k]))
      k++;
    if (k == need) {
      g_string_append_len (out, (const char *) p + i, need);
    } else if (i + k == n) {
      memcpy (q->carry, p + i, k);    /* may still complete in the next push */
      q->n_carry = k;
    } else {
      g_string_append (out, REPLACEMENT_CHAR);
      replaced++;
    }
    i += k;
  }
  return replaced;
}

/* ---- markup ------------------------------------------------------------------------------- */

/* Appends the character an entity ("&name" without ';') stands for. Returns FALSE for an entity we
 * do not know (the caller keeps it as text); *replaced counts a numeric one naming no character. */
static gboolean
decode_entity (const char *ent, GString *out, guint *replaced)
{
  static const char *const NAMED[][2] = {
    { "&amp", "&" }, { "&lt", "<" }, { "&gt", ">" }, { "&quot", "\"" }, { "&apos", "'" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (NAMED); i++) {
    if (strcmp (ent, NAMED[i][0]) == 0) {
      g_string_append (out, NAMED[i][1]);
      return TRUE;
    }
  }
  if (ent[1] != '#')
    return FALSE;
  gboolean hex = ent[2] == 'x' || ent[2] == 'X';
  const char *digits = ent + (hex ? 3 : 2);
  if (*digits == '\0')
    return FALSE;
  for (const char *d = digits; *d; d++)
    if (hex ? !g_ascii_isxdigit (*d) : !g_ascii_isdigit (*d))
      return FALSE;
  /* At most 10 digits fit in MAX_ENTITY_LEN, so this cannot overflow 64 bits. */
  guint64 cp = g_ascii_strtoull (digits, NULL, hex ? 16 : 10);
  if (cp == 0 || cp > 0x10ffff || !g_unichar_validate ((gunichar) cp)) {
    g_string_append (out, REPLACEMENT_CHAR);
    (*replaced)++;
    return TRUE;
  }
  g_string_append_unichar (out, (gunichar) cp);
  return TRUE;
}

/* Can c follow '<' in a tag? XML wants a name (or / ! ?) right away, so "a < b" stays text. */
static gboolean
tag_start_char (gunichar c)
{
  return g_ascii_isalpha (c) || c == '/' || c == '!' || c == '?' || c == '_' || c == ':';
}

/* Feeds decoded text s[0..len) through the markup parser, appending its text to out. */
static guint
strip_markup (CbsTextQueue *q, const char *s, gsize len, GString *out)
{
  guint replaced = 0;
  const char *p = s, *end = s + len;
  while (p < end) {
    gunichar c = g_utf8_get_char (p);
    const char *next = g_utf8_next_char (p);
    switch (q->markup) {
      case MARKUP_TEXT:
        if (c == '<') {
          q->markup = MARKUP_LT;
        } else if (c == '&') {
          q->markup = MARKUP_ENTITY;
          q->entity[0] = '&';
          q->entity_len = 1;
        } else {
          g_string_append_len (out, p, next - p);
        }
        break;
      case MARKUP_LT:
        if (tag_start_char (c)) {
          q->markup = MARKUP_TAG;
        } else {
          g_string_append_c (out, '<');
          q->markup = MARKUP_TEXT;
          continue;             /* c itself is text (or opens another tag or entity) */
        }
        break;
      case MARKUP_TAG:
        if (c == '>') {
          q->markup = MARKUP_TEXT;
        } else if (c == '"' || c == '\'') {
          q->markup = MARKUP_TAG_QUOTE;
          q->quote = c;
        }
        break;
      case MARKUP_TAG_QUOTE:
        if (c == q->quote)
          q->markup = MARKUP_TAG;
        break;
      case MARKUP_ENTITY:
        q->entity[q->entity_len] = '\0';
        if (c == ';') {
          if (!decode_entity (q->entity, out, &replaced))
            g_string_append_printf (out, "%s;", q->entity);
          q->markup = MARKUP_TEXT;
        } else if ((g_ascii_isalnum (c) || c == '#') && q->entity_len < MAX_ENTITY_LEN) {
          q->entity[q->entity_len++] = (char) c;
        } else {
          /* Not an entity ("AT&T", "fish & chips"): the '&' and what followed are text. */
          g_string_append (out, q->entity);
          q->markup = MARKUP_TEXT;
          continue;
        }
        break;
    }
    p = next;
  }
  return replaced;
}

/* Ends a dangling '<' or entity as literal text. An open tag stays open when keep_tag (it holds no
 * text, and its end may still come); otherwise it is dropped. */
static void
markup_resolve (CbsTextQueue *q, GString *out, gboolean keep_tag)
{
  if (q->markup == MARKUP_LT) {
    g_string_append_c (out, '<');
  } else if (q->markup == MARKUP_ENTITY) {
    q->entity[q->entity_len] = '\0';
    g_string_append (out, q->entity);
  } else if (keep_tag) {
    return;
  }
  q->markup = MARKUP_TEXT;
}

/* ---- sentences ---------------------------------------------------------------------------- */

/* Splits s[0..len) into pieces of at most max_chars and queues the non-blank ones. */
static void
make_ready (CbsTextQueue *q, const char *s, gsize len)
{
  char *text = g_strndup (s, len);
  GPtrArray *pieces = cb_text_split_sentences (text, q->max_chars);
  g_free (text);
  g_return_if_fail (pieces != NULL);     /* pending is valid UTF-8 by construction */
  for (guint i = 0; i < pieces->len; i++) {
    char *piece = g_ptr_array_index (pieces, i);
    gboolean blank = TRUE;
    for (const char *p = piece; *p && blank; p = g_utf8_next_char (p))
      blank = cb_text_is_python_space (g_utf8_get_char (p));
    if (!blank)
      g_queue_push_tail (&q->ready, g_strdup (piece));
  }
  g_ptr_array_unref (pieces);
}

/* Length of the whitespace at the start of s[0..len), in bytes; *chars gets it in characters. */
static gsize
skip_space (const char *s, gsize len, gsize *chars)
{
  const char *p = s, *end = s + len;
  gsize n = 0;
  while (p < end && cb_text_is_python_space (g_utf8_get_char (p))) {
    p = g_utf8_next_char (p);
    n++;
  }
  if (chars)
    *chars = n;
  return p - s;
}

static gboolean
is_clause_char (gunichar c)
{
  static const char CLAUSE[] = ",;:-\u2013\u2014\u3001\uff0c\uff1b\uff1a";
  return c != 0 && g_utf8_strchr (CLAUSE, -1, c) != NULL;
}

/* Where to cut overlong unfinished text s[0..len) (starting with a word): the end of the longest
 * run of whole words that fits max_chars when joined by single spaces, ending at clause
 * punctuation if one keeps the piece at least a third full (as the engine's splitter does). Only
 * words followed by whitespace count, since the last one may still grow. A first word longer than
 * max_chars is cut inside after max_chars characters. Returns a byte offset > 0. */
static gsize
find_cut (const char *s, gsize len, guint max_chars)
{
  const char *p = s, *end = s + len;
  gsize chars = 0, fit = 0, clause = 0;
  while (p < end) {
    const char *word = p;
    gsize n = 0;
    gunichar last = 0;
    while (p < end && !cb_text_is_python_space (g_utf8_get_char (p))) {
      last = g_utf8_get_char (p);
      p = g_utf8_next_char (p);
      n++;
    }
    gsize add = n + (chars > 0 ? 1 : 0);
    if (p == end || chars + add > max_chars) {
      if (fit == 0) {             /* the first word alone is too long: cut inside it */
        p = word;
        for (guint i = 0; i < max_chars && p < end; i++)
          p = g_utf8_next_char (p);
        return p - s;
      }
      break;
    }
    chars += add;
    fit = p - s;
    if (chars >= max_chars / 3 && is_clause_char (last))
      clause = fit;
    p += skip_space (p, end - p, NULL);
  }
  return clause ? clause : fit;
}

/* Queues what pending holds of complete sentences, then cuts it down to the limit. */
static void
process_pending (CbsTextQueue *q)
{
  GString *pend = q->pending;
  gsize start = cb_text_complete_prefix (pend->str, pend->len);
  if (start > 0)
    make_ready (q, pend->str, start);
  /* What is left starts with whitespace, which no longer matters (a line break before the first
   * word ends nothing); dropping it keeps a stream of blank lines from accumulating. */
  start += skip_space (pend->str + start, pend->len - start, NULL);

  gsize limit = (gsize) q->max_chars * PENDING_LIMIT_FACTOR;
  gsize chars = g_utf8_strlen (pend->str + start, pend->len - start);
  while (chars > limit) {
    gsize cut = find_cut (pend->str + start, pend->len - start, q->max_chars);
    make_ready (q, pend->str + start, cut);
    chars -= g_utf8_strlen (pend->str + start, cut);
    start += cut;
    gsize space_chars;
    start += skip_space (pend->str + start, pend->len - start, &space_chars);
    chars -= space_chars;
  }
  /* One erase per push: cutting a huge buffer piece by piece stays linear. */
  g_string_erase (pend, 0, start);
}

/* ---- the API ------------------------------------------------------------------------------ */

guint
cbs_text_queue_push (CbsTextQueue *q, const guint8 *data, gsize len, gboolean markup)
{
  g_return_val_if_fail (q != NULL, 0);
  g_return_val_if_fail (data != NULL || len == 0, 0);

  /* Put a carried partial sequence back in front of the new bytes. */
  guint8 *joined = NULL;
  if (q->n_carry > 0 && len > 0) {
    joined = g_malloc (q->n_carry + len);
    memcpy (joined, q->carry, q->n_carry);
    memcpy (joined + q->n_carry, data, len);
    data = joined;
    len += q->n_carry;
    q->n_carry = 0;
  }
  GString *text = g_string_sized_new (len);
  guint replaced = decode_utf8 (q, data, len, text);
  g_free (joined);

  if (markup) {
    replaced += strip_markup (q, text->str, text->len, q->pending);
  } else {
    /* The caps went from markup to plain text mid-stream: settle the parser first. */
    markup_resolve (q, q->pending, FALSE);
    g_string_append_len (q->pending, text->str, text->len);
  }
  g_string_free (text, TRUE);
  process_pending (q);
  return replaced;
}

guint
cbs_text_queue_finish_pending (CbsTextQueue *q)
{
  g_return_val_if_fail (q != NULL, 0);
  guint replaced = 0;
  if (q->n_carry > 0) {
    /* A valid prefix of a sequence is one maximal ill-formed subpart: one replacement. It goes
     * through the markup parser like any character, so it ends a dangling entity first. */
    q->n_carry = 0;
    replaced++;
    if (q->markup != MARKUP_TEXT)
      replaced += strip_markup (q, REPLACEMENT_CHAR, strlen (REPLACEMENT_CHAR), q->pending);
    else
      g_string_append (q->pending, REPLACEMENT_CHAR);
  }
  markup_resolve (q, q->pending, TRUE);
  /* Everything waiting is now final: the splitter finds its sentences and bounds the pieces. */
  make_ready (q, q->pending->str, q->pending->len);
  g_string_truncate (q->pending, 0);
  return replaced;
}

char *
cbs_text_queue_pop (CbsTextQueue *q)
{
  g_return_val_if_fail (q != NULL, NULL);
  return g_queue_pop_head (&q->ready);
}

guint
cbs_text_queue_n_ready (const CbsTextQueue *q)
{
  g_return_val_if_fail (q != NULL, 0);
  return q->ready.length;
}

gboolean
cbs_text_queue_has_pending (const CbsTextQueue *q)
{
  g_return_val_if_fail (q != NULL, FALSE);
  /* process_pending drops leading whitespace, so any pending byte is a non-blank character; a
   * carried partial character, '<' or entity would become text at finish_pending. */
  return q->pending->len > 0 || q->n_carry > 0 || q->markup == MARKUP_LT
      || q->markup == MARKUP_ENTITY;
}
