/* bench-common.h — what every benchmark program here needs: medians, a monotonic clock in ms and a
 * fatal error exit that names the program. */
#pragma once

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

static int
bench_cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v). */
static inline double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static inline double
now_ms (void)
{
  return g_get_monotonic_time () / 1000.0;
}

/* Prints "<program>: <error>" and exits 1; `program` is g_get_prgname () when set. */
static inline void
die (GError *err)
{
  const char *prog = g_get_prgname ();
  fprintf (stderr, "%s: %s\n", prog ? prog : "bench", err ? err->message : "failed");
  exit (1);
}
