"""Does a talker embedding tell the talkers apart on B's outputs, and what does tracking with it do? (issue 9)

    python recipes/tracker_check.py --embedding runs/default/tracker/best --data runs/default/klettres \
        --split train --thresholds 0 0.2 0.5 1

The default's B outputs on the set's first N fixed 4 s mixtures (the mixtures `fastsep eval` scores) are computed once
and cached (WORK/tracker_cache/, beside the corpus). Then, from the pieces (0.5 s) whose talker is clear (each output matched to the
references per piece, margin >= 3 dB, the talker active):

- the mean cosine between the embeddings of two pieces, by whether they lie on the same output and hold the same
  talker. An embedding that knows the talkers scores one talker on both outputs above two talkers on one output;
- in the mixtures where B swaps (a clear piece on the other talker's output), how often the true order of the
  pieces is the more coherent one (what tracking maximises) against B's order;
- for each threshold, the mean change of SI-SDR (whole-mixture match) that tracking makes, how many mixtures it
  changes, and how many of those it improves.

Choose the threshold on a set that is neither a test set nor a training set of B or the embedding (klettres), then
report the test sets.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastsep.data import open_mixture_dataset  # noqa: E402
from fastsep.metrics import pit, segment_bounds, segment_permuted, si_sdr  # noqa: E402
from fastsep.models.io import load_model  # noqa: E402
from fastsep.commands.bundle_sad import load_part  # noqa: E402
from fastsep.tracking import _coherence, activity_weights, piece_embeddings, track_talkers  # noqa: E402
from fastsep.train.tracker import piece_labels  # noqa: E402

PIECE = 4000  # 0.5 s at 8 kHz


def talker_evidence(emb, est_all, ref_all, margin_db: float = 3.0) -> None:
    """Print the mean cosines by (output, talker) and how often the true order is the more coherent one."""
    cosines = {}
    swapped, truer = 0, 0
    with torch.no_grad():
        for e, r in zip(est_all, ref_all):
            e = pit(e[None], r[None])[0][0]
            bounds = segment_bounds(e.shape[-1], PIECE)
            if any(b - a != PIECE for a, b in bounds):
                continue
            lab = piece_labels(e, r, PIECE, margin_db)
            labels, mask = lab["labels"], lab["mask"]
            emb_p = piece_embeddings(emb, e, bounds)  # [C, K, D]
            n_src, n_pieces = labels.shape
            clear_swaps = [k for k in range(n_pieces) if mask[:, k].min() > 0
                           and not torch.equal(labels[:, k], torch.arange(n_src))]
            tag = " (mixtures with swaps)" if clear_swaps else ""
            for c1 in range(n_src):
                for k1 in range(n_pieces):
                    for c2 in range(n_src):
                        for k2 in range(n_pieces):
                            if (c1, k1) >= (c2, k2) or not (mask[c1, k1] and mask[c2, k2]):
                                continue
                            key = ("one output" if c1 == c2 else "two outputs") + ", " + \
                                  ("one talker" if labels[c1, k1] == labels[c2, k2] else "two talkers") + tag
                            cosines.setdefault(key, []).append(float(emb_p[c1, k1] @ emb_p[c2, k2]))
            if clear_swaps:
                w = activity_weights(e, bounds)
                centred = emb_p - (w[..., None] * emb_p).sum((0, 1)) / w.sum()
                weighted = w[..., None] * centred
                true = torch.stack([torch.argsort(labels[:, k]) if k in clear_swaps else torch.arange(n_src)
                                    for k in range(n_pieces)])
                swapped += 1
                truer += float(_coherence(weighted, true)) > float(_coherence(weighted, torch.arange(n_src).repeat(
                    n_pieces, 1)))
    for key in sorted(cosines):
        print(f"  mean cosine, pieces on {key:45s} {np.mean(cosines[key]):.3f} ({len(cosines[key])} pairs)")
    print(f"  mixtures where B swaps (a clear piece, margin >= {margin_db:g} dB): {swapped}; the true order is the "
          f"more coherent one in {truer}")


def separated(data: str, split: str, items: int, separator: str, cache: str):
    if os.path.exists(cache):
        return torch.load(cache, weights_only=True)
    backbone = load_part(separator, "backbone")  # a bundle, a backbone run or a tracked/ensembled B alike
    ds = open_mixture_dataset(data, n_src=int(backbone.config["n_src"]),
                              sample_rate=int(backbone.config["sample_rate"]), segment=4.0, split=split, fixed=True)
    est, ref = [], []
    with torch.no_grad():
        for i in range(min(items, len(ds))):
            item = ds[i]
            est.append(backbone(item["mixture"][None].float())[0])
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
    p.add_argument("--separator", default="fastsep/assets/default",
                   help="B: a bundle or a backbone folder (default: the shipped bundle's B)")
    p.add_argument("--max-changes", type=int, default=2)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0, 0.05, 0.1, 0.2, 0.4, 0.8])
    a = p.parse_args()
    torch.set_num_threads(1)
    name = os.path.basename(os.path.normpath(a.data))
    cache = os.path.join(os.path.dirname(os.path.abspath(a.data)), "tracker_cache",
                         f"separated_{name}_{a.split}_{a.items}.pt")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    s = separated(a.data, a.split, a.items, a.separator, cache)
    emb = load_model(a.embedding).eval()
    talker_evidence(emb, s["est"], s["ref"])
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
