"""How separable is a test set? Oracle time-frequency masks on the very mixtures ``fastsep eval`` scores.

A mask computed from the reference sources (which no separator sees) bounds what masking in that STFT can reach:
the ideal ratio mask |S_k| / sum_j |S_j| and the ideal binary mask (the loudest source takes the bin), applied to the
mixture's STFT and inverted. The mixtures are ``fastsep eval``'s (same corpus split, segment, seeds and order), so
the figures sit beside its table::

    python benchmarks/oracle_masks.py --data WORK/recorded [--max-items 100] [--n-fft 256 --hop 64]

Prints JSON: per mask, the mean SI-SDRi in dB and its 95 % t interval half-width, over ``--max-items`` mixtures.
"""
from __future__ import annotations

import argparse
import json

import torch


def oracle_estimates(mixture: torch.Tensor, sources: torch.Tensor, n_fft: int, hop: int) -> dict:
    """``{"irm": [C, T], "ibm": [C, T]}``: the oracle masks' estimates of ``sources [C, T]`` from ``mixture [T]``."""
    window = torch.hann_window(n_fft, dtype=mixture.dtype)

    def spec(x):
        return torch.stft(x, n_fft, hop, window=window, return_complex=True)

    mix, refs = spec(mixture), spec(sources)
    mags = refs.abs()
    masks = {"irm": mags / mags.sum(0, keepdim=True).clamp_min(1e-12),
             "ibm": (mags == mags.max(0, keepdim=True).values).to(mixture.dtype)}
    return {name: torch.istft(m * mix, n_fft, hop, window=window, length=mixture.shape[-1])
            for name, m in masks.items()}


def main(argv=None) -> int:
    from fastsep.data import open_mixture_dataset
    from fastsep.metrics import mean_confidence_interval, si_sdr_improvement

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a fastsep corpus (its test split), as given to fastsep eval")
    parser.add_argument("--split", default="test")
    parser.add_argument("--segment", type=float, default=4.0)
    parser.add_argument("--max-items", type=int, default=200, help="the first N mixtures (eval's default 200)")
    parser.add_argument("--n-src", type=int, default=2)
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--n-fft", type=int, default=256)
    parser.add_argument("--hop", type=int, default=64)
    args = parser.parse_args(argv)
    data = open_mixture_dataset(args.data, n_src=args.n_src, sample_rate=args.sample_rate, segment=args.segment,
                                split=args.split, fixed=True)  # the mixtures fastsep eval scores
    scores = {"irm": [], "ibm": []}
    for i in range(min(len(data), args.max_items)):
        item = data[i]
        mixture, sources = item["mixture"].double(), item["sources"].double()
        for name, est in oracle_estimates(mixture, sources, args.n_fft, args.hop).items():
            # the masks keep the references' order: no permutation to solve
            scores[name].append(float(si_sdr_improvement(est, sources, mixture.expand_as(sources)).mean()))
    report = {"data": args.data, "split": args.split, "items": len(scores["irm"]), "n_fft": args.n_fft,
              "hop": args.hop}
    for name, values in scores.items():
        mean, lo, hi = mean_confidence_interval(values)
        report[name] = {"si_sdri": mean, "ci95_half_width": (hi - lo) / 2}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
