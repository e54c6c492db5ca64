"""Each fused op against its pure-PyTorch reference on the same inputs, in the same run.

    python -m pytest benchmarks/bench_ops.py            # CPU (and CUDA where present), default sizes
    FASTSEP_BENCH_FULL=1 python -m pytest benchmarks/bench_ops.py   # batch 1..64, 4 s..60 s

Sizes follow the product: 8 kHz audio, n_fft 512, hop 128 (F = 257 bins, K = T/128 + 1 frames), 2 talkers.
Effective bandwidth counts each input read once and each output written once.
"""
from __future__ import annotations

import os

import pytest
import torch

from bench_timing import synced
from fastsep import ops, reference

SR, N_FFT, HOP, TALKERS = 8000, 512, 128, 2
FULL = os.environ.get("FASTSEP_BENCH_FULL") == "1"
CASES = [(b, s) for b in (1, 8, 64) for s in (4, 60)] if FULL else [(1, 4), (1, 60), (8, 4)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(batch, seconds, device):
    frames = int(seconds * SR) // HOP + 1
    g = torch.Generator(device=device).manual_seed(0)
    shape = (batch, TALKERS, N_FFT // 2 + 1, frames)
    vd = torch.randn(*shape, dtype=torch.complex64, device=device, generator=g)
    vg = torch.randn(*shape, dtype=torch.complex64, device=device, generator=g)
    wshape = (batch, TALKERS, 2, N_FFT // 2 + 1, frames)
    mag = torch.rand(*wshape, device=device, generator=g)
    phase = (torch.rand(*wshape, device=device, generator=g) - 0.5) * 6.3
    return vd, vg, mag, phase


def _skip_without_kernels(device):
    if not ops.uses_kernels(device):
        pytest.skip(f"no compiled fastsep kernels for {device}: the fused variant would be the reference")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_complex_combine(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernels(device)
    vd, vg, mag, phase = _inputs(batch, seconds, device)
    fn = ops.complex_combine if variant == "fused" else reference.complex_combine
    moved = 5 * vd.numel() * 8  # vd, vg, out complex64; mag, phase 2 floats each
    record(benchmark, f"complex_combine {device} B={batch} {seconds}s", variant, synced(device, fn), vd, vg, mag,
           phase, bytes_moved=moved)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_complex_combine_backward(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernels(device)
    vd, vg, mag, phase = _inputs(batch, seconds, device)
    grad = torch.randn_like(vd)
    if variant == "fused":
        fn = torch.ops.fastsep.complex_combine_backward
    else:
        fn = reference.complex_combine_backward
    moved = 10 * vd.numel() * 8  # grad, vd, vg, mag, phase in; four gradients out
    record(benchmark, f"complex_combine_bwd {device} B={batch} {seconds}s", variant, synced(device, fn), grad, vd, vg,
           mag, phase, bytes_moved=moved)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_combine_features(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernels(device)
    vd, vg, _, _ = _inputs(batch, seconds, device)
    fn = ops.combine_features if variant == "fused" else reference.combine_features
    moved = 4 * vd.numel() * 8  # vd, vg in; mag, phase (2 floats each) out
    record(benchmark, f"combine_features {device} B={batch} {seconds}s", variant, synced(device, fn), vd, vg,
           bytes_moved=moved)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,seconds", CASES)
@pytest.mark.parametrize("variant", ["reference", "fused"])
def test_xcorr_align(benchmark, record, device, batch, seconds, variant):
    _skip_without_kernels(device)
    vd, vg, _, _ = _inputs(batch, seconds, device)
    fn = ops.xcorr_align if variant == "fused" else reference.xcorr_align
    moved = 3 * vd.numel() * 8 + vd.numel() // vd.shape[-2] * 8
    record(benchmark, f"xcorr_align {device} B={batch} {seconds}s", variant, synced(device, fn), vd, vg,
           bytes_moved=moved)


@pytest.mark.parametrize("device", [d for d in DEVICES if d == "cuda"])
def test_device_copy_bandwidth(benchmark, record, device):
    """The device's copy bandwidth (read + write), the yardstick of the memory-bound ops' targets."""
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    record(benchmark, "copy bandwidth cuda", "copy", synced(device, y.copy_), x, bytes_moved=2 * x.numel())
