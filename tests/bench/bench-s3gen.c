/* bench-s3gen — speed and memory of S3Gen + HiFT on the CPU, whole and streamed.
 *
 *   build-x/tests/bench/bench-s3gen MODEL_DIR [threads] [tokens] [reps] [fp32|bf16]
 *
 * MODEL_DIR holds s3gen.safetensors and conds.pt (and chatterbox-config.json; absent: upstream's
 * sizes); with t3_cfg.safetensors, tokenizer.json and ve.safetensors too (a full model directory)
 * it also measures the time to first audio of the engine's text → PCM API. Defaults: 2 threads,
 * 250 speech tokens (10 s of audio), 3 repetitions (medians). Reports:
 *   whole     cb_s3gen_decode_whole on N random tokens with the model's built-in voice (its prompt
 *             re-run as upstream does): ms per second of audio for the encoder, the CFM and HiFT;
 *   streamed  the same tokens pushed one by one into a CbS3GenStream (default schedule): the same
 *             split, the chunk count, estimator frame-evaluations against the whole decode's, and
 *             the time from the first chunk's last token to its audio;
 *   CFM rate  frame-evaluations per second and the dense GFLOP/s they amount to (per frame and
 *             evaluation: every Linear and conv of the estimator, plus attention's 4·T·inner per
 *             transformer block), against this machine's sgemm rate (a 1024³ GEMM);
 *   first audio  (full model directory) cb_utterance_begin → the first non-empty piece of
 *             cb_utterance_read_audio for a text, T3 included (tokens capped at N);
 *   peak RSS.
 * With bf16 (the engine's precision option for the CFM estimator), one FP32 whole decode runs
 * first as the reference, then the estimator switches to its BF16 copies and everything above is
 * measured with them; the BF16 mel is compared with the FP32 one of the same tokens and seed
 * (relative max error, log-mel cosine plain and mean-removed) and so is the waveform.
 * Not run by `meson test`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench-common.h"
#include "chatterbox.h"
#include "config.h"
#include "conds.h"
#include "ops.h"
#include "s3gen.h"

#define MAX_REPS 16

static double
sgemm_gflops (void)
{
  const int n = 1024;
  float *a = g_new (float, n * n), *b = g_new (float, n * n), *c = g_new (float, n * n);
  for (int i = 0; i < n * n; i++)
    a[i] = (float) (i % 7) * 0.1f, b[i] = (float) (i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    const double t0 = now_ms ();
    cb_gemm (FALSE, TRUE, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);  /* on the pool, as the ops */
    best = MIN (best, now_ms () - t0);
  }
  g_free (a), g_free (b), g_free (c);
  return 2.0 * n * n * n / (best * 1e6);
}

/* Dense FLOPs of one estimator evaluation per frame over a window of T frames (spec §5.4). */
static double
estimator_flops_per_frame (const CbConfig *c, int T)
{
  const double C = c->flow_decoder.channels.v[0], in = c->flow_decoder.in_channels;
  const double inner = (double) c->flow_decoder.num_heads * c->flow_decoder.attention_head_dim;
  const double ff = C * c->flow_decoder.ff_mult, k = 3;
  const int n_res = 2 + c->flow_decoder.num_mid_blocks;
  const double tblocks = (double) n_res * c->flow_decoder.n_blocks;
  const double block = 2 * (4 * C * inner + 2 * C * ff) + 4.0 * T * inner;
  /* resnets: down (in → C), mid (C → C), up (2C → C): two causal convs + 1×1 residual each */
  const double res = 2 * ((in * C * k + C * C * k + in * C)
                          + c->flow_decoder.num_mid_blocks * (2 * C * C * k + C * C)
                          + (2 * C * C * k + C * C * k + 2 * C * C));
  const double convs = 2 * (2 * C * C * k + C * C * k + C * c->flow_decoder.out_channels);
  return tblocks * block + res + convs;
}

typedef struct {
  double total, enc, cfm, hift, first_chunk;
  guint64 evals;
  int chunks;
} Run;

static void
times_since (CbS3Gen *s, const CbS3GenTimes *t0, Run *r)
{
  CbS3GenTimes t;
  cb_s3gen_times (s, &t);
  r->enc = (t.encoder_us - t0->encoder_us) / 1000.0;
  r->cfm = (t.cfm_us - t0->cfm_us) / 1000.0;
  r->hift = (t.hift_us - t0->hift_us) / 1000.0;
}

