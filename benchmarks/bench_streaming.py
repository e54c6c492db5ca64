"""Streaming separation: algorithmic latency, compute per window, real-time factor, and what streaming costs in
SI-SDRi against offline separation of the whole recording.

The input is fastsep's two bundled talkers mixed (3 s at 8 kHz, repeated ``--repeat`` times), or with ``--data`` a
fixed list of ``--items`` mixtures of a corpus's split (unseen voices: e.g. the festival test set), pushed in blocks
of ``--block-ms`` as a live source would deliver them. Per mode and stream layout (the defaults, and for backbone
mode also 100 ms offline-equal windows and cheaper look-back layouts; or one layout from ``--window/--hop`` or
``--context/--hop/--lookahead``) it reports:

* algorithmic latency: the stream's stated latency (the window, or hop + look-ahead for look-back windows);
* compute: total time of the pushes / audio duration (RTF), and the slowest push (a push that completes a window
  pays for it; latency in practice = algorithmic latency + that compute time);
* SI-SDRi of the streamed talkers and of offline ``separate()`` of the whole mixture, on the same input.

    python benchmarks/bench_streaming.py [--model BUNDLE | --random] [--modes backbone,full] [--data CORPUS
        --split test --items 12] [--json out.json]

Also collected by pytest (one short case, random presets), so the script cannot rot.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fastsep", "assets")


def talkers(repeat: int) -> torch.Tensor:
    from fastsep.audio import load

    srcs = [load(os.path.join(ASSETS, f"talker{i}.wav"), 8000)[0] for i in (1, 2)]
    n = min(s.shape[-1] for s in srcs)
    return torch.stack([s[:n] for s in srcs]).repeat(1, repeat)


def si_sdri(est: torch.Tensor, srcs: torch.Tensor, mix: torch.Tensor) -> float:
    """Mean SI-SDR improvement (dB) over the mixture, talkers matched to the references by PIT."""
    from fastsep.metrics import pit, si_sdr_improvement

    matched, _ = pit(est[None].float(), srcs[None])
    return float(si_sdr_improvement(matched, srcs[None], mix[None, None].expand_as(srcs[None])).mean())


def stream_through(stream, mix: torch.Tensor, block: int):
    """Push ``mix`` in blocks of ``block`` samples; returns the streamed talkers and each push's seconds."""
    outs, pushes = [], []
    with torch.no_grad():
        for start in range(0, mix.shape[-1], block):
            t = time.perf_counter()
            outs.append(stream.push(mix[start:start + block]))
            pushes.append(time.perf_counter() - t)
        t = time.perf_counter()
        outs.append(stream.finish())
        pushes.append(time.perf_counter() - t)
    return torch.cat(outs, dim=-1), pushes


