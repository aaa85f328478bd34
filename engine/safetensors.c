/* safetensors.c — validate a safetensors file once at open, then hand out views into its mapping.
 *
 * Everything in the file is untrusted. cb_json_parse checks the header text (UTF-8, nesting depth,
 * duplicate keys, which json-glib would silently merge) and parses it; then every entry is checked
 * against the data section with overflow-checked arithmetic, and the ranges must tile that section
 * exactly, as the official reader requires. */
#include "safetensors.h"

#include "cb-json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>
#include <unistd.h>

/* Tensor bytes are little-endian and handed out as views. */
#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "safetensors views assume a little-endian host"
#endif

/* Real headers are a few hundred kB (s3gen: ~2500 entries); anything far larger is corruption or
 * an attempt to make us allocate. */
#define CB_ST_MAX_HEADER (100u * 1024u * 1024u)

struct _CbSafetensors {
  char         *path;
  GMappedFile  *map;
  CbTensorInfo *tensors;    /* n, header order; names owned by `names` */
  guint         n;
  gboolean     *used;       /* n; set by lookups. A pointer, so lookups through a const handle
                             * may record use: it is bookkeeping, not the file's content. */
  GStringChunk *names;
  GHashTable   *by_name;    /* name -> CbTensorInfo* */
  GHashTable   *metadata;   /* key -> value, both owned */
};

char *
cb_format_shape (char *buf, gsize size, int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    if (shape[i] == CB_DIM_ANY)
      g_string_append_printf (s, "%s*", i ? ", " : "");
    else
      g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  g_strlcpy (buf, s->str, size);
  g_string_free (s, TRUE);
  return buf;
}

/* ---- one entry ---- */

/* A JSON integer >= 0. */
static gboolean
json_node_to_count (JsonNode *n, guint64 *out)
{
  gint64 v;
  if (!cb_json_get_int (n, &v) || v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

typedef struct {
  guint64 begin, end;
} Range;

static gboolean
parse_entry (const char *path, const char *name, JsonNode *node, guint64 data_size,
             CbTensorInfo *t, Range *r, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': expected an object, found %s", path, name, cb_json_kind (node));
    return FALSE;
  }
  JsonObject *o = json_node_get_object (node);

  /* Other keys are ignored, as the official reader (serde) ignores them. */
  JsonNode *dn = json_object_get_member (o, "dtype");
  if (!dn || !JSON_NODE_HOLDS_VALUE (dn) || json_node_get_value_type (dn) != G_TYPE_STRING) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': \"dtype\" must be a string, found %s", path, name,
                 cb_json_kind (dn));
    return FALSE;
  }
  const char *dname = json_node_get_string (dn);
  if (!cb_dtype_from_name (dname, &t->dtype)) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "%s: tensor '%s': dtype '%s' is not supported (known: F32 F16 BF16 F64 I64 I32 "
                 "I16 I8 U8 BOOL)", path, name, dname);
    return FALSE;
  }

  JsonNode *sn = json_object_get_member (o, "shape");
  if (!sn || !JSON_NODE_HOLDS_ARRAY (sn)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': \"shape\" must be an array, found %s", path, name,
                 cb_json_kind (sn));
    return FALSE;
  }
  JsonArray *sa = json_node_get_array (sn);
  guint rank = json_array_get_length (sa);
  if (rank > CB_MAX_DIMS) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "%s: tensor '%s': rank %u exceeds the supported maximum %d", path, name, rank,
                 CB_MAX_DIMS);
    return FALSE;
  }
  t->ndim = (int) rank;
  t->numel = 1;
  for (guint i = 0; i < rank; i++) {
    JsonNode *e = json_array_get_element (sa, i);
    guint64 d;
    if (!json_node_to_count (e, &d) || d > G_MAXINT64) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s: tensor '%s': shape[%u] must be a non-negative integer, found %s", path,
                   name, i, cb_json_kind (e));
      return FALSE;
    }
    t->shape[i] = (int64_t) d;
    if (!cb_mul_u64 (t->numel, d, &t->numel)) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s: tensor '%s': element count overflows 64 bits", path, name);
      return FALSE;
    }
  }

  JsonNode *on = json_object_get_member (o, "data_offsets");
  JsonArray *oa = (on && JSON_NODE_HOLDS_ARRAY (on)) ? json_node_get_array (on) : NULL;
  if (!oa || json_array_get_length (oa) != 2
      || !json_node_to_count (json_array_get_element (oa, 0), &r->begin)
      || !json_node_to_count (json_array_get_element (oa, 1), &r->end)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", path, name);
    return FALSE;
  }
  if (r->begin > r->end) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                 "] end before they begin", path, name, r->begin, r->end);
    return FALSE;
  }
  guint64 nbytes;
  char sbuf[128];
  if (!cb_mul_u64 (t->numel, cb_dtype_size (t->dtype), &nbytes)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': shape %s of %s overflows 64-bit byte counts", path, name,
                 cb_format_shape (sbuf, sizeof sbuf, t->ndim, t->shape), dname);
    return FALSE;
  }
  if (nbytes != r->end - r->begin) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': shape %s of %s needs %" G_GUINT64_FORMAT " bytes but "
                 "data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] hold %"
                 G_GUINT64_FORMAT, path, name,
                 cb_format_shape (sbuf, sizeof sbuf, t->ndim, t->shape), dname, nbytes, r->begin,
                 r->end, r->end - r->begin);
    return FALSE;
  }
  if (r->end > data_size) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                 "] run past the end of the data section (%" G_GUINT64_FORMAT " bytes)", path,
                 name, r->begin, r->end, data_size);
    return FALSE;
  }
  if (nbytes > G_MAXSIZE) {
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED,
                 "%s: tensor '%s': too large for this machine", path, name);
    return FALSE;
  }
  t->nbytes = (gsize) nbytes;
  return TRUE;
}

