/* s3gen-golden.h — the tolerances S3Gen and HiFT are held to against upstream's golden files, in
 * one place for the Check suites and `chatterbox-cli --check-golden` (README-s3gen.md says what the
 * files hold). Errors are relative: max|ours − ref| / max|ref| (cb_rel_max_err). */
#pragma once

#define CB_GOLDEN_TOL_FLOW   1e-5 /* x-vector projection, encoder output, mu */
#define CB_GOLDEN_TOL_EST    1e-5 /* one estimator evaluation */
#define CB_GOLDEN_TOL_SOLVE  1e-4 /* Euler states and mels: ten steps, each a CFG pair of evaluations */
#define CB_GOLDEN_TOL_F0     1e-4
#define CB_GOLDEN_TOL_SOURCE 1e-4 /* from upstream's F0; from ours: cb_hift_source_tolerance */
#define CB_GOLDEN_TOL_STFT   1e-5
#define CB_GOLDEN_TOL_PRE    1e-5 /* HiFT conv_pre */
#define CB_GOLDEN_TOL_POST   1e-4 /* HiFT conv_post */
#define CB_GOLDEN_TOL_WAV    1e-3
#define CB_GOLDEN_TOL_FADE   1e-6 /* the trim-fade curve */
