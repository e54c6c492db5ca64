"""Shared benchmark plumbing: each case records (group, variant, seconds, bytes moved); the session ends with a table
of ratios against the reference variant of the same group, measured in the same run, and the effective bandwidth.

Set FASTSEP_BENCH_JSON=path to also write the table as JSON.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest
from bench_timing import timing

from fastsep.threads import apply_default_threads

# The benchmarks run with the threads a fastsep command would use: FASTSEP_NUM_THREADS (or OMP_NUM_THREADS, else one
# per physical core). Before 2026-11-23 they were not applied here, so `FASTSEP_NUM_THREADS=1 python -m pytest
# benchmarks/...` ran torch's default thread count.
apply_default_threads()

_ROWS = defaultdict(dict)  # group -> variant -> {"seconds", "bytes"}


class Recorder:
    # The minimum over rounds is recorded: on a shared 2-core machine it is the estimate least moved by other load.
    def __call__(self, benchmark, group: str, variant: str, fn, *args, bytes_moved: float = 0.0, rounds: int = 7):
        benchmark.group = group
        benchmark.extra_info.update(variant=variant, bytes=bytes_moved)
        benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=1)
        seconds = timing(benchmark)
        if seconds is not None:
            _ROWS[group][variant] = {"seconds": seconds, "bytes": bytes_moved}


@pytest.fixture
def record():
    return Recorder()


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("fastsep: fused vs reference (best of the rounds, same run)")
    table = []
    for group, variants in _ROWS.items():
        ref = variants.get("reference")
        for variant, row in variants.items():
            seconds = row["seconds"]
            ratio = ref["seconds"] / seconds if ref and variant != "reference" else None
            gbps = row["bytes"] / seconds / 1e9 if row["bytes"] else None
            table.append({"group": group, "variant": variant, "ms": seconds * 1e3, "speedup_vs_reference": ratio,
                          "GB_per_s": gbps})
            tr.write_line(f"{group:<48} {variant:<10} {seconds * 1e3:10.3f} ms"
                          + (f"   x{ratio:6.2f} vs reference" if ratio else " " * 25)
                          + (f"   {gbps:8.2f} GB/s" if gbps else ""))
    out = os.environ.get("FASTSEP_BENCH_JSON")
    if out:
        with open(out, "w") as fh:
            json.dump(table, fh, indent=1)
