"""The backbone's latency (and a training step's time) quiet and with another process busy on the same cores:
fastsep's thread and OpenMP wait choices against the alternatives.

Variants, each in its own process (OpenMP's wait policy is fixed when torch loads, so it cannot change in-process):

* ``old``: torch imported before fastsep, torch's default threads and OpenMP's default (active) wait policy, i.e.
  what fastsep did before :mod:`fastsep.threads`;
* ``passive``: fastsep imported first with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once at every barrier: what
  fastsep chose before measuring this), threads = cores given // workers;
* ``fastsep``: fastsep imported first: a bounded spin (``GOMP_SPINCOUNT=1000``), threads = cores given // workers;
* ``fastsep-1``: the same with ``FASTSEP_NUM_THREADS=1``.

Each runs quiet (only what else the machine is doing) and contended: one busy-looping process per available core,
started for the measurement and killed after it (bounded by ``--busy-seconds`` in any case). The figure is the
median and the minimum of ``--repeats`` backbone calls on ``--seconds`` of audio, batch 1, and the median of
``--repeats`` training steps of the same backbone (forward, PIT SI-SDR loss, backward, Adam; 4 x 2 s).

    python benchmarks/bench_contention.py [--model BUNDLE | --random] [--seconds 4] [--json out.json]

Also collected by pytest (one short case), so the script cannot rot.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_CHILD = r"""
import json, os, statistics, sys, time
if os.environ.get("BENCH_OLD") == "1":
    import torch  # before fastsep: fastsep then leaves OpenMP's wait policy and torch's threads as they were
import fastsep, torch
from fastsep import threads
from fastsep.metrics import pit_si_sdr_loss
if os.environ.get("BENCH_OLD") != "1":
    threads.set_threads()
args = json.loads(sys.argv[1])
if args["random"]:
    from fastsep.commands.bench import small_random_separator
    sep = small_random_separator()
else:
    sep = fastsep.Separator.from_pretrained(args["model"])
x = 0.1 * torch.randn(1, int(args["seconds"] * sep.sample_rate))
times = []
with torch.no_grad():
    sep.backbone(x)
    for _ in range(args["repeats"]):
        t = time.perf_counter()
        sep.backbone(x)
        times.append(time.perf_counter() - t)
model = sep.backbone
steps = []
if args["train"] and model is not None:
    import copy
    model = copy.deepcopy(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-9)
    src = 0.1 * torch.randn(4, model.n_src, 2 * sep.sample_rate)
    for _ in range(args["repeats"] + 1):
        t = time.perf_counter()
        pit_si_sdr_loss(model(src.sum(1)), src).backward()
        opt.step()
        opt.zero_grad()
        steps.append(time.perf_counter() - t)
    steps = steps[1:]
print(json.dumps({"threads": torch.get_num_threads(), "wait_policy": threads.wait_policy(),
                  "median_s": statistics.median(times), "min_s": min(times),
                  "train_step_s": statistics.median(steps) if steps else None}))
"""

_BUSY = "import time, sys\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"

VARIANTS = {"old": {"BENCH_OLD": "1"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "fastsep": {},
            "fastsep-1": {"FASTSEP_NUM_THREADS": "1"}}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_variant(name: str, args: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
                                                            "FASTSEP_NUM_THREADS")}
    env.update(VARIANTS[name])
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"variant {name} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args: dict, busy_seconds: float) -> list:
    rows = []
    for contended in (False, True):
        busy = []
        if contended:
            busy = [subprocess.Popen([sys.executable, "-c", _BUSY, str(busy_seconds)]) for _ in range(_cores())]
            time.sleep(0.5)
        try:
            for name in VARIANTS:
                row = run_variant(name, args)
                row.update(variant=name, contended=contended, busy_processes=len(busy))
                rows.append(row)
                step = f"  train step {row['train_step_s']:.3f} s" if row.get("train_step_s") else ""
                print(f"{'contended' if contended else 'quiet':<10} {name:<10} threads {row['threads']}  "
                      f"median {row['median_s']:.4f} s  min {row['min_s']:.4f} s{step}  ({row['wait_policy']})",
                      flush=True)
        finally:
            for proc in busy:  # only the processes started here
                proc.kill()
                proc.wait()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--random", action="store_true", help="small random presets instead of a bundle")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--busy-seconds", type=float, default=300.0, help="upper bound on the busy processes' life")
    parser.add_argument("--json", default=None)
    a = parser.parse_args(argv)
    args = {"model": a.model, "random": a.random, "seconds": a.seconds, "repeats": a.repeats, "train": not a.no_train}
    print(f"{_cores()} cores given; {'random presets' if a.random else 'bundle ' + str(a.model or 'default')}, "
          f"backbone on {a.seconds:g} s, batch 1, {a.repeats} calls per variant")
    rows = measure(args, a.busy_seconds)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def test_contention_smoke():
    rows = measure({"model": None, "random": True, "seconds": 0.5, "repeats": 2, "train": True}, busy_seconds=60)
    assert {r["variant"] for r in rows} == set(VARIANTS) and len(rows) == 2 * len(VARIANTS)
    policies = [r["wait_policy"] for r in rows[:4]]
    assert policies[0].startswith("OpenMP's default") and policies[1] == "OMP_WAIT_POLICY=PASSIVE"
    assert policies[2] == policies[3] == "GOMP_SPINCOUNT=1000 (set by fastsep)"
    assert rows[3]["threads"] == 1 and all(r["train_step_s"] > 0 for r in rows)


if __name__ == "__main__":
    sys.exit(main())
