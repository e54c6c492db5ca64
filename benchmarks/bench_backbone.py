"""The default backbone's inference, fused against the ATen module path, in the same run.

    python -m pytest benchmarks/bench_backbone.py -s                    # threads as fastsep commands use them
    FASTSEP_NUM_THREADS=1 python -m pytest benchmarks/bench_backbone.py -s

Groups (the ratio table at the end is against each group's ``reference`` row):

- ``tcn_block``: one Conv-TasNet block of the default's sizes (64 -> 128 channels, kernel 3, dilation 4):
  :func:`fastsep.ops.tcn_block_` against :func:`fastsep.reference.tcn_block_` (the module's ATen ops), both in
  place on the running state [x; skips] (each call adds to it; the time does not depend on its values);
- ``decoder``: the learned decoder of the default (128 filters of 32 samples, hop 16, two talkers) as one GEMM and an
  overlap-add against ATen's transposed convolution;
- ``convtasnet``: the whole default-sized Conv-TasNet (random weights; the time does not depend on them): the
  reference is the module path with the transposed-convolution decoder, as every fastsep release before the fused
  block ran it, the fused variant what ``ConvTasNet.forward`` runs at inference now.

Backbone mode of the default runs this network twice (both polarities), so its time per call is about twice the
``convtasnet`` row.
"""
from __future__ import annotations

import os

import pytest
import torch

from bench_training import DEFAULT_BACKBONE
from fastsep import ops, reference
from fastsep.models import ConvTasNet

SR = 8000
# FASTSEP_BENCH_SECONDS shortens the audio (the test suite's smoke run of the benchmark files)
_SHORT = os.environ.get("FASTSEP_BENCH_SECONDS")
CASES = [(1, float(_SHORT)), (2, float(_SHORT))] if _SHORT else [(1, 4), (8, 4), (1, 60)]


def _skip_without_op():
    if not ops.uses_kernels("cpu", "tcn_block_"):
        pytest.skip("no compiled tcn_block_ op here: the fused variant would be the reference")


def _model():
    torch.manual_seed(0)
    return ConvTasNet(2, SR, **DEFAULT_BACKBONE).eval()


def _frames(seconds):
    return int(seconds * SR) // DEFAULT_BACKBONE["stride"] + 1


@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_tcn_block(benchmark, record, batch, seconds, variant):
    _skip_without_op()
    block = _model().blocks[2]  # dilation 4, with its residual conv
    frames = _frames(seconds)
    rows = DEFAULT_BACKBONE["bn_chan"] + DEFAULT_BACKBONE["skip_chan"]
    state, offset = torch.randn(batch, rows, frames), torch.randn(batch, rows)
    conv_in, act_in, norm_in, conv_dw, act_dw, norm_dw = block.body
    args = (state, offset, conv_in.weight[..., 0].detach(), conv_in.bias.detach(), act_in.weight.detach(),
            norm_in.gamma.detach(), norm_in.beta.detach(), conv_dw.weight[:, 0].detach(), conv_dw.bias.detach(),
            act_dw.weight.detach(), norm_dw.gamma.detach(), norm_dw.beta.detach(),
            torch.cat([block.res.weight[..., 0], block.skip.weight[..., 0]]).detach(),
            torch.cat([block.res.bias, block.skip.bias]).detach(), 4, 1e-8)
    fn = ops.tcn_block_ if variant == "fused" else reference.tcn_block_
    with torch.no_grad():
        record(benchmark, f"tcn_block B={batch} {seconds}s", variant, fn, *args)


@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_decoder(benchmark, record, batch, seconds, variant):
    decoder = _model().decoder
    feats = torch.randn(batch, 2, DEFAULT_BACKBONE["n_filters"], _frames(seconds))

    def transposed_conv(f):
        return decoder.conv(f.reshape(-1, *f.shape[-2:]))

    with torch.no_grad():
        record(benchmark, f"decoder B={batch} {seconds}s", variant, decoder if variant == "fused" else transposed_conv,
               feats)


def _module_path(model):
    """``model`` as fastsep ran it before the fused block: module blocks and the transposed-convolution decoder."""
    model.fused_inference = False
    decoder = model.decoder
    decoder.forward = lambda f: decoder.conv(f.reshape(-1, *f.shape[-2:])).reshape(*f.shape[:-2], -1)
    return model


@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_convtasnet(benchmark, record, batch, seconds, variant):
    _skip_without_op()
    model = _model() if variant == "fused" else _module_path(_model())
    mix = torch.randn(batch, int(seconds * SR))
    with torch.no_grad():
        assert model.uses_fused_blocks(mix) == (variant == "fused")
        record(benchmark, f"convtasnet B={batch} {seconds}s", variant, model, mix, rounds=5)
