#!/usr/bin/env bash
# The model download path end to end against a fake hub on loopback: scripts/fetch-model.py fills the
# Hugging Face cache layout under HF_HOME honouring HF_ENDPOINT, chatterbox-locate finds the snapshot,
# and an unreachable hub gives the clear not-found message with exit status 2.
# Usage: test-fetch-model.sh <source-root> <chatterbox-locate binary>
set -euo pipefail
src=$1
locate=$2
tmp=$(mktemp -d)
hub_pid=
cleanup () { [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail () { echo "FAIL: $*"; exit 1; }

mkdir -p "$tmp/expect"
coproc HUB { exec python3 "$src/tests/fetch/fake_hub.py" "$tmp/expect"; }
hub_pid=$HUB_PID
read -r port <&"${HUB[0]}"
[ -n "$port" ] || fail "fake hub did not start"

unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE CHATTERBOX_MODEL_DIR XDG_CACHE_HOME
export HF_HOME="$tmp/hf" HF_ENDPOINT="http://127.0.0.1:$port"

# Nothing there yet: the locator says where it looked and how to download.
if out=$("$locate" 2>&1); then fail "locate succeeded on an empty cache: $out"; fi
grep -q "$tmp/hf/hub" <<<"$out" || fail "not-found message does not name the cache: $out"
grep -q "fetch-model" <<<"$out" || fail "not-found message does not say how to download: $out"

snap=$(python3 "$src/scripts/fetch-model.py" 2>/dev/null) || fail "fetch-model.py failed"
repo="$tmp/hf/hub/models--ResembleAI--chatterbox"
[ "$snap" = "$repo/snapshots/0123456789abcdef0123456789abcdef01234567" ] || fail "unexpected snapshot $snap"
[ "$(cat "$repo/refs/main")" = "0123456789abcdef0123456789abcdef01234567" ] || fail "refs/main not written"
checked=0
for f in ve.safetensors t3_cfg.safetensors s3gen.safetensors tokenizer.json conds.pt; do
  [ -L "$snap/$f" ] || fail "$f is not a symlink into blobs/"
  cmp -s "$snap/$f" "$tmp/expect/$f" || fail "$f differs from what the hub served"
  checked=$((checked + 1))
done
found=$("$locate") || fail "locate did not find the downloaded snapshot"
[ "$found" = "$snap" ] || fail "locate found $found, expected $snap"

# Second run: already present, nothing re-downloaded, same answer.
snap2=$(python3 "$src/scripts/fetch-model.py" 2>/dev/null) || fail "second fetch failed"
[ "$snap2" = "$snap" ] || fail "second fetch gave $snap2"

# An unreachable hub: exit status 2 and a message naming the endpoint and what to do.
kill "$hub_pid"; wait "$hub_pid" 2>/dev/null || true; hub_pid=
set +e
msg=$(HF_HOME="$tmp/hf2" python3 "$src/scripts/fetch-model.py" 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unreachable hub: exit status $rc, expected 2 ($msg)"
grep -q "cannot reach the model on http://127.0.0.1:$port" <<<"$msg" || fail "unclear message: $msg"
grep -q "CHATTERBOX_MODEL_DIR" <<<"$msg" || fail "message does not say what to do: $msg"

echo "fetch-model: $checked files fetched from the fake hub and located; unreachable hub reported"
