"""HiFi-GAN as GM: generator and discriminator shapes, the GAN losses, training steps, save/load, the vocode
interface shared with DiffWave, the training task's checkpoints and ``fastsep train hifigan``."""
import json
import math
import os

import pytest
import torch

from fastsep.models import DiffWave, HiFiGAN, HiFiGANDiscriminator
from fastsep.models.hifigan import PAPER_PLANS, upsample_plan
from fastsep.models.hifigan_discriminators import (discriminator_loss, feature_matching_loss,
                                                   generator_adversarial_loss)
from fastsep.models.io import load_model, save_model
from helpers import harmonic_items


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def tiny_generator(hop=32, n_mels=10, **kw):
    args = dict(sample_rate=8000, hop_length=hop, n_mels=n_mels, upsample_initial_channel=16,
                resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 3)))
    args.update(kw)
    return HiFiGAN(**args)


def tiny_discriminator():
    return HiFiGANDiscriminator(periods=(2, 3), mpd_channels=(4, 8, 8), msd_scales=2,
                                msd_channels=(4, 4, 4, 8, 8, 8, 8), msd_groups=(1, 2, 2, 4, 4, 4, 1))


# ---------------------------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("hop, rates", [(32, None), (80, None), (128, (8, 4, 2, 2)), (256, (8, 8, 2, 2)),
                                        (60, (5, 4, 3)), (16, (4, 4))])
def test_generator_output_is_frames_times_hop(hop, rates):
    kernels = None if rates is None else tuple(2 * r + r % 2 for r in rates)
    model = tiny_generator(hop=hop, upsample_rates=rates, upsample_kernel_sizes=kernels).eval()
    assert math.prod(model.config["upsample_rates"]) == hop
    for frames in (1, 7):
        with torch.no_grad():
            out = model(torch.rand(2, 10, frames))
        assert out.shape == (2, 1, frames * hop)
        assert out.abs().max() < 1  # tanh output


def test_upsample_plan():
    assert upsample_plan(128) == ((8, 4, 2, 2), (16, 8, 4, 4)) == PAPER_PLANS[128]
    assert upsample_plan(256) == ((8, 8, 2, 2), (16, 16, 4, 4))  # the paper's V1
    assert upsample_plan(80) == ((8, 5, 2), (16, 11, 4))  # odd stride: kernel 2u + 1 keeps k - u even
    assert upsample_plan(22) == ((2, 11), (4, 23))  # a prime factor above 8 stands as its own stride
    for hop in (2, 12, 100, 160, 200, 300):
        rates, kernels = upsample_plan(hop)
        assert math.prod(rates) == hop and all(k >= 2 * r and (k - r) % 2 == 0 for r, k in zip(rates, kernels))


def test_paper_and_small_sizes():
    v1 = HiFiGAN.paper(sample_rate=22050, hop_length=256, n_mels=80)
    assert abs(sum(p.numel() for p in v1.parameters()) / 1e6 - 13.9) < 0.05  # the paper's V1 figure
    default = HiFiGAN.paper()
    assert (default.sample_rate, default.hop_length, default.n_mels) == (8000, 128, 40)  # the bundled GM's front end
    assert HiFiGAN.small().config["upsample_initial_channel"] == 128
    d = HiFiGANDiscriminator.paper()
    assert d.config["periods"] == [2, 3, 5, 7, 11] and len(d.msd) == 3


def test_generator_is_deterministic_and_weight_normalised():
    model = tiny_generator().eval()
    mel = torch.rand(1, 10, 5)
    with torch.no_grad():
        assert torch.equal(model(mel), model(mel))
    names = [k for k in model.state_dict() if "parametrizations.weight" in k]
    assert names and all(k.endswith(("original0", "original1")) for k in names)  # weight norm: g and v


def test_generator_bad_input():
    model = tiny_generator()
    with pytest.raises(ValueError, match="n_mels=10"):
        model(torch.rand(1, 12, 5))
    with pytest.raises(ValueError, match="float tensor"):
        model(torch.ones(1, 10, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="multiply to 24"):
        HiFiGAN(hop_length=32, upsample_rates=(4, 6), upsample_kernel_sizes=(8, 12))
    with pytest.raises(ValueError, match="even difference"):
        HiFiGAN(hop_length=32, upsample_rates=(8, 4), upsample_kernel_sizes=(15, 8))
    with pytest.raises(ValueError, match="both"):
        HiFiGAN(hop_length=32, upsample_rates=(8, 4))
    with pytest.raises(ValueError, match="divisible"):
        HiFiGAN(hop_length=32, upsample_initial_channel=6)
    with pytest.raises(ValueError, match="resblock"):
        HiFiGAN(hop_length=32, resblock="3")
    with pytest.raises(ValueError, match="odd"):
        HiFiGAN(hop_length=32, resblock_kernel_sizes=(3, 4, 11))
    with pytest.raises(ValueError, match="resblock_dilation_sizes"):
        HiFiGAN(hop_length=32, resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3, 5),))
    with pytest.raises(ValueError, match="hop_length"):
        HiFiGAN(hop_length=1)


