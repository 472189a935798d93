#!/usr/bin/env bash
# Broken model files and bad arguments give a message and a non-zero exit,
# never a crash or a hang (see bad_input.py).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/bad_input.py"
