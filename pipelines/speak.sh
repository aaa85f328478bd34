#!/usr/bin/env bash
# speak.sh — speak a text on the default sound output.
#   chatterboxsrc text=… ! audioconvert ! audioresample ! autoaudiosink
# Usage: pipelines/speak.sh [-m MODEL_DIR] [-t TEXT] [--threads N]
# CB_AUDIO_SINK replaces the sink (e.g. "pulsesink", or "fakesink sync=true" without a sound card).
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
cb_parse_args "$@"
cb_make_src with-text
read -r -a sink <<<"${CB_AUDIO_SINK:-autoaudiosink}"
cb_gst_launch "${cb_src[@]}" ! audioconvert ! audioresample ! "${sink[@]}"
