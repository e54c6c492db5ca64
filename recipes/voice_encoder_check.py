"""What a pretrained speaker encoder hears in B's outputs and in the test pairs (issue 9, session 25).

    python recipes/voice_encoder_check.py --data runs/default/recorded
    python recipes/voice_encoder_check.py --data runs/default/steelsky --split train \
        --scores recipes/results/default_polarity/eval_steelsky.csv

With the GE2E encoder of `fastsep import-encoder` (WORK/voice_encoder), on the first N fixed 4 s mixtures of a set
(B's outputs cached by recipes/tracker_check.py in WORK/tracker_cache/; run that first, or this computes them):

- how well it tells pieces (0.5, 1, 2 s) of the two clean references apart (AUC: a same-talker pair of pieces more
  alike than a two-talker pair), and pieces of B's two outputs (same output against the other output);
- how often each of B's whole outputs is nearer its own talker than the other talker;
- given a `fastsep eval --csv` of the set (``--scores``), how the backbone's SI-SDRi of a mixture goes with how
  alike its two talkers sound (one embedding per talker from its utterances,
  :func:`fastsep.data.voice_similarity.talker_embeddings`).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastsep.data.voice_similarity import talker_embeddings  # noqa: E402
from fastsep.metrics import pit  # noqa: E402
from fastsep.models.io import load_model  # noqa: E402


def auc(same, diff) -> float:
    same, diff = np.asarray(same), np.asarray(diff)
    return float((same[:, None] > diff[None, :]).mean())


@torch.no_grad()
def piece_auc(enc, signals, piece: int) -> float:
    """AUC of same-row against other-row pairs of active pieces (each row of ``signals [2, T]`` one talker or one
    output), embeddings centred within the mixture."""
    same, diff = [], []
    for r in signals:
        k = r.shape[-1] // piece
        p = r[:, :k * piece].reshape(2 * k, piece)
        energy = p.pow(2).mean(-1)
        active = 10 * torch.log10(energy + 1e-10) > 10 * torch.log10(energy.max() + 1e-10) - 15
        e = enc(p)
        e = e - e.mean(0)
        e = e / e.norm(dim=-1, keepdim=True)
        c = e @ e.T
        row = torch.arange(2).repeat_interleave(k)
        for i in range(2 * k):
            for j in range(i + 1, 2 * k):
                if active[i] and active[j]:
                    (same if row[i] == row[j] else diff).append(float(c[i, j]))
    return auc(same, diff)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--encoder", default=None, help="default: WORK/voice_encoder beside --data")
    p.add_argument("--scores", default=None, help="a `fastsep eval --csv` of the set (backbone rows are read)")
    a = p.parse_args()
    torch.set_num_threads(1)
    work = os.path.dirname(os.path.abspath(a.data))
    enc = load_model(a.encoder or os.path.join(work, "voice_encoder")).eval()
    name = os.path.basename(os.path.normpath(a.data))
    cache = os.path.join(work, "tracker_cache", f"separated_{name}_{a.split}_{a.items}.pt")
    if not os.path.exists(cache):
        from tracker_check import separated  # noqa: E402 - the same cached outputs as the tracking check

        os.makedirs(os.path.dirname(cache), exist_ok=True)
        separated(a.data, a.split, a.items, "fastsep/assets/default", cache)
    s = torch.load(cache, weights_only=True)
    est = torch.stack([pit(e[None], r[None])[0][0] for e, r in zip(s["est"], s["ref"])])
    for piece in (4000, 8000, 16000):
        print(f"{name}: {piece / 8000:.1f} s pieces, AUC clean talkers {piece_auc(enc, s['ref'][:60], piece):.3f}, "
              f"B's outputs {piece_auc(enc, est[:60], piece):.3f}")
    right, margins = 0, []
    with torch.no_grad():
        for e, r in zip(est, s["ref"]):
            c = enc(e) @ enc(r).T
            right += int(c[0, 0] > c[0, 1]) + int(c[1, 1] > c[1, 0])
            margins += [float(c[0, 0] - c[0, 1]), float(c[1, 1] - c[1, 0])]
    print(f"{name}: B's whole output nearer its own talker than the other in {right} of {2 * len(est)} "
          f"(mean cosine margin {np.mean(margins):+.3f})")
    if a.scores:
        emb = talker_embeddings(a.data, enc, a.split)
        sims, scores = [], []
        for row in csv.DictReader(open(a.scores)):
            if row["mode"] != "backbone":
                continue
            talkers = [t for t in emb if f"{t}-{t}_u" in row["id"]]  # ids read <talker>-<talker>_uNNNN_...
            if len(talkers) == 2:
                sims.append(float(emb[talkers[0]] @ emb[talkers[1]]))
                scores.append(float(row["si_sdri"]))
        sims, scores = np.array(sims), np.array(scores)
        half = sims >= np.median(sims)
        print(f"{name}: {len(sims)} mixtures, correlation of talker similarity with SI-SDRi "
              f"{np.corrcoef(sims, scores)[0, 1]:+.2f}; similar half {scores[half].mean():.2f} dB, dissimilar half "
              f"{scores[~half].mean():.2f} dB; pair cosine mean {sims.mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
