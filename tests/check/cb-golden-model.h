/* cb-golden-model.h — the golden harness's small model (tests/data/golden/model) for suites that
 * build one part of it: its config and one of its weight files, failing the test on any error. */
#pragma once

#include "cb-check.h"
#include "config.h"
#include "safetensors.h"

/* Upstream defaults overridden by the golden model's chatterbox-config.json into *cfg, and the
 * opened weight file `weights_file` ("t3_cfg.safetensors", "s3gen.safetensors"; free it). */
static inline CbSafetensors *
cb_test_golden_model (CbConfig *cfg, const char *weights_file)
{
  GError *err = NULL;
  char *json = cb_test_golden_path ("model/chatterbox-config.json");
  char *rel = g_build_filename ("model", weights_file, NULL);
  char *path = cb_test_golden_path (rel);
  cb_config_init_default (cfg);
  ck_assert_msg (cb_config_load_json (cfg, json, &err), "%s", err ? err->message : "");
  CbSafetensors *st = cb_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  g_free (json);
  g_free (rel);
  g_free (path);
  return st;
}
