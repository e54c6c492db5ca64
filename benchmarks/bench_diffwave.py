"""DiffWave fast sampling on one set of weights, three ways, in the same run:

- ``reference``: lmnt-com/diffwave's own ``inference.predict`` loop (``pip install --no-deps diffwave``), which runs the
  whole model, upsampler and conditioner projections included, on every step;
- ``unfused``: ``fastsep.models.DiffWave.generate(fused=False)``, the plain modules per step (the tests' oracle);
- ``fused``: ``generate()``: conditioner once per call and the residual layers through ``fastsep.ops.diffwave_stack``
  (on CUDA also ``fused-kernel`` and ``fused-library``: the stack forced to the fused CUDA kernel or to cuDNN/cuBLAS;
  plain ``fused`` keeps the faster of the two, see ``DiffWave.cuda_stack``; on CPUs with AVX512-BF16 also
  ``fused-bf16``, the CPU kernel with bfloat16 products).

It also times one step's residual stack alone (``fastsep.ops.diffwave_stack`` against ``fastsep.reference``).

    python -m pytest benchmarks/bench_diffwave.py -s       # pytest-benchmark table + ratios and real-time factors

CPU defaults stay small: batch 1 and 4, 1 s of 8 kHz audio (hop 256, 80 mels), 64x30 and 32x12. Environment:
``FASTSEP_BENCH_FULL=1`` sweeps batch 1..32; ``FASTSEP_BENCH_SECONDS`` sets the audio length; ``FASTSEP_BENCH_DEVICE``
picks the device (default cuda when available). RTF = wall time / seconds of audio produced (all items together).

The reference's ``inference`` module imports torchaudio at the top for its command-line ``main`` only; where
torchaudio does not import (the CPU torch of the development machines) an empty stand-in module is put in its place
for that import, so that ``predict`` itself runs unchanged.
"""
from __future__ import annotations

import functools
import os
import sys
import types
from typing import Dict, Tuple

import pytest
import torch

from bench_timing import timing
from fastsep import _ext, ops, reference
from fastsep.models import DiffWave

SAMPLE_RATE = 8000
HOP = 256
N_MELS = 80
CONFIGS = {"64x30": dict(residual_channels=64, residual_layers=30, dilation_cycle_length=10),
           "32x12": dict(residual_channels=32, residual_layers=12, dilation_cycle_length=6)}
