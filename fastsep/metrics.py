"""Separation metrics: SI-SDR (and its improvement), BSS Eval v4 SDR/SIR/SAR, PESQ, ESTOI, permutation-invariant
matching, and the t confidence interval used to report them.

All metrics work over the last dimension (time) and broadcast over any leading dimensions; they return one value per
signal (dB for the SDR family, MOS-LQO for PESQ, 0-1 for ESTOI; higher is better). SI-SDR and SDR are plain torch;
:func:`bss_eval` uses fast_bss_eval when it is installed and its own torch solver otherwise; :func:`pesq` and
:func:`estoi` wrap the optional ``pesq`` and ``pystoi`` packages. A metric that cannot be computed at all (package
missing, sample rate unsupported) raises :class:`MetricUnavailable`; one signal it cannot score (no speech found) gets
NaN. Neither is ever reported as a zero score.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["si_sdr", "si_sdr_improvement", "sdr", "bss_eval", "pesq", "estoi", "pit", "pairwise", "pit_si_sdr_loss",
           "separation_scores", "metric_unavailable_reason", "mean_confidence_interval", "MetricUnavailable",
           "METRIC_COLUMNS", "expand_metrics", "EXHAUSTIVE_MAX_SOURCES", "segment_permuted", "segment_match_margins",
           "segment_bounds", "swap_segment", "SWAP_SEGMENT_SECONDS", "piece_permutation_scores"]

#: Up to this many sources, :func:`pit` tries every permutation; beyond, it uses the Hungarian algorithm.
EXHAUSTIVE_MAX_SOURCES = 4

#: Segment length of the ``si_sdri_seg`` diagnostic (:func:`segment_permuted`): short enough to catch a talker swap
#: in a 4 s mixture, long enough (4000 samples at 8 kHz) for each segment's match to be read from the speech.
SWAP_SEGMENT_SECONDS = 0.5


def _check_pair(fn: str, est, ref) -> None:
    for name, t in (("est", est), ("ref", ref)):
        if not isinstance(t, Tensor):
            raise TypeError(f"fastsep.metrics.{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"fastsep.metrics.{fn}: {name} must be a real floating-point tensor, got {t.dtype}")
        if t.dim() < 1 or t.shape[-1] < 1:
            raise ValueError(f"fastsep.metrics.{fn}: {name} must have a non-empty time (last) dimension, "
                             f"got shape {tuple(t.shape)}")
    if est.shape != ref.shape:
        raise ValueError(f"fastsep.metrics.{fn}: est and ref must have the same shape, got {tuple(est.shape)} "
                         f"and {tuple(ref.shape)}")


def si_sdr(est: Tensor, ref: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB (Le Roux et al., 2019) over the last dimension.

    ``alpha = <est, ref> / |ref|²``, ``target = alpha·ref``: ``10·log10(|target|² / |est − target|²)``; ``eps`` keeps
    silent signals finite. With ``zero_mean`` both signals are first centred. Differentiable.

    Args:
        est, ref: real tensors of the same shape ``[..., T]``.

    Returns:
        ``[...]`` one value per signal.
    """
    _check_pair("si_sdr", est, ref)
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr_improvement(est: Tensor, ref: Tensor, mix: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """SI-SDRi: ``si_sdr(est, ref) − si_sdr(mix, ref)``.

    ``mix`` is either the same shape as ``ref`` or lacks its source dimension (``[B, T]`` for ``ref [B, C, T]``),
    in which case it is compared with every source.
    """
    _check_pair("si_sdr_improvement", est, ref)
    if not isinstance(mix, Tensor):
        raise TypeError(f"fastsep.metrics.si_sdr_improvement: mix must be a torch.Tensor, got {type(mix).__name__}")
    if mix.shape != ref.shape:
        if ref.dim() >= 2 and mix.shape == ref.shape[:-2] + ref.shape[-1:]:
            mix = mix.unsqueeze(-2).expand_as(ref)
        else:
            raise ValueError("fastsep.metrics.si_sdr_improvement: mix must have ref's shape "
                             f"{tuple(ref.shape)} or that shape without the source dimension, got {tuple(mix.shape)}")
    return si_sdr(est, ref, zero_mean, eps) - si_sdr(mix, ref, zero_mean, eps)


def _projected_energy(gram: Tensor, vec: Tensor) -> Tensor:
    """``|P est|² = bᵀ R⁻¹ b`` for Gram matrices ``R [..., n, n]`` of a basis and ``b [..., n]`` = basis·est.

    The Gram matrix is symmetric positive (semi)definite, so Cholesky suffices. (Batched LU solves also fail on
    this CPU build of torch with more than one thread, a torch/MKL bug, which is one more reason to avoid them.)
    """
    chol, info = torch.linalg.cholesky_ex(gram)
    if bool((info != 0).any()):
        # Singular, e.g. a silent or strictly band-limited reference: load the diagonal a little, as fast_bss_eval's
        # load_diag does; where the reference is silent the target is then zero.
        scale = gram.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None].clamp_min(torch.finfo(torch.float64).tiny)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        chol = torch.linalg.cholesky(gram + 1e-10 * scale * eye)
    coef = torch.cholesky_solve(vec.unsqueeze(-1), chol)
    return (vec.unsqueeze(-2) @ coef).squeeze(-1).squeeze(-1)


