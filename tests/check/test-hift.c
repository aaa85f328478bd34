/* The HiFT vocoder against upstream (tests/data/golden/hift, README-s3gen.md "stage hift"): each
 * stage fed with upstream's inputs (F0 from the mel; SineGen and the merged source from upstream's
 * F0 with its phases and noise injected; STFT, conv_pre, conv_post and the waveform from upstream's
 * mel and source), then the whole hift_inference chain from the mel alone, the e2e case's trim_fade;
 * plus streaming continuity of the source, a one-frame mel, scratch sizing and a checkpoint with a
 * tensor missing. Errors are relative: max|ours − ref| / max|ref|. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#include "cb-check.h"
#include "cb-golden-model.h"
#include "config.h"
#include "hift.h"
#include "s3gen-golden.h"
#include "safetensors.h"


static CbConfig       cfg;
static CbSafetensors *weights;
static CbHift        *hift;

static void
setup (void)
{
  GError *err = NULL;
  weights = cb_test_golden_model (&cfg, "s3gen.safetensors");
  hift = cb_hift_new (&cfg, weights, &err);
  ck_assert_msg (hift != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  cb_hift_free (hift);
  cb_safetensors_free (weights);
}

/* A golden case: its tensors as F32 (copies kept in `owned`). */
typedef struct {
  CbSafetensors *st;
  GPtrArray     *owned;
} Golden;

static const float *
golden_get (Golden *g, const char *name, guint64 numel)
{
  const CbTensorInfo *info = cb_safetensors_find (g->st, name);
  ck_assert_msg (info != NULL, "%s missing from %s", name, cb_safetensors_path (g->st));
  ck_assert_msg (info->numel == numel, "%s: %" G_GUINT64_FORMAT " values, expected %"
                 G_GUINT64_FORMAT, name, info->numel, numel);
  float *owned = NULL;
  GError *err = NULL;
  const float *p = cb_safetensors_get_f32 (g->st, name, info->ndim, info->shape, &owned, &err);
  ck_assert_msg (p != NULL, "%s", err ? err->message : "");
  if (owned)
    g_ptr_array_add (g->owned, owned);
  return p;
}

static Golden
golden_open (const char *name)
{
  char *rel = g_strdup_printf ("hift/%s.safetensors", name);
  char *path = cb_test_golden_path (rel);
  GError *err = NULL;
  Golden g = { cb_safetensors_open (path, &err), g_ptr_array_new_with_free_func (g_free) };
  ck_assert_msg (g.st != NULL, "%s", err ? err->message : "");
  g_free (path);
  g_free (rel);
  return g;
}

static void
golden_close (Golden *g)
{
  g_ptr_array_unref (g->owned);
  cb_safetensors_free (g->st);
}

/* An arena of exactly cb_hift_scratch_floats(T): a sizing bug shows as a refused call. */
static CbArena *
exact_arena (int T)
{
  GError *err = NULL;
  CbArena *a = cb_arena_new (cb_hift_scratch_floats (hift, T) * sizeof (float), &err);
  ck_assert_msg (a != NULL, "%s", err ? err->message : "");
  return a;
}

static void
check_scratch (const CbArena *a, const char *what)
{
  ck_assert_msg (a->high_water <= a->size, "%s: high water %" G_GSIZE_FORMAT " > arena %"
                 G_GSIZE_FORMAT, what, a->high_water, a->size);
  ck_assert_int_eq (a->used, 0);
}

#define CHECK(label, err, tol)                                                           \
  do {                                                                                   \
    printf ("  %-22s %.2e (tol %.2g)\n", label, err, tol), fflush (stdout);             \
    ck_assert_msg ((err) <= (tol), "%s %s: rel err %.3e > %.3g", name, label, err, tol); \
  } while (0)

static const char *const cases[] = {
  "e2e_tokens_0008", "synthetic_mel_0024", "cache_chunk_0", "cache_chunk_1",
};

