"""Streaming separation: algorithmic latency, compute per window, real-time factor, and what streaming costs in
SI-SDRi against offline separation of the whole recording.

The input is fastsep's two bundled talkers mixed (3 s at 8 kHz, repeated ``--repeat`` times), pushed in blocks of
``--block-ms`` as a live source would deliver them. Per mode it reports:

* algorithmic latency: the stream's stated window (output lags input by exactly this many samples);
* compute: total time of the pushes / audio duration (RTF), and the slowest push (a push that completes a window
  pays for it; latency in practice = algorithmic latency + that compute time);
* SI-SDRi of the streamed talkers and of offline ``separate()`` of the whole mixture, on the same input.

    python benchmarks/bench_streaming.py [--model BUNDLE | --random] [--modes backbone,full] [--json out.json]

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


def bench_mode(sep, mode: str, srcs: torch.Tensor, block: int, window=None, hop=None) -> dict:
    mix = srcs.sum(0)
    stream = sep.stream(mode, window_seconds=window, hop_seconds=hop, seed=0)
    outs, pushes = [], []
    with torch.no_grad():
        for start in range(0, mix.shape[-1], block):
            t = time.perf_counter()
            outs.append(stream.push(mix[start:start + block]))
            pushes.append(time.perf_counter() - t)
        t = time.perf_counter()
        outs.append(stream.finish())
        pushes.append(time.perf_counter() - t)
    streamed = torch.cat(outs, dim=-1)
    seconds = mix.shape[-1] / sep.sample_rate
    whole = sep.separate(mix, mode=mode, seed=0)
    return {
        "mode": mode, "window_s": stream.window / sep.sample_rate, "hop_s": stream.hop / sep.sample_rate,
        "algorithmic_latency_s": stream.latency_seconds, "block_s": block / sep.sample_rate,
        "audio_s": seconds, "compute_s": sum(pushes), "rtf": sum(pushes) / seconds,
        "slowest_push_s": max(pushes), "threads_per_window": stream.threads or torch.get_num_threads(),
        "si_sdri_streamed_db": si_sdri(streamed, srcs, mix), "si_sdri_offline_db": si_sdri(whole, srcs, mix),
    }


def run(model=None, random=False, modes=("backbone", "full"), repeat=2, block_ms=10.0, window=None, hop=None):
    from fastsep import threads
    from fastsep.separator import Separator

    threads.set_threads()
    if random:
        from fastsep.commands.bench import small_random_separator

        sep = small_random_separator()
        sep.chunk, sep.overlap = 8 * sep.sample_rate, sep.sample_rate  # as a bundle loads (8 s chunks)
    else:
        sep = Separator.from_pretrained(model)
    srcs = talkers(repeat)
    block = max(1, int(round(block_ms / 1000 * sep.sample_rate)))
    return [bench_mode(sep, m, srcs, block, window, hop) for m in modes]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--modes", default="backbone,full")
    parser.add_argument("--repeat", type=int, default=2, help="the 3 s mixture repeated this many times")
    parser.add_argument("--block-ms", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=None, help="window seconds (default: per mode)")
    parser.add_argument("--hop", type=float, default=None)
    parser.add_argument("--json", default=None)
    a = parser.parse_args(argv)
    rows = run(a.model, a.random, [m for m in a.modes.split(",") if m], a.repeat, a.block_ms, a.window, a.hop)
    print(f"threads: {torch.get_num_threads()}")
    for r in rows:
        print(f"{r['mode']:<9} window {r['window_s']:.3f} s hop {r['hop_s']:.3f} s: algorithmic latency "
              f"{r['algorithmic_latency_s'] * 1000:.0f} ms, RTF {r['rtf']:.3f}, slowest push "
              f"{r['slowest_push_s'] * 1000:.1f} ms ({r['threads_per_window']} thread(s) per window); SI-SDRi "
              f"streamed {r['si_sdri_streamed_db']:.2f} dB, offline {r['si_sdri_offline_db']:.2f} dB")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def test_streaming_bench_smoke():
    rows = run(random=True, modes=("backbone",), repeat=1)
    assert rows[0]["algorithmic_latency_s"] == 0.1 and rows[0]["audio_s"] == 3.0
    assert np.isfinite(rows[0]["si_sdri_streamed_db"]) and rows[0]["compute_s"] > 0


if __name__ == "__main__":
    sys.exit(main())
