"""DiffSep's score network: an NCSN++-style U-Net on the compressed complex STFT (Scheibler et al., section 4.2).

The diffusion runs in the time domain (the process mixes sources linearly, which a non-linear transform would break),
but the network sees STFTs: the K sources x_t and the mixture go through an STFT and the compression of eq. (18),

    c(x) = beta^-1 |x|^alpha e^{j angle x},      c^-1(x) = beta |x|^{1/alpha} e^{j angle x},

real and imaginary parts stacked as 2(K+1) channels of a [freq, frames] image. The U-Net's 2K output channels are
turned back the same way (c^-1, iSTFT) into a time-domain score ``[B, K, T]``.

The U-Net follows NCSN++ (Song et al. 2021) in its main lines: Gaussian Fourier features of t through a two-layer
MLP, BigGAN-style residual blocks (GroupNorm, SiLU, 3x3 convolutions, the time embedding added in between, residual
sums rescaled by 1/sqrt(2)), self-attention at the chosen levels and in the middle, average-pool down and
nearest-neighbour up sampling, and skip connections from every block of the down path. It leaves out NCSN++'s FIR
resampling and its progressive input/output branches, which matter for image quality at 256x256 more than for a
score on spectrograms; see the report of issue 10.

Note on beta: eq. (18) as printed divides by beta = 0.15; the transform it cites (Welker et al.) multiplies by 0.15
and the authors' released configuration multiplies by 0.33. The paper's formula is followed here; only the input and
output scale of the network change with it.

Defaults: 8 kHz with n_fft 510 / hop 128 (256 frequency bins, the authors' configuration), nf 64 (their released
configuration; NCSN++'s own default is 128), channel multipliers (1, 1, 2, 2, 2, 2, 2), two residual blocks per
level, attention at the level of 16 frequency bins, as NCSN++. :meth:`NCSNpp.small` is a CPU preset.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import check_n_src, check_positive_int

__all__ = ["NCSNpp", "compress", "decompress"]


def compress(spec: Tensor, alpha: float, beta: float) -> Tensor:
    """c(x) = beta^-1 |x|^alpha e^{j angle x} (eq. 18) of a complex tensor."""
    mag = spec.abs()
    # |x|^alpha e^{j angle x} = x |x|^(alpha-1); the clamp keeps the gradient finite at exact zeros
    return spec * (mag.clamp_min(1e-12) ** (alpha - 1.0) / beta)


def decompress(spec: Tensor, alpha: float, beta: float) -> Tensor:
    """c^-1(x) = beta |x|^{1/alpha} e^{j angle x}, the inverse of :func:`compress`."""
    mag = spec.abs()
    return spec * (beta ** (1.0 / alpha) * mag.clamp_min(1e-12) ** (1.0 / alpha - 1.0))


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


class _ResBlock(nn.Module):
    """BigGAN-style residual block with the time embedding added after the first convolution."""

    def __init__(self, cin: int, cout: int, temb: int, dropout: float, resample: str = "none"):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        # a zero-started last convolution makes every block the identity at initialisation, as in NCSN++
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.resample = resample

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        h = self.conv1(self._resample(h))
        x = self._resample(x)
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) / math.sqrt(2.0)


class _Attention(nn.Module):
    """Single-head self-attention over all time-frequency positions."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))) / math.sqrt(2.0)


