/* bench-t3 — speed and memory of T3 on the CPU, FP32 and BF16 weight storage.
 *
 *   build-x/tests/bench/bench-t3 MODEL_DIR [fp32|bf16|both] [threads] [decode_tokens] [reps]
 *
 * MODEL_DIR holds t3_cfg.safetensors (and chatterbox-config.json; absent: upstream's sizes).
 * Defaults: both, 2 threads, 32 decode tokens, 3 repetitions. Reports medians of:
 *   load     cb_safetensors_open + cb_t3_new (BF16: the conversion included)
 *   set-up   cb_t3_begin up to its prefill forward (cb_t3_state_setup_us): the 1st utterance of
 *            a voice (conditioning computed; FP32: the first touch of the mapped weights too), and
 *            the 2nd..10th (voice cache hit)
 *   prefill  the rest of cb_t3_begin: a 100-id text, both CFG rows (cfg_weight 0.5)
 *   decode   ms per token (cb_t3_forward_step, both CFG rows), over `decode_tokens` steps
 * and the memory bandwidth of this machine (a streaming read and a copy on all threads), the
 * decode floor = bytes of the matrices a step streams / read bandwidth, and the peak RSS.
 * Run one precision per process to see each one's peak RSS. Not run by `meson test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench-common.h"
#include "config.h"
#include "ops.h"
#include "parallel.h"
#include "safetensors.h"
#include "t3.h"

#define TEXT_LEN    100
#define UTTERANCES  10
#define MAX_REPS    32

/* ---- memory bandwidth ---- */

typedef struct {
  const float *src;
  float       *dst;
  double       sums[CB_MAX_THREADS * 16];
} Stream;

typedef float v8f __attribute__ ((vector_size (32)));

static void
read_body (void *ctx, int64_t begin, int64_t end)
{
  Stream *s = ctx;
  v8f acc[4] = { { 0 } };  /* four independent chains: loads, not adds, set the pace */
  int64_t i = begin;
  for (; i + 32 <= end; i += 32)
    for (int k = 0; k < 4; k++) {
      v8f x;
      memcpy (&x, s->src + i + 8 * k, sizeof x);
      acc[k] += x;
    }
  double t = 0;
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 8; j++)
      t += acc[k][j];
  s->sums[(begin / 32) % (CB_MAX_THREADS * 16)] = t;  /* keeps the loads alive */
}

static void
copy_body (void *ctx, int64_t begin, int64_t end)
{
  Stream *s = ctx;
  memcpy (s->dst + begin, s->src + begin, (end - begin) * sizeof (float));
}

/* GB/s of a streaming read (bytes read) and of a copy (bytes read + written), best of 5, over
 * 512 MiB buffers (far larger than any cache). */
static void
bandwidth (double *read_gbs, double *copy_gbs)
{
  const int64_t n = 128 << 20;
  float *a = g_new (float, n), *b = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    a[i] = b[i] = (float) (i & 255);
  Stream s = { a, b, { 0 } };
  const int64_t grain = n / cb_get_num_threads () / 4;
  *read_gbs = *copy_gbs = 0;
  for (int r = 0; r < 5; r++) {
    double t0 = now_ms ();
    cb_parallel_for (n, grain, read_body, &s);
    double t1 = now_ms ();
    cb_parallel_for (n, grain, copy_body, &s);
    double t2 = now_ms ();
    *read_gbs = MAX (*read_gbs, n * 4.0 / (t1 - t0) / 1e6);
    *copy_gbs = MAX (*copy_gbs, n * 8.0 / (t2 - t1) / 1e6);
  }
  g_free (a);
  g_free (b);
}

/* Bytes of the matrices one decode step reads (per precision's element size). */
static double
step_weight_bytes (const CbConfig *cfg, int elem)
{
  const CbLlamaConfig *c = &cfg->llama;
  const double H = c->hidden_size, I = c->intermediate_size;
  const double q = (double) c->num_attention_heads * c->head_dim;
  const double kv = (double) c->num_key_value_heads * c->head_dim;
  double per_layer = 2 * q * H + 2 * kv * H + 3 * I * H;
  return elem * (c->num_hidden_layers * per_layer + cfg->t3.speech_tokens_dict_size * H);
}

/* ---- T3 ---- */

