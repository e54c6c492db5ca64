"""Pure-PyTorch references of every fused op.

These are the tests' oracle and the fallback when the compiled extension is absent. They favour clarity over speed;
each mirrors the contract of the op of the same name in :mod:`fastsep.ops`.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    "complex_combine",
    "complex_combine_backward",
    "combine_features",
    "xcorr_align",
    "diffwave_layer",
    "diffwave_stack",
    "diffwave_stack_bf16",
    "bf16_conditioner",
    "default_n_fft",
    "mix_sde_update",
    "guided_update",
    "prelu_residual",
    "tcn_block_",
]


def complex_combine(vd: Tensor, vg: Tensor, mag: Tensor, phase: Tensor) -> Tensor:
    """out = mag0·exp(-j·phase0)·vd + mag1·exp(-j·phase1)·vg (Separate-And-Diffuse eqs. 28-29)."""
    alpha = torch.polar(mag[..., 0, :, :], -phase[..., 0, :, :])
    beta = torch.polar(mag[..., 1, :, :], -phase[..., 1, :, :])
    return alpha * vd + beta * vg


def complex_combine_backward(
    grad: Tensor, vd: Tensor, vg: Tensor, mag: Tensor, phase: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Vector-Jacobian product of :func:`complex_combine` in PyTorch's complex-gradient convention.

    For out = a·v with a = m·exp(-j·p) and w = exp(-j·p)·v: grad_v = grad·conj(a), grad_m = Re(grad·conj(w)) and,
    since d out / d p = -j·m·w, grad_p = Re(grad·conj(-j·m·w)) = -m·Im(grad·conj(w)).
    """
    unit0 = torch.polar(torch.ones_like(mag[..., 0, :, :]), -phase[..., 0, :, :])
    unit1 = torch.polar(torch.ones_like(mag[..., 1, :, :]), -phase[..., 1, :, :])
    a = mag[..., 0, :, :] * unit0
    b = mag[..., 1, :, :] * unit1
    grad_vd = grad * a.conj()
    grad_vg = grad * b.conj()
    w0 = unit0 * vd
    w1 = unit1 * vg
    grad_m = torch.stack([(grad * w0.conj()).real, (grad * w1.conj()).real], dim=-3)
    grad_p = torch.stack(
        [-mag[..., 0, :, :] * (grad * w0.conj()).imag, -mag[..., 1, :, :] * (grad * w1.conj()).imag], dim=-3
    )
    return grad_vd, grad_vg, grad_m, grad_p


def combine_features(vd: Tensor, vg: Tensor) -> Tuple[Tensor, Tensor]:
    """The input of network F: mag = [|vd|, |vg|], phase = [angle(vd), angle(vg·conj(vd))] (eqs. 24, 26)."""
    mag = torch.stack([vd.abs(), vg.abs()], dim=-3)
    phase = torch.stack([vd.angle(), (vg * vd.conj()).angle()], dim=-3)
    return mag, phase


def default_n_fft(n_freq: int) -> int:
    """The FFT length whose one-sided spectrum has ``n_freq`` bins (the even one)."""
    return 2 * (n_freq - 1)