# ------------------------------------------------------------------------------------------------ discriminators
def test_discriminator_outputs_and_feature_maps():
    d = tiny_discriminator()
    logits, features = d(torch.randn(3, 1000))
    assert len(logits) == len(features) == 2 + 2  # one per period, one per scale
    assert all(x.dim() == 2 and x.shape[0] == 3 for x in logits)
    # each period discriminator: one map per 2-D conv plus its output; each scale discriminator: 7 convs plus output
    assert [len(f) for f in features] == [3 + 1, 3 + 1, 7 + 1, 7 + 1]
    # a period discriminator folds T into [T/p, p] (padded to a whole number of periods)
    assert features[0][0].shape[-1] == 2 and features[1][0].shape[-1] == 3
    assert features[1][0].shape[0] == 3 and features[1][0].shape[1] == 4  # [B, channels, T/p (strided), p]
    # the pooled scale sees half the samples, so its first (stride-1) map is about half as long
    assert features[2][0].shape[-1] == 1000 and features[3][0].shape[-1] == 501
    # [B, 1, T] is the same call as [B, T]
    x = torch.randn(2, 500)
    d.eval()
    a, _ = d(x)
    b, _ = d(x.unsqueeze(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_paper_discriminator_layout():
    d = HiFiGANDiscriminator.small()  # the paper's layout with fewer channels: same counts of maps and outputs
    logits, features = d(torch.randn(1, 2048))
    assert len(logits) == 5 + 3
    assert [len(f) for f in features] == [6] * 5 + [8] * 3
    # the raw-audio scale discriminator is spectrally normalised, the others weight-normalised
    keys = d.state_dict().keys()
    assert any(k.startswith("msd.0.") and k.endswith("_u") for k in keys)
    assert not any(k.startswith("msd.1.") and k.endswith("_u") for k in keys)


def test_discriminator_bad_input():
    d = tiny_discriminator()
    with pytest.raises(ValueError, match="at least 3 samples"):
        d(torch.randn(1, 2))
    with pytest.raises(ValueError, match="float tensor"):
        d(torch.randn(1, 2, 100))
    with pytest.raises(ValueError, match="must divide"):
        HiFiGANDiscriminator(msd_channels=(6, 4, 4, 8, 8, 8, 8), msd_groups=(1, 4, 2, 4, 4, 4, 1))
    with pytest.raises(ValueError, match="7 entries"):
        HiFiGANDiscriminator(msd_channels=(4, 4), msd_groups=(1, 1))


# ---------------------------------------------------------------------------------------------------------- losses
def test_losses_on_known_inputs():
    ones, zeros = [torch.ones(2, 3), torch.ones(2, 5)], [torch.zeros(2, 3), torch.zeros(2, 5)]
    # a perfect discriminator scores 0, a fooled one 2 per sub-discriminator
    assert float(discriminator_loss(ones, zeros)) == 0.0
    assert float(discriminator_loss(zeros, ones)) == 4.0
    assert float(generator_adversarial_loss(ones)) == 0.0
    assert float(generator_adversarial_loss(zeros)) == 2.0
    # by hand: real 0.5 -> (1 - 0.5)^2 = 0.25; fake [0, 2] -> mean(0, 4) = 2
    real, fake = [torch.full((1, 2), 0.5)], [torch.tensor([[0.0, 2.0]])]
    assert float(discriminator_loss(real, fake)) == pytest.approx(2.25)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(0.5 * (1 + 1))
    # feature matching: sum over discriminators and maps of the mean absolute difference
    r = [[torch.zeros(2, 4), torch.ones(3)], [torch.zeros(5)]]
    f = [[torch.full((2, 4), 0.5), torch.tensor([1.0, 1.0, 4.0])], [torch.full((5,), -2.0)]]
    assert float(feature_matching_loss(r, f)) == pytest.approx(0.5 + 1.0 + 2.0)
    assert float(feature_matching_loss(r, r)) == 0.0


def test_feature_matching_gradients_reach_only_the_generated_side():
    real = [[torch.randn(3, requires_grad=True)]]
    fake = [[torch.randn(3, requires_grad=True)]]
    feature_matching_loss(real, fake).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_loss_bad_input():
    with pytest.raises(ValueError, match="one per sub-discriminator"):
        discriminator_loss([torch.ones(1)], [])
    with pytest.raises(ValueError, match="no sub-discriminator"):
        generator_adversarial_loss([])
    with pytest.raises(ValueError, match="sub-discriminator 0"):
        feature_matching_loss([[torch.ones(1)]], [[torch.ones(1), torch.ones(1)]])


def test_log_mel_matches_the_features_where_they_are_not_clipped():
    from fastsep.dsp import mel_spectrogram
    from fastsep.train.hifigan import log_mel_magnitude

    wave = torch.stack([item["audio"] for item in harmonic_items(2, 800)])
    wave[1, 300:] = 0  # silence: clipped in the features, floored at 1e-5 in the loss
    feats = mel_spectrogram(wave, 8000, 32, 10)
    logs = log_mel_magnitude(wave, 8000, 32, 10)
    assert logs.shape == feats.shape
    inside = (feats > 0) & (feats < 1)
    assert inside.any() and (~inside).any()
    expected = math.log(10.0) * (100 * feats - 80) / 20
    assert torch.allclose(logs[inside], expected[inside], atol=1e-4)
    assert float(logs.min()) == pytest.approx(math.log(1e-5))  # the loss's floor is below the features' (-80 dB)


# -------------------------------------------------------------------------------------------------------- training
def _task(generator, **kw):
    from fastsep.train.hifigan import HiFiGANTask
    from fastsep.train.loop import TrainConfig

    task = HiFiGANTask(generator.config, tiny_discriminator(), **kw)
    opt_g = task.make_optimizer(generator, TrainConfig(out_dir="unused", lr=2e-3))
    return task, opt_g


def test_a_few_steps_lower_the_generator_mel_loss():
    from fastsep.train.vocoder import audio_collate

    torch.manual_seed(0)
    generator = tiny_generator()
    task, opt_g = _task(generator)
    audio, mel = task.features(audio_collate(harmonic_items(4, 32 * 12))["audio"])

    def mel_loss():
        with torch.no_grad():
            return float(task.mel_loss(generator(mel).squeeze(1), audio))

    before = mel_loss()
    d_before = {k: v.clone() for k, v in task.discriminator.state_dict().items()}
    for _ in range(25):
        # what the loop does per batch: the task takes the discriminator step and returns the generator's loss,
        # which the loop back-propagates and steps
        opt_g.zero_grad(set_to_none=True)
        loss = task.training_loss(generator, {"audio": audio})
        task.optimizer_d.zero_grad(set_to_none=True)
        loss.backward()
        # the generator's backward leaves no gradient on the discriminators (their weights were frozen for it)
        assert all(p.grad is None for p in task.discriminator.parameters())
        opt_g.step()
    after = mel_loss()
    assert after < 0.8 * before, (before, after)
    # the discriminators were trained too
    changed = [k for k, v in task.discriminator.state_dict().items() if not torch.equal(v, d_before[k])]
    assert any("mpd" in k for k in changed) and any("msd" in k for k in changed)
    assert task._stats["steps"] == 25 and task._stats["disc"] > 0


def test_generator_loss_is_the_weighted_sum():
    generator = tiny_generator()
    task, _ = _task(generator, mel_weight=45.0, fm_weight=2.0)
    from fastsep.train.vocoder import audio_collate

    audio, mel = task.features(audio_collate(harmonic_items(2, 32 * 6))["audio"])
    losses = task.generator_losses(generator, audio, mel, update_discriminator=False)
    losses = {k: float(v.detach()) for k, v in losses.items()}
    expected = losses["adv"] + 2.0 * losses["fm"] + 45.0 * losses["mel"]
    assert losses["total"] == pytest.approx(expected, rel=1e-6)
    assert losses["mel"] > 0 and losses["fm"] > 0 and losses["adv"] > 0


def test_end_epoch_decays_both_learning_rates():
    generator = tiny_generator()
    task, opt_g = _task(generator, lr_decay=0.5)
    task.end_epoch(opt_g)
    task.end_epoch(opt_g)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-3 / 4)
    assert task.optimizer_d.param_groups[0]["lr"] == pytest.approx(2e-3 / 4)
    assert opt_g.param_groups[0]["betas"] == (0.8, 0.99) and isinstance(opt_g, torch.optim.AdamW)


def test_task_state_round_trip_and_refusals():
    from fastsep.train.vocoder import audio_collate

    generator = tiny_generator()
    task, opt_g = _task(generator)
    task.training_loss(generator, audio_collate(harmonic_items(2, 32 * 6)))  # one D step: optimiser state exists
    tensors, meta = task.checkpoint_state()
    json.dumps(meta)  # the meta goes into state.json
    other, _ = _task(tiny_generator())
    other.load_checkpoint_state(tensors, meta)
    for k, v in task.discriminator.state_dict().items():
        assert torch.equal(v, other.discriminator.state_dict()[k]), k
    a, b = task.optimizer_d.state_dict()["state"], other.optimizer_d.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    assert other._stats["steps"] == 1
    changed, _ = _task(tiny_generator(), fm_weight=3.0)
    with pytest.raises(ValueError, match="fm_weight"):
        changed.load_checkpoint_state(tensors, meta)
    from fastsep.train.hifigan import HiFiGANTask

    bigger = HiFiGANTask(generator.config, HiFiGANDiscriminator.small())
    bigger.make_optimizer(tiny_generator(), _cfg())
    with pytest.raises(ValueError, match="discriminators"):
        bigger.load_checkpoint_state(tensors, meta)


def _cfg(**kw):
    from fastsep.train.loop import TrainConfig

    return TrainConfig(out_dir="unused", **kw)


def test_task_bad_input():
    from fastsep.train.hifigan import HiFiGANTask

    generator = tiny_generator()
    with pytest.raises(TypeError, match="HiFiGANDiscriminator"):
        HiFiGANTask(generator.config, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="lr_decay"):
        HiFiGANTask(generator.config, tiny_discriminator(), lr_decay=0.0)
    task = HiFiGANTask(generator.config, tiny_discriminator())
    with pytest.raises(RuntimeError, match="make_optimizer"):
        task.training_loss(generator, {"audio": torch.rand(2, 32 * 6)})
    with pytest.raises(ValueError, match="too short"):
        task.features(torch.rand(2, 64))


class _Crops(torch.utils.data.Dataset):
    """Fixed crops (no randomness in loading), so two runs see the same batches in the same order."""

    def __init__(self, n, length):
        self.items = harmonic_items(n, length, seed=5)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_loop_run_stopped_and_resumed_ends_with_the_weights_of_one_run(tmp_path):
    # The discriminators and their optimiser travel in the checkpoint: a run cut after 2 steps and resumed must end
    # exactly where an uninterrupted run ends, generator and discriminators alike.
    from fastsep.train import checkpoint as ckpt
    from fastsep.train.hifigan import HiFiGANTask
    from fastsep.train.loop import TrainConfig, train
    from fastsep.train.vocoder import audio_collate

    def run(out, max_steps=None):
        torch.manual_seed(0)
        generator = tiny_generator()
        task = HiFiGANTask(generator.config, tiny_discriminator(), valid_seconds=0.1)
        cfg = TrainConfig(out_dir=str(out), epochs=1, batch_size=2, lr=2e-4, grad_clip=None, monitor="mel_l1",
                          patience=0, early_stop_patience=0, progress=False, max_steps=max_steps, seed=1)
        train(generator, task, _Crops(6, 32 * 8), _Crops(1, 32 * 12), cfg, collate_fn=audio_collate)
        return generator, ckpt.load_extra_state(str(out / "last"))[0]

    g_once, d_once = run(tmp_path / "once")
    run(tmp_path / "cut", max_steps=2)
    g_resumed, d_resumed = run(tmp_path / "cut")
    for k, v in g_once.state_dict().items():
        assert torch.equal(v, g_resumed.state_dict()[k]), k
    assert d_once.keys() == d_resumed.keys()
    for k, v in d_once.items():
        assert torch.equal(v, d_resumed[k]), k


def test_resume_refuses_a_checkpoint_without_the_task_state(tmp_path):
    # a last/ written by a run without discriminators (e.g. another task on the same generator) cannot be continued
    # as a GAN run: the loop says so instead of starting the discriminators from scratch
    from fastsep.train import checkpoint as ckpt
    from fastsep.train.hifigan import HiFiGANTask
    from fastsep.train.loop import TrainConfig, train
    from fastsep.train.vocoder import audio_collate

    generator = tiny_generator()
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=2, lr=2e-4, grad_clip=None,
                      monitor="mel_l1", patience=0, early_stop_patience=0, progress=False, seed=1)
    from dataclasses import asdict

    state = {"epoch": 0, "step": 1, "step_in_epoch": 1, "config": asdict(cfg), "world_size": 1, "train_items": 6}
    ckpt.save_checkpoint(cfg.out_dir, generator, torch.optim.AdamW(generator.parameters()), state)
    assert ckpt.load_extra_state(os.path.join(cfg.out_dir, "last")) is None
    task = HiFiGANTask(generator.config, tiny_discriminator(), valid_seconds=0.1)
    with pytest.raises(ValueError, match="holds no state of that task"):
        train(generator, task, _Crops(6, 32 * 8), _Crops(1, 32 * 12), cfg, collate_fn=audio_collate)


