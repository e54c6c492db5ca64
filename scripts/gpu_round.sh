#!/usr/bin/env bash
# One command for a GPU machine: build the CUDA extension against the installed CUDA torch, run the CUDA tests, run
# the benchmarks, and leave logs and JSON tables in one folder.
#
#   bash scripts/gpu_round.sh [RESULTS_DIR]        (default: $OUT if set, else results/gpu)
#
# Nothing is downloaded: it uses the machine's torch, pytest, pytest-benchmark and hypothesis.
set -uo pipefail
cd "$(dirname "$0")/.."
RES=${1:-${OUT:-results/gpu}}
mkdir -p "$RES"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FASTSEP_REQUIRE_EXTENSION=1
status=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$RES/device.txt" 2>&1
cat "$RES/device.txt"

# The GPU machines have no network: the reference DiffWave package (for bench_diffwave's reference case) comes from
# wheels/ when a session carried it there (pip download --no-deps diffwave==0.1.7 -d wheels/ and pip wheel it there beforehand: an sdist would need a build backend).
if ! "$PY" -c "import diffwave" 2>/dev/null; then
  ref=$(ls wheels/diffwave-* 2>/dev/null | head -1)
  if [ -n "$ref" ]; then "$PY" -m pip install -q --no-deps --no-index --no-build-isolation "$ref" || echo "could not install $ref"
  else echo "note: diffwave (reference package) not installed and not in wheels/: bench_diffwave skips its reference case"; fi
fi

# The system compiler, whose libstdc++ is the one the Python process loads: a GPU image's CXX pointed at a separately
# built GCC that linked its C++ runtime statically, and every extension error message then segfaulted (setup.py now
# refuses such a build). FASTSEP_CC / FASTSEP_CXX override.
export CC=${FASTSEP_CC:-gcc} CXX=${FASTSEP_CXX:-g++}
echo "== build (CUDA kernels for the visible GPU) with $CXX"
start=$(date +%s)
FASTSEP_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} "$PY" setup.py build_ext --inplace >"$RES/build.log" 2>&1 || {
  echo "build failed"; tail -40 "$RES/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"
"$PY" -c "from fastsep import _ext; assert _ext.has_cuda_kernels(), 'CUDA kernels not registered'; print('CUDA kernels loaded')"

echo "== CUDA and CPU tests (one pytest per file, so that a crash in one file cannot hide the others' results)"
for t in tests/test_ops.py tests/test_diffwave.py tests/test_combiner.py tests/test_separator.py tests/test_default_bundle.py \
         tests/test_sampler_ops.py; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .py)
  "$PY" -X faulthandler -m pytest -q -rfE --tb=short -p no:cacheprovider "$t" --junitxml="$RES/$name.xml" \
    >"$RES/$name.log" 2>&1
  rc=$?
  echo "$t: exit $rc; $(tail -1 "$RES/$name.log")"
  if [ "$rc" != 0 ]; then status=1; grep -E "^(FAILED|ERROR)|Fatal Python error|File .*tests/" "$RES/$name.log" | head -20; fi
done

echo "== benchmarks: ops (full sweep)"
FASTSEP_BENCH_FULL=1 FASTSEP_BENCH_JSON="$RES/bench_ops.json" "$PY" -m pytest -q -p no:cacheprovider \
  benchmarks/bench_ops.py -k "cuda" --benchmark-json="$RES/bench_ops_raw.json" 2>&1 \
  | grep -A200 "fastsep: fused" | grep -v "^--\|^Name\|^test_" | head -80 | tee "$RES/bench_ops.txt"

for bench in benchmarks/bench_diffwave.py benchmarks/bench_pipeline.py; do
  [ -f "$bench" ] || continue
  name=$(basename "$bench" .py)
  echo "== benchmarks: $name"
  FASTSEP_BENCH_FULL=1 FASTSEP_BENCH_JSON="$RES/$name.json" "$PY" -m pytest -q -s -p no:cacheprovider "$bench" \
    >"$RES/$name.log" 2>&1 || status=1
  tail -40 "$RES/$name.log"
done
echo "== fastsep bench: the bundled default on the GPU (every mode, stage times, float32)"
"$PY" -m fastsep bench --device cuda --lengths 4,60 --batch-sizes 1,8,32 --repeats 5 --no-roofline \
  --json "$RES/bench_default_cuda.json" >"$RES/bench_default_cuda.log" 2>&1 || status=1
tail -40 "$RES/bench_default_cuda.log"
exit $status
