"""``fastsep train separator``: train a separation backbone (B) with the PIT SI-SDR loss.

Training uses fixed-length segments of the ``train`` split; validation runs on whole utterances of the ``valid``
split and reports SI-SDRi (dB), which drives the learning-rate halving, early stopping and ``OUT/best``.
Any layout :func:`fastsep.data.open_mixture_dataset` understands can be pointed at with ``--data``.
"""
from __future__ import annotations

import argparse
import os
import json
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import Tensor, nn

from .options import (USAGE_ERRORS, add_loop_arguments, add_pairing_argument, config_from_args,
                      pairing_from_args, report_usage_error)

__all__ = ["BACKBONES", "SeparationTask", "pad_collate", "build_model", "add_arguments", "main"]

#: ``--model`` name -> class name in :mod:`fastsep.models`.
BACKBONES = {"convtasnet": "ConvTasNet", "dprnn": "DPRNN", "mulcat": "MulCat", "sepformer": "SepFormer"}


def pad_collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Batch mixture items of possibly different lengths by zero-padding at the end.

    Returns ``{"mixture": [B, T], "sources": [B, C, T], "lengths": [B] int64, "id": [str]}`` with ``T`` the longest.
    """
    if not items:
        raise ValueError("pad_collate got an empty list of items")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "mixture" not in item or "sources" not in item:
            raise TypeError(f"item {i} must be a dict with 'mixture' [T] and 'sources' [C, T], got "
                            f"{type(item).__name__}")
        if item["mixture"].dim() != 1 or item["sources"].dim() != 2 \
                or item["sources"].shape[-1] != item["mixture"].shape[-1]:
            raise ValueError(f"item {i}: expected mixture [T] and sources [C, T] of one length, got "
                             f"{tuple(item['mixture'].shape)} and {tuple(item['sources'].shape)}")
    n_src = {item["sources"].shape[0] for item in items}
    if len(n_src) != 1:
        raise ValueError(f"items in one batch must have the same number of sources, got {sorted(n_src)}")
    lengths = torch.tensor([item["mixture"].shape[-1] for item in items], dtype=torch.long)
    longest = int(lengths.max())
    mixture = torch.zeros(len(items), longest, dtype=items[0]["mixture"].dtype)
    sources = torch.zeros(len(items), n_src.pop(), longest, dtype=items[0]["sources"].dtype)
    for i, item in enumerate(items):
        n = item["mixture"].shape[-1]
        mixture[i, :n] = item["mixture"]
        sources[i, :, :n] = item["sources"]
    return {"mixture": mixture, "sources": sources, "lengths": lengths,
            "id": [str(item.get("id", i)) for i, item in enumerate(items)]}


class SeparationTask:
    """Training task for a backbone: PIT SI-SDR loss; validation SI-SDR and SI-SDRi (dB) of the PIT-matched output.

    ``multi_block``: the model's forward accepts ``return_all=True`` and returns ``[n_blocks, B, C, T]`` (MulCat);
    the loss is then the mean of every block's PIT SI-SDR loss, each block matched on its own, as in the MulCat
    paper's deep supervision.
    """

    def __init__(self, multi_block: bool = False, speaker_encoder: Optional[nn.Module] = None,
                 speaker_weight: float = 0.0):
        self.multi_block = multi_block
        if speaker_weight and speaker_encoder is None:
            raise ValueError("a speaker loss weight needs a speaker encoder")
        if not (isinstance(speaker_weight, (int, float)) and speaker_weight >= 0):
            raise ValueError(f"speaker_weight must be >= 0, got {speaker_weight!r}")
        self.speaker_weight = float(speaker_weight)
        self.speaker_encoder = speaker_encoder.eval() if speaker_encoder is not None else None
        if self.speaker_encoder is not None:
            for q in self.speaker_encoder.parameters():
                q.requires_grad_(False)

    def speaker_loss(self, est: Tensor, src: Tensor) -> Tensor:
        """Mean cosine distance between the speaker embeddings of each PIT-matched estimate and of its reference:
        what a speaker encoder trained on thousands of real talkers hears of the wrong talker in an output."""
        from ..metrics import pit

        matched, _ = pit(est, src)
        n, c, t = matched.shape
        with torch.no_grad():
            target = self.speaker_encoder(src.reshape(n * c, t))
        return (1.0 - (self.speaker_encoder(matched.reshape(n * c, t)) * target).sum(-1)).mean()

    @staticmethod
    def _trimmed(batch: Dict[str, Any]):
        """(mixture, sources) per example, cut to its own length when padded batches hold different lengths."""
        mix, src = batch["mixture"], batch["sources"]
        lengths = batch.get("lengths")
        if lengths is None or bool((lengths == mix.shape[-1]).all()):
            return [(mix, src)]
        return [(mix[i:i + 1, :n], src[i:i + 1, :, :n]) for i, n in enumerate(lengths.tolist())]

    def _loss(self, model: nn.Module, mix: Tensor, src: Tensor) -> Tensor:
        from ..metrics import pit_si_sdr_loss

        if self.multi_block:
            outs = model(mix, return_all=True)
            return torch.stack([pit_si_sdr_loss(o.float(), src.float()) for o in outs]).mean()
        est = model(mix).float()
        loss = pit_si_sdr_loss(est, src.float())
        if self.speaker_weight:
            loss = loss + self.speaker_weight * self.speaker_loss(est, src.float())
        return loss

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """Mean PIT SI-SDR loss (negative dB) of the batch."""
        parts = self._trimmed(batch)
        if len(parts) == 1:
            return self._loss(model, *parts[0])
        # segments of unequal length: weight each example equally, as a batch of equal lengths would
        return torch.stack([self._loss(model, m, s) for m, s in parts]).mean()

    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``si_sdr`` and ``si_sdri`` (dB, mean over sources and utterances) and ``loss`` (= -si_sdr)."""
        from ..metrics import pit, si_sdr

        total_sdr, total_sdri, count = 0.0, 0.0, 0
        for batch in loader:
            for mix, src in self._trimmed(batch):
                est, _ = pit(model(mix).float(), src.float())
                score = si_sdr(est, src.float())  # [B, C]
                base = si_sdr(mix.float().unsqueeze(1).expand_as(src), src.float())
                total_sdr += float(score.mean(1).sum())
                total_sdri += float((score - base).mean(1).sum())
                count += mix.shape[0]
        if count == 0:
            raise ValueError("the validation set yielded no utterances")
        return {"si_sdr": total_sdr / count, "si_sdri": total_sdri / count, "loss": -total_sdr / count}


