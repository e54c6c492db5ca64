"""``fastsep eval --data DIR``: SI-SDRi of the backbone, xcorr and full modes on a test set (the paper's Table 1)."""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Dict, Iterable, Optional, Sequence

import torch

MODE_LABELS = {"backbone": "B (backbone alone)", "xcorr": "B + GM, xcorr-aligned average (ablation)",
               "full": "B + GM + F (Separate-And-Diffuse)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep eval``."""
    parser.add_argument("--data", required=True, help="wsj0-mix, LibriMix or fastsep-corpus folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--segment", type=float, default=4.0,
                        help="seconds per mixture when mixing a single-talker corpus (default 4, fixed crops); "
                             "0 keeps whole utterances cut to the shorter one; pre-mixed sets are used as they are")
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--modes", default="backbone,xcorr,full", help="comma-separated modes to score")
    parser.add_argument("--max-items", type=int, default=200,
                        help="score the first N mixtures (default 200; 0 scores them all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="vocoder noise seed: mixture i is separated with seed + i (default 0), so runs agree")
    parser.add_argument("--json", default=None, help="write the results here (default: <model or .>/eval.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="vocoder sampling precision; bfloat16 is faster on CPUs with AVX512-BF16")
    parser.add_argument("--vocoder-quality", action="store_true",
                        help="also score GM's re-synthesis of the clean sources (SI-SDR, log-spectral distance)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (default: a bar on a terminal, else a line on stderr every 10%%)")


class _Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI, nohup) a plain line on stderr every 10 % of the items."""

    def __init__(self, total: int, enabled: Optional[bool]):
        from tqdm.auto import tqdm

        self.total, self.done = total, 0
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc="eval", unit="mix", file=sys.stderr) if enabled is not False and tty \
            else None
        self.lines = enabled is not False and not tty
        self.step = max(1, total // 10)
        self.start = time.monotonic()

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.lines and (self.done % self.step == 0 or self.done == self.total):
            took = time.monotonic() - self.start
            print(f"eval: {self.done}/{self.total} mixtures, {took:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate(separator, dataset, modes: Sequence[str] = ("backbone", "xcorr", "full"),
             max_items: Optional[int] = None, progress: Optional[bool] = None, seed: int = 0) -> Dict[str, dict]:
    """Mean SI-SDR and SI-SDRi (dB) per mode over ``dataset`` items ``{"mixture": [T], "sources": [C, T]}``.

    Each mode's estimates are matched to the references by the permutation maximising SI-SDR (fastsep.metrics.pit),
    as is standard for separation benchmarks. Mixture i is separated with vocoder seed ``seed + i``, so two runs
    give the same scores. ``max_items``: None or 0 scores every item.
    """
    from ..metrics import pit, si_sdr

    n = len(dataset) if not max_items else min(len(dataset), int(max_items))
    if n == 0:
        raise ValueError("the evaluation set is empty")
    sums = {m: {"si_sdr": 0.0, "si_sdri": 0.0} for m in modes}
    bar = _Progress(n, progress)
    for i in range(n):
        item = dataset[i]
        mix, ref = item["mixture"].float(), item["sources"].float()
        if ref.shape[0] != separator.n_src:
            raise ValueError(f"item {item.get('id', i)} has {ref.shape[0]} sources; the model separates "
                             f"{separator.n_src}")
        base = si_sdr(mix.expand_as(ref), ref)
        for mode in modes:
            est = separator.separate(mix, mode=mode, seed=seed + i).cpu()
            matched, _ = pit(est[None], ref[None])
            score = si_sdr(matched[0], ref)
            sums[mode]["si_sdr"] += float(score.mean())
            sums[mode]["si_sdri"] += float((score - base).mean())
        bar.update()
    bar.close()
    return {m: {k: v / n for k, v in s.items()} | {"n": n} for m, s in sums.items()}


def log_spectral_distance(estimate, reference, n_fft: int = 256, hop: int = 64, floor: float = 1e-8) -> float:
    """Log-spectral distance in dB: per frame, the RMS over frequency of the difference of the two log power spectra
    (10 log10), averaged over the reference's frames that are within 60 dB of its loudest (pauses excluded)."""
    window = torch.hann_window(n_fft)
    spec = [torch.stft(x.float(), n_fft, hop, window=window, return_complex=True).abs().pow(2)
            for x in (estimate, reference)]
    est_db, ref_db = (10 * torch.log10(p + floor) for p in spec)
    frame_db = 10 * torch.log10(spec[1].sum(-2) + floor)
    active = frame_db > frame_db.max() - 60
    per_frame = (est_db - ref_db).pow(2).mean(-2).sqrt()
    return float(per_frame[active].mean())


def vocoder_quality(separator, dataset, max_items: Optional[int] = None, seed: int = 0) -> Dict[str, float]:
    """How well GM re-synthesises clean speech: mean SI-SDR (dB) and log-spectral distance (dB) of
    ``vocoder.vocode(source)`` against each clean source of the first ``max_items`` items (at the level the
    separator feeds its models, seeded per source)."""
    from ..metrics import si_sdr

    if separator.vocoder is None:
        raise ValueError("this bundle has no vocoder")
    n = len(dataset) if not max_items else min(len(dataset), int(max_items))
    sdr, lsd, count = 0.0, 0.0, 0
    for i in range(n):
        for k, src in enumerate(dataset[i]["sources"].float()):
            level = src.pow(2).mean().sqrt().clamp_min(1e-8)
            x = src * (0.08 / level)
            with torch.no_grad():
                y = separator.vocoder.vocode(x, seed=seed + 1000 * i + k)
            sdr += float(si_sdr(y, x))
            lsd += log_spectral_distance(y, x)
            count += 1
    return {"si_sdr": sdr / count, "lsd_db": lsd / count, "n_sources": count}


def format_table(results: Dict[str, dict]) -> str:
    """A plain-text table like the paper's Table 1: one row per method."""
    width = max(len(MODE_LABELS.get(m, m)) for m in results)
    lines = [f"{'Method':<{width}}  {'SI-SDRi (dB)':>12}  {'SI-SDR (dB)':>11}", "-" * (width + 27)]
    for mode, r in results.items():
        lines.append(f"{MODE_LABELS.get(mode, mode):<{width}}  {r['si_sdri']:>12.2f}  {r['si_sdr']:>11.2f}")
    n = next(iter(results.values()))["n"]
    lines.append(f"({n} mixtures)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import os

    from ..data import open_mixture_dataset
    from ..data.manifest import find_manifest
    from ..fileio import atomic_write_json
    from ..separator import MODES, Separator

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        print(f"fastsep eval: --modes must list some of {', '.join(MODES)}, got {args.modes!r}", file=sys.stderr)
        return 2
    try:
        sep = Separator.from_pretrained(args.model, device=args.device, vocoder_precision=args.precision)
        if args.segment < 0:
            raise ValueError(f"--segment must be >= 0 seconds, got {args.segment}")
        segment = args.segment or None
        if find_manifest(args.data) is None:
            segment = None  # LibriMix / wsj0-mix: the published mixtures, whole
        data = open_mixture_dataset(args.data, n_src=sep.n_src, sample_rate=sep.sample_rate, segment=segment,
                                    split=args.split)
        if args.max_items < 0:
            raise ValueError(f"--max-items must be >= 0, got {args.max_items}")
        total = len(data)
        results = evaluate(sep, data, modes, args.max_items, progress=False if args.no_progress else None,
                           seed=args.seed)
        vocoder = vocoder_quality(sep, data, args.max_items, args.seed) if args.vocoder_quality else None
    except (FileNotFoundError, ValueError) as exc:
        print(f"fastsep eval: {exc}", file=sys.stderr)
        return 2
    n = next(iter(results.values()))["n"]
    print(format_table(results))
    if vocoder is not None:
        print(f"vocoder re-synthesis of the clean sources: SI-SDR {vocoder['si_sdr']:.2f} dB, log-spectral distance "
              f"{vocoder['lsd_db']:.2f} dB ({vocoder['n_sources']} sources)")
    print(f"vocoder noise: mixture i seeded with {args.seed} + i; scored {n} of {total} mixtures"
          + (" (--max-items 0 scores all)" if n < total else ""))
    out = args.json or os.path.join(args.model or ".", "eval.json")
    # Names only: an absolute path would record this machine's layout in a file meant to be shared.
    atomic_write_json(out, {"data": os.path.basename(os.path.normpath(args.data)), "split": args.split,
                            "segment": segment,
                            "seed": args.seed, "items": n, "items_available": total, "results": results}
                      | ({"vocoder_resynthesis": vocoder} if vocoder is not None else {}))
    print(f"results written to {out}")
    return 0