/* ---- open / free ---- */

static int
compare_ranges (gconstpointer a, gconstpointer b, gpointer user)
{
  const Range *r = user;
  const Range *x = &r[*(const guint *) a], *y = &r[*(const guint *) b];
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

/* As the format requires (and the official reader checks): sorted by offset, the ranges tile the
 * data section exactly, with no overlap, no hole and nothing after the last tensor. Holes are
 * refused because bytes that belong to no tensor could hide another file inside this one. */
static gboolean
check_layout (const char *path, const CbTensorInfo *t, Range *r, guint n, guint64 data_size,
              GError **error)
{
  guint *order = g_new (guint, n ? n : 1);
  for (guint i = 0; i < n; i++)
    order[i] = i;
  g_qsort_with_data (order, (gint) n, sizeof (guint), compare_ranges, r);

  gboolean ok = TRUE;
  guint64 covered = 0;  /* end of the ranges seen so far */
  gint last = -1;       /* the tensor that ends at `covered` */
  for (guint k = 0; k < n && ok; k++) {
    guint i = order[k];
    if (r[i].begin < covered) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s: tensors '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") and '%s' [%"
                   G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") overlap", path, t[last].name,
                   r[last].begin, r[last].end, t[i].name, r[i].begin, r[i].end);
      ok = FALSE;
    } else if (r[i].begin > covered) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s: data bytes [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") before tensor "
                   "'%s' belong to no tensor", path, covered, r[i].begin, t[i].name);
      ok = FALSE;
    } else if (r[i].end > covered || last < 0) {
      covered = r[i].end;
      last = (gint) i;
    }
  }
  if (ok && covered != data_size) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: %" G_GUINT64_FORMAT " data bytes after the last tensor%s%s%s belong to no "
                 "tensor", path, data_size - covered, last >= 0 ? " ('" : "",
                 last >= 0 ? t[last].name : "", last >= 0 ? "')" : "");
    ok = FALSE;
  }
  g_free (order);
  return ok;
}

static gboolean
parse_metadata (CbSafetensors *st, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: \"__metadata__\" must be an object of strings, found %s", st->path,
                 cb_json_kind (node));
    return FALSE;
  }
  JsonObject *o = json_node_get_object (node);
  GList *members = json_object_get_members (o);
  gboolean ok = TRUE;
  for (GList *l = members; l && ok; l = l->next) {
    JsonNode *v = json_object_get_member (o, l->data);
    if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                   "%s: \"__metadata__\" key '%s' must be a string, found %s", st->path,
                   (const char *) l->data, cb_json_kind (v));
      ok = FALSE;
    } else {
      g_hash_table_replace (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (v)));
    }
  }
  g_list_free (members);
  return ok;
}

