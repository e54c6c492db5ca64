"""MulCat separator (Nachmani, Adi & Wolf, 2020, "Voice separation with an unknown number of multiple speakers").

A dual-path network whose blocks are "MulCat" gated recurrences: two BiLSTMs read the same input, one is projected
and used as a multiplicative gate on the other, and the product is concatenated with the input and projected back.
After every block a shared head emits all sources, so training can apply the loss after each block.

Defaults follow the paper and facebookresearch/svoice: encoder N=128 filters of L=8 samples (stride 4, ReLU), LSTM
hidden size 128 per direction, 6 blocks, chunk size sqrt(2·sr·segment / (L/2)) with segment = 4 s (89 frames at
8 kHz) and 50 % chunk overlap, no normalisation inside the blocks. One deliberate difference: estimates are decoded
by a learned transposed convolution (L taps, stride L/2) rather than svoice's fixed average-pool-and-overlap-add.
As in the paper, no mask is applied: the head outputs each source's representation directly.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .blocks import Decoder, Encoder, SeparationModel, check_positive_int, chunk, overlap_add

__all__ = ["MulCat"]


class _MulCatRNN(nn.Module):
    """``proj(cat[rnn(x)·gate_rnn(x), x])`` over sequences ``[batch, time, features]``."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.rnn_proj = nn.Linear(2 * hidden, channels)
        self.gate_rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.gate_proj = nn.Linear(2 * hidden, channels)
        self.out_proj = nn.Linear(2 * channels, channels)

    def forward(self, seq: Tensor) -> Tensor:
        value = self.rnn_proj(self.rnn(seq)[0])
        gate = self.gate_proj(self.gate_rnn(seq)[0])
        return self.out_proj(torch.cat([value * gate, seq], dim=-1))


class _DualMulCat(nn.Module):
    """One dual-path block: a MulCat recurrence within chunks, then across chunks, each with a residual."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.intra = _MulCatRNN(channels, hidden)
        self.inter = _MulCatRNN(channels, hidden)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, size, n_chunks = x.shape
        seq = x.permute(0, 3, 2, 1).reshape(batch * n_chunks, size, channels)
        x = x + self.intra(seq).reshape(batch, n_chunks, size, channels).permute(0, 3, 2, 1)
        seq = x.permute(0, 2, 3, 1).reshape(batch * size, n_chunks, channels)
        return x + self.inter(seq).reshape(batch, size, n_chunks, channels).permute(0, 3, 1, 2)


class MulCat(SeparationModel):
    """MulCat dual-path separator mapping ``[B, T]`` to ``[B, n_src, T]`` (or every block's output).

    Args:
        n_src: number of sources, 2 to 20.
        sample_rate: sampling rate; with ``chunk_size=None`` it sets the chunk size.
        n_filters: N, encoder filters (also the feature size inside the blocks).
        kernel_size: L, encoder filter length; the stride is L/2.
        hidden_size: LSTM hidden units per direction.
        n_blocks: R, number of MulCat dual-path blocks.
        chunk_size: chunk length in encoder frames; ``None`` uses svoice's rule int(sqrt(2·sr·segment/(L/2))).
        segment: training segment length in seconds used by that rule.
    """

    def __init__(self, n_src: int, sample_rate: int = 8000, n_filters: int = 128, kernel_size: int = 8,
                 hidden_size: int = 128, n_blocks: int = 6, chunk_size: Optional[int] = None, segment: float = 4.0):
        name = type(self).__name__
        kernel_size = check_positive_int(name, "kernel_size", kernel_size)
        super().__init__(n_src, sample_rate, kernel_size, max(1, kernel_size // 2))
        for key, val in (("n_filters", n_filters), ("hidden_size", hidden_size), ("n_blocks", n_blocks)):
            check_positive_int(name, key, val)
        if not isinstance(segment, (int, float)) or isinstance(segment, bool) or segment <= 0:
            raise ValueError(f"{name}: segment must be a positive number of seconds, got {segment!r}")
        if chunk_size is None:
            chunk_size = max(2, int(math.sqrt(2 * sample_rate * segment / self.stride)))
        check_positive_int(name, "chunk_size", chunk_size)
        if chunk_size < 2:
            raise ValueError(f"{name}: chunk_size must be at least 2 (chunks overlap by half), got {chunk_size}")
        self.config = dict(n_src=n_src, sample_rate=sample_rate, n_filters=n_filters, kernel_size=kernel_size,
                           hidden_size=hidden_size, n_blocks=n_blocks, chunk_size=chunk_size, segment=float(segment))
        self.n_filters = n_filters
        self.chunk_size, self.hop_size = chunk_size, chunk_size // 2

        self.encoder = Encoder(n_filters, kernel_size, self.stride, relu=True)
        self.decoder = Decoder(n_filters, kernel_size, self.stride)
        self.blocks = nn.ModuleList(_DualMulCat(n_filters, hidden_size) for _ in range(n_blocks))
        # One head shared by every block, so each block's output lives in the same space (svoice does the same).
        self.head = nn.Sequential(nn.PReLU(), nn.Conv2d(n_filters, n_src * n_filters, 1))

    @classmethod
    def small(cls, n_src: int, sample_rate: int = 8000) -> "MulCat":
        """A CPU-sized preset (about 0.16 M parameters) for tests and quick experiments."""
        return cls(n_src, sample_rate, n_filters=32, kernel_size=8, hidden_size=32, n_blocks=2, chunk_size=20)

    def forward(self, mix: Tensor, return_all: bool = False) -> Tensor:
        """Separate ``mix [B, T]``.

        Returns ``[B, n_src, T]`` from the last block, or with ``return_all=True`` ``[n_blocks, B, n_src, T]``
        holding the estimate after every block (the training loss is applied to each).
        """
        mix = self.check_mix(mix)
        batch, length = mix.shape
        feats = self.encoder(self.pad(mix))  # [B, N, K]
        n_frames = feats.shape[-1]
        x = chunk(feats, self.chunk_size, self.hop_size)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if return_all or i == len(self.blocks) - 1:
                out = self.head(x).reshape(batch * self.n_src, self.n_filters, *x.shape[-2:])
                out = overlap_add(out, self.hop_size, n_frames).reshape(batch, self.n_src, self.n_filters, n_frames)
                outputs.append(self.decoder(out)[..., :length])
        return torch.stack(outputs) if return_all else outputs[-1]
