/* Units of engine/safetensors.c: reading a file written by the official library, the writer's round
 * trip, and one clear error for each kind of malformed file (each built here by editing the valid
 * fixture), plus a deterministic byte-mutation loop that must never crash. */
#include <string.h>

#include <glib/gstdio.h>

#include "cb-check.h"
#include "safetensors.h"

/* The fixture's values, by the formulas in tests/reference/make_safetensors_fixtures.py. */
static double
fixture_value (const char *name, int i)
{
  if (!strcmp (name, "f32"))
    return ((i * 7919) % 1000 - 500) / 64.0;
  if (!strcmp (name, "f16"))
    return ((i * 37) % 29 - 14) / 4.0;
  if (!strcmp (name, "bf16"))
    return ((i * 53) % 31 - 15) / 8.0;
  if (!strcmp (name, "f64"))
    return i + 0.5;
  if (!strcmp (name, "scalar"))
    return -2.5;
  if (!strcmp (name, "quote\"name.\xc3\xbc"))
    return 7.0;
  g_assert_not_reached ();
}

static CbSafetensors *
open_fixture (void)
{
  char *path = cb_test_data_path ("safetensors/valid.safetensors");
  GError *err = NULL;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "?");
  g_free (path);
  return st;
}

static void
check_float_tensor (CbSafetensors *st, const char *name, int ndim, const int64_t *shape,
                    gboolean expect_view)
{
  GError *err = NULL;
  float *owned = NULL;
  const float *v = cb_safetensors_get_f32 (st, name, ndim, shape, &owned, &err);
  ck_assert_msg (v != NULL, "%s", err ? err->message : "?");
  ck_assert_msg ((owned == NULL) == expect_view, "%s: view=%d", name, owned == NULL);
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  for (guint64 i = 0; i < t->numel; i++)
    ck_assert_msg ((double) v[i] == fixture_value (name, (int) i), "%s[%d] = %g, want %g", name,
                   (int) i, v[i], fixture_value (name, (int) i));
  g_free (owned);
}

START_TEST (test_read_official_file)
{
  CbSafetensors *st = open_fixture ();
  ck_assert_uint_eq (cb_safetensors_n_tensors (st), 9);
  ck_assert_str_eq (cb_safetensors_metadata (st, "format"), "pt");
  ck_assert_str_eq (cb_safetensors_metadata (st, "purpose"), "chatterboxsrc test fixture");
  ck_assert_ptr_null (cb_safetensors_metadata (st, "absent"));
  ck_assert_ptr_null (cb_safetensors_find (st, "__metadata__"));
  ck_assert_ptr_null (cb_safetensors_nth (st, 9));

  static const int64_t s_f32[] = { 2, 3, 4 }, s_f16[] = { 5, 3 }, s_bf16[] = { 4, 4 },
                       s_f64[] = { 2 };
  check_float_tensor (st, "f32", 3, s_f32, TRUE);
  check_float_tensor (st, "f16", 2, s_f16, FALSE);
  check_float_tensor (st, "bf16", 2, s_bf16, FALSE);
  check_float_tensor (st, "f64", 1, s_f64, FALSE);
  check_float_tensor (st, "scalar", 0, NULL, TRUE);
  /* A name the header escapes, with non-ASCII: the duplicate scan decodes it like the parser. */
  check_float_tensor (st, "quote\"name.\xc3\xbc", 1, (const int64_t[]) { 1 }, TRUE);

  GError *err = NULL;
  static const int64_t s_i64[] = { 3 };
  const CbTensorInfo *t = cb_safetensors_get (st, "i64", CB_DTYPE_I64, 1, s_i64, &err);
  ck_assert_msg (t != NULL, "%s", err ? err->message : "?");
  ck_assert_uint_eq (t->nbytes, 24);
  for (int i = 0; i < 3; i++) {
    int64_t v;
    memcpy (&v, t->data + 8 * i, 8);
    ck_assert_int_eq (v, (int64_t) (i - 1) * 1000000000000LL + 7 * i);
  }
  t = cb_safetensors_get (st, "u8", CB_DTYPE_U8, 1, NULL, &err);
  ck_assert_ptr_nonnull (t);
  ck_assert_uint_eq (t->data[0], 250);
  ck_assert_uint_eq (t->data[2], 252);

  static const int64_t s_empty[] = { 0, 3 };
  t = cb_safetensors_get (st, "empty", CB_DTYPE_F32, 2, s_empty, &err);
  ck_assert_ptr_nonnull (t);
  ck_assert_uint_eq (t->numel, 0);
  ck_assert_uint_eq (t->nbytes, 0);

  t = cb_safetensors_get (st, "scalar", CB_DTYPE_F32, 0, NULL, &err);
  ck_assert_ptr_nonnull (t);
  ck_assert_int_eq (t->ndim, 0);
  ck_assert_uint_eq (t->numel, 1);

  /* nth walks the header; every name is findable. */
  for (guint i = 0; i < cb_safetensors_n_tensors (st); i++) {
    const CbTensorInfo *n = cb_safetensors_nth (st, i);
    ck_assert_ptr_eq (cb_safetensors_find (st, n->name), n);
  }
  cb_safetensors_free (st);
}
END_TEST