/* Everything after the 8-byte length: parse, scan for duplicates, check every entry. */
static gboolean
parse_header (CbSafetensors *st, const char *header, gsize header_len, const guint8 *data,
              guint64 data_size, GError **error)
{
  gboolean ok = FALSE;
  Range *ranges = NULL;
  /* A real header nests three levels ({ "name": { "shape": [ ] } }). */
  JsonParser *parser = cb_json_parse (header, header_len, 8, FALSE, error);
  if (!parser) {
    g_prefix_error (error, "%s: header: ", st->path);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: header must be a JSON object, found %s",
                 st->path, cb_json_kind (root));
    goto out;
  }
  JsonObject *obj = json_node_get_object (root);

  guint n_members = json_object_get_size (obj);
  st->tensors = g_new0 (CbTensorInfo, n_members ? n_members : 1);
  st->used = g_new0 (gboolean, n_members ? n_members : 1);
  ranges = g_new0 (Range, n_members ? n_members : 1);
  GList *members = json_object_get_members (obj);
  ok = TRUE;
  for (GList *l = members; l && ok; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      ok = parse_metadata (st, node, error);
      continue;
    }
    CbTensorInfo *t = &st->tensors[st->n];
    ok = parse_entry (st->path, name, node, data_size, t, &ranges[st->n], error);
    if (ok) {
      t->name = g_string_chunk_insert (st->names, name);
      t->data = data + ranges[st->n].begin;
      g_hash_table_insert (st->by_name, (gpointer) t->name, t);
      st->n++;
    }
  }
  g_list_free (members);
  if (ok)
    ok = check_layout (st->path, st->tensors, ranges, st->n, data_size, error);
out:
  g_free (ranges);
  g_object_unref (parser);
  return ok;
}

CbSafetensors *
cb_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);

  GError *ferr = NULL;
  GMappedFile *map = g_mapped_file_new (path, FALSE, &ferr);
  if (!map) {
    g_set_error (error, CB_ERROR,
                 g_error_matches (ferr, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? CB_ERROR_NOT_FOUND
                                                                         : CB_ERROR_IO,
                 "%s: cannot open safetensors file: %s", path, ferr->message);
    g_error_free (ferr);
    return NULL;
  }

  CbSafetensors *st = g_new0 (CbSafetensors, 1);
  st->path = g_strdup (path);
  st->map = map;
  st->names = g_string_chunk_new (4096);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  const guint8 *bytes = (const guint8 *) g_mapped_file_get_contents (map);
  gsize size = g_mapped_file_get_length (map);
  if (size < 8) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: file is %" G_GSIZE_FORMAT " bytes, too short for the 8-byte header length",
                 path, size);
    goto fail;
  }
  guint64 header_len = 0;
  for (int i = 7; i >= 0; i--)
    header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8 || header_len > CB_ST_MAX_HEADER) {
    g_set_error (error, CB_ERROR, CB_ERROR_FORMAT,
                 "%s: header length %" G_GUINT64_FORMAT " is past the end of the file (%"
                 G_GSIZE_FORMAT " bytes) or above the %u-byte limit", path, header_len, size,
                 CB_ST_MAX_HEADER);
    goto fail;
  }
  if (!parse_header (st, (const char *) bytes + 8, (gsize) header_len, bytes + 8 + header_len,
                     size - 8 - header_len, error))
    goto fail;
  return st;

fail:
  cb_safetensors_free (st);
  return NULL;
}

void
cb_safetensors_free (CbSafetensors *st)
{
  if (!st)
    return;
  g_hash_table_unref (st->metadata);
  g_hash_table_unref (st->by_name);
  g_string_chunk_free (st->names);
  g_free (st->tensors);
  g_free (st->used);
  g_mapped_file_unref (st->map);
  g_free (st->path);
  g_free (st);
}

/* ---- lookups ---- */

const char *
cb_safetensors_path (const CbSafetensors *st)
{
  return st->path;
}

guint
cb_safetensors_n_tensors (const CbSafetensors *st)
{
  return st->n;
}

const CbTensorInfo *
cb_safetensors_nth (const CbSafetensors *st, guint i)
{
  return i < st->n ? &st->tensors[i] : NULL;
}

const CbTensorInfo *
cb_safetensors_find (const CbSafetensors *st, const char *name)
{
  return g_hash_table_lookup (st->by_name, name);
}

