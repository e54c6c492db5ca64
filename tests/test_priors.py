"""Diffusion source priors (issue 11): the DDPM constants, the guided solver against the exact posterior of Gaussian
sources, the per-source normalised step, the TF-attention U-Net, the DiffWave adapter, prior training (loss falls,
EMA, export, resume, CLI), determinism under a seed, the separation method and bad input."""
import math
import os
import shutil

import numpy as np
import pytest
import torch

from fastsep import cli
from fastsep.methods.priors import PriorSeparation, as_prior, load_prior
from fastsep.models.diffwave import DiffWave
from fastsep.models.io import save_model
from fastsep.models.tf_attention_unet import TFAttentionUNet, TFBlock
from fastsep.sampling.priors import (DDPMSchedule, DiffWavePrior, GaussianPrior, GuidedSolver, NetworkPrior,
                                     ReconstructionLoss, hybrid_step_sizes, per_source_normalised_step, smooth_max)
from fastsep.train.prior import EMAPrior, PriorTask, build_network, export_prior


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def tiny_unet(**overrides):
    kwargs = dict(sample_rate=8000, n_fft=62, hop_length=31, channels=(8, 16), depths=(1, 1), head_dim=4,
                  mlp_ratio=1.0, diffusion_steps=20)
    kwargs.update(overrides)
    return TFAttentionUNet(**kwargs)


def mirrored_profiles(length, scale=0.2):
    """Two per-sample variance profiles, one rising and one falling: the exact posterior splits each sample of the
    mixture in the ratio v1 : v2, far from an even split."""
    ramp = torch.linspace(0, 1, length)
    return scale ** 2 * (0.05 + ramp ** 2), scale ** 2 * (0.05 + (1 - ramp) ** 2)


# ------------------------------------------------------------------------------------------------------- schedule
def test_paper_schedule_and_posterior_consistency():
    s = DDPMSchedule.paper()
    assert s.steps == 200 and s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    assert s.posterior_variance[0] == 0.0
    # q(x_{t-1} | x_t, x0) must agree with the marginal q(x_{t-1} | x0): mean sqrt(abar_{t-1}) x0, variance
    # 1 - abar_{t-1}, once x_t ~ q(x_t | x0) is integrated out.
    t = np.arange(1, 200)
    mean_coef = s.coef_x0[t] + s.coef_xt[t] * np.sqrt(s.alpha_bar[t])
    var = s.coef_xt[t] ** 2 * (1 - s.alpha_bar[t]) + s.posterior_variance[t]
    np.testing.assert_allclose(mean_coef, np.sqrt(s.alpha_bar[t - 1]), rtol=1e-10)
    np.testing.assert_allclose(var, 1 - s.alpha_bar[t - 1], rtol=1e-8)


def test_x0_estimate_inverts_forward_process_and_ancestral_step_without_noise_is_posterior_mean():
    s = DDPMSchedule.paper()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 50, generator=g) - 0.5
    eps = torch.randn(4, 50, generator=g)
    t = torch.tensor([0, 7, 120, 199])
    xt = s.q_sample(x0, t, eps)
    torch.testing.assert_close(s.x0_from_eps(xt, t, eps, clip=None), x0, atol=2e-5, rtol=0)
    # clip bounds the estimate
    assert float(s.x0_from_eps(xt, t, eps + 30.0, clip=1.0).abs().max()) <= 1.0
    # ancestral step with the true eps at t = 0 returns x0 itself (posterior mean coefficient of x0 is 1 there)
    prev, est = s.ancestral_step(xt[:1], t[:1], eps[:1], noise=None, clip=None)
    torch.testing.assert_close(prev, x0[:1], atol=2e-5, rtol=0)


