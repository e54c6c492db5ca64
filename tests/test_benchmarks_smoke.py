"""The benchmark files still run: every case once, untimed (--benchmark-disable), on tiny inputs.

They are not part of the suite's timing (speed is measured in benchmarks/, never in tests); this only keeps them from
rotting between the runs that produce BENCHMARKS.md.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_files_run_once():
    files = [os.path.join("benchmarks", f)
             for f in ("bench_ops.py", "bench_diffwave.py", "bench_pipeline.py", "bench_training.py")]
    env = dict(os.environ, FASTSEP_BENCH_SECONDS="0.1")
    env.pop("FASTSEP_BENCH_FULL", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                           *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
