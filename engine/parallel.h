/* parallel.h — the CPU backend's fork-join loop and the process-wide thread setting.
 *
 * cb_set_num_threads / cb_get_num_threads (declared in ops.h) size this pool; OpenBLAS runs single-
 * threaded inside it (cb_gemm splits products over the pool).
 * The pool is a handful of persistent pthreads (GThread) that wait on a condition variable; a
 * parallel loop splits [0, n) into at most num_threads contiguous parts, runs part 0 on the calling
 * thread and waits for the others. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Largest thread count honoured; larger requests are clamped. */
#define CB_MAX_THREADS 64

/* Work (values touched) below which a loop is not worth waking the pool for; ops derive their
 * min_grain from it. */
#define CB_PARALLEL_GRAIN 16384

/* Body of a parallel loop: process items [begin, end). */
typedef void (*CbParallelFn) (void *ctx, int64_t begin, int64_t end);

/* Run fn over [0, n) split into parts of at least min_grain items (so small loops stay on one
 * thread). Parts are disjoint and contiguous; results must not depend on how [0, n) is split. A call
 * made from inside a parallel body runs serially on that thread. Calls from several threads at once
 * are serialised. */
void cb_parallel_for (int64_t n, int64_t min_grain, CbParallelFn fn, void *ctx);

/* Mark the calling thread's loops as background work (TRUE) or not (FALSE, the default). The pool
 * runs one loop at a time for all threads; a background loop waits while a foreground caller is
 * waiting for the pool, so when two streams of work share the cores (T3 making tokens on its
 * worker thread, the reader turning them into audio) the one the listener waits for goes first,
 * loop by loop, and the other uses the pool whenever it is free. */
void cb_parallel_set_background (gboolean background);

/* A buffer of at least n floats private to the calling thread, grown (never shrunk) on demand and
 * freed when the thread exits; its contents are undefined and it is valid until the next call on
 * the same thread. Ops use it for scratch whose size depends on the call (attention scores), so a
 * steady stream of same-sized calls (decode steps) allocates nothing. NULL only if n overflows. */
float *cb_thread_scratch (size_t n);

/* Keep OpenBLAS on the calling thread (once per process; cheap after). Its own threads spin
 * (sched_yield) between calls, taking the cores our pool's loops (attention, norms, activations)
 * need: 10–16 % of an S3Gen estimator evaluation went there. One pool does all the threading. */
void cb_blas_single_threaded (void);

/* Worker threads the pool has running now (num_threads - 1 once a loop has run; for tests). */
int  cb_parallel_pool_workers (void);

G_END_DECLS