def test_gaussian_prior_epsilon_is_the_regression_of_noise_on_xt():
    """E[eps | x_t] for a Gaussian source is linear in x_t: the empirical least-squares slope over many draws must
    match the closed form the prior uses."""
    s = DDPMSchedule.paper()
    v = 0.3
    prior = GaussianPrior(v, s)
    g = torch.Generator().manual_seed(1)
    n = 1_000_000
    x0 = torch.randn(n, generator=g) * math.sqrt(v)
    eps = torch.randn(n, generator=g)
    for step in (20, 80, 190):
        t = torch.tensor([step])
        xt = s.q_sample(x0.unsqueeze(0), t, eps.unsqueeze(0))[0]
        slope = float((xt * eps).sum() / (xt * xt).sum())
        predicted = float(prior.epsilon(torch.ones(1, 1), t))  # epsilon(x_t = 1) is the slope
        assert slope == pytest.approx(predicted, rel=0.03)  # sampling error ~0.7 %


# --------------------------------------------------------------------------------------------------- the solver
def test_hybrid_solver_approaches_exact_posterior_mean_and_residual_falls():
    torch.manual_seed(0)
    length, batch = 128, 48
    v1, v2 = mirrored_profiles(length)
    g = torch.Generator().manual_seed(5)
    y = torch.randn(length, generator=g) * v1.sqrt() + torch.randn(length, generator=g) * v2.sqrt()
    exact = torch.stack([v1 / (v1 + v2) * y, v2 / (v1 + v2) * y])  # E[x_i | x1 + x2 = y]
    solver = GuidedSolver([GaussianPrior(v1), GaussianPrior(v2)], step="hybrid", clip=None, n_segments=16, n_fft=64,
                          hop_length=32)
    result = solver.solve(y.expand(batch, length).contiguous(), seed=0)
    assert result.sources.shape == (batch, 2, length)
    average = result.sources.mean(0)
    err = (average - exact).norm(dim=-1) / exact.norm(dim=-1)
    even_split = (y / 2 - exact).norm(dim=-1) / exact.norm(dim=-1)
    start = (y - exact).norm(dim=-1) / exact.norm(dim=-1)  # where the augmented-mixture start is centred
    # Posterior mean within 25 %, against 55-60 % for an even split and more for the start.
    assert bool((err < 0.25).all()), err
    assert bool((err < 0.5 * even_split).all()) and bool((err < 0.3 * start).all())
    # The mixture residual of the x0 estimates falls across the reverse steps: overall, and on every stretch of 40.
    residual = result.residual.mean(1)
    assert result.steps[0] == 199 and result.steps[-1] == 0 and residual.shape[0] == 200
    assert float(residual[-1]) < 0.7 * float(residual[0])
    chunks = residual.reshape(5, 40).mean(1)
    assert bool((chunks[1:] < chunks[:-1]).all()), chunks


@pytest.mark.parametrize("step", ["dsg", "dps"])
def test_baseline_steps_reduce_the_mixture_residual(step):
    length = 128
    v1, v2 = mirrored_profiles(length)
    g = torch.Generator().manual_seed(2)
    y = (torch.randn(length, generator=g) * (v1 + v2).sqrt()).expand(4, length).contiguous()
    # DPS's fixed step is in absolute units: 0.1 suits this 128-sample toy (the default 1.5 suits 4 s of audio)
    solver = GuidedSolver([GaussianPrior(v1), GaussianPrior(v2)], step=step, clip=None, n_segments=16, n_fft=64,
                          hop_length=32, zeta=0.1)
    result = solver.solve(y, seed=1)
    assert float(result.residual[-1].mean()) < 0.8 * float(result.residual[0].mean())
    final = (result.sources.sum(1) - y).norm(dim=-1)
    assert bool((final < y.norm(dim=-1)).all())


def test_per_source_step_has_the_stated_norm_whatever_the_other_gradients():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 40, generator=g)
    grad = torch.randn(2, 3, 40, generator=g)
    radius = torch.tensor([0.5, 0.02])
    for scale in (1.0, 1e-4, 1e6):
        scaled = grad.clone()
        scaled[:, 1] *= scale  # one source's gradient much larger or smaller than the others'
        moved = per_source_normalised_step(x, scaled, radius) - x
        torch.testing.assert_close(moved.norm(dim=-1), radius.unsqueeze(1).expand(2, 3), rtol=1e-5, atol=0)
        # each source moves against its own gradient
        cos = (moved * scaled).sum(-1) / (moved.norm(dim=-1) * scaled.norm(dim=-1))
        torch.testing.assert_close(cos, -torch.ones(2, 3), rtol=0, atol=1e-5)
    zero = grad.clone()
    zero[:, 2] = 0
    assert float((per_source_normalised_step(x, zero, radius) - x)[:, 2].abs().max()) == 0.0


