"""``fastsep bench``: latency and real-time factor of each Separate-And-Diffuse stage, per length and batch size,
and a roofline of every stage against what the machine attains (:mod:`fastsep.roofline`).

Rows: ``backbone`` (B), ``vocoder`` (GM: mel + fast sampling), ``combiner`` (F with its STFT/iSTFT), ``xcorr``
(STFT, alignment, average, iSTFT), and every mode the separator offers (``separator.modes``; Separate-And-Diffuse:
``backbone``/``xcorr``/``full``). RTF = wall time / audio duration of the whole batch (below 1: faster than real
time). The roofline runs once, at the first length and ``--roofline-batch``, unless ``--no-roofline``; ``--json``
holds it under ``"roofline"`` and ``--plot`` draws it as a PNG bar chart.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Sequence

import torch

from ..roofline import format_roofline, roofline, time_call  # noqa: F401 - time_call stays importable from here

DEFAULT_MODES = ("backbone", "xcorr", "full")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep bench``."""
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--random", action="store_true",
                        help="time untrained small presets instead of a bundle (ConvTasNet.small, a small DiffWave, F)")
    parser.add_argument("--lengths", default="1,4", help="comma-separated input lengths in seconds")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="arithmetic of the vocoder's residual stack and F's convolutions (Separate-And-"
                             "Diffuse): auto (default) takes bfloat16 on CPUs with AMX (2-3x faster) and AMD CPUs "
                             "with AVX512-BF16 (1.5-1.9x), at the same quality, and float32 elsewhere")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: see fastsep.threads: the cores this process may use)")
    parser.add_argument("--no-roofline", action="store_true",
                        help="skip the roofline (the machine's GEMM and copy yardsticks and each stage against them)")
    parser.add_argument("--roofline-batch", type=int, default=1, help="batch size of the roofline (default 1)")
    parser.add_argument("--plot", default=None, help="write the roofline as a PNG bar chart here (needs matplotlib)")


def small_random_separator(sample_rate: int = 8000, n_src: int = 2, device="cpu", precision="float32"):
    """Untrained small presets of B, GM and F in a Separator (for timing and tests, never for separating)."""
    from ..models.combiner import Combiner
    from ..models.convtasnet import ConvTasNet
    from ..models.diffwave import DiffWave
    from ..separator import Separator

    backbone = ConvTasNet.small(n_src, sample_rate)
    vocoder = DiffWave(residual_layers=6, residual_channels=16, dilation_cycle_length=3, n_mels=40,
                       sample_rate=sample_rate, hop_length=128)
    return Separator(backbone, vocoder, Combiner(), sample_rate=sample_rate, n_src=n_src, device=device,
                     chunk_seconds=3600.0, vocoder_precision=precision, combiner_precision=precision)


def available_modes(separator) -> List[str]:
    """The modes to time: ``separator.modes`` where the separator lists them (every method behind the one serving
    interface does), else Separate-And-Diffuse's three; minus those its parts cannot run (``_check_mode`` or
    ``check_mode`` refuses them)."""
    check = getattr(separator, "_check_mode", None) or getattr(separator, "check_mode", None)
    modes = []
    for mode in tuple(getattr(separator, "modes", DEFAULT_MODES)):
        try:
            if callable(check):
                check(mode)
        except ValueError:
            continue
        modes.append(mode)
    return modes


def _mode_runner(separator, mix, mode: str) -> Callable[[], object]:
    """One pass of ``mode`` over ``mix`` at the models' rate: the Separator's own model pass where it has one (no
    input checks, levels or chunking), else its public ``separate``."""
    run = getattr(separator, "_run", None)
    if callable(run):
        return lambda: run(mix, mode)
    return lambda: separator.separate(mix, mode=mode, seed=0)


