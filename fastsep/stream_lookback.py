"""Low-latency streaming with look-back context: short hops out, long windows in.

:class:`fastsep.stream_separate.SeparationStream` makes its output identical to offline chunking, which ties the
latency to the window: a 100 ms latency means 100 ms windows, and the bundled backbone, whose receptive field is
about a second on each side, separates little in 100 ms. :class:`LookbackStream` decouples them. Every ``hop``
samples it separates a window made of ``context`` already-heard samples, the ``hop`` new samples to emit and
``lookahead`` samples after them, and emits only the hop:

    window = [e - context - hop - lookahead, e),   emitted = [e - hop - lookahead, e - lookahead)

so an output sample comes out at most ``hop + lookahead`` after its input sample went in (``latency_samples``),
whatever the context. The price is compute: every hop runs the model on a whole window (RTF = window / hop x the
model's RTF at that length), and the emitted samples are near the window's end, where the model sees only
``lookahead`` of future.

Talker order: each window's talkers are matched to the output already emitted over the samples both cover (the
absolute normalised correlation, as the offline chunker does; up to ``match_seconds``), optionally with their gains
(``match_levels``). Seams: over the first ``crossfade`` emitted samples (2 ms, at most the look-ahead) the
previous window's estimate of them is faded into the new window's, so consecutive windows meet without a click. It
is short on purpose: the previous window saw less of those samples' future (fading over the whole look-ahead
measured no better: 4.26 dB either way on 12 festival mixtures).
Windows at the start are shorter (no context yet); the first waits for the separator's minimum input length.
``finish()`` separates the rest from the last context without look-ahead.

The result is not the offline separation of the whole input (no stream with a bounded latency can be); how far it
falls short, per context and lookahead, is measured by ``benchmarks/bench_streaming.py`` (BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .chunking import _reorder, match_gains, match_sources
from .stream_separate import BlockStream

__all__ = ["LookbackStream", "DEFAULT_LOOKBACK"]

#: (context, hop, lookahead) in seconds for backbone mode: 100 ms of latency; 1.9 s of context (the bundled
#: backbone's receptive field is about a second on each side).
DEFAULT_LOOKBACK = (1.9, 0.05, 0.05)


class LookbackStream(BlockStream):
    """Stateful low-latency separator; see the module's notes. Use :meth:`push` per block, then :meth:`finish`.

    Args:
        separator: a :class:`fastsep.separator.Separator` (its ``match_levels`` setting is used).
        mode: "backbone", "xcorr" or "full".
        context_seconds, hop_seconds, lookahead_seconds: see the module's notes (defaults :data:`DEFAULT_LOOKBACK`);
            need ``hop > 0``, ``context >= 0``, ``lookahead >= 0``.
        match_seconds: at most this much of the emitted output is compared with a new window to keep talker order.
        crossfade_seconds: the fade between consecutive windows at each seam (at most the look-ahead).
        seed: vocoder noise seed (xcorr and full): window k uses the seed derived from (seed, k).
        threads: intra-op threads while a window is separated (default: torch's current setting).
    """

    def __init__(self, separator, mode: str = "backbone", context_seconds: Optional[float] = None,
                 hop_seconds: Optional[float] = None, lookahead_seconds: Optional[float] = None,
                 match_seconds: float = 0.5, crossfade_seconds: float = 0.002, seed: int = 0,
                 threads: Optional[int] = None):
        separator._check_mode(mode)
        context, hop, lookahead = (d if v is None else float(v) for d, v in
                                   zip(DEFAULT_LOOKBACK, (context_seconds, hop_seconds, lookahead_seconds)))
        rate = separator.sample_rate
        self.context, self.hop, self.lookahead = (int(round(s * rate)) for s in (context, hop, lookahead))
        self.match = int(round(float(match_seconds) * rate))
        self.crossfade = int(round(float(crossfade_seconds) * rate))
        if self.hop < 1 or self.context < 0 or self.lookahead < 0 or self.match < 1 or self.crossfade < 0:
            raise ValueError(f"stream: need hop_seconds > 0, context_seconds >= 0, lookahead_seconds >= 0, "
                             f"match_seconds > 0 and crossfade_seconds >= 0, got {hop:g}, {context:g}, "
                             f"{lookahead:g}, {match_seconds:g}, {crossfade_seconds:g}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"stream: seed must be an int, got {seed!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"stream: threads must be a positive int, got {threads!r}")
        self.separator, self.mode, self.seed, self.threads = separator, mode, int(seed), threads
        self.sample_rate = rate
        self.n_src = separator.n_src
        self.min_samples = int(np.ceil(separator.min_seconds * rate))
        self._fn = None
        self._batch: Optional[int] = None
        self._single, self._numpy = True, False
        self._buf: Optional[Tensor] = None  # input from absolute sample _buf_start on
        self._buf_start = 0
        self._received = 0
        self._emitted = 0
        self._tail: Optional[Tensor] = None     # the last <= match emitted output samples [B, C, m]
        self._pending: Optional[Tensor] = None  # the last window's estimate of samples [emitted, ...) [B, C, p]
        self._finished = False

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def window_samples(self) -> int:
        return self.context + self.hop + self.lookahead

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: every output sample is returned at most this many samples after its input."""
        return self.hop + self.lookahead

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    @property
    def layout(self) -> str:
        """The windows, in words (for logs)."""
        return (f"look-back windows: {self.context} samples of context, hop {self.hop}, look-ahead "
                f"{self.lookahead}")

    # ------------------------------------------------------------------------------------------------ internals
    def _step(self, stop: int, emit_to: int) -> Tensor:
        """Separate the window ending at ``stop`` and return its talkers over ``[emitted, emit_to)``, in the order
        of the output so far, cross-faded with the previous window's estimate of those samples."""
        # context samples before the first one to emit (fewer at the start), stretched back to the minimum input
        start = min(max(0, self._emitted - self.context), max(0, stop - self.min_samples))
        est = self._window(start, stop)
        at = self._emitted - start  # the emitted boundary inside the window
        if self._tail is not None:
            shared = min(self._tail.shape[-1], at)
            if shared > 0:
                ref, cand = self._tail[..., self._tail.shape[-1] - shared:], est[..., at - shared:at]
                est = _reorder(est, match_sources(ref, cand))
                if self.separator.match_levels:
                    est = est * match_gains(ref, est[..., at - shared:at]).unsqueeze(-1)
        piece = est[..., at:at + emit_to - self._emitted].clone()
        if self._pending is not None:
            n = min(self._pending.shape[-1], piece.shape[-1], self.crossfade)
            if n > 0:  # ramps exclude 0 and 1, as the offline join's
                ramp = torch.linspace(0.0, 1.0, n + 2, device=piece.device, dtype=piece.dtype)[1:-1]
                piece[..., :n] = ramp * piece[..., :n] + (1.0 - ramp) * self._pending[..., :n]
        self._pending = est[..., at + piece.shape[-1]:]
        self._emitted = emit_to
        self._tail = piece if self._tail is None else torch.cat([self._tail, piece], -1)[..., -self.match:]
        # Later windows start at or after this (short ones are stretched back to the separator's minimum).
        keep = max(0, min(self._emitted - self.context, self._emitted + 1 - self.min_samples))
        drop = keep - self._buf_start
        if drop > 0:
            self._buf, self._buf_start = self._buf[:, drop:], self._buf_start + drop
        return piece

    # ------------------------------------------------------------------------------------------------ API
    @torch.no_grad()
    def push(self, block) -> Union[Tensor, np.ndarray]:
        """Add a block (``[n]`` or ``[B, n]``, at the model's rate); returns the talkers that are now final,
        ``[C, m]`` (``[B, C, m]``), ``m`` a multiple of the hop (possibly 0). numpy in gives numpy out."""
        if self._finished:
            raise RuntimeError("stream: push() after finish(); start a new stream with Separator.stream()")
        data = self._as_block(block)
        if data.shape[-1] == 0:
            return self._empty()
        self._buf = data if self._buf is None else torch.cat([self._buf, data], dim=-1)
        self._received += data.shape[-1]
        pieces = []
        while True:
            emit_to = self._emitted + self.hop
            stop = max(emit_to + self.lookahead, self.min_samples)
            if self._received < stop:
                break
            pieces.append(self._step(stop, emit_to))
        return self._out(torch.cat(pieces, -1)) if pieces else self._empty()

    @torch.no_grad()
    def finish(self) -> Union[Tensor, np.ndarray]:
        """End of input: the rest of the output, separated from the last context without look-ahead."""
        if self._finished:
            raise RuntimeError("stream: finish() called twice")
        self._finished = True
        if self._buf is None or self._received == self._emitted:
            return self._empty()
        if self._received < self.min_samples:
            raise ValueError(f"stream: the input was {self._received / self.sample_rate:.4f} s long; the shortest "
                             f"input fastsep separates is {self.separator.min_seconds:g} s")
        out = self._step(self._received, self._received)
        self._buf = None
        return self._out(out)
