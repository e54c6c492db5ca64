"""``fastsep compare``: paired per-mixture differences between two ``fastsep eval --csv`` files of the same mixtures.

    fastsep eval --data WORK/recorded --model OLD --csv old.csv ...
    fastsep eval --data WORK/recorded --model NEW --csv new.csv ...
    fastsep compare old.csv new.csv            # per mode: mean of (new - old) +- its 95 % t interval

Two models scored on the same fixed, seeded mixtures differ per mixture far less than their means' intervals
suggest, so the paired difference is the number that says whether one is better. The mixtures are matched by their
item number and id (a file whose ids differ was made from other data or another --segment/--seed, and is refused).
"""
from __future__ import annotations

import argparse
import csv
import sys
from typing import Dict, List, Tuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep compare``."""
    parser.add_argument("before", help="eval CSV of the reference model (fastsep eval --csv)")
    parser.add_argument("after", help="eval CSV of the model compared with it, on the same mixtures")
    parser.add_argument("--metric", default="si_sdri", help="CSV column to compare (default si_sdri)")


def read_scores(path: str, metric: str) -> Dict[Tuple[str, str], Dict[str, float]]:
    """``{(bundle, mode): {item:id -> score}}`` of one eval CSV; empty cells (unscorable) are left out."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"item", "id", "mode", metric} <= set(reader.fieldnames):
            raise ValueError(f"{path} is not a fastsep eval CSV with a {metric!r} column")
        out: Dict[Tuple[str, str], Dict[str, float]] = {}
        for row in reader:
            if row[metric] == "":
                continue
            out.setdefault((row.get("bundle", ""), row["mode"]), {})[f"{row['item']}:{row['id']}"] = float(row[metric])
    return out


def compare(before: str, after: str, metric: str = "si_sdri") -> List[dict]:
    """One dict per mode present in both files (each holding one bundle): mode, n, mean, low, high of after - before."""
    from ..metrics import mean_confidence_interval

    old, new = read_scores(before, metric), read_scores(after, metric)
    for path, scores in ((before, old), (after, new)):
        bundles = {b for b, _ in scores}
        if len(bundles) > 1:
            raise ValueError(f"{path} scores several bundles ({', '.join(sorted(bundles))}); compare one at a time")
    old_modes = {m: v for (_, m), v in old.items()}
    new_modes = {m: v for (_, m), v in new.items()}
    rows = []
    for mode in [m for m in new_modes if m in old_modes]:
        a, b = old_modes[mode], new_modes[mode]
        if set(a) != set(b):
            raise ValueError(f"the two files score other mixtures in mode {mode!r} ({len(set(a) ^ set(b))} differ): "
                             f"same --data, --split, --segment, --seed and --max-items are needed")
        diffs = [b[k] - a[k] for k in sorted(a)]
        mean, low, high = mean_confidence_interval(diffs)
        rows.append({"mode": mode, "n": len(diffs), "mean": mean, "low": low, "high": high})
    if not rows:
        raise ValueError("the two files share no mode")
    return rows


def main(args: argparse.Namespace) -> int:
    try:
        rows = compare(args.before, args.after, args.metric)
    except (OSError, ValueError) as exc:
        print(f"fastsep compare: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.metric}: {args.after} - {args.before}, paired per mixture (mean ± 95% t interval)")
    for r in rows:
        half = "" if r["low"] is None else f" ± {(r['high'] - r['low']) / 2:.2f}"
        sig = "*" if r["low"] is not None and (r["low"] > 0 or r["high"] < 0) else ""
        print(f"{r['mode']:<10} {r['mean']:+.2f}{half}{sig}  (n = {r['n']})")
    return 0
