"""``fastsep plot checkpoints EVAL.json [EVAL.json ...] -o OUT.png``: a training run's checkpoints scored on test sets,
against the step -- the learning curve on unseen voices, which the training log's own validation (held-out lines of
the training talkers) cannot show.

Each JSON is one ``fastsep eval --model A B C ...`` table on one test set; tables of the same set on the same mixtures
(data, split, items, seed, segment) share one panel, so checkpoints scored as a run went along add up. A model whose
folder name is a step number (``RUN/steps/0006000``, as ``fastsep train`` keeps them) is a point at that step; any
other model (the shipped bundle, an average) is a reference level line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Tuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep plot checkpoints``."""
    parser.add_argument("evals", nargs="+", metavar="EVAL_JSON",
                        help="fastsep eval JSON files (--json), one per test set, each scoring several models")
    parser.add_argument("-o", "--out", required=True, help="PNG file to write")
    parser.add_argument("--mode", default="backbone", help="which mode's scores to draw (default backbone)")
    parser.add_argument("--metric", default="si_sdri", help="the metric drawn (default si_sdri)")
    parser.add_argument("--title", default=None, help="figure title")


def _mixtures(data: dict) -> tuple:
    """What makes two tables' mixtures the same ones."""
    return tuple(data.get(k) for k in ("data", "split", "items", "seed", "segment"))


def panels_from_evals(paths: List[str], mode: str, metric: str) -> List[Tuple[str, list]]:
    """One panel per test set: the tables of one set merged (a model scored twice keeps its first score); tables of
    one set on different mixtures are refused, since their scores do not compare."""
    panels: dict = {}
    for path in paths:
        data = _read_eval(path)
        label, scores = _panel(data, path, mode, metric)
        key = _mixtures(data)
        if label in panels and panels[label][0] != key:
            raise ValueError(f"{path} scores {label} on other mixtures (items, seed or segment) than an earlier table")
        seen = {s.name for s in panels.get(label, (None, []))[1]}
        panels.setdefault(label, (key, []))[1].extend(s for s in scores if s.name not in seen)
    return [(label, scores) for label, (_, scores) in panels.items()]


def scores_from_eval(path: str, mode: str, metric: str) -> Tuple[str, list]:
    """The panel label (``data (split)``) and one :class:`fastsep.plots.CheckpointScore` per model of ``mode`` in a
    ``fastsep eval`` JSON."""
    return _panel(_read_eval(path), path, mode, metric)


def _read_eval(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "results" not in data:
        raise ValueError(f"{path} is not a fastsep eval JSON (no results)")
    return data


def _panel(data: dict, path: str, mode: str, metric: str) -> Tuple[str, list]:
    from ..plots import CheckpointScore

    scores = []
    for row in data["results"].values():
        if row.get("mode") != mode or row.get(metric) is None:
            continue
        name = str(row.get("bundle", "model"))
        low, high = row.get(f"{metric}_ci95") or (row[metric], row[metric])
        step = int(name) if name.isdigit() else None
        scores.append(CheckpointScore(name, step, float(row[metric]), float(low), float(high)))
    if not scores:
        raise ValueError(f"{path} holds no {mode!r} scores of {metric!r}")
    label = f"{data.get('data', os.path.basename(path))} ({data.get('split', '?')}, {data.get('items', '?')} mixtures)"
    return label, scores


def main(args: argparse.Namespace) -> int:
    from ..plots import MatplotlibMissing, checkpoint_scores_figure, save_figure

    try:
        panels = panels_from_evals(args.evals, args.mode, args.metric)
        unit = "SI-SDRi (dB)" if args.metric == "si_sdri" else args.metric
        fig = checkpoint_scores_figure(panels, metric=unit, title=args.title)
        save_figure(fig, args.out)
    except (ValueError, OSError, KeyError, MatplotlibMissing) as exc:
        print(f"fastsep plot checkpoints: {exc}", file=sys.stderr)
        return 2
    for label, scores in panels:
        best = max(scores, key=lambda s: s.mean)
        print(f"{label}: {len(scores)} model(s), highest {best.name} {best.mean:.2f}")
    print(f"wrote {args.out}")
    return 0
