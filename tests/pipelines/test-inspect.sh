#!/usr/bin/env bash
# gst-inspect-1.0 chatterboxsrc shows every property of the element with its blurb, range and
# default, the `recompile` action signal and both pad templates.
# shellcheck source=tests/pipelines/lib.sh
source "$(dirname "$0")/lib.sh"
out="$tmp/inspect.txt"
for prop in text model-location voice exaggeration cfg-weight temperature min-p top-p \
            repetition-penalty seed max-tokens chunk-tokens alignment-guard flush-timeout device \
            precision threads is-live; do
  grep -qE "^  $prop +: " "$out" || fail "gst-inspect lists no property '$prop'"
done
grep -q 'Range: -1 - ' "$out" || fail "the seed range (-1 = random) is not shown"
grep -q '"recompile"' "$out" || fail "the recompile action signal is not listed"
grep -q 'SRC template' "$out" || fail "no src pad template"
grep -q 'SINK template' "$out" || fail "no sink pad template"
grep -q 'text/x-raw' "$out" || fail "the sink template does not take text/x-raw"
grep -q '(1): cpu' "$out" || fail "the device enum values are not listed"
echo "PASS: inspect"
