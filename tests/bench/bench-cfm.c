/* bench-cfm — speed of the S3Gen CFM estimator at upstream's full size, random weights.
 *
 *   build-x/tests/bench/bench-cfm [T] [threads] [reps]      defaults: 1000 frames, all CPUs, 3
 *
 * Builds the flow.decoder.estimator.* tensors of the English config (upstream's sizes: 14 resnets,
 * 56 transformer blocks at 256 channels, ~290 MB of F32) with random values in memory, writes them
 * to a temporary safetensors file (the loader maps files) and removes it after loading. Then times
 * one estimator evaluation of the CFG pair (B = 2) over T frames, as each solver step runs it, and
 * prints ms per evaluation, the arithmetic rate, and the implied 10-step solve time. Not run by
 * `meson test`. */
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ops.h"
#include "s3gen-cfm.h"
#include "safetensors.h"
#include "weights-layout.h"

#define PREFIX "flow.decoder.estimator."

static guint32 rng = 20261125u;

/* uniform in [-1, 1) */
static float
uniform (void)
{
  rng = rng * 1664525u + 1013904223u;
  return (float) (rng >> 8) / (float) (1u << 23) - 1.0f;
}

/* Values of one tensor: matrices uniform with variance 1/fan_in (activations keep their scale
 * through the 70 blocks), norm weights near 1, biases small. */
static void
fill (float *v, const CbWeightSpec *s, guint64 n)
{
  guint64 fan_in = 1;
  for (int d = 1; d < s->ndim; d++)
    fan_in *= (guint64) s->shape[d];
  const gboolean is_bias = g_str_has_suffix (s->name, ".bias");
  const float a = s->ndim > 1 ? sqrtf (3.0f / (float) fan_in) : is_bias ? 0.02f : 0.1f;
  for (guint64 i = 0; i < n; i++)
    v[i] = (s->ndim == 1 && !is_bias ? 1.0f : 0.0f) + a * uniform ();
}

/* Writes the estimator tensors of `cfg` with random values to `path`. */
static gboolean
write_random_estimator (const CbConfig *cfg, const char *path, GError **error)
{
  CbWeightsLayout *layout = cb_weights_layout_new (CB_WEIGHTS_S3GEN, cfg);
  GArray *infos = g_array_new (FALSE, TRUE, sizeof (CbTensorInfo));
  GPtrArray *bufs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < cb_weights_layout_size (layout); i++) {
    const CbWeightSpec *s = cb_weights_layout_nth (layout, i);
    if (!g_str_has_prefix (s->name, PREFIX) || s->optional)
      continue;
    CbTensorInfo ti = { .name = s->name, .dtype = CB_DTYPE_F32, .ndim = s->ndim, .numel = 1 };
    for (int d = 0; d < s->ndim; d++) {
      ti.shape[d] = s->shape[d];
      ti.numel *= (guint64) s->shape[d];
    }
    float *v = g_new (float, ti.numel);
    fill (v, s, ti.numel);
    g_ptr_array_add (bufs, v);
    ti.data = (const guint8 *) v;
    ti.nbytes = ti.numel * sizeof (float);
    g_array_append_val (infos, ti);
  }
  gboolean ok = cb_safetensors_write (path, infos->len, (const CbTensorInfo *) infos->data, NULL,
                                      error);
  printf ("estimator: %u tensors\n", infos->len);
  g_ptr_array_unref (bufs);
  g_array_unref (infos);
  cb_weights_layout_free (layout);
  return ok;
}

/* Multiply-adds per frame of one evaluation, ×2 = FLOP: dense layers, then attention (T keys). */
static double
flops_per_frame (const CbConfig *cfg, int T)
{
  const CbFlowDecoderConfig *d = &cfg->flow_decoder;
  const double C = d->channels.v[0], inner = (double) d->num_heads * d->attention_head_dim;
  const double FF = d->ff_mult * C, in = d->in_channels, F = d->out_channels;
  const int stages = d->num_mid_blocks + 2;
  double mac = 0.0;
  for (int s = 0; s < stages; s++) {
    double ci = s == 0 ? in : s == stages - 1 ? 2 * C : C;
    mac += 3 * ci * C + 3 * C * C + ci * C;                           /* resnet */
    mac += d->n_blocks * (4 * C * inner + 2 * C * FF + 2.0 * T * inner); /* transformers */
  }
  mac += 2 * 3 * C * C + C * F;  /* down/up convs, final block, projection */
  return 2.0 * mac;
}