def test_solver_final_step_moves_each_source_by_the_floor_radius():
    """The last reverse step (t = 0, no ancestral noise) of the solver: each source ends exactly r_0 = sqrt(n)
    smoothmax(0, 0.002) away from its posterior mean, although the two priors' gradients differ ~100-fold."""
    length = 64
    v_small, v_large = torch.full((length,), 1e-6), torch.full((length,), 1.0)
    priors = [GaussianPrior(v_small), GaussianPrior(v_large)]
    solver = GuidedSolver(priors, init_step=0, start_step=0, clip=None, n_segments=8, n_fft=32, hop_length=16)
    y = torch.linspace(-0.5, 0.5, length).unsqueeze(0)
    # Recreate the solver's start and its prior-only step.
    gen = GuidedSolver._generators(1, 11, "cpu")
    s = solver.schedule
    x = s.q_sample(y.unsqueeze(1).expand(1, 2, length), torch.zeros(1, dtype=torch.long),
                   GuidedSolver._noise(gen, (2, length), y))
    t0 = torch.zeros(2, dtype=torch.long)
    eps = torch.stack([p.epsilon(x[:, i], t0[:1]) for i, p in enumerate(priors)], dim=1)
    mean, _ = s.ancestral_step(x[0], t0, eps[0], noise=None, clip=None)
    out = solver.solve(y, seed=11).sources[0]
    r0 = math.sqrt(length) * float(smooth_max(0.0, 0.002))
    torch.testing.assert_close((out - mean).norm(dim=-1), torch.full((2,), r0), rtol=1e-4, atol=0)
    # the guidance-free floor of the paper's step size
    assert float(hybrid_step_sizes(s)[0]) == pytest.approx(math.log(1 + math.exp(2.0)) / 1000, rel=1e-9)


def test_reconstruction_loss_terms():
    y = torch.zeros(2, 100)
    y_hat = torch.zeros(2, 100)
    y_hat[0, :10] = 1.0  # residual of norm sqrt(10), inside one of 4 segments
    loss, wave = ReconstructionLoss(y, n_segments=4, segment_weight=0.5, stft_weight=0.0)(y_hat)
    assert float(wave[0]) == pytest.approx(math.sqrt(10)) and float(wave[1]) == 0
    assert float(loss[0]) == pytest.approx(math.sqrt(10) * 1.5) and float(loss[1]) == 0
    # spreading the same energy over all 4 segments raises the segment term to 2 x sqrt(10)/2 x 0.5
    spread = torch.zeros(2, 100)
    spread[0, ::25] = math.sqrt(10) / 2
    loss_spread, _ = ReconstructionLoss(y, n_segments=4, segment_weight=0.5, stft_weight=0.0)(spread)
    assert float(loss_spread[0]) == pytest.approx(math.sqrt(10) * 2.0)
    # the magnitude-STFT term ignores a pure sign flip of the estimate (same magnitudes)
    mix = torch.randn(1, 256)
    only_stft = ReconstructionLoss(mix, segment_weight=0.0, stft_weight=1.0, n_fft=64, hop_length=32)
    l_flip, w_flip = only_stft(-mix)
    assert float(l_flip - w_flip) == pytest.approx(0.0, abs=1e-4) and float(w_flip) > 1.0


