"""Growing a trained Conv-TasNet into a larger one that computes the same function (fastsep.models.growth)."""
import pytest
import torch

from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.growth import grow_convtasnet
from fastsep.models.io import save_model
from fastsep.train.separator import initial_model


def trained_like(seed=0, **kw):
    """A tiny Conv-TasNet whose every parameter is random, norms and PReLU slopes included (a fresh model's ones and
    zeros would hide a wrongly copied norm)."""
    cfg = dict(n_src=2, n_filters=16, kernel_size=8, bn_chan=8, hid_chan=12, skip_chan=8, n_blocks=3, n_repeats=1)
    cfg.update(kw)
    model = ConvTasNet(**cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 and p.numel() > 1 else 0.0))
    return model.eval()


@pytest.mark.parametrize("changes", [dict(hid_chan=24), dict(hid_chan=36), dict(n_repeats=3),
                                     dict(hid_chan=24, n_repeats=2)])
def test_grown_model_computes_the_same_function(changes):
    small = trained_like()
    big = grow_convtasnet(small, **changes)
    assert all(big.config[k] == v for k, v in changes.items())
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    mix = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = small(mix), big(mix)
    assert expected.abs().max() > 0.1  # a silent model would make the comparison trivial
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_growth_leaves_the_original_untouched_and_keeps_its_mode():
    small = trained_like().train()
    before = {k: v.clone() for k, v in small.state_dict().items()}
    big = grow_convtasnet(small, hid_chan=24)
    assert big.training
    for k, v in small.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_copied_channels_part_after_a_training_step():
    """An even split of the copies' outgoing weights would give both copies the same gradient for ever; the random
    split must make the two copies of a hidden channel move differently."""
    small = trained_like()
    big = grow_convtasnet(small, hid_chan=24).train()
    first = big.blocks[0].body[0].weight  # [24, bn, 1]: rows h and h + 12 are copies
    assert torch.equal(first[:12], first[12:])
    opt = torch.optim.SGD(big.parameters(), lr=0.1)
    mix = torch.randn(2, 800, generator=torch.Generator().manual_seed(2))
    big(mix).pow(2).mean().backward()
    opt.step()
    assert (first[:12] - first[12:]).abs().max() > 1e-6


def test_new_blocks_start_silent_but_learn():
    small = trained_like()
    big = grow_convtasnet(small, n_repeats=2).train()
    new_block = big.blocks[-1]
    assert float(new_block.skip.weight.detach().abs().sum()) == 0.0
    big(torch.randn(2, 800)).pow(2).mean().backward()
    assert float(new_block.skip.weight.grad.abs().sum()) > 0.0  # the zeroed output gets a gradient, so it moves


@pytest.mark.parametrize("changes, message", [
    (dict(n_filters=32), "cannot change n_filters"),
    (dict(hid_chan=18), "whole factor"),
    (dict(hid_chan=6), "whole factor"),
    (dict(n_repeats=0), "cannot shrink"),
])
def test_growth_refuses_what_it_cannot_preserve(changes, message):
    small = trained_like(n_repeats=1)
    with pytest.raises(ValueError, match=message):
        grow_convtasnet(small, **changes)


def test_growth_refuses_other_models_and_norms():
    with pytest.raises(TypeError, match="ConvTasNet"):
        grow_convtasnet(torch.nn.Linear(2, 2), hid_chan=4)
    with pytest.raises(ValueError, match="gLN"):
        grow_convtasnet(trained_like(norm="cLN"), hid_chan=24)


def test_initial_model_loads_and_grows_a_saved_backbone(tmp_path):
    small = trained_like()
    save_model(small, tmp_path / "run_last")
    same = initial_model(str(tmp_path / "run_last"), "convtasnet", 2, None)
    assert same.config == small.config and same.training
    grown = initial_model(str(tmp_path / "run_last"), "convtasnet", 2, {**small.config, "hid_chan": 24})
    assert grown.config["hid_chan"] == 24
    mix = torch.randn(1, 640)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(mix), small(mix), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not the --model dprnn"):
        initial_model(str(tmp_path / "run_last"), "dprnn", 2, None)
    with pytest.raises(ValueError, match="separates 2 sources"):
        initial_model(str(tmp_path / "run_last"), "convtasnet", 3, None)
    with pytest.raises(FileNotFoundError):
        initial_model(str(tmp_path / "missing"), "convtasnet", 2, None)


def test_initial_model_reads_the_backbone_a_bundle_names(tmp_path):
    from helpers import save_tiny_bundle

    from fastsep.bundle import load_bundle

    bundle = save_tiny_bundle(tmp_path / "bundle")
    shipped = load_bundle(bundle)["backbone"]
    grown = initial_model(bundle, "convtasnet", 2, {"hid_chan": 2 * shipped.config["hid_chan"]})
    mix = torch.randn(1, 640)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(mix), shipped(mix), rtol=1e-4, atol=1e-4)
