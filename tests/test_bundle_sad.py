"""`fastsep bundle separate-and-diffuse`: a bundle assembled from trained parts (model folders or bundles)."""
import os

import pytest
import torch

from fastsep import cli
from fastsep.commands.bundle_sad import assemble
from fastsep.models.diffwave import DiffWave
from fastsep.models.io import save_model
from fastsep.separator import Separator

from helpers import save_tiny_bundle


@pytest.fixture
def parts(tmp_path):
    """The tiny bundle and, as a run's model folder would hold it, another vocoder of the same shape."""
    bundle = save_tiny_bundle(tmp_path / "bundle")
    torch.manual_seed(1)
    gm = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20, sample_rate=8000,
                  hop_length=128)
    save_model(gm, tmp_path / "vocoder_run_last")
    return bundle, str(tmp_path / "vocoder_run_last"), gm


def test_swapped_vocoder_is_served_with_the_other_parts(parts, tmp_path):
    bundle, voc_folder, gm = parts
    out = str(tmp_path / "swapped")
    assemble(out, bundle, voc_folder, bundle)
    sep, orig = Separator.from_pretrained(out), Separator.from_pretrained(bundle)
    assert sep.modes == orig.modes == ("full", "xcorr", "backbone")
    for name, part in (("backbone", "backbone"), ("combiner", "combiner")):
        mine, theirs = getattr(sep.method, part).state_dict(), getattr(orig.method, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name
    voc = sep.method.vocoder.state_dict()
    assert all(torch.equal(voc[k], v) for k, v in gm.state_dict().items())
    assert not all(torch.equal(voc[k], v) for k, v in orig.method.vocoder.state_dict().items())
    mixture = torch.randn(1, 4000)
    assert sep.separate(mixture, mode="full").shape == (1, 2, 4000)
    assert not os.path.exists(out + ".tmp")


def test_backbone_alone_serves_backbone_mode(parts, tmp_path):
    bundle, _, _ = parts
    assert cli.main(["bundle", "separate-and-diffuse", "--backbone", bundle, "-o", str(tmp_path / "b")]) == 0
    assert Separator.from_pretrained(tmp_path / "b").modes == ("backbone",)


def test_wrong_parts_are_refused_and_nothing_is_written(parts, tmp_path, capsys):
    bundle, voc_folder, _ = parts
    out = str(tmp_path / "x")
    run = lambda *a: cli.main(["bundle", "separate-and-diffuse", *a, "-o", out])  # noqa: E731
    assert run("--backbone", voc_folder) == 2
    assert "holds a DiffWave, not a backbone" in capsys.readouterr().err
    assert run("--backbone", bundle, "--combiner", bundle) == 2
    assert "--combiner needs --vocoder" in capsys.readouterr().err
    assert run("--backbone", bundle, "--vocoder", str(tmp_path / "nowhere")) == 2
    assert "does not exist" in capsys.readouterr().err
    prior = tmp_path / "prior"
    save_model(DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, unconditional=True), prior)
    assert run("--backbone", bundle, "--vocoder", str(prior)) == 2
    assert "unconditional DiffWave" in capsys.readouterr().err
    assert not os.path.exists(out)
    # an existing folder is never written over
    assert cli.main(["bundle", "separate-and-diffuse", "--backbone", bundle, "-o", bundle]) == 2
    assert "exists" in capsys.readouterr().err