def build_model(name: str, n_src: int, sample_rate: int, small: bool = False,
                overrides: Optional[Dict[str, Any]] = None) -> nn.Module:
    """A fresh backbone by its ``--model`` name (see :data:`BACKBONES`), the CPU-sized preset when ``small``.

    ``overrides``: constructor arguments replacing the paper's defaults (e.g. ``{"kernel_size": 32}``); not combinable
    with ``small``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    import fastsep.models

    cls = getattr(fastsep.models, BACKBONES[name])
    if overrides:
        if small:
            raise ValueError("--small and --model-args cannot be combined: the preset fixes every size")
        try:
            return cls(n_src, sample_rate, **overrides)
        except TypeError as exc:
            raise ValueError(f"--model-args does not fit {cls.__name__}: {exc}") from None
    return cls.small(n_src, sample_rate) if small else cls(n_src, sample_rate)


def initial_model(folder: str, name: str, n_src: int, overrides: Optional[Dict[str, Any]], seed: int = 0) -> nn.Module:
    """The backbone saved in ``folder`` (model folder or bundle) as a run's starting point, grown to ``overrides``.

    Without ``overrides`` (or with ones equal to the saved config) the saved model is used as it is. A Conv-TasNet
    whose ``overrides`` change only ``hid_chan``/``n_repeats`` is grown by
    :func:`fastsep.models.growth.grow_convtasnet`; any other difference is an error rather than a silent fresh start.
    """
    from ..bundle import component_stem
    from ..models.io import load_model

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--init-from {folder} does not exist")
    stem = component_stem(folder, "backbone")
    if stem is None:
        raise ValueError(f"--init-from {folder}: the bundle has no backbone B")
    model = load_model(folder, stem).train()
    if type(model).__name__ != BACKBONES[name]:
        raise ValueError(f"--init-from {folder} holds a {type(model).__name__}, not the --model {name} backbone "
                         f"({BACKBONES[name]})")
    if getattr(model, "n_src", n_src) != n_src:
        raise ValueError(f"--init-from {folder} separates {model.n_src} sources, --n-src asks for {n_src}")
    if not overrides or all(model.config.get(k) == v for k, v in overrides.items()):
        return model
    if name != "convtasnet":
        raise ValueError(f"--init-from with different --model-args can only grow a Conv-TasNet, not {name}")
    from ..models.growth import grow_convtasnet

    return grow_convtasnet(model, seed=seed, **{k: v for k, v in overrides.items() if model.config.get(k) != v})


def augmentation_from_args(args: argparse.Namespace):
    """The training :class:`~fastsep.data.augment.Augmentation` the options ask for, or None (``--augment none``)."""
    from ..data.augment import CODEC_PROB, EQ_PROB, FORMANT_PROB, POLARITY_PROB, Augmentation

    # each --augment part and the Augmentation field holding its probability
    parts = (("speed", "speed_prob"), ("reverb", "reverb_prob"), ("noise", "noise_prob"), ("overlap", "overlap_prob"),
             ("formant", "formant_prob"), ("polarity", "polarity_prob"), ("eq", "eq_prob"), ("codec", "codec_prob"))
    # the parts that are off unless named get these probabilities when named without one
    named_default = {"formant": FORMANT_PROB, "polarity": POLARITY_PROB, "eq": EQ_PROB, "codec": CODEC_PROB}

    if args.augment == "none":
        return None
    aug = Augmentation()
    if args.augment != "all":
        probs = {}
        for item in args.augment.split(","):
            part, _, p = item.partition(":")
            try:
                probs[part] = float(p) if p else None
            except ValueError:
                raise ValueError(f"--augment: {item!r} is not PART or PART:PROBABILITY") from None
        unknown = set(probs) - {part for part, _ in parts}
        if unknown:
            raise ValueError(f"--augment: unknown part(s) {sorted(unknown)}; use all, none or a comma list of "
                             f"{','.join(part for part, _ in parts)} (each may carry its probability: formant:0.8)")
        for part, attr in parts:
            if part not in probs:
                setattr(aug, attr, 0.0)
            elif probs[part] is not None:
                setattr(aug, attr, probs[part])
            elif part in named_default:
                setattr(aug, attr, named_default[part])
        aug.__post_init__()  # a probability given here is checked like one given to the constructor
    return aug


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train separator``."""
    parser.add_argument("--model", choices=sorted(BACKBONES), default="convtasnet", help="backbone to train")
    parser.add_argument("--n-src", type=int, default=2, help="speakers per mixture (default 2)")
    parser.add_argument("--speaker-loss", type=float, default=0.0, metavar="W",
                        help="add W x the cosine distance between a pretrained speaker encoder's embeddings of each "
                             "output and of its reference (--voice-encoder) to the SI-SDR loss (default 0: off)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="data set folder (fastsep corpus, LibriMix or wsj0-mix); several fastsep corpora are "
                             "pooled and mixed across each other")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/) and log.jsonl")
    parser.add_argument("--small", action="store_true", help="the CPU-sized preset of the backbone")
    parser.add_argument("--model-args", default=None,
                        help='JSON object of constructor arguments, e.g. \'{"kernel_size": 32, "n_repeats": 2}\'')
    parser.add_argument("--init-from", default=None, metavar="FOLDER",
                        help="start from a saved backbone (a model folder such as RUN/last or RUN/steps/N, or a "
                             "bundle); with --model-args naming a larger hid_chan or n_repeats, a Conv-TasNet is "
                             "grown into the larger size computing the same function (fastsep.models.growth). "
                             "Ignored when --out already holds a checkpoint to resume")
    parser.add_argument("--augment", default="none",
                        help="training augmentation: none (default), all (speed,reverb,noise,overlap), or a comma "
                             "list of speed,reverb,noise,overlap,formant,polarity,eq,codec, each with its default "
                             "probability or PART:P (e.g. speed,overlap,formant:0.9; see fastsep.data.augment)")
    parser.add_argument("--level-range", type=float, nargs=2, default=[0.0, 5.0], metavar=("LOW", "HIGH"),
                        help="attenuation range in dB of the non-reference talkers (default 0 5, the paper's)")
    add_pairing_argument(parser)
    parser.add_argument("--segment", type=float, default=4.0, help="training segment length in seconds")
    parser.add_argument("--join-short", type=float, default=0.0, metavar="SECONDS",
                        help="keep utterances of at least SECONDS that are shorter than --segment, each completed "
                             "with more of its talker's speech after a short pause (default 0: utterances shorter "
                             "than the segment are left out)")
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--dynamic-mixing", action="store_true",
                        help="remix the training sources on the fly (pre-mixed corpora; a fastsep corpus always is)")
    parser.add_argument("--train-items", type=int, default=None,
                        help="mixtures per epoch when mixing on the fly (default: the data set's)")
    parser.add_argument("--valid-items", type=int, default=None,
                        help="validate on the first N utterances of the valid split only (default: all)")
    add_loop_arguments(parser, batch_size=4, lr=1e-3, grad_clip=5.0)


