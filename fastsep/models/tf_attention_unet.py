"""The time-frequency attention U-Net of the diffusion source priors (Shi et al., AAAI 2026; notes in
``shared/papers/unsupervised-diffusion-priors.md``): an epsilon-prediction network for an unconditional DDPM over
waveforms.

Waveform in, epsilon out: a centred STFT (sqrt-Hann window, no magnitude compression) gives real and imaginary parts
as two channels ``[B, 2, F, K]``; a U-Net of ``len(channels)`` levels (the paper: 72/144/288) runs blocks that attend
within each frame across frequency, then within each frequency bin across time (plus full attention over all
time-frequency tokens at the lowest level), each followed by a gated-GELU MLP. Attention uses rotary position
encodings along the attended axis; every sub-layer is conditioned on the diffusion step by adaLN-Zero (a LayerNorm
whose shift, scale and residual gate come from the step embedding, the gate starting at zero so every block starts as
the identity). The output's two channels are read as a spectrum and brought back to a waveform by the inverse STFT.

``forward(x [B, T], t [B]) -> [B, T]``. The spectrum is scaled by ``1 / ||window||`` so that white noise of unit
variance has unit-variance bins; frequency and frame counts are zero-padded to a multiple of ``2^(levels - 1)`` and
cropped back. Every token is normalised on its own (LayerNorm over channels), so a batch item's output never depends
on its batch-mates.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import check_positive_int

__all__ = ["TFAttentionUNet"]


# ----------------------------------------------------------------------------------------------------- embeddings
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[N, dim]`` of (integer or fractional) diffusion steps ``[N]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _rope_angles(positions: Tensor, dim: int, base: float = 10000.0) -> Tuple[Tensor, Tensor]:
    """cos/sin ``[L, dim/2]`` of rotary encodings for ``positions [L]`` over ``dim`` (even) channels."""
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float().unsqueeze(1) * inv.unsqueeze(0)
    return angles.cos(), angles.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    # x [..., L, d] with pairs (x[2i], x[2i+1]) rotated by angle i at each position
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class RotaryAttention(nn.Module):
    """Multi-head self-attention over a sequence ``[N, L, C]`` with rotary position encodings.

    ``axes`` 1: positions 0..L-1. ``axes`` 2 (full time-frequency attention): the sequence is a ``rows x cols`` grid
    flattened row-major; half of each head's channels rotate with the row index, half with the column index.
    """

    def __init__(self, channels: int, heads: int, axes: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"RotaryAttention: channels ({channels}) must be divisible by heads ({heads})")
        self.heads, self.head_dim, self.axes = heads, channels // heads, axes
        if self.head_dim % (2 * axes):
            raise ValueError(f"RotaryAttention: head dimension {self.head_dim} must be divisible by {2 * axes}")
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def _rope(self, q: Tensor, grid: Optional[Tuple[int, int]]) -> Tensor:
        L, d = q.shape[-2], self.head_dim
        if self.axes == 1:
            cos, sin = _rope_angles(torch.arange(L, device=q.device), d)
            return _rotate(q, cos.to(q.dtype), sin.to(q.dtype))
        rows, cols = grid
        r = torch.arange(rows, device=q.device).repeat_interleave(cols)
        c = torch.arange(cols, device=q.device).repeat(rows)
        half = d // 2
        cr, sr = _rope_angles(r, half)
        cc, sc = _rope_angles(c, half)
        return torch.cat([_rotate(q[..., :half], cr.to(q.dtype), sr.to(q.dtype)),
                          _rotate(q[..., half:], cc.to(q.dtype), sc.to(q.dtype))], dim=-1)

    def forward(self, x: Tensor, grid: Optional[Tuple[int, int]] = None) -> Tensor:
        N, L, C = x.shape
        q, k, v = self.qkv(x).reshape(N, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self._rope(q, grid), self._rope(k, grid)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(N, L, C))


class GatedGELUMLP(nn.Module):
    """``W2 (GELU(W_a x) * W_b x)``: the gated-GELU feed-forward of the notes."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = max(1, int(round(channels * ratio)))
        self.inp = nn.Linear(channels, 2 * hidden)
        self.out = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.inp(x).chunk(2, dim=-1)
        return self.out(F.gelu(a) * b)


