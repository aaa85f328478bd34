/* cb-common.c — error quark, dtype table and half-precision widening. */
#include "cb-common.h"

#include <math.h>
#include <string.h>

G_DEFINE_QUARK (chatterbox-engine-error-quark, cb_error)

static const struct {
  const char *name;
  gsize size;
} dtype_table[CB_DTYPE_COUNT] = {
  [CB_DTYPE_F32] = { "F32", 4 },   [CB_DTYPE_F16] = { "F16", 2 },
  [CB_DTYPE_BF16] = { "BF16", 2 }, [CB_DTYPE_F64] = { "F64", 8 },
  [CB_DTYPE_I64] = { "I64", 8 },   [CB_DTYPE_I32] = { "I32", 4 },
  [CB_DTYPE_I16] = { "I16", 2 },   [CB_DTYPE_I8] = { "I8", 1 },
  [CB_DTYPE_U8] = { "U8", 1 },     [CB_DTYPE_BOOL] = { "BOOL", 1 },
};

gsize
cb_dtype_size (CbDType dt)
{
  return ((unsigned) dt < CB_DTYPE_COUNT) ? dtype_table[dt].size : 0;
}

const char *
cb_dtype_name (CbDType dt)
{
  return ((unsigned) dt < CB_DTYPE_COUNT) ? dtype_table[dt].name : "invalid";
}

gboolean
cb_dtype_from_name (const char *name, CbDType *out)
{
  for (int i = 0; i < CB_DTYPE_COUNT; i++) {
    if (strcmp (name, dtype_table[i].name) == 0) {
      *out = (CbDType) i;
      return TRUE;
    }
  }
  return FALSE;
}

float
cb_bf16_to_f32 (uint16_t b)
{
  uint32_t u = (uint32_t) b << 16;
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

float
cb_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;

  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {
      /* subnormal: renormalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ff;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

gboolean
cb_unichar_is_white_space (gunichar c)
{
  if (c <= 0x20)
    return c == 0x20 || (c >= 0x09 && c <= 0x0d);
  switch (c) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
      return TRUE;
    default:
      return c >= 0x2000 && c <= 0x200a;
  }
}

double
cb_rel_max_err (const float *ours, const float *ref, gsize n)
{
  double diff = 0.0, mag = 0.0;
  for (gsize i = 0; i < n; i++) {
    if (!isfinite (ours[i]) || !isfinite (ref[i]))
      return INFINITY;
    diff = MAX (diff, fabs ((double) ours[i] - ref[i]));
    mag = MAX (mag, fabs ((double) ref[i]));
  }
  return mag > 0.0 ? diff / mag : diff;
}

double
cb_cosine (const float *a, const float *b, gsize n, gboolean centred)
{
  double ma = 0.0, mb = 0.0;
  if (centred && n > 0) {
    for (gsize i = 0; i < n; i++)
      ma += a[i], mb += b[i];
    ma /= (double) n, mb /= (double) n;
  }
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (gsize i = 0; i < n; i++) {
    const double x = a[i] - ma, y = b[i] - mb;
    ab += x * y, aa += x * x, bb += y * y;
  }
  return aa > 0.0 && bb > 0.0 ? ab / sqrt (aa * bb) : 0.0;
}