/* Assert that err is set with `code` and that its message holds every needle (NULL-terminated). */
static void
assert_error (GError *err, int code, ...)
{
  ck_assert_msg (err != NULL, "expected an error, got success");
  ck_assert_msg (err->domain == CB_ERROR && err->code == code, "code %d (want %d): %s", err->code,
                 code, err->message);
  va_list ap;
  va_start (ap, code);
  for (const char *needle; (needle = va_arg (ap, const char *));)
    ck_assert_msg (strstr (err->message, needle) != NULL, "'%s' not in: %s", needle, err->message);
  va_end (ap);
}

START_TEST (test_lookup_mismatches)
{
  CbSafetensors *st = open_fixture ();
  const char *path = cb_safetensors_path (st);
  GError *err = NULL;
  static const int64_t wrong[] = { 2, 4, 3 }, partial[] = { 2, CB_DIM_ANY, 4 };

  ck_assert_ptr_null (cb_safetensors_get (st, "f32", CB_DTYPE_F32, 3, wrong, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'f32'", "[2, 3, 4]", "expected [2, 4, 3]", NULL);
  g_clear_error (&err);

  ck_assert_ptr_null (cb_safetensors_get (st, "f32", CB_DTYPE_F32, 2, NULL, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'f32'", "rank 2", NULL);
  g_clear_error (&err);

  ck_assert_ptr_null (cb_safetensors_get (st, "f16", CB_DTYPE_F32, CB_NDIM_ANY, NULL, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'f16'", "dtype F16", "expected F32", NULL);
  g_clear_error (&err);

  ck_assert_ptr_null (cb_safetensors_get (st, "speech_head.weight", CB_DTYPE_F32, 2, NULL, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'speech_head.weight'", "missing", NULL);
  g_clear_error (&err);

  float *owned = NULL;
  ck_assert_ptr_null (cb_safetensors_get_f32 (st, "i64", CB_NDIM_ANY, NULL, &owned, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'i64'", "I64", NULL);
  ck_assert_ptr_null (owned);
  g_clear_error (&err);

  ck_assert_ptr_null (cb_safetensors_get_f32 (st, "f16", 2, wrong, &owned, &err));
  assert_error (err, CB_ERROR_MISMATCH, path, "'f16'", "[5, 3]", NULL);
  g_clear_error (&err);

  /* Wildcards accept what they should. */
  ck_assert_ptr_nonnull (cb_safetensors_get (st, "f32", CB_DTYPE_ANY, 3, partial, &err));
  ck_assert_ptr_nonnull (cb_safetensors_get (st, "f32", CB_DTYPE_F32, CB_NDIM_ANY, NULL, &err));
  ck_assert_ptr_null (err);
  cb_safetensors_free (st);
}
END_TEST

/* A model that does not look up every tensor of its file is told which ones it missed. */
START_TEST (test_unused_tensors)
{
  CbSafetensors *st = open_fixture ();
  GError *err = NULL;
  static const char *const names[] = { "f32", "f16", "bf16", "i64", "f64", "u8", "scalar" };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    ck_assert_ptr_nonnull (cb_safetensors_get (st, names[i], CB_DTYPE_ANY, CB_NDIM_ANY, NULL,
                                               NULL));
  /* Two left: 'empty' and the quoted name. */
  ck_assert (!cb_safetensors_check_all_used (st, NULL, &err));
  assert_error (err, CB_ERROR_MISMATCH, cb_safetensors_path (st), "2 tensors", "'empty'",
                "not used", NULL);
  g_clear_error (&err);
  static const char *const ignore[] = { "quote*", NULL };
  ck_assert (!cb_safetensors_check_all_used (st, ignore, &err));
  assert_error (err, CB_ERROR_MISMATCH, "1 tensor is", "'empty'", NULL);
  g_clear_error (&err);
  /* A lookup that fails on shape still counts as use: the model asked for it. */
  ck_assert_ptr_null (cb_safetensors_get (st, "empty", CB_DTYPE_F32, 1, NULL, NULL));
  ck_assert_msg (cb_safetensors_check_all_used (st, ignore, &err), "%s",
                 err ? err->message : "?");
  cb_safetensors_free (st);
}
END_TEST

START_TEST (test_writer_roundtrip)
{
  char *dir = cb_test_tmpdir ("safetensors");
  char *path = g_build_filename (dir, "out.safetensors", NULL);

  /* A 3-byte U8 first puts the F32 tensor off 4-byte alignment, so get_f32 must copy. */
  const guint8 bytes[3] = { 1, 2, 255 };
  const float f[6] = { 1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f };
  const int64_t i[2] = { -1, G_MAXINT64 };
  const float one = 42.0f;
  CbTensorInfo t[5] = {
    { .name = "bytes", .dtype = CB_DTYPE_U8, .ndim = 1, .shape = { 3 }, .data = bytes, .nbytes = 3 },
    { .name = "w.weight", .dtype = CB_DTYPE_F32, .ndim = 2, .shape = { 2, 3 }, .data = (const guint8 *) f, .nbytes = 24 },
    { .name = "ids", .dtype = CB_DTYPE_I64, .ndim = 2, .shape = { 1, 2 }, .data = (const guint8 *) i, .nbytes = 16 },
    { .name = "scalar", .dtype = CB_DTYPE_F32, .ndim = 0, .data = (const guint8 *) &one, .nbytes = 4 },
    { .name = "none", .dtype = CB_DTYPE_BF16, .ndim = 3, .shape = { 4, 0, 2 }, .data = NULL, .nbytes = 0 },
  };
  const char *meta[] = { "voice", "test \"quoted\" ünïcode", "format", "pt", NULL };
  GError *err = NULL;
  ck_assert_msg (cb_safetensors_write (path, 5, t, meta, &err), "%s", err ? err->message : "?");

  /* The data section starts 8-byte aligned, as the official writer makes it. */
  char *raw;
  gsize raw_len;
  ck_assert (g_file_get_contents (path, &raw, &raw_len, NULL));
  guint64 hl = 0;
  for (int k = 7; k >= 0; k--)
    hl = (hl << 8) | (guint8) raw[k];
  ck_assert_uint_eq ((8 + hl) % 8, 0);
  ck_assert_uint_eq (raw_len, 8 + hl + 3 + 24 + 16 + 4);
  g_free (raw);

  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "?");
  ck_assert_uint_eq (cb_safetensors_n_tensors (st), 5);
  ck_assert_str_eq (cb_safetensors_metadata (st, "voice"), meta[1]);
  for (int k = 0; k < 5; k++) {
    const CbTensorInfo *r = cb_safetensors_nth (st, k);
    ck_assert_str_eq (r->name, t[k].name);
    ck_assert_int_eq (r->dtype, t[k].dtype);
    ck_assert_int_eq (r->ndim, t[k].ndim);
    for (int d = 0; d < t[k].ndim; d++)
      ck_assert_int_eq (r->shape[d], t[k].shape[d]);
    ck_assert_uint_eq (r->nbytes, t[k].nbytes);
    ck_assert (r->nbytes == 0 || memcmp (r->data, t[k].data, r->nbytes) == 0);
  }
  float *owned = NULL;
  const float *w = cb_safetensors_get_f32 (st, "w.weight", 2, t[1].shape, &owned, &err);
  ck_assert_ptr_nonnull (w);
  ck_assert_ptr_nonnull (owned); /* unaligned: copied */
  ck_assert (memcmp (w, f, sizeof f) == 0);
  g_free (owned);
  cb_safetensors_free (st);

  /* The writer refuses inconsistent input and leaves no file behind. */
  char *bad_path = g_build_filename (dir, "bad.safetensors", NULL);
  CbTensorInfo bad[2] = { t[0], t[0] };
  ck_assert (!cb_safetensors_write (bad_path, 2, bad, NULL, &err)); /* repeated name */
  assert_error (err, CB_ERROR_INVALID_ARGUMENT, "'bytes'", NULL);
  g_clear_error (&err);
  bad[1].name = "other";
  bad[1].nbytes = 4; /* 3 elements of U8 */
  ck_assert (!cb_safetensors_write (bad_path, 2, bad, NULL, &err));
  assert_error (err, CB_ERROR_INVALID_ARGUMENT, "'other'", NULL);
  g_clear_error (&err);
  ck_assert (!g_file_test (bad_path, G_FILE_TEST_EXISTS));

  g_free (bad_path);
  g_free (path);
  g_free (dir);
}
END_TEST

/* A header as large as s3gen's (~2500 entries): every name is found and maps to its own bytes. */
START_TEST (test_many_tensors)
{
  enum { N = 3000 };
  char *dir = cb_test_tmpdir ("safetensors-many");
  char *path = g_build_filename (dir, "many.safetensors", NULL);
  CbTensorInfo *t = g_new0 (CbTensorInfo, N);
  float *values = g_new (float, 2 * N);
  char **names = g_new0 (char *, N + 1);
  for (int i = 0; i < N; i++) {
    names[i] = g_strdup_printf ("flow.decoder.estimator.mid_blocks.%d.1.attn1.to_q.weight", i);
    values[2 * i] = (float) i;
    values[2 * i + 1] = (float) -i;
    t[i] = (CbTensorInfo) { .name = names[i], .dtype = CB_DTYPE_F32, .ndim = 1, .shape = { 2 },
                            .data = (const guint8 *) &values[2 * i], .nbytes = 8 };
  }
  GError *err = NULL;
  ck_assert_msg (cb_safetensors_write (path, N, t, NULL, &err), "%s", err ? err->message : "?");
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "?");
  ck_assert_uint_eq (cb_safetensors_n_tensors (st), N);
  for (int i = N - 1; i >= 0; i--) {
    float *owned = NULL;
    const float *v = cb_safetensors_get_f32 (st, names[i], 1, (const int64_t[]) { 2 }, &owned,
                                             &err);
    ck_assert_msg (v != NULL, "%s", err ? err->message : "?");
    ck_assert_ptr_null (owned);
    ck_assert (v[0] == (float) i && v[1] == (float) -i);
  }
  cb_safetensors_free (st);
  g_strfreev (names);
  g_free (values);
  g_free (t);
  g_free (path);
  g_free (dir);
}
END_TEST

/* ---- malformed files, each made by editing the valid fixture ---- */

typedef struct {
  char *dir;
  guint8 *bytes; /* the valid file */
  gsize len;
  char *header;  /* its JSON, NUL-terminated */
  guint64 header_len;
  int n_made;
} Mutator;

static void
mutator_init (Mutator *m)
{
  char *src = cb_test_data_path ("safetensors/valid.safetensors");
  ck_assert (g_file_get_contents (src, (char **) &m->bytes, &m->len, NULL));
  g_free (src);
  m->header_len = 0;
  for (int k = 7; k >= 0; k--)
    m->header_len = (m->header_len << 8) | m->bytes[k];
  m->header = g_strndup ((const char *) m->bytes + 8, m->header_len);
  m->dir = cb_test_tmpdir ("safetensors-bad");
  m->n_made = 0;
}

static void
mutator_clear (Mutator *m)
{
  g_free (m->dir);
  g_free (m->bytes);
  g_free (m->header);
}

static char *
write_raw (Mutator *m, const void *data, gsize len)
{
  char *name = g_strdup_printf ("case-%03d.safetensors", m->n_made++);
  char *path = g_build_filename (m->dir, name, NULL);
  g_free (name);
  ck_assert (g_file_set_contents (path, data, (gssize) len, NULL));
  return path;
}

/* A file whose header is `header` (length prefix recomputed) followed by the fixture's data. */
static char *
write_with_header (Mutator *m, const char *header)
{
  gsize hl = strlen (header), data_len = m->len - 8 - m->header_len;
  guint8 *buf = g_malloc (8 + hl + data_len);
  for (int k = 0; k < 8; k++)
    buf[k] = (guint8) ((guint64) hl >> (8 * k));
  memcpy (buf + 8, header, hl);
  memcpy (buf + 8 + hl, m->bytes + 8 + m->header_len, data_len);
  char *path = write_raw (m, buf, 8 + hl + data_len);
  g_free (buf);
  return path;
}

/* The fixture's header with the first occurrence of `from` replaced by `to`. */
static char *
write_edited (Mutator *m, const char *from, const char *to)
{
  const char *at = strstr (m->header, from);
  ck_assert_msg (at != NULL, "fixture header lacks '%s'", from);
  char *h = g_strdup_printf ("%.*s%s%s", (int) (at - m->header), m->header, to, at + strlen (from));
  char *path = write_with_header (m, h);
  g_free (h);
  return path;
}

/* Open `path` (freed here), expect failure with `code` and a message naming the file and every
 * needle. */
static void
expect_open_error (char *path, int code, ...)
{
  GError *err = NULL;
  CbSafetensors *st = cb_safetensors_open (path, &err);
  if (st)
    cb_safetensors_free (st);
  ck_assert_msg (st == NULL, "%s opened but should not", path);
  ck_assert_msg (err->domain == CB_ERROR && err->code == code, "code %d (want %d): %s", err->code,
                 code, err->message);
  ck_assert_msg (strstr (err->message, path) != NULL, "path not in: %s", err->message);
  va_list ap;
  va_start (ap, code);
  for (const char *needle; (needle = va_arg (ap, const char *));)
    ck_assert_msg (strstr (err->message, needle) != NULL, "'%s' not in: %s", needle, err->message);
  va_end (ap);
  g_error_free (err);
  g_free (path);
}

START_TEST (test_truncated_and_bad_length)
{
  Mutator m;
  mutator_init (&m);
  /* Cut inside the length, inside the header, inside the data. */
  expect_open_error (write_raw (&m, m.bytes, 0), CB_ERROR_FORMAT, "too short", NULL);
  expect_open_error (write_raw (&m, m.bytes, 7), CB_ERROR_FORMAT, "too short", NULL);
  expect_open_error (write_raw (&m, m.bytes, 8), CB_ERROR_FORMAT, "past the end", NULL);
  expect_open_error (write_raw (&m, m.bytes, 8 + m.header_len / 2), CB_ERROR_FORMAT,
                     "past the end", NULL);
  expect_open_error (write_raw (&m, m.bytes, m.len - 1), CB_ERROR_FORMAT, "'u8'",
                     "past the end of the data section", NULL);
  expect_open_error (write_raw (&m, m.bytes, 8 + m.header_len + 100), CB_ERROR_FORMAT,
                     "past the end of the data section", NULL);
  /* Bytes after the last tensor: a file with more than its header describes. */
  guint8 *longer = g_malloc0 (m.len + 8);
  memcpy (longer, m.bytes, m.len);
  expect_open_error (write_raw (&m, longer, m.len + 8), CB_ERROR_FORMAT,
                     "8 data bytes after the last tensor ('u8')", NULL);
  g_free (longer);

  /* Header length larger than the file, and absurdly large. */
  guint8 *copy = g_memdup2 (m.bytes, m.len);
  copy[0] = (guint8) (m.len - 7);
  copy[1] = (guint8) ((m.len - 7) >> 8);
  expect_open_error (write_raw (&m, copy, m.len), CB_ERROR_FORMAT, "header length", NULL);
  memset (copy, 0xff, 8);
  expect_open_error (write_raw (&m, copy, m.len), CB_ERROR_FORMAT, "header length", NULL);
  g_free (copy);

  GError *err = NULL;
  char *missing = g_build_filename (m.dir, "no-such.safetensors", NULL);
  ck_assert_ptr_null (cb_safetensors_open (missing, &err));
  assert_error (err, CB_ERROR_NOT_FOUND, missing, NULL);
  g_clear_error (&err);
  g_free (missing);
  mutator_clear (&m);
}
END_TEST

START_TEST (test_bad_header)
{
  Mutator m;
  mutator_init (&m);
  expect_open_error (write_edited (&m, "\"i64\":{", "\"i64\"{"), CB_ERROR_FORMAT, "not valid JSON",
                     NULL);
  expect_open_error (write_with_header (&m, "[1, 2]"), CB_ERROR_FORMAT, "JSON object",
                     "an array", NULL);
  expect_open_error (write_with_header (&m, "\"f32\""), CB_ERROR_FORMAT, "JSON object", NULL);
  {
    /* json-glib recurses per level: deep nesting must be refused before parsing. */
    GString *deep = g_string_new ("{\"a\":");
    for (int i = 0; i < 100000; i++)
      g_string_append_c (deep, '[');
    for (int i = 0; i < 100000; i++)
      g_string_append_c (deep, ']');
    g_string_append_c (deep, '}');
    expect_open_error (write_with_header (&m, deep->str), CB_ERROR_FORMAT, "nested deeper", NULL);
    g_string_free (deep, TRUE);
  }
  expect_open_error (write_edited (&m, "fixture", "fi\xff\xfeture"), CB_ERROR_FORMAT, "UTF-8",
                     NULL);
  expect_open_error (write_edited (&m, "fixture", "fix\x01ture"), CB_ERROR_FORMAT, "JSON", NULL);
  expect_open_error (write_edited (&m, "\"format\":\"pt\"", "\"format\":1"), CB_ERROR_FORMAT,
                     "__metadata__", "'format'", NULL);
  expect_open_error (write_edited (&m, "__metadata__\":{", "__metadata__\":[],\"x\":{"),
                     CB_ERROR_FORMAT, "__metadata__", "found an array", NULL);
  mutator_clear (&m);
}
END_TEST

START_TEST (test_bad_entries)
{
  Mutator m;
  mutator_init (&m);
  /* dtype */
  expect_open_error (write_edited (&m, "\"dtype\":\"U8\"", "\"dtype\":\"F8_E4M3\""),
                     CB_ERROR_UNSUPPORTED, "'u8'", "'F8_E4M3'", NULL);
  expect_open_error (write_edited (&m, "\"dtype\":\"U8\"", "\"dtype\":8"), CB_ERROR_FORMAT, "'u8'",
                     "dtype", NULL);
  expect_open_error (write_edited (&m, "\"dtype\":\"U8\",", ""), CB_ERROR_FORMAT, "'u8'", "dtype",
                     NULL);
  /* shape */
  expect_open_error (write_edited (&m, "\"shape\":[5,3]", "\"shape\":[5,4]"), CB_ERROR_FORMAT,
                     "'f16'", "[5, 4]", "40 bytes", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":[-3]"), CB_ERROR_FORMAT,
                     "'i64'", "negative", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":[3.0]"), CB_ERROR_FORMAT,
                     "'i64'", "non-integer", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":[\"3\"]"), CB_ERROR_FORMAT,
                     "'i64'", "string", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":3"), CB_ERROR_FORMAT, "'i64'",
                     "shape", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":[1,1,1,1,1,1,1,1,3]"),
                     CB_ERROR_UNSUPPORTED, "'i64'", "rank 9", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]",
                                   "\"shape\":[4294967296,4294967296,4294967296]"),
                     CB_ERROR_FORMAT, "'i64'", "overflow", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3]", "\"shape\":[2305843009213693952]"),
                     CB_ERROR_FORMAT, "'i64'", "overflow", NULL);
  /* data_offsets */
  expect_open_error (write_edited (&m, "\"shape\":[3],\"data_offsets\":[206,209]",
                                   "\"shape\":[4],\"data_offsets\":[206,210]"),
                     CB_ERROR_FORMAT, "'u8'", "past the end of the data section", NULL);
  expect_open_error (write_edited (&m, "[206,209]", "[209,206]"), CB_ERROR_FORMAT, "'u8'", NULL);
  expect_open_error (write_edited (&m, "[206,209]", "[206,209,212]"), CB_ERROR_FORMAT, "'u8'",
                     "data_offsets", NULL);
  expect_open_error (write_edited (&m, "[206,209]", "[-1,2]"), CB_ERROR_FORMAT, "'u8'",
                     "data_offsets", NULL);
  expect_open_error (write_edited (&m, "[206,209]", "[18446744073709551615,2]"), CB_ERROR_FORMAT,
                     "'u8'", NULL);
  expect_open_error (write_edited (&m, "[206,209]", "[204,207]"), CB_ERROR_FORMAT, "'f16'",
                     "'u8'", "overlap", NULL);
  expect_open_error (write_edited (&m, "\"shape\":[3],\"data_offsets\":[206,209]",
                                   "\"shape\":[2],\"data_offsets\":[207,209]"),
                     CB_ERROR_FORMAT, "[206, 207)", "'u8'", "no tensor", NULL);
  expect_open_error (write_edited (&m, "[144,176]", "[0,32]"), CB_ERROR_FORMAT, "'bf16'", "'i64'",
                     "overlap", NULL);
  /* names and keys */
  {
    /* Unknown keys in an entry are ignored, as the official reader ignores them. */
    char *path = write_edited (&m, "\"dtype\":\"F64\",", "\"dtype\":\"F64\",\"extra\":[1],");
    GError *err = NULL;
    CbSafetensors *st = cb_safetensors_open (path, &err);
    ck_assert_msg (st != NULL, "%s", err ? err->message : "?");
    cb_safetensors_free (st);
    g_free (path);
  }
  expect_open_error (write_edited (&m, "\"f64\":", "\"i64\":"), CB_ERROR_FORMAT, "'i64'",
                     "more than once in the top-level object", NULL);
  expect_open_error (write_edited (&m, "\"f64\":", "\"i\\u0036\\u0034\":"), CB_ERROR_FORMAT,
                     "'i64'", "more than once", NULL);
  expect_open_error (write_edited (&m, "\"dtype\":\"F64\",", "\"dtype\":\"F64\",\"dtype\":\"F64\","),
                     CB_ERROR_FORMAT, "'dtype'", "more than once in 'f64'", NULL);
  expect_open_error (write_edited (&m, "\"u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[206,209]}",
                                   "\"u8\":[1]"),
                     CB_ERROR_FORMAT, "'u8'", "expected an object, found an array", NULL);
  expect_open_error (write_edited (&m, "\"format\":\"pt\"", "\"format\":\"pt\",\"format\":\"x\""),
                     CB_ERROR_FORMAT, "'format'", "more than once in '__metadata__'", NULL);
  mutator_clear (&m);
}
END_TEST

