"""``fastsep train combiner``: train network F with the backbone B and the vocoder GM frozen (the paper's recipe).

Loss: negative SI-SDR of F's output against the references, the sources being matched once per example by the
Hungarian assignment of B's outputs to the references (fastsep.metrics.pit, Hungarian beyond 4 sources), so F never
has to undo a permutation. Adam at 1e-3 and batch size 3 as in the paper, on the shared loop
(:func:`fastsep.train.loop.train`). The validation set's v_d and v_g are computed once and cached in memory since B
and GM are frozen; training mixtures of a fastsep corpus are drawn fresh each time, so they are computed per batch.
At the end the best F is written with B and GM as a bundle (``--bundle-out``) that ``Separator.from_pretrained``
reads.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
from torch import Tensor, nn

from .options import (USAGE_ERRORS, add_loop_arguments, add_pairing_argument, config_from_args,
                      pairing_from_args, report_usage_error)

__all__ = ["CombinerTask", "add_arguments", "main"]


class CombinerTask:
    """Duck-typed task of :func:`fastsep.train.loop.train` for F, holding the frozen B and GM.

    Batches are ``{"mixture": [B, T], "sources": [B, C, T]}`` (optionally with precomputed ``"vd"``/``"vg"``).
    """

    def __init__(self, backbone: nn.Module, vocoder: nn.Module):
        self.backbone = backbone.eval().requires_grad_(False)
        self.vocoder = vocoder.eval().requires_grad_(False)
        self._cache: Dict[Tuple[str, ...], Tuple[Tensor, Tensor]] = {}

    @torch.no_grad()
    def estimates(self, mixture: Tensor, sources: Tensor) -> Tuple[Tensor, Tensor]:
        """``(v_d, v_g)`` ``[B, C, T]`` with v_d's sources put in the order of the references (Hungarian/PIT)."""
        from ..metrics import pit

        device = mixture.device
        self.backbone.to(device)
        self.vocoder.to(device)
        vd = self.backbone(mixture).float()
        vd, _ = pit(vd, sources.float())
        b, c, t = vd.shape
        vg = self.vocoder.vocode(vd.reshape(b * c, t)).reshape(b, c, t).float()
        return vd, vg

    def _inputs(self, batch: Dict[str, Any], cache: bool) -> Tuple[Tensor, Tensor]:
        key = tuple(batch.get("id", ())) if cache else ()
        if key and key in self._cache:
            vd, vg = self._cache[key]
            return vd.to(batch["mixture"].device), vg.to(batch["mixture"].device)
        vd, vg = self.estimates(batch["mixture"], batch["sources"])
        if key:
            self._cache[key] = (vd.cpu(), vg.cpu())
        return vd, vg

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """Mean negative SI-SDR (dB) of F(v_d, v_g) against the matched references."""
        from ..metrics import si_sdr

        vd, vg = self._inputs(batch, cache=False)
        return -si_sdr(model(vd, vg), batch["sources"].float()).mean()

    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``si_sdr``, ``si_sdri`` of F's output and ``si_sdri_backbone`` (dB); v_d/v_g cached by item id."""
        from ..metrics import si_sdr

        tot, tot_i, tot_b, n = 0.0, 0.0, 0.0, 0
        for batch in loader:
            src, mix = batch["sources"].float(), batch["mixture"].float()
            vd, vg = self._inputs(batch, cache=True)
            base = si_sdr(mix.unsqueeze(1).expand_as(src), src)
            score = si_sdr(model(vd, vg), src)
            tot += float(score.mean(1).sum())
            tot_i += float((score - base).mean(1).sum())
            tot_b += float((si_sdr(vd, src) - base).mean(1).sum())
            n += src.shape[0]
        if n == 0:
            raise ValueError("the validation set yielded no mixtures")
        return {"si_sdr": tot / n, "si_sdri": tot_i / n, "si_sdri_backbone": tot_b / n, "loss": -tot / n}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train combiner``."""
    parser.add_argument("--data", required=True, nargs="+",
                        help="data set folder (fastsep corpus, LibriMix or wsj0-mix); several fastsep corpora are "
                             "pooled")
    parser.add_argument("--backbone", required=True, help="folder of the trained B (e.g. <run>/best)")
    parser.add_argument("--vocoder", required=True, help="folder of the trained GM (e.g. <run>/best)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/) and log.jsonl")
    parser.add_argument("--bundle-out", default=None, help="write B + GM + best F here as a Separator bundle")
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--hop-length", type=int, default=128)
    parser.add_argument("--init", choices=["backbone", "average"], default="backbone")
    parser.add_argument("--init-from", default=None, metavar="FOLDER",
                        help="start F from a trained one (a bundle, or a combiner run's best/ or last/) to fine-tune "
                             "it on a new B and GM; its STFT settings are kept")
    parser.add_argument("--segment", type=float, default=2.0, help="training segment in seconds")
    parser.add_argument("--train-items", type=int, default=None, help="mixtures per epoch (corpus: on the fly)")
    parser.add_argument("--valid-items", type=int, default=16)
    add_pairing_argument(parser)
    # The shared loop's options; batch size 3 and Adam at 1e-3 are the paper's.
    add_loop_arguments(parser, batch_size=3, lr=1e-3, grad_clip=5.0, epochs=20, early_stop=8)


def load_combiner(folder) -> "Combiner":
    """A trained F from a bundle folder (combiner.json) or a model folder (model.json), refusing other models."""
    from ..bundle import component_stem
    from ..models.combiner import Combiner
    from ..models.io import load_model

    stem = component_stem(folder, "combiner")
    if stem is None:
        raise ValueError(f"--init-from {folder}: the bundle has no combiner F")
    model = load_model(folder, stem)
    if not isinstance(model, Combiner):
        raise ValueError(f"--init-from {folder}: holds a {type(model).__name__}, not a combiner F")
    return model.train()


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train combiner``; returns the exit status."""
    from ..bundle import save_bundle
    from ..data import open_mixture_dataset
    from ..models.combiner import Combiner
    from ..models.io import load_model
    from .loop import train
    from .separator import pad_collate

    try:
        pairing = pairing_from_args(args)
        backbone = load_model(args.backbone, "model")
        vocoder = load_model(args.vocoder, "model")
        n_src = int(backbone.config.get("n_src", 2))
        rate = int(vocoder.config.get("sample_rate", 8000))
        if args.init_from:
            model = load_combiner(args.init_from)
        else:
            model = Combiner(n_fft=args.n_fft, hop_length=args.hop_length, init=args.init)
        train_set = open_mixture_dataset(args.data, n_src, rate, segment=args.segment, split="train",
                                         seed=args.seed, length=args.train_items, **pairing)
        valid_set = open_mixture_dataset(args.data, n_src, rate, segment=args.segment, split="valid",
                                         seed=args.seed + 1, length=args.valid_items)
        if args.valid_items is not None and len(valid_set) > args.valid_items:
            valid_set = torch.utils.data.Subset(valid_set, range(args.valid_items))
        cfg = config_from_args(args, monitor="si_sdri", monitor_mode="max")
        # F works on complex STFTs and its fused ops take float32 only: no mixed precision, whatever --no-amp says.
        cfg.amp = False
        result = train(model, CombinerTask(backbone, vocoder), train_set, valid_set, cfg, collate_fn=pad_collate)
    except USAGE_ERRORS as exc:
        return report_usage_error("combiner", exc)
    best_dir = os.path.join(args.out, "best")
    best = load_model(best_dir, "model") if os.path.isdir(best_dir) else model
    print(f"steps {int(result['step'])}: valid SI-SDRi {result.get('si_sdri', float('nan')):.2f} dB "
          f"(backbone alone {result.get('si_sdri_backbone', float('nan')):.2f} dB)")
    if args.bundle_out:
        save_bundle(args.bundle_out, backbone.cpu(), vocoder.cpu(), best.cpu(), sample_rate=rate, n_src=n_src,
                    # non-finite entries (e.g. "best" of a run stopped before its first validation) are left out:
                    # NaN is not JSON
                    extra={"valid": {k: float(v) for k, v in result.items()
                                     if isinstance(v, (int, float)) and math.isfinite(float(v))}})
        print(f"bundle written to {args.bundle_out}")
    return 0