class TFBlock(nn.Module):
    """Intra-frequency attention, intra-time attention (optionally full attention), gated-GELU MLP, each a residual
    sub-layer with adaLN-Zero modulation from the step embedding. Works on channel-last ``[B, F, K, C]``."""

    def __init__(self, channels: int, heads: int, embed_dim: int, mlp_ratio: float, full_attention: bool):
        super().__init__()
        self.full = full_attention
        n_sub = 4 if full_attention else 3
        self.norms = nn.ModuleList(nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6) for _ in range(n_sub))
        self.freq_attn = RotaryAttention(channels, heads)
        self.time_attn = RotaryAttention(channels, heads)
        self.full_attn = RotaryAttention(channels, heads, axes=2) if full_attention else None
        self.mlp = GatedGELUMLP(channels, mlp_ratio)
        # adaLN-Zero: (shift, scale, gate) per sub-layer; zero weights make every gate 0 at the start, so the block
        # is the identity and the network starts as its (skip-connected) stem/head, which trains stably.
        self.ada = nn.Linear(embed_dim, 3 * n_sub * channels)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        B, Fq, K, C = x.shape
        mods = self.ada(F.silu(emb)).view(B, 1, 1, -1, 3, C)

        def modulated(i: int) -> Tuple[Tensor, Tensor]:
            shift, scale, gate = mods[:, :, :, i].unbind(dim=3)
            return self.norms[i](x) * (1 + scale) + shift, gate

        h, gate = modulated(0)  # across frequency, within each frame
        h = self.freq_attn(h.permute(0, 2, 1, 3).reshape(B * K, Fq, C)).reshape(B, K, Fq, C).permute(0, 2, 1, 3)
        x = x + gate * h
        h, gate = modulated(1)  # across time, within each frequency bin
        x = x + gate * self.time_attn(h.reshape(B * Fq, K, C)).reshape(B, Fq, K, C)
        i = 2
        if self.full_attn is not None:
            h, gate = modulated(i)
            x = x + gate * self.full_attn(h.reshape(B, Fq * K, C), grid=(Fq, K)).reshape(B, Fq, K, C)
            i += 1
        h, gate = modulated(i)
        return x + gate * self.mlp(h)


