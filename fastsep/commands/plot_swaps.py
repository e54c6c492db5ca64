"""``fastsep plot swaps --data D [--model M] -o OUT.png``: where in each mixture a separator hands a talker from one
output to the other.

Each of the first ``--max-items`` fixed evaluation mixtures (the ones ``fastsep eval`` scores) is separated, and
every 0.5 s segment gets its match margin (:func:`fastsep.metrics.segment_match_margins`): how much better the
whole mixture's assignment of outputs to talkers fits the segment than the other one. The rows are drawn worst
first, by what swaps cost the mixture (``si_sdri_seg - si_sdri``, the ``swaps`` metric of ``fastsep eval``).

That cost is an upper bound: matched afresh, a segment the separator got wrong for both talkers gains a little by
chance too. For two talkers the command also reports what undoing only the clear swaps gains (segments whose
talkers fit the other assignment by more than ``--clear-db``, 3 dB by default).
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep plot swaps``."""
    parser.add_argument("--data", required=True, help="evaluation data, as for fastsep eval")
    parser.add_argument("--split", default="test", help="split of the data (default test)")
    parser.add_argument("--model", default=None, help="bundle to separate with (default: the bundled model)")
    parser.add_argument("--mode", default="backbone", help="separation mode (default backbone)")
    parser.add_argument("--segment", type=float, default=4.0,
                        help="seconds per mixture when mixing a single-talker corpus (default 4, as fastsep eval)")
    parser.add_argument("--max-items", type=int, default=30, help="mixtures separated (default 30)")
    parser.add_argument("--rows", type=int, default=30, help="mixtures drawn, worst first (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="sampling noise seed, as for fastsep eval")
    parser.add_argument("--clear-db", type=float, default=3.0,
                        help="a segment whose match margin is below minus this is a clear swap (default 3 dB)")
    parser.add_argument("-o", "--out", required=True, help="PNG file to write")


def main(args: argparse.Namespace) -> int:
    import torch

    from ..data import open_mixture_dataset
    from ..metrics import (SWAP_SEGMENT_SECONDS, pit, segment_bounds, segment_match_margins, separation_scores,
                           si_sdr_improvement, swap_segment)
    from ..plots import MatplotlibMissing, save_figure, swap_map_figure
    from ..separator import Separator

    try:
        if args.max_items < 1 or args.rows < 1:
            raise ValueError("--max-items and --rows must be >= 1")
        sep = Separator.from_pretrained(args.model) if args.model else Separator.from_pretrained()
        if args.mode not in sep.modes:
            raise ValueError(f"--mode {args.mode!r}: the bundle has {', '.join(sep.modes)}")
        data = open_mixture_dataset(args.data, n_src=sep.n_src, sample_rate=sep.sample_rate,
                                    segment=args.segment or None, split=args.split, fixed=True)
        segment = swap_segment(sep.sample_rate)
        rows, clear = [], []
        for i in range(min(args.max_items, len(data))):
            item = data[i]
            mix, ref = item["mixture"], item["sources"]
            est = torch.as_tensor(sep.separate(mix[None], mode=args.mode, seed=args.seed + i))[0].double()
            scores = separation_scores(est, ref, mix, sep.sample_rate, ["si_sdri", "si_sdri_seg"])
            cost = float((scores["si_sdri_seg"] - scores["si_sdri"]).mean())
            margins = segment_match_margins(est, ref.double(), segment)
            if sep.n_src == 2:
                matched = pit(est[None], ref.double()[None])[0][0]
                undone = matched.clone()
                for (a, b), margin in zip(segment_bounds(est.shape[-1], segment), margins.tolist()):
                    if margin < -args.clear_db:
                        undone[:, a:b] = matched[[1, 0], a:b]
                clear.append(float((si_sdr_improvement(undone, ref.double(), mix.double())
                                    - scores["si_sdri"]).mean()))
            rows.append((cost, i, margins.numpy()))
        rows.sort(key=lambda r: -r[0])
        shown = rows[:args.rows]
        labels = [f"#{i}: {cost:.1f} dB" for cost, i, _ in shown]
        name = os.path.basename(os.path.normpath(args.data))
        title = f"{args.mode}, {name} ({args.split}): talker swaps, worst {len(shown)} of {len(rows)}"
        save_figure(swap_map_figure([m for _, _, m in shown], labels, SWAP_SEGMENT_SECONDS, title=title), args.out)
    except (ValueError, OSError, MatplotlibMissing) as exc:
        print(f"fastsep plot swaps: {exc}", file=sys.stderr)
        return 2
    costs = [c for c, _, _ in rows]
    print(f"{len(rows)} mixtures: swaps cost {sum(costs) / len(costs):.2f} dB SI-SDRi on average (matched per "
          f"segment); {sum(c > 1.0 for c in costs)} lose more than 1 dB")
    if clear:
        print(f"undoing only the clear swaps (margin below -{args.clear_db:g} dB) gains {sum(clear) / len(clear):.2f} "
              "dB on average")
    print(f"wrote {args.out}")
    return 0
