"""The shipped default bundle (fastsep/assets/default): it loads, it separates, and a damaged copy is refused.

The thresholds sit well below what the shipped model scores on the bundled example (see the README's table) and
well above what a broken bundle gives (an untrained or mismatched backbone scores about 0 dB SI-SDRi), so a bundle
that stops separating fails here.
"""
import json
import os
import shutil

import pytest
import torch

from fastsep import Separator
from fastsep.commands.demo import make_mixture
from fastsep.metrics import pit, si_sdr
from fastsep.separator import DEFAULT_BUNDLE

#: mode -> minimum SI-SDRi (dB) on the bundled two-talker example at 0 dB
THRESHOLDS = {"backbone": 6.0, "xcorr": 4.0, "full": 6.0}


@pytest.fixture(scope="module")
def separator():
    return Separator.from_pretrained()


@pytest.fixture(scope="module")
def example(separator):
    return make_mixture(separator.sample_rate, snr_db=0.0)


def _si_sdri(est, mix, ref):
    matched, _ = pit(est[None], ref[None])
    return float((si_sdr(matched[0], ref) - si_sdr(mix.expand_as(ref), ref)).mean())


def test_bundle_is_small_and_complete():
    files = os.listdir(DEFAULT_BUNDLE)
    for part in ("backbone", "vocoder", "combiner"):
        assert f"{part}.safetensors" in files and f"{part}.json" in files
    size = sum(os.path.getsize(os.path.join(DEFAULT_BUNDLE, f)) for f in files)
    assert size < 50e6


@pytest.mark.parametrize("mode", ["backbone", "xcorr", "full"])
def test_each_mode_separates_the_bundled_example(separator, example, mode):
    mix, ref = example
    est = separator.separate(mix, mode=mode, seed=0)
    assert est.shape == ref.shape
    assert _si_sdri(est, mix, ref) > THRESHOLDS[mode]


def _copy(tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, dest)
    return dest


def test_truncated_weights_are_refused(tmp_path):
    dest = _copy(tmp_path)
    weights = dest / "backbone.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as info:
        Separator.from_pretrained(dest)
    assert not isinstance(info.value, (AssertionError, KeyboardInterrupt))


def test_config_that_does_not_match_the_weights_is_refused(tmp_path):
    dest = _copy(tmp_path)
    cfg_path = dest / "backbone.json"
    cfg = json.loads(cfg_path.read_text())
    config = cfg.get("config", cfg)
    config["bn_chan"] = int(config["bn_chan"]) * 2
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError)):
        Separator.from_pretrained(dest)


def test_weights_of_another_bundle_part_are_refused(tmp_path):
    dest = _copy(tmp_path)
    shutil.copy(dest / "combiner.safetensors", dest / "backbone.safetensors")
    with pytest.raises((ValueError, RuntimeError)):
        Separator.from_pretrained(dest)


def test_scrambled_backbone_no_longer_separates(tmp_path, example):
    # The thresholds above must be out of reach of a bundle whose weights are wrong but well-formed.
    mix, ref = example
    sep = Separator.from_pretrained()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sep.backbone.parameters():
            p.copy_(p.flatten()[torch.randperm(p.numel(), generator=gen)].view_as(p))
    est = sep.separate(mix, mode="backbone", seed=0)
    assert _si_sdri(est, mix, ref) < THRESHOLDS["backbone"]
