/* pickle.h — a small, strict interpreter for the pickles inside torch.save archives.
 *
 * It understands the opcodes torch.save emits (protocol 2, plus the few protocol-4 framing
 * opcodes) and only the globals a tensor file needs: torch._utils._rebuild_tensor_v2,
 * collections.OrderedDict and the typed storage classes (torch.FloatStorage, ...). Nothing is ever
 * executed: those globals are recognised by name and turned into plain values; any other global is
 * refused. The result is a tree of CbPickleValue owned by one CbPickle (all values live in one
 * arena, so shared or even cyclic references cannot leak). */
#pragma once

#include "cb-common.h"

G_BEGIN_DECLS

typedef enum {
  CB_PICKLE_NONE,
  CB_PICKLE_BOOL,
  CB_PICKLE_INT,
  CB_PICKLE_FLOAT,
  CB_PICKLE_STRING,
  CB_PICKLE_TUPLE,
  CB_PICKLE_LIST,
  CB_PICKLE_DICT,    /* dict or OrderedDict; string keys only */
  CB_PICKLE_TENSOR,  /* a _rebuild_tensor_v2 call: a view of a storage */
  CB_PICKLE_STORAGE, /* a persistent id ('storage', <type>, key, location, numel) */
  CB_PICKLE_GLOBAL,  /* one of the allowed globals, not yet applied */
} CbPickleKind;

/* A tensor as torch.save describes it: a view (offset, shape, strides in elements) into the storage
 * stored as the archive entry data/<storage_key>, which holds storage_numel elements of dtype. */
typedef struct {
  CbDType dtype;
  const char *storage_key;
  guint64 storage_numel;
  guint64 offset;
  int ndim;
  guint64 shape[CB_MAX_DIMS];
  guint64 stride[CB_MAX_DIMS];
} CbPickleTensor;

typedef struct CbPickleValue CbPickleValue;

struct CbPickleValue {
  CbPickleKind kind;
  union {
    gboolean b;
    gint64 i;
    double f;
    struct {
      char *s;   /* NUL-terminated, valid UTF-8, no embedded NUL */
      gsize len;
    } str;
    GPtrArray *items;   /* TUPLE, LIST: CbPickleValue * */
    struct {
      GPtrArray *keys;  /* CbPickleValue * (STRING), in insertion order */
      GPtrArray *values;
      GHashTable *index; /* key string -> position + 1 */
    } dict;
    CbPickleTensor tensor; /* TENSOR, and STORAGE (only dtype, storage_key, storage_numel set) */
    struct {
      int id;          /* GLOBAL: internal id of the allowed global */
      CbDType dtype;   /* for a storage class: its element type */
    } global;
  } u;
};

typedef struct CbPickle CbPickle;

/* Run the pickle in data[0..len). `what` names it in error messages (e.g. "conds.pt: data.pkl").
 * Malformed bytes give CB_ERROR_FORMAT with the byte offset; valid pickle features this reader does
 * not implement (other opcodes, other globals) give CB_ERROR_UNSUPPORTED naming them. */
CbPickle            *cb_pickle_load (const guint8 *data, gsize len, const char *what, GError **error);
void                 cb_pickle_free (CbPickle *p);
const CbPickleValue *cb_pickle_root (const CbPickle *p);

/* Value of `key` in a DICT; NULL when `dict` is not a dict or has no such key. */
const CbPickleValue *cb_pickle_dict_get (const CbPickleValue *dict, const char *key);
/* "None", "int", "tensor", ... for messages. */
const char          *cb_pickle_kind_name (CbPickleKind kind);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbPickle, cb_pickle_free)

G_END_DECLS
