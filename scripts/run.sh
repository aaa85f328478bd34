#!/usr/bin/env bash
# The README's two commands (run as root on a fresh Debian 12 machine, or as a user with sudo):
#   scripts/run.sh demo ["text"] [out.wav]   install, build, find or download the model, speak to a WAV
#   scripts/run.sh test                      install, build, run the whole test suite (also under ASan/UBSan)
# CI runs `scripts/run.sh test` (.ci/run).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
# The CUDA toolkit lives outside PATH on Debian installs from NVIDIA; meson finds nvcc through PATH.
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

build () { # build <dir> [meson options...]
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@"
  fi
  ninja -C "$dir"
}

cmd_demo () {
  local text=${1:-"Hello from Chatterbox, speaking inside a GStreamer pipeline."}
  local out=${2:-chatterbox-demo.wav}
  cb_install_deps
  build build
  local dir
  if ! dir=$(build/engine/chatterbox-locate 2>/dev/null); then
    echo "demo: no Chatterbox model found locally; downloading ResembleAI/chatterbox into the Hugging Face cache"
    if ! python3 scripts/fetch-model.py; then
      build/engine/chatterbox-locate || true
      echo "demo: the model is not available, so nothing can be spoken (see above)." >&2
      exit 1
    fi
    dir=$(build/engine/chatterbox-locate)
  fi
  echo "demo: model in $dir"
  export GST_PLUGIN_PATH="$top/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  if gst-launch-1.0 -q chatterboxsrc model-location="$dir" text="$text" ! audioconvert ! wavenc ! filesink location="$out"; then
    echo "demo: wrote $out"
  else
    echo "demo: synthesis did not complete (see the error above); no WAV was written." >&2
    rm -f "$out"
    exit 1
  fi
}

# Runs one build directory's suite verbosely, keeps the log, and fails if any Check suite ran nothing.
run_suite () { # run_suite <dir> <label>
  local dir=$1 label=$2 log rc=0
  log="$dir/test-output.log"
  meson test -C "$dir" -v --print-errorlogs --num-processes 2 >"$log" 2>&1 || rc=$?
  cat "$log"
  echo "=== $label: results and Check summaries ==="
  python3 scripts/check-summary.py "$dir" || rc=1
  grep -E '^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): ' "$log" || true
  return $rc
}

cmd_test () {
  cb_install_deps
  build build
  local rc=0
  run_suite build "default build" || rc=1
  # Second build with AddressSanitizer + UndefinedBehaviorSanitizer so memory errors fail every run.
  build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled \
    -Dc_args=-fno-sanitize-recover=all -Dbuildtype=debugoptimized
  run_suite build-asan "ASan+UBSan build" || rc=1
  if [ $rc -eq 0 ]; then echo "ALL TESTS PASSED (default and sanitizer builds)"; else echo "TESTS FAILED" >&2; fi
  return $rc
}

case "${1:-}" in
  demo) shift; cmd_demo "$@" ;;
  test) shift; cmd_test "$@" ;;
  *) echo "usage: $0 demo [\"text\"] [out.wav] | test" >&2; exit 2 ;;
esac
