"""fastsep.metrics against independent formulas, brute force over permutations, and fast_bss_eval when installed."""
import itertools
import math

import numpy as np
import pytest
import torch

from fastsep import metrics
from fastsep.metrics import pit, pit_si_sdr_loss, sdr, si_sdr, si_sdr_improvement


def _orthogonal_noise(ref: torch.Tensor) -> torch.Tensor:
    """Zero-mean noise orthogonal to (zero-mean) ref along the last dim."""
    n = torch.randn_like(ref)
    n = n - n.mean(-1, keepdim=True)
    return n - (n * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref


# ------------------------------------------------------------------------------------------------------------ SI-SDR
def test_si_sdr_closed_form():
    ref = torch.randn(3, 500, dtype=torch.float64)
    ref = ref - ref.mean(-1, keepdim=True)
    noise = _orthogonal_noise(ref)
    scale = torch.tensor([0.5, 2.0, -3.0], dtype=torch.float64).unsqueeze(-1)
    est = scale * ref + noise
    want = 10 * torch.log10(scale.squeeze(-1) ** 2 * (ref ** 2).sum(-1) / (noise ** 2).sum(-1))
    torch.testing.assert_close(si_sdr(est, ref, eps=0.0), want)


def test_si_sdr_matches_numpy_formula_any_leading_dims():
    est = torch.randn(2, 3, 4, 257, dtype=torch.float64)
    ref = torch.randn(2, 3, 4, 257, dtype=torch.float64)
    e, r = est.numpy(), ref.numpy()
    e = e - e.mean(-1, keepdims=True)
    r = r - r.mean(-1, keepdims=True)
    proj = (e * r).sum(-1, keepdims=True) / (r * r).sum(-1, keepdims=True) * r
    want = 10 * np.log10((proj ** 2).sum(-1) / ((e - proj) ** 2).sum(-1))
    got = si_sdr(est, ref, eps=0.0)
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_si_sdr_scale_and_offset():
    ref = torch.randn(4, 300, dtype=torch.float64)
    est = ref + 0.3 * torch.randn_like(ref)
    base = si_sdr(est, ref)
    torch.testing.assert_close(si_sdr(7.0 * est, ref), base)
    torch.testing.assert_close(si_sdr(est + 5.0, ref - 2.0), base)  # zero_mean removes offsets
    assert (si_sdr(est + 5.0, ref, zero_mean=False) < base - 1.0).all()


def test_si_sdr_is_float32_and_finite_on_silence():
    out = si_sdr(torch.zeros(2, 100), torch.zeros(2, 100))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_si_sdr_improvement():
    ref = torch.randn(2, 3, 400, dtype=torch.float64)
    mix = ref.sum(1)
    est = ref + 0.1 * torch.randn_like(ref)
    want = torch.stack([si_sdr(est[:, i], ref[:, i]) - si_sdr(mix, ref[:, i]) for i in range(3)], 1)
    torch.testing.assert_close(si_sdr_improvement(est, ref, mix), want)
    torch.testing.assert_close(si_sdr_improvement(est, ref, mix.unsqueeze(1).expand_as(ref)), want)
    assert (want > 10).all()  # estimates near the references improve a lot on a 3-talker mixture


# --------------------------------------------------------------------------------------------------------------- SDR
def _sdr_bruteforce(est: np.ndarray, ref: np.ndarray, taps: int) -> float:
    """Least-squares projection of est onto explicitly built delayed copies of ref (zero-padded tail)."""
    n = len(ref)
    basis = np.zeros((n + taps - 1, taps))
    for k in range(taps):
        basis[k:k + n, k] = ref
    target_vec = np.concatenate([est, np.zeros(taps - 1)])
    coef, *_ = np.linalg.lstsq(basis, target_vec, rcond=None)
    target = basis @ coef
    return 10 * math.log10((target ** 2).sum() / ((target_vec - target) ** 2).sum())


@pytest.mark.parametrize("taps", [1, 5, 32])
def test_sdr_matches_explicit_projection(taps):
    ref = torch.randn(3, 300, dtype=torch.float64)
    est = torch.randn(3, 300, dtype=torch.float64) + 2 * ref
    got = sdr(est, ref, filter_length=taps, eps=0.0)
    want = [_sdr_bruteforce(est[i].numpy(), ref[i].numpy(), taps) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-7)


def test_sdr_filter_length_one_is_si_sdr_without_mean_removal():
    ref = torch.randn(2, 2, 500, dtype=torch.float64) + 0.5
    est = ref + torch.randn_like(ref)
    torch.testing.assert_close(sdr(est, ref, filter_length=1), si_sdr(est, ref, zero_mean=False))


def test_sdr_ignores_short_filters():
    # est = ref filtered by a 20-tap FIR: inside the 512-tap distortion model, so SDR is essentially infinite,
    # while SI-SDR (one tap) sees the filter as error.
    # The reference ends in silence so the filtered copy's tail fits in the signal (BSS Eval counts a cut tail as
    # error).
    ref = torch.randn(1, 2000, dtype=torch.float64)
    ref[:, -50:] = 0
    fir = torch.randn(20, dtype=torch.float64)
    est = torch.nn.functional.conv1d(torch.nn.functional.pad(ref, (19, 0)).unsqueeze(0),
                                     fir.flip(0).view(1, 1, -1)).squeeze(0)
    assert sdr(est, ref).item() > 80
    assert si_sdr(est, ref).item() < 20


def test_sdr_matches_fast_bss_eval():
    fbe = pytest.importorskip("fast_bss_eval", reason="fast_bss_eval not installed (optional)")
    ref = torch.randn(2, 3, 4000, dtype=torch.float64)
    est = ref + 0.5 * torch.randn_like(ref) + 0.2 * ref[:, [1, 2, 0]]
    # fast_bss_eval uses batched LU solves, which fail on this CPU torch build with more than one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = fbe.bss_eval_sources(ref, est, compute_permutation=False)[0]
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(sdr(est, ref), want, rtol=1e-6, atol=1e-6)


def test_sdr_matches_mir_eval():
    mir_eval = pytest.importorskip("mir_eval", reason="mir_eval not installed (optional)")
    ref = torch.randn(2, 2000, dtype=torch.float64)
    est = ref + 0.5 * torch.randn_like(ref)
    want = mir_eval.separation.bss_eval_sources(ref.numpy(), est.numpy(), compute_permutation=False)[0]
    np.testing.assert_allclose(sdr(est, ref).numpy(), want, rtol=1e-5)


# --------------------------------------------------------------------------------------------------------------- PIT
def _brute_pit(est, ref):
    """Best permutation by scoring every permutation directly (no pairwise matrix)."""
    best = []
    for b in range(est.shape[0]):
        scores = {p: si_sdr(est[b, list(p)], ref[b]).mean().item()
                  for p in itertools.permutations(range(est.shape[1]))}
        best.append(max(scores, key=scores.get))
    return torch.tensor(best)


@pytest.mark.parametrize("n_src", [2, 3, 4, 5, 6])
def test_pit_matches_brute_force(n_src):
    ref = torch.randn(3, n_src, 200, dtype=torch.float64)
    # Mixed-up, noisy estimates so the best permutation is not trivially the identity.
    mixing = torch.eye(n_src, dtype=torch.float64)[torch.randperm(n_src)] + 0.3 * torch.rand(n_src, n_src,
                                                                                              dtype=torch.float64)
    est = torch.einsum("ij,bjt->bit", mixing, ref) + 0.2 * torch.randn_like(ref)
    reordered, perm = pit(est, ref)
    assert perm.dtype == torch.int64 and perm.shape == (3, n_src)
    torch.testing.assert_close(perm, _brute_pit(est, ref))
    for b in range(3):
        for i in range(n_src):
            torch.testing.assert_close(reordered[b, i], est[b, perm[b, i]])


@pytest.mark.parametrize("n_src", [3, 7])
def test_pit_perm_convention(n_src):
    ref = torch.randn(2, n_src, 300)
    shuffle = torch.stack([torch.randperm(n_src) for _ in range(2)])
    est = torch.stack([ref[b, shuffle[b]] for b in range(2)]) + 0.01 * torch.randn(2, n_src, 300)
    reordered, perm = pit(est, ref)
    # est[b, j] = ref[b, shuffle[b, j]], so the estimate matched to reference i is j = shuffle^-1[i].
    torch.testing.assert_close(perm, torch.argsort(shuffle, dim=1))
    torch.testing.assert_close(reordered, ref, atol=0.05, rtol=0)


def test_pit_custom_metric():
    ref = torch.randn(2, 3, 100, dtype=torch.float64)
    est = ref[:, [2, 0, 1]] * 3.0
    neg_mse = lambda e, r: -((e - r) ** 2).mean(-1)  # noqa: E731
    _, perm = pit(est, ref, metric=neg_mse)
    torch.testing.assert_close(perm, torch.tensor([[1, 2, 0], [1, 2, 0]]))


@pytest.mark.parametrize("n_src", [2, 3, 5])
def test_pit_loss_is_negative_best_mean_si_sdr_and_differentiable(n_src):
    ref = torch.randn(2, n_src, 160, dtype=torch.float64)
    est = (ref[:, torch.randperm(n_src)] + 0.5 * torch.randn_like(ref)).requires_grad_(True)
    loss = pit_si_sdr_loss(est, ref)
    best = _brute_pit(est.detach(), ref)
    want = -torch.stack([si_sdr(est.detach()[b, best[b]], ref[b]).mean() for b in range(2)]).mean()
    torch.testing.assert_close(loss.detach(), want)
    loss.backward()
    assert est.grad is not None and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    # The gradient is that of the matched SI-SDR: a step along it lowers the loss.
    with torch.no_grad():
        assert pit_si_sdr_loss(est - 1e-2 * est.grad / est.grad.norm(), ref) < loss


def test_sdr_silent_reference_is_finite():
    ref = torch.zeros(2, 300, dtype=torch.float64)
    out = sdr(torch.randn(2, 300, dtype=torch.float64), ref)
    assert torch.isfinite(out).all() and (out < -50).all()


def test_exhaustive_limit_is_four():
    assert metrics.EXHAUSTIVE_MAX_SOURCES == 4


# --------------------------------------------------------------------------------------------------------- bad input
def test_bad_inputs():
    a = torch.randn(2, 3, 50)
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(a, a[:, :2])
    with pytest.raises(TypeError, match="torch.Tensor"):
        si_sdr(a.numpy(), a)
    with pytest.raises(TypeError, match="floating-point"):
        si_sdr(torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="3-D"):
        pit(a[0], a[0])
    with pytest.raises(ValueError, match="3-D"):
        pit_si_sdr_loss(a[0, 0], a[0, 0])
    with pytest.raises(ValueError, match="same shape"):
        pit(a, torch.randn(2, 4, 50))
    with pytest.raises(ValueError, match="filter_length"):
        sdr(a, a, filter_length=0)
    with pytest.raises(ValueError, match="without the source dimension"):
        si_sdr_improvement(a, a, torch.randn(3, 50))
    with pytest.raises(ValueError, match="non-empty"):
        si_sdr(torch.zeros(2, 0), torch.zeros(2, 0))
