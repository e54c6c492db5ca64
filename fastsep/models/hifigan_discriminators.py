"""HiFi-GAN's discriminators (multi-period and multi-scale) and its three GAN losses.

Written from the paper's description (Kong, Kim & Bae, 2020, section 2.2-2.4):

- **Multi-period (MPD)**: one sub-discriminator per period p (2, 3, 5, 7, 11): the waveform, reflect-padded to a
  multiple of p, is folded into a 2-D ``[T/p, p]`` map and passed through 2-D convolutions with ``[k, 1]`` kernels
  (k = 5, stride 3; channels 32, 128, 512, 1024, then 1024 at stride 1) and a ``[3, 1]`` output convolution, so
  each column (samples p apart) is judged on its own. Weight norm.
- **Multi-scale (MSD)**: three sub-discriminators on the raw audio and on 2x and 4x average-pooled copies (pool 4,
  stride 2, padding 2): grouped 1-D convolutions (kernels 15, 41, 41, 41, 41, 41, 5; strides 1, 2, 2, 4, 4, 1, 1;
  channels 128, 128, 256, 512, 1024, 1024, 1024; groups 1, 4, 16, 16, 16, 16, 1) and a 3-tap output convolution.
  Spectral norm on the raw-audio one, weight norm on the others.

Each convolution but the last is followed by a leaky ReLU (0.1), and every activation (the output included) is a
*feature map* for the feature-matching loss. :class:`HiFiGANDiscriminator` holds both and answers one signal at a
time: ``logits, features = D(audio)``, one entry per sub-discriminator (MPD's first, then MSD's).

Losses (least squares, as the paper): :func:`discriminator_loss` ``sum_k E[(1 − D_k(y))²] + E[D_k(G(s))²]``,
:func:`generator_adversarial_loss` ``sum_k E[(1 − D_k(G(s)))²]``, :func:`feature_matching_loss`
``sum_k sum_l E|D_k^l(y) − D_k^l(G(s))|``. The paper's weights (feature matching 2, mel 45) are applied by the
training task, :mod:`fastsep.train.hifigan`.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from .hifigan import LRELU_SLOPE

__all__ = ["HiFiGANDiscriminator", "PeriodDiscriminator", "ScaleDiscriminator", "discriminator_loss",
           "generator_adversarial_loss", "feature_matching_loss", "MPD_CHANNELS", "MSD_CHANNELS", "MSD_GROUPS",
           "MSD_KERNELS", "MSD_STRIDES"]

PERIODS = (2, 3, 5, 7, 11)
MPD_CHANNELS = (32, 128, 512, 1024, 1024)  # the last at stride 1
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)
MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)
MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)

Features = List[List[Tensor]]


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: the audio folded by ``period`` through ``[kernel, 1]`` 2-D convolutions."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = int(period)
        pad = (kernel_size - 1) // 2
        layers, c_in = [], 1
        for i, c_out in enumerate(channels):
            # all but the last convolution stride by 3 along the folded time axis
            s = stride if i < len(channels) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(pad, 0))))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """``x [B, 1, T]`` -> ``(logits [B, N], feature maps)``."""
        b, c, t = x.shape
        if t % self.period:
            # reflect-pad to a whole number of periods (needs T > the padding, checked by HiFiGANDiscriminator)
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.reshape(b, c, -1, self.period)
        return _run_convs(self.convs, self.conv_post, x)


def _run_convs(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
    """The sub-discriminators' shared tail: leaky-ReLU convolutions, then the post convolution to logits. Every
    layer's output is kept, the logits' too, because feature matching compares them all."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return torch.flatten(x, 1), features


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator: grouped, strided 1-D convolutions over the waveform (at one scale)."""

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS, groups: Sequence[int] = MSD_GROUPS,
                 use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        layers, c_in = [], 1
        for c_out, g, k, s in zip(channels, groups, MSD_KERNELS, MSD_STRIDES):
            layers.append(norm(nn.Conv1d(c_in, c_out, k, s, groups=g, padding=(k - 1) // 2)))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = norm(nn.Conv1d(c_in, 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """``x [B, 1, T]`` -> ``(logits [B, N], feature maps)``."""
        return _run_convs(self.convs, self.conv_post, x)


def _ints(name: str, value, n: int = 0) -> List[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"HiFiGANDiscriminator: {name} must be a non-empty list of ints, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"HiFiGANDiscriminator: {name} must hold ints >= 1, got {value!r}")
        out.append(int(v))
    if n and len(out) != n:
        raise ValueError(f"HiFiGANDiscriminator: {name} must have {n} entries, got {len(out)}")
    return out


class HiFiGANDiscriminator(nn.Module):
    """The multi-period and multi-scale discriminators together.

    Args:
        periods: MPD periods (the paper's 2, 3, 5, 7, 11).
        mpd_channels: channels of each period discriminator's 2-D convolutions (the last one at stride 1).
        msd_scales: number of MSD sub-discriminators (the paper's 3: raw, x2 and x4 average-pooled audio).
        msd_channels, msd_groups: the seven 1-D convolutions of each scale discriminator (see the module docstring);
            each group count must divide the layer's input and output channels.

    ``forward(audio [B, T] or [B, 1, T]) -> (logits, features)``: a list of ``[B, N_k]`` logits, one per
    sub-discriminator (len(periods) + msd_scales of them), and for each its list of feature maps.
    """

    def __init__(
        self,
        periods: Sequence[int] = PERIODS,
        mpd_channels: Sequence[int] = MPD_CHANNELS,
        msd_scales: int = 3,
        msd_channels: Sequence[int] = MSD_CHANNELS,
        msd_groups: Sequence[int] = MSD_GROUPS,
    ):
        super().__init__()
        periods = _ints("periods", periods)
        mpd_channels = _ints("mpd_channels", mpd_channels)
        msd_channels = _ints("msd_channels", msd_channels, len(MSD_KERNELS))
        msd_groups = _ints("msd_groups", msd_groups, len(MSD_KERNELS))
        if isinstance(msd_scales, bool) or not isinstance(msd_scales, int) or msd_scales < 0:
            raise ValueError(f"HiFiGANDiscriminator: msd_scales must be an int >= 0, got {msd_scales!r}")
        c_in = 1
        for i, (c_out, g) in enumerate(zip(msd_channels, msd_groups)):
            if c_in % g or c_out % g:
                raise ValueError(f"HiFiGANDiscriminator: msd_groups[{i}] = {g} must divide the layer's input and "
                                 f"output channels ({c_in} -> {c_out})")
            c_in = c_out
        self.config = dict(periods=periods, mpd_channels=mpd_channels, msd_scales=msd_scales,
                           msd_channels=msd_channels, msd_groups=msd_groups)
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, mpd_channels) for p in periods)
        # the raw-audio scale discriminator is spectrally normalised, the pooled ones weight-normalised (the paper)
        self.msd = nn.ModuleList(ScaleDiscriminator(msd_channels, msd_groups, use_spectral_norm=i == 0)
                                 for i in range(msd_scales))

    @classmethod
    def paper(cls) -> "HiFiGANDiscriminator":
        """The paper's discriminators (MPD 41.1 M + MSD 29.6 M parameters)."""
        return cls()

    @classmethod
    def small(cls, **overrides) -> "HiFiGANDiscriminator":
        """A CPU preset: the same periods and scales with 1/8 of the channels (MPD 0.68 M + MSD 0.49 M
        parameters)."""
        kwargs = dict(mpd_channels=(16, 32, 64, 128, 128), msd_channels=(16, 32, 32, 64, 128, 128, 128),
                      msd_groups=(1, 4, 8, 16, 16, 16, 1))
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def min_length(self) -> int:
        """Shortest input (samples): reflect padding to a whole period needs more samples than it adds."""
        return max(self.config["periods"]) if self.config["periods"] else 1

    def forward(self, audio: Tensor) -> Tuple[List[Tensor], Features]:
        if isinstance(audio, Tensor) and audio.dim() == 2:
            audio = audio.unsqueeze(1)
        if not isinstance(audio, Tensor) or audio.dim() != 3 or audio.shape[1] != 1 or not audio.is_floating_point():
            raise ValueError(f"HiFiGANDiscriminator: audio must be a float tensor [B, T] or [B, 1, T], got "
                             f"{_describe(audio)}")
        if audio.shape[-1] < self.min_length:
            raise ValueError(f"HiFiGANDiscriminator: audio must be at least {self.min_length} samples long, "
                             f"got {audio.shape[-1]}")
        logits: List[Tensor] = []
        features: Features = []
        for d in self.mpd:
            score, fmap = d(audio)
            logits.append(score)
            features.append(fmap)
        x = audio
        for i, d in enumerate(self.msd):
            if i:
                x = F.avg_pool1d(x, 4, 2, padding=2)  # each further scale sees the audio at half the rate
            score, fmap = d(x)
            logits.append(score)
            features.append(fmap)
        return logits, features

    def save(self, directory: Union[str, "os.PathLike[str]"]) -> str:
        """Write ``model.safetensors`` + ``model.json`` into ``directory`` (fastsep.models.io); returns the JSON."""
        from .io import save_model

        return save_model(self, directory)


# ---------------------------------------------------------------------------------------------------------- losses
def _check_pairs(name: str, a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name}: {len(a)} real entries but {len(b)} generated ones (one per sub-discriminator)")


def discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """Least-squares discriminator loss ``sum_k mean((1 − real_k)²) + mean(fake_k²)``: real audio towards 1,
    generated audio towards 0."""
    _check_pairs("discriminator_loss", real_logits, fake_logits)
    if not real_logits:
        raise ValueError("discriminator_loss: no sub-discriminator outputs")
    return sum(torch.mean((1.0 - r.float()) ** 2) + torch.mean(f.float() ** 2)
               for r, f in zip(real_logits, fake_logits))


def generator_adversarial_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Least-squares generator loss ``sum_k mean((1 − fake_k)²)``: generated audio judged real."""
    if not fake_logits:
        raise ValueError("generator_adversarial_loss: no sub-discriminator outputs")
    return sum(torch.mean((1.0 - f.float()) ** 2) for f in fake_logits)


def feature_matching_loss(real_features: Features, fake_features: Features) -> Tensor:
    """``sum_k sum_l mean|real_k^l − fake_k^l|`` over every sub-discriminator k and feature map l (unweighted; the
    paper weights it by 2). The real maps are targets: they are detached, so only the generated side gets
    gradients."""
    _check_pairs("feature_matching_loss", real_features, fake_features)
    total = None
    for k, (reals, fakes) in enumerate(zip(real_features, fake_features)):
        _check_pairs(f"feature_matching_loss (sub-discriminator {k})", reals, fakes)
        for r, f in zip(reals, fakes):
            term = torch.mean(torch.abs(r.detach().float() - f.float()))
            total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_matching_loss: no feature maps")
    return total


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a {str(x.dtype).replace('torch.', '')} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
