#!/usr/bin/env bash
# pipelines/icecast.sh against a private icecast2 on 127.0.0.1 (free port, config, logs in a temp
# dir; as root it drops to nobody via <changeowner>, since icecast2 refuses to run as root): a
# listener (python3 urllib) records the mount; the recording must be Ogg ("OggS"), decode with
# oggdemux ! vorbisdec (opusdec with --opus) to 24 kHz audio about as long and as loud as
# say-to-wav.sh's for the same text. icecast2 is always stopped (trap).
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
opus=(); dec=vorbisdec; mount=/tts.ogg
if [ "${1:-}" = --opus ]; then opus=(--opus); dec=opusdec; mount=/tts.opus; fi
command -v icecast2 >/dev/null \
  || skip "icecast2 is not installed (bash scripts/deps.sh installs it)"
text="Streaming speech to Icecast."

say_ref "$text" "$tmp/ref.wav"
check_wav "$tmp/ref.wav"
ref_frames=$wav_frames ref_rms=$wav_rms

port=$(free_port tcp)
password=pw$RANDOM$RANDOM
mkdir -p "$tmp/ice/log"
chmod 755 "$tmp" "$tmp/ice"
owner=""
if [ "$(id -u)" = 0 ]; then
  chown nobody "$tmp/ice/log"
  owner="<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
fi
cat >"$tmp/ice/icecast.xml" <<XML
<icecast>
  <location>test</location><admin>test@localhost</admin><hostname>127.0.0.1</hostname>
  <limits><clients>4</clients><sources>2</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size></limits>
  <authentication><source-password>$password</source-password>
    <admin-user>admin</admin-user><admin-password>$password</admin-password></authentication>
  <listen-socket><port>$port</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths><basedir>$tmp/ice</basedir><logdir>$tmp/ice/log</logdir>
    <pidfile>$tmp/ice/log/icecast.pid</pidfile>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>$owner</security>
</icecast>
XML
cb_bg icecast2 -c "$tmp/ice/icecast.xml" >"$tmp/ice/stdout.log" 2>&1
ice=$tp_pid
wait_listening tcp "$port" 20 "$ice" \
  || { cat "$tmp/ice/stdout.log" "$tmp/ice/log/error.log" >&2 2>/dev/null || true
       fail "icecast2 did not start on port $port"; }
note "icecast2 listening on 127.0.0.1:$port"

# The listener: polls until the mount exists (it appears when shout2send connects), then records
# until the server closes the stream (source gone).
cb_bg python3 -c '
import sys, time, urllib.request
url, out, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + limit
while True:
    try:
        r = urllib.request.urlopen(url, timeout=10)
        break
    except OSError as e:
        if time.monotonic() > end:
            sys.exit("listener: %s never became available: %s" % (url, e))
        time.sleep(0.1)
n = 0
with open(out, "wb") as f:
    while True:
        b = r.read1(65536)
        if not b:
            break
        f.write(b)
        n += len(b)
print("listener: recorded %d bytes" % n)' "http://127.0.0.1:$port$mount" "$tmp/got.ogg" 40 \
  >"$tmp/listener.log" 2>&1
listener=$tp_pid

t0=$SECONDS
run_limited 60 "$tp_pipelines/icecast.sh" "${opus[@]}" -m "$CB_TEST_MODEL" -t "$text" -p "$port" \
  --password "$password" --mount "$mount" >"$tmp/send.log" 2>&1 \
  || { cat "$tmp/send.log" "$tmp/ice/log/error.log" >&2; fail "icecast.sh failed"; }
note "icecast.sh done in $((SECONDS - t0)) s (shout2send paces to real time)"
rc=0; tp_wait "$listener" 20 || rc=$?
cat "$tmp/listener.log"
[ $rc -eq 0 ] || fail "the listener failed (status $rc)"

size=$(stat -c %s "$tmp/got.ogg")
[ "$size" -ge 4096 ] || fail "recorded only $size bytes"
[ "$(head -c 4 "$tmp/got.ogg")" = OggS ] || fail "the recording does not start with OggS"
run_limited 60 "${cb_launch[@]}" -q filesrc "location=$tmp/got.ogg" ! oggdemux ! "$dec" \
  ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=24000,channels=1 ! wavenc \
  ! filesink "location=$tmp/got.wav" >"$tmp/decode.log" 2>&1 \
  || fail_log "$tmp/decode.log" "the recording does not decode with oggdemux ! $dec"
check_wav "$tmp/got.wav"
check_level "$ref_rms"
# The listener joins once the mount exists; burst-on-connect sends it what it missed.
awk -v a="$wav_frames" -v b="$ref_frames" 'BEGIN { exit !(a >= 0.8 * b && a <= b + 4800) }' \
  || fail "decoded $wav_frames frames, the text gives $ref_frames"
note "recorded $size bytes of Ogg; decoded $wav_frames frames of $ref_frames"
echo "PASS: icecast ${opus[*]:-vorbis}"
