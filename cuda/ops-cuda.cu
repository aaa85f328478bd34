// ops-cuda.cu — the CUDA backend: the operations of engine/ops.h on device buffers, gathered in a
// CbOps table and exported through cb_cuda_api_get() (engine/backend-cuda.h). Built into
// libchatterbox-cuda.so, which the engine dlopens; nothing here runs on machines without a GPU.
//
// Coverage: matmul (cuBLAS), norms, softmax, activations and elementwise ops. RoPE, attention,
// convolutions and Snake are not ported yet; their table entries are NULL and the engine lists them
// (cb_ops_missing) so no model code can call a missing op by accident.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "backend-cuda.h"
}

namespace {

cublasHandle_t g_blas;
CbCudaApi g_api;
CbOps g_ops;

// Reports the first CUDA error of a call site; ops cannot fail by contract, so errors are printed
// with file and line and the engine's synchronize() returns them.
cudaError_t g_first_error = cudaSuccess;
#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess && g_first_error == cudaSuccess) {                              \
      g_first_error = e_;                                                                 \
      fprintf (stderr, "chatterbox-cuda: %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString (e_)); \
    }                                                                                     \
  } while (0)

constexpr int kBlock = 256;
inline unsigned grid_for (size_t n) { return (unsigned) ((n + kBlock - 1) / kBlock); }

// ---- elementwise: one kernel template, one functor per activation ----
template <typename F>
__global__ void unary_kernel (float *out, const float *inp, size_t n, F f)
{
  size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = f (inp[i]);
}

template <typename F>
__global__ void binary_kernel (float *out, const float *a, const float *b, size_t n, F f)
{
  size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = f (a[i], b[i]);
}

template <typename F>
void launch_unary (float *out, const float *inp, size_t n, F f)
{
  if (n == 0)
    return;
  unary_kernel<<<grid_for (n), kBlock>>> (out, inp, n, f);
  CUDA_CHECK (cudaGetLastError ());
}

template <typename F>
void launch_binary (float *out, const float *a, const float *b, size_t n, F f)
{
  if (n == 0)
    return;
  binary_kernel<<<grid_for (n), kBlock>>> (out, a, b, n, f);
  CUDA_CHECK (cudaGetLastError ());
}

__device__ inline float sigmoidf_ (float x) { return 1.0f / (1.0f + expf (-x)); }
__device__ inline float softplusf_ (float x) { return x > 20.0f ? x : log1pf (expf (x)); }

struct Silu { __device__ float operator() (float x) const { return x * sigmoidf_ (x); } };
struct Gelu { __device__ float operator() (float x) const { return 0.5f * x * (1.0f + erff (x * 0.70710678118654752f)); } };
struct GeluTanh {
  __device__ float operator() (float x) const
  {
    return 0.5f * x * (1.0f + tanhf (0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
};
struct Mish { __device__ float operator() (float x) const { return x * tanhf (softplusf_ (x)); } };
struct Tanh { __device__ float operator() (float x) const { return tanhf (x); } };
struct Sigmoid { __device__ float operator() (float x) const { return sigmoidf_ (x); } };
struct LeakyRelu { float slope; __device__ float operator() (float x) const { return x >= 0.0f ? x : slope * x; } };
struct Elu { float alpha; __device__ float operator() (float x) const { return x > 0.0f ? x : alpha * expm1f (x); } };
struct Scale { float s; __device__ float operator() (float x) const { return s * x; } };
struct Add { __device__ float operator() (float a, float b) const { return a + b; } };
struct Mul { __device__ float operator() (float a, float b) const { return a * b; } };
struct SiluMul { __device__ float operator() (float g, float u) const { return g * sigmoidf_ (g) * u; } };

void silu (float *o, const float *i, size_t n) { launch_unary (o, i, n, Silu ()); }
void gelu (float *o, const float *i, size_t n) { launch_unary (o, i, n, Gelu ()); }
void gelu_tanh (float *o, const float *i, size_t n) { launch_unary (o, i, n, GeluTanh ()); }
void mish (float *o, const float *i, size_t n) { launch_unary (o, i, n, Mish ()); }
void tanh_ (float *o, const float *i, size_t n) { launch_unary (o, i, n, Tanh ()); }
void sigmoid (float *o, const float *i, size_t n) { launch_unary (o, i, n, Sigmoid ()); }
void leaky_relu (float *o, const float *i, size_t n, float s) { launch_unary (o, i, n, LeakyRelu {s}); }
void elu (float *o, const float *i, size_t n, float a) { launch_unary (o, i, n, Elu {a}); }
void scale (float *o, const float *i, float s, size_t n) { launch_unary (o, i, n, Scale {s}); }
void add (float *o, const float *a, const float *b, size_t n) { launch_binary (o, a, b, n, Add ()); }
void mul (float *o, const float *a, const float *b, size_t n) { launch_binary (o, a, b, n, Mul ()); }
void silu_mul (float *o, const float *g, const float *u, size_t n) { launch_binary (o, g, u, n, SiluMul ()); }

// ---- bias broadcast ----
// channels_last: inp is [T, C] and bias indexes the column; otherwise [C, T] and bias indexes the row.
__global__ void add_bias_kernel (float *out, const float *inp, const float *bias, int rows, int cols,
                                 bool bias_per_column)
{
  size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x;
  if (i < (size_t) rows * cols)
    out[i] = inp[i] + bias[bias_per_column ? i % cols : i / cols];
}

void add_bias (float *out, const float *inp, const float *bias, int T, int C)
{
  if ((size_t) T * C == 0)
    return;
  add_bias_kernel<<<grid_for ((size_t) T * C), kBlock>>> (out, inp, bias, T, C, true);
  CUDA_CHECK (cudaGetLastError ());
}

void add_bias_channels (float *out, const float *inp, const float *bias, int C, int T)
{
  if ((size_t) T * C == 0)
    return;
  add_bias_kernel<<<grid_for ((size_t) T * C), kBlock>>> (out, inp, bias, C, T, false);
  CUDA_CHECK (cudaGetLastError ());
}

// ---- matrix products (cuBLAS is column-major: out^T[OC,T] = W[OC,C] · inp^T[C,T]) ----
void matmul_beta (float *out, const float *inp, const float *weight, const float *bias, int T, int C,
                  int OC, float beta)
{
  const float alpha = 1.0f;
  cublasStatus_t st = cublasSgemm (g_blas, CUBLAS_OP_T, CUBLAS_OP_N, OC, T, C, &alpha, weight, C, inp, C,
                                   &beta, out, OC);
  if (st != CUBLAS_STATUS_SUCCESS && g_first_error == cudaSuccess) {
    g_first_error = cudaErrorUnknown;
    fprintf (stderr, "chatterbox-cuda: cublasSgemm failed (status %d)\n", (int) st);
  }
  if (bias)
    add_bias (out, out, bias, T, OC);
}

void matmul (float *o, const float *i, const float *w, const float *b, int T, int C, int OC) { matmul_beta (o, i, w, b, T, C, OC, 0.0f); }
void matmul_acc (float *o, const float *i, const float *w, const float *b, int T, int C, int OC) { matmul_beta (o, i, w, b, T, C, OC, 1.0f); }

// ---- row reductions: one block per row, statistics in F32 ----
// Reduces v over the block with op (identity for lanes without data) and returns the result to
// every thread: warp shuffles, then one warp over the per-warp partials.
struct SumOp { __device__ float operator() (float a, float b) const { return a + b; } };
struct MaxOp { __device__ float operator() (float a, float b) const { return fmaxf (a, b); } };

template <typename Op>
__device__ float block_reduce (float v, float *shared, float identity, Op op)
{
  for (int off = 16; off > 0; off >>= 1)
    v = op (v, __shfl_down_sync (0xffffffffu, v, off));
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  int nwarps = (blockDim.x + 31) >> 5;
  v = (threadIdx.x < nwarps) ? shared[threadIdx.x] : identity;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1)
      v = op (v, __shfl_down_sync (0xffffffffu, v, off));
  if (threadIdx.x == 0)
    shared[0] = v;
  __syncthreads ();
  float r = shared[0];
  __syncthreads ();
  return r;
}

__device__ float block_sum (float v, float *shared) { return block_reduce (v, shared, 0.0f, SumOp ()); }
__device__ float block_max (float v, float *shared) { return block_reduce (v, shared, -INFINITY, MaxOp ()); }

// mode 0: RMSNorm (weight), mode 1: LayerNorm (weight/bias optional)
__global__ void norm_rows_kernel (float *out, const float *inp, const float *weight, const float *bias,
                                  float eps, int C, int layernorm)
{
  __shared__ float shared[32];
  const float *x = inp + (size_t) blockIdx.x * C;
  float *y = out + (size_t) blockIdx.x * C;
  float mean = 0.0f;
  if (layernorm) {
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
      s += x[c];
    mean = block_sum (s, shared) / C;
  }
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float d = x[c] - mean;
    ss += d * d;
  }
  float inv = rsqrtf (block_sum (ss, shared) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float v = (x[c] - mean) * inv;
    if (weight)
      v *= weight[c];
    if (bias)
      v += bias[c];
    y[c] = v;
  }
}

void rmsnorm (float *out, const float *inp, const float *weight, float eps, int T, int C)
{
  if (T == 0)
    return;
  norm_rows_kernel<<<T, kBlock>>> (out, inp, weight, nullptr, eps, C, 0);
  CUDA_CHECK (cudaGetLastError ());
}

void layernorm (float *out, const float *inp, const float *weight, const float *bias, float eps, int T, int C)
{
  if (T == 0)
    return;
  norm_rows_kernel<<<T, kBlock>>> (out, inp, weight, bias, eps, C, 1);
  CUDA_CHECK (cudaGetLastError ());
}

__global__ void softmax_rows_kernel (float *out, const float *inp, int cols)
{
  __shared__ float shared[32];
  const float *x = inp + (size_t) blockIdx.x * cols;
  float *y = out + (size_t) blockIdx.x * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    m = fmaxf (m, x[c]);
  m = block_max (m, shared);
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    s += expf (x[c] - m);
  float inv = 1.0f / block_sum (s, shared);
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    y[c] = expf (x[c] - m) * inv;
}

void softmax (float *out, const float *inp, int rows, int cols)
{
  if (rows == 0)
    return;
  softmax_rows_kernel<<<rows, kBlock>>> (out, inp, cols);
  CUDA_CHECK (cudaGetLastError ());
}

__global__ void transpose_kernel (float *out, const float *inp, int rows, int cols)
{
  size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x;
  if (i < (size_t) rows * cols) {
    size_t r = i / cols, c = i % cols;
    out[c * rows + r] = inp[i];
  }
}

void transpose (float *out, const float *inp, int rows, int cols)
{
  if ((size_t) rows * cols == 0)
    return;
  transpose_kernel<<<grid_for ((size_t) rows * cols), kBlock>>> (out, inp, rows, cols);
  CUDA_CHECK (cudaGetLastError ());
}

// ---- memory ----
void *dev_alloc (size_t bytes)
{
  void *p = nullptr;
  return cudaMalloc (&p, bytes) == cudaSuccess ? p : nullptr;
}
void dev_free (void *p) { cudaFree (p); }
int dev_upload (void *dst, const void *src, size_t n) { return cudaMemcpy (dst, src, n, cudaMemcpyHostToDevice) != cudaSuccess; }
int dev_download (void *dst, const void *src, size_t n) { return cudaMemcpy (dst, src, n, cudaMemcpyDeviceToHost) != cudaSuccess; }
int dev_synchronize (void)
{
  cudaError_t e = cudaDeviceSynchronize ();
  if (e == cudaSuccess)
    e = g_first_error;
  g_first_error = cudaSuccess;
  return e != cudaSuccess;
}

}  // namespace

extern "C" __attribute__ ((visibility ("default"))) const CbCudaApi *
cb_cuda_api_get (int abi_version, char *why, size_t why_len)
{
  if (abi_version != CB_CUDA_ABI_VERSION) {
    snprintf (why, why_len, "module ABI %d, engine wants %d (rebuild)", CB_CUDA_ABI_VERSION, abi_version);
    return nullptr;
  }
  if (g_api.ops)
    return &g_api;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount (&count);
  if (e != cudaSuccess || count == 0) {
    snprintf (why, why_len, "no CUDA device (cudaGetDeviceCount: %s)",
              e != cudaSuccess ? cudaGetErrorString (e) : "0 devices");
    return nullptr;
  }
  cudaDeviceProp prop;
  if ((e = cudaSetDevice (0)) != cudaSuccess || (e = cudaGetDeviceProperties (&prop, 0)) != cudaSuccess) {
    snprintf (why, why_len, "CUDA device 0 unusable: %s", cudaGetErrorString (e));
    return nullptr;
  }
  if (cublasCreate (&g_blas) != CUBLAS_STATUS_SUCCESS) {
    snprintf (why, why_len, "cuBLAS initialisation failed on %s", prop.name);
    return nullptr;
  }
  g_ops.name = "cuda";
  g_ops.matmul = matmul;
  g_ops.matmul_acc = matmul_acc;
  g_ops.rmsnorm = rmsnorm;
  g_ops.layernorm = layernorm;
  g_ops.transpose = transpose;
  g_ops.softmax = softmax;
  g_ops.silu = silu;
  g_ops.gelu = gelu;
  g_ops.gelu_tanh = gelu_tanh;
  g_ops.mish = mish;
  g_ops.leaky_relu = leaky_relu;
  g_ops.elu = elu;
  g_ops.tanh = tanh_;
  g_ops.sigmoid = sigmoid;
  g_ops.add = add;
  g_ops.mul = mul;
  g_ops.scale = scale;
  g_ops.silu_mul = silu_mul;
  g_ops.add_bias = add_bias;
  g_ops.add_bias_channels = add_bias_channels;

  g_api.abi_version = CB_CUDA_ABI_VERSION;
  g_api.device_index = 0;
  snprintf (g_api.device_name, sizeof g_api.device_name, "%.200s (sm_%d%d, %.1f GiB)", prop.name, prop.major,
            prop.minor, prop.totalGlobalMem / 1073741824.0);
  g_api.alloc = dev_alloc;
  g_api.free = dev_free;
  g_api.upload = dev_upload;
  g_api.download = dev_download;
  g_api.synchronize = dev_synchronize;
  g_api.ops = &g_ops;
  return &g_api;
}
