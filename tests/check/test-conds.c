/* Units of engine/conds.c, engine/torchzip.c and engine/pickle.c: conds.pt files written by
 * upstream's Conditionals.save (tests/reference/make_conds_fixtures.py) read bit for bit, and
 * malformed archives and pickles, made here with libzip or by hand, each refused with its own error. */
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "cb-check.h"
#include "conds.h"
#include "pickle.h"

/* ---- helpers ---- */

static char *
data_path (const char *name)
{
  char *rel = g_build_filename ("conds", name, NULL);
  char *path = cb_test_data_path (rel);
  g_free (rel);
  return path;
}

static GBytes *
read_file (const char *path)
{
  char *bytes;
  gsize len;
  g_autoptr (GError) err = NULL;
  ck_assert_msg (g_file_get_contents (path, &bytes, &len, &err), "%s", err ? err->message : "");
  return g_bytes_new_take (bytes, len);
}

static char *
write_tmp (const char *dir, const char *name, const void *data, gsize len)
{
  char *path = g_build_filename (dir, name, NULL);
  ck_assert (g_file_set_contents (path, data, len, NULL));
  return path;
}

/* Copy zip `src` to `dst` (stored, or deflated when rezip_deflate is set), replacing the entry whose name ends with `suffix` by data[0..len),
 * or leaving it out when data is NULL (nothing changes when suffix is NULL). */
static gboolean rezip_deflate;

