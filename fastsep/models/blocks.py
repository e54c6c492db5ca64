"""Pieces shared by the separation backbones: the common base class with its input checks, the learned
encoder/decoder with padding to the stride, normalisations, and dual-path chunking with overlap-add.

Layouts follow asteroid: waveforms ``[B, T]`` in, ``[B, C, T]`` out; encoded features ``[B, N, frames]``;
dual-path chunks ``[B, N, chunk_size, n_chunks]``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GatedMaskHead",
    "MIN_SOURCES",
    "MAX_SOURCES",
    "SeparationModel",
    "Encoder",
    "Decoder",
    "GlobalLayerNorm",
    "ChannelLayerNorm",
    "make_norm",
    "chunk",
    "overlap_add",
    "check_n_src",
    "check_positive_int",
]

from .. import reference
from ..checks import MAX_SOURCES, MIN_SOURCES, check_n_src  # noqa: F401  (re-exported)


# ------------------------------------------------------------------------------------------------------------ checks
def check_positive_int(owner: str, name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a positive integer (bools rejected), else raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value}")
    return value


class SeparationModel(nn.Module):
    """Base of every backbone: validates the mixture, pads it to the encoder stride, and trims the output back.

    Subclasses implement ``_separate(mix_padded [B, T']) -> [B, C, T']`` (or a list of those, one per block, for
    models with intermediate outputs) and set ``self.config`` to their constructor keyword arguments.
    """

    n_src: int
    sample_rate: int
    config: Dict[str, Any]

    def __init__(self, n_src: int, sample_rate: int, kernel_size: int, stride: int):
        super().__init__()
        owner = type(self).__name__
        self.n_src = check_n_src(owner, n_src)
        self.sample_rate = check_positive_int(owner, "sample_rate", sample_rate)
        self.kernel_size = check_positive_int(owner, "kernel_size", kernel_size)
        self.stride = check_positive_int(owner, "stride", stride)
        if self.stride > self.kernel_size:
            raise ValueError(f"{owner}: stride ({stride}) must not exceed kernel_size ({kernel_size}); "
                             "larger strides would skip samples")

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "SeparationModel":
        """Rebuild a model (fresh weights) from its ``config`` dict, e.g. one read from a JSON file."""
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got {type(config).__name__}")
        return cls(**config)

    def check_mix(self, mix: Any) -> Tensor:
        """Validate a mixture batch ``[B, T]`` and return it."""
        owner = type(self).__name__
        if not isinstance(mix, Tensor):
            raise TypeError(f"{owner}: mix must be a torch.Tensor [batch, time], got {type(mix).__name__}")
        if mix.dim() != 2:
            raise ValueError(f"{owner}: mix must have shape [batch, time] (2-D), got shape {tuple(mix.shape)}; "
                             "use mix.unsqueeze(0) for a single mixture")
        if not mix.is_floating_point():
            raise TypeError(f"{owner}: mix must be a floating-point tensor, got {mix.dtype}")
        if mix.shape[0] < 1 or mix.shape[1] < 1:
            raise ValueError(f"{owner}: mix must be non-empty, got shape {tuple(mix.shape)}")
        return mix

    def padded_length(self, length: int) -> int:
        """The smallest length >= ``length`` that the encoder covers exactly (a whole number of strides)."""
        if length <= self.kernel_size:
            return self.kernel_size
        return self.kernel_size + math.ceil((length - self.kernel_size) / self.stride) * self.stride

    def pad(self, mix: Tensor) -> Tensor:
        extra = self.padded_length(mix.shape[-1]) - mix.shape[-1]
        return F.pad(mix, (0, extra)) if extra else mix

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    #: Renamed state-dict entries: {old name: new name} for weights saved before a layer moved (key prefixes relative
    #: to the model). ``load_state_dict`` applies it; :meth:`upgrade_state_dict` exposes it to other loaders.
    legacy_state_dict_keys: Dict[str, str] = {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Runs for this module's own slice of a (possibly larger) state dict, before its children read theirs:
        # renaming here lets old checkpoints load strictly into the new layout.
        for old, new in self.legacy_state_dict_keys.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def upgrade_state_dict(cls, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """A copy of ``state`` with legacy names (``legacy_state_dict_keys``) renamed to the current layout."""
        out = dict(state)
        for old, new in cls.legacy_state_dict_keys.items():
            if old in out and new not in out:
                out[new] = out.pop(old)
        return out


class GatedMaskHead(nn.Module):
    """The gated mask head of the dual-path models (DPRNN, SepFormer): per frame,
    ``mask = activation(proj(tanh(value(x)) · sigmoid(gate(x))))`` with 1x1 convolutions, ``[N, C, K] -> [N, out, K]``.

    ``activation`` is "sigmoid" (DPRNN) or "relu" (SepFormer). ``legacy_keys(value, gate, proj)`` maps the names the
    models used before the head was shared to this module's, for ``SeparationModel.legacy_state_dict_keys``.
    """

    ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": F.relu}

    def __init__(self, channels: int, out_channels: int, activation: str):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"GatedMaskHead: activation must be one of {sorted(self.ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.value = nn.Conv1d(channels, channels, 1)
        self.gate = nn.Conv1d(channels, channels, 1)
        self.proj = nn.Conv1d(channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gated = torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))
        return self.ACTIVATIONS[self.activation](self.proj(gated))

    @staticmethod
    def legacy_keys(attr: str, value: str, gate: str, proj: str) -> Dict[str, str]:
        """{old: new} for a head stored at ``attr`` whose value/gate were ``nn.Sequential(conv, act)`` at ``value`` and
        ``gate`` and whose projection was a bare conv at ``proj``."""
        keys = {f"{value}.0.weight": f"{attr}.value.weight", f"{value}.0.bias": f"{attr}.value.bias",
                f"{gate}.0.weight": f"{attr}.gate.weight", f"{gate}.0.bias": f"{attr}.gate.bias",
                f"{proj}.weight": f"{attr}.proj.weight"}
        return keys


# -------------------------------------------------------------------------------------------------- encoder/decoder
class Encoder(nn.Module):
    """Learned analysis filterbank: ``[B, T] -> [B, N, frames]`` (a strided 1-D conv, optionally followed by ReLU)."""

    def __init__(self, n_filters: int, kernel_size: int, stride: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv1d(1, n_filters, kernel_size, stride=stride, bias=False)
        self.relu = relu

    def forward(self, wave: Tensor) -> Tensor:
        # One batched GEMM on the signal's frames: ATen's CPU convolution with one input channel and a short kernel
        # took 0.7-1.5 ms for the default's two 4 s polarities, this 0.17 ms (the frames copied once: overlapping
        # rows are no GEMM operand; bmm on the broadcast weight, where matmul would copy it per item).
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        lead = wave.shape[:-1]
        frames = wave.reshape(-1, wave.shape[-1]).unfold(-1, kernel, stride).contiguous()  # [B, frames, kernel]
        weight = self.conv.weight[:, 0, :]  # [N, kernel]
        feats = torch.bmm(weight.expand(frames.shape[0], -1, -1), frames.transpose(1, 2))  # [B, N, frames]
        feats = feats.reshape(*lead, *feats.shape[-2:])
        return F.relu(feats) if self.relu else feats


class Decoder(nn.Module):
    """Learned synthesis filterbank: ``[..., N, frames] -> [..., T]`` by transposed conv (overlap-add of bases)."""

    def __init__(self, n_filters: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, bias=False)

    def forward(self, feats: Tensor) -> Tensor:
        lead = feats.shape[:-2]
        feats = feats.reshape(-1, *feats.shape[-2:])
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        if kernel % stride:
            wave = self.conv(feats)[:, 0]
        else:
            wave = self.overlap_add(feats, kernel, stride)
        return wave.reshape(*lead, wave.shape[-1])

    def overlap_add(self, feats: Tensor, kernel: int, stride: int) -> Tensor:
        """The transposed convolution as one GEMM and an overlap-add: where the kernel is r strides long, every
        frame's ``kernel`` samples are r blocks of ``stride`` samples, and output block j sums block i of frame
        j - i. ATen's CPU transposed convolution with one output channel took ~6x as long (12 vs 2 ms for four 4 s
        mixtures; 0.2 of the default backbone's time)."""
        batch, _, frames = feats.shape
        ratio = kernel // stride
        # [B, kernel, frames]; bmm on the broadcast weight, where matmul would transpose feats through a copy
        blocks = torch.bmm(self.conv.weight[:, 0, :].t().expand(batch, -1, -1), feats)
        wave = None
        for i in range(ratio):
            part = F.pad(blocks[:, i * stride:(i + 1) * stride], (i, ratio - 1 - i))
            wave = part if wave is None else wave + part
        return wave.transpose(1, 2).reshape(batch, stride * (frames + ratio - 1))


# ---------------------------------------------------------------------------------------------------- normalisation
def _example_moments(flat: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and (biased) variance of each example of ``flat [B, C, L]`` over C and L, each ``[B]``: a sum, then the
    centred sum of squares as a batched dot product (ATen's ``var_mean`` over [128, 2000] took 60x as long)."""
    batch = flat.shape[0]
    count = flat.shape[1] * flat.shape[2]
    mean = flat.sum(dim=(1, 2)) / count
    centred = (flat - mean.view(batch, 1, 1)).reshape(batch, 1, -1)
    var = torch.bmm(centred, centred.transpose(1, 2)).reshape(batch) / count
    return mean, var


class _GlobalLayerNormFunction(torch.autograd.Function):
    """gLN with its backward written out. Autograd of the plain formula (subtract, square, mean, add, sqrt, divide,
    scale, shift) makes ~20 passes over the activations per norm in a training step, where this makes 3 forward and
    4 backward; in the default's B training the norms were ~40 % of a step (`benchmarks/bench_training.py`)."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
        batch, chan = x.shape[0], x.shape[1]
        # statistics and output in float32 at least, also under autocast (a bfloat16 variance would be off by 1 %)
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = _at_least_float32(x).reshape(batch, chan, -1)
            mean, var = _example_moments(flat)
            rstd = (var + eps).rsqrt()
            scale = gamma.float().unsqueeze(0) * rstd.unsqueeze(1)     # [B, C]
            shift = beta.float().unsqueeze(0) - mean.unsqueeze(1) * scale
            out = torch.addcmul(shift.unsqueeze(-1), flat, scale.unsqueeze(-1))
        ctx.save_for_backward(x, gamma, mean, rstd)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, gamma, mean, rstd = ctx.saved_tensors
        batch, chan = x.shape[0], x.shape[1]
        gamma = gamma.to(mean.dtype)
        flat, g = _at_least_float32(x).reshape(batch, chan, -1), grad.to(mean.dtype).reshape(batch, chan, -1)
        count = flat.shape[1] * flat.shape[2]
        # with n = (x - mean)·rstd and y = gamma·n + beta, per example:
        #   dL/dx = rstd·(gamma·g - mean_cl(gamma·g) - n·mean_cl(gamma·g·n))
        g_sum = g.sum(-1)                                               # [B, C]: sum_l g
        gn_sum = rstd.unsqueeze(1) * (torch.einsum("bcl,bcl->bc", g, flat) - mean.unsqueeze(1) * g_sum)  # sum_l g·n
        mean_g = (gamma.unsqueeze(0) * g_sum).sum(1) / count            # [B]
        mean_gn = (gamma.unsqueeze(0) * gn_sum).sum(1) / count
        coef_x = -(rstd * rstd * mean_gn)                               # [B]: the n term, as a multiple of x
        const = rstd * (rstd * mean_gn * mean - mean_g)                 # [B]
        gx = torch.addcmul(const.view(batch, 1, 1), g, (rstd.unsqueeze(1) * gamma.unsqueeze(0)).unsqueeze(-1))
        gx = torch.addcmul(gx, flat, coef_x.view(batch, 1, 1))
        return gx.reshape(x.shape).to(x.dtype), gn_sum.sum(0), g_sum.sum(0), None


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class GlobalLayerNorm(nn.Module):
    """gLN of Conv-TasNet: normalise each example over channels *and* time, then a per-channel affine.

    Works on ``[B, N, *]`` (any number of trailing dims, e.g. ``[B, N, chunk, n_chunks]`` in dual-path models).
    :meth:`reference` is the plain formula (what autograd would differentiate); ``forward`` computes the same with
    fewer passes and a written-out backward (:class:`_GlobalLayerNormFunction`).
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return _GlobalLayerNormFunction.apply(x, self.gamma, self.beta, self.eps)

    def reference(self, x: Tensor) -> Tensor:
        """The plain formula (:func:`fastsep.reference.global_layer_norm`), as autograd would differentiate it."""
        return reference.global_layer_norm(x, self.gamma, self.beta, self.eps)

    def affine_of(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(scale, shift)``, each ``[B, N]``, with ``self(x) = scale·x + shift`` per channel: the norm as a
        per-example affine map, for folding into the 1x1 convolution that follows it (inference)."""
        mean, var = _example_moments(x.reshape(x.shape[0], x.shape[1], -1))
        rstd = (var + self.eps).rsqrt()
        scale = self.gamma.unsqueeze(0) * rstd.unsqueeze(1)
        return scale, self.beta.unsqueeze(0) - mean.unsqueeze(1) * scale


class ChannelLayerNorm(nn.Module):
    """cLN: normalise over channels only, independently at every time step (the causal-friendly norm)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"gLN"`` (global), ``"cLN"`` (per time step) or ``"none"``."""
    if kind == "gLN":
        return GlobalLayerNorm(channels)
    if kind == "cLN":
        return ChannelLayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected 'gLN', 'cLN' or 'none'")


# ---------------------------------------------------------------------------------------------- dual-path chunking
def _chunk_padding(length: int, size: int, hop: int) -> Tuple[int, int]:
    # Pad by (size - hop) on both sides so that every frame is seen by the same number of chunks (edges included),
    # then on the right up to a whole number of hops.
    edge = size - hop
    total = length + 2 * edge
    rest = (total - size) % hop
    right = edge + ((hop - rest) % hop if total >= size else size - total)
    return edge, right


def chunk(x: Tensor, size: int, hop: int) -> Tensor:
    """Split ``[B, N, L]`` into overlapping chunks ``[B, N, size, n_chunks]`` (zero padded at both ends).

    :func:`overlap_add` with the same ``size``, ``hop`` and ``L`` inverts it up to the overlap factor.
    """
    if not 0 < hop <= size:
        raise ValueError(f"chunk: need 0 < hop <= size, got size={size}, hop={hop}")
    left, right = _chunk_padding(x.shape[-1], size, hop)
    x = F.pad(x, (left, right))
    return x.unfold(-1, size, hop).transpose(-1, -2)


def overlap_add(chunks: Tensor, hop: int, length: int) -> Tensor:
    """Sum overlapping chunks ``[B, N, size, n_chunks]`` back into ``[B, N, length]`` (the inverse layout of
    :func:`chunk`; overlapping parts are added, not averaged, as in DPRNN)."""
    batch, channels, size, n_chunks = chunks.shape
    left, right = _chunk_padding(length, size, hop)
    total = left + length + right
    if (n_chunks - 1) * hop + size != total:
        raise ValueError(f"overlap_add: {n_chunks} chunks of {size} with hop {hop} do not tile length {length}")
    folded = F.fold(
        chunks.reshape(batch, channels * size, n_chunks),
        output_size=(1, total),
        kernel_size=(1, size),
        stride=(1, hop),
    )
    return folded.reshape(batch, channels, total)[..., left:left + length]
