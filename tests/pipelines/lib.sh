# tests/pipelines/lib.sh — sourced by the pipeline tests (tests/pipelines/test-*.sh).
# shellcheck shell=bash
#
# Runs under `meson test` (tests/pipelines/meson.build sets CB_SOURCE_ROOT, CB_TEST_MODEL,
# GST_PLUGIN_PATH_1_0 = this build's gst/, a registry of its own, and the system plugin dir).
# Gives: $tmp (removed on success, kept on failure), fail/skip, cb_bg (background processes, each in
# its own process group, stopped on exit), wav_info, free_port, wait_listening, and the
# pipelines/common.sh helpers (cb_gst_launch, cb_gst_inspect, cb_asan).
#
# Sanitizer builds: the plugin there links libasan; gst-launch-1.0 does not, so common.sh preloads
# libasan into gst-launch-1.0/gst-inspect-1.0 (nothing else: python3, icecast2 and curl run plain).
# The pipelines then run with the suite's ASAN/UBSAN/LSAN options, leak detection included. Only
# the first registry scan runs with detect_leaks=0: it loads every system plugin in-process, and one
# of their libraries' constructors leaks a 16 KB GLib block (not our code).
set -euo pipefail

tp_name=$(basename "$0" .sh)
tp_top=${CB_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tp_pipelines=$tp_top/pipelines

fail () { echo "FAIL ($tp_name): $*" >&2; exit 1; }
fail_log () { cat "$1" >&2; shift; fail "$@"; } # fail_log LOG MESSAGE: shows LOG first
skip () { echo "SKIP ($tp_name): $*"; exit 77; }
note () { echo "-- $*"; }

[ -n "${GST_PLUGIN_PATH_1_0:-}" ] || fail "GST_PLUGIN_PATH_1_0 is not set; run through meson test"
[ -d "${CB_TEST_MODEL:-}" ] || fail "CB_TEST_MODEL is not a directory"
# The element tests' environment hides the system plugins; pipelines need them.
[ -n "${GST_PLUGIN_SYSTEM_PATH_1_0:-}" ] || unset GST_PLUGIN_SYSTEM_PATH_1_0
export GST_PLUGIN_PATH_1_0

# shellcheck source=pipelines/common.sh
source "$tp_pipelines/common.sh"

mkdir -p "${CB_TEST_TMPDIR:-/tmp}"
tmp=$(mktemp -d "${CB_TEST_TMPDIR:-/tmp}/$tp_name.XXXXXX")
tp_pgids=()

tp_cleanup () {
  local rc=$? pg
  for pg in "${tp_pgids[@]}"; do
    kill -TERM -- "-$pg" 2>/dev/null || continue
    for _ in $(seq 25); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then
    rm -rf "$tmp"
  else
    echo "(files kept in $tmp)" >&2
  fi
  exit $rc
}
trap tp_cleanup EXIT
trap 'exit 143' TERM INT

# cb_bg CMD...: starts CMD in the background in a new process group (setsid execs it, so its pid
# is the group id); sets tp_pid. tp_cleanup stops the whole group.
cb_bg () {
  setsid "$@" &
  tp_pid=$!
  tp_pgids+=("$tp_pid")
}

# tp_wait PID SECS: waits for a background process for at most SECS seconds; returns its status
# (124 on time-out, after stopping its group).
tp_wait () {
  local pid=$1 secs=$2
  for _ in $(seq $((secs * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 124
  fi
  wait "$pid"
}

# run_limited SECS CMD...: a foreground command with a time limit (124 on time-out).
run_limited () { local secs=$1; shift; timeout -k 5 "$secs" "$@"; }

# wav_info FILE: sets wav_rate wav_channels wav_bits wav_frames wav_seconds wav_rms wav_final.
wav_info () {
  local line
  line=$(python3 "$tp_top/tests/pipelines/wavinfo.py" "$1") || fail "$1 is not a readable WAV file"
  read -r wav_rate wav_channels wav_bits wav_frames wav_seconds wav_rms wav_final <<<"$line"
  note "$(basename "$1"): $wav_rate Hz, $wav_channels ch, $wav_bits bit, $wav_frames frames" \
       "($wav_seconds s), RMS $wav_rms, header finalised: $wav_final"
}

# Checks that a WAV is a complete, non-silent 24 kHz mono file.
check_wav () { # check_wav FILE
  wav_info "$1"
  [ "$wav_final" = 1 ] || fail "$1: WAV header not finalised (no EOS reached wavenc?)"
  [ "$wav_rate.$wav_channels" = 24000.1 ] || fail "$1: expected 24000 Hz mono"
  awk -v s="$wav_seconds" 'BEGIN { exit !(s >= 1.0) }' || fail "$1: only $wav_seconds s of audio"
  awk -v r="$wav_rms" 'BEGIN { exit !(r > 0.001) }' || fail "$1: silent (RMS $wav_rms)"
}

# check_level REF_RMS: the last wav_info's RMS is within 0.5–1.5× REF_RMS (a lossy codec keeps
# the level; a lost channel, a wrong downmix or a filter in the way would not).
check_level () {
  awk -v r="$wav_rms" -v ref="$1" 'BEGIN { exit !(r >= 0.5 * ref && r <= 1.5 * ref) }' \
    || fail "RMS $wav_rms is far from the reference's $1"
}

# free_port tcp|udp: a port that nothing on 127.0.0.1 uses right now (the kernel picks it).
free_port () {
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}

# wait_listening tcp|udp PORT SECS PID: waits until a socket is bound to PORT (listening, for TCP)
# while PID lives. Reads /proc/net/{tcp,udp}: local address column "ADDR:PORT" in hex, state 0A =
# LISTEN for TCP.
wait_listening () {
  local proto=$1 port=$2 secs=$3 pid=$4 hex
  hex=$(printf '%04X' "$port")
  for _ in $(seq $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    if awk -v p=":$hex" -v tcp="$([ "$proto" = tcp ] && echo 1)" \
         'NR > 1 && substr($2, length($2) - 4) == p && (!tcp || $4 == "0A") { f = 1 }
          END { exit !f }' "/proc/net/$proto" "/proc/net/${proto}6" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# LeakSanitizer: this directory's suppressions (third-party plugins' leaks) plus the suite's own.
tp_supp_suite="" tp_lsan=""
IFS=: read -r -a tp_opts <<<"${LSAN_OPTIONS:-}"
for o in "${tp_opts[@]}"; do
  case $o in
    suppressions=*) tp_supp_suite=${o#suppressions=} ;;
    ?*) tp_lsan+=":$o" ;;
  esac
done
cat "$tp_top/tests/pipelines/lsan.supp" ${tp_supp_suite:+"$tp_supp_suite"} >"$tmp/lsan.supp"
export LSAN_OPTIONS="suppressions=$tmp/lsan.supp$tp_lsan"

# The plugin must load (and, in a sanitizer build, this first run builds the registry with leak
# detection off; see above).
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" cb_gst_inspect chatterboxsrc \
  >"$tmp/inspect.txt" 2>&1 \
  || fail_log "$tmp/inspect.txt" "chatterboxsrc does not load from $GST_PLUGIN_PATH_1_0"
if [ -n "$cb_asan" ]; then
  note "sanitizer build: gst-launch-1.0 runs with LD_PRELOAD=$cb_asan"
fi

# say_ref TEXT OUT: the reference WAV (16-bit) of TEXT from say-to-wav.sh.
say_ref () {
  run_limited 60 "$tp_pipelines/say-to-wav.sh" -m "$CB_TEST_MODEL" -t "$1" -o "$2" \
    >"$tmp/ref.log" 2>&1 || fail_log "$tmp/ref.log" "say-to-wav.sh failed for the reference"
}
