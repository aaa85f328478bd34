/* text.h — the English text front end: upstream's punc_norm and our sentence splitter.
 *
 * All functions take and return valid UTF-8 (the caller validates untrusted text first). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Piece length the splitter aims for: upstream users report that T3 degrades past about this many
 * characters per call. */
#define CB_TEXT_DEFAULT_MAX_CHARS 300

/* Upstream `punc_norm` (chatterbox tts.py), character for character: empty text becomes upstream's
 * stand-in sentence; a lower-case first character is upper-cased as Python's str.upper() does
 * (ß -> SS); whitespace runs (Python's str.split() set) collapse to one space; the ordered
 * punctuation replacements; a final '.' unless the text ends in . ! ? - ,
 * Returns a new string (g_free), or NULL if utf8 is NULL or not valid UTF-8. */
char       *cb_punc_norm (const char *utf8);
/* The same into `out` (its contents replaced; nothing allocated once it is long enough, except
 * for a lower-case first character, whose upper case is a new string). FALSE if utf8 is not valid
 * UTF-8. */
gboolean    cb_punc_norm_into (const char *utf8, GString *out);

/* Split long text into pieces of at most max_chars Unicode characters (0 means
 * CB_TEXT_DEFAULT_MAX_CHARS). Every sentence becomes its own piece; only a sentence longer than
 * max_chars is cut further, at clause punctuation first, then between words. Pieces are trimmed
 * and their whitespace runs collapsed to single spaces, so joining the pieces with single spaces
 * gives back the whitespace-normalised input (except for a single word longer than max_chars,
 * which alone is cut inside). Returns a GPtrArray of strings (it frees them); empty for blank text,
 * NULL if utf8 is not valid UTF-8.
 *
 * Sentence ends: a line break, or a word whose last character (after closing quotes/brackets) is
 * one of . ! ? ‽ … 。 ！ ？ — except a '.' after a known abbreviation (Mr. Dr. St. etc. vs. …),
 * after dotted single letters (J. U.S. e.g. i.e.), or after a bare number opening its sentence
 * (a list item "1."); and an ellipsis (... or …) followed by a word starting in lower case. Splits
 * fall only between words, so "3.14" and "1,000,000" are never cut. */
GPtrArray  *cb_text_split_sentences (const char *utf8, guint max_chars);

/* For text arriving in pieces (an LLM stream): the byte length of the longest prefix of
 * utf8[0..len) that ends with one or more complete sentences by the rules above, or 0 if there is
 * none yet. A sentence end counts only once whitespace follows it in the buffer (more text could
 * continue "3." or "..."); a line break always ends a sentence. The prefix ends right after the
 * last character of the sentence; the rest (starting with whitespace) is kept by the caller. */
gsize       cb_text_complete_prefix (const char *utf8, gsize len);

/* Character classes, exposed for tests: Python's str.isspace(); Python's one-character
 * str.islower(); and the Python str.upper() of one character (a new string, can expand). */
gboolean    cb_text_is_python_space (gunichar c);
gboolean    cb_text_is_python_lower (gunichar c);
char       *cb_text_python_upper (gunichar c);

G_END_DECLS
