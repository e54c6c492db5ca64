"""Keeping each talker on one output: undo a separator's talker swaps with a talker embedding (issue 9).

A separator whose receptive field is shorter than a recording's pauses may hand a talker from one output to the
other where the talker it had been following falls silent (``fastsep eval --metrics swaps`` measures what that
costs). This module cuts the outputs into pieces (0.5 s, as the swap diagnostic), embeds every output's piece with a
:class:`~fastsep.models.talker_embedding.TalkerEmbedding`, and re-orders the outputs piece by piece so that each
output's pieces sound like one talker:

- each piece's embedding is weighted by how active that output is there (an output's quiet pieces hold the other
  talker's leakage, not its own talker), and the weighted mean over all pieces of all outputs is removed (what every
  piece shares: the recording channel, the language);
- the outputs' order may change at a few piece boundaries only (``max_changes``, 2 by default: a separator hands
  a talker over where one falls silent, not every half second); of those hypotheses, the one whose outputs' pieces
  are most alike wins, each change costing ``threshold`` (the separator is right most of the time, and a wrong
  re-ordering costs as much as a swap). Judging the pieces between two changes together is what makes this work:
  one 0.5 s piece of separated speech says little about who is speaking;
- the outputs are re-ordered with short crossfades at the changes.
"""
from __future__ import annotations

import itertools
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .metrics import segment_bounds

__all__ = ["piece_embeddings", "activity_weights", "choose_orders", "apply_orders", "track_talkers"]


def piece_embeddings(embedder, est: Tensor, bounds: List[Tuple[int, int]]) -> Tensor:
    """``est [C, T]`` -> ``[C, K, D]``: each output's piece embedded (pieces of equal length in one batch)."""
    n_src = est.shape[0]
    by_length = {}
    for k, (a, b) in enumerate(bounds):
        by_length.setdefault(b - a, []).append(k)
    out: Optional[Tensor] = None
    for length, idx in by_length.items():
        pieces = torch.stack([est[:, bounds[k][0]:bounds[k][1]] for k in idx], dim=1)  # [C, n, L]
        emb = embedder(pieces.reshape(-1, length)).reshape(n_src, len(idx), -1)
        if out is None:
            out = emb.new_zeros(n_src, len(bounds), emb.shape[-1])
        out[:, idx] = emb
    return out


def activity_weights(est: Tensor, bounds: List[Tuple[int, int]], floor_db: float = 12.0,
                     width_db: float = 2.0) -> Tensor:
    """``[C, K]`` in (0, 1): ~1 where an output's piece is within ``floor_db`` of that output's loudest piece, ~0
    well below it (a logistic of ``width_db``)."""
    energy = torch.stack([est[:, a:b].pow(2).mean(-1) for a, b in bounds], dim=1)  # [C, K]
    db = 10.0 * torch.log10(energy + 1e-10)
    rel = db - db.max(dim=1, keepdim=True).values
    return torch.sigmoid((rel + floor_db) / width_db)


def _coherence(weighted: Tensor, orders: Tensor) -> Tensor:
    """Sum over outputs of the squared norm of the output's summed (weighted, centred) piece embeddings: how alike
    the pieces that ``orders [K, C]`` puts on each output are (the pieces' own norms add a constant)."""
    n_pieces = orders.shape[0]
    ordered = weighted[orders, torch.arange(n_pieces, device=weighted.device)[:, None]]  # [K, C, D]
    return ordered.sum(0).pow(2).sum()


