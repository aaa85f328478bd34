/* The golden harness's small model (tests/data/golden/model, written by upstream's own modules with
 * random weights) against our loaders: the engine builds from it with every tensor of the three
 * weight files validated (name, dtype, shape, nothing extra), and the conds.pt that upstream's
 * prepare_conditionals + Conditionals.save wrote reads back bit for bit equal to the tensors the
 * harness saved from the same run (golden/voice/long.safetensors). */
#include <string.h>

#include "cb-check.h"
#include "chatterbox.h"
#include "conds.h"
#include "config.h"
#include "safetensors.h"

START_TEST (test_engine_validates_golden_model)
{
  char *dir = cb_test_golden_path ("model");
  CbEngineParams p;
  cb_engine_params_init (&p);
  p.model_location = dir;
  p.threads = 1;
  GError *err = NULL;
  CbEngine *e = cb_engine_new (&p, &err);
  ck_assert_msg (e != NULL, "golden model rejected: %s", err ? err->message : "");
  cb_engine_free (e);
  g_free (dir);
}
END_TEST

/* Compares n values of a conds.pt field with a golden tensor, bit for bit. */
static void
assert_same_bits (const CbSafetensors *golden, const char *name, CbDType dtype, const void *ours,
                  gsize n, const char *what)
{
  const CbTensorInfo *t = cb_safetensors_find (golden, name);
  ck_assert_msg (t != NULL, "golden tensor %s missing", name);
  ck_assert_msg (t->dtype == dtype, "golden %s has dtype %s", name, cb_dtype_name (t->dtype));
  ck_assert_msg (t->numel == n, "%s: conds.pt has %zu values, golden %s has %" G_GUINT64_FORMAT,
                 what, n, name, t->numel);
  if (dtype == CB_DTYPE_F32) {
    ck_assert_msg (memcmp (ours, t->data, n * sizeof (float)) == 0, "%s differs from %s", what, name);
  } else {
    /* ids: conds stores them as int32 after range checks; golden holds upstream's int64 */
    const int32_t *ids = ours;
    for (gsize i = 0; i < n; i++) {
      int64_t want;
      memcpy (&want, t->data + i * 8, 8);
      ck_assert_msg (ids[i] == want, "%s[%zu] = %d, golden %s = %" G_GINT64_FORMAT, what, i, ids[i], name, want);
    }
  }
}

START_TEST (test_conds_bit_for_bit)
{
  char *cfg_path = cb_test_golden_path ("model/chatterbox-config.json");
  char *conds_path = cb_test_golden_path ("model/conds.pt");
  char *voice_path = cb_test_golden_path ("voice/long.safetensors");
  GError *err = NULL;
  CbConfig cfg;
  cb_config_init_default (&cfg);
  ck_assert_msg (cb_config_load_json (&cfg, cfg_path, &err), "%s", err ? err->message : "");
  CbCondsExpect expect;
  cb_conds_expect_from_config (&expect, &cfg);
  CbConds *c = cb_conds_load (conds_path, &expect, &err);
  ck_assert_msg (c != NULL, "%s", err ? err->message : "");
  CbSafetensors *g = cb_safetensors_open (voice_path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");

  assert_same_bits (g, "ve.embedding", CB_DTYPE_F32, c->speaker_emb, c->speaker_embed_size, "t3.speaker_emb");
  assert_same_bits (g, "t3prompt.tokens", CB_DTYPE_I64, c->cond_prompt_tokens, c->n_cond_prompt_tokens,
                    "t3.cond_prompt_speech_tokens");
  assert_same_bits (g, "ref.prompt_token", CB_DTYPE_I64, c->prompt_tokens, c->n_prompt_tokens, "gen.prompt_token");
  /* upstream stores prompt_feat transposed in its storage; the reader returns it row-major (Tm, 80) */
  assert_same_bits (g, "ref.prompt_feat", CB_DTYPE_F32, c->prompt_feat, (gsize) c->n_prompt_frames * c->mel_bins,
                    "gen.prompt_feat");
  assert_same_bits (g, "ref.embedding", CB_DTYPE_F32, c->embedding, c->xvector_size, "gen.embedding");
  ck_assert_float_eq (c->emotion_adv, 0.5f);

  cb_safetensors_free (g);
  cb_conds_free (c);
  g_free (cfg_path);
  g_free (conds_path);
  g_free (voice_path);
}
END_TEST

static Suite *
golden_model_suite (void)
{
  Suite *s = suite_create ("golden-model");
  TCase *tc = tcase_create ("loaders");
  tcase_add_test (tc, test_engine_validates_golden_model);
  tcase_add_test (tc, test_conds_bit_for_bit);
  suite_add_tcase (s, tc);
  return s;
}

CB_CHECK_MAIN (golden_model_suite)
