/* torchzip.c — torch.save archives through libzip (see torchzip.h). */
#include "torchzip.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zip.h>

/* data.pkl of a checkpoint is a few hundred kilobytes at most; beyond this the file is not one. */
#define MAX_PICKLE_BYTES (64u << 20)

struct CbTorchZip {
  zip_t *zip;
  char *name;   /* base name of the file, for messages */
  char *prefix; /* "<dir>/" of data.pkl */
  CbPickle *pickle;
};

/* torch.save(..., _use_new_zipfile_serialization=False) starts with a pickled magic number:
 * PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c. */
static const guint8 legacy_magic[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19 };

/* Why libzip refused the file, in terms of what the user has in hand. */
static void
explain_open_failure (const char *path, const char *name, int zerr, GError **error)
{
  zip_error_t ze;
  zip_error_init_with_code (&ze, zerr);
  const char *why = zip_error_strerror (&ze);
  guint8 head[sizeof legacy_magic] = { 0 };
  gsize got = 0;
  FILE *f = fopen (path, "rb");
  if (f) {
    got = fread (head, 1, sizeof head, f);
    fclose (f);
  }
  if (zerr == ZIP_ER_NOENT)
    g_set_error (error, CB_ERROR, CB_ERROR_NOT_FOUND, "%s: no such file (%s)", name, path);
  else if (zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ || zerr == ZIP_ER_SEEK || zerr == ZIP_ER_MEMORY)
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: cannot read the file: %s", name, why);
  else if (got == sizeof legacy_magic && memcmp (head, legacy_magic, sizeof head) == 0)
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "%s: legacy torch format not supported (saved with _use_new_zipfile_serialization=False); "
                 "re-save it with torch.save's default zip format", name);
  else if (got >= 4 && memcmp (head, "PK\003\004", 4) == 0)
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: truncated or damaged zip archive: %s", name, why);
  else
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: not a torch.save file (not a zip archive: %s)", name, why);
  zip_error_fini (&ze);
}

/* Read entry `index` whole, requiring exactly `size` bytes (its declared size, which the caller
 * has already bounded). Compressed entries are fine; libzip checks their CRC at the end. */
static guint8 *
read_entry (CbTorchZip *z, zip_int64_t index, const char *entry, guint64 size, GError **error)
{
  zip_file_t *f = zip_fopen_index (z->zip, (zip_uint64_t) index, 0);
  if (!f) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: cannot open entry %s: %s", z->name, entry,
                 zip_strerror (z->zip));
    return NULL;
  }
  guint8 *buf = g_try_malloc (size ? size : 1);
  if (!buf) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: out of memory for entry %s (%" G_GUINT64_FORMAT " bytes)",
                 z->name, entry, size);
    zip_fclose (f);
    return NULL;
  }
  guint64 done = 0;
  guint8 extra;
  zip_int64_t n = 1;
  while (done < size && (n = zip_fread (f, buf + done, size - done)) > 0)
    done += (guint64) n;
  /* One more read must hit the end: it also makes libzip verify the CRC. */
  if (n > 0)
    n = zip_fread (f, &extra, 1);
  if (n < 0)
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: entry %s cannot be read: %s", z->name, entry,
                 zip_file_strerror (f));
  else if (done != size || n != 0)
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: entry %s holds %s bytes than its declared size %" G_GUINT64_FORMAT,
                 z->name, entry, done != size ? "fewer" : "more", size);
  zip_fclose (f);
  if (n != 0 || done != size) {
    g_free (buf);
    return NULL;
  }
  return buf;
}

/* Locate `entry` and return its declared uncompressed size. */
static zip_int64_t
locate (CbTorchZip *z, const char *entry, guint64 *size, GError **error)
{
  zip_int64_t index = zip_name_locate (z->zip, entry, ZIP_FL_ENC_RAW);
  zip_stat_t st;
  if (index < 0) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: entry %s is missing", z->name, entry);
    return -1;
  }
  if (zip_stat_index (z->zip, (zip_uint64_t) index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: entry %s has no size: %s", z->name, entry,
                 zip_strerror (z->zip));
    return -1;
  }
  *size = st.size;
  return index;
}

