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
"$PY" -m pip install -q numpy scipy safetensors tqdm soundfile pybind11 ninja pytest pytest-benchmark hypothesis
# The extension builds against the installed torch: no build isolation.
MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation --no-deps -e .
