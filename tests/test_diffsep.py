"""DiffSep (issue 10): the SDE's closed-form marginals, the sampler on an exactly solvable problem, the mismatch-aware
PIT loss, training, seeding and input checks. Everything is tiny so that each test takes seconds on a CPU."""
from __future__ import annotations

import itertools
import json
import math
import os

import pytest
import torch

from fastsep.models.ncsnpp import NCSNpp, compress, decompress
from fastsep.sampling.diffsep import MixSDE, PCSampler
from fastsep.train.diffsep import DiffSepTask, best_assignment, mismatch_pit_loss, order_sources


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def tiny_net(n_src=2, **kw):
    return NCSNpp(n_src, n_fft=30, hop_length=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), **kw)


# ------------------------------------------------------------------------------------------ closed-form marginals
def euler_maruyama(sde: MixSDE, s: torch.Tensor, t_end: float, steps: int, gen: torch.Generator) -> torch.Tensor:
    """Simulate dx = -gamma Pbar x dt + g(t) dw from x_0 = s up to t_end (float64)."""
    x = s.clone()
    dt = t_end / steps
    for i in range(steps):
        t = i * dt
        x = x + sde.drift(x) * dt + float(sde.g(t)) * math.sqrt(dt) * torch.randn(x.shape, generator=gen,
                                                                                  dtype=x.dtype)
    return x


@pytest.mark.parametrize("n_src", [2, 3])
def test_marginals_match_euler_maruyama(n_src):
    sde = MixSDE(n_src)
    gen = torch.Generator().manual_seed(n_src)
    s0 = torch.randn(1, n_src, 1, generator=gen, dtype=torch.float64)  # one source vector, many paths
    paths = 20000
    s = s0.expand(paths, n_src, 1).clone()
    for t_end in (0.3, 1.0):
        x = euler_maruyama(sde, s, t_end, steps=200, gen=gen)[..., 0]  # [paths, K]
        mean = sde.mean(s0, t_end)[0, :, 0]
        eye = torch.eye(n_src, dtype=torch.float64)
        lam1, lam2 = sde.lambdas(torch.tensor(t_end, dtype=torch.float64))
        cov = lam1 * torch.ones(n_src, n_src, dtype=torch.float64) / n_src + lam2 * (eye - 1.0 / n_src)
        emp_mean = x.mean(0)
        emp_cov = torch.cov(x.T)
        # standard errors of a Gaussian sample's mean and covariance entries
        se_mean = (cov.diagonal() / paths).sqrt()
        se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov ** 2) / paths).sqrt()
        assert ((emp_mean - mean).abs() < 5 * se_mean + 2e-3).all(), (t_end, emp_mean, mean)
        assert ((emp_cov - cov).abs() < 5 * se_cov + 2e-3 * cov.abs().max()).all(), (t_end, emp_cov, cov)
        # the process really mixes: the sources' spread shrinks by e^{-gamma t} and noise correlates across sources
        assert not torch.allclose(mean, s0[0, :, 0], atol=10 * se_mean.max().item())
    # sampling x_t = mu_t + L_t z reproduces the same covariance (L_t L_t = Sigma_t)
    z = torch.randn(paths, n_src, 1, generator=gen, dtype=torch.float64)
    xt = sde.marginal_sample(s, 1.0, z)[..., 0]
    assert ((torch.cov(xt.T) - cov).abs() < 5 * se_cov).all()


def test_cov_power_inverts():
    sde = MixSDE(4)
    v = torch.randn(3, 4, 50, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 1.0], dtype=torch.float64)
    back = sde.cov_power(sde.cov_power(v, t, 0.5), t, -0.5)
    assert torch.allclose(back, v, atol=1e-10)
    twice = sde.cov_power(sde.cov_power(v, t, 0.5), t, 0.5)
    assert torch.allclose(twice, sde.cov_power(v, t, 1.0), atol=1e-12)