def sdr(est: Tensor, ref: Tensor, filter_length: int = 512, eps: float = 1e-8) -> Tensor:
    """SDR of BSS Eval v4 (``bss_eval_sources`` / museval / fast_bss_eval convention) over the last dimension.

    The target is the projection of ``est`` onto the span of ``ref`` delayed by 0 … ``filter_length − 1`` samples
    (a time-invariant distortion filter of ``filter_length`` taps, 512 by default), computed over the whole signal:
    ``10·log10(|target|² / |est − target|²)``. Only the matching reference enters the SDR (the other sources only
    split the error into interference and artefacts, which SDR does not need), so ``est[..., i]`` is compared with
    ``ref[..., i]``: match permutations first with :func:`pit` if needed. With ``filter_length=1`` this is SI-SDR
    without mean removal.

    Solved in float64 through the Toeplitz normal equations (as fast_bss_eval does); a singular system, e.g. a
    silent reference, gets a tiny diagonal loading. Differentiable, but meant for evaluation.
    """
    _check_pair("sdr", est, ref)
    if isinstance(filter_length, bool) or not isinstance(filter_length, int) or filter_length < 1:
        raise ValueError(f"fastsep.metrics.sdr: filter_length must be a positive int, got {filter_length!r}")
    out_dtype = est.dtype
    est64, ref64 = est.double(), ref.double()
    length = est.shape[-1]
    taps = min(filter_length, length)
    # Linear (not circular) correlations through a zero-padded FFT.
    n_fft = 1 << math.ceil(math.log2(2 * length))
    ref_f = torch.fft.rfft(ref64, n_fft)
    est_f = torch.fft.rfft(est64, n_fft)
    acf = torch.fft.irfft(ref_f.abs().pow(2), n_fft)[..., :taps]  # r[k] = sum_t ref[t] ref[t+k]
    xcf = torch.fft.irfft(ref_f.conj() * est_f, n_fft)[..., :taps]  # b[k] = sum_t ref[t] est[t+k]
    idx = torch.arange(taps, device=est.device)
    gram = acf[..., (idx[:, None] - idx[None, :]).abs()]  # symmetric Toeplitz [..., taps, taps]
    target_energy = _projected_energy(gram, xcf)
    error_energy = (est64.pow(2).sum(-1) - target_energy).clamp_min(0.0)
    return (10 * torch.log10((target_energy + eps) / (error_energy + eps))).to(out_dtype)


class MetricUnavailable(RuntimeError):
    """A metric that cannot be computed here at all: its package is not installed or the sample rate is unsupported.

    Callers report the metric as absent (None, an empty cell, a missing column), never as a score.
    """


def _check_sources_last2(fn: str, est, ref) -> None:
    _check_pair(fn, est, ref)
    if est.dim() < 2:
        raise ValueError(f"fastsep.metrics.{fn}: est and ref must be [..., sources, time], got shape "
                         f"{tuple(est.shape)}")


