#!/usr/bin/env bash
# The one place that names the Debian packages chatterboxsrc needs to build, test and run.
# Used by scripts/run.sh (the README's two commands) and therefore by CI.
set -euo pipefail

CB_APT_PACKAGES=(
  # build
  build-essential meson ninja-build pkg-config
  # engine: GLib/GObject/GIO, JSON (tokenizer.json, safetensors headers), BLAS, zip (conds.pt)
  libglib2.0-dev libjson-glib-dev libopenblas-dev libzip-dev
  # element and its tests
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good check
  # model download (scripts/fetch-model.py, standard library only) and its loopback fake-hub test
  python3 ca-certificates
  # example pipelines and their tests (pipelines/, tests/pipelines/): RTP L16/Opus, Vorbis/Opus in
  # Ogg and shout2send come from plugins-base/-good above; a local Icecast server to stream to
  icecast2
)

cb_install_deps () {
  local missing=()
  for p in "${CB_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#CB_APT_PACKAGES[@]} Debian packages present"
    return 0
  fi
  echo "deps: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cb_install_deps
fi