def xcorr_align(vd: Tensor, vg: Tensor, n_fft: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Per-frame cross-correlation alignment of vg to vd (Separate-And-Diffuse eqs. 34-37).

    vd, vg: complex ``[..., F, K]`` one-sided spectra of K frames. For each frame the circular cross-correlation
    r[tau] = sum_n vd[n]·vg[n - tau] is irfft(vd·conj(vg), n_fft); its argmax tau* (first one on ties) is taken as a
    signed shift in (-n_fft/2, n_fft/2]. Sign convention: ``lag = -tau*`` is the delay of vg behind vd in samples, so
    a frame of vg that is the frame of vd circularly delayed by d samples gives lag == d (for |d| < n_fft/2), and
    ``vg_aligned = vg·exp(+j·2π·f·lag/n_fft)`` advances vg by lag samples, which restores vd.

    Returns (vg_aligned complex ``[..., F, K]``, lag int64 ``[..., K]``).
    """
    n_freq = vd.shape[-2]
    n = default_n_fft(n_freq) if n_fft is None else int(n_fft)
    if vd.numel() == 0:  # some FFT backends refuse empty batches
        return vg.clone(), torch.zeros(vd.shape[:-2] + vd.shape[-1:], dtype=torch.int64, device=vd.device)
    r = torch.fft.irfft(vd * vg.conj(), n=n, dim=-2)  # [..., n, K]
    tau = torch.argmax(r, dim=-2)  # first maximum on ties
    signed = torch.where(tau > n // 2, tau - n, tau)
    lag = -signed
    f = torch.arange(n_freq, device=vd.device, dtype=torch.int64)
    # (f·lag mod n) keeps the phase argument small and exact before the float conversion.
    m = torch.remainder(f[:, None] * lag[..., None, :], n)
    ramp = torch.polar(torch.ones_like(m, dtype=vd.real.dtype), (2 * math.pi / n) * m.to(vd.real.dtype))
    return vg * ramp, lag


def _same(t: Tensor) -> Tensor:
    return t


def _bf16(t: Tensor) -> Tensor:
    """Round to bfloat16 (nearest even) and back: the values the bfloat16 kernel multiplies."""
    return t.to(torch.bfloat16).float()


def _layer(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilation: int, operand: Callable[[Tensor], Tensor]):
    # operand: what the two convolutions multiply (their inputs and weights): unchanged, or rounded to bfloat16.
    channels = x.shape[1]
    y = operand(x + dstep.unsqueeze(-1))
    y = torch.nn.functional.conv1d(y, operand(w_dil), b_dil, padding=dilation, dilation=dilation)
    if cond is not None and cond.numel() > 0:
        y = y + cond
    gate, filt = y[:, :channels], y[:, channels:]
    y = operand(torch.sigmoid(gate) * torch.tanh(filt))
    y = torch.nn.functional.conv1d(y, operand(w_out).reshape(2 * channels, channels, 1), b_out)
    residual, skip = y[:, :channels], y[:, channels:]
    return (x + residual) / math.sqrt(2.0), skip


def _stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, operand: Callable[[Tensor], Tensor]) -> Tensor:
    skip_sum = torch.zeros_like(x)
    has_cond = cond is not None and cond.numel() > 0
    for i, d in enumerate(dilations):
        x, skip = _layer(x, dstep[i], cond[i] if has_cond else None, w_dil[i], b_dil[i], w_out[i], b_out[i], int(d),
                         operand)
        skip_sum = skip_sum + skip
    return skip_sum


def diffwave_layer(
    x: Tensor,
    dstep: Tensor,
    cond: Optional[Tensor],
    w_dil: Tensor,
    b_dil: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    dilation: int,
) -> Tuple[Tensor, Tensor]:
    """One DiffWave residual layer at inference.

    x [B, C, T]; dstep [B, C] the layer's diffusion-step projection (bias included); cond [B, 2C, T] the layer's
    conditioner projection (bias included) or None for the unconditional model; w_dil [2C, C, 3], b_dil [2C];
    w_out [2C, C] (or [2C, C, 1]), b_out [2C]. Returns ((x + residual)/sqrt(2), skip), both [B, C, T].
    """
    return _layer(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilation, _same)


def diffwave_stack(
    x: Tensor,
    dstep: Tensor,
    cond: Optional[Tensor],
    w_dil: Tensor,
    b_dil: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    dilations: Sequence[int],
) -> Tensor:
    """All L residual layers of one DiffWave step; returns the plain sum of their skips, [B, C, T].

    dstep [L, B, C]; cond [L, B, 2C, T] or None/empty; w_dil [L, 2C, C, 3]; b_dil [L, 2C]; w_out [L, 2C, C];
    b_out [L, 2C]; dilations: L ints. The caller divides by sqrt(L) as DiffWave does.
    """
    return _stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, _same)


def diffwave_stack_bf16(
    x: Tensor,
    dstep: Tensor,
    cond: Optional[Tensor],
    w_dil: Tensor,
    b_dil: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    dilations: Sequence[int],
    mel: Optional[Tensor] = None,
    w_cond: Optional[Tensor] = None,
) -> Tensor:
    """:func:`diffwave_stack` with both convolutions' inputs and weights rounded to bfloat16 (products and sums in
    float32): what ``fastsep.ops.diffwave_stack(..., precision="bfloat16")`` computes, up to summation order.
    ``cond`` may be bfloat16 (its values are what is added); or ``cond`` None and the conditioner given as ``mel``
    [B, M, T] and ``w_cond`` [L, 2C, M] (:func:`bf16_conditioner`)."""
    if mel is not None:
        cond = bf16_conditioner(mel, w_cond)
    if cond is not None and cond.dtype == torch.bfloat16:
        cond = cond.float()
    return _stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, _bf16)


def bf16_conditioner(mel: Tensor, w_cond: Tensor) -> Tensor:
    """``cond[l] = w_cond[l] @ mel`` ([L, B, 2C, T] float32) with both factors rounded to bfloat16 and float32 sums:
    the conditioner the bfloat16 DiffWave kernel computes from (mel, w_cond)."""
    return torch.einsum("lcm,bmt->lbct", _bf16(w_cond), _bf16(mel))


def mix_sde_update(x: Tensor, score: Tensor, noise: Optional[Tensor], a_p: float, a_q: float, b_p: float, b_q: float,
                   c_p: float, c_q: float) -> Tensor:
    """One update of DiffSep's sampler on ``[B, K, T]`` tensors, written with the SDE's two projections.

    With ``P v`` the average of ``v`` over the K sources (repeated) and ``Pbar v = v - P v``:
    ``out = (a_p P + a_q Pbar) x + (b_p P + b_q Pbar) score + (c_p P + c_q Pbar) noise`` (no noise terms when noise
    is None). The reverse-diffusion predictor is ``a = (1, 1 + gamma dt)``, ``b = (g^2 dt, g^2 dt)``,
    ``c = (g sqrt(dt), g sqrt(dt))``; the annealed Langevin corrector ``a = (1, 1)``, ``b = 2 r^2 (lambda1,
    lambda2)``, ``c = 2 r (sqrt(lambda1), sqrt(lambda2))``.
    """

    def apply(v: Tensor, on_avg: float, on_rest: float) -> Tensor:
        avg = v.mean(dim=1, keepdim=True)
        return on_avg * avg + on_rest * (v - avg)

    out = apply(x, a_p, a_q) + apply(score, b_p, b_q)
    if noise is not None:
        out = out + apply(noise, c_p, c_q)
    return out


def guided_update(x0: Tensor, x: Tensor, grad: Tensor, noise: Optional[Tensor], coef_x0: float, coef_xt: float,
                  noise_std: float, radius: float, normalise: bool, eps: float = 1e-12) -> Tensor:
    """One step of the prior-guided solver on ``[B, C, T]`` tensors: the ancestral sample
    ``x' = coef_x0 x0 + coef_xt x + noise_std noise`` (no noise term when noise is None), then the guidance step
    ``x' - radius g / max(||g||, eps)`` per row (``normalise``: every source moves by ``radius``) or ``x' - radius g``
    (DPS)."""
    out = coef_x0 * x0 + coef_xt * x
    if noise is not None:
        out = out + noise_std * noise
    if normalise:
        factor = radius / grad.norm(dim=-1, keepdim=True).clamp_min(eps)
        return out - factor * grad
    return out - radius * grad


def prelu_residual(y: Tensor, weight: Tensor, residual: Tensor) -> Tensor:
    """``prelu(y, weight) + residual`` (one slope), in y's dtype."""
    return torch.nn.functional.prelu(y, weight.to(y.dtype)) + residual


