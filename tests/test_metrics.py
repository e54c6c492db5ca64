"""fastsep.metrics against independent formulas, brute force over permutations, and fast_bss_eval when installed."""
import itertools
import math
import os
import sys

import numpy as np
import pytest
import torch

from fastsep import metrics
from fastsep.metrics import (MetricUnavailable, bss_eval, estoi, expand_metrics, mean_confidence_interval, pesq, pit,
                             pit_si_sdr_loss, sdr, segment_match_margins, segment_permuted, separation_scores, si_sdr,
                             si_sdr_improvement)


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


# ---------------------------------------------------------------------------------------------- BSS Eval SDR/SIR/SAR
@pytest.mark.parametrize("backend", ["torch", "fast_bss_eval"])
def test_bss_eval_matches_mir_eval(backend):
    mir_eval = pytest.importorskip("mir_eval", reason="mir_eval not installed (optional)")
    if backend == "fast_bss_eval":
        pytest.importorskip("fast_bss_eval", reason="fast_bss_eval not installed (optional)")
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(3, 2500, dtype=torch.float64, generator=g)
    # interference from the other sources, a short filter and noise: SIR and SAR both finite and different
    est = ref + 0.4 * ref[[1, 2, 0]] + 0.3 * torch.randn(3, 2500, dtype=torch.float64, generator=g)
    est[:, 3:] += 0.5 * ref[:, :-3]
    want = mir_eval.separation.bss_eval_sources(ref.numpy(), est.numpy(), compute_permutation=False)[:3]
    got = bss_eval(est[None], ref[None], backend=backend)  # a leading batch dimension is kept
    for name, g_, w in zip(("sdr", "sir", "sar"), got, want):
        assert g_.shape == (1, 3)
        np.testing.assert_allclose(g_[0].numpy(), w, rtol=1e-6, err_msg=name)
    # its SDR is this module's single-reference SDR
    torch.testing.assert_close(got[0][0], sdr(est, ref), rtol=1e-6, atol=1e-6)


def test_bss_eval_backend_argument():
    ref = torch.randn(2, 500)
    with pytest.raises(ValueError, match="backend"):
        bss_eval(ref, ref, backend="museval")
    with pytest.raises(ValueError, match="sources, time"):
        bss_eval(ref[0], ref[0])


# --------------------------------------------------------------------------------------------------- PESQ and ESTOI
def _speech(sample_rate):
    from fastsep.audio import load
    from fastsep.commands.demo import ASSETS

    wave = load(os.path.join(ASSETS, "talker1.wav"), sample_rate=sample_rate)[0]
    return wave[: 4 * sample_rate].double()


def _degraded(clean):
    g = torch.Generator().manual_seed(11)
    noise = torch.randn(clean.shape, dtype=torch.float64, generator=g)
    return clean + 0.3 * clean.std() * noise  # ~10 dB SNR white noise


def _mos_lqo(raw, wide):
    """ITU-T P.862.1 (narrow-band) / P.862.2 (wide-band) mapping of a raw PESQ score to MOS-LQO."""
    a, b = (1.3669, 3.8224) if wide else (1.4945, 4.6607)
    return 0.999 + 4.0 / (1.0 + math.exp(-a * raw + b))


@pytest.mark.parametrize("rate,wide", [(8000, False), (16000, True)])
def test_pesq_identical_signals_score_the_maximum(rate, wide):
    pytest.importorskip("pesq", reason="pesq not installed (optional)")
    clean = _speech(rate)
    got = pesq(clean, clean, rate)  # auto: wide-band at 16 kHz, narrow-band at 8 kHz
    # An undistorted signal gets P.862's maximum raw score, 4.5, through the band's MOS-LQO mapping.
    assert float(got) == pytest.approx(_mos_lqo(4.5, wide), abs=2e-3)


@pytest.mark.parametrize("rate,mode", [(8000, "nb"), (16000, "wb"), (16000, "nb")])
def test_pesq_degraded_pair_is_the_packages_value(rate, mode):
    pesq_pkg = pytest.importorskip("pesq", reason="pesq not installed (optional)")
    clean = _speech(rate)
    noisy = _degraded(clean)
    want = pesq_pkg.pesq(rate, clean.numpy(), noisy.numpy(), mode)
    got = pesq(torch.stack([noisy, clean]).float(), torch.stack([clean, clean]).float(), rate, mode=mode)
    assert got.shape == (2,) and got.dtype == torch.float32
    assert float(got[0]) == pytest.approx(want, abs=1e-3)
    assert float(got[0]) < float(got[1]) - 1.0  # noise costs well over one MOS point


