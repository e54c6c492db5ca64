#!/usr/bin/env bash
# Builds and links the whole CUDA extension (kernels and torch bindings) against a CUDA build of torch, on a machine
# without a GPU, and checks that the built library registers a CUDA kernel for every fastsep op.
#
#   bash scripts/cuda_build_check.sh
#
# It keeps its own virtual environment (build/cuda-venv, reused when its torch is the pinned one) so the CPU torch of
# the test suite is never touched, and builds into build/cuda-lib and build/cuda-temp (never in place: fastsep/_C.so
# stays the CPU build). Idempotent: a second run reuses the venv and setuptools' object files.
#
# Environment: FASTSEP_CUDA_TORCH (default 2.14.1, a CUDA 13 build whose major version matches the toolkit's nvcc),
# FASTSEP_CUDA_VENV (default build/cuda-venv), MAX_JOBS (default 2), FASTSEP_REQUIRE_CUDA_BUILD=1 turns "no nvcc
# here" from a skip into a failure (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH_VERSION=${FASTSEP_CUDA_TORCH:-2.14.1}
VENV=${FASTSEP_CUDA_VENV:-$ROOT/build/cuda-venv}
LIB_DIR=$ROOT/build/cuda-lib
TEMP_DIR=$ROOT/build/cuda-temp
say() { echo "cuda_build_check: $*"; }
die() { echo "cuda_build_check: FAILED: $*" >&2; exit 1; }

if ! command -v nvcc >/dev/null 2>&1; then
  [ "${FASTSEP_REQUIRE_CUDA_BUILD:-0}" = 1 ] && die "nvcc is not on PATH"
  say "nvcc is not on PATH: skipping the CUDA build check"
  exit 0
fi

# The nvcc on PATH may be a wrapper script (here: /usr/local/bin/nvcc exec's the toolkit's). torch derives CUDA_HOME
# from nvcc's folder, which would then be /usr/local, without cuda_runtime_api.h. nvcc's own dry run names the
# toolkit folder it really runs from (TOP=...), whatever wrappers or symlinks lead to it.
cuda_home() {
  local top
  top=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
  if [ -n "$top" ] && [ -e "$top/include/cuda_runtime_api.h" ]; then (cd "$top" && pwd -P); return; fi
  top=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  [ -e "$top/include/cuda_runtime_api.h" ] && { echo "$top"; return; }
  return 1
}
CUDA_HOME=$(cuda_home) || die "could not find the CUDA toolkit folder behind $(command -v nvcc)"
export CUDA_HOME
NVCC_MAJOR=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
say "toolkit $CUDA_HOME (CUDA $NVCC_MAJOR)"

torch_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TORCH_VERSION" <<'EOF' 2>/dev/null
import sys, torch
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] and torch.version.cuda else 1)
EOF
}
if ! torch_ok; then
  say "creating $VENV with torch==$TORCH_VERSION (CUDA build; a few minutes, ~5.5 GB)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  torch_ok || die "torch==$TORCH_VERSION in $VENV is not a CUDA build"
fi
"$VENV/bin/python" -m pip install -q setuptools wheel ninja numpy
PY="$VENV/bin/python"
TORCH_CUDA=$("$PY" -c "import torch; print(torch.version.cuda)")
say "torch $("$PY" -c "import torch; print(torch.__version__)") (CUDA $TORCH_CUDA)"
[ "${TORCH_CUDA%%.*}" = "$NVCC_MAJOR" ] || die "torch's CUDA $TORCH_CUDA does not match nvcc's major version $NVCC_MAJOR"

# torch's CUDA headers include library headers (cusparse.h, cublas_v2.h...) that a minimal toolkit lacks; the CUDA
# wheels torch depends on ship them under site-packages/nvidia/cu<major>/include.
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
WHEEL_INC="$SITE/nvidia/cu$NVCC_MAJOR/include"
[ -d "$WHEEL_INC" ] || WHEEL_INC=$(ls -d "$SITE"/nvidia/*/include 2>/dev/null | tr '\n' ':')
export CPATH="$WHEEL_INC${CPATH:+:$CPATH}"

say "building the CUDA extension into $LIB_DIR (log: build/cuda-build.log)"
start=$(date +%s)
if ! FASTSEP_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" setup.py -q build_ext --build-lib "$LIB_DIR" \
      --build-temp "$TEMP_DIR" >"$ROOT/build/cuda-build.log" 2>&1; then
  tail -60 "$ROOT/build/cuda-build.log" >&2
  die "setup.py build_ext with FASTSEP_CUDA=1"
fi
say "built in $(( $(date +%s) - start )) s"
LIB=$(ls "$LIB_DIR"/fastsep/_C*.so 2>/dev/null | head -1)
[ -n "$LIB" ] || die "no fastsep/_C*.so under $LIB_DIR"

# Without a GPU: load the library into the CUDA torch and read the dispatcher's registrations.
CUDA_VISIBLE_DEVICES= "$PY" "$ROOT/scripts/check_cuda_registrations.py" "$LIB"
