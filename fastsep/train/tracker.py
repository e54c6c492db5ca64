"""``fastsep train tracker``: train the talker embedding that keeps each talker on one output (issue 9).

The embedding is trained on what it will see: a frozen separator's outputs on training mixtures. Each item is a
mixture mixed on the fly, separated by the separator, its outputs matched to the references over the whole mixture;
then, piece by piece (0.5 s), each output's piece is labelled with the talker it holds (the best match of that
piece alone), so the separator's own swaps give labels too. A piece's label counts only where it is clear: the
piece's best match beats its other match by ``--min-margin`` dB and the labelled talker is active there. With
probability one half each output gets some of the other output added (leakage as on unseen voices, where the
separator does worse than on its training talkers).

Each training piece's outputs are also swapped with probability ``--shuffle-outputs`` (one half) before labelling.
Without it the embedding learns a shortcut: on its training talkers the separator rarely swaps, so "the same
output" almost always means "the same talker", and an embedding that recognises each output's own colouring (a
PIT-trained separator's outputs differ slightly in how they sound) scores well in training. On unseen voices that
embedding sided with the separator on 26 of 28 mixtures with clear swaps (klettres, session 22): it judged pieces of
one output alike (mean cosine 0.44 for different talkers on one output, 0.33 for one talker on both outputs).

The loss asks, for every pair of labelled pieces of one mixture, whether they hold the same talker: binary
cross-entropy on ``scale * (cosine - 0.5)``. That is the question :func:`fastsep.tracking.track_talkers` asks.
Validation reports that loss, the pairs' accuracy and what tracking does to the valid mixtures' SI-SDR.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Iterable, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .options import (USAGE_ERRORS, add_loop_arguments, add_pairing_argument, config_from_args, format_metrics,
                      pairing_from_args, report_usage_error)

__all__ = ["SeparatedPieces", "TrackerTask", "piece_labels", "add_arguments", "main"]

PAIR_SCALE = 10.0
PAIR_CENTRE = 0.5


def piece_labels(est: Tensor, ref: Tensor, segment: int, min_margin_db: float = 1.0,
                 active_db: float = 20.0) -> Dict[str, Tensor]:
    """Per ``segment``-sample piece of ``est, ref [C, T]`` (T a multiple of ``segment``): ``labels [C, K]`` (which
    reference output c's piece holds) and ``mask [C, K]`` (1 where that label is clear: the piece's best match beats
    the next by ``min_margin_db`` and the labelled reference is within ``active_db`` of its loudest piece)."""
    from ..metrics import piece_permutation_scores

    n_src, length = est.shape
    n_pieces = length // segment
    totals, perms = piece_permutation_scores(est, ref, [(k * segment, (k + 1) * segment) for k in range(n_pieces)])
    top = totals.topk(2, dim=-1)
    labels = perms[top.indices[:, 0]].t()  # [C, K]
    clear = (top.values[:, 0] - top.values[:, 1]) >= min_margin_db  # [K]
    ref_p = ref[:, :n_pieces * segment].reshape(n_src, n_pieces, segment).transpose(0, 1)
    energy = ref_p.pow(2).mean(-1)  # [K, C]
    db = 10 * torch.log10(energy + 1e-10)
    active = (db >= db.max(0, keepdim=True).values - active_db).t()  # [C ref, K]
    mask = clear[None, :] & torch.gather(active, 0, labels)
    return {"labels": labels, "mask": mask.float()}


class SeparatedPieces(Dataset):
    """A frozen separator's outputs on ``mixtures`` (items ``{"mixture", "sources"}``), with :func:`piece_labels`.

    Items: ``{"est": [C, T], "labels": [C, K], "mask": [C, K]}``; T is cut to whole pieces. ``leak``: probability of
    adding U(0, 0.3) of the other outputs to each output; with ``leak > 0`` (training) every item's level also
    moves by U(-10, 10) dB. ``shuffle_outputs``: probability that a piece's outputs are put in a random order
    (rolled by a random amount) before labelling (training only; see the module docstring). ``with_reference``:
    items also carry the references cut like the outputs, ``"reference": [C, T]`` (validation)."""

    def __init__(self, mixtures: Dataset, separator: nn.Module, sample_rate: int, segment_seconds: float = 0.5,
                 leak: float = 0.0, min_margin_db: float = 1.0, seed: int = 0, shuffle_outputs: float = 0.0,
                 with_reference: bool = False):
        self.mixtures, self.separator = mixtures, separator.eval()
        self.segment = max(1, int(round(segment_seconds * sample_rate)))
        self.leak, self.min_margin_db, self.seed = float(leak), float(min_margin_db), int(seed)
        self.shuffle_outputs, self.with_reference = float(shuffle_outputs), bool(with_reference)
        self._draws = 0

    def __len__(self) -> int:
        return len(self.mixtures)

    @torch.no_grad()
    def __getitem__(self, index: int) -> Dict[str, Tensor]:
        from ..metrics import pit

        item = self.mixtures[index]
        mix, src = item["mixture"].float(), item["sources"].float()
        n = (mix.shape[-1] // self.segment) * self.segment
        if n < 2 * self.segment:
            raise ValueError(f"SeparatedPieces needs mixtures of at least two pieces ({2 * self.segment} samples), "
                             f"got {mix.shape[-1]}")
        mix, src = mix[:n], src[:, :n]
        est, _ = pit(self.separator(mix[None]).float(), src[None])
        est = est[0]
        if self.leak > 0 or self.shuffle_outputs > 0:
            self._draws += 1
            rng = np.random.default_rng([self.seed, index, torch.initial_seed() % (2 ** 32), self._draws])
        if self.shuffle_outputs > 0:
            pieces = est.reshape(est.shape[0], -1, self.segment)
            rolls = [int(rng.integers(1, est.shape[0])) if rng.random() < self.shuffle_outputs else 0
                     for _ in range(pieces.shape[1])]
            est = torch.stack([pieces[:, k].roll(r, dims=0) for k, r in enumerate(rolls)], dim=1).reshape(est.shape)
        if self.leak > 0:
            if rng.random() < self.leak:
                amount = torch.from_numpy(rng.uniform(0.0, 0.3, size=(est.shape[0], 1))).float()
                est = est + amount * (est.sum(0, keepdim=True) - est)
            est = est * 10 ** (rng.uniform(-10.0, 10.0) / 20)  # recordings come at any level
        item = {"est": est, **piece_labels(est, src, self.segment, self.min_margin_db)}
        return {**item, "reference": src} if self.with_reference else item


def _pair_terms(model: nn.Module, batch: Dict[str, Tensor], segment: int):
    est, labels, mask = batch["est"], batch["labels"], batch["mask"]
    n_batch, n_src, length = est.shape
    n_pieces = labels.shape[-1]
    pieces = est[..., :n_pieces * segment].reshape(n_batch * n_src * n_pieces, segment)
    emb = model(pieces).reshape(n_batch, n_src * n_pieces, -1)
    cos = emb @ emb.transpose(1, 2)  # [B, CK, CK]
    lab = labels.reshape(n_batch, -1)
    same = (lab[:, :, None] == lab[:, None, :]).float()
    m = mask.reshape(n_batch, -1)
    weight = m[:, :, None] * m[:, None, :] * (1 - torch.eye(n_src * n_pieces, device=est.device))
    return cos, same, weight


class TrackerTask:
    """Pairwise same-talker loss over the labelled pieces of each mixture (see the module docstring)."""

    def __init__(self, segment: int, sample_rate: int):
        self.segment, self.sample_rate = int(segment), int(sample_rate)

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        cos, same, weight = _pair_terms(model, batch, self.segment)
        loss = F.binary_cross_entropy_with_logits(PAIR_SCALE * (cos - PAIR_CENTRE), same, weight=weight,
                                                  reduction="sum")
        return loss / weight.sum().clamp_min(1.0)

    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``loss``, ``pair_accuracy`` (labelled pairs told apart at cosine 0.5) and ``si_sdr_gain``: mean change of
        the outputs' SI-SDR (dB, whole-mixture match) when :func:`~fastsep.tracking.track_talkers` re-orders them."""
        from ..metrics import pit, si_sdr
        from ..tracking import track_talkers

        loss_sum, weight_sum, correct, gains = 0.0, 0.0, 0.0, []
        for batch in loader:
            cos, same, weight = _pair_terms(model, batch, self.segment)
            logits = PAIR_SCALE * (cos - PAIR_CENTRE)
            loss_sum += float(F.binary_cross_entropy_with_logits(logits, same, weight=weight, reduction="sum"))
            weight_sum += float(weight.sum())
            correct += float((((logits > 0).float() == same).float() * weight).sum())
            for est, ref in zip(batch["est"], batch["reference"]):
                tracked, _ = track_talkers(model, est, self.sample_rate, self.segment / self.sample_rate)
                before = si_sdr(pit(est[None], ref[None])[0], ref[None]).mean()
                after = si_sdr(pit(tracked[None], ref[None])[0], ref[None]).mean()
                gains.append(float(after - before))
        if weight_sum == 0:
            raise ValueError("the validation set yielded no labelled pieces")
        return {"loss": loss_sum / weight_sum, "pair_accuracy": correct / weight_sum,
                "si_sdr_gain": float(np.mean(gains))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train tracker``."""
    parser.add_argument("--separator", required=True, metavar="MODEL",
                        help="the frozen separator whose outputs the embedding learns on (a bundle or model folder)")
    parser.add_argument("--data", required=True, nargs="+", help="training corpora (fastsep corpus folders)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/) and log.jsonl")
    parser.add_argument("--model-args", default=None, help="JSON object of TalkerEmbedding arguments")
    parser.add_argument("--segment", type=float, default=4.0, help="mixture length in seconds")
    parser.add_argument("--join-short", type=float, default=1.0, metavar="SECONDS",
                        help="utterances of at least SECONDS shorter than --segment are completed with more of "
                             "their talker's speech after a short pause (default 1.0; 0 leaves them out)")
    parser.add_argument("--piece", type=float, default=0.5, help="piece length in seconds (as tracking uses)")
    parser.add_argument("--leak", type=float, default=0.5, help="probability of added leakage per training item")
    parser.add_argument("--shuffle-outputs", type=float, default=0.5,
                        help="probability that a training piece's outputs are swapped before labelling (default 0.5)")
    parser.add_argument("--min-margin", type=float, default=1.0, help="dB a piece's label must win by to count")
    parser.add_argument("--train-items", type=int, default=2000, help="mixtures per epoch")
    parser.add_argument("--valid-items", type=int, default=100, help="validation mixtures (valid split)")
    add_pairing_argument(parser)
    add_loop_arguments(parser, batch_size=16, lr=1e-3, grad_clip=5.0)


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train tracker``; returns the exit status."""
    import json

    from ..data import open_mixture_dataset
    from ..models.talker_embedding import TalkerEmbedding
    from ..commands.bundle_sad import load_part
    from .loop import train

    try:
        for folder in args.data:
            if not os.path.exists(folder):
                raise FileNotFoundError(f"--data {folder} does not exist")
        backbone = load_part(args.separator, "backbone")
        rate = int(backbone.config["sample_rate"])
        overrides = json.loads(args.model_args) if args.model_args else {}
        model = TalkerEmbedding(sample_rate=rate, **overrides)
        train_mix = open_mixture_dataset(args.data, 2, rate, segment=args.segment, split="train",
                                         dynamic_mixing=True, seed=args.seed, length=args.train_items,
                                         join_short=args.join_short, **pairing_from_args(args))
        valid_mix = open_mixture_dataset(args.data, 2, rate, segment=args.segment, split="valid",
                                         seed=args.seed + 1, length=args.valid_items, fixed=True,
                                         join_short=args.join_short)
        train_set = SeparatedPieces(train_mix, backbone, rate, args.piece, args.leak, args.min_margin, args.seed,
                                    args.shuffle_outputs)
        valid_set = SeparatedPieces(valid_mix, backbone, rate, args.piece, 0.0, args.min_margin, with_reference=True)
        cfg = config_from_args(args, monitor="loss", monitor_mode="min")
        cfg.valid_batch_size = 8
        result = train(model, TrackerTask(train_set.segment, rate), train_set, valid_set, cfg)
    except USAGE_ERRORS as exc:
        return report_usage_error("tracker", exc)
    print(f"tracker: {format_metrics(result)}")
    return 0