@torch.no_grad()
def bench(separator, lengths: Sequence[float], batch_sizes: Sequence[int], repeats: int = 3) -> List[Dict]:
    """One row per (stage, length, batch): seconds and real-time factor. Stages are timed where the separator has
    the part (``backbone``, ``vocoder``, ``combiner``), then every mode of :func:`available_modes`."""
    dev = torch.device(getattr(separator, "device", "cpu"))
    backbone = getattr(separator, "backbone", None)
    vocoder = getattr(separator, "vocoder", None)
    combiner = getattr(separator, "combiner", None)
    modes = available_modes(separator)
    rows = []
    for seconds in lengths:
        for batch in batch_sizes:
            n = int(round(seconds * separator.sample_rate))
            mix = (0.1 * torch.randn(batch, n, device=dev))
            stages: Dict[str, Callable[[], object]] = {}
            if backbone is not None:
                stages["backbone"] = lambda: backbone(mix)
                if vocoder is not None and callable(getattr(separator, "_vocode", None)):
                    vd = backbone(mix)
                    vg = separator._vocode(vd)
                    stages["vocoder"] = lambda: separator._vocode(vd)
                    if callable(getattr(separator, "_xcorr", None)):
                        stages["xcorr"] = lambda: separator._xcorr(vd, vg)
                    if combiner is not None:  # as full mode runs F: per item on CPU, in the chosen precision
                        stages["combiner"] = (lambda: separator._combine(vd, vg)) \
                            if callable(getattr(separator, "_combine", None)) else (lambda: combiner(vd, vg))
            for mode in modes:
                stages[f"mode:{mode}"] = _mode_runner(separator, mix, mode)
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
        if args.roofline_batch < 1:
            raise ValueError("--roofline-batch must be a positive int")
        lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
        batches = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
        if not lengths or min(lengths) <= 0 or not batches or min(batches) < 1:
            raise ValueError("--lengths must be positive seconds and --batch-sizes positive ints")
        if args.random:
            sep = small_random_separator(device=args.device, precision=args.precision)
        else:
            sep = Separator.from_pretrained(args.model, device=args.device, chunk_seconds=3600.0,
                                             vocoder_precision=args.precision, combiner_precision=args.precision)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fastsep bench: {exc}", file=sys.stderr)
        return 2
    from .._ext import diffwave_cpu_variant
    from ..ops import uses_kernels

    if args.plot:
        from ..plots import MatplotlibMissing, require_matplotlib

        try:
            require_matplotlib()
        except MatplotlibMissing as exc:  # said before the timings, not after minutes of them
            print(f"fastsep bench: {exc}", file=sys.stderr)
            return 2
    with torch.no_grad():  # scoped: main() is also called in-process (tests, notebooks)
        rows = bench(sep, lengths, batches, args.repeats)
    report = None
    if not args.no_roofline:
        try:
            report = roofline(sep, lengths[0], args.roofline_batch, args.repeats)
        except ValueError as exc:  # a separator without the parts the roofline times (e.g. no backbone)
            print(f"fastsep bench: roofline skipped: {exc}", file=sys.stderr)
    kernels = uses_kernels(sep.device)
    variant = f" ({diffwave_cpu_variant()} DiffWave kernel)" if kernels and sep.device.type == "cpu" else ""
    precision = {"vocoder": getattr(sep, "vocoder_precision", "float32"),
                 "combiner": getattr(sep, "combiner_precision", "float32")}
    print(f"device: {sep.device}, fused kernels: {kernels}{variant}, threads: {torch.get_num_threads()}, "
          f"OpenMP wait policy: {wait_policy()}, precision: vocoder {precision['vocoder']}, "
          f"F {precision['combiner']} (--precision {args.precision})")
    print(format_rows(rows))
    if report is not None:
        print()
        print(format_roofline(report))
    if args.json:
        from ..models.io import atomic_write_json

        data = {"device": str(sep.device), "precision": precision, "rows": rows}
        if report is not None:
            data["roofline"] = report
        atomic_write_json(args.json, data)
    if args.plot and report is not None:
        from ..plots import roofline_figure, save_figure

        save_figure(roofline_figure(report), args.plot)
        print(f"roofline chart: {args.plot}")
    return 0