START_TEST (test_golden_case)
{
  const char *name = cases[_i];
  Golden g = golden_open (name);
  const CbTensorInfo *mel_info = cb_safetensors_find (g.st, "input.mel");
  ck_assert (mel_info != NULL && mel_info->ndim == 3);
  const int T = (int) mel_info->shape[2], H = cb_hift_n_harmonics (hift);
  const int spf = cb_hift_samples_per_frame (hift), L = T * spf, nfr = L / 4 + 1;
  const int nb = cfg.hift.istft_n_fft / 2 + 1, nspec = cfg.hift.istft_n_fft + 2;
  const int C0 = cfg.hift.base_channels;
  ck_assert_int_eq (nfr, L / cfg.hift.istft_hop_len + 1);

  const float *mel = golden_get (&g, "input.mel", (guint64) 80 * T);
  const float *phases = golden_get (&g, "rand.sine_phase", H);
  const float *noise = golden_get (&g, "rand.sine_noise", (guint64) H * L);
  const float *ref_f0 = golden_get (&g, "hift.f0", T);
  const float *ref_source = golden_get (&g, "hift.source", L);
  const float *ref_wav = golden_get (&g, cb_safetensors_find (g.st, "out.wav_before_fade")
                                     ? "out.wav_before_fade" : "out.wav", L);
  const CbTensorInfo *cache_info = cb_safetensors_find (g.st, "input.cache_source");
  const int n_cache = cache_info ? (int) cache_info->numel : 0;
  const float *cache = n_cache ? golden_get (&g, "input.cache_source", n_cache) : NULL;
  printf ("hift %s: T %d, L %d, cache %d\n", name, T, L, n_cache);

  CbArena *arena = exact_arena (T);
  float *f0 = g_new (float, T), *source = g_new (float, L), *sine = g_new (float, (gsize) H * L);
  float *wav = g_new (float, L);

  /* F0 from the mel */
  cb_hift_f0 (hift, arena, mel, T, f0);
  CHECK ("hift.f0", cb_rel_max_err (f0, ref_f0, T), CB_GOLDEN_TOL_F0);

  /* SineGen and the merged source from upstream's F0 */
  cb_hift_source (hift, arena, ref_f0, T, phases, noise, NULL, NULL, source, sine);
  if (cb_safetensors_find (g.st, "hift.sine_waves"))
    CHECK ("hift.sine_waves", cb_rel_max_err (sine, golden_get (&g, "hift.sine_waves", (guint64) H * L),
                                       (size_t) H * L), CB_GOLDEN_TOL_SOURCE);
  if (n_cache)
    memcpy (source, cache, sizeof (float) * n_cache);
  CHECK ("hift.source", cb_rel_max_err (source, ref_source, L), CB_GOLDEN_TOL_SOURCE);

  /* the generator from upstream's mel and source */
  float *pre = g_new (float, (gsize) C0 * T), *re = g_new (float, (gsize) nb * nfr);
  float *im = g_new (float, (gsize) nb * nfr), *post = g_new (float, (gsize) nspec * nfr);
  CbHiftTrace trace = { pre, re, im, post };
  cb_hift_decode (hift, arena, mel, T, ref_source, wav, &trace);
  CHECK ("hift.source_stft_real",
         cb_rel_max_err (re, golden_get (&g, "hift.source_stft_real", (guint64) nb * nfr),
                  (size_t) nb * nfr), CB_GOLDEN_TOL_STFT);
  CHECK ("hift.source_stft_imag",
         cb_rel_max_err (im, golden_get (&g, "hift.source_stft_imag", (guint64) nb * nfr),
                  (size_t) nb * nfr), CB_GOLDEN_TOL_STFT);
  CHECK ("hift.conv_pre", cb_rel_max_err (pre, golden_get (&g, "hift.conv_pre", (guint64) C0 * T),
                                   (size_t) C0 * T), CB_GOLDEN_TOL_PRE);
  CHECK ("hift.conv_post",
         cb_rel_max_err (post, golden_get (&g, "hift.conv_post", (guint64) nspec * nfr),
                  (size_t) nspec * nfr), CB_GOLDEN_TOL_POST);
  CHECK ("wav (decode)", cb_rel_max_err (wav, ref_wav, L), CB_GOLDEN_TOL_WAV);

  /* the whole chain from the mel alone */
  memset (wav, 0, sizeof (float) * L);
  cb_hift_inference (hift, arena, mel, T, phases, noise, cache, n_cache, wav, source, f0);
  CHECK ("f0 (inference)", cb_rel_max_err (f0, ref_f0, T), CB_GOLDEN_TOL_F0);
  /* from our own F0: SineGen integrates F0 along the clip, so the source may be off by what an F0
   * error of the measured size can move it (cb_hift_source_tolerance), and no more */
  const double tol_chained = cb_hift_source_tolerance (hift, arena, ref_f0, T, phases, noise, cache,
                                                       n_cache, cb_rel_max_err (f0, ref_f0, T),
                                                       CB_GOLDEN_TOL_SOURCE);
  CHECK ("source (inference)", cb_rel_max_err (source, ref_source, L), tol_chained);
  CHECK ("wav (inference)", cb_rel_max_err (wav, ref_wav, L), CB_GOLDEN_TOL_WAV);

  if (cb_safetensors_find (g.st, "s3gen.trim_fade")) {
    const int n_fade = 2 * cfg.hift.sampling_rate / 50;
    float *curve = g_new (float, n_fade);
    for (int i = 0; i < n_fade; i++)
      curve[i] = 1.0f;
    cb_hift_trim_fade (curve, n_fade, cfg.hift.sampling_rate);
    const float *ref_curve = golden_get (&g, "s3gen.trim_fade", n_fade);
    CHECK ("s3gen.trim_fade", cb_rel_max_err (curve, ref_curve, n_fade), CB_GOLDEN_TOL_FADE);
    cb_hift_trim_fade (wav, L, cfg.hift.sampling_rate);
    CHECK ("out.wav (faded)", cb_rel_max_err (wav, golden_get (&g, "out.wav", L), L), CB_GOLDEN_TOL_WAV);
    g_free (curve);
  }
  check_scratch (arena, name);

  cb_arena_free (arena);
  g_free (pre);
  g_free (re);
  g_free (im);
  g_free (post);
  g_free (f0);
  g_free (source);
  g_free (sine);
  g_free (wav);
  golden_close (&g);
}
END_TEST

