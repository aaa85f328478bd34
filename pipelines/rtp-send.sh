#!/usr/bin/env bash
# rtp-send.sh — speak a text as RTP over UDP (paced to real time by udpsink), then exit.
#   L16 (default): chatterboxsrc ! audioconvert ! rtpL16pay ! udpsink host=… port=…
#   --opus:        chatterboxsrc ! audioconvert ! opusenc ! rtpopuspay ! udpsink host=… port=…
# Usage: pipelines/rtp-send.sh [-m MODEL_DIR] [-t TEXT] [--host H] [-p PORT] [--opus] [--threads N]
#   --host  receiver address (default 127.0.0.1)   -p  UDP port (default 5004)
# Receive with pipelines/rtp-receive.sh (same --port/--opus). RTP L16 here is 24 kHz mono,
# payload type 96; Opus uses clock-rate 48000 (RTP's fixed Opus clock), payload type 96.
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
CB_PORT=5004
cb_parse_args "$@"
cb_make_src with-text
if [ "$CB_OPUS" = 1 ]; then
  enc=(opusenc ! rtpopuspay pt=96)
else
  enc=(rtpL16pay pt=96)
fi
cb_gst_launch "${cb_src[@]}" ! audioconvert ! "${enc[@]}" \
  ! udpsink "host=$CB_HOST" "port=$CB_PORT"
