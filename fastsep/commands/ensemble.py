"""``fastsep ensemble``: one backbone folder from several trained separators, their separated outputs averaged.

    fastsep ensemble RUN_A/best RUN_B/best RUN_C/best --out runs/ensemble
    fastsep bundle separate-and-diffuse --backbone runs/ensemble --vocoder DEFAULT --combiner DEFAULT -o bundles/e

Unlike ``fastsep average`` (one run's checkpoints, their weights averaged into one network), the members may be
any separators of the same talkers and sample rate: independent runs, other seeds, other architectures. Each is run
on the mixture and the estimates are averaged after putting every member's talkers into the first member's order
(:class:`fastsep.models.ensemble.BackboneEnsemble`); it costs one backbone pass per member.
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep ensemble``."""
    parser.add_argument("models", nargs="+",
                        help="backbone model folders (RUN/best, RUN/steps/<step>, an averaged folder) or bundles")
    parser.add_argument("--out", required=True, help="folder for the ensemble (model.safetensors + model.json)")


def main(args: argparse.Namespace) -> int:
    from ..models.ensemble import BackboneEnsemble
    from ..models.io import save_model
    from .bundle_sad import load_part

    if len(args.models) < 2:
        print("fastsep ensemble: error: give at least two model folders", file=sys.stderr)
        return 2
    if os.path.abspath(args.out) in {os.path.abspath(m) for m in args.models}:
        print("fastsep ensemble: error: --out must not be one of the members' folders", file=sys.stderr)
        return 2
    try:
        members = [load_part(m, "backbone") for m in args.models]
        nested = [m for m, model in zip(args.models, members) if isinstance(model, BackboneEnsemble)]
        if nested:
            raise ValueError(f"{nested[0]} is an ensemble already: name its members instead")
        ensemble = BackboneEnsemble.from_models(members)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"fastsep ensemble: error: {exc}", file=sys.stderr)
        return 2
    save_model(ensemble, args.out)
    kinds = ", ".join(sorted({type(m).__name__ for m in members}))
    print(f"an ensemble of {len(members)} backbones ({kinds}) written to {args.out}")
    return 0