/* Find the one "<dir>/data.pkl" and remember "<dir>/". */
static gboolean
find_prefix (CbTorchZip *z, GError **error)
{
  zip_int64_t n = zip_get_num_entries (z->zip, 0);
  const char *found = NULL;
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name (z->zip, (zip_uint64_t) i, ZIP_FL_ENC_RAW);
    if (!name || !g_str_has_suffix (name, "/data.pkl"))
      continue;
    if (found) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: two data.pkl entries (%s and %s), expected one",
                   z->name, found, name);
      return FALSE;
    }
    found = name;
  }
  if (!found) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: zip archive with %" G_GINT64_FORMAT " entries but no <dir>/data.pkl: not a torch.save file",
                 z->name, (gint64) n);
    return FALSE;
  }
  z->prefix = g_strndup (found, strlen (found) - strlen ("data.pkl"));
  return TRUE;
}

static gboolean
check_byteorder (CbTorchZip *z, GError **error)
{
  char *entry = g_strconcat (z->prefix, "byteorder", NULL);
  guint64 size = 0;
  gboolean ok = TRUE;
  if (zip_name_locate (z->zip, entry, ZIP_FL_ENC_RAW) >= 0) { /* absent in files from torch < 2.1: little-endian */
    zip_int64_t index = locate (z, entry, &size, error);
    guint8 *bytes = NULL;
    ok = index >= 0;
    if (ok && size > 16) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: %s is %" G_GUINT64_FORMAT " bytes, expected \"little\"",
                   z->name, entry, size);
      ok = FALSE;
    }
    if (ok)
      ok = (bytes = read_entry (z, index, entry, size, error)) != NULL;
    if (ok && (size != 6 || memcmp (bytes, "little", 6) != 0)) {
      char *raw = g_strndup ((char *) bytes, size);
      char *found = g_strescape (raw, NULL);
      g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED, "%s: byte order \"%s\" not supported, expected \"little\"",
                   z->name, found);
      g_free (found);
      g_free (raw);
      ok = FALSE;
    }
    g_free (bytes);
  }
  g_free (entry);
  return ok;
}

static gboolean
load_pickle (CbTorchZip *z, GError **error)
{
  char *entry = g_strconcat (z->prefix, "data.pkl", NULL);
  char *what = g_strconcat (z->name, ": ", entry, NULL);
  guint64 size = 0;
  guint8 *bytes = NULL;
  zip_int64_t index = locate (z, entry, &size, error);
  if (index >= 0 && size > MAX_PICKLE_BYTES)
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s is %" G_GUINT64_FORMAT " bytes, more than the limit of %u",
                 what, size, MAX_PICKLE_BYTES);
  else if (index >= 0 && (bytes = read_entry (z, index, entry, size, error)))
    z->pickle = cb_pickle_load (bytes, size, what, error);
  g_free (bytes);
  g_free (what);
  g_free (entry);
  return z->pickle != NULL;
}

CbTorchZip *
cb_torchzip_open (const char *path, GError **error)
{
  CbTorchZip *z = g_new0 (CbTorchZip, 1);
  z->name = g_path_get_basename (path);
  int zerr = 0;
  z->zip = zip_open (path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  if (!z->zip) {
    explain_open_failure (path, z->name, zerr, error);
    cb_torchzip_free (z);
    return NULL;
  }
  if (!find_prefix (z, error) || !check_byteorder (z, error) || !load_pickle (z, error)) {
    cb_torchzip_free (z);
    return NULL;
  }
  return z;
}

void
cb_torchzip_free (CbTorchZip *z)
{
  if (!z)
    return;
  if (z->zip)
    zip_discard (z->zip); /* read-only: nothing to write back */
  cb_pickle_free (z->pickle);
  g_free (z->prefix);
  g_free (z->name);
  g_free (z);
}

const char *
cb_torchzip_name (const CbTorchZip *z)
{
  return z->name;
}

const CbPickleValue *
cb_torchzip_root (const CbTorchZip *z)
{
  return cb_pickle_root (z->pickle);
}

gboolean
cb_torchzip_tensor_numel (const CbPickleTensor *t, guint64 *numel)
{
  guint64 n = 1;
  for (int i = 0; i < t->ndim; i++)
    if (!cb_mul_u64 (n, t->shape[i], &n))
      return FALSE;
  *numel = n;
  return TRUE;
}

/* Largest storage index the view touches (offset + sum of (size-1)*stride); FALSE on overflow. */
static gboolean
view_last_index (const CbPickleTensor *t, guint64 *last)
{
  guint64 at = t->offset, step;
  for (int i = 0; i < t->ndim; i++)
    if (!cb_mul_u64 (t->shape[i] - 1, t->stride[i], &step) || !cb_add_u64 (at, step, &at))
      return FALSE;
  *last = at;
  return TRUE;
}

/* Strides equal row-major ones, ignoring dimensions of size 1 (whose stride never matters). */
static gboolean
is_row_major (const CbPickleTensor *t)
{
  guint64 expect = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != expect)
      return FALSE;
    expect *= t->shape[i]; /* bounded by numel, already checked */
  }
  return TRUE;
}