const char *
cb_safetensors_metadata (const CbSafetensors *st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

static gboolean
shape_matches (const CbTensorInfo *t, int ndim, const int64_t *shape)
{
  if (ndim == CB_NDIM_ANY)
    return TRUE;
  if (t->ndim != ndim)
    return FALSE;
  for (int i = 0; shape && i < ndim; i++)
    if (shape[i] != CB_DIM_ANY && shape[i] != t->shape[i])
      return FALSE;
  return TRUE;
}

const CbTensorInfo *
cb_safetensors_get (const CbSafetensors *st, const char *name, CbDType dtype, int ndim,
                    const int64_t *shape, GError **error)
{
  const CbTensorInfo *t = cb_safetensors_find (st, name);
  if (!t) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: tensor '%s' is missing (the file holds %u tensors)", st->path, name, st->n);
    return NULL;
  }
  st->used[t - st->tensors] = TRUE;
  if (dtype != CB_DTYPE_ANY && t->dtype != dtype) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: tensor '%s' has dtype %s, expected %s",
                 st->path, name, cb_dtype_name (t->dtype), cb_dtype_name (dtype));
    return NULL;
  }
  if (!shape_matches (t, ndim, shape)) {
    char found[128], want[128];
    cb_format_shape (found, sizeof found, t->ndim, t->shape);
    if (shape)
      cb_format_shape (want, sizeof want, ndim, shape);
    else
      g_snprintf (want, sizeof want, "rank %d", ndim);
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                 st->path, name, found, want);
    return NULL;
  }
  return t;
}

const float *
cb_safetensors_get_f32 (const CbSafetensors *st, const char *name, int ndim, const int64_t *shape,
                        float **owned, GError **error)
{
  *owned = NULL;
  const CbTensorInfo *t = cb_safetensors_get (st, name, CB_DTYPE_ANY, ndim, shape, error);
  if (!t)
    return NULL;
  if (t->dtype != CB_DTYPE_F32 && t->dtype != CB_DTYPE_F16 && t->dtype != CB_DTYPE_BF16
      && t->dtype != CB_DTYPE_F64) {
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: tensor '%s' has dtype %s, expected a float type (F32, F16, BF16, F64)",
                 st->path, name, cb_dtype_name (t->dtype));
    return NULL;
  }
  if (t->dtype == CB_DTYPE_F32 && ((guintptr) t->data % sizeof (float)) == 0)
    return (const float *) t->data;

  float *out = g_try_new (float, t->numel ? t->numel : 1);
  if (!out) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: tensor '%s': cannot allocate %"
                 G_GUINT64_FORMAT " floats for conversion", st->path, name, t->numel);
    return NULL;
  }
  /* memcpy per element: the source may be unaligned. */
  const guint8 *p = t->data;
  for (guint64 i = 0; i < t->numel; i++) {
    switch (t->dtype) {
    case CB_DTYPE_F32:
      memcpy (&out[i], p + 4 * i, 4);
      break;
    case CB_DTYPE_F64: {
      double d;
      memcpy (&d, p + 8 * i, 8);
      out[i] = (float) d;
      break;
    }
    default: {
      uint16_t h;
      memcpy (&h, p + 2 * i, 2);
      out[i] = t->dtype == CB_DTYPE_F16 ? cb_f16_to_f32 (h) : cb_bf16_to_f32 (h);
      break;
    }
    }
  }
  *owned = out;
  return out;
}

/* ---- writer ---- */

static gboolean
check_write_args (const char *path, guint n, const CbTensorInfo *tensors,
                  const char *const *metadata, GError **error)
{
  GHashTable *seen = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean ok = TRUE;
  for (guint i = 0; i < n && ok; i++) {
    const CbTensorInfo *t = &tensors[i];
    guint64 numel = 1, nbytes;
    ok = t->name && strcmp (t->name, "__metadata__") != 0 && !g_hash_table_contains (seen, t->name)
         && (unsigned) t->dtype < CB_DTYPE_COUNT && t->ndim >= 0 && t->ndim <= CB_MAX_DIMS;
    for (int d = 0; ok && d < t->ndim; d++)
      ok = t->shape[d] >= 0 && cb_mul_u64 (numel, (guint64) t->shape[d], &numel);
    ok = ok && cb_mul_u64 (numel, cb_dtype_size (t->dtype), &nbytes) && nbytes == t->nbytes
         && (t->data || nbytes == 0);
    if (!ok)
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "%s: cannot write tensor %u '%s': bad, reserved or repeated name, or its "
                   "dtype, shape and byte count disagree", path, i, t->name ? t->name : "(null)");
    else
      g_hash_table_add (seen, (gpointer) t->name);
  }
  for (guint i = 0; ok && metadata && metadata[i]; i += 2) {
    if (!metadata[i + 1]) {
      g_set_error (error, CB_ERROR, CB_ERROR_INVALID_ARGUMENT,
                   "%s: metadata key '%s' has no value", path, metadata[i]);
      ok = FALSE;
    }
  }
  g_hash_table_unref (seen);
  return ok;
}

