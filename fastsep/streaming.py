"""Resampling in blocks, so that files of any length are read, resampled, separated and written with memory bounded
by a block, not by the recording.

:func:`resample_block` gives exactly the samples ``scipy.signal.resample_poly`` gives for the whole signal, from a
block plus a margin on each side: the polyphase filter is shift-invariant for shifts by a whole period (``down``
input samples <-> ``up`` output samples), its reach is finite, and the signal is taken as zero outside its ends as
resample_poly does. :class:`ResampledView` reads a file lazily at another rate in that way (it is what
:func:`fastsep.chunking.iter_separated` slices chunk by chunk), and :class:`StreamResampler` resamples a stream of
pieces (the separated chunks) as they arrive.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["ratio", "resample_block", "resampled_length", "ResampledView", "StreamResampler"]


def ratio(orig_sr: int, new_sr: int):
    """``(up, down)``: the reduced ratio new/orig."""
    g = math.gcd(int(orig_sr), int(new_sr))
    return int(new_sr) // g, int(orig_sr) // g


def resampled_length(n: int, orig_sr: int, new_sr: int) -> int:
    """Samples resample_poly returns for ``n`` input samples."""
    up, down = ratio(orig_sr, new_sr)
    return -(-n * up // down)


def _margin(up: int, down: int) -> int:
    """Input samples of context on each side that make a block's output exact: resample_poly's default filter has
    half length ``10·max(up, down)`` at the upsampled rate, i.e. that divided by ``up`` input samples; rounded up to
    a whole period of ``down`` samples so blocks stay aligned with the filter's phases."""
    reach = 10 * max(up, down) // up + 2
    return -(-reach // down) * down


def resample_block(read: Callable[[int, int], np.ndarray], total: int, start: int, stop: int, up: int,
                   down: int) -> np.ndarray:
    """Output samples ``[start, stop)`` of ``resample_poly(x, up, down)`` where ``x`` has ``total`` samples and
    ``read(a, b)`` returns ``x[a:b]`` (clipped to ``[0, total)``)."""
    from scipy.signal import resample_poly

    if up == down == 1:
        return np.asarray(read(start, stop), dtype=np.float32)
    # Align the block on whole periods: output index k*up <-> input index k*down.
    k0, k1 = start // up, -(-stop // up)
    margin = _margin(up, down)
    lo, hi = k0 * down - margin, k1 * down + margin
    block = np.zeros(hi - lo, np.float64)
    a, b = max(lo, 0), min(hi, total)
    if b > a:
        block[a - lo:b - lo] = read(a, b)
    out = resample_poly(block, up, down)
    first = (margin // down) * up + (start - k0 * up)
    return out[first:first + (stop - start)].astype(np.float32)


class ResampledView:
    """A ``[1, T]`` signal at ``new_sr`` computed on demand from a reader at ``orig_sr``; supports ``view[:, a:b]``,
    ``shape`` and ``dim()``, which is what the chunked separator uses of a mixture tensor."""

    def __init__(self, read: Callable[[int, int], np.ndarray], frames: int, orig_sr: int, new_sr: int,
                 device: Optional[torch.device] = None):
        self._read, self._frames = read, int(frames)
        self.up, self.down = ratio(orig_sr, new_sr)
        self.shape = torch.Size([1, resampled_length(self._frames, orig_sr, new_sr)])
        self.device = torch.device("cpu") if device is None else torch.device(device)

    def dim(self) -> int:
        return 2

    def __getitem__(self, index) -> Tensor:
        rows, cols = index
        if rows != slice(None) or not isinstance(cols, slice) or cols.step not in (None, 1):
            raise IndexError("ResampledView supports view[:, a:b] only")
        start, stop, _ = cols.indices(self.shape[-1])
        data = resample_block(self._read, self._frames, start, max(start, stop), self.up, self.down)
        return torch.from_numpy(data)[None].to(self.device)


class StreamResampler:
    """Resample a signal that arrives in consecutive pieces (``push``), emitting output as soon as it is final.

    Keeps only a margin of past input and the not-yet-final tail, so memory is bounded by the largest piece.
    The concatenated output equals ``resample_poly`` of the concatenated input (to float32 rounding).
    """

    def __init__(self, orig_sr: int, new_sr: int):
        self.up, self.down = ratio(orig_sr, new_sr)
        self.margin = _margin(self.up, self.down)
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # absolute input index of _buf[0]
        self._received = 0
        self._emitted = 0  # output samples emitted so far (always a multiple of up until finish)

    def _read(self, a: int, b: int) -> np.ndarray:
        return self._buf[a - self._buf_start:b - self._buf_start]

    def push(self, piece) -> np.ndarray:
        """Add input samples; returns the output samples that are now final (possibly none)."""
        data = piece.detach().cpu().numpy() if isinstance(piece, Tensor) else np.asarray(piece)
        self._buf = np.concatenate([self._buf, np.asarray(data, np.float32).reshape(-1)])
        self._received += data.size
        if self.up == self.down == 1:
            out, self._buf, self._buf_start = self._buf, np.zeros(0, np.float32), self._received
            self._emitted += out.size
            return out
        # Output up to whole period k is final once input reaches k*down + margin.
        k = (self._received - self.margin) // self.down
        stop = k * self.up
        if stop <= self._emitted:
            return np.zeros(0, np.float32)
        out = self._emit(stop, total=None)
        return out

    def _emit(self, stop: int, total: Optional[int]) -> np.ndarray:
        # Before finish, "total" is unknown but never reached: every sample read lies below _received.
        out = resample_block(self._read, self._received if total is None else total, self._emitted, stop,
                             self.up, self.down)
        self._emitted = stop
        keep_from = (self._emitted // self.up) * self.down - self.margin
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
        return out

    def finish(self) -> np.ndarray:
        """The remaining output once the input has ended (the signal is zero past its end, as in resample_poly)."""
        if self.up == self.down == 1:
            return np.zeros(0, np.float32)
        total_out = -(-self._received * self.up // self.down)
        if total_out <= self._emitted:
            return np.zeros(0, np.float32)
        return self._emit(total_out, total=self._received)


def concat(pieces: List[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