static void
rezip (const char *src, const char *dst, const char *suffix, const void *data, gsize len)
{
  int zerr;
  zip_t *in = zip_open (src, ZIP_RDONLY, &zerr);
  zip_t *out = zip_open (dst, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  ck_assert (in && out);
  for (zip_int64_t i = 0; i < zip_get_num_entries (in, 0); i++) {
    const char *name = zip_get_name (in, i, 0);
    zip_stat_t st;
    ck_assert (zip_stat_index (in, i, 0, &st) == 0);
    void *buf;
    gsize size;
    if (suffix && g_str_has_suffix (name, suffix) && !data) {
      continue;
    } else if (suffix && g_str_has_suffix (name, suffix)) {
      size = len;
      buf = malloc (len ? len : 1); /* libzip frees it with free() */
      memcpy (buf, data, len);
    } else {
      size = st.size;
      buf = malloc (size ? size : 1);
      zip_file_t *f = zip_fopen_index (in, i, 0);
      ck_assert (f && zip_fread (f, buf, size) == (zip_int64_t) size);
      zip_fclose (f);
    }
    zip_source_t *s = zip_source_buffer (out, buf, size, 1);
    zip_int64_t idx = zip_file_add (out, name, s, 0);
    ck_assert (idx >= 0);
    zip_set_file_compression (out, idx, rezip_deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 9);
  }
  ck_assert (zip_close (out) == 0);
  zip_discard (in);
}

/* The bytes of the entry of zip `path` whose name ends with `suffix`; with `largest_under`, the
 * largest entry whose name contains that instead. */
static GBytes *
zip_entry (const char *path, const char *suffix, const char *largest_under, char **name_out)
{
  int zerr;
  zip_t *z = zip_open (path, ZIP_RDONLY, &zerr);
  ck_assert (z);
  zip_int64_t best = -1;
  zip_uint64_t best_size = 0;
  for (zip_int64_t i = 0; i < zip_get_num_entries (z, 0); i++) {
    const char *name = zip_get_name (z, i, 0);
    zip_stat_t st;
    zip_stat_index (z, i, 0, &st);
    if ((suffix && g_str_has_suffix (name, suffix))
        || (largest_under && strstr (name, largest_under) && st.size > best_size)) {
      best = i;
      best_size = st.size;
      if (suffix)
        break;
    }
  }
  ck_assert (best >= 0);
  guint8 *buf = g_malloc (best_size + 1);
  zip_file_t *f = zip_fopen_index (z, best, 0);
  ck_assert (zip_fread (f, buf, best_size) == (zip_int64_t) best_size);
  zip_fclose (f);
  if (name_out)
    *name_out = g_strdup (zip_get_name (z, best, 0));
  zip_discard (z);
  return g_bytes_new_take (buf, best_size);
}

/* Load `path` expecting failure with `code` and a message containing the file name and `needle`. */
static void
expect_error (const char *path, const CbCondsExpect *expect, CbError code, const char *needle)
{
  g_autoptr (GError) err = NULL;
  CbConds *c = cb_conds_load (path, expect, &err);
  ck_assert_msg (c == NULL, "%s loaded, expected an error containing '%s'", path, needle);
  ck_assert (err != NULL);
  ck_assert_msg (err->domain == CB_ERROR && err->code == (int) code, "%s: code %d, expected %d: %s", path,
                 err->code, code, err->message);
  g_autofree char *base = g_path_get_basename (path);
  ck_assert_msg (g_str_has_prefix (err->message, base), "message does not start with the file name: %s", err->message);
  ck_assert_msg (strstr (err->message, needle), "message '%s' lacks '%s'", err->message, needle);
}

/* Expectations for a fixture from its .expect.json (the small ones use their own sizes). */
static JsonObject *
load_expect (const char *fixture, CbCondsExpect *e, JsonParser **parser)
{
  g_autofree char *name = g_strconcat (fixture, ".expect.json", NULL);
  g_autofree char *path = data_path (name);
  *parser = json_parser_new ();
  ck_assert (json_parser_load_from_file (*parser, path, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (*parser));
  cb_conds_expect_default (e);
  e->speaker_embed_size = json_object_get_int_member (o, "speaker_embed_size");
  e->mel_bins = json_object_get_int_member (o, "mel_bins");
  e->xvector_size = json_object_get_int_member (o, "xvector_size");
  e->speech_vocab = json_object_get_int_member (o, "speech_vocab");
  return o;
}

/* Load fixture.pt and compare every field with fixture.expect.{json,bin}, bit for bit. */
static void
check_fixture (const char *fixture, gboolean default_expect)
{
  CbCondsExpect e;
  JsonParser *parser;
  JsonObject *o = load_expect (fixture, &e, &parser);
  g_autofree char *pt_name = g_strconcat (fixture, ".pt", NULL);
  g_autofree char *bin_name = g_strconcat (fixture, ".expect.bin", NULL);
  g_autofree char *pt = data_path (pt_name), *bin = data_path (bin_name);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbConds) c = cb_conds_load (pt, default_expect ? NULL : &e, &err);
  ck_assert_msg (c != NULL, "%s", err ? err->message : "");

  int S = json_object_get_int_member (o, "speaker_embed_size");
  int N = json_object_get_int_member (o, "n_cond_prompt_tokens");
  int Tp = json_object_get_int_member (o, "n_prompt_tokens");
  int Tm = json_object_get_int_member (o, "n_prompt_frames");
  int M = json_object_get_int_member (o, "mel_bins");
  int X = json_object_get_int_member (o, "xvector_size");
  guint32 ea_bits = (guint32) json_object_get_int_member (o, "emotion_adv_f32_bits");
  ck_assert_int_eq (c->speaker_embed_size, S);
  ck_assert_int_eq (c->n_cond_prompt_tokens, N);
  ck_assert_int_eq (c->n_prompt_tokens, Tp);
  ck_assert_int_eq (c->n_prompt_frames, Tm);
  ck_assert_int_eq (c->mel_bins, M);
  ck_assert_int_eq (c->xvector_size, X);
  guint32 got_bits;
  memcpy (&got_bits, &c->emotion_adv, 4);
  ck_assert_uint_eq (got_bits, ea_bits);

  g_autoptr (GBytes) want = read_file (bin);
  gsize want_len;
  const guint8 *w = g_bytes_get_data (want, &want_len);
  const struct {
    const void *got;
    gsize bytes;
    const char *what;
  } parts[] = {
    { c->speaker_emb, (gsize) S * 4, "speaker_emb" },
    { c->cond_prompt_tokens, (gsize) N * 4, "cond_prompt_tokens" },
    { c->prompt_tokens, (gsize) Tp * 4, "prompt_tokens" },
    { c->prompt_feat, (gsize) Tm * M * 4, "prompt_feat" },
    { c->embedding, (gsize) X * 4, "embedding" },
  };
  gsize at = 0;
  for (gsize i = 0; i < G_N_ELEMENTS (parts); i++) {
    ck_assert_uint_le (at + parts[i].bytes, want_len);
    ck_assert_msg (memcmp (parts[i].got, w + at, parts[i].bytes) == 0, "%s: %s differs", fixture, parts[i].what);
    at += parts[i].bytes;
  }
  ck_assert_uint_eq (at, want_len);
  g_object_unref (parser);
}

static void
small_expect (CbCondsExpect *e)
{
  JsonParser *parser;
  load_expect ("conds_small", e, &parser);
  g_object_unref (parser);
}

/* ---- files written by upstream's code ---- */

START_TEST (test_full_voice_bit_exact)
{
  /* real sizes, read with the default expectations; prompt_feat is a transposed view and
   * prompt_token a slice of a longer storage, as upstream's embed_ref leaves them */
  check_fixture ("conds_full", TRUE);
}
END_TEST

START_TEST (test_small_voice_bit_exact)
{
  check_fixture ("conds_small", FALSE);
}
END_TEST

START_TEST (test_float_emotion_adv)
{
  check_fixture ("conds_float_emotion", FALSE);
}
END_TEST

START_TEST (test_sizes_come_from_expectations)
{
  g_autofree char *path = data_path ("conds_small.pt");
  expect_error (path, NULL, CB_ERROR_MISMATCH, "t3.speaker_emb has shape [1, 16], expected [1, 256]");
  CbCondsExpect e;
  small_expect (&e);
  e.speech_vocab = 10; /* the fixture's ids go up to 99 */
  expect_error (path, &e, CB_ERROR_MISMATCH, "outside the speech vocabulary [0, 10)");
  small_expect (&e);
  e.max_prompt_tokens = 5; /* the fixture has Tp = 6 */
  expect_error (path, &e, CB_ERROR_MISMATCH, "gen.prompt_token has shape [1, 6], expected [1, Tp] with 1 <= Tp <= 5");
}
END_TEST

/* ---- bad files ---- */

START_TEST (test_wrong_shape)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *path = data_path ("bad_wrong_shape.pt");
  expect_error (path, &e, CB_ERROR_MISMATCH, "gen.prompt_feat has shape [1, 13, 7], expected [1, Tm, 8]");
}
END_TEST

