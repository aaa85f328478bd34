/* tokenizer.h — the English text tokenizer: upstream EnTokenizer over a Hugging Face
 * `tokenizers` tokenizer.json.
 *
 * Encoding follows the tokenizers library (Rust) step by step: added tokens are cut out first
 * (non-normalized ones, then normalized ones; leftmost-longest, with single_word / lstrip / rstrip),
 * the rest is pre-tokenized (Whitespace, WhitespaceSplit, or a Sequence of them) and each piece is
 * BPE-encoded (merges by rank, unk / fuse_unk, continuing_subword_prefix, end_of_word_suffix,
 * byte_fallback, ignore_merges). Any normalizer, pre-tokenizer, model or post-processor this reader
 * does not implement is refused with CB_ERROR_UNSUPPORTED naming it, never skipped. */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

typedef struct _CbTokenizer CbTokenizer;

/* Read and validate tokenizer.json. Upstream's check is applied: "[START]" and "[STOP]" must be
 * tokens. Errors: CB_ERROR_NOT_FOUND / CB_ERROR_IO (reading), CB_ERROR_FORMAT (bad UTF-8, bad JSON,
 * wrong field types, duplicate ids, merges naming unknown tokens), CB_ERROR_UNSUPPORTED (a
 * component this reader does not implement), CB_ERROR_MISMATCH (an added token whose listed id is
 * not the id the tokenizers library would give it). */
CbTokenizer *cb_tokenizer_load (const char *path, GError **error);
void         cb_tokenizer_free (CbTokenizer *tok);

/* Check the model config's text start/stop ids against the file: "[START]" must be start_id and
 * "[STOP]" stop_id (upstream hard-codes 255 and 0). CB_ERROR_MISMATCH otherwise. */
gboolean     cb_tokenizer_check_start_stop (const CbTokenizer *tok, gint32 start_id,
                                            gint32 stop_id, GError **error);

/* Number of rows an embedding table needs: the largest id in the file plus one. */
guint        cb_tokenizer_vocab_size (const CbTokenizer *tok);

/* Id of a token (vocabulary or added token), or -1. */
gint32       cb_tokenizer_token_id (const CbTokenizer *tok, const char *token);

/* Upstream EnTokenizer.encode: every ' ' becomes "[SPACE]", then the tokenizers encoding. Appends
 * the ids (gint32) to ids_out; no start/stop ids are added (the caller adds them, as upstream's
 * generate does). CB_ERROR_INVALID_ARGUMENT if utf8 is not valid UTF-8. */
gboolean     cb_tokenizer_encode (const CbTokenizer *tok, const char *utf8, GArray *ids_out,
                                  GError **error);

/* Working buffers of an encode, kept by a caller that encodes many texts (an utterance stream), so
 * an encode allocates nothing once they have grown to the longest text. */
typedef struct _CbTokenizerScratch CbTokenizerScratch;
CbTokenizerScratch *cb_tokenizer_scratch_new (void);
/* With room for texts of up to max_chars characters from the start. */
CbTokenizerScratch *cb_tokenizer_scratch_new_sized (gsize max_chars);
void                cb_tokenizer_scratch_free (CbTokenizerScratch *scratch);
/* cb_tokenizer_encode with the caller's scratch. */
gboolean     cb_tokenizer_encode_with (const CbTokenizer *tok, CbTokenizerScratch *scratch,
                                       const char *utf8, GArray *ids_out, GError **error);

/* The Rust regex classes the pre-tokenizers use, exposed for tests: \s (White_Space) and \w
 * (Alphabetic, marks, decimal numbers, connector punctuation, join controls). */
gboolean     cb_tokenizer_is_rust_space (gunichar c);
gboolean     cb_tokenizer_is_rust_word (gunichar c);

G_END_DECLS
