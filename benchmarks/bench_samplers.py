"""The samplers' fused per-step updates against the eager PyTorch updates they replace, in the same run, and a
whole sampling step of each method (DiffSep's predictor-corrector sampler, the prior-guided solver) with and without
the fused update.

    python -m pytest benchmarks/bench_samplers.py                 # CPU (and CUDA where present)
    FASTSEP_BENCH_FULL=1 python -m pytest benchmarks/bench_samplers.py   # batch 1 and 8, 4 s and 30 s

Sizes follow the product: 8 kHz, 4 s (T = 32000), K = 2 sources. The "reference" variant of each group is the eager
update the samplers ran before the fused op (PCSampler / GuidedSolver with fused=False); the ratio is eager / fused.
Effective bandwidth counts each input read once and the output written once.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from bench_timing import synced
from fastsep import ops
from fastsep.sampling.diffsep import MixSDE, PCSampler
from fastsep.sampling.priors import DDPMSchedule, GaussianPrior, GuidedSolver, NetworkPrior, per_source_normalised_step

SR, SECONDS, K = 8000, 4, 2
FULL = os.environ.get("FASTSEP_BENCH_FULL") == "1"
CASES = [(b, s) for b in (1, 8) for s in (4, 30)] if FULL else [(1, SECONDS)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
VARIANTS = ["reference", "fused"]


def _skip_without_kernel(name, device):
    if not ops._use_sampler_kernel(name, torch.device(device)):
        pytest.skip(f"no compiled fastsep::{name} kernel for {device}: the fused variant would be the reference")


def _tensors(n, batch, seconds, device):
    g = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(batch, K, SR * seconds, device=device, generator=g) for _ in range(n)]


# ------------------------------------------------------------------------------------------ the updates alone
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_diffsep_corrector_update(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernel("mix_sde_update", device)
    sde, snr, t = MixSDE(K), 0.5, 0.6
    x, score, z = _tensors(3, batch, seconds, device)
    if variant == "fused":
        coefs = PCSampler(sde, 30, snr).plan()[12].corrector

        def fn(x, score, z):
            return ops.mix_sde_update(x, score, z, *coefs)
    else:
        def fn(x, score, z):  # PCSampler's eager corrector update
            return x + 2.0 * snr ** 2 * sde.cov_power(score, t, 1.0) + 2.0 * snr * sde.cov_power(z, t, 0.5)
    with torch.no_grad():
        record(benchmark, f"diffsep corrector {device} B={batch} {seconds}s", variant, synced(device, fn), x, score, z,
               bytes_moved=4 * x.numel() * 4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_diffsep_predictor_update(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernel("mix_sde_update", device)
    sde, t, dt = MixSDE(K), 0.6, (1.0 - 0.03) / 29
    x, score, z = _tensors(3, batch, seconds, device)
    if variant == "fused":
        coefs = PCSampler(sde, 30).plan()[12].predictor

        def fn(x, score, z):
            return ops.mix_sde_update(x, score, z, *coefs)
    else:
        def fn(x, score, z):  # PCSampler's eager predictor update
            g2dt = float(sde.g(t)) ** 2 * dt
            x_mean = x - sde.drift(x) * dt + g2dt * score
            return x_mean + math.sqrt(g2dt) * z
    with torch.no_grad():
        record(benchmark, f"diffsep predictor {device} B={batch} {seconds}s", variant, synced(device, fn), x, score, z,
               bytes_moved=4 * x.numel() * 4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("rule", ["hybrid", "dps"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_guided_update(benchmark, record, device, batch, seconds, rule, variant):
    _skip_without_kernel("guided_update", device)
    sched = DDPMSchedule.paper()
    t = 100
    x0, x, grad, z = _tensors(4, batch, seconds, device)
    cx0, cxt = float(sched.coef_x0[t]), float(sched.coef_xt[t])
    std = float(sched.posterior_variance[t]) ** 0.5
    radius = 0.01 * math.sqrt(x.shape[-1]) if rule == "hybrid" else 1.5
    if variant == "fused":
        def fn(x0, x, grad, z):
            return ops.guided_update(x0, x, grad, z, cx0, cxt, std, radius, rule == "hybrid")
    else:
        consts = sched.tensors(device)
        r = torch.tensor(radius, device=device)

        def fn(x0, x, grad, z):  # GuidedSolver's eager update
            x_prev = consts["coef_x0"][t] * x0 + consts["coef_xt"][t] * x
            x_prev = x_prev.add_(z, alpha=std)
            if rule == "dps":
                return x_prev.sub_(grad, alpha=radius)
            return per_source_normalised_step(x_prev, grad, r.expand(x.shape[0]))
    with torch.no_grad():
        record(benchmark, f"guided update {rule} {device} B={batch} {seconds}s", variant, synced(device, fn), x0, x,
               grad, z, bytes_moved=5 * x.numel() * 4)


# -------------------------------------------------------------------------------------- whole sampling steps
def _score_net(device):
    from fastsep.models.ncsnpp import NCSNpp

    torch.manual_seed(0)
    return NCSNpp.small(K, SR).to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("score", ["linear", "ncsnpp-small"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_diffsep_sampling_steps(benchmark, record, device, score, variant):
    """Two predictor-corrector steps (four score calls) of 4 s at K = 2, batch 1: with the small NCSN++ (what serving
    runs) and with a linear score that costs nothing (the sampler's own work)."""
    _skip_without_kernel("mix_sde_update", device)
    mixture = torch.randn(1, SR * SECONDS, device=device)
    if score == "linear":
        def score_fn(x, t, mix):
            return mix.unsqueeze(1) / K - x
    else:
        score_fn = _score_net(device)
    sampler = PCSampler(MixSDE(K), n_steps=2, fused=variant == "fused")
    with torch.no_grad():
        record(benchmark, f"diffsep 2 PC steps ({score}) {device} B=1 {SECONDS}s", variant,
               synced(device, lambda: sampler.sample(score_fn, mixture, seed=0)), rounds=3 if score != "linear" else 7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prior", ["gaussian", "tf-unet-small"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_guided_solver_steps(benchmark, record, device, prior, variant):
    """Two reverse steps of the prior-guided solver (network, x0 estimates, loss, its gradient through the priors,
    update) on 4 s at K = 2, batch 1: with the small time-frequency attention U-Net prior and with exact Gaussian
    priors (no network: the solver's own work)."""
    _skip_without_kernel("guided_update", device)
    mixture = torch.randn(1, SR * SECONDS, device=device) * 0.2
    if prior == "gaussian":
        priors = [GaussianPrior(0.05), GaussianPrior(0.02)]
    else:
        from fastsep.models.tf_attention_unet import TFAttentionUNet

        torch.manual_seed(0)
        net = NetworkPrior(TFAttentionUNet.small(SR).to(device).eval())
        priors = [net, net]
    for p in priors:
        if isinstance(p, torch.nn.Module):
            p.to(device)
    solver = GuidedSolver(priors, init_step=1, start_step=1, fused=variant == "fused")
    record(benchmark, f"guided 2 steps ({prior}) {device} B=1 {SECONDS}s", variant,
           synced(device, lambda: solver.solve(mixture, seed=0)), rounds=3 if prior != "gaussian" else 7)