def global_layer_norm(v: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    """Conv-TasNet's gLN of ``v [B, N, *]``: ``(v - mean) / sqrt(var + eps) * gamma + beta``, the moments over all
    but the batch dimension (the formula ``GlobalLayerNorm`` computes with fewer passes)."""
    dims = tuple(range(1, v.dim()))
    mean = v.mean(dim=dims, keepdim=True)
    var = (v - mean).pow(2).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (v.dim() - 2)
    return (v - mean) / torch.sqrt(var + eps) * gamma.view(shape) + beta.view(shape)


def tcn_block_(state: Tensor, offset: Tensor, w_in: Tensor, b_in: Tensor, a_in: Tensor, g_in: Tensor,
               beta_in: Tensor, w_dw: Tensor, b_dw: Tensor, a_dw: Tensor, g_dw: Tensor, beta_dw: Tensor, w_out: Tensor,
               b_out: Tensor, dilation: int, eps: float) -> None:
    """One Conv-TasNet TCN block (gLN) in place on the network's state ``[x; skips] = state + offset[..., None]``
    (``state [B, R, T]``, ``offset [B, R]``; ``x`` its first ``C = w_in.shape[1]`` rows): ``h = prelu(w_in x + b_in)``,
    ``d = prelu(dwconv(gLN(h)))``, ``m = gLN(d)``; the last ``w_out.shape[0]`` rows gain ``w_out m + b_out`` (added
    to ``state``; ``offset`` is left as it is). 1x1 weights ``[out, in]``, ``w_dw [H, K]`` (K odd, "same" zero
    padding)."""
    F = torch.nn.functional
    x = state[:, :w_in.shape[1]] + offset[:, :w_in.shape[1], None]
    h = F.prelu(F.conv1d(x, w_in.unsqueeze(-1), b_in), a_in.reshape(1))
    h = global_layer_norm(h, g_in, beta_in, eps)
    k = w_dw.shape[-1]
    d = F.conv1d(h, w_dw.unsqueeze(1), b_dw, padding=(k - 1) * dilation // 2, dilation=dilation, groups=h.shape[1])
    m = global_layer_norm(F.prelu(d, a_dw.reshape(1)), g_dw, beta_dw, eps)
    state[:, state.shape[1] - w_out.shape[0]:] += F.conv1d(m, w_out.unsqueeze(-1), b_out)
