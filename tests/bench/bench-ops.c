/* bench-ops — rough speed of the CPU op core on shapes the models use.
 *
 *   build-x/tests/bench/bench-ops [threads]
 *
 * Prints time per call and the arithmetic rate (GFLOP/s) or weight bandwidth (GB/s) each reached;
 * compare with the machine's figures in shared/notes/toolchain.md. Not run by `meson test`. */
#include <stdio.h>
#include <stdlib.h>

#include "ops.h"

typedef struct {
  const char *name;
  double      flops;       /* per call; 0: report bytes instead */
  double      bytes;       /* per call, the dominant stream (weights) */
  void      (*run) (void *);
} Bench;

typedef struct {
  int    T, C, OC, K, stride, pad, H, D, L;
  float *a, *b, *c, *d, *out, *col;
} Args;

static float *
filled (size_t n)
{
  float *p = g_new (float, n);
  guint32 s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float) (s >> 8) / (float) (1u << 24) - 0.5f;
  }
  return p;
}

/* Run fn until at least 0.5 s have passed (after one warm-up call); seconds per call. */
static double
time_calls (void (*fn) (void *), void *arg)
{
  fn (arg);
  int calls = 0;
  gint64 start = g_get_monotonic_time (), now;
  do {
    fn (arg);
    calls++;
    now = g_get_monotonic_time ();
  } while (now - start < 500000);
  return (now - start) / 1e6 / calls;
}

static void run_matmul (void *p) { Args *a = p; cb_matmul (a->out, a->a, a->b, NULL, a->T, a->C, a->OC); }
static void run_matmul_bf16 (void *p)
{
  Args *a = p;
  cb_matmul_bf16 (a->out, a->a, (const guint16 *) a->d, NULL, a->T, a->C, a->OC);
}
static void run_causal (void *p)
{
  Args *a = p;
  cb_attention_causal (a->out, a->a, a->b, a->c, a->T, a->L - a->T, a->H, a->H, a->D, 0.125f, NULL);
}
static void run_full (void *p)
{
  Args *a = p;
  cb_attention (a->out, a->a, a->b, a->c, a->T, a->L, a->H, a->H, a->D, 0.125f, NULL, 0, 0, NULL);
}
static void run_conv (void *p)
{
  Args *a = p;
  cb_conv1d (a->out, a->a, a->b, NULL, a->C, a->T, a->OC, a->K, 1, a->pad, a->pad, 1, 1, a->col);
}
static void run_convt (void *p)
{
  Args *a = p;
  cb_conv_transpose1d (a->out, a->a, a->b, NULL, a->C, a->T, a->OC, a->K, a->stride, a->pad, a->col);
}

static void
report (const char *name, double sec, double flops, double bytes)
{
  if (flops > 0)
    printf ("%-44s %9.3f ms  %7.1f GFLOP/s\n", name, sec * 1e3, flops / sec / 1e9);
  else
    printf ("%-44s %9.3f ms  %7.1f GB/s\n", name, sec * 1e3, bytes / sec / 1e9);
}

int
main (int argc, char **argv)
{
  cb_set_num_threads (argc > 1 ? atoi (argv[1]) : 0);
  printf ("threads: %d\n", cb_get_num_threads ());

  /* matmul: square GEMM, then a T3 decode step (CFG pair) that streams the MLP up-projection */
  static const int mm[][3] = { { 1024, 1024, 1024 }, { 2, 1024, 4096 }, { 1, 1024, 4096 },
                               { 8, 1024, 4096 }, { 9, 1024, 4096 }, { 300, 1024, 4096 } };
  for (size_t i = 0; i < G_N_ELEMENTS (mm); i++) {
    Args a = { .T = mm[i][0], .C = mm[i][1], .OC = mm[i][2] };
    a.a = filled ((size_t) a.T * a.C), a.b = filled ((size_t) a.OC * a.C);
    a.out = g_new (float, (size_t) a.T * a.OC);
    char name[64];
    g_snprintf (name, sizeof name, "matmul T%d C%d OC%d", a.T, a.C, a.OC);
    double flops = 2.0 * a.T * a.C * a.OC;
    report (name, time_calls (run_matmul, &a), a.T >= 16 ? flops : 0, 4.0 * a.C * a.OC);
    /* the same with BF16 weights (a.d holds them, half the bytes) */
    a.d = (float *) g_new (guint16, (size_t) a.OC * a.C);
    cb_f32_to_bf16 ((guint16 *) a.d, a.b, (size_t) a.OC * a.C);
    g_strlcat (name, " bf16", sizeof name);
    report (name, time_calls (run_matmul_bf16, &a), a.T >= 16 ? flops : 0, 2.0 * a.C * a.OC);
    g_free (a.a), g_free (a.b), g_free (a.d), g_free (a.out);
  }

  /* attention: T3 decode (1 row vs a 1000-row cache), T3 prefill, S3Gen estimator (full, T = 500) */
  static const int at[][4] = { { 1, 1000, 16, 1 }, { 300, 300, 16, 1 }, { 500, 500, 8, 0 } };
  for (size_t i = 0; i < G_N_ELEMENTS (at); i++) {
    Args a = { .T = at[i][0], .L = at[i][1], .H = at[i][2], .D = 64 };
    a.a = filled ((size_t) a.T * a.H * a.D), a.b = filled ((size_t) a.L * a.H * a.D);
    a.c = filled ((size_t) a.L * a.H * a.D), a.out = g_new (float, (size_t) a.T * a.H * a.D);
    char name[64];
    gboolean causal = at[i][3];
    g_snprintf (name, sizeof name, "attention %s T%d L%d H%d D64", causal ? "causal" : "full", a.T,
                a.L, a.H);
    double pairs = causal ? (double) a.T * (a.L - a.T) + a.T * (a.T + 1) / 2.0 : (double) a.T * a.L;
    report (name, time_calls (causal ? run_causal : run_full, &a), 4.0 * pairs * a.H * a.D, 0);
    g_free (a.a), g_free (a.b), g_free (a.c), g_free (a.out);
  }

  /* conv1d: HiFT conv_pre-like (512 ch, k 7) over 1000 frames; conv transpose: ups[0] */
  {
    Args a = { .C = 512, .T = 1000, .OC = 512, .K = 7, .pad = 3 };
    a.a = filled ((size_t) a.C * a.T), a.b = filled ((size_t) a.OC * a.C * a.K);
    a.out = g_new (float, (size_t) a.OC * a.T);
    a.col = g_new (float, cb_conv1d_scratch_floats (a.C, a.T, a.K, 1, a.pad, a.pad, 1, 1));
    report ("conv1d C512 T1000 OC512 K7", time_calls (run_conv, &a), 2.0 * a.C * a.T * a.OC * a.K, 0);
    g_free (a.a), g_free (a.b), g_free (a.out), g_free (a.col);
  }
  {
    Args a = { .C = 512, .T = 200, .OC = 256, .K = 16, .stride = 8, .pad = 4 };
    int Tout = cb_conv_transpose1d_out_len (a.T, a.K, a.stride, a.pad);
    a.a = filled ((size_t) a.C * a.T), a.b = filled ((size_t) a.C * a.OC * a.K);
    a.out = g_new (float, (size_t) a.OC * Tout);
    a.col = g_new (float, cb_conv_transpose1d_scratch_floats (a.T, a.OC, a.K));
    report ("conv_transpose1d C512 T200 OC256 K16 s8", time_calls (run_convt, &a),
            2.0 * a.C * a.T * a.OC * a.K, 0);
    g_free (a.a), g_free (a.b), g_free (a.out), g_free (a.col);
  }
  return 0;
}
