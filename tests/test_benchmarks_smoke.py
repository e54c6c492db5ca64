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
             for f in ("bench_ops.py", "bench_backbone.py", "bench_diffwave.py", "bench_pipeline.py",
                       "bench_training.py", "bench_directory.py")]
    env = dict(os.environ, FASTSEP_BENCH_SECONDS="0.1")
    env.pop("FASTSEP_BENCH_FULL", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                           *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


def test_oracle_masks_recover_sources_that_do_not_overlap():
    # Two tones far apart in frequency: each bin belongs to one source, so both masks give the sources back (up to
    # the STFT's edge effects), and the ratio mask's estimates always add up to the mixture.
    import importlib.util

    import torch

    from fastsep.metrics import si_sdr

    spec = importlib.util.spec_from_file_location("oracle_masks", os.path.join(ROOT, "benchmarks", "oracle_masks.py"))
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    t = torch.arange(8000, dtype=torch.float64) / 8000
    sources = torch.stack([torch.sin(2 * torch.pi * 300 * t), 0.5 * torch.sin(2 * torch.pi * 2500 * t)])
    mixture = sources.sum(0)
    est = oracle.oracle_estimates(mixture, sources, 256, 64)
    for name in ("irm", "ibm"):
        assert est[name].shape == sources.shape
        assert float(si_sdr(est[name], sources).min()) > 30, name
    torch.testing.assert_close(est["irm"].sum(0), mixture, atol=1e-6, rtol=0)