def test_sampling_is_deterministic_under_seed_and_batch_independent():
    sched = DDPMSchedule(20)
    net = tiny_unet()
    prior = NetworkPrior(net)
    method = PriorSeparation([prior, prior], n_segments=8, n_fft=64, hop_length=32)
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(3, 400, generator=g) * 0.1
    a = method.separate(mix, seed=7)
    b = method.separate(mix, seed=7)
    c = method.separate(mix, seed=8)
    assert a.shape == (3, 2, 400)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-4
    # item i draws from its own generator seeded by (seed, i): other batch-mates leave its tracks unchanged
    other = mix.clone()
    other[0] = torch.randn(400, generator=g)
    other[2] = 0.0
    torch.testing.assert_close(method.separate(other, seed=7)[1], a[1], rtol=1e-4, atol=1e-6)
    assert prior.schedule.same_as(sched)


def test_method_mixes_prior_types_and_is_level_invariant():
    """A DiffWave speech prior and a Gaussian noise prior (enhancement) in one solve; the result scales with the
    mixture's level."""
    sched = DDPMSchedule(20)
    wave = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, sample_rate=8000,
                    unconditional=True, noise_schedule=sched.betas.tolist(),
                    inference_noise_schedule=[1e-4, 1e-3, 0.01])
    method = PriorSeparation([wave, GaussianPrior(0.01, sched)], n_segments=8, n_fft=64, hop_length=32)
    assert method.n_src == 2 and method.sample_rate == 8000
    mix = torch.sin(torch.linspace(0, 60, 300)) * 0.3
    out = method.separate(mix, seed=0)
    assert out.shape == (2, 300)
    louder = method.separate(mix * 0.25, seed=0)
    torch.testing.assert_close(louder, out * 0.25, rtol=1e-4, atol=1e-6)


def test_diffwave_adapter_is_the_models_noise_prediction():
    sched = DDPMSchedule(30)
    model = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, unconditional=True,
                     noise_schedule=sched.betas.tolist(), inference_noise_schedule=[1e-4, 1e-3, 0.01])
    prior = DiffWavePrior(model)
    assert prior.schedule.same_as(sched)
    x, t = torch.randn(2, 100), torch.tensor([3, 29])
    torch.testing.assert_close(prior.epsilon(x, t), model(x, t, None)[:, 0])
    with pytest.raises(ValueError, match="unconditional"):
        DiffWavePrior(DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2))
    with pytest.raises(TypeError):
        DiffWavePrior(tiny_unet())