/* Deterministic mutations of the valid file: open must give an object or an error (naming the
 * file), never crash or read outside the mapping (ASan). Every tensor byte of a file that opens is
 * read. */
START_TEST (test_mutation_loop)
{
  Mutator m;
  mutator_init (&m);
  GRand *rng = g_rand_new_with_seed (20261125);
  int opened = 0, failed = 0;
  for (int iter = 0; iter < 400; iter++) {
    guint8 *buf = g_memdup2 (m.bytes, m.len);
    gsize len = m.len;
    switch (g_rand_int_range (rng, 0, 4)) {
    case 0: /* truncate anywhere */
      len = (gsize) g_rand_int_range (rng, 0, (gint32) m.len);
      break;
    case 1: /* flip bits in the header or the length */
      for (int k = g_rand_int_range (rng, 1, 4); k > 0; k--)
        buf[g_rand_int_range (rng, 0, (gint32) (8 + m.header_len))] ^=
          (guint8) (1u << g_rand_int_range (rng, 0, 8));
      break;
    case 2: /* replace a header byte by a JSON-significant one */
      buf[g_rand_int_range (rng, 8, (gint32) (8 + m.header_len))] =
        (guint8) "{}[]\",:0123456789-.e \\"[g_rand_int_range (rng, 0, 22)];
      break;
    default: /* random bytes anywhere */
      for (int k = g_rand_int_range (rng, 1, 8); k > 0; k--)
        buf[g_rand_int_range (rng, 0, (gint32) m.len)] = (guint8) g_rand_int (rng);
      break;
    }
    char *path = write_raw (&m, buf, len);
    GError *err = NULL;
    CbSafetensors *st = cb_safetensors_open (path, &err);
    ck_assert ((st == NULL) != (err == NULL));
    if (st) {
      guint sum = 0;
      for (guint i = 0; i < cb_safetensors_n_tensors (st); i++) {
        const CbTensorInfo *t = cb_safetensors_nth (st, i);
        for (gsize b = 0; b < t->nbytes; b++)
          sum += t->data[b];
      }
      (void) sum;
      cb_safetensors_free (st);
      opened++;
    } else {
      ck_assert_msg (err->domain == CB_ERROR, "%s", err->message);
      ck_assert_msg (strstr (err->message, path) != NULL, "path not in: %s", err->message);
      g_error_free (err);
      failed++;
    }
    g_unlink (path);
    g_free (path);
    g_free (buf);
  }
  /* Both outcomes must occur, or the loop tests nothing. */
  ck_assert_int_gt (opened, 0);
  ck_assert_int_gt (failed, 100);
  g_rand_free (rng);
  mutator_clear (&m);
}
END_TEST

static Suite *
safetensors_suite (void)
{
  Suite *s = suite_create ("safetensors");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_read_official_file);
  tcase_add_test (tc, test_lookup_mismatches);
  tcase_add_test (tc, test_unused_tensors);
  tcase_add_test (tc, test_writer_roundtrip);
  tcase_add_test (tc, test_many_tensors);
  tcase_add_test (tc, test_truncated_and_bad_length);
  tcase_add_test (tc, test_bad_header);
  tcase_add_test (tc, test_bad_entries);
  tcase_add_test (tc, test_mutation_loop);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (safetensors_suite)
