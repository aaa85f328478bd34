#!/usr/bin/env bash
# rtp-receive.sh — receive what rtp-send.sh sends and write it to a WAV file.
#   udpsrc port=… caps=application/x-rtp,… ! rtpjitterbuffer ! rtpL16depay
#     (--opus: ! rtpopusdepay ! opusdec ! audio/x-raw,rate=24000,channels=1: libopus decodes
#     straight to 24 kHz)
#     ! audioconvert ! audio/x-raw,format=S16LE,rate=24000,channels=1 ! level ! wavenc ! filesink
# Usage: pipelines/rtp-receive.sh [-o OUT.wav] [-p PORT] [--opus] [--idle SECS] [--max SECS]
#   -o      output file (default: received.wav)      -p  UDP port (default 5004)
#   --idle  stop SECS seconds after the stream stops (once audio has arrived; make it longer than
#           the sender's longest pause); 0 (default): run until Ctrl-C. Either way the pipeline
#           gets an EOS, so the WAV header is complete.
#   --max   stop after SECS seconds in any case (0, the default: no limit)
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
CB_OUT=received.wav
CB_PORT=5004
cb_parse_args "$@"
[[ "$CB_IDLE$CB_MAX" =~ ^[0-9]+$ ]] || cb_die "--idle and --max take whole seconds"
if [ "$CB_OPUS" = 1 ]; then
  caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"
  dec=(rtpopusdepay ! opusdec ! "audio/x-raw,rate=24000,channels=1")
else
  caps="application/x-rtp,media=audio,clock-rate=24000,encoding-name=L16,encoding-params=1"
  caps+=",channels=1,payload=96"
  dec=(rtpL16depay)
fi
# A 4 MB socket buffer: a TTS sender that falls behind real time sends its late audio in one burst
# (udpsink pushes late buffers at once), and the default ~200 KB buffer then overflows while this
# process waits for a CPU.
pipeline=(udpsrc "port=$CB_PORT" "caps=$caps" buffer-size=4194304)
# udpsrc posts a GstUDPSrcTimeout element message after each --idle seconds without packets.
[ "$CB_IDLE" = 0 ] || pipeline+=("timeout=$((CB_IDLE * 1000000000))")
# level posts a message per 0.5 s of audio that actually arrives (the sign that data flows).
pipeline+=(! rtpjitterbuffer ! "${dec[@]}" ! audioconvert
           ! "audio/x-raw,format=S16LE,rate=24000,channels=1" ! level interval=500000000
           ! wavenc ! filesink "location=$CB_OUT")

if [ "$CB_IDLE" = 0 ] && [ "$CB_MAX" = 0 ]; then
  # -e: Ctrl-C sends EOS first, so wavenc finishes the header.
  cb_gst_launch -e "${pipeline[@]}"
  exit
fi

# Watch gst-launch's messages (-m): a udpsrc timeout after a level message means audio arrived and
# then stopped. Then SIGINT makes gst-launch (-e) send EOS, which finalises the WAV.
log=$(mktemp "${TMPDIR:-/tmp}/rtp-receive.XXXXXX")
"${cb_launch[@]}" -e -m "${pipeline[@]}" >"$log" 2>&1 &
gl=$!
trap 'kill "$gl" 2>/dev/null || true; rm -f "$log"' EXIT
trap 'exit 143' TERM
# Ctrl-C on a terminal reaches gst-launch too, which then sends the EOS and exits: wait for that.
trap '' INT
start=$SECONDS reason=""
while kill -0 "$gl" 2>/dev/null; do
  if [ "$CB_IDLE" != 0 ] && awk '/"level0" \(element\)/ { seen = 1 }
                                  seen && /GstUDPSrcTimeout/ { found = 1 }
                                  END { exit !found }' "$log"; then
    reason="no packets for ${CB_IDLE}s"; break
  fi
  if [ "$CB_MAX" != 0 ] && [ $((SECONDS - start)) -ge "$CB_MAX" ]; then
    reason="${CB_MAX}s limit"; break
  fi
  sleep 0.2
done
rc=0
if [ -n "$reason" ]; then
  echo "rtp-receive: stopping ($reason)"
  kill -INT "$gl" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$gl" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$gl" 2>/dev/null; then
    kill "$gl" 2>/dev/null || true
    cb_die "gst-launch did not finish within 10 s of the EOS; $CB_OUT may be incomplete"
  fi
fi
wait "$gl" || rc=$?
if [ $rc -ne 0 ]; then
  grep -E '^(ERROR|WARNING)|debug info|^[^/].*\.c\(' "$log" >&2 || true
  cb_die "gst-launch failed (exit $rc)"
fi
if ! grep -q '"level0" (element)' "$log"; then
  cb_die "no RTP audio arrived on port $CB_PORT"
fi
echo "rtp-receive: wrote $CB_OUT"
