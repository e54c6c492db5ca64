"""Which arithmetic Separate-And-Diffuse's vocoder and combiner run in: "float32", "bfloat16", or "auto".

"auto" takes bfloat16 only where it pays and nothing is lost: on a CPU with AMX (Intel's tile unit, where the
DiffWave stack multiplies ~2x and F's convolutions ~3x faster; the bundled default's evaluation table is the same to
0.001 dB in bfloat16, BENCHMARKS.md), and for the vocoder only when its channel count fills whole tiles (multiples of
32; narrower stacks take the vdpbf16ps path, which is no faster than float32). Everywhere else, CUDA included, it
is float32. The library's constructors default to float32 (an explicit, reproducible arithmetic); the CLI's
``--precision`` defaults to "auto", except ``fastsep eval``, whose figures are the reference ones.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["PRECISIONS", "amx_available", "resolve_vocoder_precision", "resolve_combiner_precision",
           "check_precision"]

PRECISIONS = ("float32", "bfloat16", "auto")
_TILE_CHANNELS = 32


def amx_available() -> bool:
    """True when fastsep's bfloat16 CPU kernel runs on AMX tiles here (FASTSEP_CPU_ISA can keep it off)."""
    from . import _ext

    return _ext.diffwave_bf16_variant() == "amx"


def check_precision(what: str, value) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"Separator: {what} must be one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return value


def _is_cpu(device: Optional[Union[str, torch.device]]) -> bool:
    return device is None or torch.device(device).type == "cpu"


def resolve_vocoder_precision(value: str, vocoder=None, device=None) -> str:
    """``value`` with "auto" decided for ``vocoder`` on ``device``: bfloat16 on an AMX CPU for a DiffWave whose
    residual channels are a multiple of 32, float32 otherwise."""
    check_precision("vocoder_precision", value)
    if value != "auto":
        return value
    channels = ((getattr(vocoder, "config", None) or {}).get("residual_channels") if vocoder is not None else None)
    if not _is_cpu(device) or not isinstance(channels, int) or channels % _TILE_CHANNELS:
        return "float32"
    return "bfloat16" if amx_available() else "float32"


def resolve_combiner_precision(value: str, device=None) -> str:
    """``value`` with "auto" decided for ``device``: bfloat16 on an AMX CPU (oneDNN's tile convolutions), float32
    otherwise."""
    check_precision("combiner_precision", value)
    if value != "auto":
        return value
    return "bfloat16" if _is_cpu(device) and amx_available() else "float32"
