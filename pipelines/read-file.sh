#!/usr/bin/env bash
# read-file.sh — speak the contents of a UTF-8 text file (through chatterboxsrc's text sink pad).
#   filesrc location=FILE ! text/x-raw,format=utf8 ! chatterboxsrc ! audioconvert
#     ! audio/x-raw,format=S16LE ! wavenc ! filesink location=OUT
# Usage: pipelines/read-file.sh -i FILE [-m MODEL_DIR] [-o OUT.wav] [--threads N]
#   -i  text file to read (required)                 -o  output file (default: read.wav)
# Exits non-zero (and removes OUT) when synthesis fails.
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
CB_OUT=read.wav
cb_parse_args "$@"
[ -n "$CB_IN" ] || { cb_usage >&2; exit 2; }
[ -r "$CB_IN" ] || cb_die "cannot read $CB_IN"
cb_make_src no-text
if cb_gst_launch -q filesrc "location=$CB_IN" ! text/x-raw,format=utf8 ! "${cb_src[@]}" \
     ! audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink "location=$CB_OUT"; then
  echo "read-file: wrote $CB_OUT"
else
  rm -f "$CB_OUT"
  cb_die "synthesis failed (see above); no WAV written"
fi
