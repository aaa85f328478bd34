/* ops.h — the numeric operations every backend implements, declared once.
 *
 * Each op is a plain function over float buffers with explicit sizes, in the manner of llm.c: the
 * CUDA backend provides the same names and argument order (plus a stream), and engine/backend.h
 * collects them in a table so model code is written once.
 *
 * Letters used in the comments:
 *   T  = rows / time steps (tokens, frames),   C  = channels (input features),
 *   OC = output channels,                      K  = convolution kernel size,
 *   H  = query heads, Hkv = key/value heads (H % Hkv == 0; grouped-query attention),
 *   D  = head dimension,                       L  = key rows (sequence length of the KV cache),
 *   N  = element count of a flat buffer.
 *
 * Layouts are contiguous row-major. Token-major data is [T, C]; convolution data is channels-first
 * [C, T] as in PyTorch. Weights keep PyTorch's layouts: Linear [OC, C], Conv1d [OC, C/groups, K],
 * ConvTranspose1d [C, OC, K]. Unless a comment says otherwise an op may run in place (out == inp)
 * where the shapes agree, and buffers must not otherwise overlap.
 *
 * Ops never fail: callers validate shapes when the model is built. Convolution scratch is the
 * caller's (the *_scratch_floats helpers); attention keeps its score block in a per-thread buffer
 * that grows to the largest call and is then reused, so a decode step allocates nothing. */
#pragma once

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

/* ---- threads ----
 * The size of the one thread pool every op runs on (OpenBLAS is kept single-threaded inside it);
 * n <= 0 means "all online CPUs". Results do not depend on the thread count (every output element
 * is computed by the same code, whichever thread runs it). */
void cb_set_num_threads (int n);
int  cb_get_num_threads (void);

/* ---- matrix products ----
 * out[T, OC] = inp[T, C] · weight[OC, C]^T (+ bias[OC] when bias != NULL). */
void cb_matmul (float *out, const float *inp, const float *weight, const float *bias,
                int T, int C, int OC);
/* Same product added to what out already holds: out[T, OC] += inp · weight^T (+ bias). */
void cb_matmul_acc (float *out, const float *inp, const float *weight, const float *bias,
                    int T, int C, int OC);

/* General product on row-major buffers: C[M, N] = alpha · op(A) · op(B) + beta · C, where op(A) is
 * A[M, K] (lda) or, with trans_a, A[K, M] transposed; op(B) is B[K, N] (ldb) or, with trans_b,
 * B[N, K] transposed; ldc is C's row stride. Large products are split over the thread pool by rows
 * (or columns) of C, each part one single-threaded BLAS call, so an element's value does not
 * depend on the thread count. Every matrix product of the CPU backend goes through it. */
