"""Which arithmetic Separate-And-Diffuse's vocoder and combiner run in: "float32", "bfloat16", or "auto".

"auto" takes bfloat16 only where it pays and nothing is lost:

- on a CPU with AMX (Intel's tile unit, Sapphire Rapids and later), where the DiffWave stack multiplies ~2x and F's
  convolutions ~3x faster; the vocoder only when its channel count fills whole tiles (multiples of 32);
- on an AMD CPU with AVX512-BF16 (Zen 4 and later), whose vdpbf16ps does twice the multiply-adds of a float32 FMA per
  cycle: the bundled default's vocoder 1.5x and F 1.9x faster on a Zen 4 EPYC (BENCHMARKS.md, session 28); the
  vocoder when its channels are a multiple of 4 (the kernel's pairs of channel pairs).

The bundled default's evaluation table is the same to 0.001 dB in bfloat16 (AMX, and vdpbf16ps: full mode on
recorded 2.035 dB in both, per mixture within 0.005 dB). On Intel's AVX512-BF16 without AMX the vdpbf16ps path was
no faster than float32 (measured on a Sapphire Rapids with AMX kept off), so it stays float32 there, as everywhere
else, CUDA included. The library's constructors default to float32 (an explicit, reproducible arithmetic); the CLI's
``--precision`` defaults to "auto", except ``fastsep eval``, whose figures are the reference ones.
"""
from __future__ import annotations

import functools
from typing import Optional, Union

import torch

__all__ = ["PRECISIONS", "amx_available", "amd_bf16_available", "resolve_vocoder_precision",
           "resolve_combiner_precision", "check_precision"]

PRECISIONS = ("float32", "bfloat16", "auto")
_TILE_CHANNELS = 32
_PAIR_CHANNELS = 4  # the vdpbf16ps kernel's channel granularity (fastsep.ops.diffwave_stack)


def amx_available() -> bool:
    """True when fastsep's bfloat16 CPU kernel runs on AMX tiles here (FASTSEP_CPU_ISA can keep it off)."""
    from . import _ext

    return _ext.diffwave_bf16_variant() == "amx"


@functools.lru_cache(maxsize=1)
def _cpu_vendor() -> str:
    """The CPU's vendor string as Linux reports it ("GenuineIntel", "AuthenticAMD"), or "" where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def amd_bf16_available() -> bool:
    """True when fastsep's bfloat16 CPU kernel runs on vdpbf16ps on an AMD CPU (Zen 4 and later), where it is faster
    than float32; False with AMX (see :func:`amx_available`), on Intel without AMX, or without AVX512-BF16."""
    from . import _ext

    return _ext.diffwave_bf16_variant() == "avx512bf16" and _cpu_vendor() == "AuthenticAMD"


def check_precision(what: str, value) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"Separator: {what} must be one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return value


def _is_cpu(device: Optional[Union[str, torch.device]]) -> bool:
    return device is None or torch.device(device).type == "cpu"


def resolve_vocoder_precision(value: str, vocoder=None, device=None) -> str:
    """``value`` with "auto" decided for ``vocoder`` on ``device``: bfloat16 on an AMX CPU for a DiffWave whose
    residual channels are a multiple of 32, or on an AMD CPU with AVX512-BF16 for one whose channels are a multiple
    of 4; float32 otherwise."""
    check_precision("vocoder_precision", value)
    if value != "auto":
        return value
    channels = ((getattr(vocoder, "config", None) or {}).get("residual_channels") if vocoder is not None else None)
    if not _is_cpu(device) or not isinstance(channels, int):
        return "float32"
    if amx_available():
        return "float32" if channels % _TILE_CHANNELS else "bfloat16"
    return "bfloat16" if channels % _PAIR_CHANNELS == 0 and amd_bf16_available() else "float32"


def resolve_combiner_precision(value: str, device=None) -> str:
    """``value`` with "auto" decided for ``device``: bfloat16 on a CPU with AMX or an AMD CPU with AVX512-BF16
    (oneDNN's bfloat16 convolutions, ~3x and ~1.9x faster), float32 otherwise."""
    check_precision("combiner_precision", value)
    if value != "auto":
        return value
    return "bfloat16" if _is_cpu(device) and (amx_available() or amd_bf16_available()) else "float32"
