#!/usr/bin/env bash
# pipelines/rtp-send.sh → pipelines/rtp-receive.sh over UDP on 127.0.0.1 (L16, or Opus with
# --opus): the receiver (stops 4 s after the stream ends) writes a complete, non-silent WAV as long
# as say-to-wav.sh's for the same text (same frame count for L16, within 0.1 s for Opus) and about
# as loud (RMS within 0.5–1.5×); L16 keeps every sample (within 4 steps: rounding to 16 bits in
# two pipelines, and synthesis is reproducible only to ~1e-6).
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
opus=()
[ "${1:-}" != --opus ] || opus=(--opus)
text="Sending speech over RTP."

say_ref "$text" "$tmp/ref.wav"
check_wav "$tmp/ref.wav"
ref_frames=$wav_frames ref_rms=$wav_rms

port=$(free_port udp)
cb_bg "$tp_pipelines/rtp-receive.sh" "${opus[@]}" -p "$port" -o "$tmp/got.wav" --idle 4 --max 50 \
  >"$tmp/receive.log" 2>&1
recv=$tp_pid
wait_listening udp "$port" 30 "$recv" \
  || fail_log "$tmp/receive.log" "receiver not listening on $port"
t0=$SECONDS
run_limited 60 "$tp_pipelines/rtp-send.sh" "${opus[@]}" -m "$CB_TEST_MODEL" -t "$text" -p "$port" \
  >"$tmp/send.log" 2>&1 || fail_log "$tmp/send.log" "rtp-send.sh failed"
note "sender done in $((SECONDS - t0)) s (udpsink paces to real time)"
rc=0; tp_wait "$recv" 30 || rc=$?
cat "$tmp/receive.log"
[ $rc -eq 0 ] || fail "rtp-receive.sh failed (status $rc)"

check_wav "$tmp/got.wav"
check_level "$ref_rms"
if [ ${#opus[@]} -eq 0 ]; then
  [ "$wav_frames" = "$ref_frames" ] || fail "received $wav_frames frames, sent $ref_frames"
  d=$(python3 "$tp_top/tests/pipelines/wavinfo.py" --diff "$tmp/ref.wav" "$tmp/got.wav")
  awk -v d="$d" 'BEGIN { exit !(d <= 4) }' || fail "received samples differ by up to $d steps"
  note "L16: all $wav_frames frames arrived; largest difference $d steps"
else
  awk -v a="$wav_frames" -v b="$ref_frames" 'BEGIN { exit !(a - b <= 2400 && b - a <= 2400) }' \
    || fail "received $wav_frames frames, sent $ref_frames (more than 0.1 s apart)"
  note "Opus: received $wav_frames frames, sent $ref_frames"
fi
echo "PASS: rtp ${opus[*]:-L16}"
