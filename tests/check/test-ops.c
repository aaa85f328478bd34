/* Units of the CPU op core (engine/ops-cpu*.c, parallel.c, tensor.c): every op against a plain-loop
 * reference written here from the definitions, in double precision, on seeded random inputs with odd
 * sizes and edge cases. Unless a test says otherwise an F32 result must satisfy
 * |got − want| <= 1e-5 + 1e-5·|want| (float rounding over sums of a few hundred terms stays well
 * inside that; a wrong sign or index does not). */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "cb-check.h"
#include "cb-common.h"
#include "ops.h"
#include "parallel.h"
#include "tensor.h"
#include "vecmath.h"

#define ATOL 1e-5
#define RTOL 1e-5

/* ---- helpers ---- */

/* splitmix64: a fixed seed gives the same inputs on every run and machine. */
typedef struct { guint64 s; } Rng;

static double
rng_uniform (Rng *r, double lo, double hi)
{
  guint64 z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double) (z >> 11) / (double) (1ull << 53);
}

static float *
random_buf (Rng *r, size_t n, double lo, double hi)
{
  float *b = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    b[i] = (float) rng_uniform (r, lo, hi);
  return b;
}

/* Index of the first element outside tolerance, or -1. */
static gssize
first_mismatch (const float *got, const double *want, size_t n, double atol, double rtol)
{
  for (size_t i = 0; i < n; i++) {
    double err = fabs ((double) got[i] - want[i]);
    if (!(err <= atol + rtol * fabs (want[i])))
      return (gssize) i;
  }
  return -1;
}

#define assert_close_tol(got, want, n, atol, rtol, what)                                       \
  do {                                                                                         \
    gssize bad_ = first_mismatch ((got), (want), (n), (atol), (rtol));                         \
    ck_assert_msg (bad_ < 0, "%s: element %zd of %zu: got %.9g want %.9g", (what), bad_,      \
                   (size_t) (n), bad_ < 0 ? 0.0 : (double) (got)[bad_],                        \
                   bad_ < 0 ? 0.0 : (want)[bad_]);                                             \
  } while (0)

#define assert_close(got, want, n, what) assert_close_tol (got, want, n, ATOL, RTOL, what)

/* ---- threads and the pool ---- */

typedef struct {
  gint *visits;
} VisitCtx;

static void
visit_body (void *ctx, int64_t begin, int64_t end)
{
  VisitCtx *v = ctx;
  for (int64_t i = begin; i < end; i++)
    g_atomic_int_inc (&v->visits[i]);
}

START_TEST (test_parallel_for_covers_once)
{
  const int64_t n = 1001;
  gint *visits = g_new0 (gint, n);
  VisitCtx ctx = { visits };
  for (int threads = 1; threads <= 3; threads++) {
    cb_set_num_threads (threads);
    memset (visits, 0, sizeof (gint) * n);
    for (int rep = 0; rep < 50; rep++)
      cb_parallel_for (n, 1, visit_body, &ctx);
    for (int64_t i = 0; i < n; i++)
      ck_assert_int_eq (visits[i], 50);
    ck_assert_int_eq (cb_parallel_pool_workers (), threads - 1);
  }
  g_free (visits);
}
END_TEST

/* A forked child inherits a pool whose threads it does not have: it must start its own. */
START_TEST (test_pool_after_fork)
{
  const int64_t n = 1000;
  gint *visits = g_new0 (gint, n);
  VisitCtx ctx = { visits };
  cb_set_num_threads (2);
  cb_parallel_for (n, 1, visit_body, &ctx);
  ck_assert_int_eq (cb_parallel_pool_workers (), 1);

  pid_t pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0) {
    int ok = cb_parallel_pool_workers () == 0;  /* the parent's worker is not here */
    cb_parallel_for (n, 1, visit_body, &ctx);
    ok = ok && cb_parallel_pool_workers () == 1;
    for (int64_t i = 0; i < n; i++)
      ok = ok && visits[i] == 2;
    g_free (visits);
    exit (ok ? 0 : 1);  /* exit, not _exit: leak checking runs in the child too */
  }
  int status = 0;
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  ck_assert (WIFEXITED (status));
  ck_assert_int_eq (WEXITSTATUS (status), 0);
  g_free (visits);
}
END_TEST

/* Runs a fixed mix of parallel ops (matmul, attention with capture, conv, norms, activations) into
 * one output vector, for comparing thread counts. */
static float *
run_op_mix (size_t *n_out)
{
  Rng r = { 42 };
  const int T = 37, C = 45, OC = 29, H = 4, D = 16, L = 150;
  float *x = random_buf (&r, (size_t) T * C, -1, 1), *w = random_buf (&r, (size_t) OC * C, -1, 1);
  float *q = random_buf (&r, (size_t) T * H * D, -1, 1), *k = random_buf (&r, (size_t) L * H * D, -1, 1);
  float *v = random_buf (&r, (size_t) L * H * D, -1, 1), *cw = random_buf (&r, (size_t) OC * C * 3, -1, 1);
  const int B = 384;
  float *big = random_buf (&r, (size_t) 2 * B * B, -1, 1);
  const int GM = 50, GN = 301;  /* a product wider than tall: split by columns */
  size_t n = (size_t) T * OC + (size_t) T * H * D + (size_t) T * L + (size_t) H * D
             + (size_t) OC * T + (size_t) T * C + (size_t) B * B + (size_t) 2 * B
             + (size_t) GM * GN;
  float *out = g_new0 (float, n), *o = out;
  int head = 2;
  float *probs = g_new0 (float, (size_t) T * L);
  CbAttnCapture cap = { 1, &head, &probs, L };

  cb_matmul (o, x, w, NULL, T, C, OC);
  o += (size_t) T * OC;
  cb_attention_causal (o, q, k, v, T, L - T, H, H, D, 0.25f, &cap);
  o += (size_t) T * H * D;
  memcpy (o, probs, sizeof (float) * T * L);
  o += (size_t) T * L;
  cb_attention_causal (o, q, k, v, 1, L - 1, H, H, D, 0.25f, NULL);  /* a decode step */
  o += (size_t) H * D;
  /* x read as [C, T] channels-first */
  cb_conv1d (o, x, cw, NULL, C, T, OC, 3, 1, 2, 0, 1, 1, NULL);
  o += (size_t) OC * T;
  cb_layernorm (o, x, NULL, NULL, 1e-5f, T, C);
  cb_gelu (o, o, (size_t) T * C);
  o += (size_t) T * C;
  /* large enough for OpenBLAS to split the GEMM and for our pool to split the activation */
  cb_matmul (o, big, big + (size_t) B * B, NULL, B, B, B);
  cb_mish (o, o, (size_t) B * B);
  o += (size_t) B * B;
  cb_matmul (o, big, big + (size_t) B * B, NULL, 2, B, B);  /* the row-streaming kernel */
  o += (size_t) 2 * B;
  /* A read as [B, GM] transposed, B as [B, GN] */
  cb_gemm (TRUE, FALSE, GM, GN, B, 0.5f, big, B, big + (size_t) B * B, B, 0.0f, o, GN);
  *n_out = n;
  g_free (x), g_free (w), g_free (q), g_free (k), g_free (v), g_free (cw), g_free (probs), g_free (big);
  return out;
}

/* Several engines share the process (one per element); their streaming threads call ops at the same
 * time: each must still get exactly what it gets alone. */
typedef struct {
  float *want;
  size_t n;
  int    failures;
} ConcurrentCtx;

