"""``fastsep compare``: paired per-mixture differences between two ``fastsep eval --csv`` files of the same mixtures.

    fastsep eval --data WORK/recorded --model OLD --csv old.csv ...
    fastsep eval --data WORK/recorded --model NEW --csv new.csv ...
    fastsep compare old.csv new.csv            # per mode: mean of (new - old) +- its 95 % t interval
    fastsep eval --data WORK/recorded --model OLD NEW1 NEW2 --csv table.csv ...
    fastsep compare table.csv [--against OLD]  # every other model of one table against OLD (default: the first)
    fastsep compare a.csv,b.csv               # the shards of one evaluation (fastsep eval --first-item) as one table

Two models scored on the same fixed, seeded mixtures differ per mixture far less than their means' intervals
suggest, so the paired difference is the number that says whether one is better. The mixtures are matched by their
item number and id (a file whose ids differ was made from other data or another --segment/--seed, and is refused).
"""
from __future__ import annotations

import argparse
import csv
import sys
from typing import Dict, List, Optional, Tuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep compare``."""
    parser.add_argument("before", help="eval CSV of the reference model (fastsep eval --csv; A.csv,B.csv for the "
                                       "shards of one evaluation, fastsep eval --first-item)")
    parser.add_argument("after", nargs="?", default=None,
                        help="eval CSV of the model compared with it, on the same mixtures (leave out when BEFORE "
                             "scores several models: each is then compared with --against)")
    parser.add_argument("--against", default=None, metavar="NAME",
                        help="with one CSV of several models: the reference model's name (default: the first)")
    parser.add_argument("--metric", default="si_sdri", help="CSV column to compare (default si_sdri)")


def read_scores(path: str, metric: str) -> Dict[Tuple[str, str], Dict[str, float]]:
    """``{(bundle, mode): {item:id -> score}}`` of one eval CSV; empty cells (unscorable) are left out."""
    return read_table(path, metric)[0]


def read_table(path: str, metric: str) -> Tuple[Dict[Tuple[str, str], Dict[str, float]], List[str]]:
    """:func:`read_scores` and the models' names in the order the file first names them. ``path`` may join several
    files with commas: the shards of one evaluation (``fastsep eval --first-item``), read as one table; a mixture
    scored twice for one model and mode is refused."""
    names: List[str] = []
    out: Dict[Tuple[str, str], Dict[str, float]] = {}
    for part in path.split(","):
        with open(part, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"item", "id", "mode", metric} <= set(reader.fieldnames):
                raise ValueError(f"{part} is not a fastsep eval CSV with a {metric!r} column")
            for row in reader:
                if row.get("bundle", "") not in names:
                    names.append(row.get("bundle", ""))
                if row[metric] == "":
                    continue
                scores = out.setdefault((row.get("bundle", ""), row["mode"]), {})
                key = f"{row['item']}:{row['id']}"
                if key in scores:
                    raise ValueError(f"{path}: mixture {key} is scored twice in mode {row['mode']!r} (shards that "
                                     f"overlap?)")
                scores[key] = float(row[metric])
    return out, names


def _paired(a: Dict[str, float], b: Dict[str, float], mode: str) -> dict:
    """mean, low, high of b - a over the same mixtures."""
    from ..metrics import mean_confidence_interval

    if set(a) != set(b):
        raise ValueError(f"the two score other mixtures in mode {mode!r} ({len(set(a) ^ set(b))} differ): "
                         f"same --data, --split, --segment, --seed and --max-items are needed")
    diffs = [b[k] - a[k] for k in sorted(a)]
    mean, low, high = mean_confidence_interval(diffs)
    return {"mode": mode, "n": len(diffs), "mean": mean, "low": low, "high": high}


def compare_within(path: str, against: Optional[str] = None, metric: str = "si_sdri") -> Tuple[str, List[dict]]:
    """Every model of one multi-model eval CSV against the model ``against`` (default: the file's first), mode by
    mode: the reference's name and one dict per (model, mode) with ``bundle`` added."""
    scores, names = read_table(path, metric)
    if len(names) < 2:
        raise ValueError(f"{path} scores one model: give a second CSV to compare it with")
    ref = names[0] if against is None else against
    if ref not in names:
        raise ValueError(f"--against {ref}: {path} scores {', '.join(names)}")
    rows = []
    for name in names:
        if name == ref:
            continue
        for (bundle, mode), b in scores.items():
            if bundle == name and (ref, mode) in scores:
                rows.append({"bundle": name, **_paired(scores[(ref, mode)], b, mode)})
    if not rows:
        raise ValueError(f"no model of {path} shares a mode with {ref}")
    return ref, rows


def compare(before: str, after: str, metric: str = "si_sdri") -> List[dict]:
    """One dict per mode present in both files (each holding one bundle): mode, n, mean, low, high of after - before."""
    old, new = read_scores(before, metric), read_scores(after, metric)
    for path, scores in ((before, old), (after, new)):
        bundles = {b for b, _ in scores}
        if len(bundles) > 1:
            raise ValueError(f"{path} scores several bundles ({', '.join(sorted(bundles))}); compare one at a time")
    old_modes = {m: v for (_, m), v in old.items()}
    new_modes = {m: v for (_, m), v in new.items()}
    rows = [_paired(old_modes[mode], new_modes[mode], mode) for mode in new_modes if mode in old_modes]
    if not rows:
        raise ValueError("the two files share no mode")
    return rows


def main(args: argparse.Namespace) -> int:
    try:
        if args.after is None:
            ref, rows = compare_within(args.before, args.against, args.metric)
            print(f"{args.metric}: each model of {args.before} - {ref}, paired per mixture (mean ± 95% t interval)")
        else:
            if args.against is not None:
                raise ValueError("--against is for one CSV of several models")
            rows = compare(args.before, args.after, args.metric)
            print(f"{args.metric}: {args.after} - {args.before}, paired per mixture (mean ± 95% t interval)")
    except (OSError, ValueError) as exc:
        print(f"fastsep compare: error: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        half = "" if r["low"] is None else f" ± {(r['high'] - r['low']) / 2:.2f}"
        sig = "*" if r["low"] is not None and (r["low"] > 0 or r["high"] < 0) else ""
        name = f"{r['bundle']}: " if "bundle" in r else ""
        print(f"{name}{r['mode']:<10} {r['mean']:+.2f}{half}{sig}  (n = {r['n']})")
    return 0