def _bss_eval_torch(est: Tensor, ref: Tensor, filter_length: int, eps: float = 1e-8) -> Tuple[Tensor, Tensor, Tensor]:
    """SDR, SIR, SAR of matched ``est, ref [B, C, T]`` by projections onto delayed copies of the references.

    With ``P_j`` the projection onto ``ref_j`` delayed by 0..L-1 and ``P`` the projection onto all references so
    delayed (mir_eval's ``_bss_decomp_mtifilt``): target = ``P_j est``, interference = ``P est - P_j est``,
    artefacts = ``est - P est``. Only energies are needed, and because ``P_j``'s range lies inside ``P``'s they are
    ``bᵀR⁻¹b`` forms of the Gram matrices, so no signal is ever built.
    """
    batch, n_src, length = est.shape
    taps = min(filter_length, length)
    est64, ref64 = est.double(), ref.double()
    n_fft = 1 << math.ceil(math.log2(2 * length))  # >= 2T: circular lags do not wrap onto linear ones
    ref_f = torch.fft.rfft(ref64, n_fft)
    est_f = torch.fft.rfft(est64, n_fft)
    # cc[b, i, j, k] = sum_t ref_i[t] ref_j[t + k]; negative lags sit at n_fft + k.
    cc = torch.fft.irfft(ref_f.conj().unsqueeze(2) * ref_f.unsqueeze(1), n_fft)
    # xc[b, i, j, a] = sum_t ref_i[t] est_j[t + a]: ref_i delayed by a, against estimate j.
    xc = torch.fft.irfft(ref_f.conj().unsqueeze(2) * est_f.unsqueeze(1), n_fft)[..., :taps]
    idx = torch.arange(taps, device=est.device)
    lag = (idx[:, None] - idx[None, :]) % n_fft  # <ref_i delayed a, ref_j delayed b> = cc[i, j, a - b]
    gram_all = cc[..., lag].permute(0, 1, 3, 2, 4).reshape(batch, n_src * taps, n_src * taps)
    vec_all = xc.permute(0, 2, 1, 3).reshape(batch, n_src, n_src * taps)  # [b, est j, (ref i, delay a)]
    all_energy = _projected_energy(gram_all.unsqueeze(1), vec_all)  # [B, C]
    own = torch.arange(n_src, device=est.device)
    gram_own = cc[:, own, own][..., lag]  # [B, C, taps, taps]
    target_energy = _projected_energy(gram_own, xc[:, own, own])
    est_energy = est64.pow(2).sum(-1)
    interference = (all_energy - target_energy).clamp_min(0.0)
    artefacts = (est_energy - all_energy).clamp_min(0.0)
    db = lambda num, den: 10 * torch.log10((num + eps) / (den + eps))  # noqa: E731
    return (db(target_energy, interference + artefacts), db(target_energy, interference),
            db(all_energy, artefacts))


def bss_eval(est: Tensor, ref: Tensor, filter_length: int = 512, backend: str = "auto"
             ) -> Tuple[Tensor, Tensor, Tensor]:
    """BSS Eval v4 ``(sdr, sir, sar)`` in dB of matched estimates: ``est[..., i]`` against ``ref[..., i]``.

    The distortion filter has ``filter_length`` taps and is fitted over the whole signal (museval's v4 /
    fast_bss_eval / mir_eval ``bss_eval_sources`` convention). Match permutations first (:func:`pit`): this function
    does not reorder. ``backend``: ``"fast_bss_eval"``, ``"torch"`` (this module's own solver, always available), or
    ``"auto"`` (fast_bss_eval when installed, else torch). Both agree with mir_eval to ~1e-6 dB (tests).

    Args:
        est, ref: ``[..., C, T]`` real tensors of the same shape.

    Returns:
        three ``[..., C]`` tensors in ``est``'s dtype.
    """
    _check_sources_last2("bss_eval", est, ref)
    if isinstance(filter_length, bool) or not isinstance(filter_length, int) or filter_length < 1:
        raise ValueError(f"fastsep.metrics.bss_eval: filter_length must be a positive int, got {filter_length!r}")
    if backend not in ("auto", "torch", "fast_bss_eval"):
        raise ValueError(f"fastsep.metrics.bss_eval: backend must be auto, torch or fast_bss_eval, got {backend!r}")
    lead = est.shape[:-2]
    flat_est = est.reshape(-1, *est.shape[-2:])
    flat_ref = ref.reshape(-1, *ref.shape[-2:])
    if backend != "torch":
        try:
            import fast_bss_eval
        except ImportError:
            if backend == "fast_bss_eval":
                raise MetricUnavailable("bss_eval: fast_bss_eval is not installed (pip install fast_bss_eval)")
            fast_bss_eval = None
        if fast_bss_eval is not None:
            # Its numpy backend breaks under numpy 2 (0.1.4), and its torch backend's batched LU solves fail on
            # this CPU torch with more than one thread; so torch tensors, one thread for the call.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                out = fast_bss_eval.bss_eval_sources(flat_ref.double().cpu(), flat_est.double().cpu(),
                                                     filter_length=filter_length, compute_permutation=False)
            finally:
                torch.set_num_threads(threads)
            return tuple(t.to(device=est.device, dtype=est.dtype).reshape(*lead, est.shape[-2]) for t in out[:3])
    out = _bss_eval_torch(flat_est, flat_ref, filter_length)
    return tuple(t.to(est.dtype).reshape(*lead, est.shape[-2]) for t in out)


