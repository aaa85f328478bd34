#!/usr/bin/env bash
# One command for all golden data: makes the pinned venv (tests/reference/.venv) when it is missing,
# then runs make_golden.py with any arguments given (default: rewrite tests/data/golden).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/.venv/bin/python" ] || "$here/setup_venv.sh" "$here/.venv"
exec "$here/.venv/bin/python" "$here/make_golden.py" "$@"