START_TEST (test_missing_key)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *path = data_path ("bad_missing_key.pt");
  expect_error (path, &e, CB_ERROR_MISMATCH, "gen.embedding is missing");
}
END_TEST

START_TEST (test_inconsistent_lengths)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *frames = data_path ("bad_feat_frames.pt");
  expect_error (frames, &e, CB_ERROR_MISMATCH, "gen.prompt_feat has 16 frames for 6 prompt tokens");
  g_autofree char *len = data_path ("bad_token_len.pt");
  expect_error (len, &e, CB_ERROR_MISMATCH, "gen.prompt_token_len is 5, but gen.prompt_token holds 6 tokens");
}
END_TEST

START_TEST (test_legacy_format)
{
  g_autofree char *path = data_path ("bad_legacy.pt");
  expect_error (path, NULL, CB_ERROR_UNSUPPORTED, "legacy torch format not supported");
}
END_TEST

START_TEST (test_foreign_pickle)
{
  g_autofree char *path = data_path ("bad_foreign_pickle.pt");
  expect_error (path, NULL, CB_ERROR_UNSUPPORTED, "global 'os.system' is not allowed");
}
END_TEST

START_TEST (test_not_found)
{
  expect_error ("/nonexistent/dir/conds.pt", NULL, CB_ERROR_NOT_FOUND, "no such file");
}
END_TEST

