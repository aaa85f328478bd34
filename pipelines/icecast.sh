#!/usr/bin/env bash
# icecast.sh — speak a text as an Ogg stream on an Icecast server (shout2send paces it).
#   chatterboxsrc ! audioconvert ! audioresample ! vorbisenc ! oggmux
#     ! shout2send ip=… port=… password=… mount=…
#   --opus: … ! audioconvert ! audioresample ! opusenc ! oggmux ! shout2send …
# Usage: pipelines/icecast.sh [-m MODEL_DIR] [-t TEXT] [--host H] [-p PORT] [--password PW]
#                             [--mount /tts.ogg] [--opus] [--threads N]
#   --host  Icecast address (default 127.0.0.1)     -p  Icecast port (default 8000)
#   --password  the server's source password (default $CB_ICECAST_PASSWORD, else Debian's "hackme")
# Listen with e.g. `gst-play-1.0 http://127.0.0.1:8000/tts.ogg` or any Ogg-capable player.
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"
CB_PORT=8000
cb_parse_args "$@"
cb_make_src with-text
if [ "$CB_OPUS" = 1 ]; then enc=opusenc; else enc=vorbisenc; fi
cb_gst_launch "${cb_src[@]}" ! audioconvert ! audioresample ! "$enc" ! oggmux \
  ! shout2send "ip=$CB_HOST" "port=$CB_PORT" "password=$CB_PASSWORD" "mount=$CB_MOUNT"