static gpointer
concurrent_caller (gpointer data)
{
  ConcurrentCtx *c = data;
  /* many small loops: the most hand-overs to the pool, where callers could mix up their jobs */
  gint visits[64] = { 0 };
  VisitCtx vctx = { visits };
  for (int rep = 0; rep < 2000; rep++)
    cb_parallel_for (64, 1, visit_body, &vctx);
  for (int i = 0; i < 64; i++)
    if (visits[i] != 2000)
      c->failures++;
  for (int rep = 0; rep < 4; rep++) {
    size_t n;
    float *got = run_op_mix (&n);
    if (n != c->n || memcmp (got, c->want, n * sizeof (float)) != 0)
      c->failures++;
    g_free (got);
  }
  return NULL;
}

START_TEST (test_concurrent_callers)
{
  cb_set_num_threads (2);
  ConcurrentCtx ctx = { 0 };
  ctx.want = run_op_mix (&ctx.n);
  ConcurrentCtx per_thread[3];
  GThread *threads[3];
  for (int i = 0; i < 3; i++) {
    per_thread[i] = ctx;
    threads[i] = g_thread_new ("caller", concurrent_caller, &per_thread[i]);
  }
  for (int i = 0; i < 3; i++) {
    g_thread_join (threads[i]);
    ck_assert_int_eq (per_thread[i].failures, 0);
  }
  g_free (ctx.want);
}
END_TEST

/* Foreground loops go before background ones: with the pool held by a blocked loop, a background
 * caller and then a foreground caller queue for it; when it is free the foreground loop runs
 * first, and the background one still runs after it. */
typedef struct {
  GMutex   lock;
  GCond    cond;
  gboolean inside, release;
  gint     order;  /* atomic: loops finished so far */
} Gate;

typedef struct {
  Gate    *gate;
  gboolean background, blocks;
  gint     ran_as;  /* this caller's loop's place in the order the pool ran them */
} Caller;

/* Part 0 of each loop notes when it ran: inside the loop, while the pool is held, so the order is
 * the pool's and not that of the threads returning afterwards. */
static void
gate_body (void *ctx, int64_t begin, int64_t end)
{
  Caller *c = ctx;
  (void) end;
  if (begin != 0)
    return;
  c->ran_as = g_atomic_int_add (&c->gate->order, 1);
  if (!c->blocks)
    return;
  g_mutex_lock (&c->gate->lock);
  c->gate->inside = TRUE;
  g_cond_broadcast (&c->gate->cond);
  while (!c->gate->release)
    g_cond_wait (&c->gate->cond, &c->gate->lock);
  g_mutex_unlock (&c->gate->lock);
}

static gpointer
gate_caller (gpointer data)
{
  Caller *c = data;
  cb_parallel_set_background (c->background);
  cb_parallel_for (2, 1, gate_body, c);
  return NULL;
}

START_TEST (test_foreground_first)
{
  cb_set_num_threads (2);
  Gate gate = { .inside = FALSE };
  g_mutex_init (&gate.lock);
  g_cond_init (&gate.cond);
  Caller holder = { &gate, FALSE, TRUE, -1 }, bg = { &gate, TRUE, FALSE, -1 };
  Caller fg = { &gate, FALSE, FALSE, -1 };
  GThread *th = g_thread_new ("holder", gate_caller, &holder);
  g_mutex_lock (&gate.lock);
  while (!gate.inside)
    g_cond_wait (&gate.cond, &gate.lock);
  g_mutex_unlock (&gate.lock);
  GThread *tb = g_thread_new ("background", gate_caller, &bg);
  g_usleep (300000);  /* the background caller is queued first */
  GThread *tf = g_thread_new ("foreground", gate_caller, &fg);
  g_usleep (300000);  /* and the foreground caller after it */
  g_mutex_lock (&gate.lock);
  gate.release = TRUE;
  g_cond_broadcast (&gate.cond);
  g_mutex_unlock (&gate.lock);
  g_thread_join (th);
  g_thread_join (tf);
  g_thread_join (tb);
  ck_assert_int_eq (holder.ran_as, 0);
  ck_assert_msg (fg.ran_as == 1 && bg.ran_as == 2, "foreground ran %d-th, background %d-th",
                 fg.ran_as, bg.ran_as);
  g_mutex_clear (&gate.lock);
  g_cond_clear (&gate.cond);
}
END_TEST

START_TEST (test_threads_honoured_and_deterministic)
{
  cb_set_num_threads (1);
  ck_assert_int_eq (cb_get_num_threads (), 1);
  ck_assert_int_eq (openblas_get_num_threads (), 1);
  size_t n1, n2;
  float *one = run_op_mix (&n1);
  ck_assert_int_eq (cb_parallel_pool_workers (), 0);

  for (int threads = 2; threads <= 3; threads++) {
    cb_set_num_threads (threads);
    ck_assert_int_eq (cb_get_num_threads (), threads);
    float *many = run_op_mix (&n2);
    ck_assert_int_eq (cb_parallel_pool_workers (), threads - 1);
    /* our pool does the threading: OpenBLAS's own spinning threads stay out of it */
    ck_assert_int_eq (openblas_get_num_threads (), 1);
    ck_assert_uint_eq (n1, n2);
    ck_assert_msg (memcmp (one, many, n1 * sizeof (float)) == 0,
                   "results differ between 1 and %d threads", threads);
    g_free (many);
  }

  cb_set_num_threads (0);  /* all CPUs */
  ck_assert_int_eq (cb_get_num_threads (), (int) CLAMP (g_get_num_processors (), 1, CB_MAX_THREADS));
  g_free (one);
}
END_TEST

/* ---- matmul ---- */

static void
ref_matmul (double *out, const float *inp, const float *w, const float *bias, const float *init,
            int T, int C, int OC)
{
  for (int t = 0; t < T; t++)
    for (int o = 0; o < OC; o++) {
      double s = init ? init[(size_t) t * OC + o] : 0.0;
      s += bias ? bias[o] : 0.0;
      for (int c = 0; c < C; c++)
        s += (double) inp[(size_t) t * C + c] * w[(size_t) o * C + c];
      out[(size_t) t * OC + o] = s;
    }
}

START_TEST (test_matmul)
{
  Rng r = { 1 };
  const int Ts[] = { 1, 2, 3, 4, 5, 7, 8, 9, 33 };  /* 1..8: the row-streaming kernel; more: GEMM */
  const int C = 37, OC = 19;
  for (size_t i = 0; i < G_N_ELEMENTS (Ts); i++) {
    int T = Ts[i];
    float *x = random_buf (&r, (size_t) T * C, -1, 1), *w = random_buf (&r, (size_t) OC * C, -1, 1);
    float *b = random_buf (&r, OC, -1, 1), *init = random_buf (&r, (size_t) T * OC, -1, 1);
    float *out = g_new (float, (size_t) T * OC);
    double *want = g_new (double, (size_t) T * OC);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      const float *bias = with_bias ? b : NULL;
      cb_matmul (out, x, w, bias, T, C, OC);
      ref_matmul (want, x, w, bias, NULL, T, C, OC);
      assert_close (out, want, (size_t) T * OC, "matmul");

      memcpy (out, init, sizeof (float) * T * OC);
      cb_matmul_acc (out, x, w, bias, T, C, OC);
      ref_matmul (want, x, w, bias, init, T, C, OC);
      assert_close (out, want, (size_t) T * OC, "matmul_acc");
    }
    g_free (x), g_free (w), g_free (b), g_free (init), g_free (out), g_free (want);
  }
}
END_TEST

