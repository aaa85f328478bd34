/* torchzip.h — read a torch.save archive (zip: <dir>/data.pkl + <dir>/data/<key> storages).
 *
 * The zip layer is libzip; this file only finds the entries, enforces sizes, runs the pickle
 * (pickle.h) and copies tensor views out of their storages. The legacy non-zip torch format is
 * recognised and refused. */
#pragma once

#include "cb-common.h"
#include "pickle.h"

G_BEGIN_DECLS

typedef struct CbTorchZip CbTorchZip;

/* Open `path`, locate the single "<dir>/data.pkl", check "<dir>/byteorder" and run the pickle. */
CbTorchZip          *cb_torchzip_open (const char *path, GError **error);
void                 cb_torchzip_free (CbTorchZip *z);
/* The file's base name, as used at the start of every message. */
const char          *cb_torchzip_name (const CbTorchZip *z);
/* The unpickled object (owned by z). */
const CbPickleValue *cb_torchzip_root (const CbTorchZip *z);

/* Copy the elements of tensor `t` (a view into its storage, strides honoured) into a new
 * row-major buffer (g_free it; NULL when the tensor has no elements). `item` names the tensor in
 * messages ("gen.prompt_feat"). Fails if the dtype is not `dtype`, the view leaves its storage, the
 * storage entry is missing, or its size disagrees with the pickle or exceeds `max_storage_bytes`. */
gboolean             cb_torchzip_read_tensor (CbTorchZip *z, const CbPickleTensor *t, const char *item,
                                              CbDType dtype, guint64 max_storage_bytes,
                                              gpointer *out, GError **error);

/* Number of elements of `t` (product of its shape); FALSE on overflow. */
gboolean             cb_torchzip_tensor_numel (const CbPickleTensor *t, guint64 *numel);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbTorchZip, cb_torchzip_free)

G_END_DECLS
