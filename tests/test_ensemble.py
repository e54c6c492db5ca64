"""Backbone ensembles (fastsep.models.ensemble) and ``fastsep ensemble``."""
import pytest
import torch
from torch import nn

from fastsep.cli import main as cli_main
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.ensemble import BackboneEnsemble
from fastsep.models.io import load_model, save_model


def _tiny(seed, **kw):
    torch.manual_seed(seed)
    args = dict(n_src=2, n_filters=8, kernel_size=8, stride=4, bn_chan=8, hid_chan=8, skip_chan=8, n_blocks=2,
                n_repeats=1, sample_rate=8000)
    args.update(kw)
    return ConvTasNet(**args).eval()


class _Swapped(nn.Module):
    """A member that names its talkers in the other order."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).flip(1)


def _aligned_mean(first, second):
    """The mean of two [B, 2, T] estimates after putting ``second`` into ``first``'s order, written out for two
    talkers: the order whose summed absolute normalised correlations are larger."""
    def corr(a, b):
        a = a - a.mean(-1, keepdim=True)
        b = b - b.mean(-1, keepdim=True)
        return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).abs()
    keep = corr(first, second).sum(-1)
    swap = corr(first, second.flip(1)).sum(-1)
    second = torch.where((swap > keep)[:, None, None], second.flip(1), second)
    return (first + second) / 2


def test_output_is_the_mean_of_the_members_in_the_first_ones_talker_order():
    a, b = _tiny(0), _tiny(1)
    ensemble = BackboneEnsemble.from_models([a, b])
    x = torch.randn(3, 1600)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), _aligned_mean(a(x), b(x)))
        # a member that lists the talkers the other way round is put back into the first member's order
        ensemble.members[1] = _Swapped(a)
        torch.testing.assert_close(ensemble(x), a(x))


def test_views_are_the_negated_and_the_delayed_mixture_undone():
    a = _tiny(0)
    x = torch.randn(2, 1603)
    with torch.no_grad():
        polarity = BackboneEnsemble.from_models([a], polarities=[1, -1])
        torch.testing.assert_close(polarity(x), _aligned_mean(a(x), -a(-x)))
        shifted = BackboneEnsemble.from_models([a], shifts=[0, 3])
        delayed = a(torch.nn.functional.pad(x, (3, 0)))[..., 3:3 + x.shape[-1]]
        torch.testing.assert_close(shifted(x), _aligned_mean(a(x), delayed))
        negated = BackboneEnsemble.from_models([a], polarities=[-1])  # a single view other than the mixture
        torch.testing.assert_close(negated(x), -a(-x))
        both = BackboneEnsemble.from_models([a, _tiny(1)], shifts=[0, 3], polarities=[1, -1])
        assert both.passes == 8 and both(x).shape == a(x).shape
    # the views differ from the plain estimate (else they would add nothing)
    assert not torch.allclose(a(x), -a(-x), atol=1e-3)


def test_members_are_copies_and_the_config_rebuilds_the_ensemble(tmp_path):
    a, b, c = _tiny(0), _tiny(1), _tiny(2, n_blocks=3)  # members may differ in size
    ensemble = BackboneEnsemble.from_models([a, b, c])
    assert ensemble.n_src == 2 and ensemble.sample_rate == 8000
    assert [m["config"]["n_blocks"] for m in ensemble.config["members"]] == [2, 2, 3]
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    x = torch.randn(2, 1600)
    save_model(ensemble, tmp_path / "e")
    loaded = load_model(tmp_path / "e")
    assert isinstance(loaded, BackboneEnsemble) and len(loaded.members) == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ensemble(x))
        # changing a source model after building leaves the ensemble's copy as it was
        assert not torch.allclose(ensemble.members[0](x), a(x))


def test_bad_ensembles_are_refused():
    a = _tiny(0)
    spec = {"class": "ConvTasNet", "config": a.config}
    with pytest.raises(ValueError, match="at least two"):
        BackboneEnsemble([spec])
    with pytest.raises(ValueError, match="shifts"):
        BackboneEnsemble([spec, spec], shifts=[0, -4])
    with pytest.raises(ValueError, match="shifts"):
        BackboneEnsemble([spec, spec], shifts=[0, 0])
    with pytest.raises(ValueError, match="polarities"):
        BackboneEnsemble([spec, spec], polarities=[1, 2])
    with pytest.raises(ValueError, match="whole numbers"):
        BackboneEnsemble([spec, spec], shifts=[0.5])
    with pytest.raises(ValueError, match="n_src"):
        BackboneEnsemble.from_models([a, _tiny(1, n_src=3)])
    with pytest.raises(ValueError, match="sample_rate"):
        BackboneEnsemble.from_models([a, _tiny(1, sample_rate=16000)])
    with pytest.raises(ValueError, match="member 1"):
        BackboneEnsemble([spec, {"class": "ConvTasNet"}])
    with pytest.raises(ValueError, match="unknown model class"):
        BackboneEnsemble([spec, {"class": "NoSuchNet", "config": {}}])
    with pytest.raises(ValueError, match="ensembles themselves"):
        BackboneEnsemble([spec, {"class": "BackboneEnsemble", "config": {"members": [spec, spec]}}])
    with pytest.raises(ValueError, match="does not match"):
        BackboneEnsemble([spec, spec], n_src=3)
    with pytest.raises(ValueError, match="no config"):
        BackboneEnsemble.from_models([a, nn.Linear(2, 2)])


def test_flops_are_the_members_sum():
    from fastsep.roofline import model_flops

    a, b = _tiny(0), _tiny(1, n_blocks=3)
    ensemble = BackboneEnsemble.from_models([a, b])
    assert model_flops(ensemble, "backbone", 2, 1600) == (model_flops(a, "backbone", 2, 1600)
                                                           + model_flops(b, "backbone", 2, 1600))
    views = BackboneEnsemble.from_models([a], shifts=[0, 8], polarities=[1, -1])
    assert model_flops(views, "backbone", 2, 1600) == 2 * (model_flops(a, "backbone", 2, 1600)
                                                            + model_flops(a, "backbone", 2, 1608))


def test_cli_writes_an_ensemble_that_bundles_and_separates(tmp_path, capsys):
    from fastsep.separator import Separator

    dirs = []
    for seed in (0, 1):
        save_model(_tiny(seed), tmp_path / f"s{seed}")
        dirs.append(str(tmp_path / f"s{seed}"))
    assert cli_main(["ensemble", *dirs, "--out", str(tmp_path / "ens")]) == 0
    assert "2 passes per call" in capsys.readouterr().out
    ensemble = load_model(tmp_path / "ens")
    members = [load_model(d) for d in dirs]
    x = torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), _aligned_mean(members[0](x), members[1](x)))
    assert cli_main(["bundle", "separate-and-diffuse", "--backbone", str(tmp_path / "ens"),
                     "-o", str(tmp_path / "bundle")]) == 0
    sep = Separator.from_pretrained(str(tmp_path / "bundle"))
    out = sep.separate(torch.randn(8000), mode="backbone")
    assert out.shape[-2:] == (2, 8000) and torch.isfinite(out).all()
    # bad calls: one folder, --out among the members, a missing folder, an ensemble as a member, not a backbone
    assert cli_main(["ensemble", dirs[0], "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["ensemble", dirs[0], "--polarities", "1,x", "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["ensemble", dirs[0], "--shifts", "0,-1", "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["ensemble", dirs[0], "--polarities", "1,-1", "--out", str(tmp_path / "tta")]) == 0
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "tta")(x), _aligned_mean(members[0](x), -members[0](-x)))
    assert cli_main(["ensemble", *dirs, "--out", dirs[1]]) == 2
    assert cli_main(["ensemble", dirs[0], str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert cli_main(["ensemble", dirs[0], str(tmp_path / "ens"), "--out", str(tmp_path / "z")]) == 2
    assert "ensemble already" in capsys.readouterr().err