# ---------------------------------------------------------------------------------------------- save, load, vocode
def test_save_load_round_trip(tmp_path):
    model = tiny_generator().eval()
    save_model(model, tmp_path / "g")
    info = json.loads((tmp_path / "g" / "model.json").read_text())
    assert info["class"] == "HiFiGAN" and info["config"]["hop_length"] == 32
    loaded = load_model(tmp_path / "g")
    assert isinstance(loaded, HiFiGAN) and loaded.config == model.config
    mel = torch.rand(1, 10, 4)
    with torch.no_grad():
        assert torch.equal(loaded(mel), model(mel))
    assert HiFiGAN.load(tmp_path / "g").config == model.config
    d = tiny_discriminator()
    d.save(tmp_path / "d")
    assert load_model(tmp_path / "d").config == d.config
    with pytest.raises(ValueError, match="not a HiFiGAN"):
        HiFiGAN.load(tmp_path / "d")


def test_vocode_interface_matches_diffwave():
    hifigan = tiny_generator().eval()
    diffwave = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=10, hop_length=32,
                        sample_rate=8000).eval()
    wave = torch.stack([item["audio"] for item in harmonic_items(3, 333)])
    for vocoder in (hifigan, diffwave):
        # the calls fastsep makes: Separator (per item, seeded, with precision), the combiner trainer, eval
        batch = vocoder.vocode(wave)
        one = vocoder.vocode(wave[0], fast=True, seed=3, precision="float32")
        assert batch.shape == wave.shape and one.shape == wave[0].shape
        assert batch.dtype == wave.dtype
        assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (8000, 32, 10)
        for key in ("sample_rate", "hop_length", "n_mels"):
            assert key in vocoder.config
    # deterministic: the seed is accepted and changes nothing; a batch item equals the item vocoded alone
    assert torch.equal(hifigan.vocode(wave[0], seed=1), hifigan.vocode(wave[0], seed=2))
    assert torch.allclose(hifigan.vocode(wave)[1], hifigan.vocode(wave[1]), atol=1e-6)
    with pytest.raises(ValueError, match="longer than"):
        hifigan.vocode(torch.zeros(64))
    with pytest.raises(ValueError, match="float tensor"):
        hifigan.vocode(torch.zeros(2, 2, 400))
    with pytest.raises(ValueError, match="precision"):
        hifigan.vocode(wave, precision="half")
    # bfloat16 autocast (Separator(vocoder_precision="bfloat16") passes it) stays close to float32
    full, half = hifigan.vocode(wave), hifigan.vocode(wave, precision="bfloat16")
    assert half.dtype == wave.dtype and (half - full).abs().max() < 0.05 * full.abs().max() + 1e-4


