#!/usr/bin/env bash
# pipelines/read-file.sh for real (filesrc ! text/x-raw,format=utf8 ! chatterboxsrc ! … ! wavenc):
# a complete, non-silent WAV within 0.5–2× the length of say-to-wav.sh's for the same text.
# Skipped (77) while chatterboxsrc has no sink pad template.
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
grep -q 'SINK template' "$tmp/inspect.txt" \
  || skip "chatterboxsrc has no text sink pad yet" \
          "(gst-inspect-1.0 chatterboxsrc lists no SINK template)"
text="Reading this sentence from a file."

say_ref "$text" "$tmp/ref.wav"
check_wav "$tmp/ref.wav"
ref_frames=$wav_frames

printf '%s\n' "$text" >"$tmp/in.txt"
run_limited 60 "$tp_pipelines/read-file.sh" -m "$CB_TEST_MODEL" -i "$tmp/in.txt" -o "$tmp/got.wav" \
  >"$tmp/read.log" 2>&1 || fail_log "$tmp/read.log" "read-file.sh failed (status 124: it hung)"
check_wav "$tmp/got.wav"
awk -v a="$wav_frames" -v b="$ref_frames" 'BEGIN { exit !(a >= 0.5 * b && a <= 2 * b) }' \
  || fail "read-file gave $wav_frames frames, say-to-wav $ref_frames for the same text"
echo "PASS: read-file"