START_TEST (test_matmul_bf16)
{
  Rng r = { 8 };
  const int Ts[] = { 1, 2, 3, 4, 6, 8, 9, 33 };
  /* C·OC: more than the 2^22 floats widened at once on the GEMM path (two blocks); C not a multiple
   * of the lanes; OC leaves a remainder of rows for the streaming kernel */
  const int C = 1031, OC = 4101;
  float *wf = random_buf (&r, (size_t) OC * C, -1, 1), *b = random_buf (&r, OC, -1, 1);
  guint16 *w = g_new (guint16, (size_t) OC * C);
  cb_f32_to_bf16 (w, wf, (size_t) OC * C);
  float *wide = g_new (float, (size_t) OC * C);  /* what the BF16 weights mean */
  for (size_t i = 0; i < (size_t) OC * C; i++)
    wide[i] = cb_bf16_to_f32 (w[i]);
  for (size_t i = 0; i < G_N_ELEMENTS (Ts); i++) {
    int T = Ts[i];
    float *x = random_buf (&r, (size_t) T * C, -1, 1), *out = g_new (float, (size_t) T * OC);
    double *want = g_new (double, (size_t) T * OC);
    cb_matmul_bf16 (out, x, w, b, T, C, OC);
    ref_matmul (want, x, wide, b, NULL, T, C, OC);
    /* a sum of 1031 float products carries rounding of ~1e-7 of Σ|x·w| (~250 here), not of the
     * result: the tolerance is scaled by that magnitude */
    for (int t = 0; t < T; t++)
      for (int o = 0; o < OC; o++) {
        double mag = 0;
        for (int c = 0; c < C; c++)
          mag += fabs ((double) x[(size_t) t * C + c] * wide[(size_t) o * C + c]);
        double got = out[(size_t) t * OC + o], ref = want[(size_t) t * OC + o];
        ck_assert_msg (fabs (got - ref) <= 1e-5 + 2e-7 * mag, "matmul_bf16 T%d [%d, %d]: got %.9g want "
                       "%.9g (magnitude %g)", T, t, o, got, ref, mag);
      }
    g_free (x), g_free (out), g_free (want);
  }
  g_free (wf), g_free (b), g_free (w), g_free (wide);
}
END_TEST

/* Round to nearest even by its definition: the nearer of the two BF16 neighbours, the even one on a
 * tie; infinities and NaN kept. */
START_TEST (test_f32_to_bf16)
{
  static const struct { guint32 in; guint16 out; } cases[] = {
    { 0x3f800000, 0x3f80 }, { 0x3f808000, 0x3f80 } /* tie, even below */,
    { 0x3f818000, 0x3f82 } /* tie, even above */, { 0x3f808001, 0x3f81 }, { 0xbf80ffff, 0xbf81 },
    { 0x7f800000, 0x7f80 }, { 0xff800000, 0xff80 }, { 0x7f7fffff, 0x7f80 } /* rounds to inf */,
    { 0x00000001, 0x0000 }, { 0x80000000, 0x8000 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    float f;
    guint16 h;
    memcpy (&f, &cases[i].in, sizeof f);
    cb_f32_to_bf16 (&h, &f, 1);
    ck_assert_msg (h == cases[i].out, "0x%08x -> 0x%04x, want 0x%04x", cases[i].in, h, cases[i].out);
  }
  float nan = NAN;
  guint16 h;
  cb_f32_to_bf16 (&h, &nan, 1);
  ck_assert (isnan (cb_bf16_to_f32 (h)));

  Rng r = { 9 };
  for (int i = 0; i < 100000; i++) {
    float f = (float) rng_uniform (&r, -1e6, 1e6);
    cb_f32_to_bf16 (&h, &f, 1);
    guint32 bits;
    memcpy (&bits, &f, sizeof bits);
    double lo = cb_bf16_to_f32 ((guint16) (bits >> 16)), hi = cb_bf16_to_f32 ((guint16) ((bits >> 16) + 1));
    double d_lo = fabs (f - lo), d_hi = fabs (f - hi);
    guint16 want = (guint16) (bits >> 16);
    if (d_hi < d_lo || (d_hi == d_lo && (want & 1)))
      want++;
    ck_assert_msg (h == want, "%.9g -> 0x%04x, want 0x%04x", f, h, want);
  }
}
END_TEST

/* ---- norms, softmax, transpose ---- */

/* Reference norm of one vector x[n] with stride; rms = TRUE for RMSNorm. */
static void
ref_norm (double *y, const float *x, size_t stride, int n, const float *w, const float *b,
          double eps, gboolean rms)
{
  double mean = 0, var = 0;
  if (!rms) {
    for (int i = 0; i < n; i++)
      mean += x[i * stride];
    mean /= n;
  }
  for (int i = 0; i < n; i++)
    var += (x[i * stride] - mean) * (x[i * stride] - mean);
  var /= n;
  for (int i = 0; i < n; i++)
    y[i * stride] = (x[i * stride] - mean) / sqrt (var + eps) * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
}

START_TEST (test_norms)
{
  Rng r = { 2 };
  const int T = 13, C = 67;
  float *x = random_buf (&r, (size_t) T * C, -3, 5), *w = random_buf (&r, C, 0.5, 1.5);
  float *b = random_buf (&r, C, -1, 1), *out = g_new (float, (size_t) T * C);
  double *want = g_new (double, (size_t) T * C);

  cb_rmsnorm (out, x, w, 1e-5f, T, C);
  for (int t = 0; t < T; t++)
    ref_norm (want + t * C, x + t * C, 1, C, w, NULL, 1e-5, TRUE);
  assert_close (out, want, (size_t) T * C, "rmsnorm");

  for (int affine = 0; affine < 2; affine++) {
    cb_layernorm (out, x, affine ? w : NULL, affine ? b : NULL, 1e-12f, T, C);
    for (int t = 0; t < T; t++)
      ref_norm (want + t * C, x + t * C, 1, C, affine ? w : NULL, affine ? b : NULL, 1e-12, FALSE);
    assert_close (out, want, (size_t) T * C, "layernorm");
  }

  /* channels-first: x read as [C, T'] with T' = T, and T' > 64 to cross a frame block */
  const int Tc = 131, Cc = 23;
  float *xc = random_buf (&r, (size_t) Cc * Tc, -2, 3), *outc = g_new (float, (size_t) Cc * Tc);
  double *wantc = g_new (double, (size_t) Cc * Tc);
  cb_layernorm_channels (outc, xc, w, b, 1e-5f, Cc, Tc);
  for (int t = 0; t < Tc; t++)
    ref_norm (wantc + t, xc + t, Tc, Cc, w, b, 1e-5, FALSE);
  assert_close (outc, wantc, (size_t) Cc * Tc, "layernorm_channels");
  cb_layernorm_channels (xc, xc, w, b, 1e-5f, Cc, Tc);  /* in place */
  assert_close (xc, wantc, (size_t) Cc * Tc, "layernorm_channels in place");

  g_free (x), g_free (w), g_free (b), g_free (out), g_free (want);
  g_free (xc), g_free (outc), g_free (wantc);
}
END_TEST

START_TEST (test_softmax_and_transpose)
{
  Rng r = { 3 };
  const int rows = 5, cols = 203;
  float *x = random_buf (&r, (size_t) rows * cols, -10, 10), *out = g_new (float, (size_t) rows * cols);
  double *want = g_new (double, (size_t) rows * cols);
  x[7] = 1000.0f;  /* would overflow exp without the max subtraction */
  cb_softmax (out, x, rows, cols);
  for (int i = 0; i < rows; i++) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < cols; j++)
      mx = fmax (mx, x[i * cols + j]);
    for (int j = 0; j < cols; j++)
      sum += exp (x[i * cols + j] - mx);
    for (int j = 0; j < cols; j++)
      want[i * cols + j] = exp (x[i * cols + j] - mx) / sum;
  }
  /* relative: a small probability must be as exact as a large one */
  assert_close_tol (out, want, (size_t) rows * cols, 1e-12, 2e-6, "softmax");

  const int tr = 37, tc = 45;  /* not multiples of the 32 tile */
  float *m = random_buf (&r, (size_t) tr * tc, -1, 1), *mt = g_new (float, (size_t) tr * tc);
  cb_transpose (mt, m, tr, tc);
  for (int i = 0; i < tr; i++)
    for (int j = 0; j < tc; j++)
      ck_assert_float_eq (mt[j * tr + i], m[i * tc + j]);
  g_free (x), g_free (out), g_free (want), g_free (m), g_free (mt);
}
END_TEST

