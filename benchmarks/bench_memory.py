"""Peak memory of ``fastsep separate`` (backbone mode, small random model) against the input file's length.

Each length runs in its own process, so the peak RSS it reports (``ru_maxrss`` of the child) is that run's alone.
The input is 16 kHz stereo noise-like speech stand-in, written in blocks. Files are read, resampled, separated and
written in blocks, so the peak should stay flat as the file grows.

    python benchmarks/bench_memory.py                  # 1 and 10 minutes
    FASTSEP_BENCH_MEMORY_MINUTES=10,60,240 python benchmarks/bench_memory.py   # the long ones (slow on a CPU)

Also collected by pytest (one short case), so the script cannot rot.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

RATE = 16000


def write_input(path: str, minutes: float, block_seconds: float = 30.0) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = int(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype="PCM_16") as f:
        for start in range(0, total, int(block_seconds * RATE)):
            n = min(int(block_seconds * RATE), total - start)
            t = (start + np.arange(n)) / RATE
            voice = 0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            f.write(np.stack([voice + 0.02 * rng.standard_normal(n), voice], axis=1))


def make_bundle(path: str) -> None:
    import torch

    from fastsep.models.convtasnet import ConvTasNet
    from fastsep.separator import Separator

    torch.manual_seed(0)
    Separator(ConvTasNet.small(2, 8000), sample_rate=8000).save_pretrained(path)


def measure(minutes: float, folder: str, bundle: str) -> dict:
    src = os.path.join(folder, f"in_{minutes:g}min.wav")
    write_input(src, minutes)
    code = ("import resource, sys\nfrom fastsep import cli\nrc = cli.main(sys.argv[1:])\n"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)\n")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, "separate", src, "-o", os.path.join(folder, "out"),
                          "--model", bundle, "--mode", "backbone", "--no-progress", "--overwrite"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    kib = int([line for line in res.stdout.splitlines() if line.startswith("MAXRSS")][-1].split()[1])
    os.unlink(src)
    return {"minutes": minutes, "input_mb": minutes * 60 * RATE * 4 / 1e6, "peak_rss_mb": kib / 1024,
            "seconds": took}


def run(minutes_list) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        bundle = os.path.join(folder, "bundle")
        make_bundle(bundle)
        for minutes in minutes_list:
            row = measure(minutes, folder, bundle)
            print(f"{row['minutes']:>7g} min  input {row['input_mb']:8.0f} MB  peak RSS {row['peak_rss_mb']:7.0f} MB"
                  f"  {row['seconds']:7.0f} s", flush=True)
            rows.append(row)
    return rows


def test_memory_smoke():
    rows = run([0.05])
    assert rows[0]["peak_rss_mb"] > 0


if __name__ == "__main__":
    wanted = os.environ.get("FASTSEP_BENCH_MEMORY_MINUTES", "1,10")
    result = run([float(x) for x in wanted.split(",") if x.strip()])
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump(result, fh, indent=2)
