"""``fastsep track``: a backbone folder whose outputs keep their talkers (a separator + a trained talker embedding).

    fastsep track fastsep/assets/default --embedding runs/tracker/best --out runs/tracked
    fastsep eval --data WORK/recorded --model runs/tracked --modes backbone --metrics si_sdr,swaps
    fastsep bundle separate-and-diffuse --backbone runs/tracked --vocoder DEFAULT --combiner DEFAULT -o bundles/t

The embedding comes from ``fastsep train tracker``; :class:`fastsep.models.tracked.TrackedBackbone` runs the
separator, then re-orders its outputs every ``--piece`` seconds where the embedding finds a talker on the other
output (:mod:`fastsep.tracking`).
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep track``."""
    parser.add_argument("separator", help="backbone model folder or bundle whose outputs to track")
    parser.add_argument("--embedding", required=True,
                        help="talker embedding folder (RUN/best or RUN/steps/<step> of `fastsep train tracker`)")
    parser.add_argument("--out", required=True, help="folder for the tracked backbone (model.safetensors + .json)")
    parser.add_argument("--piece", type=float, default=0.5, help="seconds per re-ordered piece (default 0.5)")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="how much better a new order must fit than the separator's (default 0)")


def main(args: argparse.Namespace) -> int:
    from ..models.io import load_model, save_model
    from ..models.talker_embedding import TalkerEmbedding
    from ..models.tracked import TrackedBackbone
    from .bundle_sad import load_part

    if os.path.abspath(args.out) in {os.path.abspath(args.separator), os.path.abspath(args.embedding)}:
        print("fastsep track: error: --out must be a new folder", file=sys.stderr)
        return 2
    try:
        separator = load_part(args.separator, "backbone")
        embedding = load_model(args.embedding)
        if not isinstance(embedding, TalkerEmbedding):
            raise ValueError(f"{args.embedding} holds a {type(embedding).__name__}, not a TalkerEmbedding")
        tracked = TrackedBackbone.from_models(separator, embedding, args.piece, args.threshold)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"fastsep track: error: {exc}", file=sys.stderr)
        return 2
    save_model(tracked, args.out)
    print(f"{type(separator).__name__} tracked by a talker embedding every {args.piece:g} s (threshold "
          f"{args.threshold:g}), written to {args.out}")
    return 0
