"""``fastsep ensemble``: one backbone folder from several trained separators, their separated outputs averaged.

    fastsep ensemble RUN_A/best RUN_B/best RUN_C/best --out runs/ensemble
    fastsep ensemble RUN_A/best --polarities 1,-1 --out runs/tta     # one network, two views of the mixture
    fastsep bundle separate-and-diffuse --backbone runs/ensemble --vocoder DEFAULT --combiner DEFAULT -o bundles/e

Unlike ``fastsep average`` (one run's checkpoints, their weights averaged into one network), the members may be
any separators of the same talkers and sample rate: independent runs, other seeds, other architectures. Each is run
on the mixture and the estimates are averaged after putting every member's talkers into the first member's order
(:class:`fastsep.models.ensemble.BackboneEnsemble`). ``--polarities 1,-1`` adds the negated mixture's estimates
(negated back), ``--shifts 0,8`` the mixture delayed by 8 samples (realigned): views that one network answers
differently. It costs one backbone pass per member and view.
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
    parser.add_argument("--shifts", default="0", metavar="S,S",
                        help="delays in samples at which each member also separates the mixture (default 0: none)")
    parser.add_argument("--polarities", default="1", metavar="1,-1",
                        help="1,-1 also separates the negated mixture (default 1)")


def main(args: argparse.Namespace) -> int:
    from ..models.ensemble import BackboneEnsemble
    from ..models.io import save_model
    from .bundle_sad import load_part

    try:
        shifts = [int(v) for v in args.shifts.split(",")]
        polarities = [int(v) for v in args.polarities.split(",")]
    except ValueError:
        print(f"fastsep ensemble: error: --shifts and --polarities take comma-separated whole numbers, got "
              f"{args.shifts!r} and {args.polarities!r}", file=sys.stderr)
        return 2
    if os.path.abspath(args.out) in {os.path.abspath(m) for m in args.models}:
        print("fastsep ensemble: error: --out must not be one of the members' folders", file=sys.stderr)
        return 2
    try:
        members = [load_part(m, "backbone") for m in args.models]
        nested = [m for m, model in zip(args.models, members) if isinstance(model, BackboneEnsemble)]
        if nested:
            raise ValueError(f"{nested[0]} is an ensemble already: name its members instead")
        ensemble = BackboneEnsemble.from_models(members, shifts=shifts, polarities=polarities)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"fastsep ensemble: error: {exc}", file=sys.stderr)
        return 2
    save_model(ensemble, args.out)
    kinds = ", ".join(sorted({type(m).__name__ for m in members}))
    print(f"an ensemble of {len(members)} backbone(s) ({kinds}) x {len(shifts) * len(polarities)} view(s) of the "
          f"mixture, {ensemble.passes} passes per call, written to {args.out}")
    return 0