/* A golden comparison that must fail: a changed F0 must show in the source and the waveform. */
START_TEST (test_golden_detects_difference)
{
  Golden g = golden_open ("synthetic_mel_0024");
  const int T = 24, H = cb_hift_n_harmonics (hift), L = T * cb_hift_samples_per_frame (hift);
  const float *phases = golden_get (&g, "rand.sine_phase", H);
  const float *noise = golden_get (&g, "rand.sine_noise", (guint64) H * L);
  const float *ref_f0 = golden_get (&g, "hift.f0", T);
  float *f0 = g_memdup2 (ref_f0, sizeof (float) * T), *source = g_new (float, L);
  CbArena *arena = exact_arena (T);
  f0[5] *= 1.01f;
  cb_hift_source (hift, arena, f0, T, phases, noise, NULL, NULL, source, NULL);
  double e = cb_rel_max_err (source, golden_get (&g, "hift.source", L), L);
  printf ("hift source with one F0 frame 1%% off: rel err %.2e\n", e);
  ck_assert (e > 10 * CB_GOLDEN_TOL_SOURCE);
  /* every harmonic's phase 0.05 rad off (a random model may weigh any one harmonic lightly) */
  float *ph = g_memdup2 (phases, sizeof (float) * H);
  for (int h = 0; h < H; h++)
    ph[h] += 0.05f;
  cb_hift_source (hift, arena, ref_f0, T, ph, noise, NULL, NULL, source, NULL);
  e = cb_rel_max_err (source, golden_get (&g, "hift.source", L), L);
  printf ("hift source with every phase 0.05 off: rel err %.2e\n", e);
  ck_assert (e > 10 * CB_GOLDEN_TOL_SOURCE);
  cb_arena_free (arena);
  g_free (ph);
  g_free (f0);
  g_free (source);
  golden_close (&g);
}
END_TEST

static double
max_abs_diff (const float *a, const float *b, size_t n)
{
  double d = 0;
  for (size_t i = 0; i < n; i++)
    d = MAX (d, fabs ((double) a[i] - b[i]));
  return d;
}

/* Runs the source on frames [0, a) then [a, T) with the phase carried and compares with one call
 * on [0, T): the largest absolute differences of SineGen's output and of the source, and of the
 * final phase in cycles. */
