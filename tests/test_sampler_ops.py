"""The samplers' fused per-step updates (fastsep.ops.mix_sde_update, guided_update): kernels against their
references, the samplers with and without them, input checks, opcheck."""
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsep import ops, reference
from fastsep.sampling.diffsep import MixSDE, PCSampler, make_generators, randn_per_item
from fastsep.sampling.priors import DDPMSchedule, GaussianPrior, GuidedSolver
from op_cases import devices

DEVICES = [pytest.param(d, marks=pytest.mark.cuda if d.type == "cuda" else ()) for d in devices()]
FAST = settings(max_examples=25, deadline=None)


def require_kernel(name: str, device="cpu") -> None:
    """Skip (fail under FASTSEP_REQUIRE_EXTENSION=1) unless the compiled kernel of op ``name`` serves ``device``:
    otherwise fastsep.ops runs the reference and a kernel-vs-reference test would compare it with itself."""
    if ops._use_sampler_kernel(name, torch.device(device)):
        return
    reason = (f"needs the compiled fastsep::{name} kernel on {device}; without it fastsep.ops runs the reference and "
              "the test would compare the reference with itself")
    if os.environ.get("FASTSEP_REQUIRE_EXTENSION") == "1":
        pytest.fail(reason + " (FASTSEP_REQUIRE_EXTENSION=1)", pytrace=False)
    pytest.skip(reason)


def _coefs(gen, n=6):
    return [float(v) for v in (torch.rand(n, generator=gen, dtype=torch.float64) * 4 - 2)]


# ------------------------------------------------------------------------------------------------ mix_sde_update
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(batch=st.integers(0, 3), k=st.integers(1, 5), length=st.integers(0, 700), with_noise=st.booleans(),
       double=st.booleans(), seed=st.integers(0, 2**16))