# ---------------------------------------------------------------------------------------------------------- model
class TFAttentionUNet(nn.Module):
    """Epsilon-prediction network of a DDPM waveform prior: ``forward(x [B, T], t [B] or [1]) -> [B, T]``.

    Args:
        sample_rate: of the audio the prior models (metadata).
        n_fft, hop_length: the STFT (the paper at 16 kHz: 510 / 255, sqrt-Hann window).
        channels: width of each U-Net level (the paper: 72, 144, 288).
        depths: TF blocks per level on the way down (the way up repeats them).
        head_dim: channels per attention head (each level has ``channels / head_dim`` heads).
        mlp_ratio: hidden width of the gated-GELU MLP over the channels.
        full_attention_bottom: full attention over all time-frequency tokens in the lowest level's blocks.
        diffusion_steps, beta_start, beta_end: the DDPM schedule this network is trained for (read by
            :class:`fastsep.sampling.priors.NetworkPrior`; the paper: 200, 1e-4, 0.02).
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 510, hop_length: int = 255,
                 channels: Sequence[int] = (72, 144, 288), depths: Sequence[int] = (2, 2, 2), head_dim: int = 24,
                 mlp_ratio: float = 2.0, full_attention_bottom: bool = True, diffusion_steps: int = 200,
                 beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        name = type(self).__name__
        for key, val in (("sample_rate", sample_rate), ("n_fft", n_fft), ("hop_length", hop_length),
                         ("head_dim", head_dim), ("diffusion_steps", diffusion_steps)):
            check_positive_int(name, key, val)
        channels, depths = [int(c) for c in channels], [int(d) for d in depths]
        if not channels or len(channels) != len(depths):
            raise ValueError(f"{name}: channels and depths must be non-empty and of equal length, got {channels}, "
                             f"{depths}")
        for c in channels:
            if c % head_dim or (c // head_dim) < 1:
                raise ValueError(f"{name}: every level's channels must be a multiple of head_dim={head_dim}, got {c}")
        if head_dim % 4:
            raise ValueError(f"{name}: head_dim must be a multiple of 4 (2-D rotary encodings), got {head_dim}")
        if any(d < 1 for d in depths):
            raise ValueError(f"{name}: depths must be >= 1, got {depths}")
        if hop_length > n_fft:
            raise ValueError(f"{name}: hop_length ({hop_length}) must not exceed n_fft ({n_fft})")
        self.config: Dict[str, Any] = dict(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, channels=channels, depths=depths,
            head_dim=head_dim, mlp_ratio=float(mlp_ratio), full_attention_bottom=bool(full_attention_bottom),
            diffusion_steps=diffusion_steps, beta_start=float(beta_start), beta_end=float(beta_end))
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.levels = len(channels)
        window = torch.hann_window(n_fft, periodic=True).sqrt()
        self.register_buffer("window", window, persistent=False)
        self.spec_scale = float(window.pow(2).sum().sqrt())

        c0 = channels[0]
        embed_dim = 4 * c0
        self.embed_in = c0
        self.step_mlp = nn.Sequential(nn.Linear(c0, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.stem = nn.Conv2d(2, c0, 3, padding=1)
        heads = [c // head_dim for c in channels]
        last = self.levels - 1

        def blocks(level: int) -> nn.ModuleList:
            return nn.ModuleList(TFBlock(channels[level], heads[level], embed_dim, mlp_ratio,
                                         full_attention_bottom and level == last) for _ in range(depths[level]))

        self.down_blocks = nn.ModuleList(blocks(i) for i in range(self.levels))
        self.downsample = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 2, stride=2) for i in range(last))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2)
                                      for i in range(last))
        self.merge = nn.ModuleList(nn.Linear(2 * channels[i], channels[i]) for i in range(last))
        self.up_blocks = nn.ModuleList(blocks(i) for i in range(last))
        self.out_norm = nn.LayerNorm(c0, elementwise_affine=False, eps=1e-6)
        self.out_ada = nn.Linear(embed_dim, 2 * c0)
        nn.init.zeros_(self.out_ada.weight)
        nn.init.zeros_(self.out_ada.bias)
        self.head = nn.Conv2d(c0, 2, 3, padding=1)

    @classmethod
    def small(cls, sample_rate: int = 8000, **overrides) -> "TFAttentionUNet":
        """A CPU-sized preset (about 250 k parameters): 3 levels of 16/32/64 channels, one block each, the paper's
        32 ms frames at the given rate (n_fft 254, hop 127 at 8 kHz)."""
        n_fft = 2 * int(round(0.016 * sample_rate)) - 2 if sample_rate >= 1000 else 62
        kwargs = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 2, channels=(16, 32, 64),
                      depths=(1, 1, 1), head_dim=8, mlp_ratio=2.0, full_attention_bottom=True)
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "TFAttentionUNet":
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got {type(config).__name__}")
        return cls(**config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ------------------------------------------------------------------------------------------------ forward
    def _check(self, x: Any, t: Any) -> Tuple[Tensor, Tensor]:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            got = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: x must be a float tensor [batch, time], got {got}")
        if x.shape[0] < 1 or x.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"{name}: x must hold at least one item longer than n_fft/2 = {self.n_fft // 2} "
                             f"samples, got shape {tuple(x.shape)}")
        if not isinstance(t, Tensor):
            t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1 or t.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"{name}: t must be [batch] or [1] diffusion steps, got shape {tuple(t.shape)}")
        return x, t.expand(x.shape[0])

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        x, t = self._check(x, t)
        B, T = x.shape
        window = self.window.to(x.dtype)
        spec = torch.stft(x, self.n_fft, self.hop_length, window=window, center=True, return_complex=True)
        spec = spec / self.spec_scale
        Fq, K = spec.shape[-2:]
        mult = 2 ** (self.levels - 1)
        pf, pk = (-Fq) % mult, (-K) % mult
        h = torch.stack([spec.real, spec.imag], dim=1)
        h = F.pad(h, (0, pk, 0, pf))
        emb = self.step_mlp(timestep_embedding(t, self.embed_in))

        h = self.stem(h).permute(0, 2, 3, 1)  # channel-last [B, F, K, C]
        skips = []
        for level in range(self.levels):
            for block in self.down_blocks[level]:
                h = block(h, emb)
            if level < self.levels - 1:
                skips.append(h)
                h = self.downsample[level](h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        for level in range(self.levels - 2, -1, -1):
            h = self.upsample[level](h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            h = self.merge[level](torch.cat([h, skips[level]], dim=-1))
            for block in self.up_blocks[level]:
                h = block(h, emb)
        shift, scale = self.out_ada(F.silu(emb)).view(B, 1, 1, 2, -1).unbind(dim=3)
        h = self.out_norm(h) * (1 + scale) + shift
        out = self.head(h.permute(0, 3, 1, 2))[:, :, :Fq, :K]
        est = torch.complex(out[:, 0].float(), out[:, 1].float()) * self.spec_scale
        wave = torch.istft(est, self.n_fft, self.hop_length, window=window.float(), center=True, length=T)
        return wave.to(x.dtype)
