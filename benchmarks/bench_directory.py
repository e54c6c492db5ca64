"""Throughput of separating a directory of files, and how busy it keeps the cores: one stage after another
(``overlap=False``) against reading and writing overlapped with the computation (``overlap=True``), in one run.

The directory holds ``--files`` short speech-like WAVs (at ``--rate``, lengths drawn from ``--lengths`` so that
files of one length batch together, as in a real collection of utterances). Each case separates it into a fresh
output folder with :meth:`fastsep.Separator.separate_files` (the bundled default, or ``--model``/``--random``):
backbone mode on every file, full mode on the first ``--full-files``. Reported per case:

* files/hour and audio seconds separated per wall second (x real time);
* CPU busy fraction = the process's CPU time (``os.times``: user + system, all threads) / (wall time x the cores it
  may use, :func:`fastsep.threads.available_cores`), the issue's ">= 90 %" figure;
* whether the two variants wrote byte-identical outputs.

    python benchmarks/bench_directory.py --json directory.json --plot directory.png      # 300 files, 60 in full
    python benchmarks/bench_directory.py --files 40 --full-files 8 --random               # quick
    python benchmarks/bench_directory.py --sharded 2 --json directory.json                 # + torchrun, 2 processes

``--sharded N`` adds, per mode, ``torchrun --nproc-per-node N fastsep separate`` on the same files (N processes, each
with its share of the files and of the cores; process start and model loading included in its wall time, as a user
pays them; CPU time from the children's rusage).

The order of the variants alternates between modes (sequential first in backbone mode, overlapped first in full
mode) and a few files are separated once before timing, so neither variant alone pays for cold caches. Also
collected by pytest (one tiny case), so the script cannot rot.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np


def speechlike(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Two talker-like voiced signals (harmonics with a syllable-rate envelope) mixed, plus a little noise."""
    t = np.arange(n) / rate
    out = np.zeros(n)
    for _ in range(2):
        f0 = rng.uniform(90, 240)
        env = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 5.0) * t + rng.uniform(0, 6.3)), 0, None)
        voice = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 6))
        out += env * voice
    out = 0.1 * out / (np.abs(out).max() + 1e-9)
    return (out + 0.003 * rng.standard_normal(n)).astype(np.float32)


def make_directory(folder: str, files: int, rate: int, lengths: List[float], seed: int = 0) -> float:
    """Write ``files`` WAVs into ``folder``; returns their total duration in seconds."""
    from fastsep.audio import save

    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(files):
        seconds = float(rng.choice(lengths))
        save(os.path.join(folder, f"utt{i:05d}.wav"), speechlike(int(seconds * rate), rate, rng), rate)
        total += seconds
    return total


def _outputs(folder: str) -> Dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".wav"):
            with open(os.path.join(folder, name), "rb") as fh:
                out[name] = fh.read()
    return out


def _row_line(row: Dict) -> str:
    return (f"{row['mode']:<9}{row['variant']:<11}{row['files']:>5} files {row['wall_s']:8.1f} s "
            f"{row['files_per_hour']:10.0f} files/h {row['x_real_time']:8.1f}x real time "
            f"CPU busy {100 * row['cpu_busy']:5.1f} %")


def run_case(sep, paths: List[str], audio_s: float, out: str, mode: str, overlap: bool, batch_size: int) -> Dict:
    """Separate ``paths`` into ``out`` once; wall time, CPU time and the rates derived from them."""
    from fastsep.threads import available_cores

    import torch

    shutil.rmtree(out, ignore_errors=True)
    cores = available_cores()
    before, start = os.times(), time.perf_counter()
    res = sep.separate_files(paths, out, mode=mode, batch_size=batch_size, overwrite=True, progress=False,
                             overlap=overlap)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    if res.failed or len(res.written) != len(paths):
        raise RuntimeError(f"{mode}/{'overlapped' if overlap else 'sequential'}: {len(res.failed)} files failed: "
                           f"{dict(list(res.failed.items())[:3])}")
    return {"mode": mode, "variant": "overlapped" if overlap else "sequential", "files": len(paths),
            "audio_seconds": audio_s, "wall_s": wall, "cpu_s": cpu, "cores": cores,
            "torch_threads": torch.get_num_threads(), "files_per_hour": 3600.0 * len(paths) / wall,
            "x_real_time": audio_s / wall, "cpu_busy": cpu / (wall * cores)}


def run_sharded(model_dir: str, paths: List[str], audio_s: float, out: str, mode: str, batch_size: int,
                nproc: int) -> Dict:
    """``torchrun --nproc-per-node nproc -m fastsep separate`` over ``paths`` into ``out``: wall time, the children's
    CPU time and the rates derived from them."""
    import resource
    import subprocess

    from fastsep.threads import available_cores

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "fastsep", "separate", *paths, "-o", out, "--mode", mode, "--model", model_dir,
           "--batch-size", str(batch_size), "--no-progress"]
    env = dict(os.environ)
    env.pop("FASTSEP_NUM_THREADS", None)  # each process takes its share of the cores (fastsep.threads)
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{mode}/torchrun x{nproc} failed ({done.returncode}): {done.stderr[-2000:]}")
    written = [f for f in os.listdir(out) if f.endswith(".wav")]
    if len(written) < len(paths):
        raise RuntimeError(f"{mode}/torchrun x{nproc}: {len(written)} outputs for {len(paths)} files")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cores = available_cores()
    return {"mode": mode, "variant": f"torchrun x{nproc}", "files": len(paths), "audio_seconds": audio_s,
            "wall_s": wall, "cpu_s": cpu, "cores": cores, "processes": nproc,
            "files_per_hour": 3600.0 * len(paths) / wall, "x_real_time": audio_s / wall,
            "cpu_busy": cpu / (wall * cores)}


