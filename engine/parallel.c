/* parallel.c — a small persistent thread pool for the CPU ops, and the shared thread setting.
 *
 * Why our own pool rather than OpenMP or GThreadPool: OpenMP's runtime keeps its own spinning
 * threads beside OpenBLAS's (two pools fighting over two cores) and its thread count is another
 * global to keep in step; GThreadPool has no fork-join barrier, so every loop would need its own
 * counter and condition anyway. A fixed set of workers woken by one generation counter is ~100 lines,
 * has no spinning, and its size is exactly what cb_set_num_threads asked for.
 *
 * The pool is started lazily by the first parallel loop, in the process that runs it: threads do
 * not survive fork() (Check runs every test in a forked child), so a pool found to belong to another
 * process is forgotten and started afresh. (Forking while another thread is inside a parallel loop
 * is not supported: the child would inherit a held lock.) */
#include "parallel.h"
#include "ops.h"

#include <cblas.h>
#include <stdlib.h>
#include <unistd.h>

static struct {
  GMutex dispatch;    /* one parallel loop at a time */
  GMutex lock;        /* guards everything below */
  GCond  work_cond;   /* workers wait here for a new generation */
  GCond  done_cond;   /* the dispatcher waits here for pending == 0 */

  int      num_threads;   /* the setting; 0 until first set or used */
  int      n_workers;     /* threads running in process `owner` */
  pid_t    owner;
  GThread *workers[CB_MAX_THREADS];
  gboolean quit;

  guint64      generation;
  guint64      start_generation;  /* generation when the workers were started */
  CbParallelFn fn;
  void        *ctx;
  int64_t      n;
  int          n_parts;
  int          pending;
} pool;

static __thread gboolean in_parallel_body;
static __thread gboolean background_caller;

/* Loops of foreground callers go first: `waiting` counts foreground callers blocked on the
 * dispatch lock, and a background caller takes the pool only while it is 0 (checked again once it
 * holds the lock, and given back when a foreground caller arrived meanwhile). */
static struct {
  GMutex lock;
  GCond  idle;     /* broadcast when waiting drops to 0 */
  int    waiting;
} foreground;

static void
dispatch_lock (void)
{
  if (!background_caller) {
    g_mutex_lock (&foreground.lock);
    foreground.waiting++;
    g_mutex_unlock (&foreground.lock);
    g_mutex_lock (&pool.dispatch);
    g_mutex_lock (&foreground.lock);
    if (--foreground.waiting == 0)
      g_cond_broadcast (&foreground.idle);
    g_mutex_unlock (&foreground.lock);
    return;
  }
  for (;;) {
    g_mutex_lock (&foreground.lock);
    while (foreground.waiting > 0)
      g_cond_wait (&foreground.idle, &foreground.lock);
    g_mutex_unlock (&foreground.lock);
    g_mutex_lock (&pool.dispatch);
    g_mutex_lock (&foreground.lock);
    const gboolean clear = foreground.waiting == 0;
    g_mutex_unlock (&foreground.lock);
    if (clear)
      return;
    g_mutex_unlock (&pool.dispatch);
  }
}

void
cb_parallel_set_background (gboolean background)
{
  background_caller = background;
}

typedef struct {
  size_t n;
  float *data;
} Scratch;

static void
scratch_free (gpointer p)
{
  Scratch *s = p;
  free (s->data);
  g_free (s);
}

static GPrivate thread_scratch = G_PRIVATE_INIT (scratch_free);

float *
cb_thread_scratch (size_t n)
{
  Scratch *s = g_private_get (&thread_scratch);
  if (!s) {
    s = g_new0 (Scratch, 1);
    g_private_set (&thread_scratch, s);
  }
  if (n > s->n) {
    if (n > G_MAXSIZE / sizeof (float))
      return NULL;
    /* 64-byte alignment for the GEMM kernels; the old contents need not survive */
    void *block = NULL;
    if (posix_memalign (&block, 64, n * sizeof (float)) != 0)
      g_error ("cb_thread_scratch: cannot allocate %zu floats", n);
    free (s->data);
    s->data = block;
    s->n = n;
  }
  return s->data;
}

static void
run_part (CbParallelFn fn, void *ctx, int64_t n, int n_parts, int part)
{
  int64_t begin = n * part / n_parts, end = n * (part + 1) / n_parts;
  if (begin < end)
    fn (ctx, begin, end);
}