def _check_args(args: argparse.Namespace) -> None:
    if args.n_src < 1:
        raise ValueError(f"--n-src must be at least 1, got {args.n_src}")
    if args.segment is not None and args.segment <= 0:
        raise ValueError(f"--segment must be positive seconds, got {args.segment}")
    pairing_from_args(args)
    if args.speaker_loss < 0:
        raise ValueError(f"--speaker-loss must be >= 0, got {args.speaker_loss}")
    if args.speaker_loss and not args.voice_encoder:
        raise ValueError("--speaker-loss needs --voice-encoder DIR (fastsep import-encoder -o DIR)")
    if args.valid_items is not None and args.valid_items < 1:
        raise ValueError(f"--valid-items must be at least 1, got {args.valid_items}")
    for folder in args.data:
        if not os.path.exists(folder):
            raise FileNotFoundError(f"--data {folder} does not exist")


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train separator``; returns the exit status."""
    from ..data import open_mixture_dataset
    from .loop import train

    try:
        _check_args(args)
        try:
            overrides = json.loads(args.model_args) if args.model_args else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"--model-args is not valid JSON: {exc}") from None
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError("--model-args must be a JSON object")
        if args.init_from:
            model = initial_model(args.init_from, args.model, args.n_src, overrides, args.seed)
        else:
            model = build_model(args.model, args.n_src, args.sample_rate, args.small, overrides)
        train_set = open_mixture_dataset(args.data, args.n_src, args.sample_rate, segment=args.segment,
                                         split="train", dynamic_mixing=True if args.dynamic_mixing else None,
                                         seed=args.seed, length=args.train_items,
                                         augment=augmentation_from_args(args), level_range_db=args.level_range,
                                         join_short=args.join_short, **pairing_from_args(args))
        valid_set = open_mixture_dataset(args.data, args.n_src, args.sample_rate, segment=None, split="valid",
                                         seed=args.seed + 1, length=args.valid_items)
        if args.valid_items is not None and len(valid_set) > args.valid_items:
            valid_set = torch.utils.data.Subset(valid_set, range(args.valid_items))
        cfg = config_from_args(args, monitor="si_sdri", monitor_mode="max")
        encoder = None
        if args.speaker_loss:
            from ..models.io import load_model

            encoder = load_model(args.voice_encoder)
        task = SeparationTask(multi_block=args.model == "mulcat", speaker_encoder=encoder,
                              speaker_weight=args.speaker_loss)
        result = train(model, task, train_set, valid_set, cfg, collate_fn=pad_collate)
    except USAGE_ERRORS as exc:
        return report_usage_error("separator", exc)
    best = os.path.join(args.out, "best")
    where = f"best model in {best}" if os.path.isdir(best) else f"latest model in {os.path.join(args.out, 'last')}"
    print(f"epochs {int(result['epoch'])}, steps {int(result['step'])}: valid SI-SDRi "
          f"{result.get('si_sdri', float('nan')):.2f} dB (best {result['best']:.2f} dB); {where}")
    return 0