def test_pesq_unavailable_is_an_error_not_a_score(monkeypatch):
    pytest.importorskip("pesq", reason="pesq not installed (optional)")
    x = _speech(8000)
    with pytest.raises(MetricUnavailable, match="wide-band PESQ needs 16000"):
        pesq(x, x, 8000, mode="wb")
    with pytest.raises(MetricUnavailable, match="22050"):
        pesq(torch.zeros(1000), torch.zeros(1000), 22050)
    monkeypatch.setitem(sys.modules, "pesq", None)  # as if not installed
    with pytest.raises(MetricUnavailable, match="pip install pesq"):
        pesq(x, x, 8000)


def test_pesq_silence_is_nan():
    pytest.importorskip("pesq", reason="pesq not installed (optional)")
    x = _speech(8000)
    got = pesq(torch.stack([x, torch.zeros_like(x)]), torch.stack([x, torch.zeros_like(x)]), 8000)
    assert math.isfinite(float(got[0])) and math.isnan(float(got[1]))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_estoi_against_pystoi(rate):
    pystoi = pytest.importorskip("pystoi", reason="pystoi not installed (optional)")
    clean = _speech(rate)
    noisy = _degraded(clean)
    got = estoi(torch.stack([clean, noisy]), torch.stack([clean, clean]), rate)
    assert float(got[0]) == pytest.approx(1.0, abs=1e-6)  # identical: every normalised segment correlates fully
    assert float(got[1]) == pytest.approx(pystoi.stoi(clean.numpy(), noisy.numpy(), rate, extended=True), abs=1e-9)
    assert float(got[1]) < 0.95


def test_estoi_too_short_is_nan_not_pystoi_placeholder(monkeypatch):
    pytest.importorskip("pystoi", reason="pystoi not installed (optional)")
    x = _speech(8000)[:2000]  # 0.25 s: fewer frames than one 384 ms ESTOI window
    assert math.isnan(float(estoi(x, x, 8000)))
    monkeypatch.setitem(sys.modules, "pystoi", None)
    with pytest.raises(MetricUnavailable, match="pip install pystoi"):
        estoi(x, x, 8000)


# ------------------------------------------------------------------------------------------- scores for evaluation
def test_expand_metrics():
    assert expand_metrics(["si_sdr"], 8000) == ["si_sdri", "si_sdr"]
    assert expand_metrics(["sdr", "pesq", "estoi"], 8000) == ["sdr", "sir", "sar", "pesq_nb", "estoi"]
    assert expand_metrics(["pesq"], 16000) == ["pesq_wb"]
    assert "pesq_wb" not in expand_metrics(["all"], 8000) and "pesq_nb" not in expand_metrics(["all"], 16000)
    with pytest.raises(ValueError, match="unknown metric 'mos'"):
        expand_metrics(["mos"], 8000)
    assert expand_metrics(["swaps"], 8000) == ["si_sdri_seg"]


def test_segment_permutation_undoes_a_talker_swap_and_costs_nothing_without_one():
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(2, 8000, dtype=torch.float64, generator=g)
    mix = ref.sum(0)
    est = ref + 0.3 * torch.randn(2, 8000, dtype=torch.float64, generator=g)
    # no swap: matching per segment picks the whole-signal match everywhere
    torch.testing.assert_close(segment_permuted(est, ref, 1000), est)
    # the talkers handed over between the outputs at sample 3000 (on a segment boundary), and at 5500 (inside one)
    swapped = est.clone()
    swapped[:, 3000:] = est[[1, 0], 3000:]
    torch.testing.assert_close(segment_permuted(swapped, ref, 1000), est)
    at_half_second = est.clone()  # the column matches per 0.5 s: 4000 samples at 8 kHz
    at_half_second[:, 4000:] = est[[1, 0], 4000:]
    scores = separation_scores(at_half_second, ref, mix, 8000, ["si_sdri", "si_sdri_seg"])
    torch.testing.assert_close(scores["si_sdri_seg"], si_sdr_improvement(est, ref, mix))
    assert float((scores["si_sdri_seg"] - scores["si_sdri"]).min()) > 3.0
    inside = est.clone()
    inside[:, 5500:] = est[[1, 0], 5500:]
    repaired = segment_permuted(inside, ref, 1000)
    torch.testing.assert_close(repaired[:, :5000], est[:, :5000])
    torch.testing.assert_close(repaired[:, 6000:], est[:, 6000:])
    # SI-SDR does not see a track's sign: one output negated throughout (a separator trained from scratch did this)
    # and swapped at 4000 must score as the swap alone, not cancel where the pieces of its two outputs meet
    negated = at_half_second.clone()
    negated[0] = -negated[0]
    flipped = separation_scores(negated, ref, mix, 8000, ["si_sdri", "si_sdri_seg"])
    torch.testing.assert_close(flipped["si_sdri"], scores["si_sdri"])
    torch.testing.assert_close(flipped["si_sdri_seg"], si_sdr_improvement(est, ref, mix))
    # ...while a sign that flips partway through a track still costs
    half_flipped = est.clone()
    half_flipped[0, 4000:] = -half_flipped[0, 4000:]
    assert float(si_sdr(segment_permuted(half_flipped, ref, 1000)[0], ref[0])) < -10
    # a last piece under half a segment joins the one before instead of being matched on its own few samples
    assert segment_permuted(est[:, :2300], ref[:, :2300], 1000).shape == (2, 2300)
    with pytest.raises(ValueError, match="segment"):
        segment_permuted(est, ref, 0)