# ---------------------------------------------------------------------------------------------------------------- PIT
Metric = Callable[[Tensor, Tensor], Tensor]


def _check_sources(fn: str, est, ref) -> None:
    _check_pair(fn, est, ref)
    if est.dim() != 3:
        raise ValueError(f"fastsep.metrics.{fn}: est and ref must be [batch, sources, time] (3-D), "
                         f"got shape {tuple(est.shape)}")
    if est.shape[1] < 1:
        raise ValueError(f"fastsep.metrics.{fn}: need at least one source, got shape {tuple(est.shape)}")


def pairwise(est: Tensor, ref: Tensor, metric: Metric = si_sdr) -> Tensor:
    """``M[b, i, j] = metric(est[b, j], ref[b, i])`` for ``est, ref [B, C, T]``: reference i against estimate j."""
    _check_sources("pairwise", est, ref)
    n_src = est.shape[1]
    grid = (est.shape[0], n_src, n_src, est.shape[-1])
    return metric(est.unsqueeze(1).expand(grid), ref.unsqueeze(2).expand(grid))


def _best_perm(scores: Tensor) -> Tensor:
    """``perm [B, C]`` maximising ``sum_i scores[b, i, perm[b, i]]``."""
    batch, n_src, _ = scores.shape
    if n_src <= EXHAUSTIVE_MAX_SOURCES:
        perms = torch.tensor(list(itertools.permutations(range(n_src))), device=scores.device)  # [P, C]
        rows = torch.arange(n_src, device=scores.device)
        totals = scores[:, rows, perms].sum(-1)  # [B, P]
        return perms[totals.argmax(dim=-1)]
    from scipy.optimize import linear_sum_assignment

    cost = scores.detach().double().cpu().numpy()
    out = torch.empty(batch, n_src, dtype=torch.long)
    for b in range(batch):
        rows, cols = linear_sum_assignment(cost[b], maximize=True)
        out[b, torch.as_tensor(rows)] = torch.as_tensor(cols)
    return out.to(scores.device)


def pit(est: Tensor, ref: Tensor, metric: Metric = si_sdr) -> Tuple[Tensor, Tensor]:
    """Permutation-invariant matching of estimates to references.

    Finds, per example, the assignment maximising the mean of ``metric`` (higher must be better; it must accept
    ``[B, C, C, T]`` pairs and reduce the last dimension) over matched pairs: by trying every permutation up to
    :data:`EXHAUSTIVE_MAX_SOURCES` sources, by the Hungarian algorithm (scipy's ``linear_sum_assignment``) beyond.

    Args:
        est, ref: ``[B, C, T]``.

    Returns:
        ``(est_reordered, perm)`` with ``perm [B, C]`` int64, ``perm[b, i]`` the estimate matched to reference i,
        and ``est_reordered[b, i] = est[b, perm[b, i]]`` (differentiable with respect to ``est``).
    """
    _check_sources("pit", est, ref)
    with torch.no_grad():
        perm = _best_perm(pairwise(est, ref, metric))
    reordered = torch.gather(est, 1, perm.unsqueeze(-1).expand(-1, -1, est.shape[-1]))
    return reordered, perm


def swap_segment(sample_rate: int) -> int:
    """Samples per segment of the swap diagnostics at ``sample_rate`` (:data:`SWAP_SEGMENT_SECONDS`)."""
    return max(1, int(round(SWAP_SEGMENT_SECONDS * sample_rate)))


