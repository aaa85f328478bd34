/* backend.h — the ops of engine/ops.h gathered in a table, so model code is written once and runs
 * on whichever backend the engine picked (CPU always; CUDA when a GPU and the module are present).
 *
 * Every member has exactly the signature of the ops.h function of the same name without the cb_
 * prefix. Buffers passed to a backend's ops live in that backend's memory. */
#pragma once

#include "ops.h"

G_BEGIN_DECLS

typedef struct CbOps {
  const char *name;  /* "cpu", "cuda" */

  void (*matmul) (float *out, const float *inp, const float *weight, const float *bias,
                  int T, int C, int OC);
  void (*matmul_acc) (float *out, const float *inp, const float *weight, const float *bias,
                      int T, int C, int OC);
  void (*matmul_bf16) (float *out, const float *inp, const guint16 *weight, const float *bias,
                       int T, int C, int OC);
  void (*matmul_bf16_acc) (float *out, const float *inp, const guint16 *weight,
                           const float *bias, int T, int C, int OC);

  void (*rmsnorm) (float *out, const float *inp, const float *weight, float eps, int T, int C);
  void (*layernorm) (float *out, const float *inp, const float *weight, const float *bias,
                     float eps, int T, int C);
  void (*layernorm_channels) (float *out, const float *inp, const float *weight, const float *bias,
                              float eps, int C, int T);
  void (*transpose) (float *out, const float *inp, int rows, int cols);
  void (*softmax) (float *out, const float *inp, int rows, int cols);

  void (*rope_apply) (float *x, const CbRopeTable *rope, int T, int H, int pos0);
  void (*attention_causal) (float *out, const float *q, const float *k, const float *v,
                            int T, int pos0, int H, int Hkv, int D, float scale,
                            const CbAttnCapture *capture);
  void (*attention) (float *out, const float *q, const float *k, const float *v,
                     int Tq, int L, int H, int Hkv, int D, float scale,
                     const float *bias, size_t bias_head_stride, size_t bias_row_stride,
                     const CbAttnCapture *capture);

  void (*conv1d) (float *out, const float *inp, const float *weight, const float *bias,
                  int C, int T, int OC, int K, int stride, int pad_left, int pad_right,
                  int dilation, int groups, float *col);
  void (*conv_transpose1d) (float *out, const float *inp, const float *weight, const float *bias,
                            int C, int T, int OC, int K, int stride, int padding, float *col);

  void (*silu) (float *out, const float *inp, size_t N);
  void (*gelu) (float *out, const float *inp, size_t N);
  void (*gelu_tanh) (float *out, const float *inp, size_t N);
  void (*mish) (float *out, const float *inp, size_t N);
  void (*leaky_relu) (float *out, const float *inp, size_t N, float slope);
  void (*elu) (float *out, const float *inp, size_t N, float alpha);
  void (*tanh) (float *out, const float *inp, size_t N);
  void (*sigmoid) (float *out, const float *inp, size_t N);
  void (*snake) (float *out, const float *inp, const float *alpha, int C, int T);

  void (*add) (float *out, const float *a, const float *b, size_t N);
  void (*mul) (float *out, const float *a, const float *b, size_t N);
  void (*scale) (float *out, const float *inp, float s, size_t N);
  void (*silu_mul) (float *out, const float *gate, const float *up, size_t N);
  void (*add_bias) (float *out, const float *inp, const float *bias, int T, int C);
  void (*add_bias_channels) (float *out, const float *inp, const float *bias, int C, int T);
} CbOps;

/* The CPU backend (engine/ops-cpu.c); a static table, never freed. */
const CbOps *cb_ops_cpu (void);

G_END_DECLS
