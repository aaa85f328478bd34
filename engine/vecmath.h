/* vecmath.h — branch-free float math on 16-lane vectors (GCC/Clang vector extensions), for the CPU
 * backend's activation and softmax loops.
 *
 * Why: libm's expf/erff are called one value at a time (~10–80 ns each here) and gcc only
 * vectorises them under -ffast-math; the S3Gen estimator evaluates hundreds of millions of GELU and
 * Mish values per second of audio. These versions are plain arithmetic on cb_vf, which the compiler
 * maps onto whatever the function's target offers (SSE2, AVX2 or AVX-512 through target_clones, see
 * CB_VEC_CLONES). exp stays within 3 ulp of libm; erfc within 5e-7 absolute (Abramowitz & Stegun
 * 7.1.26, 1.5e-7 in exact arithmetic); tanh within 2e-7 absolute; sin within 2e-7
 * absolute for |x| <= 1000 (tests/check/test-ops.c).
 *
 * Inputs outside a function's range are clamped: exp(x) is 0 below x = −88.376 and saturates at
 * 3.4e38 above +88.376. NaN inputs are not propagated (these loops never see NaN from finite data). */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#define CB_VEC_LANES 8

/* Every function here is inlined into its caller (CB_VEC_INLINE): passing 64-byte vectors by value
 * never crosses a library boundary, so gcc's note about the AVX-512 calling convention is moot. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* Forced: a helper left out of line would be compiled for the baseline target and take its vectors
 * through memory, losing what target_clones bought. */
#define CB_VEC_INLINE static inline __attribute__ ((always_inline))

typedef float   cb_vf __attribute__ ((vector_size (4 * CB_VEC_LANES)));
typedef int32_t cb_vi __attribute__ ((vector_size (4 * CB_VEC_LANES)));
typedef uint16_t cb_vh __attribute__ ((vector_size (2 * CB_VEC_LANES)));

/* Compile a hot loop once per x86-64 level and pick at load time (ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_VEC_CLONES __attribute__ ((target_clones ("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define CB_VEC_CLONES
#endif

CB_VEC_INLINE cb_vf
cb_vf_splat (float x)
{
  return (cb_vf) { 0 } + x;
}

CB_VEC_INLINE cb_vf
cb_vf_load (const float *p)
{
  cb_vf v;
  memcpy (&v, p, sizeof v);
  return v;
}

/* CB_VEC_LANES BF16 values widened to F32 (a BF16 is the upper half of an F32). */
CB_VEC_INLINE cb_vf
cb_vf_load_bf16 (const uint16_t *p)
{
  cb_vh h;
  memcpy (&h, p, sizeof h);
  return (cb_vf) (__builtin_convertvector (h, cb_vi) << 16);
}

CB_VEC_INLINE void
cb_vf_store (float *p, cb_vf v)
{
  memcpy (p, &v, sizeof v);
}

/* Lane-wise mask ? a : b, with mask lanes all-ones or zero (a vector comparison's result). */
CB_VEC_INLINE cb_vf
cb_vf_select (cb_vi mask, cb_vf a, cb_vf b)
{
  return (cb_vf) (((cb_vi) a & mask) | ((cb_vi) b & ~mask));
}

CB_VEC_INLINE cb_vf cb_vf_min (cb_vf a, cb_vf b) { return cb_vf_select (a < b, a, b); }
CB_VEC_INLINE cb_vf cb_vf_max (cb_vf a, cb_vf b) { return cb_vf_select (a > b, a, b); }
CB_VEC_INLINE cb_vf cb_vf_abs (cb_vf a) { return (cb_vf) ((cb_vi) a & 0x7fffffff); }

/* e^x: x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact n·ln2), a degree-6
 * polynomial for e^r (Cephes expf coefficients), then 2^n put straight into the exponent bits. */