def segment_bounds(length: int, segment: int, fn: str = "segment_bounds") -> List[Tuple[int, int]]:
    """``(start, end)`` of the ``segment``-sample pieces of ``length`` samples that the swap diagnostics match
    separately; a last piece shorter than half a segment joins the one before (too little speech to match alone)."""
    if not isinstance(segment, int) or segment < 1:
        raise ValueError(f"fastsep.metrics.{fn}: segment must be a positive int, got {segment!r}")
    starts = list(range(0, length, segment))
    if len(starts) > 1 and length - starts[-1] < segment // 2:
        starts.pop()
    return list(zip(starts, starts[1:] + [length]))


def segment_permuted(est: Tensor, ref: Tensor, segment: int) -> Tensor:
    """``est [C, T]`` with its tracks matched to ``ref [C, T]`` afresh in every ``segment`` samples (:func:`pit` on
    each segment; a last piece shorter than half a segment joins the one before), then joined.

    An *oracle* diagnostic, not a separation: a separator that hands one talker from one output to the other
    partway through (a talker swap) is scored by the whole-signal match as if half its output were wrong, and
    matched per segment as if it were right. ``si_sdri_seg - si_sdri`` is what swaps cost.

    SI-SDR does not see an estimate's sign, so a separator may give a track out negated, always; joined to a piece
    of another track it would cancel what it should add. Each track is therefore first turned to the sign of its
    whole-signal match (its inner product with the reference it is matched to over the whole signal): a track that
    is negated throughout is scored as it is by SI-SDR, a sign that flips partway through still costs.
    """
    _check_pair("segment_permuted", est, ref)
    if est.dim() != 2:
        raise ValueError(f"fastsep.metrics.segment_permuted: est and ref [C, T] expected, got {tuple(est.shape)}")
    bounds = segment_bounds(est.shape[-1], segment, "segment_permuted")
    matched, perm = pit(est[None], ref[None])
    signs = torch.where((matched[0] * ref).sum(-1) < 0, -1.0, 1.0).to(est.dtype)  # per reference
    est = est.clone()
    est[perm[0]] = est[perm[0]] * signs[:, None]
    return torch.cat([pit(est[None, :, a:b], ref[None, :, a:b])[0][0] for a, b in bounds], dim=-1)


def piece_permutation_scores(est: Tensor, ref: Tensor, bounds: Sequence[Tuple[int, int]]) -> Tuple[Tensor, Tensor]:
    """How well every assignment of estimates to references fits each piece ``(start, end)`` of ``est, ref [C, T]``:
    ``(totals [K, P], perms [P, C])``, ``perms[p, c]`` the reference estimate c is given by assignment p and
    ``totals[k, p]`` the mean SI-SDR (dB) over the talkers of piece k under it. What the swap diagnostics and the
    tracker's piece labels both compare."""
    n_src = est.shape[0]
    perms = torch.tensor(list(itertools.permutations(range(n_src))))
    rows = torch.arange(n_src)
    if len({b - a for a, b in bounds}) == 1:  # equal pieces (the tracker's, per training item): one batched call
        scores = pairwise(torch.stack([est[:, a:b] for a, b in bounds]),
                          torch.stack([ref[:, a:b] for a, b in bounds]))  # [K, ref, est]
        return scores[:, perms, rows].mean(-1), perms
    totals = []
    for a, b in bounds:
        scores = pairwise(est[None, :, a:b], ref[None, :, a:b])[0]  # [ref, est]
        totals.append(scores[perms, rows].mean(-1))  # [P]
    return torch.stack(totals), perms


def segment_match_margins(est: Tensor, ref: Tensor, segment: int) -> Tensor:
    """Per ``segment`` samples of ``est, ref [C, T]``: how much better (mean SI-SDR over the talkers, dB) the
    whole signal's match of estimates to references fits that segment than the best other match does. Positive
    where the segment agrees with the whole signal, negative where the talkers are swapped against it; segments as
    in :func:`segment_permuted`. Returns ``[K]``."""
    _check_pair("segment_match_margins", est, ref)
    if est.dim() != 2 or est.shape[0] < 2:
        raise ValueError(f"fastsep.metrics.segment_match_margins: est and ref [C >= 2, T] expected, got "
                         f"{tuple(est.shape)}")
    totals, perms = piece_permutation_scores(est, ref, segment_bounds(est.shape[-1], segment,
                                                                      "segment_match_margins"))
    whole = pit(est[None], ref[None])[1][0]  # whole[r]: the estimate matched to reference r
    is_whole = (perms[:, whole] == torch.arange(est.shape[0])).all(dim=1)
    return totals[:, is_whole].max(dim=1).values - totals[:, ~is_whole].max(dim=1).values