void cb_gemm (gboolean trans_a, gboolean trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* BF16 weights (the upper 16 bits of an F32; half the bytes to stream per decode step): products
 * and sums in F32, otherwise as cb_matmul. */
void cb_matmul_bf16 (float *out, const float *inp, const guint16 *weight, const float *bias,
                     int T, int C, int OC);
void cb_matmul_bf16_acc (float *out, const float *inp, const guint16 *weight, const float *bias,
                         int T, int C, int OC);
/* Convert F32 to BF16 with round-to-nearest-even (NaN stays NaN): once, when weights are loaded. */
void cb_f32_to_bf16 (guint16 *out, const float *inp, size_t N);

/* ---- normalisations (statistics in F32, over channels) ----
 * RMSNorm over the last dim: out[t, :] = weight ⊙ inp[t, :] / sqrt(mean(inp[t, :]²) + eps). */
void cb_rmsnorm (float *out, const float *inp, const float *weight, float eps, int T, int C);
/* LayerNorm over the last dim of [T, C]; weight and bias may be NULL (1 and 0). */
void cb_layernorm (float *out, const float *inp, const float *weight, const float *bias,
                   float eps, int T, int C);
/* LayerNorm over the channel axis of channels-first data [C, T] (each frame t normalised across its
 * C values), as the S3Gen estimator's causal blocks do; weight/bias [C] may be NULL. */
void cb_layernorm_channels (float *out, const float *inp, const float *weight, const float *bias,
                            float eps, int C, int T);
/* out[cols, rows] = inp[rows, cols]^T (not in place). */
void cb_transpose (float *out, const float *inp, int rows, int cols);

/* ---- softmax ----
 * Row-wise softmax of [rows, cols] with max subtraction. */
void cb_softmax (float *out, const float *inp, int rows, int cols);

/* ---- rotary position embedding (rotate-half / NEOX layout: element i pairs with i + D/2) ---- */

/* Llama-3 frequency scaling (HF transformers' rope_type "llama3"). */
typedef struct {
  float factor;                  /* 8 for Llama 3 / Chatterbox T3 */
  float low_freq_factor;         /* 1 */
  float high_freq_factor;        /* 4 */
  int   original_max_positions;  /* original_max_position_embeddings, 8192 */
} CbRopeScaling;

typedef struct {
  int    head_dim;   /* D (even) */
  int    max_pos;    /* positions 0 .. max_pos-1 are tabulated */
  float *inv_freq;   /* (D/2) frequency of pair i, after scaling */
  float *cos;        /* (max_pos, D/2) */
  float *sin;        /* (max_pos, D/2) */
} CbRopeTable;

/* Build the cos/sin table once; scaling NULL means plain RoPE. FALSE/NULL with CB_ERROR on bad
 * arguments or an impossible size. */
CbRopeTable *cb_rope_table_build (double theta, int head_dim, int max_pos,
                                  const CbRopeScaling *scaling, GError **error);
void         cb_rope_table_free (CbRopeTable *rope);

/* Rotate x[T, H, D] in place; row t is at absolute position pos0 + t (< rope->max_pos). */
void cb_rope_apply (float *x, const CbRopeTable *rope, int T, int H, int pos0);

/* ---- attention ----
 * Optional capture of chosen heads' softmax probabilities (the T3 alignment guard reads three heads).
 * probs[i] receives head heads[i] as a [Tq, row_stride] matrix whose first L entries of each row are
 * the probabilities over key rows 0..L-1 (keys a causal row may not see hold 0). */
typedef struct {
  int          n_heads;     /* how many heads to capture (0: none) */
  const int   *heads;       /* (n_heads) query-head indices in [0, H) */
  float      **probs;       /* (n_heads) caller buffers of Tq * row_stride floats */
  int          row_stride;  /* floats between rows of probs[i]; >= L */
} CbAttnCapture;

/* Causal attention of T new query rows against a KV cache.
 * q[T, H, D] at positions pos0 .. pos0+T-1; k, v: cache [L, Hkv, D] with L = pos0 + T rows already
 * holding the new keys/values; query row t sees cache rows 0 .. pos0+t. out[T, H, D].
 * scale multiplies q·k (1/sqrt(D) usually). capture may be NULL. */
void cb_attention_causal (float *out, const float *q, const float *k, const float *v,
                          int T, int pos0, int H, int Hkv, int D, float scale,
                          const CbAttnCapture *capture);

/* Full (bidirectional) attention: q[Tq, H, D], k, v [L, Hkv, D], out[Tq, H, D].
 * bias (may be NULL) is added to the scaled scores: the score of head h, query i, key j gets
 * bias[h * bias_head_stride + i * bias_row_stride + j]; a stride of 0 broadcasts (a key padding
 * mask of L values uses both strides 0). A row whose keys are all −inf gets zero probabilities
 * (and a zero output) rather than NaN. capture may be NULL. */
void cb_attention (float *out, const float *q, const float *k, const float *v,
                   int Tq, int L, int H, int Hkv, int D, float scale,
                   const float *bias, size_t bias_head_stride, size_t bias_row_stride,
                   const CbAttnCapture *capture);

/* ---- convolutions (channels-first, zero padding) ----
 * Conv1d: out[OC, Tout] from inp[C, T], weight [OC, C/groups, K], bias [OC] or NULL.
 * Tout = (T + pad_left + pad_right - dilation*(K-1) - 1) / stride + 1 (see cb_conv1d_out_len).
 * Causal convolution: pad_left = dilation*(K-1), pad_right = 0.
 * col: scratch of cb_conv1d_scratch_floats() floats, or NULL to allocate one for this call.
 * Not in place. */
int    cb_conv1d_out_len (int T, int K, int stride, int pad_left, int pad_right, int dilation);
size_t cb_conv1d_scratch_floats (int C, int T, int K, int stride, int pad_left, int pad_right,
                                 int dilation, int groups);
void   cb_conv1d (float *out, const float *inp, const float *weight, const float *bias,
                  int C, int T, int OC, int K, int stride, int pad_left, int pad_right,
                  int dilation, int groups, float *col);

/* ConvTranspose1d: out[OC, Tout] from inp[C, T], weight [C, OC, K] (PyTorch layout), bias [OC] or
 * NULL; the full output of length (T-1)*stride + K is computed and `padding` samples are dropped
 * from each end: Tout = (T-1)*stride + K - 2*padding. col: scratch of
 * cb_conv_transpose1d_scratch_floats() floats, or NULL to allocate one. Not in place. */
int    cb_conv_transpose1d_out_len (int T, int K, int stride, int padding);
size_t cb_conv_transpose1d_scratch_floats (int T, int OC, int K);
void   cb_conv_transpose1d (float *out, const float *inp, const float *weight, const float *bias,
                            int C, int T, int OC, int K, int stride, int padding, float *col);

/* ---- activations (flat [N]; in place allowed) ---- */
void cb_silu (float *out, const float *inp, size_t N);
void cb_gelu (float *out, const float *inp, size_t N);        /* exact: x·Φ(x) with erf */
void cb_gelu_tanh (float *out, const float *inp, size_t N);   /* tanh approximation (gelu_new) */
void cb_mish (float *out, const float *inp, size_t N);        /* x·tanh(softplus(x)) */
void cb_leaky_relu (float *out, const float *inp, size_t N, float slope);
void cb_elu (float *out, const float *inp, size_t N, float alpha);
void cb_tanh (float *out, const float *inp, size_t N);
void cb_sigmoid (float *out, const float *inp, size_t N);
/* Snake on channels-first [C, T] with per-channel alpha[C] (linear scale):
 * x + sin²(alpha·x) / (alpha + 1e-9). */
void cb_snake (float *out, const float *inp, const float *alpha, int C, int T);

/* ---- elementwise ---- */
void cb_add (float *out, const float *a, const float *b, size_t N);       /* out = a + b */
void cb_mul (float *out, const float *a, const float *b, size_t N);       /* out = a ⊙ b */
void cb_scale (float *out, const float *inp, float s, size_t N);          /* out = s·inp */
void cb_silu_mul (float *out, const float *gate, const float *up, size_t N); /* SiLU(gate) ⊙ up */
/* out[T, C] = inp[T, C] + bias[C] broadcast over rows. */
void cb_add_bias (float *out, const float *inp, const float *bias, int T, int C);
/* out[C, T] = inp[C, T] + bias[C] broadcast over time (channels-first). */
void cb_add_bias_channels (float *out, const float *inp, const float *bias, int C, int T);

G_END_DECLS