CB_VEC_INLINE cb_vf
cb_vf_exp (cb_vf x)
{
  cb_vi underflow = x < -88.3762626647949f;  /* e^x below FLT_MIN: exactly 0 (also for −inf) */
  x = cb_vf_min (cb_vf_max (x, cb_vf_splat (-88.3762626647949f)), cb_vf_splat (88.3762626647949f));
  cb_vf fx = x * 1.44269504088896341f + 0.5f;
  cb_vf n = __builtin_convertvector (__builtin_convertvector (fx, cb_vi), cb_vf);
  n = cb_vf_select (n > fx, n - 1.0f, n);  /* truncation to floor for negative fx */
  cb_vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  cb_vf p = cb_vf_splat (1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  cb_vf y = p * (r * r) + r + 1.0f;
  cb_vi bits = (__builtin_convertvector (n, cb_vi) + 127) << 23;
  return cb_vf_select (underflow, cb_vf_splat (0.0f), y * (cb_vf) bits);
}

/* erfc(|x|) for the given |x| (>= 0): A&S 7.1.26, absolute error <= 5e-7 in float. */
CB_VEC_INLINE cb_vf
cb_vf_erfc_abs (cb_vf ax)
{
  cb_vf t = 1.0f / (1.0f + 0.3275911f * ax);
  cb_vf p = cb_vf_splat (1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  return p * t * cb_vf_exp (-(ax * ax));
}

/* tanh from e^(−2|x|) (no overflow; the sign is put back afterwards). */
CB_VEC_INLINE cb_vf
cb_vf_tanh (cb_vf x)
{
  cb_vf e = cb_vf_exp (-2.0f * cb_vf_abs (x));
  cb_vf t = (1.0f - e) / (1.0f + e);
  return cb_vf_select (x < 0.0f, -t, t);
}

/* sin(x) for |x| <= 1e5 (larger inputs are clamped): x = k·π + r with |r| <= π/2, π split in three
 * parts (8 + 12 + 24 bits) so k·π is exact enough for k < 2^12, then the Taylor series of sin(r) to
 * r^13 (truncation error < 1e-9 on [−π/2, π/2]) and the sign of (−1)^k. */
CB_VEC_INLINE cb_vf
cb_vf_sin (cb_vf x)
{
  x = cb_vf_min (cb_vf_max (x, cb_vf_splat (-1e5f)), cb_vf_splat (1e5f));
  cb_vf q = x * 0.318309886183790672f;  /* 1/π */
  cb_vi k = __builtin_convertvector (q + cb_vf_select (q < 0.0f, cb_vf_splat (-0.5f),
                                                       cb_vf_splat (0.5f)), cb_vi);
  cb_vf kf = __builtin_convertvector (k, cb_vf);
  cb_vf r = ((x - kf * 3.140625f) - kf * 9.677410125732422e-4f) - kf * -8.742277657347586e-8f;
  cb_vf r2 = r * r;
  cb_vf p = cb_vf_splat (1.0f / 6227020800.0f);
  p = p * r2 - 1.0f / 39916800.0f;
  p = p * r2 + 1.0f / 362880.0f;
  p = p * r2 - 1.0f / 5040.0f;
  p = p * r2 + 1.0f / 120.0f;
  p = p * r2 - 1.0f / 6.0f;
  cb_vf sr = r + r * r2 * p;
  return (cb_vf) ((cb_vi) sr ^ (k << 31));  /* odd k flips the sign */
}

/* Softmax of row[0 .. n) in place (max subtracted first); an all −inf row becomes all 0. Meant to
 * be inlined into a CB_VEC_CLONES function so it runs at that function's vector width. The tail goes
 * through a block padded with −1e30 (whose e^x is exactly 0), so every element takes the same path
 * whatever n is. */
CB_VEC_INLINE void
cb_vec_softmax_row (float *row, int n)
{
  const int L = CB_VEC_LANES;
  cb_vf vmax = cb_vf_splat (-INFINITY);
  int i = 0;
  for (; i + L <= n; i += L)
    vmax = cb_vf_max (vmax, cb_vf_load (row + i));
  float mx = -INFINITY;
  for (int l = 0; l < L; l++)
    mx = vmax[l] > mx ? vmax[l] : mx;
  for (; i < n; i++)
    mx = row[i] > mx ? row[i] : mx;
  if (mx == -INFINITY)
    mx = 0.0f;

  float pad[CB_VEC_LANES];
  cb_vf vsum = cb_vf_splat (0.0f);
  for (i = 0; i < n; i += L) {
    int m = n - i < L ? n - i : L;
    float *dst = m == L ? row + i : pad;
    if (m < L) {
      for (int l = 0; l < L; l++)
        pad[l] = l < m ? row[i + l] : -1e30f;
    }
    cb_vf e = cb_vf_exp (cb_vf_load (dst) - mx);
    cb_vf_store (dst, e);
    vsum += e;
    if (m < L)
      memcpy (row + i, pad, sizeof (float) * m);
  }
  float sum = 0.0f;
  for (int l = 0; l < L; l++)
    sum += vsum[l];
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (i = 0; i < n; i++)
    row[i] *= inv;
}