BATCHES = [1, 4, 8, 16, 32] if os.environ.get("FASTSEP_BENCH_FULL") else [1, 4]
SECONDS = float(os.environ.get("FASTSEP_BENCH_SECONDS", "1.0"))
DEVICE = torch.device(os.environ.get("FASTSEP_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
ROUNDS = 3

_MODELS: Dict[str, DiffWave] = {}
_RESULTS: Dict[Tuple[str, int, str], float] = {}


def model_for(name: str) -> DiffWave:
    """A DiffWave with random (non-zero) weights; the same object for every case of one configuration."""
    if name not in _MODELS:
        torch.manual_seed(0)
        model = DiffWave(**CONFIGS[name], n_mels=N_MELS, sample_rate=SAMPLE_RATE, hop_length=HOP)
        with torch.no_grad():
            model.output_projection.weight.normal_(0, 0.05)  # zero at init would make the output constant
        _MODELS[name] = model.to(DEVICE).eval()
    return _MODELS[name]


def mel_batch(batch: int) -> torch.Tensor:
    frames = max(1, int(round(SECONDS * SAMPLE_RATE / HOP)))
    return torch.rand(batch, N_MELS, frames, generator=torch.Generator().manual_seed(batch)).to(DEVICE)


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def reference_predict():
    """lmnt-com/diffwave's ``inference.predict`` and its global params, or None when the package is absent."""
    try:
        import torchaudio  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a registry wheel that needs a CUDA torch
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # predict() never touches it
    try:
        from diffwave import inference
        from diffwave.params import params
    except ImportError:
        return None, None
    return inference.predict, params


def reference_runner(name: str, batch: int, folder):
    """A callable running the reference's predict on ``model_for(name)``'s weights, or a skip reason."""
    predict, params = reference_predict()
    if predict is None:
        return None, "the reference diffwave package is not installed (pip install --no-deps diffwave)"
    model = model_for(name)
    # predict() builds its model from the package's global params on first use of a model_dir, then caches it.
    params.update(residual_channels=model.config["residual_channels"],
                  residual_layers=model.config["residual_layers"],
                  dilation_cycle_length=model.config["dilation_cycle_length"], n_mels=N_MELS, hop_samples=HOP,
                  noise_schedule=list(model.config["noise_schedule"]),
                  inference_noise_schedule=list(model.config["inference_noise_schedule"]))
    path = os.path.join(str(folder), f"{name}.pt")
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    mel = mel_batch(batch)

    def run():
        audio, _ = predict(mel, model_dir=path, device=DEVICE, fast_sampling=True)
        _sync()
        return audio

    return run, None


def run_generate(name: str, batch: int, mode: str) -> torch.Tensor:
    model = model_for(name)
    # On CUDA, "fused" lets DiffWave time its two stack implementations and keep the faster; the other two force one.
    model.cuda_stack = {"fused-kernel": "kernel", "fused-library": "library"}.get(mode, "auto")
    precision = "bfloat16" if mode == "fused-bf16" else "float32"
    out = model.generate(mel_batch(batch), fast=True, seed=0, fused=(mode != "unfused"), precision=precision)
    _sync()
    return out


def summary() -> str:
    kernels = "kernels" if ops.uses_kernels(DEVICE) else "the PyTorch reference (no kernels for this device)"
    lines = [f"DiffWave fast sampling on {DEVICE} ({torch.get_num_threads()} threads), {SECONDS:g} s of "
             f"{SAMPLE_RATE} Hz audio per item, fused op from {kernels}; best of {ROUNDS} rounds",
             f"{'config':>6} {'batch':>5} {'reference':>10} {'unfused':>9} {'fused':>9} {'fused/ref':>9} "
             f"{'fused/unf':>9} {'RTF ref':>8} {'RTF fused':>9}"]
    for (name, batch) in sorted({(k[0], k[1]) for k in _RESULTS if k[2] in ("fused", "unfused", "reference")}):
        ref, unf, fus = (_RESULTS.get((name, batch, m)) for m in ("reference", "unfused", "fused"))
        cell = lambda v: f"{v:.3f} s" if v else "-"  # noqa: E731
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
        rtf = lambda v: f"{v / (batch * SECONDS):.4f}" if v else "-"  # noqa: E731
        lines.append(f"{name:>6} {batch:>5} {cell(ref):>10} {cell(unf):>9} {cell(fus):>9} {ratio(ref, fus):>9} "
                     f"{ratio(unf, fus):>9} {rtf(ref):>8} {rtf(fus):>9}")
    for (name, batch, mode), seconds in sorted(_RESULTS.items()):
        if mode.startswith("fused-") and (name, batch, "reference") in _RESULTS:
            ref = _RESULTS[(name, batch, "reference")]
            what = "bfloat16 products" if mode == "fused-bf16" else f"the stack forced to {mode[6:]}"
            lines.append(f"{name} batch {batch} fused with {what}: {seconds:.4f} s, "
                         f"{ref / seconds:.2f}x the reference, RTF {seconds / (batch * SECONDS):.5f}")
        if mode == "stack-kernel" and (name, batch, "stack-reference") in _RESULTS:
            ref = _RESULTS[(name, batch, "stack-reference")]
            flops = 2 * batch * mel_batch(1).shape[-1] * HOP * CONFIGS[name]["residual_layers"] * 8 * \
                CONFIGS[name]["residual_channels"] ** 2  # dilated (2C x 3C) and output (2C x C) products
            lines.append(f"one step's residual stack {name} batch {batch}: reference.diffwave_stack {ref * 1e3:.1f} ms,"
                         f" ops.diffwave_stack {seconds * 1e3:.1f} ms ({flops / seconds / 1e9:.0f} GFLOP/s), "
                         f"{ref / seconds:.2f}x")
            untiled = _RESULTS.get((name, batch, "stack-kernel-untiled"))
            if untiled:
                lines.append(f"  the kernel without time tiles: {untiled * 1e3:.1f} ms; tiles {untiled / seconds:.2f}x")
            bf16 = _RESULTS.get((name, batch, "stack-kernel-bf16"))
            if bf16:
                lines.append(f"  the kernel with bfloat16 products ({_ext.diffwave_bf16_variant()}): {bf16 * 1e3:.1f} ms "
                             f"({flops / bf16 / 1e9:.0f} GFLOP/s), {seconds / bf16:.2f}x float32")
            mel = _RESULTS.get((name, batch, "stack-kernel-bf16-mel"))
            if mel:
                lines.append(f"  the same with the conditioner computed in the kernel from the mel: {mel * 1e3:.1f} ms "
                             f"(its products not counted)")
            dp = _RESULTS.get((name, batch, "stack-kernel-bf16-dp"))
            if dp:
                lines.append(f"  the kernel with bfloat16 products (avx512bf16): {dp * 1e3:.1f} ms "
                             f"({flops / dp / 1e9:.0f} GFLOP/s)")
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def _print_summary():
    yield
    if _RESULTS:
        print("\n" + summary())


MODES = ["reference", "unfused", "fused"] + (["fused-kernel", "fused-library"] if DEVICE.type == "cuda" else []) + \
    (["fused-bf16"] if DEVICE.type == "cpu" and _ext.diffwave_bf16_available() else [])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sampling(benchmark, tmp_path_factory, name, batch, mode):
    if mode == "reference":
        fn, why = reference_runner(name, batch, tmp_path_factory.mktemp("reference"))
        if fn is None:
            pytest.skip(why)
    else:
        fn = lambda: run_generate(name, batch, mode)  # noqa: E731
    benchmark.group = f"diffwave {name} batch {batch}"
    out = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert out.shape == (batch, mel_batch(batch).shape[-1] * HOP) and torch.isfinite(out).all()
    seconds = timing(benchmark)
    if seconds is not None:
        _RESULTS[(name, batch, mode)] = seconds
        benchmark.extra_info["rtf"] = seconds / (batch * SECONDS)


def stack_inputs(name: str, batch: int):
    """One step's stack inputs for ``model_for(name)``'s shapes (random values: the arithmetic is what is timed)."""
    cfg = CONFIGS[name]
    C, L = cfg["residual_channels"], cfg["residual_layers"]
    T = mel_batch(1).shape[-1] * HOP
    g = torch.Generator().manual_seed(1)
    r = lambda *shape: (torch.randn(*shape, generator=g) * 0.1).to(DEVICE)  # noqa: E731
    dilations = [2 ** (i % cfg["dilation_cycle_length"]) for i in range(L)]
    return (r(batch, C, T), r(L, batch, C), r(L, batch, 2 * C, T), r(L, 2 * C, C, 3), r(L, 2 * C), r(L, 2 * C, C),
            r(L, 2 * C), dilations)


@pytest.mark.parametrize("impl", ["stack-reference", "stack-kernel", "stack-kernel-untiled", "stack-kernel-bf16",
                                  "stack-kernel-bf16-dp", "stack-kernel-bf16-mel"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_stack(benchmark, monkeypatch, name, batch, impl):
    args = stack_inputs(name, batch)
    fn = reference.diffwave_stack if impl == "stack-reference" else ops.diffwave_stack
    if impl == "stack-kernel-untiled":  # the CPU kernel layer by layer over the whole signal (no time tiles)
        if DEVICE.type != "cpu":
            pytest.skip("time tiles are the CPU kernel's")
        monkeypatch.setenv("FASTSEP_DIFFWAVE_TILE", "0")
    if impl.startswith("stack-kernel-bf16"):  # bfloat16 products: AMX tiles where the CPU has them, else vdpbf16ps
        if DEVICE.type != "cpu" or not _ext.diffwave_bf16_available():
            pytest.skip("needs the CPU bfloat16 kernel (AVX512-BF16)")
        if impl == "stack-kernel-bf16-dp":  # the vdpbf16ps path, kept off the tile unit
            if _ext.diffwave_bf16_variant() != "amx":
                pytest.skip("stack-kernel-bf16 is already the vdpbf16ps path on this CPU")
            monkeypatch.setenv("FASTSEP_CPU_ISA", "avx512bf16")
        fn = functools.partial(ops.diffwave_stack, precision="bfloat16")
        if impl == "stack-kernel-bf16-mel":  # the conditioner computed in the kernel, from the default GM's 40 bands
            g, bands = torch.Generator().manual_seed(2), 40
            mel = torch.randn(batch, bands, args[0].shape[-1], generator=g).to(DEVICE)
            w_cond = (0.1 * torch.randn(len(args[-1]), 2 * args[0].shape[1], bands, generator=g)).to(DEVICE)
            args = args[:2] + (None,) + args[3:]
            fn = functools.partial(ops.diffwave_stack, precision="bfloat16", mel=mel, w_cond=w_cond)

    def run():
        out = fn(*args)
        _sync()
        return out

    benchmark.group = f"diffwave_stack {name} batch {batch}"
    out = benchmark.pedantic(run, rounds=7, iterations=1, warmup_rounds=1)
    assert out.shape == args[0].shape and torch.isfinite(out).all()
    seconds = timing(benchmark)
    if seconds is not None:
        _RESULTS[(name, batch, impl)] = seconds
