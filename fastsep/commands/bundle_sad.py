"""``fastsep bundle separate-and-diffuse --backbone B --vocoder GM [--combiner F] -o OUT``: a Separate-And-Diffuse
bundle assembled from trained parts, each given as a model folder (a run's ``last/``, ``best/``, ``steps/N``) or a
bundle that holds it -- e.g. the default with a newly trained vocoder in place of its own, to score that vocoder in
the pipeline (``fastsep eval --vocoder-quality``) before F is fine-tuned on it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Optional

from torch import nn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep bundle separate-and-diffuse``."""
    parser.add_argument("--backbone", required=True, metavar="FOLDER", help="separator B: a model folder or a bundle")
    parser.add_argument("--vocoder", default=None, metavar="FOLDER",
                        help="vocoder GM (DiffWave or HiFi-GAN): a model folder or a bundle (without one the bundle "
                             "serves backbone mode only)")
    parser.add_argument("--combiner", default=None, metavar="FOLDER",
                        help="combiner F: a model folder or a bundle (without one: backbone and xcorr modes)")
    parser.add_argument("-o", "--out", required=True, help="the bundle folder to write (must not exist)")


def load_part(folder: str, part: str) -> nn.Module:
    """One part of a Separate-And-Diffuse bundle from ``folder``, checked to be the right kind of network."""
    from ..bundle import component_stem
    from ..models.combiner import Combiner
    from ..models.io import load_model
    from ..train.separator import BACKBONES

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--{part} {folder} does not exist")
    stem = component_stem(folder, part)
    if stem is None:
        raise ValueError(f"--{part} {folder}: the bundle has no {part}")
    model = load_model(folder, stem)
    kind = type(model).__name__
    right = {"backbone": kind in BACKBONES.values() or kind in ("BackboneEnsemble", "TrackedBackbone"),
             "vocoder": kind in ("DiffWave", "HiFiGAN"), "combiner": isinstance(model, Combiner)}[part]
    if not right:
        raise ValueError(f"--{part} {folder} holds a {kind}, not a {part}")
    if part == "vocoder" and kind == "DiffWave" and model.config.get("unconditional", False):
        raise ValueError(f"--vocoder {folder} is an unconditional DiffWave (a source prior), not a mel vocoder")
    return model.eval()


def assemble(out: str, backbone: str, vocoder: Optional[str] = None, combiner: Optional[str] = None) -> str:
    """Write the bundle into ``out`` (written beside it first and renamed, so no half bundle is left); returns the
    manifest's path."""
    from ..bundle import MANIFEST, save_bundle

    if os.path.exists(out):
        raise FileExistsError(f"{out} exists: choose a new folder (a bundle is never written over another)")
    if combiner is not None and vocoder is None:
        raise ValueError("--combiner needs --vocoder: F combines B's estimates with GM's")
    b = load_part(backbone, "backbone")
    gm = load_part(vocoder, "vocoder") if vocoder else None
    f = load_part(combiner, "combiner") if combiner else None
    sample_rate = int(getattr(b, "sample_rate", 8000))
    if gm is not None and getattr(gm, "sample_rate", sample_rate) != sample_rate:
        raise ValueError(f"--vocoder runs at {gm.sample_rate} Hz but the backbone at {sample_rate} Hz")
    sources = {"backbone": os.path.abspath(backbone)}
    sources.update({k: os.path.abspath(v) for k, v in (("vocoder", vocoder), ("combiner", combiner)) if v})
    tmp = f"{os.path.normpath(out)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_bundle(tmp, b, gm, f, sample_rate=sample_rate, n_src=int(b.n_src), extra={"assembled_from": sources})
    os.replace(tmp, out)
    return os.path.join(out, MANIFEST)


def main(args: argparse.Namespace) -> int:
    try:
        path = assemble(args.out, args.backbone, args.vocoder, args.combiner)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        print(f"fastsep bundle separate-and-diffuse: {exc}", file=sys.stderr)
        return 2
    print(f"Separate-And-Diffuse bundle written: {path}")
    return 0