/* ---- RoPE ---- */

static const CbRopeScaling llama3_scaling = { 8.0f, 1.0f, 4.0f, 8192 };

START_TEST (test_rope_llama3_frequencies)
{
  /* inv_freq and cos/sin from Python: transformers 5.24.0, torch 2.6.0 —
   * ROPE_INIT_FUNCTIONS["llama3"](LlamaConfig(head_dim=64, rope_theta=500000.0, rope_scaling=
   * {rope_type: llama3, factor: 8, low_freq_factor: 1, high_freq_factor: 4,
   * original_max_position_embeddings: 8192}), "cpu") and LlamaRotaryEmbedding(cfg)(x, positions).
   * Indices 0–14 are unscaled, 15–17 blended, 18–31 divided by 8. */
  static const struct { int i; double f; } want_freq[] = {
    { 0, 1.0 }, { 1, 0.663601279258728 }, { 10, 0.016560440883040428 },
    { 14, 0.0032114461064338684 }, { 15, 0.0013718936825171113 }, { 16, 0.0005248460220173001 },
    { 17, 0.0001785077911335975 }, { 18, 7.784655463183299e-05 }, { 31, 3.76732259610435e-07 },
  };
  static const struct { int p, i; double c, s; } want_cs[] = {
    { 1, 0, 0.540302336, 0.841470957 },       { 1, 15, 0.999999046, 0.00137189322 },
    { 7, 5, 0.620973945, 0.783831179 },       { 7, 16, 0.999993265, 0.00367391412 },
    { 100, 0, 0.862318873, -0.506365657 },    { 100, 17, 0.999840677, 0.0178498309 },
    { 1234, 5, -0.149243265, 0.988800526 },   { 1234, 15, -0.121817112, 0.992552578 },
    { 1234, 16, 0.797497749, 0.60332191 },    { 5000, 0, 0.154668406, -0.987966418 },
    { 5000, 17, 0.627437055, 0.778667271 },   { 5000, 31, 0.999998212, 0.00188366009 },
  };
  GError *err = NULL;
  CbRopeTable *rope = cb_rope_table_build (500000.0, 64, 6000, &llama3_scaling, &err);
  ck_assert_ptr_nonnull (rope);
  for (size_t n = 0; n < G_N_ELEMENTS (want_freq); n++) {
    double got = rope->inv_freq[want_freq[n].i];
    ck_assert_msg (fabs (got - want_freq[n].f) <= 2e-7 * want_freq[n].f, "inv_freq[%d] %.9g want %.9g",
                   want_freq[n].i, got, want_freq[n].f);
  }
  for (size_t n = 0; n < G_N_ELEMENTS (want_cs); n++) {
    size_t at = (size_t) want_cs[n].p * 32 + want_cs[n].i;
    ck_assert_msg (fabs (rope->cos[at] - want_cs[n].c) <= 2e-7 && fabs (rope->sin[at] - want_cs[n].s) <= 2e-7,
                   "p %d i %d: cos %.9g sin %.9g want %.9g %.9g", want_cs[n].p, want_cs[n].i,
                   rope->cos[at], rope->sin[at], want_cs[n].c, want_cs[n].s);
  }
  cb_rope_table_free (rope);

  /* Unscaled: theta^(-2i/D) exactly as defined. */
  rope = cb_rope_table_build (10000.0, 10, 4, NULL, &err);
  ck_assert_ptr_nonnull (rope);
  for (int i = 0; i < 5; i++)
    ck_assert_double_eq_tol (rope->inv_freq[i], pow (10000.0, -2.0 * i / 10), 1e-7);
  cb_rope_table_free (rope);

  ck_assert_ptr_null (cb_rope_table_build (10000.0, 63, 4, NULL, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  const CbRopeScaling inverted = { 8.0f, 4.0f, 1.0f, 8192 };  /* high_freq_factor <= low */
  ck_assert_ptr_null (cb_rope_table_build (10000.0, 64, 0, NULL, &err));
  g_clear_error (&err);
  ck_assert_ptr_null (cb_rope_table_build (1.0, 64, 8, NULL, &err));
  g_clear_error (&err);
  ck_assert_ptr_null (cb_rope_table_build (10000.0, 64, 8, &inverted, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
}
END_TEST

START_TEST (test_rope_apply)
{
  Rng r = { 4 };
  const int T = 5, H = 3, D = 20, pos0 = 11;
  GError *err = NULL;
  CbRopeTable *rope = cb_rope_table_build (500000.0, D, 64, &llama3_scaling, &err);
  ck_assert_ptr_nonnull (rope);
  float *x = random_buf (&r, (size_t) T * H * D, -1, 1);
  double *want = g_new (double, (size_t) T * H * D);
  /* rotate-half: pair (i, i + D/2) rotated by angle p·f_i */
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) {
        const float *v = x + ((size_t) t * H + h) * D;
        double a = (double) (pos0 + t) * rope->inv_freq[i];
        want[((size_t) t * H + h) * D + i] = v[i] * cos (a) - v[i + D / 2] * sin (a);
        want[((size_t) t * H + h) * D + i + D / 2] = v[i + D / 2] * cos (a) + v[i] * sin (a);
      }
  cb_rope_apply (x, rope, T, H, pos0);
  assert_close (x, want, (size_t) T * H * D, "rope_apply");
  cb_rope_table_free (rope);
  g_free (x), g_free (want);
}
END_TEST

/* ---- attention ---- */

/* Reference attention of one (head, query row): probabilities p[L] (0 for unseen keys) and output. */
static void
ref_attention_row (double *o, double *p, const float *q, const float *k, const float *v,
                   int t, int h, int n_keys, int L, int H, int Hkv, int D, double scale,
                   const float *bias, size_t bhs, size_t brs)
{
  int g = h / (H / Hkv);
  double mx = -INFINITY, sum = 0;
  for (int j = 0; j < L; j++) {
    if (j >= n_keys) {
      p[j] = -INFINITY;
      continue;
    }
    double s = 0;
    for (int d = 0; d < D; d++)
      s += (double) q[((size_t) t * H + h) * D + d] * k[((size_t) j * Hkv + g) * D + d];
    s *= scale;
    if (bias)
      s += bias[h * bhs + t * brs + j];
    p[j] = s;
    mx = fmax (mx, s);
  }
  for (int j = 0; j < L; j++) {
    p[j] = j < n_keys ? exp (p[j] - mx) : 0.0;
    sum += p[j];
  }
  for (int d = 0; d < D; d++)
    o[d] = 0;
  for (int j = 0; j < L; j++) {
    p[j] /= sum;
    for (int d = 0; d < D; d++)
      o[d] += p[j] * v[((size_t) j * Hkv + g) * D + d];
  }
}

/* One attention case, causal when pos0 >= 0, with heads 1 and H-1 captured. Tq <= 8 exercises the
 * direct (decode) path of ops-cpu-attn.c, more rows the GEMM path; the second call, without capture,
 * takes the fused path when the attention is full and Tq > 8. */
static void
check_attention (guint64 seed, int Tq, int pos0, int L, int H, int Hkv, int D, int bias_kind)
{
  Rng r = { seed };
  gboolean causal = pos0 >= 0;
  if (causal)
    L = pos0 + Tq;
  float *q = random_buf (&r, (size_t) Tq * H * D, -2, 2), *k = random_buf (&r, (size_t) L * Hkv * D, -2, 2);
  float *v = random_buf (&r, (size_t) L * Hkv * D, -1, 1), *out = g_new (float, (size_t) Tq * H * D);
  /* bias_kind 1: key padding mask (strides 0, 0); 2: a full [H, Tq, L] bias of large values */
  size_t bhs = bias_kind == 2 ? (size_t) Tq * L : 0, brs = bias_kind == 2 ? (size_t) L : 0;
  float *bias = NULL;
  if (bias_kind == 1) {
    bias = g_new0 (float, L);
    for (int j = 0; j < L; j += 3)
      bias[j] = -1e10f;
  } else if (bias_kind == 2) {
    /* around 93: exp would overflow without the max subtraction */
    bias = random_buf (&r, (size_t) H * Tq * L, 90, 96);
  }
  const int stride = L + 3;
  int heads[2] = { 1, H - 1 };
  float *probs[2] = { g_new (float, (size_t) Tq * stride), g_new (float, (size_t) Tq * stride) };
  for (int c = 0; c < 2; c++)
    for (size_t i = 0; i < (size_t) Tq * stride; i++)
      probs[c][i] = 7.0f;  /* must be overwritten (or, past L, left alone) */
  CbAttnCapture cap = { 2, heads, probs, stride };
  float scale = 1.0f / sqrtf ((float) D);

  if (causal)
    cb_attention_causal (out, q, k, v, Tq, pos0, H, Hkv, D, scale, &cap);
  else
    cb_attention (out, q, k, v, Tq, L, H, Hkv, D, scale, bias, bhs, brs, &cap);

  double *want = g_new (double, (size_t) Tq * H * D), *p = g_new (double, L);
  for (int t = 0; t < Tq; t++)
    for (int h = 0; h < H; h++) {
      int n_keys = causal ? pos0 + t + 1 : L;
      ref_attention_row (want + ((size_t) t * H + h) * D, p, q, k, v, t, h, n_keys, L, H, Hkv, D,
                         scale, bias, bhs, brs);
      for (int c = 0; c < 2; c++) {
        if (heads[c] != h)
          continue;
        const float *row = probs[c] + (size_t) t * stride;
        assert_close_tol (row, p, L, 1e-12, 1e-5, "captured probabilities");
        double sum = 0;
        for (int j = 0; j < L; j++)
          sum += row[j];
        ck_assert_double_eq_tol (sum, 1.0, 1e-5);
        ck_assert_float_eq (row[L], 7.0f);  /* past the row: untouched */
      }
    }
  assert_close (out, want, (size_t) Tq * H * D, causal ? "attention_causal" : "attention");

  /* Without capture the streaming path must give the same output. */
  float *out2 = g_new (float, (size_t) Tq * H * D);
  if (causal)
    cb_attention_causal (out2, q, k, v, Tq, pos0, H, Hkv, D, scale, NULL);
  else
    cb_attention (out2, q, k, v, Tq, L, H, Hkv, D, scale, bias, bhs, brs, NULL);
  assert_close (out2, want, (size_t) Tq * H * D, "attention without capture");

  g_free (q), g_free (k), g_free (v), g_free (out), g_free (out2), g_free (bias);
  g_free (probs[0]), g_free (probs[1]), g_free (want), g_free (p);
}

START_TEST (test_attention_causal)
{
  check_attention (10, 3, 5, 0, 4, 2, 20, 0);    /* grouped heads, D not a multiple of 8 */
  check_attention (11, 1, 149, 0, 4, 4, 64, 0);  /* decode step, cache over two key blocks */
  check_attention (12, 70, 0, 0, 3, 1, 24, 0);   /* prefill from position 0, one KV head */
  check_attention (13, 1, 0, 0, 2, 2, 8, 0);     /* a single key */
  check_attention (14, 1100, 3000, 0, 2, 1, 8, 0); /* more scores than one block: row blocks */
  check_attention (15, 8, 40, 0, 4, 2, 20, 0);     /* the most rows the direct path takes */
  check_attention (16, 9, 40, 0, 4, 2, 20, 0);     /* the fewest the GEMM path takes */
}
END_TEST

/* A query row whose keys are all masked with −inf: zero probabilities and a zero output (not NaN),
 * on both paths; the other rows are unaffected. */
static void
check_fully_masked_row (int Tq)
{
  Rng r = { 27 };
  const int L = 21, H = 2, D = 8;
  float *q = random_buf (&r, (size_t) Tq * H * D, -1, 1), *k = random_buf (&r, (size_t) L * H * D, -1, 1);
  float *v = random_buf (&r, (size_t) L * H * D, -1, 1), *out = g_new (float, (size_t) Tq * H * D);
  float *bias = g_new0 (float, (size_t) Tq * L), *probs = g_new (float, (size_t) Tq * L);
  for (int j = 0; j < L; j++)
    bias[L + j] = -INFINITY;  /* query row 1 */
  int head = 1;
  CbAttnCapture cap = { 1, &head, &probs, L };
  cb_attention (out, q, k, v, Tq, L, H, H, D, 0.35f, bias, 0, L, &cap);
  for (int j = 0; j < L; j++)
    ck_assert_float_eq (probs[L + j], 0.0f);
  for (int h = 0; h < H; h++)
    for (int d = 0; d < D; d++)
      ck_assert_float_eq (out[((size_t) 1 * H + h) * D + d], 0.0f);
  /* without capture (the fused path when Tq > 8) */
  cb_attention (out, q, k, v, Tq, L, H, H, D, 0.35f, bias, 0, L, NULL);
  for (int h = 0; h < H; h++)
    for (int d = 0; d < D; d++) {
      ck_assert_float_eq (out[((size_t) 1 * H + h) * D + d], 0.0f);
      ck_assert (isfinite (out[h * D + d]) && out[h * D + d] != 0.0f);
    }
  double sum = 0;
  for (int j = 0; j < L; j++)
    sum += probs[j];  /* row 0 */
  ck_assert_double_eq_tol (sum, 1.0, 1e-5);
  g_free (q), g_free (k), g_free (v), g_free (out), g_free (bias), g_free (probs);
}

START_TEST (test_attention_full)
{
  check_fully_masked_row (3);   /* direct path */
  check_fully_masked_row (12);  /* GEMM path (captured), fused path (not) */
  check_attention (20, 9, -1, 131, 4, 2, 20, 0);
  check_attention (21, 9, -1, 131, 4, 4, 16, 1);  /* key padding mask of -1e10 */
  check_attention (22, 17, -1, 70, 2, 1, 12, 2);  /* full per-head bias */
  check_attention (23, 1, -1, 1, 2, 2, 8, 0);
  check_attention (24, 1100, -1, 4000, 1, 1, 8, 1); /* row blocks, masked keys */
  check_attention (25, 5, -1, 77, 4, 2, 20, 1);     /* direct path with a key mask */
  check_attention (26, 3, -1, 77, 4, 4, 24, 2);     /* direct path with a full bias */
  /* fused path: 3 row chunks, score blocks not a multiple of its 6-row tile, keys not a multiple
   * of 16, head dims 16 + 8 + 4 (both vector tiles and the scalar tail), grouped heads */
  check_attention (27, 150, -1, 700, 4, 2, 28, 1);
}
END_TEST

/* ---- convolutions ---- */

static void
check_conv1d (guint64 seed, int C, int T, int OC, int K, int stride, int pl, int pr, int dil,
              int groups, gboolean with_bias, gboolean own_scratch)
{
  Rng r = { seed };
  int Cg = C / groups, OCg = OC / groups;
  int Tout = cb_conv1d_out_len (T, K, stride, pl, pr, dil);
  ck_assert_int_eq (Tout, (T + pl + pr - dil * (K - 1) - 1) / stride + 1);
  float *x = random_buf (&r, (size_t) C * T, -1, 1), *w = random_buf (&r, (size_t) OC * Cg * K, -1, 1);
  float *b = with_bias ? random_buf (&r, OC, -1, 1) : NULL, *out = g_new (float, (size_t) OC * Tout);
  double *want = g_new (double, (size_t) OC * Tout);
  for (int o = 0; o < OC; o++)
    for (int t = 0; t < Tout; t++) {
      int g = o / OCg;
      double s = b ? b[o] : 0.0;
      for (int c = 0; c < Cg; c++)
        for (int kk = 0; kk < K; kk++) {
          int ti = t * stride + kk * dil - pl;
          if (ti >= 0 && ti < T)
            s += (double) w[((size_t) o * Cg + c) * K + kk] * x[(size_t) (g * Cg + c) * T + ti];
        }
      want[(size_t) o * Tout + t] = s;
    }
  size_t scratch_n = cb_conv1d_scratch_floats (C, T, K, stride, pl, pr, dil, groups);
  float *scratch = own_scratch ? g_new (float, scratch_n + 1) : NULL;
  cb_conv1d (out, x, w, b, C, T, OC, K, stride, pl, pr, dil, groups, scratch);
  char what[128];
  g_snprintf (what, sizeof what, "conv1d C%d T%d OC%d K%d s%d p%d/%d d%d g%d", C, T, OC, K, stride,
              pl, pr, dil, groups);
  assert_close (out, want, (size_t) OC * Tout, what);
  g_free (x), g_free (w), g_free (b), g_free (out), g_free (want), g_free (scratch);
}

START_TEST (test_conv1d)
{
  check_conv1d (30, 5, 23, 7, 3, 1, 1, 1, 1, 1, TRUE, FALSE);    /* "same" */
  check_conv1d (31, 5, 23, 7, 3, 1, 2, 0, 1, 1, TRUE, TRUE);     /* causal */
  check_conv1d (32, 6, 29, 6, 11, 1, 15, 15, 3, 1, FALSE, TRUE); /* dilation 3 */
  check_conv1d (33, 18, 61, 9, 30, 15, 7, 7, 1, 1, TRUE, FALSE); /* HiFT source_down: stride 15 */
  check_conv1d (34, 18, 40, 5, 6, 3, 1, 1, 1, 1, TRUE, TRUE);    /* stride 3 */
  check_conv1d (35, 13, 17, 11, 1, 1, 0, 0, 1, 1, TRUE, FALSE);  /* pointwise, no scratch */
  check_conv1d (36, 9, 1, 4, 1, 1, 0, 0, 1, 1, FALSE, FALSE);    /* T = 1, K = 1 */
  check_conv1d (37, 6, 25, 6, 5, 1, 4, 0, 1, 6, TRUE, FALSE);    /* depthwise, causal */
  check_conv1d (38, 4, 25, 8, 3, 2, 1, 1, 2, 4, TRUE, FALSE);    /* depthwise ×2, stride, dilation */
  check_conv1d (39, 6, 19, 4, 3, 1, 1, 1, 1, 2, TRUE, TRUE);     /* 2 groups */
  check_conv1d (40, 3, 8, 5, 4, 1, 0, 3, 1, 1, FALSE, FALSE);    /* pre-lookahead: 3 right */
  check_conv1d (41, 3, 4, 2, 5, 1, 0, 0, 1, 1, TRUE, FALSE);     /* input shorter than the kernel */
  ck_assert_int_eq (cb_conv1d_out_len (2, 5, 1, 0, 0, 1), 0);
}
END_TEST

static void
check_conv_transpose1d (guint64 seed, int C, int T, int OC, int K, int stride, int pad, gboolean own)
{
  Rng r = { seed };
  int Tout = cb_conv_transpose1d_out_len (T, K, stride, pad);
  ck_assert_int_eq (Tout, (T - 1) * stride + K - 2 * pad);
  float *x = random_buf (&r, (size_t) C * T, -1, 1), *w = random_buf (&r, (size_t) C * OC * K, -1, 1);
  float *b = random_buf (&r, OC, -1, 1), *out = g_new (float, (size_t) OC * Tout);
  double *want = g_new (double, (size_t) OC * Tout);
  for (int o = 0; o < OC; o++)
    for (int t = 0; t < Tout; t++)
      want[(size_t) o * Tout + t] = b[o];
  /* the definition: input sample t of channel c spreads w[c, o, :] over outputs t·stride + k − pad */
  for (int c = 0; c < C; c++)
    for (int t = 0; t < T; t++)
      for (int o = 0; o < OC; o++)
        for (int kk = 0; kk < K; kk++) {
          int to = t * stride + kk - pad;
          if (to >= 0 && to < Tout)
            want[(size_t) o * Tout + to] += (double) x[(size_t) c * T + t] * w[((size_t) c * OC + o) * K + kk];
        }
  float *scratch = own ? g_new (float, cb_conv_transpose1d_scratch_floats (T, OC, K)) : NULL;
  cb_conv_transpose1d (out, x, w, b, C, T, OC, K, stride, pad, scratch);
  char what[96];
  g_snprintf (what, sizeof what, "conv_transpose1d C%d T%d OC%d K%d s%d p%d", C, T, OC, K, stride, pad);
  assert_close (out, want, (size_t) OC * Tout, what);
  g_free (x), g_free (w), g_free (b), g_free (out), g_free (want), g_free (scratch);
}

START_TEST (test_conv_transpose1d)
{
  check_conv_transpose1d (50, 5, 9, 3, 16, 8, 4, FALSE);  /* HiFT ups[0]: k 16, ×8, pad 4 */
  check_conv_transpose1d (51, 4, 7, 6, 11, 5, 3, TRUE);   /* ups[1]: k 11, ×5, pad 3 */
  check_conv_transpose1d (52, 7, 13, 2, 7, 3, 2, FALSE);  /* ups[2]: k 7, ×3, pad 2 */
  check_conv_transpose1d (53, 3, 10, 4, 3, 1, 0, TRUE);   /* stride 1, no padding */
  check_conv_transpose1d (54, 3, 1, 2, 4, 2, 1, FALSE);   /* T = 1 */
  check_conv_transpose1d (55, 2, 6, 3, 2, 4, 0, FALSE);   /* stride > K: gaps stay bias */
}
END_TEST

/* ---- activations and elementwise ---- */

typedef enum { A_SILU, A_GELU, A_GELU_TANH, A_MISH, A_LEAKY, A_ELU, A_TANH, A_SIGMOID } ActKind;

static double
ref_activation (ActKind kind, double x)
{
  switch (kind) {
  case A_SILU: return x / (1 + exp (-x));
  case A_GELU: return 0.5 * x * (1 + erf (x / sqrt (2.0)));
  case A_GELU_TANH: return 0.5 * x * (1 + tanh (sqrt (2 / G_PI) * (x + 0.044715 * x * x * x)));
  case A_MISH: return x * tanh (log1p (exp (x)));
  case A_LEAKY: return x >= 0 ? x : 0.1 * x;
  case A_ELU: return x > 0 ? x : 1.3 * (exp (x) - 1);
  case A_TANH: return tanh (x);
  case A_SIGMOID: return 1 / (1 + exp (-x));
  }
  return NAN;
}

static void
apply_activation (ActKind kind, float *out, const float *inp, size_t n)
{
  switch (kind) {
  case A_SILU: cb_silu (out, inp, n); break;
  case A_GELU: cb_gelu (out, inp, n); break;
  case A_GELU_TANH: cb_gelu_tanh (out, inp, n); break;
  case A_MISH: cb_mish (out, inp, n); break;
  case A_LEAKY: cb_leaky_relu (out, inp, n, 0.1f); break;
  case A_ELU: cb_elu (out, inp, n, 1.3f); break;
  case A_TANH: cb_tanh (out, inp, n); break;
  case A_SIGMOID: cb_sigmoid (out, inp, n); break;
  }
}

START_TEST (test_activations)
{
  static const char *names[] = { "silu", "gelu", "gelu_tanh", "mish", "leaky_relu", "elu", "tanh",
                                 "sigmoid" };
  Rng r = { 5 };
  /* large enough to take the parallel path; extremes where naive formulas overflow */
  const size_t n = 40003;
  float *x = random_buf (&r, n, -8, 8), *out = g_new (float, n);
  double *want = g_new (double, n);
  const float extremes[] = { 0.0f, -0.0f, 30.0f, -30.0f, 100.0f, -100.0f, 1e-7f, -88.0f, 89.0f };
  memcpy (x, extremes, sizeof extremes);
  for (int kind = A_SILU; kind <= A_SIGMOID; kind++) {
    for (size_t i = 0; i < n; i++)
      want[i] = ref_activation (kind, x[i]);
    apply_activation (kind, out, x, n);
    assert_close_tol (out, want, n, 1e-6, 2e-6, names[kind]);
    for (size_t i = 0; i < n; i++)
      ck_assert (isfinite (out[i]));
  }
  float *y = g_memdup2 (x, n * sizeof (float));  /* in place */
  apply_activation (A_MISH, y, y, n);
  for (size_t i = 0; i < n; i++)
    want[i] = ref_activation (A_MISH, x[i]);
  assert_close_tol (y, want, n, 1e-6, 2e-6, "mish in place");
  g_free (x), g_free (out), g_free (want), g_free (y);
}
END_TEST

START_TEST (test_snake)
{
  Rng r = { 6 };
  const int C = 7, T = 45;  /* T: five full blocks of lanes and a tail */
  float *x = random_buf (&r, (size_t) C * T, -30, 30), *alpha = random_buf (&r, C, 0.2, 20);
  alpha[2] = 0.0f;  /* the 1e-9 keeps this finite: sin²(0)·1e9 = 0 */
  float *out = g_new (float, (size_t) C * T);
  double *want = g_new (double, (size_t) C * T);
  for (int c = 0; c < C; c++)
    for (int t = 0; t < T; t++) {
      double v = x[c * T + t], s = sin (alpha[c] * v);
      want[c * T + t] = v + s * s / ((double) alpha[c] + 1e-9);
    }
  cb_snake (out, x, alpha, C, T);
  assert_close (out, want, (size_t) C * T, "snake");
  g_free (x), g_free (alpha), g_free (out), g_free (want);
}
END_TEST

START_TEST (test_elementwise)
{
  Rng r = { 7 };
  const int T = 9, C = 21;
  const size_t n = (size_t) T * C;
  float *a = random_buf (&r, n, -4, 4), *b = random_buf (&r, n, -4, 4), *bias = random_buf (&r, C, -1, 1);
  float *out = g_new (float, n);
  double *want = g_new (double, n);

  cb_add (out, a, b, n);
  for (size_t i = 0; i < n; i++)
    want[i] = (double) a[i] + b[i];
  assert_close (out, want, n, "add");
  cb_mul (out, a, b, n);
  for (size_t i = 0; i < n; i++)
    want[i] = (double) a[i] * b[i];
  assert_close (out, want, n, "mul");
  cb_scale (out, a, -0.37f, n);
  for (size_t i = 0; i < n; i++)
    want[i] = (double) a[i] * -0.37f;
  assert_close (out, want, n, "scale");
  cb_silu_mul (out, a, b, n);
  for (size_t i = 0; i < n; i++)
    want[i] = a[i] / (1 + exp (-(double) a[i])) * b[i];
  assert_close (out, want, n, "silu_mul");
  cb_add_bias (out, a, bias, T, C);
  for (size_t i = 0; i < n; i++)
    want[i] = (double) a[i] + bias[i % C];
  assert_close (out, want, n, "add_bias");
  /* a read as [C', T'] = [T, C]: bias per row of C values; take the first T entries of bias */
  cb_add_bias_channels (out, a, bias, T, C);
  for (size_t i = 0; i < n; i++)
    want[i] = (double) a[i] + bias[i / C];
  assert_close (out, want, n, "add_bias_channels");
  g_free (a), g_free (b), g_free (bias), g_free (out), g_free (want);
}
END_TEST

/* The lane functions themselves, at tighter tolerances than the ops built on them: e^x within
 * 3 ulp (relative 3.6e-7) over its whole range; erfc within 5e-7 absolute (A&S 7.1.26 promises
 * 1.5e-7, float rounding adds the rest); tanh within 2e-7 absolute; sin within 2e-7 absolute on
 * |x| <= 1000. */
START_TEST (test_vecmath)
{
  const int n = 200000;
  double worst_exp = 0, worst_erfc = 0, worst_tanh = 0, worst_sin = 0;
  for (int i = 0; i < n; i += CB_VEC_LANES) {
    float xe[CB_VEC_LANES], xf[CB_VEC_LANES], xt[CB_VEC_LANES], xs[CB_VEC_LANES];
    float ye[CB_VEC_LANES], yf[CB_VEC_LANES], yt[CB_VEC_LANES], ys[CB_VEC_LANES];
    for (int l = 0; l < CB_VEC_LANES; l++) {
      float u = (float) (i + l) / n;
      xe[l] = -87.0f + 175.0f * u;  /* exp on −87 .. 88 */
      xf[l] = 10.0f * u;            /* erfc on 0 .. 10 */
      xt[l] = 10.0f * u - 5.0f;     /* tanh on −5 .. 5 */
      xs[l] = 2000.0f * u - 1000.0f; /* sin on −1000 .. 1000 */
    }
    cb_vf_store (ye, cb_vf_exp (cb_vf_load (xe)));
    cb_vf_store (yf, cb_vf_erfc_abs (cb_vf_load (xf)));
    cb_vf_store (yt, cb_vf_tanh (cb_vf_load (xt)));
    cb_vf_store (ys, cb_vf_sin (cb_vf_load (xs)));
    for (int l = 0; l < CB_VEC_LANES; l++) {
      worst_exp = fmax (worst_exp, fabs (ye[l] - exp (xe[l])) / exp (xe[l]));
      worst_erfc = fmax (worst_erfc, fabs (yf[l] - erfc (xf[l])));
      worst_tanh = fmax (worst_tanh, fabs (yt[l] - tanh (xt[l])));
      worst_sin = fmax (worst_sin, fabs (ys[l] - sin (xs[l])));
    }
  }
  ck_assert_msg (worst_exp <= 3.6e-7, "exp relative error %g", worst_exp);
  ck_assert_msg (worst_erfc <= 5e-7, "erfc absolute error %g", worst_erfc);
  ck_assert_msg (worst_tanh <= 2e-7, "tanh absolute error %g", worst_tanh);
  ck_assert_msg (worst_sin <= 2e-7, "sin absolute error %g", worst_sin);

  /* the ends: exact 0 below the range (also −inf), finite above it */
  float edge[CB_VEC_LANES] = { -INFINITY, -1000.0f, -88.5f, 88.3f, 89.0f, 1000.0f, 0.0f, 1.0f };
  float out[CB_VEC_LANES];
  cb_vf_store (out, cb_vf_exp (cb_vf_load (edge)));
  ck_assert_float_eq (out[0], 0.0f);
  ck_assert_float_eq (out[1], 0.0f);
  ck_assert (out[2] >= 0.0f && out[2] < 1e-37f);
  ck_assert (isfinite (out[3]) && isfinite (out[4]) && isfinite (out[5]) && out[5] > 1e38f);
  ck_assert_float_eq (out[6], 1.0f);
  ck_assert_float_eq_tol (out[7], (float) M_E, 1e-6f);
}
END_TEST

/* The comparison itself must catch a wrong sign or a small shift. */
START_TEST (test_checker_detects_errors)
{
  float got[3] = { 1.0f, -2.0f, 3.0f };
  double want[3] = { 1.0, 2.0, 3.0 };
  ck_assert_int_eq (first_mismatch (got, want, 3, ATOL, RTOL), 1);
  want[1] = -2.0 + 1e-4;
  ck_assert_int_eq (first_mismatch (got, want, 3, ATOL, RTOL), 1);
  want[1] = -2.0;
  ck_assert_int_eq (first_mismatch (got, want, 3, ATOL, RTOL), -1);
  want[2] = NAN;
  ck_assert_int_eq (first_mismatch (got, want, 3, ATOL, RTOL), 2);
}
END_TEST

/* ---- tensor and arena ---- */

START_TEST (test_arena)
{
  GError *err = NULL;
  CbArena *arena = cb_arena_new (1000, &err);
  ck_assert_ptr_nonnull (arena);
  ck_assert_uint_eq (arena->size, 1024);

  float *a = cb_arena_alloc (arena, 3);
  float *b = cb_arena_alloc (arena, 17);
  ck_assert_ptr_nonnull (a);
  ck_assert_ptr_nonnull (b);
  ck_assert_uint_eq ((uintptr_t) a % CB_ARENA_ALIGN, 0);
  ck_assert_uint_eq ((uintptr_t) b % CB_ARENA_ALIGN, 0);
  ck_assert_ptr_eq ((guint8 *) b, (guint8 *) a + 64);
  memset (b, 0, 17 * sizeof (float));  /* writable (ASan checks the bounds) */

  gsize mark = cb_arena_mark (arena);
  ck_assert_uint_eq (mark, 64 + 128);
  float *c = cb_arena_alloc (arena, 200);  /* 832 bytes: exactly fills the arena */
  ck_assert_ptr_nonnull (c);
  ck_assert_ptr_null (cb_arena_alloc (arena, 1));  /* full */
  ck_assert_uint_eq (arena->high_water, 1024 + 64);
  cb_arena_reset (arena, mark);
  ck_assert_ptr_eq (cb_arena_alloc (arena, 200), c);  /* the same memory again */
  cb_arena_reset (arena, 0);
  ck_assert_ptr_eq (cb_arena_alloc (arena, 1), a);
  ck_assert_ptr_null (cb_arena_alloc (arena, G_MAXUINT64 / 2));  /* overflow, not a wrap */
  ck_assert_uint_eq (arena->high_water, G_MAXSIZE);

  CbTensor t;
  int64_t shape[3] = { 2, 3, 5 };
  cb_arena_reset (arena, 0);
  ck_assert (cb_arena_tensor (arena, &t, 3, shape, &err));
  ck_assert_uint_eq (cb_tensor_numel (&t), 30);
  ck_assert_ptr_eq (t.data, a);
  int64_t big[2] = { 100, 100 };
  ck_assert (!cb_arena_tensor (arena, &t, 2, big, &err));
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  cb_arena_free (arena);

  int64_t huge[4] = { 1ll << 40, 1ll << 40, 1, 1 }, neg[1] = { -1 };
  ck_assert (!cb_tensor_init (&t, NULL, 4, huge, &err));
  g_clear_error (&err);
  ck_assert (!cb_tensor_init (&t, NULL, 1, neg, &err));
  g_clear_error (&err);
  ck_assert (!cb_tensor_init (&t, NULL, 5, huge, &err));
  g_clear_error (&err);
  ck_assert (cb_tensor_init (&t, NULL, 0, NULL, &err));
  ck_assert_uint_eq (cb_tensor_numel (&t), 1);
  ck_assert_ptr_null (cb_arena_new (G_MAXSIZE, &err));
  g_clear_error (&err);
}
END_TEST

/* ---- the backend table ---- */

START_TEST (test_cpu_table)
{
  const CbOps *ops = cb_ops_cpu ();
  ck_assert_str_eq (ops->name, "cpu");
  /* Every member after the name is a function pointer: none may be missing. */
  const size_t n_fns = (sizeof (CbOps) - offsetof (CbOps, matmul)) / sizeof (void (*) (void));
  void (*const *fns) (void) = (void (*const *) (void)) ((const char *) ops + offsetof (CbOps, matmul));
  for (size_t i = 0; i < n_fns; i++)
    ck_assert_msg (fns[i] != NULL, "CbOps member %zu is NULL", i);
  ck_assert (ops->matmul == cb_matmul && ops->attention == cb_attention && ops->snake == cb_snake);
}
END_TEST

static Suite *
ops_suite (void)
{
  Suite *s = suite_create ("ops");
  TCase *tc = tcase_create ("cpu");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_parallel_for_covers_once);
  tcase_add_test (tc, test_pool_after_fork);
  tcase_add_test (tc, test_threads_honoured_and_deterministic);
  tcase_add_test (tc, test_concurrent_callers);
  tcase_add_test (tc, test_foreground_first);
  tcase_add_test (tc, test_matmul);
  tcase_add_test (tc, test_matmul_bf16);
  tcase_add_test (tc, test_f32_to_bf16);
  tcase_add_test (tc, test_norms);
  tcase_add_test (tc, test_softmax_and_transpose);
  tcase_add_test (tc, test_rope_llama3_frequencies);
  tcase_add_test (tc, test_rope_apply);
  tcase_add_test (tc, test_attention_causal);
  tcase_add_test (tc, test_attention_full);
  tcase_add_test (tc, test_conv1d);
  tcase_add_test (tc, test_conv_transpose1d);
  tcase_add_test (tc, test_activations);
  tcase_add_test (tc, test_snake);
  tcase_add_test (tc, test_elementwise);
  tcase_add_test (tc, test_vecmath);
  tcase_add_test (tc, test_checker_detects_errors);
  tcase_add_test (tc, test_arena);
  tcase_add_test (tc, test_cpu_table);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (ops_suite)
