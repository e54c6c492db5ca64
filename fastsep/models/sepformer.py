"""SepFormer (Subakan et al., 2021): a dual-path transformer masking network on a learned filterbank.

Defaults follow the paper and the SpeechBrain WSJ0-mix recipe: encoder 256 filters of 16 samples, stride 8, ReLU;
chunks of 250 frames with 50 % overlap; 2 dual blocks, each 8 intra-chunk then 8 inter-chunk pre-LN transformer
layers (d_model 256, 8 heads, feed-forward 1024, ReLU, no dropout) with sinusoidal positional encoding added at the
input of each transformer; a residual around each path; gated output and ReLU masks.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .blocks import Decoder, Encoder, GatedMaskHead, SeparationModel, check_positive_int, chunk, overlap_add

__all__ = ["SepFormer"]


def _sinusoids(length: int, dim: int, device, dtype) -> Tensor:
    """The fixed sinusoidal position table ``[length, dim]`` of Vaswani et al."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.to(dtype)


class _TransformerPath(nn.Module):
    """A stack of pre-LN transformer encoder layers (with a final LayerNorm) over sequences ``[batch, time, d]``."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, n_layers: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ffn, dropout=dropout, activation="relu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model),
                                            enable_nested_tensor=False)

    def forward(self, seq: Tensor) -> Tensor:
        seq = seq + _sinusoids(seq.shape[1], seq.shape[2], seq.device, seq.dtype)
        return self.layers(seq)


class _DualTransformer(nn.Module):
    """Intra-chunk transformer, GroupNorm, residual; then inter-chunk transformer, GroupNorm, residual."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, n_layers: int, dropout: float):
        super().__init__()
        self.intra = _TransformerPath(d_model, n_heads, d_ffn, n_layers, dropout)
        self.inter = _TransformerPath(d_model, n_heads, d_ffn, n_layers, dropout)
        self.intra_norm = nn.GroupNorm(1, d_model, eps=1e-8)
        self.inter_norm = nn.GroupNorm(1, d_model, eps=1e-8)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, size, n_chunks = x.shape
        seq = x.permute(0, 3, 2, 1).reshape(batch * n_chunks, size, channels)
        intra = self.intra(seq).reshape(batch, n_chunks, size, channels).permute(0, 3, 2, 1)
        x = x + self.intra_norm(intra)
        seq = x.permute(0, 2, 3, 1).reshape(batch * size, n_chunks, channels)
        inter = self.inter(seq).reshape(batch, size, n_chunks, channels).permute(0, 3, 1, 2)
        return x + self.inter_norm(inter)


class SepFormer(SeparationModel):
    """SepFormer mapping a mixture ``[B, T]`` to ``[B, n_src, T]``.

    Args:
        n_src: number of sources, 2 to 20.
        sample_rate: sampling rate the model is meant for (metadata).
        n_filters: encoder filters; also the transformers' d_model.
        kernel_size, stride: encoder filter length and hop in samples.
        chunk_size: chunk length in encoder frames (hop is half of it).
        n_blocks: dual blocks.
        n_layers: transformer layers in each intra and each inter path.
        n_heads, d_ffn, dropout: transformer layer sizes.
    """

    # Weights saved before the mask head moved to blocks.GatedMaskHead still load.
    legacy_state_dict_keys = GatedMaskHead.legacy_keys("mask_head", value="out_value", gate="out_gate",
                                                       proj="mask_proj")

    def __init__(self, n_src: int, sample_rate: int = 8000, n_filters: int = 256, kernel_size: int = 16,
                 stride: int = 8, chunk_size: int = 250, n_blocks: int = 2, n_layers: int = 8, n_heads: int = 8,
                 d_ffn: int = 1024, dropout: float = 0.0):
        name = type(self).__name__
        super().__init__(n_src, sample_rate, kernel_size, stride)
        for key, val in (("n_filters", n_filters), ("chunk_size", chunk_size), ("n_blocks", n_blocks),
                         ("n_layers", n_layers), ("n_heads", n_heads), ("d_ffn", d_ffn)):
            check_positive_int(name, key, val)
        if n_filters % n_heads:
            raise ValueError(f"{name}: n_filters (d_model, {n_filters}) must be divisible by n_heads ({n_heads})")
        if n_filters % 2:
            raise ValueError(f"{name}: n_filters must be even for the sinusoidal position encoding, got {n_filters}")
        if chunk_size < 2:
            raise ValueError(f"{name}: chunk_size must be at least 2 (chunks overlap by half), got {chunk_size}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        self.config = dict(n_src=n_src, sample_rate=sample_rate, n_filters=n_filters, kernel_size=kernel_size,
                           stride=stride, chunk_size=chunk_size, n_blocks=n_blocks, n_layers=n_layers,
                           n_heads=n_heads, d_ffn=d_ffn, dropout=float(dropout))
        self.n_filters = n_filters
        self.chunk_size, self.hop_size = chunk_size, chunk_size // 2

        self.encoder = Encoder(n_filters, kernel_size, stride, relu=True)
        self.decoder = Decoder(n_filters, kernel_size, stride)
        self.in_norm = nn.GroupNorm(1, n_filters, eps=1e-8)
        self.in_proj = nn.Conv1d(n_filters, n_filters, 1, bias=False)
        self.blocks = nn.ModuleList(_DualTransformer(n_filters, n_heads, d_ffn, n_layers, dropout)
                                    for _ in range(n_blocks))
        self.head = nn.Sequential(nn.PReLU(), nn.Conv2d(n_filters, n_src * n_filters, 1))
        self.mask_head = GatedMaskHead(n_filters, n_filters, "relu")

    @classmethod
    def small(cls, n_src: int, sample_rate: int = 8000) -> "SepFormer":
        """A CPU-sized preset (about 26 k parameters for 2 sources) for tests and quick experiments."""
        return cls(n_src, sample_rate, n_filters=32, kernel_size=16, stride=8, chunk_size=20, n_blocks=1,
                   n_layers=1, n_heads=4, d_ffn=64)

    def forward(self, mix: Tensor) -> Tensor:
        """Separate ``mix [B, T]`` into ``[B, n_src, T]``."""
        mix = self.check_mix(mix)
        batch, length = mix.shape
        feats = self.encoder(self.pad(mix))  # [B, N, K]
        n_frames = feats.shape[-1]
        x = chunk(self.in_proj(self.in_norm(feats)), self.chunk_size, self.hop_size)
        for block in self.blocks:
            x = block(x)
        x = self.head(x).reshape(batch * self.n_src, self.n_filters, *x.shape[-2:])
        x = overlap_add(x, self.hop_size, n_frames)
        masks = self.mask_head(x)
        masks = masks.reshape(batch, self.n_src, self.n_filters, n_frames)
        return self.decoder(masks * feats.unsqueeze(1))[..., :length]