def test_mix_sde_update_matches_reference(device, batch, k, length, with_noise, double, seed):
    require_kernel("mix_sde_update", device)
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    x, s, z = (torch.randn(batch, k, length, generator=g, dtype=dtype).to(device) for _ in range(3))
    coefs = _coefs(g)
    noise = z if with_noise else None
    got = ops.mix_sde_update(x, s, noise, *coefs)
    want = reference.mix_sde_update(x, s, noise, *coefs)
    assert got.shape == x.shape and got.dtype == dtype and got.device == x.device
    tol = dict(rtol=1e-12, atol=1e-12) if double else dict(rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(got, want, **tol)


def test_mix_sde_update_by_hand():
    # K = 2 sources at one sample: x = (1, 3) has average 2 and rest (-1, 1); with a_p = 10, a_q = 100 the output is
    # 10·2 + 100·(-1, 1) = (-80, 120); score and noise add their own (P, Pbar) combinations.
    x = torch.tensor([[[1.0], [3.0]]])
    s = torch.tensor([[[2.0], [0.0]]])  # average 1, rest (1, -1)
    z = torch.tensor([[[0.0], [4.0]]])  # average 2, rest (-2, 2)
    out = ops.mix_sde_update(x, s, z, 10.0, 100.0, 1.0, 0.5, 0.25, 2.0)
    want = torch.tensor([[[-80.0 + 1.0 + 0.5 + 0.5 - 4.0], [120.0 + 1.0 - 0.5 + 0.5 + 4.0]]])
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(ops.mix_sde_update(x, s, None, 10.0, 100.0, 1.0, 0.5, 0.25, 2.0),
                               torch.tensor([[[-80.0 + 1.5], [120.0 + 0.5]]]))


# ------------------------------------------------------------------------------------------------- guided_update
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(batch=st.integers(0, 3), c=st.integers(1, 4), length=st.integers(0, 9000), with_noise=st.booleans(),
       normalise=st.booleans(), double=st.booleans(), seed=st.integers(0, 2**16))
def test_guided_update_matches_reference(device, batch, c, length, with_noise, normalise, double, seed):
    require_kernel("guided_update", device)
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    x0, x, grad, z = (torch.randn(batch, c, length, generator=g, dtype=dtype).to(device) for _ in range(4))
    coef_x0, coef_xt, std, radius = _coefs(g, 4)
    noise = z if with_noise else None
    got = ops.guided_update(x0, x, grad, noise, coef_x0, coef_xt, std, radius, normalise)
    want = reference.guided_update(x0, x, grad, noise, coef_x0, coef_xt, std, radius, normalise)
    assert got.shape == x.shape and got.dtype == dtype and got.device == x.device
    tol = dict(rtol=1e-12, atol=1e-12) if double else dict(rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_guided_update_moves_each_source_by_the_radius(device):
    # Normalised: each row moves from the ancestral sample by exactly `radius`, whatever the size of its gradient
    # (a 1e4 gradient beside a 1e-3 one, and a zero gradient, which does not move at all).
    x0 = torch.randn(2, 3, 5000, device=device)
    x = torch.randn_like(x0)
    grad = torch.randn_like(x0) * torch.tensor([1e4, 1e-3, 0.0], device=device)[None, :, None]
    ancestral = 0.3 * x0 + 0.9 * x
    out = ops.guided_update(x0, x, grad, None, 0.3, 0.9, 0.5, 0.7, True)
    moved = (out - ancestral).norm(dim=-1)
    torch.testing.assert_close(moved[:, :2], torch.full((2, 2), 0.7, device=device), rtol=1e-4, atol=1e-5)
    # The zero-gradient row is the ancestral sample itself, up to float32 rounding: CUDA contracts the kernel's
    # multiply-adds into FMAs, which round once where the reference above rounds twice (~2e-6 over 5000 samples).
    torch.testing.assert_close(out[:, 2], ancestral[:, 2], rtol=1e-6, atol=1e-6)
    dps = ops.guided_update(x0, x, grad, None, 0.3, 0.9, 0.5, 0.7, False)
    torch.testing.assert_close(dps, ancestral - 0.7 * grad, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_guided_update_is_deterministic(device):
    require_kernel("guided_update", device)
    x0, x, grad, z = (torch.randn(3, 2, 20001, device=device) for _ in range(4))
    first = ops.guided_update(x0, x, grad, z, 0.5, 0.5, 0.1, 0.2, True)
    for _ in range(3):
        assert torch.equal(ops.guided_update(x0, x, grad, z, 0.5, 0.5, 0.1, 0.2, True), first)


# -------------------------------------------------------------------------------------- the samplers use them
def _gaussian_score(var: float):
    """A linear stand-in score (a pull towards each source's share of the mixture, weaker at larger t): the tests
    compare the samplers' arithmetic, not a score's accuracy (tests/test_diffsep.py drives them with exact scores)."""

    def score(x, t, mixture):
        return -(x - mixture.unsqueeze(1) / x.shape[1]) / (var + t.view(-1, 1, 1))

    return score


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k, corrector_steps, snr", [(2, 1, 0.5), (3, 2, 0.3), (2, 0, 0.5), (4, 1, 0.0)])
def test_pc_sampler_fused_equals_eager(device, k, corrector_steps, snr):
    sde = MixSDE(k)
    mixture = torch.randn(3, 777, device=device)
    score = _gaussian_score(0.5)
    fused = PCSampler(sde, 12, snr, corrector_steps).sample(score, mixture, seed=[4, 5, 6])
    eager = PCSampler(sde, 12, snr, corrector_steps, fused=False).sample(score, mixture, seed=[4, 5, 6])
    assert fused.shape == (3, k, 777)
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-4)
    # and the noise matters: another seed gives other samples
    other = PCSampler(sde, 12, snr, corrector_steps).sample(score, mixture, seed=[7, 8, 9])
    assert (other - fused).abs().max() > 1e-2


def test_pc_sampler_kernel_equals_reference(monkeypatch):
    require_kernel("mix_sde_update")
    sde = MixSDE(2)
    mixture = torch.randn(2, 1500)
    score = _gaussian_score(0.5)
    with_kernel = PCSampler(sde, 10).sample(score, mixture, seed=3)
    monkeypatch.setattr(ops, "_use_sampler_kernel", lambda name, device: False)
    with_reference = PCSampler(sde, 10).sample(score, mixture, seed=3)
    torch.testing.assert_close(with_kernel, with_reference, rtol=1e-5, atol=1e-5)


def test_pc_sampler_plan_matches_the_sde():
    sde = MixSDE(3, gamma=2.0)
    sampler = PCSampler(sde, 5, snr=0.4)
    plan = sampler.plan()
    assert sampler.plan() is plan  # built once
    assert [p.t for p in plan] == sampler.timesteps()
    t, dt = plan[1].t, plan[1].t - plan[2].t
    lam1, lam2 = (float(v) for v in sde.lambdas(torch.tensor(t, dtype=torch.float64)))
    assert plan[1].corrector == pytest.approx((1, 1, 2 * 0.16 * lam1, 2 * 0.16 * lam2, 0.8 * lam1 ** 0.5,
                                               0.8 * lam2 ** 0.5))
    g2dt = float(sde.g(t)) ** 2 * dt
    assert plan[1].predictor == pytest.approx((1, 1 + 2.0 * dt, g2dt, g2dt, g2dt ** 0.5, g2dt ** 0.5))


def test_randn_per_item_out_draws_the_same_noise():
    gens_a = make_generators(11, 3, torch.device("cpu"))
    gens_b = make_generators(11, 3, torch.device("cpu"))
    buf = torch.empty(3, 2, 301)
    for _ in range(2):  # the second draw continues each generator's stream in both
        want = randn_per_item((3, 2, 301), gens_a, "cpu", torch.float32)
        got = randn_per_item((3, 2, 301), gens_b, "cpu", torch.float32, out=buf)
        assert got is buf and torch.equal(got, want)
    with pytest.raises(ValueError, match="out must be"):
        randn_per_item((3, 2, 301), gens_b, "cpu", torch.float32, out=torch.empty(3, 2, 300))


def _solver(step, fused, **kw):
    # 25 reverse steps (a 25-step schedule) keep the test short; the arithmetic per step is the paper schedule's.
    sched = DDPMSchedule(25, 1e-3, 0.15)
    return GuidedSolver([GaussianPrior(0.3, sched), GaussianPrior(0.05, sched)], step=step,
                        clip=kw.pop("clip", None), n_segments=16, n_fft=64, hop_length=32, fused=fused, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("step, clip", [("hybrid", None), ("hybrid", 1.0), ("dsg", None), ("dps", None)])
def test_guided_solver_fused_equals_eager(device, step, clip):
    mixture = torch.randn(2, 900, device=device) * 0.4
    fused = _solver(step, True, clip=clip).solve(mixture, seed=5)
    eager = _solver(step, False, clip=clip).solve(mixture, seed=5)
    assert fused.steps == eager.steps
    torch.testing.assert_close(fused.sources, eager.sources, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused.residual, eager.residual, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused.loss, eager.loss, rtol=1e-4, atol=1e-4)
    assert not fused.sources.requires_grad


def test_guided_solver_kernel_equals_reference(monkeypatch):
    require_kernel("guided_update")
    mixture = torch.randn(2, 1200) * 0.4
    with_kernel = _solver("hybrid", True).solve(mixture, seed=1).sources
    monkeypatch.setattr(ops, "_use_sampler_kernel", lambda name, device: False)
    with_reference = _solver("hybrid", True).solve(mixture, seed=1).sources
    torch.testing.assert_close(with_kernel, with_reference, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_rejected_before_the_kernel():
    x = torch.randn(2, 2, 10)
    with pytest.raises(ValueError, match="x must have dtype float32, float64"):
        ops.mix_sde_update(x.half(), x, None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"shape \[batch, sources, time\]"):
        ops.mix_sde_update(x[0], x[0], None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="score must have x's shape"):
        ops.mix_sde_update(x, x[..., :9], None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="noise must have x's dtype"):
        ops.mix_sde_update(x, x, x.double(), 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="one device"):
        ops.mix_sde_update(x, x.to("meta"), None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="a_q must be finite"):
        ops.mix_sde_update(x, x, None, 1, float("nan"), 1, 1)
    with pytest.raises(TypeError, match="b_p must be a Python number"):
        ops.mix_sde_update(x, x, None, 1, 1, torch.tensor(1.0), 1)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        ops.guided_update(x.numpy(), x, x, None, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="grad must have x0's shape"):
        ops.guided_update(x, x, x[:1], None, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="eps must be positive"):
        ops.guided_update(x, x, x, None, 1, 1, 0, 1, True, 0.0)
    with pytest.raises(TypeError, match="normalise must be a bool"):
        ops.guided_update(x, x, x, None, 1, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="no_grad"):
        ops.guided_update(x, x.clone().requires_grad_(), x, None, 1, 1, 0, 1)
    with pytest.raises(TypeError, match="fused must be a bool"):
        PCSampler(MixSDE(2), fused=1)
    with pytest.raises(TypeError, match="fused must be a bool"):
        GuidedSolver([GaussianPrior(1.0)], fused="yes")


def test_non_contiguous_inputs_give_correct_results():
    x, s, z = (torch.randn(3, 5, 2).transpose(1, 2) for _ in range(3))  # [3, 2, 5], not contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(ops.mix_sde_update(x, s, z, 1, 2, 3, 4, 5, 6),
                               reference.mix_sde_update(x.contiguous(), s.contiguous(), z.contiguous(), 1, 2, 3, 4, 5, 6))
    torch.testing.assert_close(ops.guided_update(x, s, z, None, 0.5, 2, 0, 0.3, True),
                               reference.guided_update(x.contiguous(), s.contiguous(), z.contiguous(), None, 0.5, 2, 0,
                                                       0.3, True))


def test_direct_kernel_call_with_bad_input_raises_not_crashes():
    require_kernel("mix_sde_update")
    require_kernel("guided_update")
    x = torch.randn(2, 3, 8)
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.fastsep.mix_sde_update(x.transpose(1, 2), x.transpose(1, 2), None, 1, 1, 1, 1, 0, 0)
    with pytest.raises(RuntimeError, match="score must have shape"):
        torch.ops.fastsep.mix_sde_update(x, x[:1], None, 1, 1, 1, 1, 0, 0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.fastsep.mix_sde_update(x.half(), x.half(), None, 1, 1, 1, 1, 0, 0)
    with pytest.raises(RuntimeError, match="noise must be"):
        torch.ops.fastsep.guided_update(x, x, x, x.double(), 1, 1, 1, 1, True, 1e-12)
    with pytest.raises(RuntimeError, match="eps must be positive"):
        torch.ops.fastsep.guided_update(x, x, x, None, 1, 1, 1, 1, True, 0.0)


def test_opcheck():
    require_kernel("mix_sde_update")
    require_kernel("guided_update")
    x, s, z = (torch.randn(2, 3, 300) for _ in range(3))
    torch.library.opcheck(torch.ops.fastsep.mix_sde_update.default, (x, s, z, 1.0, 1.5, 0.1, 0.2, 0.3, 0.4))
    torch.library.opcheck(torch.ops.fastsep.mix_sde_update.default, (x, s, None, 1.0, 1.5, 0.1, 0.2, 0.0, 0.0))
    torch.library.opcheck(torch.ops.fastsep.guided_update.default, (x, s, z, x, 0.5, 0.9, 0.1, 0.2, True, 1e-12))
    torch.library.opcheck(torch.ops.fastsep.guided_update.default, (x, s, z, None, 0.5, 0.9, 0.0, 1.5, False, 1e-12))
