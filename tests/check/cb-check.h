/* cb-check.h — shared helpers for the engine's Check suites. */
#pragma once

#include <check.h>
#include <glib.h>
#include <math.h>

#include "cb-common.h" /* cb_rel_max_err: the golden comparisons' error */

/* main() for a suite: runs it, prints Check's summary line, exits non-zero on any failure and also
 * when the suite ran no checks at all (a suite that silently runs nothing must not pass). */
#define CB_CHECK_MAIN(suite_fn)                                         \
  int main (void)                                                       \
  {                                                                     \
    SRunner *sr = srunner_create (suite_fn ());                         \
    srunner_run_all (sr, CK_NORMAL);                                    \
    int ran = srunner_ntests_run (sr);                                  \
    int failed = srunner_ntests_failed (sr);                            \
    srunner_free (sr);                                                  \
    return (failed == 0 && ran > 0) ? 0 : 1;                            \
  }

/* Path of a file under tests/data ($CB_TEST_DATA); free with g_free. */
static inline char *
cb_test_data_path (const char *rel)
{
  const char *dir = g_getenv ("CB_TEST_DATA");
  return g_build_filename (dir ? dir : "tests/data", rel, NULL);
}

/* Path of a file under tests/data/golden (the harness's committed output); free with g_free. */
static inline char *
cb_test_golden_path (const char *rel)
{
  char *base = cb_test_data_path ("golden");
  char *p = g_build_filename (base, rel, NULL);
  g_free (base);
  return p;
}

/* A fresh private temporary directory for one test; free with g_free (contents are left for
 * inspection on failure and are under the build directory). */
static inline char *
cb_test_tmpdir (const char *name)
{
  const char *base = g_getenv ("CB_TEST_TMPDIR");
  char *dir = g_build_filename (base ? base : g_get_tmp_dir (), name, NULL);
  g_mkdir_with_parents (dir, 0755);
  char *tmpl = g_build_filename (dir, "XXXXXX", NULL);
  g_free (dir);
  char *made = g_mkdtemp (tmpl);
  g_assert (made != NULL);
  return made;
}