START_TEST (test_truncated)
{
  g_autofree char *src = data_path ("conds_full.pt");
  g_autoptr (GBytes) good = read_file (src);
  gsize len;
  const guint8 *b = g_bytes_get_data (good, &len);
  g_autofree char *dir = cb_test_tmpdir ("conds-truncated");
  /* inside the first header, the pickle, a storage, the central directory, the end record */
  const gsize cuts[] = { 0, 3, 30, 200, len / 2, len - 400, len - 30, len - 1 };
  for (gsize i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_autofree char *path = write_tmp (dir, "conds.pt", b, cuts[i]);
    g_autoptr (GError) err = NULL;
    CbConds *c = cb_conds_load (path, NULL, &err);
    ck_assert_msg (c == NULL, "cut at %" G_GSIZE_FORMAT " loaded", cuts[i]);
    ck_assert (err && err->domain == CB_ERROR);
    ck_assert_msg (g_str_has_prefix (err->message, "conds.pt: "), "%s", err->message);
  }
  /* a cut that keeps the local headers names the damage */
  g_autofree char *path = write_tmp (dir, "conds.pt", b, len / 2);
  expect_error (path, NULL, CB_ERROR_FORMAT, "truncated or damaged zip archive");
}
END_TEST

START_TEST (test_random_zip)
{
  g_autofree char *dir = cb_test_tmpdir ("conds-random-zip");
  g_autofree char *path = g_build_filename (dir, "conds.pt", NULL);
  int zerr;
  zip_t *z = zip_open (path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  static const char text[] = "not a checkpoint";
  zip_file_add (z, "notes/readme.txt", zip_source_buffer (z, text, sizeof text, 0), 0);
  zip_file_add (z, "archive/data.pkl.bak", zip_source_buffer (z, text, sizeof text, 0), 0);
  ck_assert (zip_close (z) == 0);
  expect_error (path, NULL, CB_ERROR_FORMAT, "zip archive with 2 entries but no <dir>/data.pkl");
}
END_TEST

START_TEST (test_not_zip)
{
  g_autofree char *dir = cb_test_tmpdir ("conds-not-zip");
  guint8 junk[4096];
  GRand *r = g_rand_new_with_seed (7);
  for (gsize i = 0; i < sizeof junk; i++)
    junk[i] = (guint8) g_rand_int (r);
  g_rand_free (r);
  g_autofree char *path = write_tmp (dir, "conds.pt", junk, sizeof junk);
  expect_error (path, NULL, CB_ERROR_FORMAT, "not a torch.save file (not a zip archive");
}
END_TEST

START_TEST (test_short_storage)
{
  g_autofree char *src = data_path ("conds_full.pt");
  g_autofree char *entry = NULL;
  g_autoptr (GBytes) feat = zip_entry (src, NULL, "/data/", &entry); /* the largest: prompt_feat */
  gsize len;
  const guint8 *b = g_bytes_get_data (feat, &len);
  ck_assert_uint_eq (len, 500 * 80 * 4);
  g_autofree char *dir = cb_test_tmpdir ("conds-short-storage");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  g_autofree char *needle = g_strdup_printf ("gen.prompt_feat: storage entry %s has %" G_GSIZE_FORMAT
                                             " bytes, expected 160000", entry, len - 4);
  rezip (src, dst, entry, b, len - 4);
  expect_error (dst, NULL, CB_ERROR_FORMAT, needle);
}
END_TEST

START_TEST (test_huge_string_in_archive)
{
  /* BINUNICODE declaring 4 GB - 16 bytes, followed by 3 */
  static const guint8 pkl[] = { 0x80, 2, '}', 'X', 0xf0, 0xff, 0xff, 0xff, 'a', 'b', 'c' };
  g_autofree char *src = data_path ("conds_small.pt");
  g_autofree char *dir = cb_test_tmpdir ("conds-huge-string");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  rezip (src, dst, "/data.pkl", pkl, sizeof pkl);
  expect_error (dst, NULL, CB_ERROR_FORMAT, "offset 3 (opcode BINUNICODE): string length 4294967280 exceeds the limit");
}
END_TEST

START_TEST (test_byteorder)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *src = data_path ("conds_small.pt");
  g_autofree char *dir = cb_test_tmpdir ("conds-byteorder");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  rezip (src, dst, "/byteorder", "big", 3);
  expect_error (dst, &e, CB_ERROR_UNSUPPORTED, "byte order \"big\" not supported");
  /* torch < 2.1 wrote no byteorder entry: little-endian */
  rezip (src, dst, "/byteorder", NULL, 0);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbConds) c = cb_conds_load (dst, &e, &err);
  ck_assert_msg (c != NULL, "%s", err ? err->message : "");
}
END_TEST

