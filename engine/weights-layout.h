/* weights-layout.h — the tensors each checkpoint file must hold, derived from the model config.
 *
 * For each of the three weight files (t3_cfg.safetensors, ve.safetensors, s3gen.safetensors) the
 * layout lists every tensor name upstream's modules put in their state dict, with its dtype and
 * shape computed from the CbConfig (layer counts, widths, HiFT lists, CAMPPlus block tables, ...).
 * It is built from one table per upstream module type (weights-layout.c), so the names follow
 * upstream's module tree exactly; the real English config gives 292 (T3), 16 (VE) and 2488 (S3Gen)
 * required tensors, plus S3Gen's two optional buffers `tokenizer._mel_filters` and
 * `tokenizer.window` (spec §1.4; the real file holds one of them: 2489).
 *
 * Validation (cb_weights_validate) is strict in both directions: every required tensor present
 * with the expected dtype and exact shape, and nothing the layout does not know (a renamed key,
 * another model variant), as upstream's strict load_state_dict would insist. Notes on upstream:
 *   - upstream loads s3gen.safetensors with strict=False; we are strict there too (chatterbox.cpp
 *     also refuses unknown S3Gen keys), accepting only the two buffers as optional;
 *   - upstream's T3 loader (tts.py from_local) replaces the dict with `state["model"][0]` when a
 *     key named exactly "model" exists. That is a training-checkpoint (.pt) convention: in a
 *     safetensors file every value is a tensor, so the branch can only turn a tensor into the
 *     "state dict" and load_state_dict then fails. Keys under a "model." prefix are not stripped
 *     either (strict loading rejects them). So no prefixed variant of t3_cfg.safetensors loads
 *     upstream, and none is accepted here;
 *   - float tensors may be stored as F32, F16 or BF16 (spec §1.2: read the dtype from the header;
 *     cb_safetensors_get_f32 widens them); the real files are F32. BatchNorm's
 *     num_batches_tracked is I64 and a scalar (shape []), as torch stores it. */
#pragma once

#include "config.h"
#include "safetensors.h"

G_BEGIN_DECLS

typedef enum {
  CB_WEIGHTS_T3,     /* t3_cfg.safetensors */
  CB_WEIGHTS_VE,     /* ve.safetensors */
  CB_WEIGHTS_S3GEN,  /* s3gen.safetensors */
  CB_WEIGHTS_N_FILES
} CbWeightsFile;

/* The file name in a model directory ("t3_cfg.safetensors", ...). */
const char *cb_weights_file_name (CbWeightsFile which);

/* One expected tensor. `dtype` is CB_DTYPE_F32 for float tensors (F16/BF16 also accepted, see
 * above) or CB_DTYPE_I64. */
typedef struct {
  const char *name;
  CbDType     dtype;
  int         ndim;
  int64_t     shape[CB_MAX_DIMS];
  gboolean    optional;  /* a buffer the file may or may not hold */
} CbWeightSpec;

typedef struct _CbWeightsLayout CbWeightsLayout;

/* The layout of `which` for `cfg` (which must have passed cb_config_validate). */
CbWeightsLayout    *cb_weights_layout_new (CbWeightsFile which, const CbConfig *cfg);
void                cb_weights_layout_free (CbWeightsLayout *layout);

CbWeightsFile       cb_weights_layout_file (const CbWeightsLayout *layout);
/* All entries, optional ones included, in upstream's module order. */
guint               cb_weights_layout_size (const CbWeightsLayout *layout);
guint               cb_weights_layout_n_required (const CbWeightsLayout *layout);
const CbWeightSpec *cb_weights_layout_nth (const CbWeightsLayout *layout, guint i);
/* NULL if the layout has no such tensor. */
const CbWeightSpec *cb_weights_layout_find (const CbWeightsLayout *layout, const char *name);
/* Total bytes of the required tensors (F32/I64), for messages and memory planning. */
guint64             cb_weights_layout_nbytes (const CbWeightsLayout *layout);

/* Checks every tensor of `st` against the layout: each required tensor present, each present one
 * with an accepted dtype and exactly the expected shape, no tensor the layout does not list. Every
 * tensor found is recorded as used (cb_safetensors_check_all_used then passes). On failure a
 * CB_ERROR_MISMATCH error names the file and counts the problems of each kind (missing, wrong
 * dtype or shape with expected and found, unexpected), spelling out the first few of each, e.g.
 *   ".../t3_cfg.safetensors: 2 tensor problems for this model config (expected 292 tensors, the
 *    file has 291): 1 missing: 'tfmr.norm.weight' (F32 [1024]); 1 with a wrong dtype or shape:
 *    'text_emb.weight': expected F32 (or F16/BF16) [704, 1024], found F32 [703, 1024]"
 * A file whose every name carries one extra prefix ("model.") is told so. */
gboolean            cb_weights_validate_layout (const CbSafetensors *st,
                                                const CbWeightsLayout *layout, GError **error);
/* Same with the layout of `which` for `cfg`. */
gboolean            cb_weights_validate (const CbSafetensors *st, CbWeightsFile which,
                                         const CbConfig *cfg, GError **error);

/* Writes a safetensors file holding every tensor of the layout (optional buffers only when
 * `with_optional`) with values from a generator seeded by `seed`: uniform in ±1/sqrt(fan-in) for
 * weights, BatchNorm running variances in [0.5, 1.5), num_batches_tracked 0. For test models and
 * tools; refuses layouts over `max_bytes` with CB_ERROR_INVALID_ARGUMENT. */
gboolean            cb_weights_write_random (const char *path, const CbWeightsLayout *layout,
                                             guint64 seed, gboolean with_optional,
                                             guint64 max_bytes, GError **error);

G_END_DECLS
