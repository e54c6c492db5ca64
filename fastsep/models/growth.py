"""Growing a trained Conv-TasNet into a larger one that computes the same function (Net2Net-style warm start).

Training a larger backbone from scratch on a 2-core CPU would spend its first tens of thousands of steps relearning
what the small one knows. :func:`grow_convtasnet` instead builds the larger model around the trained weights so that
its output equals the small model's (up to float rounding), and training continues from there:

- wider blocks (``hid_chan`` H -> k*H, k an integer): every hidden channel is copied k times. The global layer norm
  (gLN) normalises over channels *and* time, and a set of channels each repeated k times has the same mean and
  variance, so the norms see the same statistics; the PReLUs are per block (one slope), the depthwise convolution is
  per channel. The residual and skip 1x1 convolutions that read the copies split each original column among the
  copies with random fractions that sum to 1: the sum is unchanged, but the copies receive different gradients, so
  they do not stay identical (an even split would keep them equal for ever).
- more repeats (``n_repeats`` R -> R'): the new blocks are appended with their residual and skip convolutions zeroed,
  so they add nothing until training moves them; the old last block, which had no residual output, gets a zeroed one.

Only the block sizes change; the encoder, decoder, bottleneck, skip width and mask head must match.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import Tensor, nn

from .convtasnet import ConvTasNet

__all__ = ["grow_convtasnet", "GROWABLE_KEYS"]

#: The config entries :func:`grow_convtasnet` may change; every other entry must stay as it is.
GROWABLE_KEYS = ("hid_chan", "n_repeats")


def _split_columns(weight: Tensor, factor: int, gen: torch.Generator) -> Tensor:
    """``weight [out, H, 1]`` -> ``[out, factor*H, 1]``: each column repeated ``factor`` times (copy-major order, the
    layout :func:`_repeat_channels` gives), scaled by random fractions that sum to 1 per (row, column)."""
    if factor == 1:
        return weight.clone()
    frac = torch.rand((factor,) + tuple(weight.shape), generator=gen, dtype=torch.float64) + 0.5
    frac = (frac / frac.sum(0, keepdim=True)).to(weight.dtype)
    return torch.cat([weight * frac[i] for i in range(factor)], dim=1)


def _repeat_channels(t: Tensor, factor: int) -> Tensor:
    """Repeat a per-channel tensor (dim 0) ``factor`` times, copy-major: ``[c0..cH-1, c0..cH-1, ...]``."""
    return torch.cat([t] * factor, dim=0)


def _check_growth(old: Dict[str, Any], new: Dict[str, Any]) -> int:
    if old.get("coarse_stride", 1) != 1:
        raise ValueError("grow_convtasnet: growing a Conv-TasNet with coarse repeats (coarse_stride > 1) is not "
                         "supported")
    if old["norm"] not in ("gLN", "none"):
        raise ValueError(f"grow_convtasnet: widening keeps the function only with gLN or no norm, not {old['norm']!r}")
    h_old, h_new = old["hid_chan"], new["hid_chan"]
    if h_new < h_old or h_new % h_old:
        raise ValueError(f"grow_convtasnet: hid_chan must grow by a whole factor, got {h_old} -> {h_new}")
    if new["n_repeats"] < old["n_repeats"]:
        raise ValueError(f"grow_convtasnet: n_repeats cannot shrink, got {old['n_repeats']} -> {new['n_repeats']}")
    return h_new // h_old


@torch.no_grad()
def grow_convtasnet(model: ConvTasNet, seed: int = 0, **changes: Any) -> ConvTasNet:
    """A larger :class:`ConvTasNet` (``hid_chan`` and/or ``n_repeats`` from ``changes``) computing ``model``'s function.

    ``seed`` fixes the random split of the copied channels' outgoing weights. The returned model is in the mode
    ``model`` was in; ``model`` itself is not modified.
    """
    if not isinstance(model, ConvTasNet):
        raise TypeError(f"grow_convtasnet expects a ConvTasNet, got {type(model).__name__}")
    unknown = sorted(set(changes) - set(GROWABLE_KEYS))
    if unknown:
        raise ValueError(f"grow_convtasnet: cannot change {', '.join(unknown)}; growable: {', '.join(GROWABLE_KEYS)}")
    old_cfg = dict(model.config)
    new_cfg = {**old_cfg, **changes}
    factor = _check_growth(old_cfg, new_cfg)
    grown = ConvTasNet(**new_cfg)
    gen = torch.Generator().manual_seed(seed)

    grown.encoder.load_state_dict(model.encoder.state_dict())
    grown.decoder.load_state_dict(model.decoder.state_dict())
    grown.bottleneck.load_state_dict(model.bottleneck.state_dict())
    grown.mask_head.load_state_dict(model.mask_head.state_dict())

    for new_block in grown.blocks[len(model.blocks):]:
        # appended blocks start silent: nothing they compute reaches the output
        if new_block.res is not None:
            nn.init.zeros_(new_block.res.weight)
            nn.init.zeros_(new_block.res.bias)
        nn.init.zeros_(new_block.skip.weight)
        nn.init.zeros_(new_block.skip.bias)

    for old_block, new_block in zip(model.blocks, grown.blocks):
        # dilations follow the block's index within its repeat; an old block keeps its index, so its dilation
        assert old_block.body[3].dilation == new_block.body[3].dilation
        for old_layer, new_layer in zip(old_block.body, new_block.body):
            for name, old_param in old_layer.named_parameters():
                new_param = getattr(new_layer, name)
                if isinstance(old_layer, nn.PReLU):  # one slope per layer, shared by every channel
                    new_param.copy_(old_param)
                else:  # every other body tensor is per hidden channel along dim 0: 1x1 rows, depthwise, norms
                    new_param.copy_(_repeat_channels(old_param, factor))
        for old_conv, new_conv in ((old_block.res, new_block.res), (old_block.skip, new_block.skip)):
            if new_conv is None:
                continue
            if old_conv is None:  # the old last block had no residual output: a zeroed one adds nothing
                nn.init.zeros_(new_conv.weight)
                nn.init.zeros_(new_conv.bias)
                continue
            new_conv.weight.copy_(_split_columns(old_conv.weight, factor, gen))
            new_conv.bias.copy_(old_conv.bias)
    return grown.train(model.training)
