"""DPRNN, dual-path recurrent network (Luo, Chen & Yoshioka, 2020), in asteroid's TasNet-style form.

The encoded mixture is cut into overlapping chunks; each block runs a BiLSTM inside every chunk (intra-chunk, local)
and then across chunks at each position (inter-chunk, global), both with residual connections. Defaults follow
asteroid's DPRNNTasNet: 64 filters of 16 samples (stride 8), bottleneck 128, BiLSTM with 128 hidden units,
chunk 100 with hop 50, 6 blocks, gLN, sigmoid masks.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from .blocks import (Decoder, Encoder, GatedMaskHead, SeparationModel, check_positive_int, chunk, make_norm,
                     overlap_add)

__all__ = ["DPRNN"]


class _PathRNN(nn.Module):
    """One path (intra or inter) of a dual-path block: BiLSTM over one axis of the chunks, linear back to the
    feature size, norm, residual."""

    def __init__(self, channels: int, hidden: int, norm: str, bidirectional: bool):
        super().__init__()
        self.rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(hidden * (2 if bidirectional else 1), channels)
        self.norm = make_norm(norm, channels)

    def forward(self, x: Tensor, axis: int) -> Tensor:
        # x: [B, N, S, K]; axis 2 runs along each chunk (intra), axis 3 across chunks (inter).
        batch, channels, size, n_chunks = x.shape
        if axis == 2:
            seq = x.permute(0, 3, 2, 1).reshape(batch * n_chunks, size, channels)
        else:
            seq = x.permute(0, 2, 3, 1).reshape(batch * size, n_chunks, channels)
        out = self.proj(self.rnn(seq)[0])
        if axis == 2:
            out = out.reshape(batch, n_chunks, size, channels).permute(0, 3, 2, 1)
        else:
            out = out.reshape(batch, size, n_chunks, channels).permute(0, 3, 1, 2)
        return x + self.norm(out)


class DPRNN(SeparationModel):
    """DPRNN-TasNet mapping a mixture ``[B, T]`` to ``[B, n_src, T]``.

    Args:
        n_src: number of sources, 2 to 20.
        sample_rate: sampling rate the model is meant for (metadata).
        n_filters: encoder/decoder filters.
        kernel_size: filter length in samples; ``stride`` defaults to half of it.
        bn_chan: bottleneck channels the dual-path blocks work on.
        hid_size: LSTM hidden units per direction.
        chunk_size, hop_size: dual-path chunking in encoder frames.
        n_repeats: number of dual-path blocks.
        norm: ``"gLN"``, ``"cLN"`` or ``"none"``.
        bidirectional: BiLSTM in the inter-chunk path too (the intra path is always bidirectional, as published).
    """

    # Weights saved before the mask head moved to blocks.GatedMaskHead still load.
    legacy_state_dict_keys = GatedMaskHead.legacy_keys("mask_head", value="net_out", gate="net_gate", proj="mask_net")

    def __init__(self, n_src: int, sample_rate: int = 8000, n_filters: int = 64, kernel_size: int = 16,
                 bn_chan: int = 128, hid_size: int = 128, chunk_size: int = 100, hop_size: int = 50,
                 n_repeats: int = 6, norm: str = "gLN", bidirectional: bool = True, stride: Optional[int] = None):
        name = type(self).__name__
        kernel_size = check_positive_int(name, "kernel_size", kernel_size)
        stride = max(1, kernel_size // 2) if stride is None else stride
        super().__init__(n_src, sample_rate, kernel_size, stride)
        for key, val in (("n_filters", n_filters), ("bn_chan", bn_chan), ("hid_size", hid_size),
                         ("chunk_size", chunk_size), ("hop_size", hop_size), ("n_repeats", n_repeats)):
            check_positive_int(name, key, val)
        if hop_size > chunk_size:
            raise ValueError(f"{name}: hop_size ({hop_size}) must not exceed chunk_size ({chunk_size})")
        make_norm(norm, 1)
        self.config = dict(n_src=n_src, sample_rate=sample_rate, n_filters=n_filters, kernel_size=kernel_size,
                           bn_chan=bn_chan, hid_size=hid_size, chunk_size=chunk_size, hop_size=hop_size,
                           n_repeats=n_repeats, norm=norm, bidirectional=bool(bidirectional), stride=self.stride)
        self.n_filters, self.bn_chan = n_filters, bn_chan
        self.chunk_size, self.hop_size = chunk_size, hop_size

        self.encoder = Encoder(n_filters, kernel_size, self.stride, relu=False)
        self.decoder = Decoder(n_filters, kernel_size, self.stride)
        self.bottleneck = nn.Sequential(make_norm(norm, n_filters), nn.Conv1d(n_filters, bn_chan, 1))
        self.intra = nn.ModuleList(_PathRNN(bn_chan, hid_size, norm, True) for _ in range(n_repeats))
        self.inter = nn.ModuleList(_PathRNN(bn_chan, hid_size, norm, bidirectional) for _ in range(n_repeats))
        self.first_out = nn.Sequential(nn.PReLU(), nn.Conv2d(bn_chan, n_src * bn_chan, 1))
        # Gated output (tanh branch times sigmoid gate) before the mask projection, as in the DPRNN recipe.
        self.mask_head = GatedMaskHead(bn_chan, n_filters, "sigmoid")

    @classmethod
    def small(cls, n_src: int, sample_rate: int = 8000) -> "DPRNN":
        """A CPU-sized preset (about 80 k parameters for 2 sources) for tests and quick experiments."""
        return cls(n_src, sample_rate, n_filters=32, kernel_size=16, bn_chan=32, hid_size=32, chunk_size=20,
                   hop_size=10, n_repeats=2)

    def forward(self, mix: Tensor) -> Tensor:
        """Separate ``mix [B, T]`` into ``[B, n_src, T]``."""
        mix = self.check_mix(mix)
        batch, length = mix.shape
        feats = self.encoder(self.pad(mix))  # [B, N, K]
        n_frames = feats.shape[-1]
        x = chunk(self.bottleneck(feats), self.chunk_size, self.hop_size)  # [B, bn, S, n_chunks]
        for intra, inter in zip(self.intra, self.inter):
            x = inter(intra(x, axis=2), axis=3)
        x = self.first_out(x)  # [B, C*bn, S, n_chunks]
        x = x.reshape(batch * self.n_src, self.bn_chan, *x.shape[-2:])
        x = overlap_add(x, self.hop_size, n_frames)  # [B*C, bn, K]
        masks = self.mask_head(x)
        masks = masks.view(batch, self.n_src, self.n_filters, n_frames)
        return self.decoder(masks * feats.unsqueeze(1))[..., :length]
