"""``fastsep bench``: latency and real-time factor of each Separate-And-Diffuse stage, per length and batch size.

Stages: ``backbone`` (B), ``vocoder`` (GM: mel + fast sampling), ``combiner`` (F with its STFT/iSTFT), ``xcorr``
(STFT, alignment, average, iSTFT), and the whole ``full``/``xcorr``/``backbone`` modes. RTF = wall time / audio
duration of the whole batch (below 1: faster than real time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep bench``."""
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--random", action="store_true",
                        help="time untrained small presets instead of a bundle (ConvTasNet.small, a small DiffWave, F)")
    parser.add_argument("--lengths", default="1,4", help="comma-separated input lengths in seconds")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="vocoder sampling precision; bfloat16 is faster on CPUs with AVX512-BF16")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: see fastsep.threads: the cores this process may use)")


def small_random_separator(sample_rate: int = 8000, n_src: int = 2, device="cpu", vocoder_precision="float32"):
    """Untrained small presets of B, GM and F in a Separator (for timing and tests, never for separating)."""
    from ..models.combiner import Combiner
    from ..models.convtasnet import ConvTasNet
    from ..models.diffwave import DiffWave
    from ..separator import Separator

    backbone = ConvTasNet.small(n_src, sample_rate)
    vocoder = DiffWave(residual_layers=6, residual_channels=16, dilation_cycle_length=3, n_mels=40,
                       sample_rate=sample_rate, hop_length=128)
    return Separator(backbone, vocoder, Combiner(), sample_rate=sample_rate, n_src=n_src, device=device,
                     chunk_seconds=3600.0, vocoder_precision=vocoder_precision)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def bench(separator, lengths: Sequence[float], batch_sizes: Sequence[int], repeats: int = 3) -> List[Dict]:
    """One row per (stage, length, batch): seconds and real-time factor."""
    dev = separator.device
    rows = []
    for seconds in lengths:
        for batch in batch_sizes:
            n = int(round(seconds * separator.sample_rate))
            mix = (0.1 * torch.randn(batch, n, device=dev))
            vd = separator.backbone(mix)
            stages = {"backbone": lambda: separator.backbone(mix)}
            if separator.vocoder is not None:
                vg = separator._vocode(vd)
                stages["vocoder"] = lambda: separator._vocode(vd)
                stages["xcorr"] = lambda: separator._xcorr(vd, vg)
                if separator.combiner is not None:
                    stages["combiner"] = lambda: separator.combiner(vd, vg)
            for mode in ("backbone", "xcorr", "full"):
                try:
                    separator._check_mode(mode)
                except ValueError:
                    continue
                stages[f"mode:{mode}"] = (lambda m=mode: separator._run(mix, m))
            for name, fn in stages.items():
                sec = time_call(fn, repeats, dev)
                rows.append({"stage": name, "seconds_audio": seconds, "batch": batch, "latency_s": sec,
                             "rtf": sec / (seconds * batch)})
    return rows


def format_rows(rows: List[Dict]) -> str:
    lines = [f"{'stage':<16}{'audio s':>8}{'batch':>6}{'latency s':>11}{'RTF':>9}", "-" * 50]
    for r in rows:
        lines.append(f"{r['stage']:<16}{r['seconds_audio']:>8.1f}{r['batch']:>6d}{r['latency_s']:>11.4f}"
                     f"{r['rtf']:>9.4f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from ..separator import Separator
    from ..threads import set_threads, wait_policy

    try:
        set_threads(args.threads)
        lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
        batches = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
        if not lengths or min(lengths) <= 0 or not batches or min(batches) < 1:
            raise ValueError("--lengths must be positive seconds and --batch-sizes positive ints")
        if args.random:
            sep = small_random_separator(device=args.device, vocoder_precision=args.precision)
        else:
            sep = Separator.from_pretrained(args.model, device=args.device, chunk_seconds=3600.0,
                                             vocoder_precision=args.precision)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fastsep bench: {exc}", file=sys.stderr)
        return 2
    from .._ext import diffwave_cpu_variant
    from ..ops import uses_kernels

    with torch.no_grad():  # scoped: main() is also called in-process (tests, notebooks)
        rows = bench(sep, lengths, batches, args.repeats)
    kernels = uses_kernels(sep.device)
    variant = f" ({diffwave_cpu_variant()} DiffWave kernel)" if kernels and sep.device.type == "cpu" else ""
    print(f"device: {sep.device}, fused kernels: {kernels}{variant}, threads: {torch.get_num_threads()}, "
          f"OpenMP wait policy: {wait_policy()}")
    print(format_rows(rows))
    if args.json:
        from ..models.io import atomic_write_json

        atomic_write_json(args.json, {"device": str(sep.device), "rows": rows})
    return 0