# --------------------------------------------------------------------------- the sampler on an exact Gaussian model
class GaussianSources:
    """Independent Gaussian sources s_k ~ N(m_k, diag v_k); given y = sum_k s_k everything is Gaussian per time
    sample, so p_t(x | y) and its score are closed-form: x_t = A_t s + L_t z with A_t = P + e^{-gamma t} Pbar."""

    def __init__(self, sde, m, v, y):
        self.sde = sde
        k = m.shape[0]
        sv = v.sum(0)
        self.post_mean = m + v * (y - m.sum(0)) / sv  # [K, N]
        self.post_cov = torch.diag_embed(v.T) - v.T[:, :, None] * v.T[:, None, :] / sv[:, None, None]  # [N, K, K]
        eye = torch.eye(k, dtype=m.dtype)
        self.P = torch.ones(k, k, dtype=m.dtype) / k
        self.Pb = eye - self.P

    def marginal(self, t: float):
        a = self.P + math.exp(-self.sde.gamma * t) * self.Pb
        lam1, lam2 = self.sde.lambdas(torch.tensor(t, dtype=torch.float64))
        return (a @ self.post_mean), a @ self.post_cov @ a + lam1 * self.P + lam2 * self.Pb

    def score(self, x, t, mixture):
        mean, cov = self.marginal(float(t[0]))
        d = (x - mean).permute(2, 1, 0)  # [N, K, B]
        return -(torch.linalg.solve(cov, d)).permute(2, 1, 0)


@pytest.mark.parametrize("start", ["exact", "prior"])
def test_sampler_recovers_gaussian_posterior(start):
    torch.manual_seed(0)
    k, n, batch = 3, 4, 4000
    sde = MixSDE(k)
    m = torch.randn(k, n, dtype=torch.float64) * 0.3
    v = torch.rand(k, n, dtype=torch.float64) * 0.5 + 0.2
    y = torch.randn(n, dtype=torch.float64)
    model = GaussianSources(sde, m, v, y)
    mixture = y.expand(batch, n).clone()
    x_init = None
    if start == "exact":  # the solver alone: start from the exact p_T(x | y)
        mean_T, cov_T = model.marginal(sde.T)
        z = torch.randn(n, k, batch, dtype=torch.float64)
        x_init = (mean_T.T[..., None] + torch.linalg.cholesky(cov_T) @ z).permute(2, 1, 0)
    out = PCSampler(sde, 30, 0.5).sample(model.score, mixture, seed=1, x_init=x_init)
    emp_mean = out.mean(0)
    emp_cov = torch.einsum("bkn,bjn->nkj", out - emp_mean, out - emp_mean) / (batch - 1)
    var = model.post_cov.diagonal(dim1=1, dim2=2).T  # [K, N]
    se_mean = (var / batch).sqrt()
    d = model.post_cov.diagonal(dim1=1, dim2=2)
    se_cov = ((d[:, :, None] * d[:, None, :] + model.post_cov ** 2) / batch).sqrt()
    # the posterior differs clearly from the sampler's starting mean y/K, so agreement is informative
    assert (model.post_mean - y / k).abs().max() > 20 * se_mean.max()
    assert ((emp_mean - model.post_mean).abs() < 5 * se_mean + 0.01).all()
    assert ((emp_cov - model.post_cov).abs() < 5 * se_cov + 0.01).all()
    # the samples are consistent with the mixture: their sum has (almost) no spread left
    assert (out.sum(1) - y).std() < 0.05


# ------------------------------------------------------------------------------------------- mismatch-aware PIT
def test_mismatch_pit_loss_picks_the_matching_permutation():
    torch.manual_seed(0)
    k = 3
    sde = MixSDE(k)
    sources = torch.randn(5, k, 64)
    z = torch.randn_like(sources)
    true_perm = torch.stack([torch.randperm(k) for _ in range(5)])
    # the ideal network output for permutation pi: L_T q = -(z + L_T^{-1}(sbar - mu_T(pi)))
    permuted = torch.gather(sources, 1, true_perm.unsqueeze(-1).expand_as(sources))
    sbar = sources.mean(1, keepdim=True).expand_as(sources)
    mu_T = sde.mean(permuted, sde.T)
    ideal = -(z + sde.cov_power(sbar - mu_T, sde.T, -0.5))
    loss, perm = mismatch_pit_loss(sde, ideal + z, sources)
    assert torch.equal(perm, true_perm)
    assert loss.abs().max() < 1e-9
    # every other permutation costs more; without permutation the identity is forced
    fixed, ident = mismatch_pit_loss(sde, ideal + z, sources, permute=False)
    assert torch.equal(ident, torch.arange(k).expand(5, k))
    wrong = (true_perm != torch.arange(k)).any(1)
    assert (fixed[wrong] > 1e-3).all()


