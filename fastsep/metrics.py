"""Separation metrics: SI-SDR (and its improvement), BSS Eval v4 SDR, and permutation-invariant matching.

All metrics work over the last dimension (time) and broadcast over any leading dimensions; they return one value per
signal in dB (higher is better). Everything is plain torch except the Hungarian search, which calls scipy.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Tuple

import torch
from torch import Tensor

__all__ = ["si_sdr", "si_sdr_improvement", "sdr", "pit", "pairwise", "pit_si_sdr_loss", "EXHAUSTIVE_MAX_SOURCES"]

#: Up to this many sources, :func:`pit` tries every permutation; beyond, it uses the Hungarian algorithm.
EXHAUSTIVE_MAX_SOURCES = 4


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
    # The Gram matrix is symmetric positive (semi)definite, so Cholesky suffices. (Batched LU solves also fail on
    # this CPU build of torch with more than one thread, a torch/MKL bug, which is one more reason to avoid them.)
    chol, info = torch.linalg.cholesky_ex(gram)
    if bool((info != 0).any()):
        # Singular, e.g. a silent or strictly band-limited reference: load the diagonal a little, as fast_bss_eval's
        # load_diag does; where the reference is silent the target is then zero.
        scale = acf[..., :1].unsqueeze(-1).clamp_min(torch.finfo(torch.float64).tiny)
        eye = torch.eye(taps, dtype=torch.float64, device=est.device)
        chol = torch.linalg.cholesky(gram + 1e-10 * scale * eye)
    coef = torch.cholesky_solve(xcf.unsqueeze(-1), chol)
    target_energy = (xcf.unsqueeze(-2) @ coef).squeeze(-1).squeeze(-1)  # |P est|² = bᵀ R⁻¹ b
    error_energy = (est64.pow(2).sum(-1) - target_energy).clamp_min(0.0)
    return (10 * torch.log10((target_energy + eps) / (error_energy + eps))).to(out_dtype)


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