def pit_si_sdr_loss(est: Tensor, ref: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Negative mean SI-SDR (dB) under the best permutation, a differentiable scalar training loss.

    Args:
        est, ref: ``[B, C, T]``.
    """
    _check_sources("pit_si_sdr_loss", est, ref)
    scores = pairwise(est, ref, lambda e, r: si_sdr(e, r, zero_mean, eps))  # [B, C(ref), C(est)]
    with torch.no_grad():
        perm = _best_perm(scores)
    matched = torch.gather(scores, 2, perm.unsqueeze(-1)).squeeze(-1)
    return -matched.mean()


# ------------------------------------------------------------------------------------------------ perceptual metrics
#: PESQ's mode for each sample rate the ITU-T P.862 code accepts: wide-band (P.862.2) needs 16 kHz, narrow-band
#: (P.862.1) is the only mode at 8 kHz.
PESQ_MODE_BY_RATE = {16000: "wb", 8000: "nb"}


def _per_signal(fn: str, est: Tensor, ref: Tensor, score: Callable[[np.ndarray, np.ndarray], float]) -> Tensor:
    """Apply a numpy scorer ``score(ref, est)`` to each signal of ``[..., T]`` tensors; NaN where it returned None."""
    _check_pair(fn, est, ref)
    flat_est = est.detach().reshape(-1, est.shape[-1]).double().cpu().numpy()
    flat_ref = ref.detach().reshape(-1, ref.shape[-1]).double().cpu().numpy()
    values = [score(r, e) for r, e in zip(flat_ref, flat_est)]
    out = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
    return out.reshape(est.shape[:-1]).to(est.dtype)


def pesq(est: Tensor, ref: Tensor, sample_rate: int, mode: str = "auto") -> Tensor:
    """PESQ (MOS-LQO) of each signal, from the ``pesq`` package (ITU-T P.862 reference code).

    ``mode``: ``"wb"`` (wide-band, 16 kHz only), ``"nb"`` (narrow-band, 8 or 16 kHz) or ``"auto"`` (wide-band at
    16 kHz, narrow-band at 8 kHz). Scores from the two modes are on different scales and must not be mixed. A signal
    in which P.862 finds no speech gets NaN.

    Raises:
        MetricUnavailable: ``pesq`` is not installed, or the rate/mode pair is not one P.862 defines.
    """
    reason = _pesq_unavailable(sample_rate, mode)
    if reason:
        raise MetricUnavailable(f"pesq: {reason}")
    import pesq as pesq_pkg

    band = PESQ_MODE_BY_RATE[sample_rate] if mode == "auto" else mode

    def score(r: np.ndarray, e: np.ndarray) -> Optional[float]:
        if not np.any(r) or not np.any(e):
            return None  # the package would divide by the zero peak before finding no speech
        try:
            return pesq_pkg.pesq(sample_rate, r, e, band)
        except pesq_pkg.NoUtterancesError:  # silence: P.862 has nothing to score
            return None

    return _per_signal("pesq", est, ref, score)


def _pesq_unavailable(sample_rate: int, mode: str) -> Optional[str]:
    if mode not in ("auto", "wb", "nb"):
        raise ValueError(f"fastsep.metrics.pesq: mode must be auto, wb or nb, got {mode!r}")
    try:
        import pesq as _  # noqa: F401
    except ImportError:
        return "the pesq package is not installed (pip install pesq)"
    if mode == "auto" and sample_rate not in PESQ_MODE_BY_RATE:
        return f"PESQ is defined at 8000 (narrow-band) and 16000 Hz (wide-band), not {sample_rate} Hz"
    if mode == "wb" and sample_rate != 16000:
        return f"wide-band PESQ needs 16000 Hz, not {sample_rate} Hz"
    if mode == "nb" and sample_rate not in (8000, 16000):
        return f"narrow-band PESQ needs 8000 or 16000 Hz, not {sample_rate} Hz"
    return None


def estoi(est: Tensor, ref: Tensor, sample_rate: int) -> Tensor:
    """Extended STOI (Jensen & Taal, 2016) of each signal, from the ``pystoi`` package (any rate: it resamples to
    10 kHz). A signal with too little speech for ESTOI's 384 ms windows gets NaN where pystoi would return 1e-5.

    Raises:
        MetricUnavailable: ``pystoi`` is not installed.
    """
    reason = _estoi_unavailable(sample_rate)
    if reason:
        raise MetricUnavailable(f"estoi: {reason}")
    import warnings

    from pystoi import stoi

    def score(r: np.ndarray, e: np.ndarray) -> Optional[float]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = stoi(r, e, sample_rate, extended=True)
        # pystoi's stand-in for "cannot score" is a warning and 1e-5, which would read as a (terrible) score.
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            return None
        return value

    return _per_signal("estoi", est, ref, score)


def _estoi_unavailable(sample_rate: int) -> Optional[str]:
    try:
        import pystoi as _  # noqa: F401
    except ImportError:
        return "the pystoi package is not installed (pip install pystoi)"
    if not isinstance(sample_rate, int) or sample_rate < 2000:
        return f"ESTOI needs a sample rate of at least 2000 Hz (its bands reach 4.3 kHz), got {sample_rate!r}"
    return None


# ----------------------------------------------------------------------------------------------- evaluation helpers
#: Every per-source column :func:`separation_scores` can produce, in table order.
METRIC_COLUMNS = ("si_sdri", "si_sdr", "sdr", "sir", "sar", "pesq_wb", "pesq_nb", "estoi", "si_sdri_seg",
                  "speaker_sim", "speaker_id")
#: Names accepted by :func:`expand_metrics` besides the columns themselves: each selects a family.
METRIC_GROUPS = {"si_sdr": ("si_sdri", "si_sdr"), "sdr": ("sdr", "sir", "sar"), "bss_eval": ("sdr", "sir", "sar"),
                 "swaps": ("si_sdri_seg",), "speaker": ("speaker_sim", "speaker_id")}
_SPEAKER_ENCODER = {"model": None}


def use_speaker_encoder(encoder) -> None:
    """The speaker encoder the ``speaker`` metrics embed with (a model with ``forward([N, T]) -> [N, D]`` unit
    vectors at the evaluation's rate, e.g. :class:`fastsep.models.voice_encoder.GE2EVoiceEncoder`), or None."""
    _SPEAKER_ENCODER["model"] = None if encoder is None else encoder.eval()


@torch.no_grad()
def speaker_scores(matched: Tensor, ref: Tensor) -> Tuple[Tensor, Tensor]:
    """Per source: the cosine between the speaker embeddings of its matched estimate and of its reference
    (``speaker_sim``), and 1.0 where the estimate sounds more like its own talker than like any other talker of the
    mixture, else 0.0 (``speaker_id``): whether a listener that knows the voices hears the right talker."""
    enc = _SPEAKER_ENCODER["model"]
    e = enc(matched.float())
    r = enc(ref.float())
    cos = (e @ r.T).double()  # [estimate, talker]
    own = torch.diagonal(cos)
    others = cos.masked_fill(torch.eye(cos.shape[0], dtype=torch.bool), -math.inf).max(dim=1).values
    return own, (own > others).double()


def expand_metrics(names: Sequence[str], sample_rate: int) -> List[str]:
    """Columns, in table order, for metric names such as ``si_sdr, sdr, pesq, estoi``.

    ``si_sdr`` gives SI-SDR and SI-SDRi, ``sdr`` (or ``bss_eval``) SDR, SIR and SAR, ``pesq`` the PESQ band of
    ``sample_rate`` (``pesq_wb`` at 16 kHz, ``pesq_nb`` otherwise: at an unsupported rate it is then reported absent),
    ``swaps`` the talker-swap diagnostic ``si_sdri_seg`` (SI-SDRi with the talkers matched per
    :data:`SWAP_SEGMENT_SECONDS`: :func:`segment_permuted`), ``speaker`` the speaker-identity columns
    ``speaker_sim`` and ``speaker_id`` (:func:`speaker_scores`; need :func:`use_speaker_encoder`), ``all``
    everything. Raises ValueError on an unknown name.
    """
    wanted = set()
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name == "all":
            wanted |= set(METRIC_COLUMNS) - {"pesq_nb" if sample_rate == 16000 else "pesq_wb"}
        elif name == "pesq":
            wanted.add("pesq_wb" if sample_rate == 16000 else "pesq_nb")
        elif name in METRIC_GROUPS:
            wanted |= set(METRIC_GROUPS[name])
        elif name in METRIC_COLUMNS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown metric {raw.strip()!r}: choose from si_sdr, sdr, sir, sar, pesq, pesq_wb, "
                             "pesq_nb, estoi, swaps, speaker, all")
    return [c for c in METRIC_COLUMNS if c in wanted]


def metric_unavailable_reason(column: str, sample_rate: int) -> Optional[str]:
    """Why ``column`` cannot be computed at ``sample_rate`` here, or None when it can."""
    if column == "pesq_wb":
        return _pesq_unavailable(sample_rate, "wb")
    if column == "pesq_nb":
        return _pesq_unavailable(sample_rate, "nb")
    if column == "estoi":
        return _estoi_unavailable(sample_rate)
    if column in METRIC_GROUPS["speaker"]:
        enc = _SPEAKER_ENCODER["model"]
        if enc is None:
            return "needs a speaker encoder (fastsep eval --speaker-encoder DIR, from fastsep import-encoder)"
        rate = (getattr(enc, "config", None) or {}).get("sample_rate")
        if rate is not None and int(rate) != int(sample_rate):
            return f"the speaker encoder takes {rate} Hz audio, the evaluation runs at {sample_rate} Hz"
        return None
    if column not in METRIC_COLUMNS:
        raise ValueError(f"unknown metric column {column!r}")
    return None


def separation_scores(est: Tensor, ref: Tensor, mix: Tensor, sample_rate: int,
                      columns: Sequence[str] = ("si_sdri", "si_sdr")) -> Dict[str, Optional[Tensor]]:
    """Per-source scores of one separated mixture, permutation-solved.

    Estimates are matched to references once, by the permutation maximising SI-SDR (:func:`pit`), and every metric
    is computed on that matching, so all columns describe the same pairs. A column that cannot be computed here
    (:func:`metric_unavailable_reason`) maps to None.

    Args:
        est, ref: ``[C, T]``; mix: ``[T]``.

    Returns:
        ``{column: [C] float64 tensor or None}``, in ``ref``'s source order.
    """
    _check_pair("separation_scores", est, ref)
    if est.dim() != 2 or mix.shape != est.shape[-1:]:
        raise ValueError(f"fastsep.metrics.separation_scores: est, ref [C, T] and mix [T] expected, got "
                         f"{tuple(est.shape)}, {tuple(ref.shape)}, {tuple(mix.shape)}")
    est, ref, mix = est.double(), ref.double(), mix.double()
    matched = pit(est[None], ref[None])[0][0]
    out: Dict[str, Optional[Tensor]] = {}
    bss = speaker = None
    for col in columns:
        if metric_unavailable_reason(col, sample_rate):
            out[col] = None
        elif col == "si_sdr":
            out[col] = si_sdr(matched, ref)
        elif col == "si_sdri":
            out[col] = si_sdr_improvement(matched, ref, mix)
        elif col in ("sdr", "sir", "sar"):
            if bss is None:
                bss = dict(zip(("sdr", "sir", "sar"), bss_eval(matched, ref)))
            out[col] = bss[col]
        elif col in ("pesq_wb", "pesq_nb"):
            out[col] = pesq(matched, ref, sample_rate, mode=col[-2:])
        elif col == "estoi":
            out[col] = estoi(matched, ref, sample_rate)
        elif col == "si_sdri_seg":
            out[col] = si_sdr_improvement(segment_permuted(est, ref, swap_segment(sample_rate)), ref, mix)
        elif col in ("speaker_sim", "speaker_id"):
            if speaker is None:
                speaker = dict(zip(("speaker_sim", "speaker_id"), speaker_scores(matched, ref)))
            out[col] = speaker[col]
    return out


def mean_confidence_interval(values: Sequence[float], level: float = 0.95
                             ) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """``(mean, low, high)`` of a Student-t confidence interval for the mean of ``values``.

    ``mean ± t_{(1+level)/2, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation (n - 1 in the
    denominator): the usual interval when each value is one mixture's score and mixtures are independent draws.
    NaN values (unscorable signals) are dropped first. With no value everything is None; with one value the interval
    is None (no spread to estimate it from).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return None, None, None
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, None, None
    from scipy import stats

    half = float(stats.t.ppf((1 + level) / 2, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    return mean, mean - half, mean + half