def test_best_assignment_matches_exhaustive_search_beyond_six_sources():
    gen = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 7, 7, generator=gen, dtype=torch.float64)
    perm = best_assignment(cost)  # Hungarian path
    got = cost.gather(2, perm.unsqueeze(-1)).sum((1, 2))
    perms = torch.tensor(list(itertools.permutations(range(7))))
    exhaustive = cost[:, torch.arange(7), perms].sum(-1).min(dim=-1).values  # [B], over all 5040 orders
    assert torch.allclose(got, exhaustive)


def test_order_sources_by_power():
    s = torch.stack([torch.ones(2, 8) * 3.0, torch.ones(2, 8) * 0.5, torch.ones(2, 8)], dim=1)
    out = order_sources(s, "power")
    assert torch.equal(out[:, :, 0], torch.tensor([[0.5, 1.0, 3.0]] * 2))
    with pytest.raises(ValueError, match="power"):
        order_sources(s, "loudest")


# ------------------------------------------------------------------------------------------------ the network
def test_compression_round_trip_and_network_shapes():
    spec = torch.randn(4, 9, dtype=torch.complex64)
    c = compress(spec, 0.5, 0.15)
    assert torch.allclose(c.abs(), spec.abs().sqrt() / 0.15, rtol=1e-5)
    assert torch.allclose(decompress(c, 0.5, 0.15), spec, atol=1e-5)
    net = tiny_net(3)
    x = torch.randn(2, 3, 301)
    out = net(x, torch.tensor([0.1, 0.9]), x.sum(1))
    assert out.shape == (2, 3, 301)
    # t conditions the output (once trained: at initialisation every residual block is the identity, as in NCSN++,
    # so random weights stand in for trained ones)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    out = net(x, torch.tensor([0.1, 0.9]), x.sum(1))
    other = net(x, torch.tensor([0.5, 0.2]), x.sum(1))
    assert not torch.allclose(out, other)


def test_network_config_round_trip_and_ema(tmp_path):
    from fastsep.methods.diffsep import load_score_model
    from fastsep.models.io import save_model

    net = tiny_net(2, ema_decay=0.99)
    json.dumps(net.config)
    start = net.conv_in.bias.detach().clone()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    net.update_ema()
    save_model(net, tmp_path)
    back = load_score_model(tmp_path)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    avg = back.averaged()
    assert avg.ema is None and avg.config["ema_decay"] == 0.0
    # after one update the average sits 90 % of the way to the new weights ((1+0)/(10+0) decay)
    moved = dict(avg.named_parameters())["conv_in.bias"] - start
    assert torch.allclose(moved, torch.full_like(moved, 0.09), atol=1e-6)


# -------------------------------------------------------------------------------------------------- training
def _toy_batches(n_src=2, batch=4, length=256, count=6):
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(length) / 8000.0
    out = []
    for _ in range(count):
        f0 = 200 + 600 * torch.rand(batch, n_src, 1, generator=gen)
        src = torch.sin(2 * math.pi * f0 * t) * (0.5 + torch.rand(batch, n_src, 1, generator=gen))
        out.append({"mixture": src.sum(1), "sources": src})
    return out


