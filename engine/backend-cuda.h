/* backend-cuda.h — the CUDA backend, loaded at run time.
 *
 * The CUDA code (cuda/) is built into its own shared module, libchatterbox-cuda.so, which links
 * cudart and cuBLAS. The engine and the plugin never link those libraries: they dlopen the module
 * when a CUDA device is wanted, so the CPU path works on machines without the CUDA runtime, the
 * driver or a GPU. Any failure (module absent, runtime missing, no device — cudaGetDeviceCount
 * answers error 35 without a driver) is reported as "no CUDA" with the reason, and the CPU is used. */
#pragma once

#include "backend.h"
#include "cb-common.h"

G_BEGIN_DECLS

#define CB_CUDA_ABI_VERSION 1

/* What the module exports through cb_cuda_api_get(). ops members are NULL for operations the CUDA
 * backend does not provide yet; cb_cuda_ops_missing() lists them. */
typedef struct CbCudaApi {
  int abi_version;           /* CB_CUDA_ABI_VERSION */
  const CbOps *ops;          /* buffers passed to these live in device memory */
  char device_name[256];
  int device_index;
  void *(*alloc) (size_t bytes);                               /* NULL on failure */
  void  (*free) (void *ptr);
  int   (*upload) (void *dst_dev, const void *src_host, size_t bytes);   /* 0 on success */
  int   (*download) (void *dst_host, const void *src_dev, size_t bytes); /* 0 on success */
  int   (*synchronize) (void);                                           /* 0 on success */
} CbCudaApi;

/* Signature of the module's entry point "cb_cuda_api_get": fills `why` and returns NULL when no
 * usable device exists. */
typedef const CbCudaApi *(*CbCudaApiGetFunc) (int abi_version, char *why, size_t why_len);

/* Loads the module (from $CHATTERBOX_CUDA_MODULE, else the build tree, else the install dir) and
 * opens device 0. NULL with CB_ERROR_UNSUPPORTED and the reason when CUDA cannot be used. The module
 * stays loaded for the life of the process. */
const CbCudaApi *cb_backend_cuda_load (GError **error);

/* Names of the CbOps members a table leaves NULL, comma separated (free with g_free); "" if none. */
char *cb_ops_missing (const CbOps *ops);

G_END_DECLS
