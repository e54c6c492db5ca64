"""glibc's allocator kept from handing fastsep's large buffers back to the kernel after every call.

fastsep's stages allocate and free buffers of several to tens of MB per call (F's activations are 16 MB each at 4 s,
the vocoder's tens). glibc serves blocks above its mmap threshold (128 KiB at start, raised only as blocks are
freed) with fresh mmap()s and returns freed heap tops above its trim threshold to the kernel, so a call keeps
touching new pages: a page fault per 4 KiB, about a fifth of F's time in bfloat16 (its PReLU-residual pass took 4-8 ms
in place of ~2). Raising both thresholds at import keeps the freed pages in the process for the next call:
full mode of the bundled default on 4 s, bfloat16 on the 2-core AMX Xeon, 398 -> 359 ms; F 105-129 -> 66-72 ms
(BENCHMARKS.md). The cost is that memory freed by fastsep stays with the process (its peak, as before, is what
``benchmarks/bench_memory.py`` measures). ``FASTSEP_MALLOC=system`` (set before import) leaves glibc as it is; other
C libraries are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "configure", "configured"]

MMAP_THRESHOLD = 32 << 20   # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)
_state = {"configured": False}


def configure() -> bool:
    """Raise glibc's mmap and trim thresholds (once); False where it does not apply or was switched off."""
    if _state["configured"]:
        return True
    if os.environ.get("FASTSEP_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl and macOS have other allocators and no such knobs
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                   TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False
    _state["configured"] = ok
    return ok


def configured() -> bool:
    """Whether :func:`configure` changed glibc's thresholds in this process."""
    return _state["configured"]
