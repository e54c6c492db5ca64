"""DiffWave sampling: fused (fastsep.ops.diffwave_stack, conditioner once per call) against unfused (plain modules,
the reference's arithmetic) on the same weights, fast 6-step schedule.

    python -m pytest benchmarks/bench_diffwave.py -s          # pytest-benchmark table + a ratio / RTF summary
    python benchmarks/bench_diffwave.py                       # the summary alone

CPU defaults stay small: batch 1 and 4, 1 s of 8 kHz audio (hop 256, 80 mels). Environment:
``FASTSEP_BENCH_FULL=1`` sweeps batch 1..32; ``FASTSEP_BENCH_SECONDS`` sets the audio length; ``FASTSEP_BENCH_DEVICE``
picks the device (default cuda when available). RTF = wall time / seconds of audio produced (all items together).
The optional ``reference`` case times lmnt-com/diffwave's own ``inference.predict`` (``pip install --no-deps
diffwave``; it needs torchaudio) on the 64x30 weights and skips when that does not import.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Tuple

import pytest
import torch

from fastsep.models import DiffWave

SAMPLE_RATE = 8000
HOP = 256
CONFIGS = {"64x30": dict(residual_channels=64, residual_layers=30, dilation_cycle_length=10),
           "32x12": dict(residual_channels=32, residual_layers=12, dilation_cycle_length=6)}
BATCHES = [1, 4, 8, 16, 32] if os.environ.get("FASTSEP_BENCH_FULL") else [1, 4]
SECONDS = float(os.environ.get("FASTSEP_BENCH_SECONDS", "1.0"))
DEVICE = torch.device(os.environ.get("FASTSEP_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))

_MODELS: Dict[str, DiffWave] = {}
_RESULTS: Dict[Tuple[str, int, str], float] = {}


def model_for(name: str) -> DiffWave:
    """A DiffWave with random (non-zero) weights; the same object for every case of one configuration."""
    if name not in _MODELS:
        torch.manual_seed(0)
        model = DiffWave(**CONFIGS[name], n_mels=80, sample_rate=SAMPLE_RATE, hop_length=HOP)
        with torch.no_grad():
            model.output_projection.weight.normal_(0, 0.05)  # zero at init would make the output constant
        _MODELS[name] = model.to(DEVICE).eval()
    return _MODELS[name]


def mel_batch(batch: int) -> torch.Tensor:
    frames = max(1, int(round(SECONDS * SAMPLE_RATE / HOP)))
    return torch.rand(batch, 80, frames, generator=torch.Generator().manual_seed(batch)).to(DEVICE)


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def run_once(name: str, batch: int, mode: str) -> torch.Tensor:
    out = model_for(name).generate(mel_batch(batch), fast=True, seed=0, fused=(mode == "fused"))
    _sync()
    return out


def summary(results: Dict[Tuple[str, int, str], float]) -> List[str]:
    """Lines of fused/unfused ratio and RTFs per (configuration, batch)."""
    lines = [f"DiffWave fast sampling on {DEVICE} ({torch.get_num_threads()} threads), {SECONDS:g} s of "
             f"{SAMPLE_RATE} Hz audio per item, fused op from "
             f"{'kernels' if __import__('fastsep').ops.uses_kernels(DEVICE) else 'the PyTorch reference'}",
             f"{'config':>6} {'batch':>5} {'unfused s':>10} {'fused s':>9} {'speed-up':>8} {'RTF unf.':>9} "
             f"{'RTF fused':>9}"]
    for (name, batch) in sorted({(k[0], k[1]) for k in results}):
        unfused, fused = results.get((name, batch, "unfused")), results.get((name, batch, "fused"))
        if unfused is None or fused is None:
            continue
        audio_s = batch * SECONDS
        lines.append(f"{name:>6} {batch:>5} {unfused:>10.3f} {fused:>9.3f} {unfused / fused:>7.2f}x "
                     f"{unfused / audio_s:>9.4f} {fused / audio_s:>9.4f}")
    return lines


@pytest.fixture(scope="module", autouse=True)
def _print_summary():
    yield
    if _RESULTS:
        print("\n" + "\n".join(summary(_RESULTS)))


@pytest.mark.parametrize("mode", ["unfused", "fused"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sampling(benchmark, name, batch, mode):
    run_once(name, batch, mode)  # warm-up (allocations, lazy init)
    out = benchmark.pedantic(run_once, args=(name, batch, mode), rounds=3, iterations=1)
    assert out.shape == (batch, mel_batch(batch).shape[-1] * HOP) and torch.isfinite(out).all()
    _RESULTS[(name, batch, mode)] = benchmark.stats.stats.min
    benchmark.extra_info["rtf"] = benchmark.stats.stats.min / (batch * SECONDS)


def test_reference_package(benchmark, tmp_path):
    """lmnt-com/diffwave's own predict() on the 64x30 weights (its default architecture), batch 1."""
    try:
        from diffwave import inference as ref_inference
        from diffwave.params import params as ref_params
    except Exception as exc:  # noqa: BLE001 - absent, or torchaudio missing/broken
        pytest.skip(f"the reference diffwave package does not import here ({type(exc).__name__}: {exc})")
    if (ref_params.residual_channels, ref_params.residual_layers, ref_params.n_mels, ref_params.hop_samples) != \
            (64, 30, 80, HOP):
        pytest.skip("the installed diffwave's default architecture is not 64x30 with 80 mels and hop 256")
    path = tmp_path / "weights.pt"
    torch.save({"model": model_for("64x30").cpu().state_dict()}, path)
    model_for("64x30").to(DEVICE)
    mel = mel_batch(1)
    ref_params.noise_schedule = model_for("64x30").config["noise_schedule"]

    def run():
        audio, _ = ref_inference.predict(mel, model_dir=str(path), device=DEVICE, fast_sampling=True)
        _sync()
        return audio

    run()
    benchmark.pedantic(run, rounds=3, iterations=1)
    _RESULTS[("64x30", 1, "reference")] = benchmark.stats.stats.min
    benchmark.extra_info["rtf"] = benchmark.stats.stats.min / SECONDS


def main() -> None:
    results = {}
    for name in CONFIGS:
        for batch in BATCHES:
            for mode in ("unfused", "fused"):
                run_once(name, batch, mode)
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    run_once(name, batch, mode)
                    times.append(time.perf_counter() - start)
                results[(name, batch, mode)] = min(times)
    print("\n".join(summary(results)))


if __name__ == "__main__":
    main()