int
main (int argc, char **argv)
{
  const int T = argc > 1 ? atoi (argv[1]) : 1000;
  const int threads = argc > 2 ? atoi (argv[2]) : 0;
  const int reps = argc > 3 ? atoi (argv[3]) : 3;
  if (T < 1 || reps < 1) {
    fprintf (stderr, "usage: bench-cfm [T] [threads] [reps]\n");
    return 2;
  }
  cb_set_num_threads (threads);

  CbConfig cfg;
  cb_config_init_default (&cfg);
  GError *err = NULL;
  char *dir = g_dir_make_tmp ("bench-cfm-XXXXXX", &err);
  char *path = dir ? g_build_filename (dir, "estimator.safetensors", NULL) : NULL;
  if (!dir || !write_random_estimator (&cfg, path, &err)) {
    fprintf (stderr, "bench-cfm: %s\n", err->message);
    return 1;
  }
  gint64 t0 = g_get_monotonic_time ();
  CbSafetensors *st = cb_safetensors_open (path, &err);
  CbS3GenCfm *cfm = st ? cb_s3gen_cfm_new (&cfg, st, &err) : NULL;
  double load_ms = (g_get_monotonic_time () - t0) / 1000.0;
  g_unlink (path);
  g_rmdir (dir);
  if (!cfm) {
    fprintf (stderr, "bench-cfm: %s\n", err->message);
    return 1;
  }

  const int F = cfg.flow_decoder.out_channels, S = cfg.cfm.spk_emb_dim;
  const gsize n = (gsize) 2 * F * T;
  float *x = g_new (float, n), *mu = g_new (float, n), *cond = g_new0 (float, n);
  float *out = g_new (float, n), *spks = g_new0 (float, 2 * S);
  for (gsize i = 0; i < n; i++) {
    x[i] = uniform ();
    mu[i] = i < n / 2 ? 2.0f * uniform () : 0.0f;
  }
  for (int i = 0; i < S; i++)
    spks[i] = uniform ();
  for (gsize i = 0; i < n / 2 && i < (gsize) F * T / 2; i++)
    cond[i] = -5.0f + uniform ();
  float t[2] = { 0.3f, 0.3f };
  guint64 floats = cb_s3gen_cfm_scratch_floats (cfm, 2, T);
  CbArena *arena = cb_arena_new (floats * sizeof (float), &err);
  if (!arena) {
    fprintf (stderr, "bench-cfm: %s\n", err->message);
    return 1;
  }

  cb_s3gen_cfm_estimate (cfm, arena, x, mu, t, spks, cond, 2, T, out);  /* warm-up */
  double best = 1e30, sum = 0.0;
  for (int r = 0; r < reps; r++) {
    gint64 s = g_get_monotonic_time ();
    cb_s3gen_cfm_estimate (cfm, arena, x, mu, t, spks, cond, 2, T, out);
    double ms = (g_get_monotonic_time () - s) / 1000.0;
    best = MIN (best, ms);
    sum += ms;
  }
  double gflop = flops_per_frame (&cfg, T) * 2 * T / 1e9;
  printf ("threads %d, T %d, B 2: load %.0f ms, scratch %.1f MB\n", cb_get_num_threads (), T,
          load_ms, floats * 4.0 / 1e6);
  printf ("estimator evaluation: best %.1f ms, mean %.1f ms (%d reps); %.1f GFLOP, %.1f GFLOP/s; "
          "%.3f ms per frame-evaluation; 10-step CFG solve ~%.2f s\n", best, sum / reps, reps,
          gflop, gflop / (best / 1000.0), best / (2.0 * T), 10 * best / 1000.0);
  printf ("out[0] %.4f (finite: %s)\n", out[0], isfinite (out[0]) ? "yes" : "no");

  cb_arena_free (arena);
  g_free (x); g_free (mu); g_free (cond); g_free (out); g_free (spks);
  cb_s3gen_cfm_free (cfm);
  cb_safetensors_free (st);
  g_free (path);
  g_free (dir);
  return 0;
}