/* keep: NULL, or where the decode's output is handed over (else it is freed) */
static void
run_whole (CbS3Gen *s, const CbS3GenVoice *v, const int32_t *tok, int n, Run *r,
           CbS3GenOutput *keep)
{
  GError *err = NULL;
  CbS3GenTimes t0;
  cb_s3gen_times (s, &t0);
  const guint64 e0 = cb_s3gen_frame_evals (s);
  CbS3GenOutput o;
  const double start = now_ms ();
  if (!cb_s3gen_decode_whole (s, v, tok, n, NULL, 1, NULL, &o, &err))
    die (err);
  r->total = now_ms () - start;
  r->evals = cb_s3gen_frame_evals (s) - e0;
  r->chunks = 1;
  times_since (s, &t0, r);
  if (keep)
    *keep = o;
  else
    cb_s3gen_output_clear (&o);
}

/* relative max error, and cosine plain and with the means removed */
static void
compare (const char *what, const float *a, const float *b, gsize n)
{
  printf ("bf16 vs fp32 %s: rel max err %.3e, cosine %.6f, mean-removed cosine %.6f\n", what,
          cb_rel_max_err (a, b, n), cb_cosine (a, b, n, FALSE), cb_cosine (a, b, n, TRUE));
}

static void
run_streamed (CbS3Gen *s, CbS3GenStream *st, const CbS3GenVoice *v, const int32_t *tok, int n,
              Run *r)
{
  GError *err = NULL;
  CbS3GenStreamParams p;
  cb_s3gen_stream_params_init (&p);
  p.seed = 1;
  CbS3GenTimes t0;
  cb_s3gen_times (s, &t0);
  if (!cb_s3gen_stream_begin (st, v, &p, &err))
    die (err);
  r->first_chunk = -1;
  const double start = now_ms ();
  for (int i = 0; i <= n; i++) {
    const gboolean final = i == n;
    if (!final && !cb_s3gen_stream_push (st, tok + i, 1, &err))
      die (err);
    while (cb_s3gen_stream_chunk_due (st, final)) {
      const float *pcm;
      gsize k;
      const double c0 = now_ms ();
      if (!cb_s3gen_stream_decode (st, final, NULL, &pcm, &k, &err))
        die (err);
      if (r->first_chunk < 0 && k > 0)
        r->first_chunk = now_ms () - c0;
    }
  }
  r->total = now_ms () - start;
  r->evals = cb_s3gen_stream_frame_evals (st);
  r->chunks = cb_s3gen_stream_chunks (st);
  times_since (s, &t0, r);
}

/* Begins the benchmark's sentence on `u`, at most n speech tokens. */
static void
begin_bench_text (CbUtterance *u, int n)
{
  GError *err = NULL;
  CbUtteranceParams p;
  cb_utterance_params_init (&p);
  p.max_tokens = n;
  if (!cb_utterance_begin (u, "Chatterbox speaks this sentence from a GStreamer pipeline, natively "
                           "in C, with the whole model running on the CPU.", NULL, &p, &err))
    die (err);
}

/* One utterance of `u`: begin → the first non-empty piece of audio, in ms; then cancelled. */
static double
utterance_first_audio (CbUtterance *u, int n)
{
  GError *err = NULL;
  const double t0 = now_ms ();
  begin_bench_text (u, n);
  double first = -1;
  gboolean done = FALSE;
  while (!done && first < 0) {
    const float *pcm;
    gsize k;
    if (!cb_utterance_read_audio (u, &pcm, &k, &done, &err))
      die (err);
    if (k > 0)
      first = now_ms () - t0;
  }
  cb_utterance_cancel (u);
  return first;
}

/* Engine: begin → first audio piece for a text, T3 included (tokens capped at n): the first
 * utterance after the engine is built (it also pays the first touch of the mapped weights) in
 * first[0], the next one (steady state, as every later utterance of a stream) in first[1], and
 * T3 alone making the first chunk's 25 tokens (begin included) in first[2].
 * FALSE without a full model directory. */
