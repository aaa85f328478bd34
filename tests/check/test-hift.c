/* test-hift.c — being written (issue 5): fails until the module exists. */
#include "cb-check.h"

START_TEST (test_not_written)
{
  ck_abort_msg ("hift is not written yet");
}
END_TEST

static Suite *
stub_suite (void)
{
  Suite *s = suite_create ("hift");
  TCase *tc = tcase_create ("stub");
  tcase_add_test (tc, test_not_written);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (stub_suite)
