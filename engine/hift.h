/* hift.h — the HiFT vocoder (upstream s3gen/hifigan.py HiFTGenerator, f0_predictor.py
 * ConvRNNF0Predictor, s3gen.py S3Token2Wav.hift_inference and trim_fade; spec §5.7, §5.8) on the CPU.
 *
 * mel [80, T] → F0 [T] (five conv + ELU layers, a linear classifier, abs) → the NSF source [L]
 * (L = T · samples_per_frame: harmonics of F0 with random initial phases and Gaussian noise, merged
 * by a 9 → 1 linear layer and tanh) → its STFT (n_fft 16, hop 4) → the generator (conv_pre, three
 * transposed-conv upsampling stages fused with the downsampled source spectrum, multi-kernel
 * residual blocks with Snake, conv_post) → magnitude and phase → iSTFT → waveform [L], clamped to
 * ±audio_limit. Every size comes from CbConfig.hift and CbConfig.f0_predictor.
 *
 * A CbHift holds what is built once (weight-norm folded weights, the STFT and iSTFT bases as
 * convolution kernels); every activation of a call comes from the caller's CbArena, sized with
 * cb_hift_scratch_floats. The functions do not allocate and only read the CbHift, so calls with
 * separate arenas may run on any threads at once (their parallel loops then take turns).
 *
 * Randomness is the caller's: SineGen's initial phases and its Gaussian noise come in as arrays, so
 * a test can pass upstream's draws and the engine its own generator's. */
#pragma once

#include "config.h"
#include "safetensors.h"
#include "tensor.h"

G_BEGIN_DECLS

typedef struct _CbHift CbHift;

/* The `mel2wav.` tensors of s3gen.safetensors (already validated against `cfg` by the engine; the
 * shapes are checked again here). NULL with CB_ERROR naming the first missing or misshapen tensor,
 * or CB_ERROR_UNSUPPORTED for a configuration upstream itself could not run. */
CbHift  *cb_hift_new (const CbConfig *cfg, const CbSafetensors *st, GError **error);
void     cb_hift_free (CbHift *hift);

/* prod(upsample_rates) · istft hop_len (480 for the released model). */
int      cb_hift_samples_per_frame (const CbHift *hift);
/* nb_harmonics + 1 (9): the rows of SineGen's phases and noise. */
int      cb_hift_n_harmonics (const CbHift *hift);
/* Floats an arena needs, beyond what it already holds, for any one call below on T mel frames
 * (cb_hift_inference, the largest, included). Grows linearly with T (about 0.5 MB per frame for the
 * 512-channel model, most of it the im2col of the last stage's residual convolutions). */
guint64  cb_hift_scratch_floats (const CbHift *hift, int T);

/* F0 in Hz (abs applied) from mel [80, T] (channels-first). T >= 1. */
void     cb_hift_f0 (CbHift *hift, CbArena *scratch, const float *mel, int T, float *f0);

/* The merged NSF source for f0[T] → source[L], L = T · samples_per_frame.
 * phases[n_harmonics]: SineGen's initial phases ψ as used (upstream's have index 0 set to 0).
 * noise: NULL (no noise) or [n_harmonics, L], the unscaled ε of upstream's randn_like, multiplied
 * here by nsf_sigma where voiced and nsf_alpha / 3 where not.
 * cycles0: NULL (= 0, as upstream) or [n_harmonics], the phase in cycles accumulated before sample 0;
 * cycles_end: NULL or receives [n_harmonics] the accumulated phase after the last sample, reduced
 * mod 1. Calling on [0, a) and then on [a, b) (whole frames) with cycles0 = the first call's
 * cycles_end equals one call on [0, b) up to float rounding of the phase (upstream rounds the
 * running sum to float, whose precision falls as the sum grows; a carried, reduced phase keeps it).
 * sine_waves: NULL or [n_harmonics, L] receives SineGen's output (harmonics · uv + noise). */
void     cb_hift_source (CbHift *hift, CbArena *scratch, const float *f0, int T,
                         const float *phases, const float *noise, const double *cycles0,
                         double *cycles_end, float *source, float *sine_waves);

/* How far the source may be from upstream's when it is made from our own F0 rather than
 * upstream's: SineGen integrates F0 over every sample before, so an F0 that is off by a relative
 * max error of f0_error (max|Δ| / max|F0|) moves the phase of harmonic k by up to
 * 2π · k · Σ|ΔF0| / sr, growing along the clip. Returns floor (the source stage's own tolerance)
 * plus the relative max change of the source from `f0` when every voiced frame is raised by
 * f0_error · max|F0| (the largest accumulated phase change such an error allows, to first order).
 * cache_source/n_cache as for cb_hift_inference. For golden comparisons; allocates. */
double   cb_hift_source_tolerance (CbHift *hift, CbArena *scratch, const float *f0, int T,
                                   const float *phases, const float *noise,
                                   const float *cache_source, int n_cache, double f0_error,
                                   double floor);

/* Optional captures for tests and dumps; each NULL or a buffer of the golden tensor's size:
 * conv_pre [base_channels, T]; stft_real, stft_imag [n_fft/2 + 1, L/hop + 1];
 * conv_post [n_fft + 2, L/hop + 1] (log-magnitude rows, then phase rows, before exp and sin). */
typedef struct {
  float *conv_pre;
  float *stft_real;
  float *stft_imag;
  float *conv_post;
} CbHiftTrace;

/* The generator: mel [80, T] and source [L] → wav [L] (after the ±audio_limit clamp; no fade).
 * trace may be NULL. */
void     cb_hift_decode (CbHift *hift, CbArena *scratch, const float *mel, int T,
                         const float *source, float *wav, CbHiftTrace *trace);

/* Upstream's S3Token2Wav.hift_inference (HiFTGenerator.inference): f0, the source (its first
 * n_cache samples then replaced by cache_source[n_cache], as upstream; 0 <= n_cache <= L), decode.
 * phases and noise as for cb_hift_source (the phase starts at 0 cycles, as upstream).
 * source_out [L] and f0_out [T] may be NULL. */
void     cb_hift_inference (CbHift *hift, CbArena *scratch, const float *mel, int T,
                            const float *phases, const float *noise, const float *cache_source,
                            int n_cache, float *wav, float *source_out, float *f0_out);

/* S3Token2Wav's trim_fade on the first samples of an utterance: sample_rate / 50 zeros, then a
 * raised-cosine rise over sample_rate / 50 samples ((cos θ + 1) / 2 with θ = linspace(π, 0), both
 * end points included, in float as torch computes it). wav[0 .. min(n, 2 · sample_rate / 50))
 * is multiplied by the curve. */
void     cb_hift_trim_fade (float *wav, int n, int sample_rate);

G_END_DECLS
