#!/usr/bin/env python3
"""Prints, per test of a meson build directory, its result and Check's summary line(s), read from
meson-logs/testlog.json; exits 1 if any Check suite ran no checks (a suite that silently runs
nothing must not pass — see shared/notes/toolchain.md on linking Check twice)."""
import json
import re
import sys

summary = re.compile(r"^\d+%: Checks: (\d+), Failures: \d+, Errors: \d+", re.M)
bad = 0
with open(sys.argv[1] + "/meson-logs/testlog.json") as f:
    for line in f:
        t = json.loads(line)
        found = summary.findall(t.get("stdout", "") or "")
        lines = [m.group(0) for m in summary.finditer(t.get("stdout", "") or "")]
        print(f"{t['name']:<44} {t['result']:<5} {'; '.join(lines) if lines else '(no Check suite)'}")
        if any(int(n) == 0 for n in found):
            print(f"{t['name']}: a Check suite ran no checks", file=sys.stderr)
            bad = 1
sys.exit(bad)
