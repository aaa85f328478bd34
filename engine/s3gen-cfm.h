/* s3gen-cfm.h — the S3Gen flow-matching decoder on the CPU: the estimator (upstream
 * s3gen/decoder.py ConditionalDecoder with matcha/decoder.py and matcha/transformer.py blocks;
 * spec §5.4) and the Euler solver with classifier-free guidance (flow_matching.py
 * CausalConditionalCFM.forward / ConditionalCFM.solve_euler; spec §5.5).
 *
 * The estimator is a one-level 1-D U-Net over T mel frames:
 *   input  [x ; mu ; spks repeated over T ; cond]                          (in_channels = 4 × 80)
 *   down   CausalResnetBlock1D(in → C), n_blocks transformer blocks, skip = h, CausalConv1d(C → C)
 *   mid    num_mid_blocks × [CausalResnetBlock1D(C → C), n_blocks transformer blocks]
 *   up     CausalResnetBlock1D([h ; skip] 2C → C), n_blocks transformer blocks, CausalConv1d(C → C)
 *   out    CausalBlock1D(C → C), Conv1d 1×1 (C → 80)
 * with a time embedding (SinusoidalPosEmb → Linear → SiLU → Linear) that every resnet adds through
 * Linear(Mish(temb)). Upstream builds a key mask from the frame mask with static_chunk_size 0, so
 * attention is full (bidirectional); with every frame valid (the only way upstream's inference
 * calls it) all mask multiplications are by 1 and are left out here.
 *
 * Activations are kept time-major ([frames, channels]) from the packed input to the final
 * projection: the causal convolutions become GEMMs over K shifted row windows of a zero-padded
 * buffer, the channel LayerNorm of CausalBlock1D a row LayerNorm, and the transformer blocks need
 * no transposes. The CFG pair's two rows are stacked as [2T, C] so every Linear is one GEMM.
 *
 * A CbS3GenCfm is immutable after cb_s3gen_cfm_new (apart from the frame-evaluation counter, which
 * is atomic), so streams may share one; each call takes all its buffers from the caller's arena. */
#pragma once

#include "config.h"
#include "safetensors.h"
#include "tensor.h"

G_BEGIN_DECLS

typedef struct _CbS3GenCfm CbS3GenCfm;

/* Views of flow.decoder.estimator.* in `st` (the causal convolution weights are reordered once
 * into owned buffers) and the time schedule. `cfg` and `st` must outlive the result. FALSE/NULL
 * with CB_ERROR_MISMATCH naming a missing or misshapen tensor, CB_ERROR_UNSUPPORTED for the
 * meanflow (Turbo) estimator. */
CbS3GenCfm  *cb_s3gen_cfm_new (const CbConfig *cfg, const CbSafetensors *st, GError **error);
void         cb_s3gen_cfm_free (CbS3GenCfm *cfm);

/* The BF16 weight option (the engine's CB_PRECISION_BF16): stores BF16 copies (round to nearest
 * even) of every transformer block's linears — to_q/k/v, to_out, the feed-forward pair: ~95 % of
 * the estimator's parameters — and uses them from then on; products and sums stay F32, the
 * convolutions F32. Returns the bytes of the copies (0 when already converted). Call before any
 * stream uses the model (the model is immutable afterwards). */
gsize        cb_s3gen_cfm_to_bf16 (CbS3GenCfm *cfm);
gboolean     cb_s3gen_cfm_is_bf16 (const CbS3GenCfm *cfm);

/* Floats of arena space one cb_s3gen_cfm_estimate of B rows × T frames needs, plus what
 * cb_s3gen_cfm_solve needs on top when B is 2 (size the arena with B = 2 for a solve). Allocation
 * rounding is included. 0 if B or T is out of range or the size overflows. */
guint64      cb_s3gen_cfm_scratch_floats (const CbS3GenCfm *cfm, int B, int T);

/* Steps of the solver (cfg->cfm.n_timesteps). */
int          cb_s3gen_cfm_n_steps (const CbS3GenCfm *cfm);
/* The t the solver feeds step k = 0..n (n + 1 values, the last 1), computed in float32 as upstream
 * does: 1 − cos(linspace(0, 1, n + 1) · 0.5 · π). */
const float *cb_s3gen_cfm_t_span (const CbS3GenCfm *cfm);

/* One estimator evaluation for B (1 or 2) independent rows over T frames, every frame valid:
 * x, mu, cond [B, 80, T]; t [B]; spks [B, 80]; out [B, 80, T] (channels-first, as upstream).
 * `scratch` must have cb_s3gen_cfm_scratch_floats (cfm, B, T) floats free; everything taken from
 * it is released before returning. Adds B·T to the frame-evaluation counter. */
void         cb_s3gen_cfm_estimate (CbS3GenCfm *cfm, CbArena *scratch, const float *x,
                                    const float *mu, const float *t, const float *spks,
                                    const float *cond, int B, int T, float *out);

/* Called by the solver with the state before step k (k = 0..n; k = n is the result), [80, T]. */
typedef void (*CbCfmTraceFn) (int k, const float *x, int T, void *user);

/* Upstream's CausalConditionalCFM.forward for one utterance, start noise given: x = z; for
 * k = 0..n−1: [v_c ; v_u] = estimate of the CFG batch (row 1 with mu, spks and cond zero),
 * v = (1 + cfg_rate)·v_c − cfg_rate·v_u, x += (t[k+1] − t[k])·v. z, mu, cond [80, T]; spks [80];
 * mel [80, T] receives every frame (the caller drops the prompt's). `scratch` must have
 * cb_s3gen_cfm_scratch_floats (cfm, 2, T) floats free.
 * `cancel` (may be NULL) is read before every evaluation: non-zero → FALSE with
 * CB_ERROR_CANCELLED (mel then holds a partial state). `trace` may be NULL.
 * Upstream's `temperature` is not applied: CausalConditionalCFM.forward draws z = randn_like(mu)
 * and never scales it. */
gboolean     cb_s3gen_cfm_solve (CbS3GenCfm *cfm, CbArena *scratch, const float *z,
                                 const float *mu, const float *spks, const float *cond, int T,
                                 float *mel, const gint *cancel, CbCfmTraceFn trace,
                                 void *trace_user, GError **error);

/* Estimator frame-evaluations so far (B·T summed over evaluations): the streaming work measure. */
guint64      cb_s3gen_cfm_frame_evals (const CbS3GenCfm *cfm);

G_END_DECLS