class _WeightAverage(nn.Module):
    """Buffers shadowing every parameter of ``owner`` (dots in names become ``__``), plus an update counter."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        for pname, param in owner.named_parameters():
            self.register_buffer(pname.replace(".", "__"), param.detach().clone().float())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def shadow(self, pname: str) -> Tensor:
        return getattr(self, pname.replace(".", "__"))


class NCSNpp(nn.Module):
    """Score network q_theta(x_t, t, y) of DiffSep: ``forward(x [B, K, T], t [B], mixture [B, T]) -> [B, K, T]``.

    Args:
        n_src: K, 2 to 20 (2 for enhancement).
        sample_rate: the rate the model is meant for (metadata, as in the other models).
        n_fft, hop_length: STFT (Hann window, centred). ``n_fft // 2 + 1`` must be divisible by
            ``2 ** (len(ch_mult) - 1)``, the U-Net's total down-sampling (510 -> 256 bins, 254 -> 128, ...).
        alpha, beta: the compression of eq. (18).
        nf: channels at the first level; level i has ``nf * ch_mult[i]``.
        ch_mult: channel multiplier per level (one level per entry; each but the last halves both axes).
        num_res_blocks: residual blocks per level on the down path (one more on the up path, as in NCSN++).
        attn_levels: levels (0 = full resolution) that get self-attention after each residual block.
        dropout: inside the residual blocks.
        fourier_scale: standard deviation of the Gaussian Fourier features' frequencies for t.
        ema_decay: when positive, the model also carries an exponential moving average of its weights (buffers
            under ``ema.``, saved and resumed with the model; see :meth:`update_ema`, :meth:`averaged`). Training
            sets it (the paper averages weights as SGMSE+ does, decay 0.999); :meth:`averaged` gives the plain
            network for inference.
    """

    def __init__(self, n_src: int = 2, sample_rate: int = 8000, n_fft: int = 510, hop_length: int = 128,
                 alpha: float = 0.5, beta: float = 0.15, nf: int = 64,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 2, 2, 2), num_res_blocks: int = 2,
                 attn_levels: Sequence[int] = (4,), dropout: float = 0.0, fourier_scale: float = 16.0,
                 ema_decay: float = 0.0):
        super().__init__()
        name = type(self).__name__
        self.n_src = check_n_src(name, n_src)
        self.sample_rate = check_positive_int(name, "sample_rate", sample_rate)
        for key, val in (("n_fft", n_fft), ("hop_length", hop_length), ("nf", nf),
                         ("num_res_blocks", num_res_blocks)):
            check_positive_int(name, key, val)
        ch_mult = [check_positive_int(name, "ch_mult entry", int(c) if not isinstance(c, bool) else c)
                   for c in ch_mult]
        if not ch_mult:
            raise ValueError(f"{name}: ch_mult needs at least one level")
        attn_levels = sorted({int(a) for a in attn_levels})
        if any(not 0 <= a < len(ch_mult) for a in attn_levels):
            raise ValueError(f"{name}: attn_levels {attn_levels} must lie in [0, {len(ch_mult) - 1}]")
        if hop_length > n_fft:
            raise ValueError(f"{name}: hop_length ({hop_length}) must not exceed n_fft ({n_fft})")
        self.factor = 2 ** (len(ch_mult) - 1)
        n_freq = n_fft // 2 + 1
        if n_freq % self.factor:
            raise ValueError(f"{name}: n_fft // 2 + 1 = {n_freq} frequency bins must be divisible by "
                             f"2 ** (len(ch_mult) - 1) = {self.factor}; e.g. n_fft = {self.factor * 4 - 2}")
        if not (0 < alpha <= 1 and beta > 0):
            raise ValueError(f"{name}: need 0 < alpha <= 1 and beta > 0, got alpha={alpha}, beta={beta}")
        if not (isinstance(ema_decay, (int, float)) and 0 <= ema_decay < 1):
            raise ValueError(f"{name}: ema_decay must be in [0, 1), got {ema_decay!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.config: Dict[str, Any] = dict(
            n_src=n_src, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, alpha=float(alpha),
            beta=float(beta), nf=nf, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
            attn_levels=list(attn_levels), dropout=float(dropout), fourier_scale=float(fourier_scale),
            ema_decay=float(ema_decay))
        self.n_fft, self.hop_length, self.alpha, self.beta = n_fft, hop_length, float(alpha), float(beta)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

        temb = 4 * nf
        # Fixed random frequencies, stored with the weights; drawn from a private generator so that a rebuilt
        # model starts from the same features before its weights are loaded.
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("fourier_w", torch.randn(nf // 2 if nf >= 2 else 1, generator=gen) * fourier_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(2 * self.fourier_w.numel(), temb), nn.SiLU(), nn.Linear(temb, temb))

        cin = 2 * (n_src + 1)
        self.conv_in = nn.Conv2d(cin, nf, 3, padding=1)
        self.down = nn.ModuleList()
        chans = [nf]
        ch = nf
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(_ResBlock(ch, nf * mult, temb, dropout))
                ch = nf * mult
                if level in attn_levels:
                    self.down.append(_Attention(ch))
                chans.append(ch)
            if level < len(ch_mult) - 1:
                self.down.append(_ResBlock(ch, ch, temb, dropout, resample="down"))
                chans.append(ch)
        self.mid = nn.ModuleList([_ResBlock(ch, ch, temb, dropout), _Attention(ch), _ResBlock(ch, ch, temb, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(_ResBlock(ch + chans.pop(), nf * ch_mult[level], temb, dropout))
                ch = nf * ch_mult[level]
                if level in attn_levels:
                    self.up.append(_Attention(ch))
            if level > 0:
                self.up.append(_ResBlock(ch, ch, temb, dropout, resample="up"))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, 2 * n_src, 3, padding=1)
        # last, so that it shadows every parameter above (and none of its own)
        self.ema = _WeightAverage(self) if ema_decay > 0 else None

    # ------------------------------------------------------------------------------------- weight averaging
    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the averaged weights towards the current ones (call after every optimizer step).

        The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates (as torch_ema does), so a
        short run's average is not stuck near the random initialisation.
        """
        if self.ema is None:
            raise RuntimeError("NCSNpp.update_ema: this model was built with ema_decay=0 (no averaged weights)")
        n = float(self.ema.num_updates)
        decay = min(self.config["ema_decay"], (1.0 + n) / (10.0 + n))
        for pname, param in self.named_parameters():
            self.ema.shadow(pname).lerp_(param.detach().to(torch.float32), 1.0 - decay)
        self.ema.num_updates += 1

    def averaged(self) -> "NCSNpp":
        """A plain copy (``ema_decay=0``) carrying the averaged weights, or the current ones when there are none."""
        config = dict(self.config, ema_decay=0.0)
        out = type(self)(**config).to(self.fourier_w.device)
        with torch.no_grad():
            for pname, param in out.named_parameters():
                src = self.ema.shadow(pname) if self.ema is not None else self.get_parameter(pname)
                param.copy_(src)
            out.fourier_w.copy_(self.fourier_w)
        return out.train(self.training)

    @classmethod
    def small(cls, n_src: int = 2, sample_rate: int = 8000) -> "NCSNpp":
        """A CPU-sized preset (0.45 M parameters for 2 sources; the default is 16.4 M): n_fft 254 / hop 64, nf 16,
        four levels, one block each."""
        return cls(n_src, sample_rate, n_fft=254, hop_length=64, nf=16, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
                   attn_levels=(3,))

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "NCSNpp":
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got {type(config).__name__}")
        return cls(**config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---------------------------------------------------------------------------------------- spectral frontend
    def _stft(self, wave: Tensor) -> Tensor:
        lead = wave.shape[:-1]
        spec = torch.stft(wave.reshape(-1, wave.shape[-1]), self.n_fft, self.hop_length, window=self.window,
                          center=True, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])

    def _istft(self, spec: Tensor, length: int) -> Tensor:
        lead = spec.shape[:-2]
        wave = torch.istft(spec.reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop_length, window=self.window,
                           center=True, length=length)
        return wave.reshape(*lead, length)

    def _check(self, x, t, mixture) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not isinstance(mixture, Tensor) or not isinstance(t, Tensor):
            raise TypeError(f"{name}: x, t and mixture must be tensors")
        if x.dim() != 3 or x.shape[1] != self.n_src:
            raise ValueError(f"{name}: x must be [batch, {self.n_src}, time], got {tuple(x.shape)}")
        if mixture.dim() != 2 or mixture.shape[0] != x.shape[0] or mixture.shape[1] != x.shape[2]:
            raise ValueError(f"{name}: mixture must be [batch, time] = [{x.shape[0]}, {x.shape[2]}], "
                             f"got {tuple(mixture.shape)}")
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: t must be [batch] = [{x.shape[0]}], got {tuple(t.shape)}")
        if x.shape[-1] < 2:
            raise ValueError(f"{name}: need at least 2 samples, got {x.shape[-1]}")

    def forward(self, x: Tensor, t: Tensor, mixture: Tensor) -> Tensor:
        """The score estimate ``[B, K, T]`` at ``x [B, K, T]``, times ``t [B]``, conditioned on ``mixture [B, T]``."""
        self._check(x, t, mixture)
        length = x.shape[-1]
        wave = torch.cat([x, mixture.unsqueeze(1)], dim=1).float()
        spec = compress(self._stft(wave), self.alpha, self.beta)  # [B, K+1, F, N]
        frames = spec.shape[-1]
        pad = (-frames) % self.factor
        h = torch.cat([spec.real, spec.imag], dim=1)
        if pad:
            h = F.pad(h, (0, pad))
        ang = 2 * math.pi * t.float()[:, None] * self.fourier_w[None, :]
        temb = self.temb_mlp(torch.cat([ang.sin(), ang.cos()], dim=-1))

        h = self.conv_in(h)
        skips = [h]
        for block in self.down:
            if isinstance(block, _Attention):
                h = block(h)
                skips[-1] = h
            else:
                h = block(h, temb)
                skips.append(h)
        for block in self.mid:
            h = block(h) if isinstance(block, _Attention) else block(h, temb)
        for block in self.up:
            if isinstance(block, _Attention):
                h = block(h)
            elif block.resample == "up":
                h = block(h, temb)
            else:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
        h = self.conv_out(F.silu(self.norm_out(h)))[..., :frames]
        out = torch.complex(h[:, :self.n_src], h[:, self.n_src:])
        return self._istft(decompress(out, self.alpha, self.beta), length).to(x.dtype)
