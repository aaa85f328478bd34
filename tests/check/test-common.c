/* Units of engine/cb-common.c: dtype table, overflow-checked arithmetic, half-precision widening. */
#include <math.h>

#include "cb-check.h"
#include "cb-common.h"

START_TEST (test_dtype_names_roundtrip)
{
  for (int i = 0; i < CB_DTYPE_COUNT; i++) {
    CbDType back;
    ck_assert (cb_dtype_from_name (cb_dtype_name ((CbDType) i), &back));
    ck_assert_int_eq (back, i);
    ck_assert_uint_gt (cb_dtype_size ((CbDType) i), 0);
  }
  CbDType dt;
  ck_assert (!cb_dtype_from_name ("F8_E4M3", &dt));
  ck_assert (!cb_dtype_from_name ("f32", &dt));
  ck_assert_uint_eq (cb_dtype_size ((CbDType) 99), 0);
}
END_TEST

START_TEST (test_checked_arithmetic)
{
  guint64 r;
  ck_assert (cb_mul_u64 (1u << 20, 1u << 20, &r));
  ck_assert_uint_eq (r, 1ull << 40);
  ck_assert (!cb_mul_u64 (1ull << 33, 1ull << 33, &r));
  ck_assert (cb_mul_u64 (0, G_MAXUINT64, &r));
  ck_assert_uint_eq (r, 0);
  ck_assert (!cb_add_u64 (G_MAXUINT64, 1, &r));
  ck_assert (cb_add_u64 (G_MAXUINT64 - 1, 1, &r));
}
END_TEST

START_TEST (test_half_widening)
{
  /* Every F16 bit pattern against the IEEE definition computed with ldexp. */
  for (uint32_t h = 0; h < 0x10000; h++) {
    int sign = (h >> 15) & 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float got = cb_f16_to_f32 ((uint16_t) h);
    double want;
    if (e == 0x1f) {
      if (m) {
        ck_assert (isnan (got));
        continue;
      }
      want = INFINITY;
    } else if (e == 0) {
      want = ldexp ((double) m, -24);
    } else {
      want = ldexp (1.0 + m / 1024.0, e - 15);
    }
    if (sign)
      want = -want;
    ck_assert_msg ((double) got == want, "f16 0x%04x: got %g want %g", h, got, want);
  }
  ck_assert_float_eq (cb_bf16_to_f32 (0x3f80), 1.0f);
  ck_assert_float_eq (cb_bf16_to_f32 (0xc040), -3.0f);
}
END_TEST

/* The two golden measures the suites and the CLI share. */
START_TEST (test_golden_measures)
{
  const float ref[4] = { -5.0f, -4.0f, -6.0f, -5.0f }, ours[4] = { -5.0f, -4.1f, -6.0f, -5.0f };
  ck_assert_double_eq_tol (cb_rel_max_err (ours, ref, 4), 0.1 / 6.0, 1e-7);
  const float nan_ref[2] = { 1.0f, NAN }, one[2] = { 1.0f, 1.0f };
  ck_assert (isinf (cb_rel_max_err (one, nan_ref, 2)));
  /* same shape around another mean: plain cosine below 1, mean-removed cosine exactly 1 */
  const float shifted[4] = { 0.0f, 1.0f, -1.0f, 0.0f };
  ck_assert_double_lt (cb_cosine (shifted, ref, 4, FALSE), 0.999);
  ck_assert_double_eq_tol (cb_cosine (shifted, ref, 4, TRUE), 1.0, 1e-12);
  const float a[2] = { 1.0f, 0.0f }, b[2] = { 0.0f, 1.0f };
  ck_assert_double_eq_tol (cb_cosine (a, b, 2, FALSE), 0.0, 1e-12);
  ck_assert_double_eq_tol (cb_cosine (a, a, 2, FALSE), 1.0, 1e-12);
}
END_TEST

static Suite *
common_suite (void)
{
  Suite *s = suite_create ("common");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_dtype_names_roundtrip);
  tcase_add_test (tc, test_checked_arithmetic);
  tcase_add_test (tc, test_half_widening);
  tcase_add_test (tc, test_golden_measures);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (common_suite)