def test_combiner_task_takes_a_hifigan_vocoder():
    # `fastsep train combiner --vocoder DIR` loads GM through models.io and calls vocode: a HiFi-GAN folder works
    from fastsep.models import ConvTasNet
    from fastsep.train.combiner import CombinerTask

    task = CombinerTask(ConvTasNet.small(2, 8000), tiny_generator())
    mixture, sources = torch.randn(2, 1000) * 0.1, torch.randn(2, 2, 1000) * 0.1
    vd, vg = task.estimates(mixture, sources)
    assert vd.shape == vg.shape == (2, 2, 1000) and torch.isfinite(vg).all()


def test_hifigan_bundle_separates(tmp_path):
    # GM behind the Separator and a bundle on disk, unchanged: modes xcorr and full run with a HiFi-GAN vocoder
    from fastsep import Separator
    from fastsep.models import Combiner, ConvTasNet

    sep = Separator(ConvTasNet.small(2, 8000), tiny_generator(), Combiner(), sample_rate=8000)
    sep.save_pretrained(tmp_path / "bundle")
    loaded = Separator.from_pretrained(tmp_path / "bundle")
    assert isinstance(loaded.vocoder, HiFiGAN)
    mix = torch.randn(4000) * 0.1
    for mode in ("xcorr", "full"):
        a = loaded.separate(mix, mode=mode, seed=0)
        b = loaded.separate(mix, mode=mode, seed=1)
        assert a.shape == (2, 4000) and torch.isfinite(a).all()
        assert torch.equal(a, b)  # a deterministic GM: the seed changes nothing