static void
source_in_two (const float *f0, int T, int a, const float *phases, double *err_sine,
               double *err_source, double *err_cycles)
{
  const int H = cb_hift_n_harmonics (hift), spf = cb_hift_samples_per_frame (hift);
  const int L = T * spf, La = a * spf;
  float *one = g_new (float, L), *two = g_new (float, L);
  float *sine1 = g_new (float, (gsize) H * L), *sine_a = g_new (float, (gsize) H * La);
  float *sine_b = g_new (float, (gsize) H * (L - La));
  double *mid = g_new (double, H), *end1 = g_new (double, H), *end2 = g_new (double, H);
  CbArena *arena = exact_arena (T);
  cb_hift_source (hift, arena, f0, T, phases, NULL, NULL, end1, one, sine1);
  cb_hift_source (hift, arena, f0, a, phases, NULL, NULL, mid, two, sine_a);
  cb_hift_source (hift, arena, f0 + a, T - a, phases, NULL, mid, end2, two + La, sine_b);
  *err_source = max_abs_diff (two, one, L);
  *err_sine = 0;
  *err_cycles = 0;
  for (int h = 0; h < H; h++) {
    *err_sine = MAX (*err_sine, max_abs_diff (sine_a + (gsize) h * La, sine1 + (gsize) h * L, La));
    *err_sine = MAX (*err_sine, max_abs_diff (sine_b + (gsize) h * (L - La),
                                              sine1 + (gsize) h * L + La, L - La));
    double d = fabs (end1[h] - end2[h]);
    *err_cycles = MAX (*err_cycles, MIN (d, 1 - d));
  }
  cb_arena_free (arena);
  g_free (one);
  g_free (two);
  g_free (sine1);
  g_free (sine_a);
  g_free (sine_b);
  g_free (mid);
  g_free (end1);
  g_free (end2);
}

START_TEST (test_source_streaming)
{
  const int H = cb_hift_n_harmonics (hift), spf = cb_hift_samples_per_frame (hift);
  const double amp = cfg.hift.nsf_alpha, sr = cfg.hift.sampling_rate;
  float *phases = g_new (float, H);
  for (int h = 0; h < H; h++)
    phases[h] = h == 0 ? 0.0f : (float) (-G_PI + 2 * G_PI * h / (H + 1));
  /* the source merges the harmonics with l_linear, then tanh (slope <= 1) */
  GError *err = NULL;
  float *owned = NULL;
  const float *w = cb_safetensors_get_f32 (weights, "mel2wav.m_source.l_linear.weight", 2,
                                           (int64_t[]) { 1, H }, &owned, &err);
  ck_assert_msg (w != NULL, "%s", err ? err->message : "");
  double w_sum = 0;
  for (int h = 0; h < H; h++)
    w_sum += fabs (w[h]);
  g_free (owned);

  /* F0s whose per-sample steps (h + 1)·f0 / 24000 are dyadic: every sum is exact, so the carried
   * phase must reproduce the single call bit for bit (voiced, unvoiced and zero frames). */
  const float dyadic[12] = { 187.5f, 93.75f, 375.0f, 0.0f, 46.875f, 187.5f,
                             5.859375f, 375.0f, 750.0f, 93.75f, 0.0f, 187.5f };
  double es, eo, ec;
  for (int a = 1; a < 12; a += 5) {
    source_in_two (dyadic, 12, a, phases, &es, &eo, &ec);
    printf ("hift source streaming, dyadic F0, split at %d: |d sine| %.2e |d source| %.2e "
            "|d cycles| %.2e\n", a, es, eo, ec);
    ck_assert (es <= 1e-5 * amp && eo <= 1e-5 && ec <= 1e-12);
  }

  /* Upstream's F0 track: there only the float rounding of the running phase may differ. Upstream
   * rounds the running sum (in cycles) to float, so its phase carries up to half an ulp of the sum
   * so far; the carried phase is reduced mod 1 and stays finer. Bound: one ulp of the largest sum
   * (top harmonic), as radians, times the sine amplitude. */
  Golden g = golden_open ("synthetic_mel_0024");
  const float *f0 = golden_get (&g, "hift.f0", 24);
  const int splits[3][2] = { { 8, 3 }, { 24, 12 }, { 24, 1 } };
  for (int i = 0; i < 3; i++) {
    const int T = splits[i][0], a = splits[i][1];
    double cycles = 0;
    for (int t = 0; t < T; t++)
      cycles += (double) f0[t] * H / sr * spf;
    int e2;
    frexp (cycles, &e2);
    const double bound = amp * 2 * G_PI * ldexp (1.0, e2 - 24);
    source_in_two (f0, T, a, phases, &es, &eo, &ec);
    printf ("hift source streaming, golden F0 [0,%d)+[%d,%d): |d sine| %.2e (rounding bound "
            "%.2e) |d source| %.2e |d cycles| %.2e\n", a, a, T, es, bound, eo, ec);
    ck_assert (es <= bound && eo <= bound * w_sum && ec <= 1e-9);
  }
  golden_close (&g);
  g_free (phases);
}
END_TEST