/* Copy a strided view element by element, walking the index like an odometer. */
static void
gather (guint8 *dst, const guint8 *storage, const CbPickleTensor *t, guint64 numel, gsize elsize)
{
  guint64 idx[CB_MAX_DIMS] = { 0 };
  guint64 src = t->offset;
  for (guint64 k = 0; k < numel; k++) {
    memcpy (dst + k * elsize, storage + src * elsize, elsize);
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) {
        src += t->stride[d];
        break;
      }
      src -= (t->shape[d] - 1) * t->stride[d];
      idx[d] = 0;
    }
  }
}

gboolean
cb_torchzip_read_tensor (CbTorchZip *z, const CbPickleTensor *t, const char *item, CbDType dtype,
                         guint64 max_storage_bytes, gpointer *out, GError **error)
{
  gsize elsize = cb_dtype_size (dtype);
  guint64 numel, storage_bytes, view_bytes, last;
  *out = NULL;
  if (t->dtype != dtype) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: %s has dtype %s, expected %s", z->name, item,
                 cb_dtype_name (t->dtype), cb_dtype_name (dtype));
    return FALSE;
  }
  /* A view can be larger than its storage (stride 0), so both are bounded. */
  if (!cb_torchzip_tensor_numel (t, &numel) || !cb_mul_u64 (numel, elsize, &view_bytes)
      || !cb_mul_u64 (t->storage_numel, elsize, &storage_bytes)
      || storage_bytes > max_storage_bytes || view_bytes > max_storage_bytes) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: %s: tensor or its storage (%" G_GUINT64_FORMAT " elements) exceeds the limit of %"
                 G_GUINT64_FORMAT " bytes", z->name, item, t->storage_numel, max_storage_bytes);
    return FALSE;
  }
  if (numel == 0)
    return TRUE;
  if (!view_last_index (t, &last) || last >= t->storage_numel) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: %s: view (offset %" G_GUINT64_FORMAT ") reaches past its storage data/%s of %" G_GUINT64_FORMAT " elements",
                 z->name, item, t->offset, t->storage_key, t->storage_numel);
    return FALSE;
  }
  char *entry = g_strconcat (z->prefix, "data/", t->storage_key, NULL);
  guint64 entry_size = 0;
  guint8 *storage = NULL;
  zip_int64_t index = locate (z, entry, &entry_size, error);
  if (index >= 0 && entry_size != storage_bytes)
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: %s: storage entry %s has %" G_GUINT64_FORMAT " bytes, expected %" G_GUINT64_FORMAT
                 " (%" G_GUINT64_FORMAT " × %s)", z->name, item, entry, entry_size, storage_bytes,
                 t->storage_numel, cb_dtype_name (dtype));
  else if (index >= 0)
    storage = read_entry (z, index, entry, storage_bytes, error);
  g_free (entry);
  if (!storage)
    return FALSE;
  guint8 *dst = g_malloc (view_bytes);
  if (is_row_major (t))
    memcpy (dst, storage + t->offset * elsize, view_bytes);
  else
    gather (dst, storage, t, numel, elsize);
  g_free (storage);
  *out = dst;
  return TRUE;
}
