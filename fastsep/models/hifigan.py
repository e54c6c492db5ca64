"""HiFi-GAN (Kong, Kim & Bae, 2020) generator: a deterministic mel vocoder, GM's GAN alternative to DiffWave.

Separate-And-Diffuse (Lutati et al.) reports that a deterministic GAN vocoder in place of DiffWave gives no gain: the
gain comes from the generative model's sampling. This module makes that ablation runnable: :class:`HiFiGAN` is
pluggable wherever a :class:`fastsep.models.DiffWave` vocoder is (``Separator``, bundles, ``fastsep train combiner
--vocoder``) because it offers the same ``vocode(audio, fast=..., seed=...)`` call and the same config keys
(``sample_rate``, ``hop_length``, ``n_mels``), and it reads the same features (:func:`fastsep.dsp.mel_spectrogram`).

Architecture (the paper's V1 generator, written from its description): a 7-tap input convolution to
``upsample_initial_channel`` channels, then per upsampling stage a leaky ReLU (slope 0.1), a transposed convolution
(stride u, kernel k, padding (k − u)/2, so exactly u outputs per input) halving the channels, and a multi-receptive-
field fusion (MRF): the mean of one residual block per kernel size, each block a chain of dilated convolutions. A
leaky ReLU (torch's default slope 0.01, as in the reference), a 7-tap output convolution and tanh finish. Every
convolution is weight-normalised.

Sizes for fastsep's 8 kHz front end (hop 128, 40 mels): the strides must multiply to the hop. The paper's V1 (hop
256 at 22.05 kHz) upsamples by 8, 8, 2, 2 from 512 channels; for hop 128 the default is 8, 4, 2, 2 (kernels 16, 8, 4,
4) from 512 channels, which keeps V1's four stages and its 32 channels at the sample rate, with the V1 MRF (kernels 3,
7, 11, dilations 1, 3, 5): :meth:`HiFiGAN.paper`. :meth:`HiFiGAN.small` is a CPU preset (128 channels, V2's width).
The discriminators and losses are in :mod:`fastsep.models.hifigan_discriminators`; training in
:mod:`fastsep.train.hifigan`.
"""
from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .io import FolderPersistence

__all__ = ["HiFiGAN", "ResBlock1", "ResBlock2", "upsample_plan", "LRELU_SLOPE", "PAPER_PLANS"]

LRELU_SLOPE = 0.1  # every leaky ReLU inside the network, as the reference; the one before conv_post uses torch's 0.01
INIT_STD = 0.01  # the reference's init_weights: N(0, 0.01) for the upsampling, residual and output convolutions

# Upsampling strides and kernels (kernel = 2 x stride) of the reference configurations, by hop length. Hop 256 is the
# paper's V1/V2 (8, 8, 2, 2); hop 128 (fastsep's 8 kHz default) keeps the four stages with the second stride halved.
PAPER_PLANS = {
    256: ((8, 8, 2, 2), (16, 16, 4, 4)),
    128: ((8, 4, 2, 2), (16, 8, 4, 4)),
}