def bench_mode(sep, mode: str, mixtures, block: int, layout: dict) -> dict:
    """One stream layout (``layout``: Separator.stream's keyword arguments) over ``mixtures`` [(mix, srcs)]."""
    streamed_db, offline_db, pushes, seconds = [], [], [], 0.0
    for mix, srcs in mixtures:
        stream = sep.stream(mode, seed=0, **layout)
        streamed, times = stream_through(stream, mix, block)
        pushes += times
        seconds += mix.shape[-1] / sep.sample_rate
        streamed_db.append(si_sdri(streamed, srcs, mix))
        offline_db.append(si_sdri(sep.separate(mix, mode=mode, seed=0), srcs, mix))
    half = lambda v: float(1.96 * np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {
        "mode": mode, "layout": stream.layout, "options": layout,
        "algorithmic_latency_s": stream.latency_seconds, "block_s": block / sep.sample_rate,
        "mixtures": len(mixtures), "audio_s": seconds, "compute_s": sum(pushes), "rtf": sum(pushes) / seconds,
        "slowest_push_s": max(pushes), "threads_per_window": stream.threads or torch.get_num_threads(),
        "si_sdri_streamed_db": float(np.mean(streamed_db)), "si_sdri_streamed_ci_db": half(streamed_db),
        "si_sdri_offline_db": float(np.mean(offline_db)),
        "streamed_minus_offline_db": float(np.mean(np.subtract(streamed_db, offline_db))),
        "streamed_minus_offline_ci_db": half(np.subtract(streamed_db, offline_db)),
    }


#: layouts compared per mode by default: the defaults, and for backbone the offline-equal 100 ms windows and two
#: cheaper look-back layouts
LAYOUTS = {
    "backbone": [{}, {"window_seconds": 0.1, "hop_seconds": 0.05},
                 {"context_seconds": 1.9, "hop_seconds": 0.1, "lookahead_seconds": 0.0},
                 {"context_seconds": 0.9, "hop_seconds": 0.05, "lookahead_seconds": 0.05}],
    "full": [{}], "xcorr": [{}],
}


def mixtures_from(data, split: str, items: int, seconds: float, sample_rate: int):
    from fastsep.data.open import open_mixture_dataset

    ds = open_mixture_dataset(data, 2, sample_rate, segment=seconds, split=split, length=items, fixed=True)
    return [(ds[i]["mixture"].float(), ds[i]["sources"].float()) for i in range(len(ds))]


def run(model=None, random=False, modes=("backbone", "full"), repeat=2, block_ms=10.0, layouts=None, data=None,
        split="test", items=12, seconds=8.0):
    from fastsep import threads
    from fastsep.separator import Separator

    threads.set_threads()
    if random:
        from fastsep.commands.bench import small_random_separator

        sep = small_random_separator()
        sep.chunk, sep.overlap = 8 * sep.sample_rate, sep.sample_rate  # as a bundle loads (8 s chunks)
    else:
        sep = Separator.from_pretrained(model)
    if data:
        mixtures = mixtures_from(data, split, items, seconds, sep.sample_rate)
    else:
        srcs = talkers(repeat)
        mixtures = [(srcs.sum(0), srcs)]
    block = max(1, int(round(block_ms / 1000 * sep.sample_rate)))
    return [bench_mode(sep, m, mixtures, block, layout) for m in modes
            for layout in (layouts if layouts is not None else LAYOUTS[m])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--modes", default="backbone,full")
    parser.add_argument("--repeat", type=int, default=2, help="the 3 s mixture repeated this many times")
    parser.add_argument("--data", default=None,
                        help="a fastsep corpus: score fixed mixtures of it instead of the bundled talkers")
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=12, help="mixtures of --data (default 12)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each mixture of --data")
    parser.add_argument("--block-ms", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=None, help="one layout: offline-equal windows")
    parser.add_argument("--hop", type=float, default=None)
    parser.add_argument("--context", type=float, default=None, help="one layout: look-back windows")
    parser.add_argument("--lookahead", type=float, default=None)
    parser.add_argument("--json", default=None)
    a = parser.parse_args(argv)
    chosen = {k: v for k, v in (("window_seconds", a.window), ("hop_seconds", a.hop),
                                ("context_seconds", a.context), ("lookahead_seconds", a.lookahead)) if v is not None}
    rows = run(a.model, a.random, [m for m in a.modes.split(",") if m], a.repeat, a.block_ms,
               [chosen] if chosen else None, a.data, a.split, a.items, a.seconds)
    print(f"threads: {torch.get_num_threads()}")
    for r in rows:
        print(f"{r['mode']:<9} {r['layout']}: algorithmic latency {r['algorithmic_latency_s'] * 1000:.0f} ms, "
              f"RTF {r['rtf']:.3f}, slowest push {r['slowest_push_s'] * 1000:.1f} ms "
              f"({r['threads_per_window']} thread(s) per window); SI-SDRi over {r['mixtures']} mixture(s): streamed "
              f"{r['si_sdri_streamed_db']:.2f} ± {r['si_sdri_streamed_ci_db']:.2f} dB, offline "
              f"{r['si_sdri_offline_db']:.2f} dB (streamed - offline {r['streamed_minus_offline_db']:+.2f} ± "
              f"{r['streamed_minus_offline_ci_db']:.2f})")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def test_streaming_bench_smoke():
    rows = run(random=True, modes=("backbone",), repeat=1)
    assert len(rows) == len(LAYOUTS["backbone"]) and "look-back" in rows[0]["layout"]
    assert rows[0]["algorithmic_latency_s"] == 0.1 and rows[0]["audio_s"] == 3.0
    for r in rows:
        assert np.isfinite(r["si_sdri_streamed_db"]) and r["compute_s"] > 0


if __name__ == "__main__":
    sys.exit(main())
