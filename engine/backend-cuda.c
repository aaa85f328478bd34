/* backend-cuda.c — finding and opening the separately built CUDA module (see backend-cuda.h). */
#include "backend-cuda.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#ifndef CB_CUDA_MODULE_DIR
#define CB_CUDA_MODULE_DIR "/usr/local/lib/chatterboxsrc"
#endif

#define CB_CUDA_MODULE_NAME "libchatterbox-cuda.so"

static GMutex load_lock;
static const CbCudaApi *loaded_api;
static char *load_failure;

static const CbCudaApi *
try_module (const char *path, GString *why)
{
  void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    g_string_append_printf (why, "\n  %s: %s", path, dlerror ());
    return NULL;
  }
  CbCudaApiGetFunc get = (CbCudaApiGetFunc) dlsym (handle, "cb_cuda_api_get");
  if (!get) {
    g_string_append_printf (why, "\n  %s: no cb_cuda_api_get symbol", path);
    dlclose (handle);
    return NULL;
  }
  char reason[512] = "";
  const CbCudaApi *api = get (CB_CUDA_ABI_VERSION, reason, sizeof reason);
  if (!api) {
    g_string_append_printf (why, "\n  %s: %s", path, reason);
    /* Keep the module mapped: the CUDA runtime registers exit handlers that must stay valid. */
    return NULL;
  }
  return api;
}

const CbCudaApi *
cb_backend_cuda_load (GError **error)
{
  g_mutex_lock (&load_lock);
  if (!loaded_api && !load_failure) {
    GString *why = g_string_new (NULL);
    const char *env = g_getenv ("CHATTERBOX_CUDA_MODULE");
    /* $CHATTERBOX_CUDA_MODULE (tests, relocated installs) replaces the install location. */
    char *path = (env && *env) ? g_strdup (env) : g_build_filename (CB_CUDA_MODULE_DIR, CB_CUDA_MODULE_NAME, NULL);
    if (g_file_test (path, G_FILE_TEST_EXISTS))
      loaded_api = try_module (path, why);
    else
      g_string_append_printf (why, "\n  %s: not built or not installed", path);
    g_free (path);
    if (!loaded_api)
      load_failure = g_string_free (why, FALSE);
    else
      g_string_free (why, TRUE);
  }
  const CbCudaApi *api = loaded_api;
  if (!api)
    g_set_error (error, CB_ERROR, CB_ERROR_UNSUPPORTED, "CUDA backend not available:%s", load_failure);
  g_mutex_unlock (&load_lock);
  return api;
}

char *
cb_ops_missing (const CbOps *ops)
{
  /* The table is name + function pointers only; walk the pointer members by offset and name them
   * from this list, which follows the declaration order in backend.h. */
  static const char *const names[] = {
    "matmul", "matmul_acc", "matmul_bf16", "matmul_bf16_acc",
    "rmsnorm", "layernorm", "layernorm_channels", "transpose", "softmax",
    "rope_apply", "attention_causal", "attention", "conv1d", "conv_transpose1d", "silu", "gelu",
    "gelu_tanh", "mish", "leaky_relu", "elu", "tanh", "sigmoid", "snake", "add", "mul", "scale",
    "silu_mul", "add_bias", "add_bias_channels",
  };
  G_STATIC_ASSERT (G_N_ELEMENTS (names) * sizeof (void (*) (void)) == sizeof (CbOps) - offsetof (CbOps, matmul));
  GString *s = g_string_new (NULL);
  const char *base = (const char *) &ops->matmul;
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    void (*fn) (void);
    memcpy (&fn, base + i * sizeof fn, sizeof fn);
    if (!fn)
      g_string_append_printf (s, "%s%s", s->len ? ", " : "", names[i]);
  }
  return g_string_free (s, FALSE);
}
