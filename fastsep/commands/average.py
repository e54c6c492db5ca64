"""``fastsep average``: average the weights of several checkpoints of one training run into one model folder.

    fastsep average RUN/steps/0017000 RUN/steps/0018000 RUN/steps/0019000 --out RUN/averaged
    fastsep eval --data TEST --model RUN/averaged --modes backbone

The output is a model folder like ``RUN/best`` (``model.safetensors`` + ``model.json``), written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep average``."""
    parser.add_argument("models", nargs="+", help="model folders of one run (RUN/steps/<step>, RUN/last, RUN/best)")
    parser.add_argument("--out", required=True, help="folder for the averaged model")


def main(args: argparse.Namespace) -> int:
    from ..models.averaging import load_and_average
    from ..models.io import save_model

    if len(args.models) < 2:
        print("fastsep average: error: give at least two model folders", file=sys.stderr)
        return 2
    if os.path.abspath(args.out) in {os.path.abspath(m) for m in args.models}:
        print("fastsep average: error: --out must not be one of the averaged folders", file=sys.stderr)
        return 2
    try:
        model = load_and_average(args.models)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fastsep average: error: {exc}", file=sys.stderr)
        return 2
    save_model(model, args.out)
    print(f"averaged {len(args.models)} checkpoints of a {type(model).__name__} into {args.out}")
    return 0
