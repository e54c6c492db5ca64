"""Input builders shared by the op tests and benchmarks."""
from __future__ import annotations

import contextlib

import torch

CPU = torch.device("cpu")


def devices():
    out = [CPU]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def spectra(lead, n_freq, frames, dtype=torch.complex64, device=CPU, generator=None):
    vd = torch.randn(*lead, n_freq, frames, dtype=dtype, device=device, generator=generator)
    vg = torch.randn(*lead, n_freq, frames, dtype=dtype, device=device, generator=generator)
    return vd, vg


def weights(lead, n_freq, frames, dtype=torch.float32, device=CPU, generator=None):
    mag = torch.rand(*lead, 2, n_freq, frames, dtype=dtype, device=device, generator=generator) * 2
    phase = (torch.rand(*lead, 2, n_freq, frames, dtype=dtype, device=device, generator=generator) - 0.5) * 20
    return mag, phase


def diffwave_inputs(batch, channels, length, layers, conditioned=True, device=CPU, generator=None):
    g = dict(device=device, generator=generator)
    x = torch.randn(batch, channels, length, **g)
    dstep = torch.randn(layers, batch, channels, **g)
    cond = torch.randn(layers, batch, 2 * channels, length, **g) if conditioned else None
    scale = (3 * channels) ** -0.5
    w_dil = torch.randn(layers, 2 * channels, channels, 3, **g) * scale
    b_dil = torch.randn(layers, 2 * channels, **g) * 0.1
    w_out = torch.randn(layers, 2 * channels, channels, **g) * channels ** -0.5
    b_out = torch.randn(layers, 2 * channels, **g) * 0.1
    return x, dstep, cond, w_dil, b_dil, w_out, b_out


@contextlib.contextmanager
def float32_convolutions():
    """CUDA convolutions and matrix products in true float32 (TF32 off) inside the block.

    cuDNN computes float32 convolutions in TF32 by default (10-bit mantissa, ~1e-3 relative error), so a reference
    built on F.conv1d would be less exact than the fused float32 kernel it checks."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
