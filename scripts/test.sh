#!/usr/bin/env bash
# The README's test command: set up, build both ways (setup.py and CMake), run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup_env.sh
cmake -S . -B build/cmake -G Ninja -DPython3_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build build/cmake -j "${MAX_JOBS:-2}" >/dev/null
export FASTSEP_REQUIRE_EXTENSION=1 FASTSEP_CMAKE_LIBRARY="$PWD/build/cmake/libfastsep_ops.so"
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
