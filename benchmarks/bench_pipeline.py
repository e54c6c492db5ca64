"""Real-time factor of each Separate-And-Diffuse mode on CPU for the small presets (pytest-benchmark).

    FASTSEP_NO_EXTENSION=1 python -m pytest benchmarks/bench_pipeline.py --benchmark-only -s

Each case separates 2 s of 8 kHz audio (batch 1) with untrained small presets (ConvTasNet.small, a 6-layer
16-channel DiffWave with the 6-step fast schedule, the paper's F); weights do not change the cost. The RTF (seconds
per second of audio) of each mode and the ratios full/backbone and xcorr/backbone are printed at the end.
"""
import pytest
import torch
from bench_timing import timing

from fastsep.commands.bench import small_random_separator

SECONDS = 2.0
_RTF = {}


@pytest.fixture(scope="module")
def separator():
    torch.manual_seed(0)
    return small_random_separator()


@pytest.fixture(scope="module")
def mixture(separator):
    return 0.1 * torch.randn(1, int(SECONDS * separator.sample_rate))


@pytest.mark.parametrize("mode", ["backbone", "xcorr", "full"])
def test_mode_rtf(benchmark, separator, mixture, mode):
    out = benchmark.pedantic(separator.separate, args=(mixture,), kwargs={"mode": mode}, rounds=3, iterations=1,
                             warmup_rounds=1)
    assert out.shape == (1, separator.n_src, mixture.shape[-1]) and torch.isfinite(out).all()
    median = timing(benchmark, "median")
    if median is not None:
        _RTF[mode] = median / SECONDS
        benchmark.extra_info["rtf"] = _RTF[mode]


def teardown_module(module):
    if not _RTF:
        return
    print("\nreal-time factor (CPU, 2 s at 8 kHz, batch 1):")
    for mode, rtf in _RTF.items():
        print(f"  {mode:<9} RTF {rtf:.4f}")
    if "backbone" in _RTF:
        for mode in ("xcorr", "full"):
            if mode in _RTF:
                print(f"  {mode}/backbone: {_RTF[mode] / _RTF['backbone']:.1f}x")
