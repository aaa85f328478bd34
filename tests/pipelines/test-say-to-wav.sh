#!/usr/bin/env bash
# pipelines/say-to-wav.sh for real: a complete, non-silent 24 kHz mono 16-bit WAV; the same text
# gives the same audio twice (the RTP and Icecast tests rely on it: same length, samples within 2
# steps; not bit-exact, since multi-threaded OpenBLAS sums in a varying order, ~1e-6 apart); quotes
# and '!' in the text reach the element intact (gst-launch argument escaping); a missing model
# fails with an element error and no file left.
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
text='Hello "pipeline" test! It'"'"'s a small model.'

run_limited 60 "$tp_pipelines/say-to-wav.sh" -m "$CB_TEST_MODEL" -t "$text" -o "$tmp/a.wav" \
  || fail "say-to-wav.sh failed"
check_wav "$tmp/a.wav"
[ "$wav_bits" = 16 ] || fail "expected 16-bit samples, got $wav_bits"

GST_DEBUG=chatterboxsrc:4 run_limited 60 "$tp_pipelines/say-to-wav.sh" -m "$CB_TEST_MODEL" \
  -t "$text" -o "$tmp/b.wav" >"$tmp/b.log" 2>&1 \
  || fail_log "$tmp/b.log" "say-to-wav.sh failed (2nd run)"
frames_a=$wav_frames
wav_info "$tmp/b.wav"
[ "$wav_frames" = "$frames_a" ] || fail "the same text gave $frames_a and then $wav_frames frames"
d=$(python3 "$tp_top/tests/pipelines/wavinfo.py" --diff "$tmp/a.wav" "$tmp/b.wav")
awk -v d="$d" 'BEGIN { exit !(d <= 2) }' || fail "the same text gave samples up to $d steps apart"
# The element logs each sentence it speaks (INFO; it segments the text): both must be there exactly.
for sentence in "${text%% It*}" "It${text#* It}"; do
  grep -qF -- "$sentence" "$tmp/b.log" || fail_log "$tmp/b.log" "text did not reach the element intact"
done
note "same text, same audio (largest difference $d steps); text arrived intact"

if run_limited 60 "$tp_pipelines/say-to-wav.sh" -m "$tmp/no-such-model" -o "$tmp/c.wav" \
     >"$tmp/c.log" 2>&1; then
  fail "say-to-wav.sh succeeded without a model"
fi
[ ! -e "$tmp/c.wav" ] || fail "a failed run left $tmp/c.wav behind"
grep -q "^ERROR: from element .*chatterboxsrc" "$tmp/c.log" \
  || fail_log "$tmp/c.log" "no error from chatterboxsrc for a missing model"
note "missing model: non-zero exit, element error, no file"
echo "PASS: say-to-wav"
