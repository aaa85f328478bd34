/* enginepool.c — see enginepool.h. */
#include "enginepool.h"

struct _CbsEngineHandle {
  char     *key;
  CbEngine *engine;
  guint     refs;     /* guarded by pool_lock */
  gboolean  retired;  /* guarded by pool_lock */
};

static GMutex pool_lock;
static GHashTable *pool;  /* key → CbsEngineHandle (live, not retired) */
static guint builds;

static char *
make_key (const CbEngineParams *p)
{
  char *where = p->model_location ? g_canonicalize_filename (p->model_location, NULL)
                                  : g_strdup ("(default search)");
  char *key = g_strdup_printf ("%s|precision=%d|threads=%d", where, (int) p->precision,
                               p->threads);
  g_free (where);
  return key;
}

CbsEngineHandle *
cbs_engine_pool_acquire (const CbEngineParams *params, gboolean *built, GError **error)
{
  if (built)
    *built = FALSE;
  char *key = make_key (params);
  g_mutex_lock (&pool_lock);
  if (!pool)
    pool = g_hash_table_new (g_str_hash, g_str_equal);
  CbsEngineHandle *h = g_hash_table_lookup (pool, key);
  if (h) {
    h->refs++;
    g_mutex_unlock (&pool_lock);
    g_free (key);
    return h;
  }
  /* built under the lock: a second element asking for the same engine meanwhile waits for this
   * one instead of building its own copy */
  CbEngine *e = cb_engine_new (params, error);
  if (e) {
    h = g_new0 (CbsEngineHandle, 1);
    h->key = key;
    h->engine = e;
    h->refs = 1;
    g_hash_table_insert (pool, h->key, h);
    builds++;
    if (built)
      *built = TRUE;
  } else {
    g_free (key);
  }
  g_mutex_unlock (&pool_lock);
  return h;
}

void
cbs_engine_pool_release (CbsEngineHandle *h)
{
  if (!h)
    return;
  g_mutex_lock (&pool_lock);
  gboolean last = --h->refs == 0;
  if (last && !h->retired)
    g_hash_table_remove (pool, h->key);
  g_mutex_unlock (&pool_lock);
  if (last) {
    cb_engine_free (h->engine);
    g_free (h->key);
    g_free (h);
  }
}

CbEngine *
cbs_engine_handle_engine (CbsEngineHandle *h)
{
  return h->engine;
}

gboolean
cbs_engine_handle_retired (CbsEngineHandle *h)
{
  g_mutex_lock (&pool_lock);
  gboolean r = h->retired;
  g_mutex_unlock (&pool_lock);
  return r;
}

void
cbs_engine_pool_recompile (CbsEngineHandle *h)
{
  g_mutex_lock (&pool_lock);
  if (!h->retired) {
    h->retired = TRUE;
    g_hash_table_remove (pool, h->key);
  }
  g_mutex_unlock (&pool_lock);
}

guint
cbs_engine_pool_builds (void)
{
  g_mutex_lock (&pool_lock);
  guint n = builds;
  g_mutex_unlock (&pool_lock);
  return n;
}
