"""Do several views of a mixture (both polarities, runs of one recipe under other seeds) swap talkers at the same
places? (session 21)

For each of the first N fixed evaluation mixtures of a set, every member B is run on the mixture and on its negation
(estimate negated back). The views are combined three ways and scored with the swap diagnostic
(fastsep.metrics.separation_scores' si_sdri and si_sdri_seg): the first view alone; the views averaged after one
whole-mixture alignment to the first (what fastsep ensemble does); and the views averaged after a per-0.5 s
alignment whose orientation is the majority vote of the views in each segment. If the views swapped at different
places, the vote would undo the first view's swaps (its swap cost would fall); if they swap at the same places, only
the averaging within segments improves.

    python recipes/swap_views.py --data WORK/recorded --split test --members B1 B2 ... [--max-items 100]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from fastsep.data import open_mixture_dataset
from fastsep.metrics import SWAP_SEGMENT_SECONDS, separation_scores
from fastsep.models.io import load_model
from fastsep.separator import INPUT_RMS


def _corr(a, b):
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-9))


def _swapped(ref, view, sl=slice(None)):
    """Does ``view`` fit ``ref`` better with its two outputs exchanged (over the samples ``sl``)?"""
    keep = _corr(ref[0, sl], view[0, sl]) + _corr(ref[1, sl], view[1, sl])
    cross = _corr(ref[0, sl], view[1, sl]) + _corr(ref[1, sl], view[0, sl])
    return cross > keep


def _flip(view, flips, seg):
    out = view.clone()
    for k, f in enumerate(flips):
        if f:
            out[:, k * seg:(k + 1) * seg] = view[[1, 0], k * seg:(k + 1) * seg]
    return out


def combine(views, seg):
    """(whole-mixture aligned mean, per-segment majority-aligned mean) of two-talker ``views`` [2, T] each."""
    first = views[0]
    aligned = [first] + [v[[1, 0]] if _swapped(first, v) else v for v in views[1:]]
    segments = -(-first.shape[-1] // seg)
    votes = [sum(_swapped(first, v, slice(k * seg, (k + 1) * seg)) for v in aligned[1:]) for k in range(segments)]
    ref = _flip(first, [n > (len(aligned) - 1) / 2 for n in votes], seg)
    per_segment = [_flip(v, [_swapped(ref, v, slice(k * seg, (k + 1) * seg)) for k in range(segments)], seg)
                   for v in aligned]
    return torch.stack(aligned).mean(0), torch.stack(per_segment).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--members", nargs="+", required=True, help="backbone folders (model.json + weights)")
    parser.add_argument("--max-items", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = [load_model(m).eval() for m in args.members]
    data = open_mixture_dataset(args.data, n_src=2, sample_rate=8000, segment=4.0, split=args.split, fixed=True)
    seg = int(SWAP_SEGMENT_SECONDS * 8000)
    rows = {}
    for i in range(min(args.max_items, len(data))):
        item = data[i]
        mix, ref = item["mixture"], item["sources"]
        x = (mix * (INPUT_RMS / mix.pow(2).mean().sqrt().clamp_min(1e-8)))[None]  # the level Separator feeds B
        with torch.inference_mode():
            views = [v for m in models for v in (m(x)[0], -m(-x)[0])]
        whole, per_segment = combine(views, seg)
        for key, est in (("first view", views[0]), (f"{len(views)} views, one alignment", whole),
                         (f"{len(views)} views, per-segment vote", per_segment)):
            s = separation_scores(est.double(), ref.double(), mix.double(), 8000, ["si_sdri", "si_sdri_seg"])
            rows.setdefault(key, []).append((float(s["si_sdri"].mean()), float(s["si_sdri_seg"].mean())))
    print(f"{args.data} ({args.split}), {len(rows['first view'])} mixtures, members: {' '.join(args.members)}")
    for key, vals in rows.items():
        v = np.array(vals)
        print(f"{key:32s} SI-SDRi {v[:, 0].mean():.2f}  matched per 0.5 s {v[:, 1].mean():.2f}  "
              f"swaps cost {(v[:, 1] - v[:, 0]).mean():.2f}")


if __name__ == "__main__":
    main()
