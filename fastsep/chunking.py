"""Separating long recordings in overlapping chunks, with overlap-add and a talker order kept across chunks.

A separator sees the mixture in windows of ``chunk`` samples that overlap by ``overlap`` samples. Neighbouring
chunks are cross-faded with complementary linear ramps over the overlap (the weights sum to one at every sample, so a
separator that acts sample by sample gives exactly its whole-signal output). Separators name their outputs in an
arbitrary order per call, so each chunk's sources are matched to the previous chunk's on the overlap by the
normalised correlation, with the Hungarian assignment, before the cross-fade.

Levels: masking separators (all of fastsep's backbones) tie each output's level and sign to the mixture, so chunks
agree without help. A separator that does not (a scale-invariant loss leaves the output gain and sign free) can make
a talker's level jump at every seam, and a sign flip cancels the cross-fade; ``match_levels=True`` rescales each
matched source by its least-squares gain onto the previous chunk's on the overlap (:func:`match_gains`). It is off
by default because the estimate is never exact (chunk edges lack context), and its small errors compound along a
long recording.

Memory: only one chunk's input and output plus one overlap are alive at a time in :func:`iter_separated`, which yields
finished stretches of output as soon as no later chunk can change them; :func:`separate_chunked` gathers those into
one ``[B, C, T]`` tensor (the only part that grows with the length).
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["chunk_starts", "match_sources", "match_gains", "join", "iter_separated", "separate_chunked"]

SeparateFn = Callable[[Tensor], Tensor]


def chunk_starts(length: int, chunk: int, overlap: int) -> List[int]:
    """Start indices of the chunks covering ``[0, length)``; the last chunk ends at ``length`` exactly.

    The last start is pulled back so every chunk is full length when ``length >= chunk`` (a short last chunk would
    give the separator little context); consecutive chunks then overlap by at least ``overlap`` samples.
    """
    if chunk <= 0 or overlap < 0 or overlap >= chunk:
        raise ValueError(f"need chunk > 0 and 0 <= overlap < chunk, got chunk={chunk}, overlap={overlap}")
    if length <= chunk:
        return [0]
    step = chunk - overlap
    starts = list(range(0, length - chunk, step))
    starts.append(length - chunk)
    return starts


def match_sources(reference: Tensor, candidate: Tensor) -> Tensor:
    """Permutation ``perm [B, C]`` such that ``candidate[b, perm[b, i]]`` is the source best matching ``reference[b, i]``.

    Both are ``[B, C, L]`` (the same stretch of signal seen by two chunks); the score is the absolute normalised
    correlation, maximised jointly over all sources by the Hungarian algorithm.
    """
    from scipy.optimize import linear_sum_assignment

    ref = reference - reference.mean(-1, keepdim=True)
    cand = candidate - candidate.mean(-1, keepdim=True)
    ref = ref / ref.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cand = cand / cand.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    score = torch.einsum("bil,bjl->bij", ref, cand).abs().double().cpu().numpy()
    perms = []
    for b in range(score.shape[0]):
        rows, cols = linear_sum_assignment(-score[b])
        perms.append(torch.as_tensor(cols[rows.argsort()], dtype=torch.long))
    return torch.stack(perms).to(candidate.device)


def match_gains(reference: Tensor, candidate: Tensor, max_gain: float = 100.0, min_energy: float = 1e-10) -> Tensor:
    """Gains ``g [B, C]`` minimising ``|reference - g·candidate|²`` per source (sign included), both ``[B, C, L]``.

    The sums are weighted by a Hann window over the overlap: its two ends are where one of the two chunks lacks
    context (the other's edge), its middle where both see the signal whole. Where either side is (near) silent there
    is nothing to match and the gain is 1; otherwise its magnitude is clipped to ``[1/max_gain, max_gain]`` so that a
    nearly silent stretch cannot blow a chunk up.
    """
    n = reference.shape[-1]
    pos = (torch.arange(n, device=reference.device, dtype=reference.dtype) + 0.5) / max(n, 1)
    window = torch.sin(torch.pi * pos) ** 2
    cross = (window * reference * candidate).sum(-1)
    energy = (window * candidate * candidate).sum(-1)
    ref_energy = (window * reference * reference).sum(-1)
    weight = float(window.sum().clamp_min(1e-12))  # turns the weighted energies into per-sample means
    gain = cross / energy.clamp_min(min_energy)
    magnitude = gain.abs().clamp(1.0 / max_gain, max_gain)
    gain = torch.where(gain < 0, -magnitude, magnitude)
    silent = (energy / weight < min_energy) | (ref_energy / weight < min_energy)
    return torch.where(silent, torch.ones_like(gain), gain)


def _reorder(est: Tensor, perm: Tensor) -> Tensor:
    return torch.gather(est, 1, perm[:, :, None].expand_as(est))


def join(tail: Tensor, est: Tensor, match_levels: bool = False) -> Tensor:
    """A new chunk's estimate ``est [B, C, L]`` joined onto the previous chunk's not-yet-final ``tail [B, C, S]``
    (``S <= L``: the samples both chunks saw, at the start of ``est``): its talkers reordered to the previous
    chunk's order, optionally brought to their gains (``match_levels``), and cross-faded over the shared samples.
    Returns the joined ``[B, C, L]``; its first ``S`` samples are the cross-fade. Used by the offline chunker here
    and by the streaming separator (:mod:`fastsep.stream_separate`), so that both join chunks identically."""
    shared = tail.shape[-1]
    if shared > est.shape[-1]:
        raise ValueError(f"join: the tail ({shared} samples) is longer than the new chunk ({est.shape[-1]})")
    est = _reorder(est, match_sources(tail, est[..., :shared]))
    if match_levels:
        est = est * match_gains(tail, est[..., :shared]).unsqueeze(-1)
    # Ramps exclude 0 and 1 so that neither chunk's edge sample (where it lacks context) is taken alone.
    ramp = torch.linspace(0.0, 1.0, shared + 2, device=est.device, dtype=est.dtype)[1:-1]
    est = est.clone()
    est[..., :shared] = ramp * est[..., :shared] + (1.0 - ramp) * tail
    return est


def iter_separated(
    separate: SeparateFn,
    mixture: Tensor,
    chunk: int,
    overlap: int,
    progress: bool = False,
    match_levels: bool = False,
) -> Iterator[Tuple[int, Tensor]]:
    """Yield ``(start, piece [B, C, n])`` of the separated signal in order, covering ``[0, T)`` once.

    ``separate`` maps ``[B, L] -> [B, C, L]``. ``mixture`` is ``[B, T]``. ``match_levels``: bring each chunk's
    sources onto the previous chunk's gain and sign (see the module's notes).
    """
    if mixture.dim() != 2:
        raise ValueError(f"iter_separated: mixture must be [B, T], got shape {tuple(mixture.shape)}")
    length = mixture.shape[-1]
    starts = chunk_starts(length, chunk, overlap)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(starts), desc="chunks", unit="chunk", disable=not progress or len(starts) == 1)
    tail: Optional[Tensor] = None  # previous chunk's output from the next chunk's start onwards (not yet final)
    tail_start = 0
    try:
        for i, start in enumerate(starts):
            end = min(start + chunk, length)
            est = separate(mixture[:, start:end])
            if est.dim() != 3 or est.shape[0] != mixture.shape[0] or est.shape[-1] != end - start:
                raise ValueError(
                    f"iter_separated: separator returned shape {tuple(est.shape)} for input "
                    f"{tuple(mixture[:, start:end].shape)}; expected [B, C, {end - start}]"
                )
            if tail is not None:
                est = join(tail, est, match_levels)
            nxt = starts[i + 1] if i + 1 < len(starts) else end
            yield start, est[..., : nxt - start]
            tail = est[..., nxt - start:] if i + 1 < len(starts) else None
            tail_start = nxt
            bar.update(1)
    finally:
        bar.close()


def separate_chunked(
    separate: SeparateFn,
    mixture: Tensor,
    chunk: int,
    overlap: int,
    progress: bool = False,
    match_levels: bool = False,
) -> Tensor:
    """Separate ``mixture [B, T]`` chunk by chunk with overlap-add; returns ``[B, C, T]``."""
    out: Optional[Tensor] = None
    length = mixture.shape[-1]
    for start, piece in iter_separated(separate, mixture, chunk, overlap, progress, match_levels):
        if out is None:
            out = piece.new_empty(piece.shape[0], piece.shape[1], length)
        out[..., start:start + piece.shape[-1]] = piece
    assert out is not None
    return out