def choose_orders(emb: Tensor, weights: Tensor, threshold: float = 0.0, max_changes: int = 2) -> Tensor:
    """Per piece, the order of the outputs that keeps each talker on one output.

    The outputs' order may change at no more than ``max_changes`` piece boundaries (a separator hands a talker over
    where one falls silent, a few times a recording at most); among those hypotheses the one whose outputs' pieces
    are most alike wins (:func:`_coherence`), each change costing ``threshold``. Pieces between changes are judged
    together, which is far more reliable than judging each piece alone.

    Args:
        emb: ``[C, K, D]`` piece embeddings; weights: ``[C, K]``.
        threshold: the coherence a change must add to be made (0: any gain).
        max_changes: boundaries at which the order may change.

    Returns:
        ``[K, C]`` long: piece k's output j takes the separator's output ``orders[k, j]``.
    """
    n_src, n_pieces, _ = emb.shape
    centred = emb - (weights[..., None] * emb).sum((0, 1)) / weights.sum().clamp_min(1e-8)
    weighted = weights[..., None] * centred  # [C, K, D]
    perms = torch.tensor(list(itertools.permutations(range(n_src))), device=emb.device)  # [P, C]
    best_orders = perms[0].repeat(n_pieces, 1)
    best = float(_coherence(weighted, best_orders))
    for n_changes in range(1, min(max_changes, n_pieces - 1) + 1):
        for cuts in itertools.combinations(range(1, n_pieces), n_changes):
            edges = (0,) + cuts + (n_pieces,)
            # each run after the first takes another order than the run before it
            for run_perms in itertools.product(range(len(perms)), repeat=n_changes):
                chain = (0,) + run_perms
                if any(a == b for a, b in zip(chain, chain[1:])):
                    continue
                orders = torch.cat([perms[p].repeat(b - a, 1) for p, a, b in zip(chain, edges, edges[1:])])
                score = float(_coherence(weighted, orders)) - threshold * n_changes
                if score > best:
                    best, best_orders = score, orders
    return best_orders


def apply_orders(est: Tensor, orders: Tensor, bounds: List[Tuple[int, int]], fade: int = 80) -> Tensor:
    """``est [C, T]`` re-ordered piece by piece (``orders [K, C]``), with ``fade``-sample linear crossfades centred
    on each piece boundary where the order changes."""
    n_src, length = est.shape
    gains = est.new_zeros(n_src, n_src, length)  # [out j, source output i, t]
    for k, (a, b) in enumerate(bounds):
        gains[torch.arange(n_src), orders[k], a:b] = 1.0
    if fade > 1:
        kernel = est.new_full((1, 1, fade), 1.0 / fade)
        flat = gains.reshape(-1, 1, length)
        padded = torch.nn.functional.pad(flat, (fade // 2, fade - 1 - fade // 2), mode="replicate")
        gains = torch.nn.functional.conv1d(padded, kernel).reshape(n_src, n_src, length)
    return torch.einsum("jit,it->jt", gains, est)


@torch.no_grad()
def track_talkers(embedder, est: Tensor, sample_rate: int, segment_seconds: float = 0.5, threshold: float = 0.0,
                  fade_seconds: float = 0.01, max_changes: int = 2) -> Tuple[Tensor, Tensor]:
    """Re-order ``est [C, T]`` (or ``[B, C, T]``) piece by piece so that each output keeps one talker.

    ``max_changes`` limits the order changes per call, which suits a few seconds of audio: the Separator hands a
    TrackedBackbone chunks of 8 s at most; a longer recording given whole gets no more changes than a chunk would.

    Returns the re-ordered estimates (same shape) and the orders chosen (``[K, C]`` or ``[B, K, C]``).
    """
    if est.dim() == 3:
        results = [track_talkers(embedder, e, sample_rate, segment_seconds, threshold, fade_seconds, max_changes)
                   for e in est]
        return torch.stack([r[0] for r in results]), torch.stack([r[1] for r in results])
    if est.dim() != 2:
        raise ValueError(f"track_talkers: est [C, T] or [B, C, T] expected, got {tuple(est.shape)}")
    segment = max(1, int(round(segment_seconds * sample_rate)))
    bounds = segment_bounds(est.shape[-1], segment, "track_talkers")
    identity = torch.arange(est.shape[0], device=est.device).repeat(len(bounds), 1)
    if est.shape[0] < 2 or len(bounds) < 2 or (bounds[0][1] - bounds[0][0]) < embedder.min_samples:
        return est, identity
    emb = piece_embeddings(embedder, est.float(), bounds)
    orders = choose_orders(emb, activity_weights(est.float(), bounds), threshold, max_changes)
    if bool((orders == identity).all()):
        return est, orders
    return apply_orders(est.float(), orders, bounds, int(round(fade_seconds * sample_rate))).to(est.dtype), orders
