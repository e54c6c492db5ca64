"""How talker tracking's threshold trades undone swaps against new ones, on fixed mixtures of a set (issue 9).

    python recipes/tracker_thresholds.py --embedding runs/default/tracker/best --data runs/default/klettres \
        --split train --thresholds 0 0.1 0.2 0.4

The default's B outputs on the set's first N fixed 4 s mixtures (the mixtures `fastsep eval` scores) are computed once
and cached beside the embedding; then, for each threshold, the mean change of SI-SDR (whole-mixture match) that
tracking makes, how many mixtures it changes, and how many of those it improves. Choose the threshold on a set that
is neither a test set nor a training set of B or the embedding (klettres), then report the test sets.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastsep.data import open_mixture_dataset  # noqa: E402
from fastsep.metrics import pit, segment_permuted, si_sdr  # noqa: E402
from fastsep.models.io import load_model  # noqa: E402
from fastsep.separator import Separator  # noqa: E402
from fastsep.tracking import track_talkers  # noqa: E402


def separated(data: str, split: str, items: int, separator: str, cache: str):
    if os.path.exists(cache):
        return torch.load(cache, weights_only=True)
    sep = Separator.from_pretrained(separator)
    ds = open_mixture_dataset(data, n_src=sep.n_src, sample_rate=sep.sample_rate, segment=4.0, split=split,
                              fixed=True)
    est, ref = [], []
    with torch.no_grad():
        for i in range(min(items, len(ds))):
            item = ds[i]
            est.append(sep.backbone(item["mixture"][None].float())[0])
            ref.append(item["sources"].float())
    out = {"est": torch.stack(est), "ref": torch.stack(ref)}
    torch.save(out, cache)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--embedding", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--separator", default="fastsep/assets/default")
    p.add_argument("--max-changes", type=int, default=2)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0, 0.05, 0.1, 0.2, 0.4, 0.8])
    a = p.parse_args()
    torch.set_num_threads(1)
    name = os.path.basename(os.path.normpath(a.data))
    cache = os.path.join("runs", "tracker", f"separated_{name}_{a.split}_{a.items}.pt")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    s = separated(a.data, a.split, a.items, a.separator, cache)
    emb = load_model(a.embedding).eval()
    base = torch.stack([si_sdr(pit(e[None], r[None])[0], r[None]).mean() for e, r in zip(s["est"], s["ref"])])
    oracle = torch.stack([si_sdr(segment_permuted(e, r, 4000)[None], r[None]).mean() for e, r in zip(s["est"], s["ref"])])
    print(f"{name} {a.split}: {len(base)} mixtures, B's SI-SDR {float(base.mean()):.2f} dB, matched per 0.5 s "
          f"{float(oracle.mean()):.2f} dB (what undoing every swap would reach)")
    for th in a.thresholds:
        gains = []
        for e, r in zip(s["est"], s["ref"]):
            t, _ = track_talkers(emb, e, 8000, 0.5, th, max_changes=a.max_changes)
            gains.append(float(si_sdr(pit(t[None], r[None])[0], r[None]).mean()))
        d = np.array(gains) - base.numpy()
        changed = np.abs(d) > 1e-4
        print(f"threshold {th:5.2f}: SI-SDR change {d.mean():+.2f} dB (± {1.96 * d.std(ddof=1) / np.sqrt(len(d)):.2f}); "
              f"changed {changed.sum()} mixtures, {(d > 1e-4).sum()} for the better")
    return 0


if __name__ == "__main__":
    sys.exit(main())
