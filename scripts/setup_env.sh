#!/usr/bin/env bash
# Sets up a fresh machine for fastsep: system tools, the pinned CPU torch, Python dependencies, and the native
# extension built against that torch. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${FASTSEP_TORCH_VERSION:-2.13.0}

if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v flite >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fastsep setup: installing espeak-ng and flite (speech synthesis for the synthetic corpus)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng flite >/dev/null
  else
    echo "fastsep setup: espeak-ng/flite missing and apt-get unavailable: corpus tests will be skipped" >&2
  fi
fi

# Pin torch first (never let a dependency resolve it to the registry's newest CUDA build), then the rest.
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi
"$PY" -m pip install -q numpy scipy safetensors tqdm soundfile pybind11 ninja pytest pytest-benchmark hypothesis \
  pesq pystoi matplotlib onnx onnxruntime
# The extension builds against the installed torch: no build isolation. Skipped when this tree is already installed
# and its compiled extension is newer than every C++/CUDA source and the build files (a rerun costs seconds, not the
# ~75 s of a rebuild); FASTSEP_REBUILD=1 forces it.
up_to_date() {
  "$PY" - <<'PYEOF' 2>/dev/null
import os, pathlib, sys
import fastsep
here = pathlib.Path.cwd()
if pathlib.Path(fastsep.__file__).resolve().parent != here / "fastsep":
    sys.exit(1)  # another copy of fastsep is installed: install this one
libs = list((here / "fastsep").glob("_C*.so"))
sources = [p for p in (here / "csrc").rglob("*") if p.is_file()] + [here / "setup.py", here / "CMakeLists.txt"]
newest = max(p.stat().st_mtime for p in sources)
sys.exit(0 if libs and min(p.stat().st_mtime for p in libs) >= newest else 1)
PYEOF
}
if [[ "${FASTSEP_REBUILD:-0}" != "1" ]] && up_to_date; then
  echo "fastsep setup: the compiled extension is up to date (FASTSEP_REBUILD=1 rebuilds it)"
else
  MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation --no-deps -e .
fi
