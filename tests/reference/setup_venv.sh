#!/usr/bin/env bash
# Creates the virtual environment the reference scripts run in (by hand, never by CI):
#   tests/reference/setup_venv.sh [VENV_DIR]      (default: tests/reference/.venv)
# Upstream chatterbox-tts 0.1.7 is installed with --no-deps on top of requirements-golden.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/.venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements-golden.txt"
"$venv/bin/pip" install -q --no-deps chatterbox-tts==0.1.7
"$venv/bin/python" -c "import chatterbox, torch; print('reference venv ready:', '$venv', 'torch', torch.__version__)"
