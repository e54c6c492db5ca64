"""``fastsep plot bounds OUT.png``: the paper's analysis as a figure -- rho against the generator's noise variance for
C = 2..20 and the eq. 6 / eq. 21 SDR bounds with measured SI-SDR values marked (from ``fastsep eval`` JSON files or
given on the command line)."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import List


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep plot bounds``."""
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--eval", action="append", default=[], metavar="JSON",
                        help="a fastsep eval JSON whose modes' mean SI-SDR is marked (repeatable; default: the "
                             "bundled model's eval*.json, unless --measured is given)")
    parser.add_argument("--measured", action="append", default=[], metavar="C:DB[:LABEL]",
                        help="a measured SI-SDR (dB) on C-talker mixtures, e.g. 2:5.53:full (repeatable)")
    parser.add_argument("--sources", default="2-20", help="numbers of talkers C for the curves: A-B or a,b,c "
                                                          "(default 2-20)")
    parser.add_argument("--length", type=float, default=4.0, help="signal length L in seconds (default 4)")
    parser.add_argument("--segment-ms", type=float, default=20.0, help="segment width w in ms (default 20)")
    parser.add_argument("--rho", type=float, default=1.0, help="rho of the eq. 21 bound (default 1, the paper's)")


def _parse_sources(text: str) -> List[int]:
    text = text.strip()
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-", 1))
        values = list(range(lo, hi + 1))
    else:
        values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 2:
        raise ValueError(f"--sources must name numbers of talkers >= 2, got {text!r}")
    return values


def _parse_measured(text: str):
    from ..plots import Measured

    parts = text.split(":", 2)
    if len(parts) < 2:
        raise ValueError(f"--measured expects C:DB[:LABEL], got {text!r}")
    c, db = int(parts[0]), float(parts[1])
    if c < 2:
        raise ValueError(f"--measured: C must be >= 2, got {c}")
    return Measured(c, db, parts[2] if len(parts) > 2 else f"C={c}")


def measured_from_eval(path: str):
    """One point per mode of a ``fastsep eval`` JSON: its mean SI-SDR at the JSON's number of talkers (older files
    without ``n_src`` take it from the bundle.json beside them)."""
    from ..plots import Measured

    with open(path) as f:
        data = json.load(f)
    n_src = data.get("n_src")
    if n_src is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), "bundle.json")
        if not os.path.exists(beside):
            raise ValueError(f"{path} does not say how many talkers it scored (no n_src, no bundle.json beside it)")
        with open(beside) as f:
            n_src = json.load(f)["n_src"]
    stem = os.path.splitext(os.path.basename(path))[0]
    return [Measured(int(n_src), float(r["si_sdr"]), f"{mode}, {stem}")
            for mode, r in data.get("results", {}).items() if r.get("si_sdr") is not None]


def main(args: argparse.Namespace) -> int:
    from ..plots import MatplotlibMissing, bounds_figure, save_figure
    from ..separator import DEFAULT_BUNDLE

    try:
        sources = _parse_sources(args.sources)
        measured = [_parse_measured(m) for m in args.measured]
        evals = args.eval or ([] if measured else sorted(glob.glob(os.path.join(DEFAULT_BUNDLE, "eval*.json"))))
        for path in evals:
            measured += measured_from_eval(path)
        if not (args.length > 0 and args.segment_ms > 0):
            raise ValueError("--length and --segment-ms must be positive")
        fig = bounds_figure(measured, sources, length_s=args.length, segment_ms=args.segment_ms, rho_value=args.rho)
        save_figure(fig, args.out)
    except (ValueError, OSError, KeyError) as exc:
        print(f"fastsep plot bounds: {exc}", file=sys.stderr)
        return 2
    except MatplotlibMissing as exc:
        print(f"fastsep plot bounds: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (rho for C = {sources[0]}..{sources[-1]}; bounds with {len(measured)} measured "
          f"point(s))")
    return 0