# --------------------------------------------------------------------------------------------- the prior network
def test_tf_unet_shapes_batch_independence_and_zero_start_blocks():
    net = tiny_unet()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 333, generator=g)
    t = torch.tensor([0, 5, 19])
    out = net(x, t)
    assert out.shape == (3, 333) and bool(torch.isfinite(out).all())
    torch.testing.assert_close(net(x[2:], t[2:]), out[2:], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(net(x[:1], torch.tensor(0)), out[:1], rtol=1e-4, atol=1e-6)
    # adaLN-Zero: a fresh block is the identity whatever the step embedding
    block = TFBlock(8, 2, 16, 2.0, full_attention=True)
    h = torch.randn(2, 6, 5, 8, generator=g)
    torch.testing.assert_close(block(h, torch.randn(2, 16, generator=g)), h)
    # and once its modulation is trained, the step changes the output
    torch.nn.init.normal_(block.ada.weight, std=0.5)
    e1, e2 = torch.randn(2, 16, generator=g), torch.randn(2, 16, generator=g)
    with torch.no_grad():
        assert float((block(h, e1) - block(h, e2)).abs().max()) > 1e-3
    small = TFAttentionUNet.small()
    assert small.config["n_fft"] == 254 and small.config["hop_length"] == 127 and small.num_parameters() < 400_000
    assert TFAttentionUNet.from_config(small.config).config == small.config


def test_tf_unet_bad_input():
    net = tiny_unet()
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        net(torch.randn(10, 2, 100), torch.tensor([0]))
    with pytest.raises(ValueError, match="longer than n_fft/2"):
        net(torch.randn(1, 20), torch.tensor([0]))
    with pytest.raises(ValueError, match="diffusion steps"):
        net(torch.randn(3, 100), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="head_dim"):
        TFAttentionUNet(channels=(10, 20), depths=(1, 1), head_dim=4)
    with pytest.raises(ValueError, match="equal length"):
        TFAttentionUNet(channels=(8, 16), depths=(1,), head_dim=4)


# ------------------------------------------------------------------------------------------------------ training
class _Tones(torch.utils.data.Dataset):
    """Single 'sources': tones with a random frequency per item (a learnable, non-Gaussian distribution)."""

    def __init__(self, n, length, seed):
        g = torch.Generator().manual_seed(seed)
        self.freqs = 200 + 1500 * torch.rand(n, generator=g)
        self.phase = 2 * math.pi * torch.rand(n, generator=g)
        self.length = length

    def __len__(self):
        return len(self.freqs)

    def __getitem__(self, i):
        t = torch.arange(self.length) / 8000
        return {"audio": 0.5 * torch.sin(2 * math.pi * self.freqs[i] * t + self.phase[i]), "id": str(i)}


def test_prior_training_loss_falls_with_ema_and_export(tmp_path):
    from fastsep.train.loop import TrainConfig, train
    from fastsep.train.vocoder import audio_collate

    torch.manual_seed(0)
    model = EMAPrior.wrap(tiny_unet(), decay=0.9)
    task = PriorTask(steps=20, level_range=None, seed=0)
    valid = _Tones(16, 256, seed=1)
    loader = [audio_collate([valid[i] for i in range(16)])]
    before = task.validate(model, loader)["noise_mse"]
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=50, batch_size=8, lr=3e-3, max_steps=60,
                      device="cpu", progress=False, checkpoint_every=0, early_stop_patience=0, amp=False)
    train(model, task, _Tones(64, 256, seed=0), valid, cfg, collate_fn=audio_collate)
    after = task.validate(model, loader)["noise_mse"]
    assert after < 0.8 * before, (before, after)
    assert int(model.ema_updates) == 60
    # the average differs from the trained weights, and it is what the exported prior holds
    diff = [float((a - b).detach().abs().max()) for a, b in zip(model.ema.parameters(), model.net.parameters())]
    assert max(diff) > 0
    export_prior(model, str(tmp_path / "run" / "prior"))
    prior = load_prior(str(tmp_path / "run"))
    assert isinstance(prior, NetworkPrior) and prior.schedule.steps == 20
    x, t = torch.randn(2, 256), torch.tensor([1, 15])
    final = EMAPrior.wrap(model.net, 0.9)
    final.load_state_dict(model.state_dict())
    final.update_ema()
    torch.testing.assert_close(prior.epsilon(x, t), final.ema(x, t))
    # the run's best/ (the training wrapper) loads as its EMA network too
    assert isinstance(load_prior(str(tmp_path / "run" / "best")), NetworkPrior)
    # a run resumed after its export: once last/ is newer than prior/, the run folder passes the stale export over
    stamp = os.path.getmtime(tmp_path / "run" / "prior" / "model.json")
    os.utime(tmp_path / "run" / "last" / "model.json", (stamp - 10, stamp - 10))
    assert load_prior(str(tmp_path / "run")).epsilon(x, t).equal(prior.epsilon(x, t))
    with torch.no_grad():
        next(final.ema.parameters()).add_(0.5)  # the export goes stale: other weights than the run's from now on
    export_prior(final, str(tmp_path / "run" / "prior"))
    os.utime(tmp_path / "run" / "prior" / "model.json", (stamp - 20, stamp - 20))
    from_run = load_prior(str(tmp_path / "run")).epsilon(x, t)
    assert from_run.equal(load_prior(str(tmp_path / "run" / "best")).epsilon(x, t))
    assert not from_run.equal(load_prior(str(tmp_path / "run" / "prior")).epsilon(x, t))
    # a run still training has only last/: the run folder resolves to it
    shutil.rmtree(tmp_path / "run" / "prior")
    shutil.rmtree(tmp_path / "run" / "best")
    assert os.path.isdir(tmp_path / "run" / "last")
    from_last = load_prior(str(tmp_path / "run"))
    torch.testing.assert_close(from_last.epsilon(x, t), load_prior(str(tmp_path / "run" / "last")).epsilon(x, t))