def upsample_plan(hop_length: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """``(upsample_rates, upsample_kernel_sizes)`` whose rates multiply to ``hop_length``.

    The reference plans for hop 256 and 128 (:data:`PAPER_PLANS`); any other hop is factored greedily into strides
    of at most 8, largest first (80 -> 8, 5, 2), a prime factor above 8 standing as its own stride. Kernels are twice
    an even stride, as in the reference, and 2u + 1 for an odd stride u: ``k − u`` must be even for a stage to give
    exactly ``u`` samples per input.
    """
    if isinstance(hop_length, bool) or not isinstance(hop_length, int) or hop_length < 2:
        raise ValueError(f"HiFiGAN: hop_length must be an int >= 2, got {hop_length!r}")
    if hop_length in PAPER_PLANS:
        return PAPER_PLANS[hop_length]
    rates: List[int] = []
    rest = hop_length
    while rest > 1:
        stride = next((d for d in range(8, 1, -1) if rest % d == 0), rest)
        rates.append(stride)
        rest //= stride
    return tuple(rates), tuple(2 * r + r % 2 for r in rates)


def _conv1d(in_ch: int, out_ch: int, kernel: int, *, dilation: int = 1, init: bool = True) -> nn.Module:
    """A weight-normalised, length-preserving (odd kernel, 'same' padding) Conv1d."""
    layer = nn.Conv1d(in_ch, out_ch, kernel, 1, dilation=dilation, padding=dilation * (kernel - 1) // 2)
    if init:
        # Initialised before weight norm is applied, so that the norm's g and v start from N(0, 0.01) weights. (The
        # reference writes N(0, 0.01) into .weight after applying the old weight_norm, which its forward pre-hook then
        # overwrites from g and v: there the init is in effect torch's default. Small residual branches at the start
        # are the evident intent, and keep an untrained generator's output near silence.)
        nn.init.normal_(layer.weight, 0.0, INIT_STD)
    return weight_norm(layer)


class ResBlock1(nn.Module):
    """The V1/V2 residual block: per dilation d, ``x + conv_1(lrelu(conv_d(lrelu(x))))`` (kernel k both)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv1d(channels, channels, kernel_size, dilation=d) for d in dilations)
        self.convs2 = nn.ModuleList(_conv1d(channels, channels, kernel_size) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + xt
        return x


class ResBlock2(nn.Module):
    """The V3 residual block: per dilation d, ``x + conv_d(lrelu(x))``."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(_conv1d(channels, channels, kernel_size, dilation=d) for d in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


def _int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"HiFiGAN: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _int_list(name: str, value, minimum: int = 1) -> List[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"HiFiGAN: {name} must be a non-empty list of ints, got {value!r}")
    return [_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value)]


class HiFiGAN(FolderPersistence, nn.Module):
    """HiFi-GAN generator: mel spectrogram ``[B, n_mels, F]`` -> waveform ``[B, 1, F·hop]`` in (-1, 1).

    Args:
        sample_rate, hop_length, n_mels: of the mel features (:func:`fastsep.dsp.mel_spectrogram`); one frame
            stands for ``hop_length`` samples. Defaults: fastsep's 8 kHz front end (hop 128, 40 mels).
        upsample_rates, upsample_kernel_sizes: one per stage; the rates must multiply to ``hop_length`` and each
            ``kernel − rate`` must be even and >= 0. None: :func:`upsample_plan` of the hop.
        upsample_initial_channel: channels after the input convolution; each stage halves them.
        resblock: "1" (V1/V2 blocks) or "2" (V3 blocks).
        resblock_kernel_sizes, resblock_dilation_sizes: the MRF: one residual block per kernel size, with its list of
            dilations.

    The model is deterministic: ``vocode`` accepts ``seed`` and ``fast`` for interface parity with DiffWave and
    ignores them.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        hop_length: int = 128,
        n_mels: int = 40,
        upsample_rates: Optional[Sequence[int]] = None,
        upsample_kernel_sizes: Optional[Sequence[int]] = None,
        upsample_initial_channel: int = 512,
        resblock: str = "1",
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ):
        super().__init__()
        sample_rate = _int("sample_rate", sample_rate)
        hop_length = _int("hop_length", hop_length, 2)
        n_mels = _int("n_mels", n_mels)
        if (upsample_rates is None) != (upsample_kernel_sizes is None):
            raise ValueError("HiFiGAN: give both upsample_rates and upsample_kernel_sizes, or neither")
        if upsample_rates is None:
            upsample_rates, upsample_kernel_sizes = upsample_plan(hop_length)
        rates = _int_list("upsample_rates", upsample_rates)
        kernels = _int_list("upsample_kernel_sizes", upsample_kernel_sizes)
        if len(rates) != len(kernels):
            raise ValueError(f"HiFiGAN: {len(rates)} upsample_rates but {len(kernels)} upsample_kernel_sizes")
        if math.prod(rates) != hop_length:
            raise ValueError(f"HiFiGAN: upsample_rates {rates} multiply to {math.prod(rates)}, not to the hop length "
                             f"{hop_length} (one mel frame must become hop_length samples)")
        for u, k in zip(rates, kernels):
            if k < u or (k - u) % 2:
                raise ValueError(f"HiFiGAN: an upsampling kernel must be >= its stride with an even difference (so "
                                 f"the stage gives exactly stride samples per input), got kernel {k}, stride {u}")
        channels = _int("upsample_initial_channel", upsample_initial_channel)
        if channels % (2 ** len(rates)):
            raise ValueError(f"HiFiGAN: upsample_initial_channel {channels} must be divisible by 2^{len(rates)} "
                             f"(each of the {len(rates)} stages halves the channels)")
        if resblock not in ("1", "2"):
            raise ValueError(f"HiFiGAN: resblock must be '1' (V1/V2) or '2' (V3), got {resblock!r}")
        res_kernels = _int_list("resblock_kernel_sizes", resblock_kernel_sizes)
        if any(k % 2 == 0 for k in res_kernels):
            raise ValueError(f"HiFiGAN: resblock_kernel_sizes must be odd (length-preserving), got {res_kernels}")
        if isinstance(resblock_dilation_sizes, (str, bytes)) or not isinstance(resblock_dilation_sizes, Sequence):
            raise ValueError(f"HiFiGAN: resblock_dilation_sizes must be a list of lists of ints, "
                             f"got {resblock_dilation_sizes!r}")
        dilations = [_int_list(f"resblock_dilation_sizes[{i}]", d) for i, d in enumerate(resblock_dilation_sizes)]
        if len(dilations) != len(res_kernels):
            raise ValueError(f"HiFiGAN: {len(res_kernels)} resblock_kernel_sizes but {len(dilations)} "
                             f"resblock_dilation_sizes")
        self.config = dict(
            sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels, upsample_rates=rates,
            upsample_kernel_sizes=kernels, upsample_initial_channel=channels, resblock=resblock,
            resblock_kernel_sizes=res_kernels, resblock_dilation_sizes=dilations,
        )

        block = ResBlock1 if resblock == "1" else ResBlock2
        # conv_pre keeps torch's default init, as in the reference (its init_weights skips it).
        self.conv_pre = _conv1d(n_mels, channels, 7, init=False)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(rates, kernels)):
            c_in, c_out = channels // 2 ** i, channels // 2 ** (i + 1)
            up = nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2)
            nn.init.normal_(up.weight, 0.0, INIT_STD)
            self.ups.append(weight_norm(up))
            for kernel, dil in zip(res_kernels, dilations):
                self.resblocks.append(block(c_out, kernel, dil))
        self.conv_post = _conv1d(channels // 2 ** len(rates), 1, 7)

    # ------------------------------------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, sample_rate: int = 8000, hop_length: int = 128, n_mels: int = 40, **overrides) -> "HiFiGAN":
        """The paper's V1 generator (512 initial channels, MRF kernels 3/7/11 with dilations 1/3/5) for this front
        end; 13.9 M parameters at hop 256 / 80 mels (the paper's figure), 13.5 M at hop 128 / 40 mels."""
        return cls(sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels, **overrides)

    @classmethod
    def small(cls, sample_rate: int = 8000, hop_length: int = 128, n_mels: int = 40, **overrides) -> "HiFiGAN":
        """A CPU preset: V2's width (128 initial channels, so 8 at the sample rate) with the V1 MRF; 0.9 M
        parameters at hop 128."""
        kwargs = dict(upsample_initial_channel=128)
        kwargs.update(overrides)
        return cls(sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels, **kwargs)

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return self.config["sample_rate"]

    @property
    def hop_length(self) -> int:
        return self.config["hop_length"]

    @property
    def n_mels(self) -> int:
        return self.config["n_mels"]

    # ----------------------------------------------------------------------------------------------- the network
    def forward(self, mel: Tensor) -> Tensor:
        """``mel [B, n_mels, F]`` -> audio ``[B, 1, F·hop]`` (the reference's output layout)."""
        if not isinstance(mel, Tensor) or mel.dim() != 3 or mel.shape[1] != self.n_mels or not mel.is_floating_point():
            raise ValueError(f"HiFiGAN: mel must be a float tensor [B, n_mels={self.n_mels}, frames], "
                             f"got {_describe(mel)}")
        if mel.shape[-1] < 1:
            raise ValueError("HiFiGAN: mel has no frames")
        n_kernels = len(self.config["resblock_kernel_sizes"])
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            # MRF: the mean of this stage's residual blocks, each with its own receptive field
            mrf = self.resblocks[i * n_kernels](x)
            for j in range(1, n_kernels):
                mrf = mrf + self.resblocks[i * n_kernels + j](x)
            x = mrf / n_kernels
        x = self.conv_post(F.leaky_relu(x))  # torch's default slope 0.01 here, as in the reference
        return torch.tanh(x)

    @torch.no_grad()
    def generate(self, mel: Tensor, precision: Optional[str] = None) -> Tensor:
        """Audio ``[B, T]`` (``T = F·hop``) from ``mel`` ``[n_mels, F]`` or ``[B, n_mels, F]``.

        ``precision``: None or "float32"; "bfloat16" runs the network under bfloat16 autocast (faster on CPUs with
        AVX512-BF16 and on GPUs; the output is float32)."""
        if isinstance(mel, Tensor) and mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if precision not in (None, "float32", "bfloat16"):
            raise ValueError(f"HiFiGAN: precision must be 'float32' or 'bfloat16', got {precision!r}")
        device_type = mel.device.type if isinstance(mel, Tensor) else "cpu"
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            out = self(mel.float() if isinstance(mel, Tensor) else mel)
        return out.squeeze(1).float()

    @torch.no_grad()
    def vocode(self, audio: Tensor, fast: bool = True, seed: Optional[int] = None,
               precision: Optional[str] = None) -> Tensor:
        """Re-synthesise ``audio [B, T]`` (or ``[T]``) through its own mel spectrogram: GM's estimate, as
        :meth:`fastsep.models.DiffWave.vocode` (same call, same features, same shape out).

        ``fast`` and ``seed`` are accepted for interface parity and ignored: this vocoder draws no noise, so the same
        input always gives the same output. ``precision`` as in :meth:`generate`.
        """
        from ..dsp import like_input, mel_spectrogram

        del fast, seed  # deterministic: nothing to schedule or seed
        if not isinstance(audio, Tensor) or not audio.is_floating_point() or audio.dim() not in (1, 2):
            raise ValueError(f"HiFiGAN.vocode: audio must be a float tensor [B, T] or [T], got {_describe(audio)}")
        if audio.shape[-1] <= 2 * self.hop_length:
            raise ValueError(f"HiFiGAN.vocode: audio must be longer than 2·hop = {2 * self.hop_length} samples (one "
                             f"mel frame's reflect padding), got {audio.shape[-1]}")
        wave = audio.unsqueeze(0) if audio.dim() == 1 else audio
        param = next(self.parameters())
        mel = mel_spectrogram(wave.to(param.device).float(), self.sample_rate, self.hop_length, self.n_mels)
        return like_input(self.generate(mel, precision=precision), audio)


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a {str(x.dtype).replace('torch.', '')} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
