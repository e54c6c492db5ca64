"""Streaming separation: audio goes in as blocks of any size, separated talkers come out with a fixed latency.

:class:`SeparationStream` (made by :meth:`fastsep.separator.Separator.stream`) runs the separator on windows of
``window`` samples that start every ``hop`` samples, exactly the chunks :mod:`fastsep.chunking` uses offline for
``chunk = window, overlap = window - hop``, and joins them with the same :func:`fastsep.chunking.join` (talkers
matched to the previous window's on the overlap, then cross-faded). So the streamed output equals
``Separator(chunk_seconds=window, overlap_seconds=window - hop).separate(x)`` of the whole input (same seed), up to
float rounding; the last window is pulled back to end at the input's end, as offline.

Latency: after ``n`` input samples have been pushed, exactly ``max(0, n - window)`` output samples have been
returned: every output sample comes out ``window`` samples (``latency_seconds``) after its input sample went in.
Why ``window`` and not less: a sample becomes final only when no later window can cross-fade over it. The next
regular window starts ``hop`` after the last one, but the input may end at any time, and then the last window is
pulled back to end at the input's end; it can start as early as ``received - window``. Emitting only up to there is
what keeps the output identical to the offline chunking whatever the input's length. Computation time comes on top
(the benchmark ``benchmarks/bench_streaming.py`` reports both).

Every window is levelled separately (see :class:`fastsep.separator.Separator`), as offline chunks are; a silent
window gives silence instead of an error, since live input has pauses.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .chunking import join

__all__ = ["SeparationStream", "BlockStream", "DEFAULT_WINDOWS"]

# (window, hop) in seconds per mode. Backbone: 100 ms of latency (issue 13's budget), windows overlapping by half so
# that every seam has 50 ms on which to match talkers. Full and xcorr: the vocoder and F cost ~0.3 s per second of
# audio on the 2-core CPU, so a 2 s window every 1.5 s leaves room to keep up in real time there.
DEFAULT_WINDOWS = {"backbone": (0.1, 0.05), "xcorr": (2.0, 1.5), "full": (2.0, 1.5)}
# Windows up to this long run on one thread by default: a 0.1 s window's convolutions take tens of microseconds, less
# than a parallel region's fork and join, and on a shared machine a second thread made the streamed backbone ~4x
# slower (3.5 s vs 13.6 s for 3 s of audio with a training job on both cores).
SINGLE_THREAD_WINDOW_SECONDS = 0.5


class BlockStream:
    """What both stream layouts share: input blocks checked and buffered, the separator run on a stretch of the
    buffer, outputs in the kind that came in. A subclass sets ``separator, mode, seed, threads, n_src`` and the
    ``_fn, _batch, _single, _numpy, _buf, _buf_start, _received, _emitted`` state, and implements ``push`` and
    ``finish``."""

    @property
    def received(self) -> int:
        """Input samples pushed so far (per item)."""
        return self._received

    @property
    def emitted(self) -> int:
        """Output samples returned so far (per talker and item)."""
        return self._emitted

    def _as_block(self, block) -> Tensor:
        """A pushed block checked and converted to ``[B, n]`` float32 on the separator's device. The first block
        fixes the stream's batch, shape kind and output kind and makes its chunk function."""
        from .audio import to_float

        if isinstance(block, np.ndarray):
            if block.dtype.kind not in "fiu":
                raise TypeError(f"stream: a block must hold real numbers, got numpy dtype {block.dtype}")
            data, is_numpy = torch.from_numpy(np.ascontiguousarray(to_float(block))), True
        elif isinstance(block, Tensor):
            if block.is_complex() or block.dtype == torch.bool:
                raise TypeError(f"stream: a block must be a real tensor, got dtype {block.dtype}")
            data = block if block.is_floating_point() else torch.from_numpy(to_float(block.cpu().numpy()))
            is_numpy = False
        else:
            raise TypeError(f"stream: a block must be a torch.Tensor or numpy.ndarray, got {type(block).__name__}")
        if data.dim() not in (1, 2):
            raise ValueError(f"stream: a block must be [n] or [B, n], got shape {tuple(data.shape)}")
        batch = 1 if data.dim() == 1 else data.shape[0]
        if self._batch is None:
            self._batch, self._single, self._numpy = batch, data.dim() == 1, is_numpy
            self._fn = self.separator._chunk_fn(self.mode, [self.seed] * batch)
        elif batch != self._batch or (data.dim() == 1) != self._single:
            want = "[n]" if self._single else f"[{self._batch}, n]"
            raise ValueError(f"stream: every block must have the first block's shape {want}, got "
                             f"{tuple(data.shape)}")
        data = data.to(self.separator.device, torch.float32).reshape(batch, -1)
        if not bool(torch.isfinite(data).all()):
            raise ValueError("stream: block holds NaN or infinite samples")
        return data

    def _window(self, start: int, stop: int) -> Tensor:
        """The separator's talkers ``[B, C, stop - start]`` of buffered input samples ``[start, stop)``."""
        from .threads import limited

        assert self._buf is not None
        with limited(self.threads):
            est = self._fn(self._buf[:, start - self._buf_start:stop - self._buf_start])
        if est.dim() != 3 or est.shape[0] != self._batch or est.shape[-1] != stop - start:
            raise ValueError(f"stream: the separator returned shape {tuple(est.shape)} for a window of "
                             f"{stop - start} samples; expected [{self._batch}, C, {stop - start}]")
        return est

    def _out(self, piece: Tensor):
        piece = piece[0] if self._single else piece
        return piece.float().cpu().numpy() if self._numpy else piece

    def _empty(self):
        return self._out(torch.zeros(self._batch or 1, self.n_src, 0, device=self.separator.device))

    def run(self, blocks: Iterable) -> Iterator[Union[Tensor, np.ndarray]]:
        """Push every block of ``blocks`` and yield each non-empty output, then the rest after the last block."""
        for block in blocks:
            out = self.push(block)
            if out.shape[-1]:
                yield out
        out = self.finish()
        if out.shape[-1]:
            yield out