START_TEST (test_view_out_of_range)
{
  /* The first tensor in the pickle is t3.speaker_emb (T3Cond field order): its storage offset is
   * the BININT1 right after BINPERSID. Offset 1 moves the view one element past its storage. */
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *src = data_path ("conds_small.pt");
  g_autoptr (GBytes) pkl = zip_entry (src, "/data.pkl", NULL, NULL);
  gsize len;
  const guint8 *orig = g_bytes_get_data (pkl, &len);
  guint8 *b = g_memdup2 (orig, len);
  gsize at = 0;
  while (at + 3 <= len && memcmp (b + at, "QK\0", 3) != 0)
    at++;
  ck_assert (at + 3 <= len);
  b[at + 2] = 1;
  g_autofree char *dir = cb_test_tmpdir ("conds-view");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  rezip (src, dst, "/data.pkl", b, len);
  expect_error (dst, &e, CB_ERROR_FORMAT, "t3.speaker_emb: view (offset 1) reaches past its storage");
  g_free (b);
}
END_TEST

START_TEST (test_bad_expectations)
{
  CbCondsExpect e;
  cb_conds_expect_default (&e);
  e.mel_bins = 0;
  g_autofree char *path = data_path ("conds_full.pt");
  g_autoptr (GError) err = NULL;
  ck_assert (cb_conds_load (path, &e, &err) == NULL);
  ck_assert_int_eq (err->code, CB_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (test_rezipped_good_file_loads)
{
  /* the rezip helper itself keeps a file valid, so the errors above come from the changed entry */
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *src = data_path ("conds_small.pt");
  g_autofree char *dir = cb_test_tmpdir ("conds-rezip");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  rezip (src, dst, NULL, NULL, 0);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbConds) c = cb_conds_load (dst, &e, &err);
  ck_assert_msg (c != NULL, "%s", err ? err->message : "");
  /* deflated entries are read too (libzip inflates them; sizes are still checked) */
  rezip_deflate = TRUE;
  rezip (src, dst, NULL, NULL, 0);
  rezip_deflate = FALSE;
  g_autoptr (CbConds) c2 = cb_conds_load (dst, &e, &err);
  ck_assert_msg (c2 != NULL, "%s", err ? err->message : "");
  ck_assert (memcmp (c->prompt_feat, c2->prompt_feat, (gsize) c->n_prompt_frames * c->mel_bins * 4) == 0);
  int zerr;
  zip_t *z = zip_open (dst, ZIP_RDONLY, &zerr);
  zip_stat_t st;
  ck_assert (zip_stat (z, "conds_small/data.pkl", 0, &st) == 0);
  ck_assert_int_eq (st.comp_method, ZIP_CM_DEFLATE);
  zip_discard (z);
}
END_TEST

/* ---- the pickle interpreter on hand-made pickles ---- */

static void
pickle_error (const guint8 *data, gsize len, CbError code, const char *needle)
{
  g_autoptr (GError) err = NULL;
  CbPickle *p = cb_pickle_load (data, len, "t.pkl", &err);
  ck_assert_msg (p == NULL, "pickle loaded, expected '%s'", needle);
  ck_assert_msg (err->code == (int) code, "code %d, expected %d: %s", err->code, code, err->message);
  ck_assert_msg (strstr (err->message, needle), "message '%s' lacks '%s'", err->message, needle);
}

#define PICKLE_ERROR(code, needle, ...)                                         \
  do {                                                                          \
    static const guint8 bytes_[] = { __VA_ARGS__ };                            \
    pickle_error (bytes_, sizeof bytes_, code, needle);                         \
  } while (0)

START_TEST (test_pickle_values)
{
  /* {'a': [1, -2, 300, 70000, -5 (LONG1), 1.5], 'b': (None, True), 'b2': 'x'} */
  static const guint8 pkl[] = {
    0x80, 2, '}', 'q', 0, '(',
    'X', 1, 0, 0, 0, 'a', ']', 'q', 1, '(', 'K', 1, 'J', 0xfe, 0xff, 0xff, 0xff, 'M', 0x2c, 0x01,
    'J', 0x70, 0x11, 0x01, 0x00, 0x8a, 1, 0xfb, 'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 'e',
    0x8c, 1, 'b', 'N', 0x88, 0x86,
    'X', 2, 0, 0, 0, 'b', '2', 'X', 1, 0, 0, 0, 'x', 'u', '.',
  };
  g_autoptr (GError) err = NULL;
  g_autoptr (CbPickle) p = cb_pickle_load (pkl, sizeof pkl, "t.pkl", &err);
  ck_assert_msg (p != NULL, "%s", err ? err->message : "");
  const CbPickleValue *root = cb_pickle_root (p);
  const CbPickleValue *a = cb_pickle_dict_get (root, "a"), *b = cb_pickle_dict_get (root, "b");
  ck_assert (a && a->kind == CB_PICKLE_LIST && a->u.items->len == 6);
  const gint64 want[] = { 1, -2, 300, 70000, -5 };
  for (int i = 0; i < 5; i++) {
    const CbPickleValue *v = g_ptr_array_index (a->u.items, i);
    ck_assert (v->kind == CB_PICKLE_INT);
    ck_assert_int_eq (v->u.i, want[i]);
  }
  const CbPickleValue *f = g_ptr_array_index (a->u.items, 5);
  ck_assert (f->kind == CB_PICKLE_FLOAT && f->u.f == 1.5);
  ck_assert (b && b->kind == CB_PICKLE_TUPLE && b->u.items->len == 2);
  ck_assert (((CbPickleValue *) g_ptr_array_index (b->u.items, 0))->kind == CB_PICKLE_NONE);
  ck_assert (((CbPickleValue *) g_ptr_array_index (b->u.items, 1))->u.b);
  ck_assert_str_eq (cb_pickle_dict_get (root, "b2")->u.str.s, "x");
  ck_assert (cb_pickle_dict_get (root, "c") == NULL);
}
END_TEST

START_TEST (test_pickle_errors)
{
  PICKLE_ERROR (CB_ERROR_FORMAT, "offset 2 (opcode REDUCE): stack underflow", 0x80, 2, 'R', '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "offset 4 (opcode TUPLE): no MARK to close", 0x80, 2, 'N', 'N', 't', '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "offset 3 (opcode ?): unknown opcode 0xff", 0x80, 2, 'N', 0xff, '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "offset 4 (opcode BUILD): opcode not supported", 0x80, 2, '}', 'N', 'b', '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "offset 2 (opcode STACK_GLOBAL)", 0x80, 2, 0x93, '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "memo index 3 was never stored", 0x80, 2, 'N', 'q', 0, 'h', 3, '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "memo index 4294967295 exceeds", 0x80, 2, 'N', 'r', 0xff, 0xff, 0xff, 0xff, '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "2 values on the stack, expected 1", 0x80, 2, 'N', 'N', '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "1 MARKs left open", 0x80, 2, '(', 'N', '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "without a STOP opcode", 0x80, 2, 'N');
  PICKLE_ERROR (CB_ERROR_FORMAT, "1 bytes after STOP", 0x80, 2, 'N', '.', 'N');
  PICKLE_ERROR (CB_ERROR_FORMAT, "needs 4 bytes but only 2 are left", 0x80, 2, 'J', 1, 2);
  PICKLE_ERROR (CB_ERROR_FORMAT, "needs 5 bytes but only 1 are left", 0x80, 2, 'X', 5, 0, 0, 0, 'a');
  PICKLE_ERROR (CB_ERROR_FORMAT, "not valid UTF-8", 0x80, 2, 'X', 1, 0, 0, 0, 0xc3, '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "pickle protocol 9", 0x80, 9, 'N', '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "global 'builtins.eval' is not allowed", 0x80, 2, 'c', 'b', 'u', 'i', 'l', 't',
                'i', 'n', 's', '\n', 'e', 'v', 'a', 'l', '\n', '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "setting an item on a None", 0x80, 2, 'N', 'N', 'N', 's', '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "dict key of type int", 0x80, 2, '}', 'K', 1, 'N', 's', '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "integer of 9 bytes", 0x80, 2, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, '.');
  PICKLE_ERROR (CB_ERROR_FORMAT, "calling a None", 0x80, 2, 'N', ')', 'R', '.');
  /* a storage class called directly, and a persistent id that is not torch's */
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "calling a storage class directly", 0x80, 2, 'c', 't', 'o', 'r', 'c', 'h', '\n',
                'L', 'o', 'n', 'g', 'S', 't', 'o', 'r', 'a', 'g', 'e', '\n', ')', 'R', '.');
  PICKLE_ERROR (CB_ERROR_UNSUPPORTED, "persistent id is a None", 0x80, 2, 'N', 'Q', '.');
}
END_TEST

START_TEST (test_pickle_deep_nesting)
{
  /* 100000 nested MARKs: refused at the limit, without recursion */
  gsize n = 100000;
  guint8 *b = g_malloc (n + 3);
  b[0] = 0x80;
  b[1] = 2;
  memset (b + 2, '(', n);
  b[n + 2] = '.';
  pickle_error (b, n + 3, CB_ERROR_FORMAT, "more than 4096 nested MARKs");
  /* 100000 nested tuples ((((),),),) load: nothing recurses over the tree */
  b[2] = ')';
  memset (b + 3, 0x85, n - 1);
  g_autoptr (GError) err = NULL;
  CbPickle *p = cb_pickle_load (b, n + 3, "t.pkl", &err);
  ck_assert_msg (p != NULL, "%s", err ? err->message : "");
  ck_assert (cb_pickle_root (p)->kind == CB_PICKLE_TUPLE);
  cb_pickle_free (p);
  g_free (b);
}
END_TEST

/* ---- deterministic fuzzing: every mutation gives success or a GError, never a crash or leak ---- */

static int
fuzz_one (const char *path, const CbCondsExpect *e)
{
  g_autoptr (GError) err = NULL;
  CbConds *c = cb_conds_load (path, e, &err);
  ck_assert ((c == NULL) == (err != NULL));
  if (err) {
    ck_assert (err->domain == CB_ERROR && err->message && err->message[0]);
    ck_assert_msg (g_str_has_prefix (err->message, "conds.pt: "), "%s", err->message);
  }
  cb_conds_free (c);
  return c != NULL;
}

START_TEST (test_fuzz_pickle_bytes)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *src = data_path ("conds_small.pt");
  g_autoptr (GBytes) pkl = zip_entry (src, "/data.pkl", NULL, NULL);
  gsize len;
  const guint8 *orig = g_bytes_get_data (pkl, &len);
  g_autofree char *dir = cb_test_tmpdir ("conds-fuzz-pickle");
  g_autofree char *dst = g_build_filename (dir, "conds.pt", NULL);
  guint8 *b = g_malloc (len);
  GRand *r = g_rand_new_with_seed (20261125);
  int loaded = 0, iters = 400;
  for (int it = 0; it < iters; it++) {
    memcpy (b, orig, len);
    int flips = 1 + it % 4;
    for (int k = 0; k < flips; k++) {
      gsize at = g_rand_int_range (r, 0, (gint32) len);
      /* half the flips write a small integer: sizes, offsets and memo indices get plausible values */
      b[at] = (k % 2) ? (guint8) g_rand_int_range (r, 0, 256) : (guint8) (b[at] ^ (1u << g_rand_int_range (r, 0, 8)));
    }
    gsize cut = (it % 10 == 9) ? (gsize) g_rand_int_range (r, 0, (gint32) len) : len;
    rezip (src, dst, "/data.pkl", b, cut);
    loaded += fuzz_one (dst, &e);
  }
  g_rand_free (r);
  g_free (b);
  ck_assert_int_lt (loaded, iters); /* the mutations did reach the reader */
}
END_TEST

