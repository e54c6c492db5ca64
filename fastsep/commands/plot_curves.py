"""``fastsep plot curves RUN [RUN ...] -o OUT.png``: learning curves of training runs (training loss, validation
metric, learning rate against the step or the CPU time used), several runs overlaid, e.g. the arms of an ablation started from one state."""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep plot curves``."""
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folders of `fastsep train ...` (or their log.jsonl files)")
    parser.add_argument("-o", "--out", required=True, help="PNG file to write")
    parser.add_argument("--labels", default=None,
                        help="comma-separated legend names, one per run (default: the run folders' names)")
    parser.add_argument("--smooth", type=int, default=10,
                        help="training-loss records averaged for the bold curve (default 10)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--x", choices=("step", "cpu"), default="step",
                        help="horizontal axis: the training step (default) or the CPU minutes each run had used "
                             "(runs of models that cost differently per step, e.g. recipes/compare_backbones.sh)")


def main(args: argparse.Namespace) -> int:
    from ..plots import MatplotlibMissing, learning_curves_figure, save_figure
    from ..train.logs import read_training_log

    try:
        labels = args.labels.split(",") if args.labels else [None] * len(args.runs)
        if len(labels) != len(args.runs):
            raise ValueError(f"--labels names {len(labels)} run(s) but {len(args.runs)} were given")
        if args.smooth < 1:
            raise ValueError(f"--smooth must be >= 1, got {args.smooth}")
        logs = [read_training_log(run, name) for run, name in zip(args.runs, labels)]
        fig = learning_curves_figure(logs, smooth=args.smooth, title=args.title, x=args.x)
        save_figure(fig, args.out)
    except (ValueError, OSError, MatplotlibMissing) as exc:
        print(f"fastsep plot curves: {exc}", file=sys.stderr)
        return 2
    for log in logs:
        best = log.best_valid()
        best_text = f"best {log.monitor} {best[1]:.4g} at step {best[0]}" if best else "no validation"
        last = f"last step {log.train[-1][0]}" if log.train else "no training records"
        skipped = f", {log.skipped_lines} unreadable line(s) skipped" if log.skipped_lines else ""
        print(f"{log.name}: {last}, {best_text}{skipped}")
    print(f"wrote {args.out}")
    return 0
