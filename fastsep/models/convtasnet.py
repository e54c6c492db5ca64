"""Conv-TasNet (Luo & Mesgarani, 2019): a learned filterbank and a temporal convolutional network that predicts
one mask per source on the encoded mixture.

Defaults are the paper's best non-causal configuration, as in asteroid: N=512 filters of L=16 samples (stride 8),
bottleneck B=128, hidden H=512, skip channels 128, kernel P=3, X=8 blocks per repeat, R=3 repeats, gLN.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .blocks import Decoder, Encoder, SeparationModel, check_positive_int, make_norm

__all__ = ["ConvTasNet"]

_MASK_ACTS = ("relu", "sigmoid", "softmax")


class _TCNBlock(nn.Module):
    """1x1 conv -> PReLU -> norm -> dilated depthwise conv -> PReLU -> norm -> (residual, skip) 1x1 convs."""

    def __init__(self, bn_chan: int, hid_chan: int, skip_chan: int, kernel: int, dilation: int, norm: str,
                 with_residual: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(bn_chan, hid_chan, 1),
            nn.PReLU(),
            make_norm(norm, hid_chan),
            # "same" padding for the non-causal TCN
            nn.Conv1d(hid_chan, hid_chan, kernel, padding=(kernel - 1) * dilation // 2, dilation=dilation,
                      groups=hid_chan),
            nn.PReLU(),
            make_norm(norm, hid_chan),
        )
        # The last block's residual output would feed nothing (only skips reach the mask head), so it is left out
        # rather than kept as dead parameters.
        self.res = nn.Conv1d(hid_chan, bn_chan, 1) if with_residual else None
        self.skip = nn.Conv1d(hid_chan, skip_chan, 1)

    def forward(self, x: Tensor):
        h = self.body(x)
        return (self.res(h) if self.res is not None else None), self.skip(h)

    def fused_(self, state: Tensor, offset: Tensor) -> None:
        """Adds this block's residual and skip outputs to the running state ``[x; skips] = state + offset[..., None]``
        in place by :func:`fastsep.ops.tcn_block_` (inference, gLN, one-slope PReLUs)."""
        conv_in, act_in, norm_in, conv_dw, act_dw, norm_dw = self.body
        convs = [self.skip] if self.res is None else [self.res, self.skip]
        w_out = torch.cat([c.weight[..., 0] for c in convs])
        b_out = torch.cat([c.bias for c in convs])
        ops.tcn_block_(state, offset, conv_in.weight[..., 0], conv_in.bias, act_in.weight, norm_in.gamma,
                       norm_in.beta, conv_dw.weight[:, 0], conv_dw.bias, act_dw.weight, norm_dw.gamma, norm_dw.beta,
                       w_out, b_out, conv_dw.dilation[0], norm_in.eps)


class ConvTasNet(SeparationModel):
    """Conv-TasNet separator mapping a mixture ``[B, T]`` to ``n_src`` estimates ``[B, n_src, T]``.

    Args:
        n_src: number of sources, 2 to 20.
        sample_rate: sampling rate the model is meant for (metadata; stored in ``config``).
        n_filters: N, encoder/decoder filters.
        kernel_size: L, filter length in samples.
        bn_chan: B, bottleneck channels.
        hid_chan: H, channels inside each convolutional block.
        skip_chan: channels of the skip connections.
        conv_kernel_size: P, kernel of the depthwise convolutions.
        n_blocks: X, blocks per repeat (dilations 1, 2, ..., 2^(X-1)).
        n_repeats: R.
        norm: ``"gLN"``, ``"cLN"`` or ``"none"``.
        mask_act: ``"relu"`` (asteroid's default, which trains better), ``"sigmoid"`` (the paper's) or ``"softmax"``
            (across sources).
        stride: encoder hop in samples; ``None`` means ``kernel_size // 2`` (50 % overlap, as published).
        coarse_stride: 1 (the published model) runs every block at the encoder's frame rate. ``s > 1`` runs the
            repeats after the first ``fine_repeats`` on frames ``s`` times coarser (a strided convolution of the
            bottleneck stream down, a transposed one of their skips back up), so that those repeats see ``s`` times
            further for ``1 / s`` of the cost while the mask keeps the fine frame: a short hop separates each
            instant better, a long reach keeps each talker on one output (a coarse hop alone swapped less but
            separated worse, ``recipes/results/ablate_window``).
        fine_repeats: repeats at the fine rate when ``coarse_stride > 1`` (default 1; at least 1, fewer than
            ``n_repeats``).
    """

    def __init__(self, n_src: int, sample_rate: int = 8000, n_filters: int = 512, kernel_size: int = 16,
                 bn_chan: int = 128, hid_chan: int = 512, skip_chan: int = 128, conv_kernel_size: int = 3,
                 n_blocks: int = 8, n_repeats: int = 3, norm: str = "gLN", mask_act: str = "relu",
                 stride: Optional[int] = None, coarse_stride: int = 1, fine_repeats: Optional[int] = None):
        name = type(self).__name__
        kernel_size = check_positive_int(name, "kernel_size", kernel_size)
        stride = max(1, kernel_size // 2) if stride is None else stride
        super().__init__(n_src, sample_rate, kernel_size, stride)
        for key, val in (("n_filters", n_filters), ("bn_chan", bn_chan), ("hid_chan", hid_chan),
                         ("skip_chan", skip_chan), ("conv_kernel_size", conv_kernel_size), ("n_blocks", n_blocks),
                         ("n_repeats", n_repeats), ("coarse_stride", coarse_stride)):
            check_positive_int(name, key, val)
        if coarse_stride == 1:
            fine_repeats = n_repeats
        else:
            fine_repeats = 1 if fine_repeats is None else check_positive_int(name, "fine_repeats", fine_repeats)
            if fine_repeats >= n_repeats:
                raise ValueError(f"{name}: with coarse_stride > 1, fine_repeats must be below n_repeats "
                                 f"({n_repeats}) so that some repeats run coarse, got {fine_repeats}")
        if conv_kernel_size % 2 == 0:
            raise ValueError(f"{name}: conv_kernel_size must be odd to keep the length, got {conv_kernel_size}")
        if mask_act not in _MASK_ACTS:
            raise ValueError(f"{name}: mask_act must be one of {_MASK_ACTS}, got {mask_act!r}")
        make_norm(norm, 1)  # validates the name early
        self.config = dict(n_src=n_src, sample_rate=sample_rate, n_filters=n_filters, kernel_size=kernel_size,
                           bn_chan=bn_chan, hid_chan=hid_chan, skip_chan=skip_chan,
                           conv_kernel_size=conv_kernel_size, n_blocks=n_blocks, n_repeats=n_repeats, norm=norm,
                           mask_act=mask_act, stride=self.stride)
        if coarse_stride > 1:  # only then, so that earlier bundles' configs read the same
            self.config.update(coarse_stride=coarse_stride, fine_repeats=fine_repeats)
        self.coarse_stride = coarse_stride
        self.n_fine_blocks = fine_repeats * n_blocks
        self.n_filters = n_filters
        self.mask_act = mask_act

        self.encoder = Encoder(n_filters, kernel_size, self.stride, relu=False)
        self.decoder = Decoder(n_filters, kernel_size, self.stride)
        self.bottleneck = nn.Sequential(make_norm(norm, n_filters), nn.Conv1d(n_filters, bn_chan, 1))
        n_total = n_blocks * n_repeats
        self.blocks = nn.ModuleList(
            _TCNBlock(bn_chan, hid_chan, skip_chan, conv_kernel_size, 2 ** (i % n_blocks), norm,
                      with_residual=i < n_total - 1)
            for i in range(n_total)
        )
        if coarse_stride > 1:
            self.down = nn.Conv1d(bn_chan, bn_chan, coarse_stride, stride=coarse_stride)
            self.up = nn.ConvTranspose1d(skip_chan, skip_chan, coarse_stride, stride=coarse_stride)
        self.mask_head = nn.Sequential(nn.PReLU(), nn.Conv1d(skip_chan, n_src * n_filters, 1))
        # Inference on CPU runs each block as one fused op (fastsep.ops.tcn_block_) where it can; False keeps the
        # module path (the reference the tests compare the op with). Not part of the config.
        self.fused_inference = True

    @classmethod
    def small(cls, n_src: int, sample_rate: int = 8000) -> "ConvTasNet":
        """A CPU-sized preset (about 34 k parameters for 2 sources) for tests and quick experiments."""
        return cls(n_src, sample_rate, n_filters=64, kernel_size=16, bn_chan=32, hid_chan=64, skip_chan=32,
                   conv_kernel_size=3, n_blocks=4, n_repeats=1)

    def uses_fused_blocks(self, mix: Tensor) -> bool:
        """Whether :meth:`forward` runs its blocks as :func:`fastsep.ops.tcn_block_` for ``mix``: inference (no grad)
        on float32 CPU tensors with the compiled op, gLN and one-slope PReLUs (the default's configuration)."""
        return (self.fused_inference and not torch.is_grad_enabled() and mix.device.type == "cpu"
                and mix.dtype == torch.float32 and self.config["norm"] == "gLN"
                and self.encoder.conv.weight.dtype == torch.float32 and ops.uses_kernels("cpu", "tcn_block_")
                and all(b.body[1].weight.numel() == 1 and b.body[4].weight.numel() == 1 for b in self.blocks))

    @staticmethod
    def _blocks(x: Tensor, blocks) -> tuple:
        """Run ``blocks`` on the bottleneck stream ``x``: (the stream after them, the sum of their skips)."""
        skips = 0
        for block in blocks:
            res, skip = block(x)
            skips = skips + skip
            if res is not None:
                x = x + res
        return x, skips

    def _fused_blocks(self, x: Tensor, x_offset: Optional[Tensor], blocks, stream: bool) -> tuple:
        """:meth:`_blocks` by :func:`fastsep.ops.tcn_block_`, which updates ``[x; skips]`` in place with the per-row
        constants kept apart in an offset (``x + x_offset[..., None]`` is the stream). ``stream=False`` returns None
        for the stream (the last stage's is not read: no pass over it)."""
        chan = x.shape[1]
        state = x.new_zeros(x.shape[0], chan + self.config["skip_chan"], x.shape[-1])
        state[:, :chan] = x
        offset = state.new_zeros(state.shape[:2])
        if x_offset is not None:
            offset[:, :chan] = x_offset
        for block in blocks:
            block.fused_(state, offset)
        x_out = state[:, :chan] + offset[:, :chan, None] if stream else None
        return x_out, state[:, chan:] + offset[:, chan:, None]

    def forward(self, mix: Tensor) -> Tensor:
        """Separate ``mix [B, T]`` into ``[B, n_src, T]``."""
        mix = self.check_mix(mix)
        length = mix.shape[-1]
        feats = self.encoder(self.pad(mix))  # [B, N, K]
        fine, coarse = self.blocks[:self.n_fine_blocks], self.blocks[self.n_fine_blocks:]
        fused = self.uses_fused_blocks(mix)
        if fused:
            # the bottleneck's gLN folded into its 1x1 conv: W·(scale·f + shift) + b
            norm, conv = self.bottleneck
            scale, shift = norm.affine_of(feats)
            weight = conv.weight[..., 0]
            offset = shift @ weight.t() + conv.bias
            x, skips = self._fused_blocks(torch.bmm(weight * scale.unsqueeze(1), feats), offset, fine, len(coarse) > 0)
        else:
            x, skips = self._blocks(self.bottleneck(feats), fine)
        if len(coarse):
            frames = x.shape[-1]
            x = self.down(F.pad(x, (0, -frames % self.coarse_stride)))
            _, coarse_skips = self._fused_blocks(x, None, coarse, False) if fused else self._blocks(x, coarse)
            skips = skips + self.up(coarse_skips)[..., :frames]
        logits = self.mask_head(skips).view(mix.shape[0], self.n_src, self.n_filters, -1)
        if self.mask_act == "relu":
            masks = F.relu(logits)
        elif self.mask_act == "sigmoid":
            masks = torch.sigmoid(logits)
        else:
            masks = torch.softmax(logits, dim=1)
        return self.decoder(masks * feats.unsqueeze(1))[..., :length]
