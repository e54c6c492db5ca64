"""Helpers shared by the benchmark files (kept out of conftest.py so that ``tests/conftest.py`` cannot shadow them)."""
from typing import Callable, Optional


def timing(benchmark, stat: str = "min") -> Optional[float]:
    """``benchmark``'s ``stat`` in seconds, or None under ``--benchmark-disable``: each case then runs once, untimed,
    which is how the test suite smoke-runs these files."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else getattr(stats.stats, stat)


def synced(device: str, fn: Callable) -> Callable:
    """``fn`` followed by a CUDA synchronisation on a CUDA ``device``: a case times its kernels, not their launch."""
    import torch

    def run(*args):
        out = fn(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run