static gpointer
worker_main (gpointer data)
{
  int index = GPOINTER_TO_INT (data);  /* 1 .. n_workers; part 0 is the dispatcher's */
  guint64 seen = 0;

  in_parallel_body = TRUE;
  g_mutex_lock (&pool.lock);
  /* Not pool.generation: the first loop may already have been dispatched before we got here. */
  seen = pool.start_generation;
  for (;;) {
    while (!pool.quit && pool.generation == seen)
      g_cond_wait (&pool.work_cond, &pool.lock);
    if (pool.quit)
      break;
    seen = pool.generation;
    CbParallelFn fn = pool.fn;
    void *ctx = pool.ctx;
    int64_t n = pool.n;
    int n_parts = pool.n_parts;
    g_mutex_unlock (&pool.lock);

    if (index < n_parts)
      run_part (fn, ctx, n, n_parts, index);

    g_mutex_lock (&pool.lock);
    if (--pool.pending == 0)
      g_cond_signal (&pool.done_cond);
  }
  g_mutex_unlock (&pool.lock);
  return NULL;
}

static int
default_threads (void)
{
  return CLAMP ((int) g_get_num_processors (), 1, CB_MAX_THREADS);
}

/* Called with dispatch held. */
static void
stop_workers (void)
{
  if (pool.owner != getpid ()) {
    /* Inherited over fork(): the threads do not exist in this process, so they can be neither
     * joined nor freed; their handles are parked where they stay reachable. */
    static GPtrArray *inherited;
    if (pool.n_workers > 0 && !inherited)
      inherited = g_ptr_array_new ();
    for (int i = 0; i < pool.n_workers; i++)
      g_ptr_array_add (inherited, pool.workers[i]);
    pool.n_workers = 0;
    return;
  }
  g_mutex_lock (&pool.lock);
  pool.quit = TRUE;
  g_cond_broadcast (&pool.work_cond);
  g_mutex_unlock (&pool.lock);
  for (int i = 0; i < pool.n_workers; i++)
    g_thread_join (pool.workers[i]);
  pool.n_workers = 0;
  pool.quit = FALSE;
}

/* Called with dispatch held: make the running workers match the setting. */
static void
ensure_workers (void)
{
  if (pool.num_threads == 0)
    pool.num_threads = default_threads ();
  if (pool.owner == getpid () && pool.n_workers == pool.num_threads - 1)
    return;
  stop_workers ();
  pool.owner = getpid ();
  g_mutex_lock (&pool.lock);
  pool.pending = 0;
  pool.start_generation = pool.generation;
  g_mutex_unlock (&pool.lock);
  for (int i = 0; i < pool.num_threads - 1; i++)
    pool.workers[i] = g_thread_new ("cb-ops", worker_main, GINT_TO_POINTER (i + 1));
  pool.n_workers = pool.num_threads - 1;
}

static gpointer
set_blas_single_threaded (gpointer unused)
{
  openblas_set_num_threads (1);
  return NULL;
}

void
cb_blas_single_threaded (void)
{
  static GOnce once = G_ONCE_INIT;
  g_once (&once, set_blas_single_threaded, NULL);
}

void
cb_set_num_threads (int n)
{
  cb_blas_single_threaded ();
  n = n <= 0 ? default_threads () : MIN (n, CB_MAX_THREADS);
  g_mutex_lock (&pool.dispatch);
  pool.num_threads = n;
  g_mutex_unlock (&pool.dispatch);
}

int
cb_get_num_threads (void)
{
  g_mutex_lock (&pool.dispatch);
  int n = pool.num_threads ? pool.num_threads : default_threads ();
  g_mutex_unlock (&pool.dispatch);
  return n;
}

int
cb_parallel_pool_workers (void)
{
  g_mutex_lock (&pool.dispatch);
  int n = pool.owner == getpid () ? pool.n_workers : 0;
  g_mutex_unlock (&pool.dispatch);
  return n;
}

void
cb_parallel_for (int64_t n, int64_t min_grain, CbParallelFn fn, void *ctx)
{
  if (n <= 0)
    return;
  if (min_grain < 1)
    min_grain = 1;
  int64_t max_parts = (n + min_grain - 1) / min_grain;
  if (in_parallel_body || max_parts < 2) {
    fn (ctx, 0, n);
    return;
  }

  dispatch_lock ();
  ensure_workers ();
  int n_parts = (int) MIN (max_parts, (int64_t) pool.num_threads);
  if (n_parts < 2) {
    g_mutex_unlock (&pool.dispatch);
    fn (ctx, 0, n);
    return;
  }

  g_mutex_lock (&pool.lock);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n;
  pool.n_parts = n_parts;
  pool.pending = pool.n_workers;
  pool.generation++;
  g_cond_broadcast (&pool.work_cond);
  g_mutex_unlock (&pool.lock);

  in_parallel_body = TRUE;
  run_part (fn, ctx, n, n_parts, 0);
  in_parallel_body = FALSE;

  g_mutex_lock (&pool.lock);
  while (pool.pending > 0)
    g_cond_wait (&pool.done_cond, &pool.lock);
  g_mutex_unlock (&pool.lock);
  g_mutex_unlock (&pool.dispatch);
}
