#pragma once
#include "config.h"
#include "safetensors.h"
#include "tensor.h"
typedef struct _CbHift CbHift;
CbHift  *cb_hift_new (const CbConfig *cfg, const CbSafetensors *st, GError **error);
void     cb_hift_free (CbHift *hift);
int      cb_hift_samples_per_frame (const CbHift *hift);
int      cb_hift_n_harmonics (const CbHift *hift);
guint64  cb_hift_scratch_floats (const CbHift *hift, int T);
void     cb_hift_f0 (CbHift *hift, CbArena *scratch, const float *mel, int T, float *f0);
void     cb_hift_source (CbHift *hift, CbArena *scratch, const float *f0, int T, const float *phases,
                         const float *noise, const double *cycles0, double *cycles_end,
                         float *source, float *sine_waves);
typedef struct { float *conv_pre; float *stft_real; float *stft_imag; float *conv_post; } CbHiftTrace;
void     cb_hift_decode (CbHift *hift, CbArena *scratch, const float *mel, int T, const float *source,
                         float *wav, CbHiftTrace *trace);
void     cb_hift_inference (CbHift *hift, CbArena *scratch, const float *mel, int T, const float *phases,
                            const float *noise, const float *cache_source, int n_cache,
                            float *wav, float *source_out, float *f0_out);
void     cb_hift_trim_fade (float *wav, int n, int sample_rate);
