"""Conv-TasNet with coarse repeats (``coarse_stride > 1``): the later repeats run on frames ``s`` times coarser and
so see ``s`` times further. Shapes at awkward lengths, the longer reach, gradients, the fused inference path against
the module path, configs, bad arguments and the FLOP count."""
import json

import pytest
import torch
from conftest import require_compiled_kernels

from fastsep import roofline as rl
from fastsep.metrics import pit_si_sdr_loss
from fastsep.models import ConvTasNet
from fastsep.models.growth import grow_convtasnet

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_filters=24, kernel_size=16, stride=8, bn_chan=12, hid_chan=20, skip_chan=10, n_blocks=3)


def _model(coarse_stride=4, n_repeats=3, fine_repeats=1, norm="gLN", seed=0):
    torch.manual_seed(seed)
    model = ConvTasNet(2, **TINY, n_repeats=n_repeats, coarse_stride=coarse_stride,
                       fine_repeats=fine_repeats if coarse_stride > 1 else None, norm=norm)
    with torch.no_grad():  # off the initial values (gLN's unit gain, PReLU's 0.25), so a mix-up would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("length", [37, 801, 1237])
def test_shapes_and_batch_independence(length):
    model = _model().eval()
    mix = torch.randn(3, length)
    with torch.no_grad():
        together = model(mix)
        alone = torch.cat([model(mix[i:i + 1]) for i in range(3)])
    assert together.shape == (3, 2, length) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def _reach_in_samples(model, length=4000, probe=slice(0, 8)):
    """How far into the mixture the first output samples depend on it: the last input sample with a gradient."""
    mix = torch.randn(1, length, requires_grad=True)
    model(mix)[..., probe].sum().backward()
    return int(mix.grad[0].abs().gt(0).nonzero().max())


def test_coarse_repeats_reach_further_than_fine_ones():
    # cLN normalises each frame alone, so the gradient shows the receptive field (gLN's statistics span everything)
    fine = _model(coarse_stride=1, n_repeats=3, norm="cLN")
    coarse = _model(coarse_stride=4, n_repeats=3, norm="cLN")
    # kernel 3, dilations 1, 2, 4: each repeat reaches 7 frames to one side (28 fine frames when coarse); hop 8
    fine_reach, coarse_reach = _reach_in_samples(fine), _reach_in_samples(coarse)
    assert 8 * 3 * 7 <= fine_reach < 8 * (3 * 7 + 3)
    assert 8 * (7 + 2 * 28 - 4) < coarse_reach < 8 * (7 + 2 * 28 + 8)


def test_gradient_reaches_every_parameter():
    model = _model()
    mix, refs = torch.randn(2, 400), torch.randn(2, 2, 400)
    pit_si_sdr_loss(model(mix), refs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("batch,length,fine_repeats", [(1, 4000, 1), (3, 1237, 1), (2, 2001, 2)])
def test_fused_inference_matches_module_path(batch, length, fine_repeats):
    require_compiled_kernels("cpu", "compares the compiled tcn_block_ op's path with the module path", op="tcn_block_")
    model = _model(fine_repeats=fine_repeats).eval()
    mix = torch.randn(batch, length)
    with torch.no_grad():
        assert model.uses_fused_blocks(mix)
        fused = model(mix)
        model.fused_inference = False
        plain = model(mix)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())


def test_config_round_trip_and_the_published_config_unchanged():
    model = _model(fine_repeats=2)
    assert model.config["coarse_stride"] == 4 and model.config["fine_repeats"] == 2
    again = ConvTasNet(**json.loads(json.dumps(model.config)))
    again.load_state_dict(model.state_dict())
    mix = torch.randn(1, 500)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(mix), model.eval()(mix))
    # bundles saved before coarse repeats existed have neither key, and one-rate models still write neither
    plain = ConvTasNet(2, **TINY, n_repeats=2)
    assert "coarse_stride" not in plain.config and "fine_repeats" not in plain.config
    assert not hasattr(plain, "down") and plain.n_fine_blocks == 6


@pytest.mark.parametrize("kwargs,match", [
    (dict(coarse_stride=0), "coarse_stride"),
    (dict(coarse_stride=4, n_repeats=2, fine_repeats=2), "fine_repeats must be below"),
    (dict(coarse_stride=4, n_repeats=2, fine_repeats=0), "fine_repeats"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvTasNet(2, **{**TINY, **kwargs})


def test_growth_refuses_coarse_models():
    with pytest.raises(ValueError, match="coarse"):
        grow_convtasnet(_model(), hid_chan=40)


@pytest.mark.parametrize("length", [400, 1237])
def test_flop_count_matches_the_layers(length):
    model = _model(fine_repeats=2).eval()
    assert rl.convtasnet_flops(model, 2, length) == rl.layer_flops(model, torch.randn(2, length))
    # and the coarse repeats cost about 1/4 of fine ones
    fine = _model(coarse_stride=1).eval()
    assert rl.convtasnet_flops(model, 1, 4000) < rl.convtasnet_flops(fine, 1, 4000)
