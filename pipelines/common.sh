# pipelines/common.sh — sourced by every example pipeline script; not run on its own.
# shellcheck shell=bash disable=SC2034 # the CB_* settings are read by the scripts that source this
#
# Gives each script: option parsing (cb_parse_args), the chatterboxsrc part of the pipeline
# (cb_src, an array), the plugin path of this checkout's build, and cb_gst_launch, which runs
# gst-launch-1.0 (with the sanitizer runtime preloaded when the plugin comes from an ASan build).
#
# Environment knobs (all optional):
#   CB_BUILD_DIR        build directory whose gst/ holds libgstchatterbox.so; without it,
#                       <repo>/build when GST_PLUGIN_PATH is unset. Ignored when GST_PLUGIN_PATH_1_0
#                       is set (as the test suite does).
#   CHATTERBOX_MODEL_DIR model directory when --model is not given (the element's own default)
#   CB_SRC_PROPS        extra chatterboxsrc properties, e.g. "threads=2" (split on spaces)
#   CB_AUDIO_SINK       audio sink of speak.sh (default: autoaudiosink)
#   GST_LAUNCH          the gst-launch binary (default: gst-launch-1.0)

cb_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# This checkout's plugin: CB_BUILD_DIR's, or <repo>/build's unless a plugin path is already set.
if [ -z "${GST_PLUGIN_PATH_1_0:-}" ]; then
  if [ -n "${CB_BUILD_DIR:-}" ]; then
    [ -f "$CB_BUILD_DIR/gst/libgstchatterbox.so" ] || cb_die_early=1
    export GST_PLUGIN_PATH="$CB_BUILD_DIR/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  elif [ -z "${GST_PLUGIN_PATH:-}" ] && [ -f "$cb_top/build/gst/libgstchatterbox.so" ]; then
    export GST_PLUGIN_PATH="$cb_top/build/gst"
  fi
fi

# Defaults; scripts may change them before calling cb_parse_args.
CB_TEXT="Hello from Chatterbox, speaking inside a GStreamer pipeline."
CB_MODEL=${CHATTERBOX_MODEL_DIR:-}
CB_OUT=""
CB_IN=""
CB_HOST=127.0.0.1
CB_PORT=""
CB_OPUS=0
CB_THREADS=""
CB_PASSWORD=${CB_ICECAST_PASSWORD:-hackme}
CB_MOUNT=/tts.ogg
CB_IDLE=0
CB_MAX=0

cb_die () { echo "$(basename "$0"): $*" >&2; exit 1; }
[ -z "${cb_die_early:-}" ] || cb_die "CB_BUILD_DIR=$CB_BUILD_DIR has no gst/libgstchatterbox.so"

# Prints the calling script's header comment (its lines 2.. up to the first non-comment) as usage.
cb_usage () {
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "$0"
}

cb_parse_args () {
  while [ $# -gt 0 ]; do
    case "$1" in
      -m|--model) CB_MODEL=${2?}; shift 2 ;;
      -t|--text) CB_TEXT=${2?}; shift 2 ;;
      -o|--out) CB_OUT=${2?}; shift 2 ;;
      -i|--in) CB_IN=${2?}; shift 2 ;;
      --host) CB_HOST=${2?}; shift 2 ;;
      -p|--port) CB_PORT=${2?}; shift 2 ;;
      --opus) CB_OPUS=1; shift ;;
      --threads) CB_THREADS=${2?}; shift 2 ;;
      --password) CB_PASSWORD=${2?}; shift 2 ;;
      --mount) CB_MOUNT=${2?}; shift 2 ;;
      --idle) CB_IDLE=${2?}; shift 2 ;;
      --max) CB_MAX=${2?}; shift 2 ;;
      -h|--help) cb_usage; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument '$1'" >&2; cb_usage >&2; exit 2 ;;
    esac
  done
}

# cb_src: the chatterboxsrc element and its properties, one array element per gst-launch word
# (gst-launch escapes each argument, so spaces and quotes in the text are safe). Without
# "with-text", the text property is left out (the text comes from the sink pad).
cb_make_src () { # cb_make_src [with-text|no-text]
  cb_src=(chatterboxsrc)
  [ "${1:-with-text}" = no-text ] || cb_src+=("text=$CB_TEXT")
  [ -z "$CB_MODEL" ] || cb_src+=("model-location=$CB_MODEL")
  [ -z "$CB_THREADS" ] || cb_src+=("threads=$CB_THREADS")
  local p
  # shellcheck disable=SC2086 # split on purpose: "prop=value prop=value"
  for p in ${CB_SRC_PROPS:-}; do cb_src+=("$p"); done
}

# The plugin file gst-launch will load (first match on the plugin path), or nothing.
cb_plugin_file () {
  local path=${GST_PLUGIN_PATH_1_0:-${GST_PLUGIN_PATH:-}} d
  local IFS=:
  for d in $path; do
    if [ -f "$d/libgstchatterbox.so" ]; then echo "$d/libgstchatterbox.so"; return 0; fi
    if [ -f "$d" ] && [ "$(basename "$d")" = libgstchatterbox.so ]; then echo "$d"; return 0; fi
  done
  return 1
}

# A plugin built with -Db_sanitize=address needs the ASan runtime loaded first in the process
# (gst-launch-1.0 itself is not instrumented): print the libasan path to preload, if any.
cb_asan_runtime () {
  local plugin
  plugin=$(cb_plugin_file) || return 0
  ldd "$plugin" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }'
}

# cb_launch: the command that runs gst-launch-1.0, as an array (a script that backgrounds it gets
# gst-launch's own pid in $!, since env execs it). `env --default-signal=INT`: a command a script
# starts in the background inherits SIGINT as ignored, and `gst-launch-1.0 -e` could then not be
# stopped with an EOS.
cb_launch=(env --default-signal=INT)
cb_asan=$(cb_asan_runtime)
[ -z "$cb_asan" ] || cb_launch+=("LD_PRELOAD=$cb_asan${LD_PRELOAD:+:$LD_PRELOAD}")
cb_inspect=("${cb_launch[@]}" gst-inspect-1.0)
cb_launch+=("${GST_LAUNCH:-gst-launch-1.0}")

cb_gst_launch () { "${cb_launch[@]}" "$@"; }
cb_gst_inspect () { "${cb_inspect[@]}" "$@"; }