# ------------------------------------------------------------------------------------------------------------- CLI
def _wav_folder(root):
    from fastsep import audio as fsaudio

    for split, n in (("train", 4), ("valid", 1)):
        (root / split).mkdir(parents=True)
        for i, item in enumerate(harmonic_items(n, 1200, seed=len(split))):
            fsaudio.save(root / split / f"{i}.wav", item["audio"], 8000)


CLI_TINY = ["--sample-rate", "8000", "--hop-length", "32", "--n-mels", "10", "--small",
            "--upsample-initial-channel", "16", "--crop-frames", "8", "--batch-size", "2", "--num-workers", "0",
            "--no-progress", "--device", "cpu", "--valid-seconds", "0.1"]


def test_cli_trains_one_epoch_and_resumes(tmp_path):
    from fastsep.cli import main
    from fastsep.train import checkpoint as ckpt

    _wav_folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "hifigan", "--data", str(tmp_path / "data"), "--out", str(out)] + CLI_TINY
    assert main(args + ["--epochs", "1"]) == 0
    best = load_model(out / "best")
    assert isinstance(best, HiFiGAN) and best.hop_length == 32 and best.config["upsample_initial_channel"] == 16
    assert not any("mpd" in k or "msd" in k for k in best.state_dict())  # best/ is the generator alone
    tensors, meta = ckpt.load_extra_state(str(out / "last"))
    assert any(k.startswith("discriminator.mpd") for k in tensors) and meta["settings"]["mel_weight"] == 45.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epoch = [r for r in log if r["event"] == "epoch"]
    assert len(epoch) == 1 and epoch[0]["lr"] == pytest.approx(2e-4 * 0.999)
    assert {"mel_l1", "log_mel_l1", "train_mel", "train_fm", "train_adv", "train_disc"} <= set(epoch[0])
    d_after_one = {k: v.clone() for k, v in tensors.items() if k.startswith("discriminator.")}

    # a second run with --epochs 2 resumes from last/ (discriminators and their optimiser included)
    assert main(args + ["--epochs", "2"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("resume") == 1
    epochs = [r for r in log if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[1]["lr"] == pytest.approx(2e-4 * 0.999 ** 2)
    tensors2, _ = ckpt.load_extra_state(str(out / "last"))
    assert any(not torch.equal(tensors2[k], v) for k, v in d_after_one.items())  # trained on, not restarted
    assert any(k.startswith("optimizer_d.") for k in tensors2)


def test_cli_bad_input(tmp_path, capsys):
    from fastsep.cli import main

    assert main(["train", "hifigan", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastsep train hifigan: error: ") and "does not exist" in err
    _wav_folder(tmp_path / "data")
    base = ["train", "hifigan", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r")]
    assert main(base + ["--crop-frames", "2"]) == 2
    assert "--crop-frames" in capsys.readouterr().err
    g = tiny_generator(hop=64)
    g.save(tmp_path / "init")
    assert main(base + CLI_TINY + ["--init", str(tmp_path / "init")]) == 2
    assert "--init" in capsys.readouterr().err


def test_resume_refuses_a_run_of_other_discriminators(tmp_path, capsys):
    from fastsep.cli import main

    _wav_folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "hifigan", "--data", str(tmp_path / "data"), "--out", str(out)] + CLI_TINY
    assert main(args + ["--epochs", "1", "--max-steps", "1"]) == 0
    # the same run folder with the paper's discriminators (no --small) cannot continue that run
    not_small = [a for a in args if a != "--small"]
    assert main(not_small + ["--epochs", "1"]) == 2
    assert "discriminators" in capsys.readouterr().err
