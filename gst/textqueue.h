/* textqueue.h — turns the text arriving on chatterboxsrc's sink pad (a byte stream, possibly a word
 * at a time from a language model) into utterances to speak.
 *
 * Pure GLib, no GStreamer types, so it is tested on its own (tests/check/test-textqueue.c).
 * Not thread-safe: the element guards it with its own lock. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _CbsTextQueue CbsTextQueue;

/* max_chars: the longest utterance in Unicode characters (0: CB_TEXT_DEFAULT_MAX_CHARS). */
CbsTextQueue *cbs_text_queue_new (guint max_chars);
void          cbs_text_queue_free (CbsTextQueue *q);

/* Appends one buffer's bytes. markup: pango markup — tags are stripped and the entities &amp; &lt;
 * &gt; &quot; &apos; &#NN; &#xNN; decoded; a tag or entity split across buffers waits for its end
 * (an unknown or unterminated entity is kept as literal text). A UTF-8 sequence split across
 * buffers is reassembled; invalid bytes (and numeric entities naming no character) become U+FFFD.
 * NUL bytes are dropped. Complete sentences become ready utterances at once (split to at most
 * max_chars characters); the unfinished rest waits, but never grows past 4 × max_chars: beyond
 * that it is cut between words and made ready.
 * Returns the number of U+FFFD replacements made in this push (the element warns when > 0). */
guint         cbs_text_queue_push (CbsTextQueue *q, const guint8 *data, gsize len, gboolean markup);

/* Makes the waiting unfinished text ready too (flush timeout passed, or upstream EOS). A dangling
 * incomplete UTF-8 sequence becomes U+FFFD, a dangling entity or '<' literal text; an open tag
 * stays open (it holds no text). Returns the number of replacements made. */
guint         cbs_text_queue_finish_pending (CbsTextQueue *q);

/* The next utterance to speak (g_free), or NULL when none is ready. Never blank; order is kept. */
char         *cbs_text_queue_pop (CbsTextQueue *q);
guint         cbs_text_queue_n_ready (const CbsTextQueue *q);

/* Unfinished text (not only whitespace) waits for a sentence end or finish_pending. */
gboolean      cbs_text_queue_has_pending (const CbsTextQueue *q);

/* Drops everything, ready and waiting, and forgets split tags and characters (a sink-pad flush). */
void          cbs_text_queue_clear (CbsTextQueue *q);

G_END_DECLS