static void
bench_precision (const char *dir, const CbConfig *cfg, CbT3Precision precision, int steps,
                 int reps, double floor_ms)
{
  const char *name = precision == CB_T3_PRECISION_BF16 ? "BF16" : "FP32";
  char *path = g_build_filename (dir, "t3_cfg.safetensors", NULL);
  CbT3Options o;
  cb_t3_options_init (&o);
  o.precision = precision;
  GError *err = NULL;
  double load[MAX_REPS];
  CbSafetensors *st = NULL;
  CbT3 *t3 = NULL;
  for (int r = 0; r < reps; r++) {  /* the last model built is the one measured below */
    cb_t3_free (t3);
    cb_safetensors_free (st);
    double t0 = now_ms ();
    st = cb_safetensors_open (path, &err);
    t3 = st ? cb_t3_new (cfg, st, &o, &err) : NULL;
    load[r] = now_ms () - t0;
    if (!t3)
      die (err);
  }
  CbT3State *s = cb_t3_state_new (t3, TEXT_LEN, steps + 1, &err);
  if (!s)
    die (err);

  /* one voice: a random speaker embedding and a full-length prompt of speech tokens */
  const int S = cfg->t3.speaker_embed_size, P = cfg->t3.speech_cond_prompt_len;
  float *speaker = g_new (float, S);
  int32_t *prompt = g_new (int32_t, MAX (P, 1)), ids[TEXT_LEN];
  GRand *rand = g_rand_new_with_seed (7);
  for (int i = 0; i < S; i++)
    speaker[i] = (float) g_rand_double_range (rand, -0.1, 0.1);
  for (int i = 0; i < P; i++)
    prompt[i] = g_rand_int_range (rand, 0, cfg->t3.start_speech_token);
  ids[0] = cfg->t3.start_text_token;
  ids[TEXT_LEN - 1] = cfg->t3.stop_text_token;
  for (int i = 1; i < TEXT_LEN - 1; i++)
    ids[i] = g_rand_int_range (rand, 0, cfg->t3.text_tokens_dict_size);
  CbConds voice = { 0 };
  voice.speaker_emb = speaker;
  voice.speaker_embed_size = S;
  voice.cond_prompt_tokens = prompt;
  voice.n_cond_prompt_tokens = P;
  CbT3Params params = { 0.5f, 0.5f };

  /* utterance 1: the voice is new; 2..10 hit its cache; 2..reps+1 also time the prefill of the
   * full text and decode, the others begin with a 2-id text (their set-up is what they measure) */
  double setup_first = 0, setup_later[UTTERANCES], prefill[MAX_REPS], decode[MAX_REPS];
  int n_later = 0, n_decode = 0;
  for (int u = 0; u < UTTERANCES; u++) {
    const gboolean full = u <= reps;
    int32_t tiny[2] = { cfg->t3.start_text_token, cfg->t3.stop_text_token };
    double t0 = now_ms ();
    if (!cb_t3_begin (s, full ? ids : tiny, full ? TEXT_LEN : 2, &voice, &params, &err))
      die (err);
    double begin_ms = now_ms () - t0, setup_ms = cb_t3_state_setup_us (s) / 1000.0;
    if (u == 0) {
      setup_first = setup_ms;
      continue;
    }
    setup_later[n_later++] = setup_ms;
    if (!full)
      continue;
    prefill[n_decode] = begin_ms - setup_ms;
    t0 = now_ms ();
    for (int k = 0; k < steps; k++)
      if (!cb_t3_forward_step (s, (k * 37 + u) % cfg->t3.start_speech_token, &err))
        die (err);
    decode[n_decode++] = (now_ms () - t0) / steps;
  }
  const double ms_token = median (decode, n_decode);
  printf ("%s: load %.0f ms | set-up 1st utterance %.1f ms, 2nd..%dth %.2f ms | prefill %d ids "
          "%.0f ms | decode %.1f ms/token (%.2f tokens/s; floor %.1f ms, %.2fx the floor) | "
          "cond misses %u\n",
          name, median (load, reps), setup_first, UTTERANCES, median (setup_later, n_later),
          TEXT_LEN, median (prefill, n_decode), ms_token, 1000.0 / ms_token, floor_ms,
          ms_token / floor_ms, cb_t3_state_cond_misses (s));
  fflush (stdout);
  g_rand_free (rand);
  g_free (speaker);
  g_free (prompt);
  cb_t3_state_free (s);
  cb_t3_free (t3);
  cb_safetensors_free (st);
  g_free (path);
}

int
main (int argc, char **argv)
{
  g_set_prgname ("bench-t3");
  if (argc < 2) {
    fprintf (stderr, "usage: %s MODEL_DIR [fp32|bf16|both] [threads] [decode_tokens] [reps]\n",
             argv[0]);
    return 2;
  }
  const char *dir = argv[1], *which = argc > 2 ? argv[2] : "both";
  const int threads = argc > 3 ? atoi (argv[3]) : 2;
  const int steps = argc > 4 ? atoi (argv[4]) : 32;
  const int reps = CLAMP (argc > 5 ? atoi (argv[5]) : 3, 1, UTTERANCES - 1);
  cb_set_num_threads (threads);

  CbConfig cfg;
  cb_config_init_default (&cfg);
  char *json = g_build_filename (dir, "chatterbox-config.json", NULL);
  GError *err = NULL;
  if (g_file_test (json, G_FILE_TEST_EXISTS) && !cb_config_load_json (&cfg, json, &err))
    die (err);
  g_free (json);

  double read_gbs, copy_gbs;
  bandwidth (&read_gbs, &copy_gbs);
  const double f32_bytes = step_weight_bytes (&cfg, 4), bf16_bytes = step_weight_bytes (&cfg, 2);
  printf ("threads %d, %d decode tokens, %d reps, %d-id text, cfg_weight 0.5 (2 rows)\n"
          "memory bandwidth: read %.1f GB/s, copy %.1f GB/s (read + write bytes)\n"
          "matrices per decode step: FP32 %.0f MB (floor %.1f ms), BF16 %.0f MB (floor %.1f ms)\n",
          cb_get_num_threads (), steps, reps, TEXT_LEN, read_gbs, copy_gbs, f32_bytes / 1e6,
          f32_bytes / read_gbs / 1e6, bf16_bytes / 1e6, bf16_bytes / read_gbs / 1e6);
  fflush (stdout);
  if (strcmp (which, "bf16") != 0)
    bench_precision (dir, &cfg, CB_T3_PRECISION_FP32, steps, reps, f32_bytes / read_gbs / 1e6);
  if (strcmp (which, "fp32") != 0)
    bench_precision (dir, &cfg, CB_T3_PRECISION_BF16, steps, reps, bf16_bytes / read_gbs / 1e6);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("peak RSS %.0f MB (this process: %s)\n", ru.ru_maxrss / 1024.0, which);
  return 0;
}
