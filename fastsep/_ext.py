"""Finds and loads the compiled operator library (``fastsep._C``), once.

The library registers the ``torch.ops.fastsep`` operators. Without it fastsep still works on the pure-PyTorch
references, and says once how to build the fast path.
"""
from __future__ import annotations

import functools
import glob
import os
import warnings
from typing import Optional

import torch

_BUILD_HINT = (
    "fastsep: the compiled extension was not found, so the pure-PyTorch reference ops are used (correct, slower). "
    "Build it with `pip install --no-build-isolation -e .` in the fastsep checkout "
    "(set FASTSEP_CUDA=1 to force the CUDA kernels), or point FASTSEP_LIBRARY at a library built with CMake. "
    "Set FASTSEP_NO_EXTENSION=1 to silence this and use the references on purpose."
)

_state = {"tried": False, "path": None, "error": None}


def _candidates() -> list:
    env = os.environ.get("FASTSEP_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(glob.glob(os.path.join(here, "_C*.so")) + glob.glob(os.path.join(here, "_C*.pyd")))


def load() -> Optional[str]:
    """Load the operator library if present; returns its path, or None when running on the references."""
    if _state["tried"]:
        return _state["path"]
    _state["tried"] = True
    if os.environ.get("FASTSEP_NO_EXTENSION", "0") == "1":
        return None
    for path in _candidates():
        try:
            torch.ops.load_library(path)
        except (OSError, RuntimeError) as exc:  # a stale build against another torch, say
            _state["error"] = f"{path}: {exc}"
            continue
        _state["path"] = path
        return path
    detail = f" (last error: {_state['error']})" if _state["error"] else ""
    warnings.warn(_BUILD_HINT + detail, RuntimeWarning, stacklevel=3)
    return None


def available() -> bool:
    """True when the compiled operators are registered."""
    return load() is not None


def diffwave_cpu_variant() -> Optional[str]:
    """The ISA variant of the CPU DiffWave kernel for this machine ("avx512", "avx2", "baseline"; the environment
    variable FASTSEP_CPU_ISA=avx2|baseline caps it), or None without the extension."""
    if not available():
        return None
    return str(torch.ops.fastsep.diffwave_cpu_variant())


@functools.lru_cache(maxsize=None)
def diffwave_bf16_available() -> bool:
    """True when the CPU DiffWave stack can multiply in bfloat16 here (the extension, and a CPU with AVX512-BF16;
    AMX is used on top where present, see :func:`diffwave_bf16_variant`)."""
    return available() and bool(torch.ops.fastsep.diffwave_bf16_available())


def diffwave_bf16_variant() -> Optional[str]:
    """How the bfloat16 CPU DiffWave stack multiplies here: "amx" (the tile unit; used for channel counts that are
    multiples of 32, the vdpbf16ps path otherwise), "avx512bf16", "none" (no such CPU), or None without the extension.
    FASTSEP_CPU_ISA=avx512bf16 keeps it off the tile unit."""
    if not available():
        return None
    return str(torch.ops.fastsep.diffwave_bf16_variant())


def has_cuda_kernels() -> bool:
    """True when the loaded library carries the CUDA kernels (built against a CUDA torch)."""
    if not available():
        return False
    return bool(torch.ops.fastsep.built_with_cuda())


# The names of the CUDA kernels' limits; their values are stated once, in csrc/cuda/*.cu, and read through the op
# fastsep::cuda_limit so that Python never restates a number.
CUDA_LIMIT_NAMES = ("xcorr_max_n_fft_float32", "xcorr_max_n_fft_float64", "diffwave_max_channels", "diffwave_max_batch")


@functools.lru_cache(maxsize=None)
def cuda_limits() -> dict:
    """The CUDA kernels' input limits ({name: int}, see CUDA_LIMIT_NAMES), or {} when no CUDA kernels are loaded.

    Inputs beyond a limit are computed by the reference on CUDA (fastsep.ops routes them there)."""
    if not has_cuda_kernels():
        return {}
    return {name: int(torch.ops.fastsep.cuda_limit(name)) for name in CUDA_LIMIT_NAMES}