/* One mel frame: everything finite and within the clamp, the arena large enough. */
START_TEST (test_one_frame)
{
  Golden g = golden_open ("synthetic_mel_0024");
  const float *mel24 = golden_get (&g, "input.mel", 80 * 24);
  const int H = cb_hift_n_harmonics (hift), L = cb_hift_samples_per_frame (hift);
  float mel[80];
  for (int c = 0; c < 80; c++)
    mel[c] = mel24[c * 24 + 10];
  float *phases = g_new0 (float, H), *wav = g_new (float, L), *source = g_new (float, L);
  float f0;
  CbArena *arena = exact_arena (1);
  cb_hift_inference (hift, arena, mel, 1, phases, NULL, NULL, 0, wav, source, &f0);
  double rms = 0;
  for (int i = 0; i < L; i++) {
    ck_assert_msg (isfinite (wav[i]) && fabsf (wav[i]) <= 0.99f, "wav[%d] = %g", i, wav[i]);
    ck_assert (isfinite (source[i]));
    rms += (double) wav[i] * wav[i];
  }
  printf ("hift T = 1: f0 %.1f Hz, wav rms %.3e\n", f0, sqrt (rms / L));
  ck_assert (isfinite (f0) && rms > 0);
  check_scratch (arena, "T = 1");
  cb_arena_free (arena);
  g_free (phases);
  g_free (wav);
  g_free (source);
  golden_close (&g);
}
END_TEST

/* The fade on fewer samples than the curve and past it. */
START_TEST (test_trim_fade_lengths)
{
  float w[2000];
  for (int i = 0; i < 2000; i++)
    w[i] = 1.0f;
  cb_hift_trim_fade (w, 700, 24000);
  ck_assert (w[0] == 0.0f && w[479] == 0.0f && w[480] == 0.0f);
  ck_assert (w[699] > 0.0f && w[699] < 1.0f && w[700] == 1.0f);
  cb_hift_trim_fade (w + 1000, 1000, 24000);
  ck_assert (w[1000 + 959] == 1.0f && w[1000 + 960] == 1.0f && w[1000 + 958] < 1.0f);
}
END_TEST

/* A checkpoint without one tensor: a clear error naming it. */
START_TEST (test_missing_tensor)
{
  const char *victim = "mel2wav.resblocks.4.convs2.1.parametrizations.weight.original1";
  guint n = cb_safetensors_n_tensors (weights), k = 0;
  CbTensorInfo *infos = g_new (CbTensorInfo, n);
  for (guint i = 0; i < n; i++) {
    const CbTensorInfo *t = cb_safetensors_nth (weights, i);
    if (strcmp (t->name, victim) != 0)
      infos[k++] = *t;
  }
  ck_assert_int_eq (k, n - 1);
  char *dir = cb_test_tmpdir ("hift");
  char *path = g_build_filename (dir, "missing.safetensors", NULL);
  GError *err = NULL;
  ck_assert_msg (cb_safetensors_write (path, k, infos, NULL, &err), "%s", err ? err->message : "");
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  CbHift *h = cb_hift_new (&cfg, st, &err);
  ck_assert (h == NULL && err != NULL);
  ck_assert (g_error_matches (err, CB_ERROR, CB_ERROR_MISMATCH));
  ck_assert_msg (strstr (err->message, victim) != NULL, "error does not name %s: %s", victim,
                 err->message);
  printf ("hift missing tensor: %s\n", err->message);
  g_error_free (err);
  cb_safetensors_free (st);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (infos);
}
END_TEST

static Suite *
hift_suite (void)
{
  Suite *s = suite_create ("hift");
  TCase *tc = tcase_create ("golden");
  tcase_add_unchecked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 600);
  tcase_add_loop_test (tc, test_golden_case, 0, G_N_ELEMENTS (cases));
  tcase_add_test (tc, test_golden_detects_difference);
  tcase_add_test (tc, test_source_streaming);
  tcase_add_test (tc, test_one_frame);
  tcase_add_test (tc, test_trim_fade_lengths);
  tcase_add_test (tc, test_missing_tensor);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (hift_suite)
