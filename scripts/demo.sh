#!/usr/bin/env bash
# The README's first command: set up, then separate the bundled two-talker example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${PYTHON:-python3}" -m fastsep demo "$@"