def measure(args: argparse.Namespace) -> Dict:
    import torch

    import fastsep
    from fastsep.audio import info
    from fastsep.threads import set_threads, wait_policy

    threads = set_threads(args.threads)
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    if args.files < 1 or not 0 <= args.full_files <= args.files or not lengths or min(lengths) <= 0:
        raise SystemExit("need --files >= 1, 0 <= --full-files <= --files and positive --lengths")
    if args.random:
        from fastsep.commands.bench import small_random_separator

        torch.manual_seed(0)
        sep = small_random_separator()
    else:
        sep = fastsep.Separator.from_pretrained(args.model)
    work = tempfile.mkdtemp(prefix="fastsep-bench-dir-", dir=args.workdir)
    try:
        src = os.path.join(work, "in")
        os.makedirs(src)
        make_directory(src, args.files, args.rate, lengths)
        paths = sorted(os.path.join(src, f) for f in os.listdir(src))
        audio = {}
        for p in paths:
            frames, rate = info(p)[:2]
            audio[p] = frames / rate
        model_dir = args.model
        if args.sharded and (args.random or model_dir is None):
            model_dir = os.path.join(work, "model")  # the same weights for the torchrun processes
            sep.save_pretrained(model_dir)
        # warm-up: a few files, untimed, so that neither variant pays for first calls and cold caches alone
        sep.separate_files(paths[:2], os.path.join(work, "warm"), mode="backbone", overwrite=True, progress=False)
        cases = []
        plan = [("backbone", paths, (False, True))]
        if args.full_files:
            plan.append(("full", paths[:args.full_files], (True, False)))
        for mode, subset, order in plan:
            total = sum(audio[p] for p in subset)
            outs = {}
            for overlap in order:
                out = os.path.join(work, f"out-{mode}-{int(overlap)}")
                row = run_case(sep, subset, total, out, mode, overlap, args.batch_size)
                outs[overlap] = _outputs(out)
                cases.append(row)
                print(_row_line(row), flush=True)
            same = outs[True] == outs[False]
            for row in cases[-2:]:
                row["identical_outputs"] = same
            seq, ovl = (r for r in sorted(cases[-2:], key=lambda r: r["variant"] != "sequential"))
            print(f"{mode}: overlapped / sequential throughput {ovl['files_per_hour'] / seq['files_per_hour']:.2f}x, "
                  f"identical outputs: {same}")
            if args.sharded:
                out = os.path.join(work, f"out-{mode}-sharded")
                row = run_sharded(model_dir, subset, total, out, mode, args.batch_size, args.sharded)
                # other thread counts round differently: the same talkers, not the same bytes
                row["identical_outputs"] = _outputs(out) == outs[False]
                cases.append(row)
                print(f"{_row_line(row)}; {row['files_per_hour'] / seq['files_per_hour']:.2f}x the single process",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"model": "random" if args.random else (args.model or "default"), "threads": threads,
            "wait_policy": wait_policy(), "rate": args.rate, "lengths": lengths, "batch_size": args.batch_size,
            "cases": cases}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=300, help="files in the directory (backbone mode separates all)")
    p.add_argument("--full-files", type=int, default=60, help="how many of them full mode separates (0: none)")
    p.add_argument("--lengths", default="2,3,4", help="file lengths in seconds to draw from")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the files (resampled to the model's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--model", default=None, help="bundle folder (default: the bundled default)")
    p.add_argument("--random", action="store_true", help="a small random separator instead of a bundle")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: fastsep.threads' choice)")
    p.add_argument("--sharded", type=int, default=0,
                   help="also run torchrun with this many processes per mode (0: not)")
    p.add_argument("--workdir", default=None, help="where the temporary directory goes (default: the system's)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--plot", default=None, help="write a PNG bar chart of files/hour and CPU busy here")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Dict:
    """Measure, then write the JSON and the chart where asked; returns the results."""
    result = measure(args)
    if args.json:
        from fastsep.fileio import atomic_write_json

        atomic_write_json(args.json, result)
    if args.plot:
        from fastsep.plots import save_figure, throughput_figure

        title = f"directory separation ({result['model']} model, {result['threads']} threads)"
        save_figure(throughput_figure(result["cases"], title), args.plot)
    return result


def main(argv=None) -> int:
    run(parse(argv))
    return 0


def test_directory_smoke(tmp_path):
    pytest = __import__("pytest")
    pytest.importorskip("matplotlib")
    run(parse(["--files", "6", "--full-files", "2", "--lengths", "0.3,0.4", "--random", "--rate", "16000",
               "--json", str(tmp_path / "d.json"), "--plot", str(tmp_path / "d.png")]))
    data = json.loads((tmp_path / "d.json").read_text())
    assert [(c["mode"], c["variant"]) for c in data["cases"]] == [
        ("backbone", "sequential"), ("backbone", "overlapped"), ("full", "overlapped"), ("full", "sequential")]
    for case in data["cases"]:
        assert case["identical_outputs"] and case["files_per_hour"] > 0 and case["cpu_busy"] > 0
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_directory_sharded_smoke(tmp_path):
    pytest = __import__("pytest")
    pytest.importorskip("torch.distributed.run")
    data = run(parse(["--files", "4", "--full-files", "0", "--lengths", "0.3", "--random", "--sharded", "2",
                      "--json", str(tmp_path / "d.json")]))
    sharded = [c for c in data["cases"] if c["variant"] == "torchrun x2"]
    assert len(sharded) == 1 and sharded[0]["files"] == 4 and sharded[0]["cpu_s"] > 0


if __name__ == "__main__":
    sys.exit(main())