class SeparationStream(BlockStream):
    """Stateful streaming separator; see the module's notes. Use :meth:`push` per block, then :meth:`finish`.

    Args:
        separator: a :class:`fastsep.separator.Separator` (its ``match_levels`` setting is used).
        mode: "backbone", "xcorr" or "full".
        window_seconds, hop_seconds: window length and the step between window starts (default: per mode,
            :data:`DEFAULT_WINDOWS`); need ``min_seconds <= window`` and ``0 < hop < window``.
        seed: vocoder noise seed (xcorr and full), as in :meth:`Separator.separate`: window k of an item uses the
            seed derived from (seed, k), so the stream and the offline chunker draw the same noise.
        threads: intra-op threads while a window is separated (default: 1 for windows up to
            :data:`SINGLE_THREAD_WINDOW_SECONDS`, else torch's current setting, see :mod:`fastsep.threads`).
    """

    def __init__(self, separator, mode: str = "backbone", window_seconds: Optional[float] = None,
                 hop_seconds: Optional[float] = None, seed: int = 0, threads: Optional[int] = None):
        separator._check_mode(mode)
        default_window, default_hop = DEFAULT_WINDOWS[mode]
        window_seconds = default_window if window_seconds is None else float(window_seconds)
        hop_seconds = default_hop if hop_seconds is None else float(hop_seconds)
        rate = separator.sample_rate
        self.window = int(round(window_seconds * rate))
        self.hop = int(round(hop_seconds * rate))
        if self.window < int(np.ceil(separator.min_seconds * rate)):
            raise ValueError(f"stream: window_seconds must be at least {separator.min_seconds:g} s (the shortest "
                             f"input this separator takes), got {window_seconds:g}")
        if not 0 < self.hop < self.window:
            raise ValueError(f"stream: need 0 < hop_seconds < window_seconds (windows must overlap so that talkers "
                             f"can be matched across them), got hop {hop_seconds:g} s, window {window_seconds:g} s")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"stream: seed must be an int, got {seed!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"stream: threads must be a positive int, got {threads!r}")
        self.threads = threads if threads is not None else (
            1 if window_seconds <= SINGLE_THREAD_WINDOW_SECONDS else None)
        self.separator, self.mode, self.seed = separator, mode, int(seed)
        self.sample_rate = rate
        self.n_src = separator.n_src
        self._fn = None  # the chunk function, made once the batch size is known
        self._batch: Optional[int] = None
        self._single = True
        self._numpy = False
        self._buf: Optional[Tensor] = None  # input from absolute sample _buf_start on
        self._buf_start = 0
        self._received = 0
        self._next_start = 0  # start of the next regular window
        self._est: Optional[Tensor] = None  # the last window's joined estimate [B, C, window]
        self._est_start = 0
        self._emitted = 0
        self._finished = False

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def latency_samples(self) -> int:
        """Algorithmic latency in samples at the model's rate: output lags input by exactly this much."""
        return self.window

    @property
    def latency_seconds(self) -> float:
        return self.window / self.sample_rate

    @property
    def layout(self) -> str:
        """The windows, in words (for logs)."""
        return f"windows of {self.window} samples every {self.hop}"

    @torch.no_grad()
    def push(self, block) -> Union[Tensor, np.ndarray]:
        """Add a block (``[n]``, or ``[B, n]`` for B streams at once; every block the same kind) at the model's
        rate; returns the output that is now final, ``[C, m]`` (``[B, C, m]``), possibly ``m = 0``. Integer PCM is
        scaled to [-1, 1) as :func:`fastsep.audio.load` does; numpy in gives numpy out."""
        if self._finished:
            raise RuntimeError("stream: push() after finish(); start a new stream with Separator.stream()")
        data = self._as_block(block)
        if data.shape[-1] == 0:
            return self._empty()
        self._buf = data if self._buf is None else torch.cat([self._buf, data], dim=-1)
        self._received += data.shape[-1]
        pieces = []
        # Every regular window whose input is complete: compute it and join it onto the previous one. A large block
        # can complete several; the previous window's output before the new one's start is final by then.
        while self._received >= self._next_start + self.window:
            est = self._window(self._next_start, self._next_start + self.window)
            if self._est is not None:
                pieces.append(self._est[..., self._emitted - self._est_start:self._next_start - self._est_start])
                self._emitted = self._next_start
                est = join(self._est[..., self._next_start - self._est_start:], est, self.separator.match_levels)
            self._est, self._est_start = est, self._next_start
            self._next_start += self.hop
        if self._est is None:
            return self._empty()
        # Final: up to the next regular window's start, and never past where a pulled-back last window could start.
        final = min(self._next_start, self._received - self.window)
        if final > self._emitted:
            pieces.append(self._est[..., self._emitted - self._est_start:final - self._est_start])
            self._emitted = final
        out = torch.cat(pieces, dim=-1) if pieces else self._est[..., :0]
        # No later window reads input before what is emitted (a pulled-back last window starts at or after it).
        drop = self._emitted - self._buf_start
        if drop > 0:
            self._buf, self._buf_start = self._buf[:, drop:], self._emitted
        return self._out(out)

    @torch.no_grad()
    def finish(self) -> Union[Tensor, np.ndarray]:
        """End of input: returns the rest of the output (the last ``latency_samples``, or everything for an input
        shorter than one window). Raises ValueError when the whole input is shorter than the separator's minimum."""
        if self._finished:
            raise RuntimeError("stream: finish() called twice")
        self._finished = True
        if self._buf is None or self._received == 0:
            return self._empty()
        total = self._received
        if self._est is None:  # shorter than one window: one chunk of everything, as offline
            if total < self.separator.min_seconds * self.sample_rate:
                raise ValueError(f"stream: the input was {total / self.sample_rate:.4f} s long; the shortest input "
                                 f"fastsep separates is {self.separator.min_seconds:g} s")
            self._emitted = total
            return self._out(self._window(0, total))
        end = self._est_start + self.window
        if total == end:
            out = self._est[..., self._emitted - self._est_start:]
        else:  # the offline chunker's last window, pulled back to end at the input's end
            start = total - self.window
            est = join(self._est[..., start - self._est_start:], self._window(start, total),
                       self.separator.match_levels)
            out = torch.cat([self._est[..., self._emitted - self._est_start:start - self._est_start], est], dim=-1)
        self._emitted = total
        self._buf = None
        return self._out(out)
