#!/usr/bin/env bash
# say-to-wav.sh — speak a text into a 16-bit 24 kHz mono WAV file.
#   chatterboxsrc text=… ! audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink
# Usage: pipelines/say-to-wav.sh [-m MODEL_DIR] [-t TEXT] [-o OUT.wav] [--threads N]
#   -m  model directory (default: $CHATTERBOX_MODEL_DIR, then the Hugging Face cache)
#   -t  text to speak (default: a greeting)
#   -o  output file (default: say.wav)
# Exits non-zero (and removes OUT) when synthesis fails.
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
CB_OUT=say.wav
cb_parse_args "$@"
cb_make_src with-text
if cb_gst_launch -q "${cb_src[@]}" ! audioconvert ! audio/x-raw,format=S16LE ! wavenc \
     ! filesink "location=$CB_OUT"; then
  echo "say-to-wav: wrote $CB_OUT"
else
  rm -f "$CB_OUT"
  cb_die "synthesis failed (see above); no WAV written"
fi
