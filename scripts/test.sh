#!/usr/bin/env bash
# The README's test command: set up, build both ways (setup.py and CMake), run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup_env.sh
# The published implementations the tests compare against: lmnt-com/diffwave (its model module needs only torch and
# numpy; --no-deps keeps pip from touching torch), fast_bss_eval and mir_eval (BSS Eval SDR).
"$PY" -m pip install -q --no-deps diffwave==0.1.7 fast_bss_eval==0.1.4
"$PY" -m pip install -q mir_eval==0.8.2 decorator
cmake -S . -B build/cmake -G Ninja -DPython3_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build build/cmake -j "${MAX_JOBS:-2}" >/dev/null
export FASTSEP_REQUIRE_EXTENSION=1 FASTSEP_CMAKE_LIBRARY="$PWD/build/cmake/libfastsep_ops.so"
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