def test_prior_task_levels_and_builders():
    task = PriorTask(steps=20, level_range=(-25.0, -20.0), seed=0)
    audio = torch.randn(6, 500)
    audio[5] = 0
    out = task._levelled(audio, torch.Generator().manual_seed(0))
    rms_db = 20 * torch.log10(out[:5].pow(2).mean(-1).sqrt())
    assert bool(((rms_db >= -25.01) & (rms_db <= -19.99)).all()) and float(out[5].abs().max()) == 0
    with pytest.raises(ValueError, match="dBFS"):
        PriorTask(level_range=(-10.0, -20.0))
    dw = build_network("diffwave", True, 8000)
    assert dw.unconditional and len(dw.config["noise_schedule"]) == 200
    assert as_prior(dw).schedule.same_as(DDPMSchedule.paper())
    assert build_network("tfunet", True, 8000).config["diffusion_steps"] == 200
    with pytest.raises(ValueError):
        build_network("wavenet", True, 8000)


def test_cli_train_prior_end_to_end(tmp_path):
    import wave as wavmod

    data = tmp_path / "data"
    g = np.random.default_rng(0)
    for split, n in (("train", 6), ("valid", 2)):
        os.makedirs(data / split)
        for i in range(n):
            samples = (0.3 * np.sin(2 * np.pi * g.uniform(200, 1500) * np.arange(4000) / 8000) * 32767)
            with wavmod.open(str(data / split / f"u{i}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(samples.astype("<i2").tobytes())
    out = tmp_path / "run"
    rc = cli.main(["train", "prior", "--data", str(data), "--out", str(out), "--arch", "diffwave", "--small",
                   "--segment", "0.1", "--max-steps", "3", "--batch-size", "2", "--num-workers", "0",
                   "--no-progress", "--device", "cpu"])
    assert rc == 0
    prior = load_prior(str(out))
    assert isinstance(prior, DiffWavePrior) and prior.schedule.same_as(DDPMSchedule.paper())
    assert cli.main(["train", "prior", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2


# ----------------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors(tmp_path):
    p20, p30 = GaussianPrior(0.1, DDPMSchedule(20)), GaussianPrior(0.1, DDPMSchedule(30))
    with pytest.raises(ValueError, match="schedule"):
        GuidedSolver([p20, p30])
    with pytest.raises(ValueError, match="at least one"):
        GuidedSolver([])
    with pytest.raises(ValueError, match="step must be one of"):
        GuidedSolver([p20], step="langevin")
    with pytest.raises(ValueError, match="init_step"):
        GuidedSolver([p20], init_step=20)
    with pytest.raises(TypeError, match="epsilon"):
        GuidedSolver([torch.nn.Linear(2, 2)])
    solver = GuidedSolver([p20, p20])
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        solver.solve(torch.zeros(2, 3, 100))
    with pytest.raises(TypeError, match="floating point"):
        solver.solve(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        solver.solve(torch.full((1, 100), float("nan")))
    with pytest.raises(TypeError, match="seed"):
        solver.solve(torch.zeros(1, 100), seed="abc")
    with pytest.raises(ValueError, match="non-empty list"):
        PriorSeparation([])
    with pytest.raises(TypeError, match="source prior"):
        PriorSeparation([42])
    with pytest.raises(ValueError, match="mixture"):
        PriorSeparation([p20, p20]).separate(np.zeros(100))
    with pytest.raises(ValueError, match="variance"):
        GaussianPrior(-1.0)
    with pytest.raises(ValueError, match="steps"):
        DDPMSchedule(1)
    # a saved model that is not a prior
    from fastsep.models import ConvTasNet

    save_model(ConvTasNet.small(2), str(tmp_path / "tasnet"))
    with pytest.raises(ValueError, match="not a source prior"):
        load_prior(str(tmp_path / "tasnet"))
    with pytest.raises(FileNotFoundError, match="prior/, best/ or last/"):
        load_prior(str(tmp_path / "nothing"))