START_TEST (test_fuzz_whole_file)
{
  CbCondsExpect e;
  small_expect (&e);
  g_autofree char *src = data_path ("conds_small.pt");
  g_autoptr (GBytes) file = read_file (src);
  gsize len;
  const guint8 *orig = g_bytes_get_data (file, &len);
  g_autofree char *dir = cb_test_tmpdir ("conds-fuzz-file");
  guint8 *b = g_malloc (len);
  GRand *r = g_rand_new_with_seed (4242);
  int loaded = 0, iters = 300;
  for (int it = 0; it < iters; it++) {
    memcpy (b, orig, len);
    for (int k = 0; k < 1 + it % 3; k++)
      b[g_rand_int_range (r, 0, (gint32) len)] ^= (guint8) (1u << g_rand_int_range (r, 0, 8));
    g_autofree char *path = write_tmp (dir, "conds.pt", b, len);
    loaded += fuzz_one (path, &e);
  }
  g_rand_free (r);
  g_free (b);
  ck_assert_int_lt (loaded, iters);
}
END_TEST

static Suite *
conds_suite (void)
{
  Suite *s = suite_create ("conds");
  TCase *good = tcase_create ("upstream-files");
  tcase_add_test (good, test_full_voice_bit_exact);
  tcase_add_test (good, test_small_voice_bit_exact);
  tcase_add_test (good, test_float_emotion_adv);
  tcase_add_test (good, test_sizes_come_from_expectations);
  tcase_add_test (good, test_rezipped_good_file_loads);
  suite_add_tcase (s, good);
  TCase *bad = tcase_create ("malformed");
  tcase_add_test (bad, test_wrong_shape);
  tcase_add_test (bad, test_missing_key);
  tcase_add_test (bad, test_inconsistent_lengths);
  tcase_add_test (bad, test_legacy_format);
  tcase_add_test (bad, test_foreign_pickle);
  tcase_add_test (bad, test_not_found);
  tcase_add_test (bad, test_truncated);
  tcase_add_test (bad, test_random_zip);
  tcase_add_test (bad, test_not_zip);
  tcase_add_test (bad, test_short_storage);
  tcase_add_test (bad, test_huge_string_in_archive);
  tcase_add_test (bad, test_byteorder);
  tcase_add_test (bad, test_view_out_of_range);
  tcase_add_test (bad, test_bad_expectations);
  suite_add_tcase (s, bad);
  TCase *pk = tcase_create ("pickle");
  tcase_add_test (pk, test_pickle_values);
  tcase_add_test (pk, test_pickle_errors);
  tcase_add_test (pk, test_pickle_deep_nesting);
  suite_add_tcase (s, pk);
  TCase *fz = tcase_create ("fuzz");
  tcase_set_timeout (fz, 300);
  tcase_add_test (fz, test_fuzz_pickle_bytes);
  tcase_add_test (fz, test_fuzz_whole_file);
  suite_add_tcase (s, fz);
  return s;
}

CB_CHECK_MAIN (conds_suite)