def test_segment_margins_turn_negative_where_the_talkers_are_swapped():
    g = torch.Generator().manual_seed(6)
    ref = torch.randn(2, 8000, dtype=torch.float64, generator=g)
    est = ref + 0.3 * torch.randn(2, 8000, dtype=torch.float64, generator=g)
    swapped = est.clone()
    swapped[:, 5000:] = est[[1, 0], 5000:]  # the last three of eight segments hand the talkers over
    margins = segment_match_margins(swapped, ref, 1000)
    assert margins.shape == (8,)
    assert bool((margins[:5] > 5).all()) and bool((margins[5:] < -5).all())
    # the whole signal's match is the one the segments mostly agree with, whichever order the outputs are in
    torch.testing.assert_close(segment_match_margins(swapped[[1, 0]], ref, 1000), margins)
    three = torch.cat([ref, ref[:1] * 0.5 + ref[1:]], dim=0)
    assert segment_match_margins(three + 0.1, three, 2000).shape == (4,)
    with pytest.raises(ValueError, match="C >= 2"):
        segment_match_margins(est[:1], ref[:1], 1000)


def test_piece_permutation_scores_follow_each_piece_s_own_order():
    from fastsep.metrics import piece_permutation_scores

    g = torch.Generator().manual_seed(7)
    ref = torch.randn(3, 6000, dtype=torch.float64, generator=g)
    est = ref[[2, 0, 1]] + 0.1 * torch.randn(3, 6000, dtype=torch.float64, generator=g)
    est[:, 3000:] = ref[:, 3000:]  # the second half in the references' own order
    totals, perms = piece_permutation_scores(est, ref, [(0, 3000), (3000, 6000)])
    assert totals.shape == (2, 6) and perms.shape == (6, 3)
    best = perms[totals.argmax(dim=1)]  # per piece: the reference each estimate holds
    assert best[0].tolist() == [2, 0, 1] and best[1].tolist() == [0, 1, 2]
    # each total is the mean SI-SDR of the pairs its assignment makes
    p = int(totals[0].argmax())
    manual = torch.stack([si_sdr(est[c, :3000], ref[int(perms[p, c]), :3000]) for c in range(3)]).mean()
    torch.testing.assert_close(totals[0, p], manual)


def test_separation_scores_solve_the_permutation_once_for_every_metric():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(2, 4000, dtype=torch.float64, generator=g)
    est = ref + 0.2 * torch.randn(2, 4000, dtype=torch.float64, generator=g)
    mix = ref.sum(0)
    cols = ["si_sdri", "si_sdr", "sdr", "sir", "sar"]
    ordered = separation_scores(est, ref, mix, 8000, cols)
    swapped = separation_scores(est[[1, 0]], ref, mix, 8000, cols)
    for c in cols:
        torch.testing.assert_close(swapped[c], ordered[c])
    torch.testing.assert_close(ordered["si_sdr"], si_sdr(est, ref))
    torch.testing.assert_close(ordered["sir"], bss_eval(est, ref)[1])


def test_separation_scores_report_uncomputable_metrics_as_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)
    ref = torch.randn(2, 4000, dtype=torch.float64)
    out = separation_scores(ref, ref, ref.sum(0), 22050, ["si_sdr", "pesq_nb", "pesq_wb"])
    assert out["pesq_nb"] is None and out["pesq_wb"] is None and out["si_sdr"] is not None


# ----------------------------------------------------------------------------------------------- confidence interval
def test_confidence_interval_matches_direct_computation():
    from scipy import stats

    values = [4.1, 5.3, 6.0, 3.2, 5.5, 4.8, 7.1]
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    got = mean_confidence_interval(values)
    assert got == pytest.approx((mean, lo, hi), rel=1e-12)
    # NaN (unscorable) entries are left out rather than counted
    assert mean_confidence_interval(values + [float("nan")]) == pytest.approx(got, rel=1e-12)
    assert mean_confidence_interval([2.0]) == (2.0, None, None)
    assert mean_confidence_interval([]) == (None, None, None)


def test_confidence_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 4000
    hits = 0
    for _ in range(trials):
        _, lo, hi = mean_confidence_interval(rng.normal(3.0, 2.0, size=8))
        hits += lo <= 3.0 <= hi
    assert abs(hits / trials - 0.95) < 0.012  # ~3.5 binomial standard errors


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
