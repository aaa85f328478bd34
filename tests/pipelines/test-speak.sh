#!/usr/bin/env bash
# pipelines/speak.sh for real, with CB_AUDIO_SINK=fakesink (no sound card here): it must parse,
# play to the end (EOS) and exit 0.
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
CB_AUDIO_SINK="fakesink sync=false" run_limited 60 "$tp_pipelines/speak.sh" -m "$CB_TEST_MODEL" \
  -t "Speaking to a fake sink." >"$tmp/speak.log" 2>&1 \
  || fail_log "$tmp/speak.log" "speak.sh failed"
grep -q 'Got EOS from element' "$tmp/speak.log" \
  || fail_log "$tmp/speak.log" "speak.sh ended without EOS"
note "$(grep 'Execution ended' "$tmp/speak.log")"
echo "PASS: speak"
