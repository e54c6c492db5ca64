"""fastsep: diffusion-refined speech separation with Separate-And-Diffuse (separator B, DiffWave vocoder GM, combiner F).

``import fastsep`` needs only torch, numpy and scipy; soundfile and torchaudio are optional. The fused kernels come
from a compiled extension when it is built (see README) and from pure-PyTorch references otherwise.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Before torch loads: fastsep.threads sets OpenMP's passive wait policy, read once when torch loads OpenMP.
from . import threads as _threads  # noqa: E402,F401
from . import allocator as _allocator  # noqa: E402

_allocator.configure()  # large buffers stay mapped between calls (fastsep.allocator; FASTSEP_MALLOC=system: off)
from . import ops  # noqa: E402  (loads the compiled library once, or warns once)

_LAZY = {"Separator": "fastsep.separator", "models": "fastsep.models", "metrics": "fastsep.metrics",
         "dsp": "fastsep.dsp", "bounds": "fastsep.bounds", "reference": "fastsep.reference"}

__all__ = ["ops", "__version__"] + list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if _LAZY[name].endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'fastsep' has no attribute {name!r}")