static gboolean
first_audio_ms (const char *dir, int threads, int n, CbPrecision precision, double first[3])
{
  char *t3 = g_build_filename (dir, "t3_cfg.safetensors", NULL);
  const gboolean have = g_file_test (t3, G_FILE_TEST_EXISTS);
  g_free (t3);
  if (!have)
    return FALSE;
  GError *err = NULL;
  CbEngineParams ep;
  cb_engine_params_init (&ep);
  ep.model_location = dir;
  ep.threads = threads;
  ep.precision = precision;
  CbEngine *e = cb_engine_new (&ep, &err);
  if (!e)
    die (err);
  CbUtterance *u = cb_utterance_new (e, 0, n, &err);
  if (!u)
    die (err);
  for (int i = 0; i < 2; i++)
    first[i] = utterance_first_audio (u, n);
  /* T3 alone up to the first chunk's tokens (the default chunk-tokens, 25) */
  const double t0 = now_ms ();
  begin_bench_text (u, n);
  gboolean done = FALSE;
  for (int i = 0; i < 25 && !done; i++) {
    gint32 token;
    if (!cb_utterance_next (u, &token, &done, &err))
      die (err);
  }
  first[2] = now_ms () - t0;
  cb_utterance_free (u);
  cb_engine_free (e);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_set_prgname ("bench-s3gen");
  if (argc < 2) {
    fprintf (stderr, "usage: %s MODEL_DIR [threads] [tokens] [reps] [fp32|bf16]\n", argv[0]);
    return 64;
  }
  const char *dir = argv[1];
  const int threads = argc > 2 ? atoi (argv[2]) : 2;
  const int n = argc > 3 ? atoi (argv[3]) : 250;
  const int reps = CLAMP (argc > 4 ? atoi (argv[4]) : 3, 1, MAX_REPS);
  const gboolean bf16 = argc > 5 && !strcmp (argv[5], "bf16");
  cb_set_num_threads (threads);
  GError *err = NULL;
  CbConfig cfg;
  cb_config_init_default (&cfg);
  char *json = g_build_filename (dir, "chatterbox-config.json", NULL);
  if (g_file_test (json, G_FILE_TEST_EXISTS) && !cb_config_load_json (&cfg, json, &err))
    die (err);
  g_free (json);
  char *path = g_build_filename (dir, "s3gen.safetensors", NULL);
  const double l0 = now_ms ();
  CbSafetensors *st = cb_safetensors_open (path, &err);
  g_free (path);
  if (!st)
    die (err);
  CbS3Gen *s = cb_s3gen_new (&cfg, st, &err);
  if (!s)
    die (err);
  const double load = now_ms () - l0;
  CbCondsExpect ex;
  cb_conds_expect_from_config (&ex, &cfg);
  path = g_build_filename (dir, "conds.pt", NULL);
  CbConds *conds = cb_conds_load (path, &ex, &err);
  g_free (path);
  CbS3GenVoice v;
  if (!conds || !cb_s3gen_voice_init (&v, s, conds, &err))
    die (err);
  int32_t *tok = g_new (int32_t, n);
  guint64 x = 12345;
  for (int i = 0; i < n; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    tok[i] = (int32_t) ((x >> 33) % (guint64) cfg.flow.vocab_size);
  }
  CbS3GenStream *stream = cb_s3gen_stream_new (s, n, &err);
  if (!stream)
    die (err);
  const double audio_s = n * cfg.flow.token_mel_ratio * (double) cb_s3gen_samples_per_frame (s)
                         / cfg.hift.sampling_rate;
  printf ("bench-s3gen: %s, %d threads, %d tokens (%.2f s of audio), prompt %d frames, %d reps; "
          "load %.0f ms\n", dir, threads, n, audio_s, v.n_prompt_frames, reps, load);

  Run w[MAX_REPS], sr[MAX_REPS];
  if (bf16) {
    CbS3GenOutput ref, o;
    run_whole (s, &v, tok, n, &w[0], &ref);
    printf ("fp32 reference whole decode: %.0f ms; BF16 copies: %.1f MB\n", w[0].total,
            cb_s3gen_use_bf16 (s) / 1e6);
    run_whole (s, &v, tok, n, &w[0], &o);
    compare ("mel", o.mel, ref.mel, (gsize) o.n_frames * cfg.flow.output_size);
    compare ("wav", o.wav, ref.wav, o.n_samples);
    cb_s3gen_output_clear (&ref);
    cb_s3gen_output_clear (&o);
  }
  for (int r = 0; r < reps; r++) {
    run_whole (s, &v, tok, n, &w[r], NULL);
    run_streamed (s, stream, &v, tok, n, &sr[r]);
  }
  double a[MAX_REPS];
#define MED(arr, field) (({ for (int r_ = 0; r_ < reps; r_++) a[r_] = arr[r_].field; }), median (a, reps))
  const double w_total = MED (w, total), w_enc = MED (w, enc), w_cfm = MED (w, cfm),
               w_hift = MED (w, hift);
  const double s_total = MED (sr, total), s_enc = MED (sr, enc), s_cfm = MED (sr, cfm),
               s_hift = MED (sr, hift), s_first = MED (sr, first_chunk);
  printf ("whole:    %8.0f ms total = %7.0f ms/s of audio (encoder %.0f, CFM %.0f, HiFT %.0f ms/s)"
          "; %" G_GUINT64_FORMAT " frame-evaluations\n", w_total, w_total / audio_s,
          w_enc / audio_s, w_cfm / audio_s, w_hift / audio_s, w[0].evals);
  printf ("streamed: %8.0f ms total = %7.0f ms/s of audio (encoder %.0f, CFM %.0f, HiFT %.0f ms/s)"
          "; %" G_GUINT64_FORMAT " frame-evaluations in %d chunks = %.2f× the whole decode; "
          "first chunk %.0f ms; total time %.2f× the whole decode\n", s_total, s_total / audio_s,
          s_enc / audio_s, s_cfm / audio_s, s_hift / audio_s, sr[0].evals, sr[0].chunks,
          (double) sr[0].evals / w[0].evals, s_first, s_total / w_total);
  const int T = cfg.flow.token_mel_ratio * (v.n_prompt_tokens + n);
  const double fe_per_s = w[0].evals / (w_cfm / 1000.0);
  const double gflops = fe_per_s * estimator_flops_per_frame (&cfg, T) / 1e9;
  const double peak = sgemm_gflops ();
  printf ("CFM: %.0f frame-evaluations/s at T = %d (%.1f MFLOP per frame-evaluation) = %.1f "
          "GFLOP/s; sgemm 1024³ %.1f GFLOP/s: %.0f%%\n", fe_per_s, T,
          estimator_flops_per_frame (&cfg, T) / 1e6, gflops, peak, 100 * gflops / peak);
  double fa[3] = { -1, -1, -1 };
  if (first_audio_ms (dir, threads, n, bf16 ? CB_PRECISION_BF16 : CB_PRECISION_FP32, fa))
    printf ("engine: time to first audio (T3 + first chunk, %d-token cap): %.0f ms for the first "
            "utterance after the build, %.0f ms for the next; goal: T3's first 25 tokens %.0f ms "
            "+ the first chunk's decode %.0f ms = %.0f ms\n", n, fa[0], fa[1], fa[2], s_first,
            fa[2] + s_first);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("peak RSS %.0f MB\n", ru.ru_maxrss / 1024.0);
  printf ("RESULT {\"precision\": \"%s\", \"threads\": %d, \"n_tokens\": %d, \"audio_s\": %.3f, \"whole_ms\": %.1f, "
          "\"encoder_ms\": %.1f, \"cfm_ms\": %.1f, \"hift_ms\": %.1f, \"streamed_ms\": %.1f, "
          "\"stream_work_ratio\": %.3f, \"first_audio_ms\": %.1f, \"first_audio_warm_ms\": %.1f, "
          "\"cfm_gflops\": %.1f, "
          "\"sgemm_gflops\": %.1f, \"peak_rss_mb\": %.0f}\n", bf16 ? "bf16" : "fp32", threads,
          n, audio_s, w_total,
          w_enc, w_cfm, w_hift, s_total, (double) sr[0].evals / w[0].evals, fa[0], fa[1], gflops, peak,
          ru.ru_maxrss / 1024.0);
  cb_s3gen_stream_free (stream);
  g_free (tok);
  cb_s3gen_voice_clear (&v);
  cb_conds_free (conds);
  cb_s3gen_free (s);
  cb_safetensors_free (st);
  return 0;
}