def test_tiny_model_training_lowers_the_loss():
    torch.manual_seed(0)
    sde = MixSDE(2)
    net = tiny_net(2, ema_decay=0.9)
    task = DiffSepTask(sde, p_T=0.1, valid_sample_items=0)
    batches = _toy_batches()
    def fixed_noise_loss():  # the same times and noise before and after
        with torch.no_grad():
            total = 0.0
            for i, b in enumerate(batches):
                mix, src = task.prepare(b)
                total += float(task.loss_terms(net, mix, src, generator=torch.Generator().manual_seed(i))[0].mean())
            return total / len(batches)

    before = fixed_noise_loss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(40):
        loss = task.training_loss(net, batches[step % len(batches)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        task.update_ema(net)
    after = fixed_noise_loss()
    # ~0.98 (a zero score) -> ~0.82 measured; a network that learned nothing stays near 1
    assert after < 0.9 * before, (before, after)
    assert int(net.ema.num_updates) == 40


def test_train_on_the_shared_loop_writes_a_loadable_method(tmp_path):
    from fastsep.methods.diffsep import DiffSepMethod
    from fastsep.train.loop import TrainConfig, train

    sde = MixSDE(2)
    net = tiny_net(2, ema_decay=0.9)
    task = DiffSepTask(sde, valid_sample_items=1, sampler_steps=3)
    items = []
    for b in _toy_batches(batch=1, count=4):
        items.append({"mixture": b["mixture"][0], "sources": b["sources"][0]})
    from fastsep.train.separator import pad_collate

    cfg = TrainConfig(out_dir=str(tmp_path), epochs=1, batch_size=2, progress=False, amp=False, monitor="loss",
                      device="cpu")
    result = train(net, task, items, items[:2], cfg, collate_fn=pad_collate, on_step=lambda _i: task.update_ema(net))
    assert result["step"] == 2 and math.isfinite(result["loss"]) and "si_sdri" in result
    assert int(net.ema.num_updates) == 2
    method = DiffSepMethod.from_pretrained(tmp_path / "best", n_steps=3)
    out = method.separate(items[0]["mixture"].unsqueeze(0), seed=0)
    assert out.shape == (1, 2, 256) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- seeds and inputs
def test_sampling_is_deterministic_under_a_seed_and_per_item():
    from fastsep.methods.diffsep import DiffSepMethod

    torch.manual_seed(0)
    method = DiffSepMethod(tiny_net(2), n_steps=4)
    mix = torch.randn(3, 200) * 0.1
    a = method.separate(mix, seed=7)
    b = method.separate(mix, seed=7)
    c = method.separate(mix, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # item 1 of a batch seeded 7 is item 0 of a batch of one seeded 8 (seed + index), whatever its batch-mates
    single = method.separate(mix[1:2], seed=8)
    assert torch.allclose(single[0], a[1], atol=1e-5)
    # the level of the recording does not matter
    louder = method.separate(mix * 10, seed=7)
    assert torch.allclose(louder, a * 10, rtol=1e-3, atol=1e-4)


def test_enhancement_returns_the_speech_track():
    from fastsep.methods.diffsep import DiffSepMethod

    method = DiffSepMethod(tiny_net(2), n_steps=2, enhancement=True)
    mix = torch.randn(2, 120)
    speech = method.enhance(mix, seed=1)
    assert torch.equal(speech, method.separate(mix, seed=1)[:, 0])
    with pytest.raises(ValueError, match="separation"):
        DiffSepMethod(tiny_net(2), n_steps=2).enhance(mix)
    with pytest.raises(ValueError, match="K = 2"):
        DiffSepMethod(tiny_net(3), enhancement=True)
    with pytest.raises(ValueError, match="K = 2"):
        DiffSepTask(MixSDE(3), enhancement=True)


def test_bad_input_raises_clear_errors():
    from fastsep.methods.diffsep import DiffSepMethod

    with pytest.raises(ValueError, match="n_src"):
        MixSDE(1)
    with pytest.raises(ValueError, match="n_src"):
        MixSDE(21)
    with pytest.raises(ValueError, match="sigma_max"):
        MixSDE(2, sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ValueError, match="t_eps"):
        MixSDE(2, t_eps=2.0)
    with pytest.raises(ValueError, match="n_steps"):
        PCSampler(MixSDE(2), n_steps=0)
    with pytest.raises(ValueError, match="divisible"):
        NCSNpp(2, n_fft=32, hop_length=8, ch_mult=(1, 2, 2), attn_levels=(1,))
    with pytest.raises(ValueError, match=r"\[batch, 2, time\]"):
        MixSDE(2).mean(torch.zeros(1, 3, 10), 0.5)
    method = DiffSepMethod(tiny_net(2), n_steps=2)
    with pytest.raises(ValueError, match="2-D"):
        method.separate(torch.zeros(100))
    with pytest.raises(TypeError, match="floating point"):
        method.separate(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        method.separate(torch.full((1, 100), float("nan")))
    with pytest.raises(ValueError, match="seeds for a batch"):
        method.separate(torch.zeros(2, 100), seed=[1, 2, 3])
    task = DiffSepTask(MixSDE(2))
    with pytest.raises(ValueError, match="K = 2"):
        task.training_loss(tiny_net(2), {"mixture": torch.zeros(1, 64), "sources": torch.zeros(1, 3, 64)})
    with pytest.raises(ValueError, match="probability"):
        DiffSepTask(MixSDE(2), p_T=1.5)