static char *
build_header (guint n, const CbTensorInfo *tensors, const char *const *metadata, gsize *len)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  if (metadata && metadata[0]) {
    json_builder_set_member_name (b, "__metadata__");
    json_builder_begin_object (b);
    for (guint i = 0; metadata[i]; i += 2) {
      json_builder_set_member_name (b, metadata[i]);
      json_builder_add_string_value (b, metadata[i + 1]);
    }
    json_builder_end_object (b);
  }
  guint64 offset = 0;
  for (guint i = 0; i < n; i++) {
    const CbTensorInfo *t = &tensors[i];
    json_builder_set_member_name (b, t->name);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "dtype");
    json_builder_add_string_value (b, cb_dtype_name (t->dtype));
    json_builder_set_member_name (b, "shape");
    json_builder_begin_array (b);
    for (int d = 0; d < t->ndim; d++)
      json_builder_add_int_value (b, t->shape[d]);
    json_builder_end_array (b);
    json_builder_set_member_name (b, "data_offsets");
    json_builder_begin_array (b);
    json_builder_add_int_value (b, (gint64) offset);
    json_builder_add_int_value (b, (gint64) (offset + t->nbytes));
    json_builder_end_array (b);
    json_builder_end_object (b);
    offset += t->nbytes;
  }
  json_builder_end_object (b);

  JsonGenerator *g = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  gsize json_len;
  char *json = json_generator_to_data (g, &json_len);
  json_node_unref (root);
  g_object_unref (g);
  g_object_unref (b);

  /* Pad with spaces so the data section starts 8-byte aligned, as the official writer does. */
  gsize padded = (json_len + 7) & ~(gsize) 7;
  json = g_realloc (json, padded + 1);
  memset (json + json_len, ' ', padded - json_len);
  json[padded] = '\0';
  *len = padded;
  return json;
}

gboolean
cb_safetensors_write (const char *path, guint n, const CbTensorInfo *tensors,
                      const char *const *metadata, GError **error)
{
  if (!check_write_args (path, n, tensors, metadata, error))
    return FALSE;

  gsize header_len;
  char *header = build_header (n, tensors, metadata, &header_len);
  guint8 len_le[8];
  for (int i = 0; i < 8; i++)
    len_le[i] = (guint8) ((guint64) header_len >> (8 * i));

  char *tmp = g_strdup_printf ("%s.XXXXXX", path);
  int fd = g_mkstemp (tmp);
  FILE *f = fd >= 0 ? fdopen (fd, "wb") : NULL;
  gboolean ok = f != NULL;
  if (!f && fd >= 0)
    close (fd);
  ok = ok && fwrite (len_le, 1, 8, f) == 8 && fwrite (header, 1, header_len, f) == header_len;
  for (guint i = 0; ok && i < n; i++)
    ok = tensors[i].nbytes == 0
         || fwrite (tensors[i].data, 1, tensors[i].nbytes, f) == tensors[i].nbytes;
  if (f)
    ok = (fclose (f) == 0) && ok;
  int saved_errno = errno;
  if (ok && g_rename (tmp, path) != 0) {
    saved_errno = errno;
    ok = FALSE;
  }
  if (!ok) {
    g_set_error (error, CB_ERROR, CB_ERROR_IO, "%s: cannot write safetensors file: %s", path,
                 g_strerror (saved_errno));
    if (fd >= 0)
      g_unlink (tmp);
  }
  g_free (tmp);
  g_free (header);
  return ok;
}

gboolean
cb_safetensors_check_all_used (const CbSafetensors *st, const char *const *ignore, GError **error)
{
  GString *names = g_string_new (NULL);
  guint n_unused = 0;
  for (guint i = 0; i < st->n; i++) {
    gboolean ignored = FALSE;
    for (guint k = 0; ignore && ignore[k] && !ignored; k++)
      ignored = g_pattern_match_simple (ignore[k], st->tensors[i].name);
    if (st->used[i] || ignored)
      continue;
    if (n_unused++ < 5)
      g_string_append_printf (names, "%s'%s'", names->len ? ", " : "", st->tensors[i].name);
  }
  if (n_unused)
    g_set_error (error, CB_ERROR, CB_ERROR_MISMATCH,
                 "%s: %u tensor%s not used by the model (another model variant?): %s%s",
                 st->path, n_unused, n_unused == 1 ? " is" : "s are", names->str,
                 n_unused > 5 ? ", ..." : "");
  g_string_free (names, TRUE);
  return n_unused == 0;
}
