"""The fused operators of fastsep, with their checks, fake kernels and autograd.

Each function validates its inputs in Python (so a wrong dtype, shape, device or layout never reaches a kernel), then
calls the compiled ``torch.ops.fastsep`` operator for the input's device when one is built, and the pure-PyTorch
reference in :mod:`fastsep.reference` otherwise. Both paths return the same values up to float rounding.

Layouts follow asteroid: spectra are complex ``[..., F, K]`` (frequency bins, frames); the per-source weights and
features carry a dimension of size 2 before F: ``[..., 2, F, K]``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _ext
from . import reference

__all__ = ["complex_combine", "combine_features", "xcorr_align", "diffwave_layer", "diffwave_stack", "mix_sde_update",
           "guided_update", "prelu_residual", "tcn_block_", "uses_kernels"]

_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


# ----------------------------------------------------------------------------------------------------------- checks
def _fail(op: str, msg: str) -> None:
    raise ValueError(f"fastsep.ops.{op}: {msg}")


def _check_tensor(op: str, name: str, t, dtypes, min_dim: int = 0) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"fastsep.ops.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        _fail(op, f"{name} must have dtype {allowed}, got {str(t.dtype).replace('torch.', '')}")
    if t.dim() < min_dim:
        _fail(op, f"{name} must have at least {min_dim} dimensions, got shape {tuple(t.shape)}")
    if t.layout != torch.strided:
        _fail(op, f"{name} must be a dense (strided) tensor, got layout {t.layout}")


def _check_same_device(op: str, **tensors: Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    if any(d != first for d in devices.values()):
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        _fail(op, f"all inputs must be on one device, got {listing}")
    return first


def _use_kernel(device: torch.device) -> bool:
    if not _ext.available():
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return _ext.has_cuda_kernels()
    return False


def uses_kernels(device="cpu", op: Optional[str] = None) -> bool:
    """Whether the fused kernels (rather than the references) serve tensors on ``device``; with ``op``, whether the
    built library has that op too (a library built from older sources lacks the newer ops)."""
    return _use_kernel(torch.device(device)) and (op is None or _has_op(op))


def _contig(t: Tensor) -> Tensor:
    # Kernels index raw memory; a non-contiguous view is copied once here rather than rejected, which is what users
    # of torch ops expect. The copy is visible in the benchmarks if it ever matters.
    return t if t.is_contiguous() else t.contiguous()


def _check_combine_inputs(op: str, vd: Tensor, vg: Tensor) -> None:
    _check_tensor(op, "vd", vd, (torch.complex64, torch.complex128), 2)
    _check_tensor(op, "vg", vg, (torch.complex64, torch.complex128), 2)
    if vd.dtype != vg.dtype:
        _fail(op, f"vd and vg must share a dtype, got {vd.dtype} and {vg.dtype}")
    if vd.shape != vg.shape:
        _fail(op, f"vd and vg must have the same shape [..., F, K], got {tuple(vd.shape)} and {tuple(vg.shape)}")


# ------------------------------------------------------------------------------------------------- complex_combine
def complex_combine(vd: Tensor, vg: Tensor, mag: Tensor, phase: Tensor) -> Tensor:
    """Fused STFT-domain combination of Separate-And-Diffuse (eqs. 28-29).

    ``out = mag[..., 0, :, :]·exp(-j·phase[..., 0, :, :])·vd + mag[..., 1, :, :]·exp(-j·phase[..., 1, :, :])·vg``

    Args:
        vd, vg: complex64 (or complex128) spectra ``[..., F, K]`` of the deterministic and generative estimates.
        mag, phase: float32 (float64) ``[..., 2, F, K]``, the network F's outputs D1 and D2.

    Returns:
        complex ``[..., F, K]``. Differentiable in all four inputs; the backward is a fused op of its own.
    """
    op = "complex_combine"
    _check_combine_inputs(op, vd, vg)
    real = vd.real.dtype if vd.is_complex() else vd.dtype
    _check_tensor(op, "mag", mag, (real,), 3)
    _check_tensor(op, "phase", phase, (real,), 3)
    want = tuple(vd.shape[:-2]) + (2,) + tuple(vd.shape[-2:])
    for name, t in (("mag", mag), ("phase", phase)):
        if tuple(t.shape) != want:
            _fail(op, f"{name} must have shape {want} (vd's shape with a 2 before F), got {tuple(t.shape)}")
    device = _check_same_device(op, vd=vd, vg=vg, mag=mag, phase=phase)
    if not _use_kernel(device):
        return reference.complex_combine(vd, vg, mag, phase)
    return torch.ops.fastsep.complex_combine(_contig(vd), _contig(vg), _contig(mag), _contig(phase))


# ------------------------------------------------------------------------------------------------ combine_features
def combine_features(vd: Tensor, vg: Tensor) -> Tuple[Tensor, Tensor]:
    """The features network F reads (eqs. 24, 26), in one pass.

    Returns ``mag = [|vd|, |vg|]`` and ``phase = [angle(vd), angle(vg·conj(vd))]``, each real ``[..., 2, F, K]``.
    """
    op = "combine_features"
    _check_combine_inputs(op, vd, vg)
    device = _check_same_device(op, vd=vd, vg=vg)
    if not _use_kernel(device):
        return reference.combine_features(vd, vg)
    return torch.ops.fastsep.combine_features(_contig(vd), _contig(vg))


# ----------------------------------------------------------------------------------------------------- xcorr_align
# The CUDA kernels keep a frame's FFT (xcorr) or a time tile of every channel (DiffWave) in 48 KiB of shared memory;
# larger problems go to the reference on CUDA. The limits are the C++ ones (fastsep._ext.cuda_limits()). The CPU
# kernels have no such limit.
_XCORR_LIMIT_OF = {torch.complex64: "xcorr_max_n_fft_float32", torch.complex128: "xcorr_max_n_fft_float64"}


def _fast_fft_length(n: int, vd: Tensor) -> bool:
    # The kernels' real FFT packs the frame into a complex FFT of n/2 points, radix 2.
    if n < 4 or (n & (n - 1)) != 0:
        return False
    return vd.device.type != "cuda" or n <= _ext.cuda_limits()[_XCORR_LIMIT_OF[vd.dtype]]


def xcorr_align(vd: Tensor, vg: Tensor, n_fft: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Align vg to vd frame by frame by circular cross-correlation (Separate-And-Diffuse eqs. 34-37).

    For each frame k: ``r = irfft(vd[..., :, k]·conj(vg[..., :, k]), n_fft)``, ``tau = argmax r`` (the first on
    ties), folded to a signed shift in (-n_fft/2, n_fft/2], and ``lag = -tau``.

    Sign convention: ``lag`` is the delay of vg behind vd in samples. If every frame of vg is the matching frame of vd
    circularly delayed by d samples (|d| < n_fft/2), then ``lag == d`` and ``vg_aligned == vd``, where
    ``vg_aligned = vg·exp(+j·2π·f·lag/n_fft)``.

    Args:
        vd, vg: complex ``[..., F, K]`` one-sided spectra.
        n_fft: frame length; ``2·(F−1)`` (default) or ``2·F−1``.

    Returns:
        ``(vg_aligned, lag)``: complex ``[..., F, K]`` and int64 ``[..., K]``, on the input's device.
    """
    op = "xcorr_align"
    _check_combine_inputs(op, vd, vg)
    n_freq = vd.shape[-2]
    n = reference.default_n_fft(n_freq) if n_fft is None else int(n_fft)
    if n not in (2 * (n_freq - 1), 2 * n_freq - 1) or n < 1:
        _fail(op, f"n_fft must be 2·(F−1) = {2 * (n_freq - 1)} or 2·F−1 = {2 * n_freq - 1} for F = {n_freq}, got {n}")
    device = _check_same_device(op, vd=vd, vg=vg)
    if not (_use_kernel(device) and _fast_fft_length(n, vd)):
        return reference.xcorr_align(vd, vg, n)
    return torch.ops.fastsep.xcorr_align(_contig(vd), _contig(vg), n)


# -------------------------------------------------------------------------------------------------------- diffwave
def _check_diffwave(op, x, dstep, cond, w_dil, b_dil, w_out, b_out, n_layers: Optional[int],
                    cond_bf16: bool = False) -> Tuple[Tensor, Tensor]:
    """Shape checks for one layer (n_layers None) or a stack of n_layers; returns (cond, w_out) normalised.
    ``cond_bf16``: the conditioner may also be bfloat16 (the bfloat16 stack)."""
    floats = (torch.float32,)
    _check_tensor(op, "x", x, floats)
    if x.dim() != 3:
        _fail(op, f"x must be [B, C, T], got shape {tuple(x.shape)}")
    batch, ch, length = x.shape
    lead = () if n_layers is None else (n_layers,)
    if w_out.dim() == len(lead) + 3 and w_out.shape[-1] == 1:
        w_out = w_out.squeeze(-1)
    expect = {
        "dstep": (dstep, lead + (batch, ch)),
        "w_dil": (w_dil, lead + (2 * ch, ch, 3)),
        "b_dil": (b_dil, lead + (2 * ch,)),
        "w_out": (w_out, lead + (2 * ch, ch)),
        "b_out": (b_out, lead + (2 * ch,)),
    }
    if cond is not None and cond.numel() > 0:
        expect["cond"] = (cond, lead + (batch, 2 * ch, length))
    else:
        cond = x.new_empty((0,))
    for name, (t, shape) in expect.items():
        _check_tensor(op, name, t, (torch.float32, torch.bfloat16) if name == "cond" and cond_bf16 else floats)
        if tuple(t.shape) != shape:
            _fail(op, f"{name} must have shape {shape} for x of shape {tuple(x.shape)}, got {tuple(t.shape)}")
    _check_same_device(op, x=x, **{k: v[0] for k, v in expect.items()})
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t, _ in expect.values())):
        _fail(op, "is an inference op with no backward; call it under torch.no_grad() (training uses the module path)")
    return cond, w_out


def _diffwave_kernel_ok(x: Tensor) -> bool:
    if not _use_kernel(x.device):
        return False
    if x.device.type != "cuda":
        return True
    limits = _ext.cuda_limits()
    return x.shape[1] <= limits["diffwave_max_channels"] and x.shape[0] <= limits["diffwave_max_batch"]


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
    """One fused DiffWave residual layer at inference (no grad).

    Computes dilated conv1d(x + dstep) + cond, sigmoid(gate)·tanh(filter), the 1x1 output conv, and returns
    ``((x + residual)/sqrt(2), skip)``. Shapes: x [B, C, T]; dstep [B, C] (the layer's diffusion-step projection with
    bias); cond [B, 2C, T] (the layer's conditioner projection with bias, precomputed once per utterance) or None;
    w_dil [2C, C, 3]; b_dil [2C]; w_out [2C, C] or [2C, C, 1]; b_out [2C]. float32.
    """
    op = "diffwave_layer"
    cond, w_out = _check_diffwave(op, x, dstep, cond, w_dil, b_dil, w_out, b_out, None)
    if int(dilation) < 1:
        _fail(op, f"dilation must be >= 1, got {dilation}")
    if not _diffwave_kernel_ok(x):
        return reference.diffwave_layer(x, dstep, cond, w_dil, b_dil, w_out, b_out, int(dilation))
    args = [_contig(t) for t in (x, dstep, cond, w_dil, b_dil, w_out, b_out)]
    return torch.ops.fastsep.diffwave_layer(*args, int(dilation))


def diffwave_stack(
    x: Tensor,
    dstep: Tensor,
    cond: Optional[Tensor],
    w_dil: Tensor,
    b_dil: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    dilations: Sequence[int],
    precision: str = "float32",
    mel: Optional[Tensor] = None,
    w_cond: Optional[Tensor] = None,
) -> Tensor:
    """All L residual layers of one DiffWave denoising step in one call (no grad); returns the sum of the skips.

    Shapes: x [B, C, T]; dstep [L, B, C]; cond [L, B, 2C, T] or None; w_dil [L, 2C, C, 3]; b_dil [L, 2C];
    w_out [L, 2C, C]; b_out [L, 2C]; ``dilations`` L ints. float32. The caller scales the sum by 1/sqrt(L).

    CPU: when C is a multiple of 4 (AVX-512; 2 otherwise) every layer runs through register-blocked kernels that take a block of samples
    through the whole layer while it is in cache (AVX-512, AVX2 or baseline, picked at load time:
    ``fastsep._ext.diffwave_cpu_variant()``); other C use ATen's convolutions with the elementwise stages fused.
    CUDA: one fused kernel per layer for C <= 96 (``fastsep._ext.cuda_limits()``), the reference above that.

    ``precision="bfloat16"``: both convolutions multiply bfloat16-rounded inputs and weights (float32 sums, gate,
    residual and skip), and ``cond`` may be given in bfloat16 (half the bytes every step streams), on CPUs with
    AVX512-BF16 (:func:`fastsep._ext.diffwave_bf16_available`): with AMX's tiles
    when C is a multiple of 32 (~2x the float32 kernel at 4 s, ~2.7x in cache), else with vdpbf16ps (slower than
    the float32 kernel on an AMX machine; :func:`fastsep._ext.diffwave_bf16_variant` says which); its reference is
    :func:`fastsep.reference.diffwave_stack_bf16`. Elsewhere (no such CPU, C not a multiple of 4, CUDA)
    it computes in float32 and warns once.

    ``mel`` [B, M, T] (the upsampled mel, float32) and ``w_cond`` [L, 2C, M] instead of ``cond`` (None): the
    conditioner ``cond[l] = w_cond[l] @ mel`` is computed inside the bfloat16 kernel, block by block, with bfloat16
    products, so no [L, B, 2C, T] buffer is written once and streamed from memory at every step (its bias belongs in
    ``b_dil``). bfloat16 precision only; where that kernel does not run, the conditioner is computed first (with the
    same bfloat16 rounding) and the stack runs as above.
    """
    op = "diffwave_stack"
    if precision not in ("float32", "bfloat16"):
        _fail(op, f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    dilations = [int(d) for d in dilations]
    if not dilations or min(dilations) < 1:
        _fail(op, f"dilations must be a non-empty list of ints >= 1, got {dilations}")
    if (mel is None) != (w_cond is None):
        _fail(op, "mel and w_cond come together (the conditioner computed in the kernel)")
    if mel is not None:
        if precision != "bfloat16":
            _fail(op, "mel/w_cond (the conditioner computed in the kernel) need precision='bfloat16'")
        if cond is not None and cond.numel() > 0:
            _fail(op, "give cond or (mel, w_cond), not both")
        _check_tensor(op, "mel", mel, (torch.float32,))
        _check_tensor(op, "w_cond", w_cond, (torch.float32,))
        if mel.dim() != 3 or tuple(mel.shape[::2]) != (x.shape[0], x.shape[2]):
            _fail(op, f"mel must be [B, M, T] = [{x.shape[0]}, M, {x.shape[2]}], got {tuple(mel.shape)}")
        if tuple(w_cond.shape) != (len(dilations), 2 * x.shape[1], mel.shape[1]):
            _fail(op, f"w_cond must be [L, 2C, M] = {(len(dilations), 2 * x.shape[1], mel.shape[1])}, got "
                      f"{tuple(w_cond.shape)}")
        _check_same_device(op, x=x, mel=mel, w_cond=w_cond)
    cond, w_out = _check_diffwave(op, x, dstep, cond, w_dil, b_dil, w_out, b_out, len(dilations),
                                  cond_bf16=precision == "bfloat16")
    if precision == "bfloat16":
        if x.device.type == "cpu" and _use_kernel(x.device) and x.shape[1] % 4 == 0 and _ext.diffwave_bf16_available():
            args = [_contig(t) for t in (x, dstep, cond, w_dil, b_dil, w_out, b_out)]
            extra = (_contig(mel), _contig(w_cond)) if mel is not None else ()
            return torch.ops.fastsep.diffwave_stack_bf16(*args, dilations, *extra)
        _warn_bf16_fallback(x)
        cond = reference.bf16_conditioner(mel, w_cond) if mel is not None else cond.float()
    if not _diffwave_kernel_ok(x):
        return reference.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations)
    args = [_contig(t) for t in (x, dstep, cond, w_dil, b_dil, w_out, b_out)]
    return torch.ops.fastsep.diffwave_stack(*args, dilations)


_BF16_WARNED = False


def _warn_bf16_fallback(x: Tensor) -> None:
    global _BF16_WARNED
    if not _BF16_WARNED:
        _BF16_WARNED = True
        import warnings

        warnings.warn(f"fastsep: no bfloat16 DiffWave kernel for this input (device {x.device}, {x.shape[1]} channels;"
                      " it needs the extension, a CPU with AVX512-BF16 and channels divisible by 4): computing in "
                      "float32", stacklevel=3)


# ------------------------------------------------------------------------------------------ sampler updates
_SAMPLER_DTYPES = (torch.float32, torch.float64)


def _check_scalar(op: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"fastsep.ops.{op}: {name} must be a Python number, got {type(value).__name__}")
    value = float(value)
    if not value == value or value in (float("inf"), float("-inf")):
        _fail(op, f"{name} must be finite, got {value}")
    return value


def _check_update_tensors(op: str, first: str, tensors) -> Tensor:
    """``tensors``: (name, tensor or None) pairs; the first is required and fixes dtype, shape [B, S, T] and device."""
    ref = tensors[0][1]
    _check_tensor(op, first, ref, _SAMPLER_DTYPES)
    if ref.dim() != 3:
        _fail(op, f"{first} must have shape [batch, sources, time], got {tuple(ref.shape)}")
    present = {}
    for name, t in tensors:
        if t is None:
            continue
        _check_tensor(op, name, t, _SAMPLER_DTYPES)
        if t.dtype != ref.dtype:
            _fail(op, f"{name} must have {first}'s dtype {str(ref.dtype).replace('torch.', '')}, got "
                      f"{str(t.dtype).replace('torch.', '')}")
        if t.shape != ref.shape:
            _fail(op, f"{name} must have {first}'s shape {tuple(ref.shape)}, got {tuple(t.shape)}")
        present[name] = t
    _check_same_device(op, **present)
    if torch.is_grad_enabled() and any(t.requires_grad for t in present.values()):
        _fail(op, "is an inference op with no backward; call it under torch.no_grad() (the samplers do)")
    return ref


def _has_op(name: str) -> bool:
    # The sampler ops are newer than the other ops: a library built from older sources lacks them, and then their
    # references serve (rather than failing at import or at the call).
    return _ext.available() and hasattr(torch.ops.fastsep, name)


def _use_sampler_kernel(name: str, device: torch.device) -> bool:
    return uses_kernels(device, name)


def mix_sde_update(x: Tensor, score: Tensor, noise: Optional[Tensor], a_p: float, a_q: float, b_p: float,
                   b_q: float, c_p: float = 0.0, c_q: float = 0.0) -> Tensor:
    """One fused step of DiffSep's predictor-corrector sampler (inference only, no grad).

    ``x``, ``score``, ``noise`` are float32 (or float64) ``[B, K, T]``; with ``P v`` the average of ``v`` over the K
    sources and ``Pbar v = v - P v`` (the mixing SDE's two projections):

    ``out = (a_p P + a_q Pbar) x + (b_p P + b_q Pbar) score + (c_p P + c_q Pbar) noise``

    (no noise terms when ``noise`` is None). One read of each input and one write, where the eager update makes
    five to ten passes. The reverse-diffusion predictor is ``a = (1, 1 + gamma dt)``, ``b = (g^2 dt, g^2 dt)``,
    ``c = (g sqrt(dt), g sqrt(dt))``; the annealed Langevin corrector ``a = (1, 1)``, ``b = 2 r^2 (lambda1,
    lambda2)``, ``c = 2 r (sqrt(lambda1), sqrt(lambda2))`` (see :mod:`fastsep.sampling.diffsep`). The noise is an
    input, drawn by the caller's generator, so seeded results do not depend on whether the kernel runs.
    """
    op = "mix_sde_update"
    x = _check_update_tensors(op, "x", [("x", x), ("score", score), ("noise", noise)])
    coefs = [_check_scalar(op, n, v) for n, v in (("a_p", a_p), ("a_q", a_q), ("b_p", b_p), ("b_q", b_q),
                                                   ("c_p", c_p), ("c_q", c_q))]
    if not _use_sampler_kernel(op, x.device):
        return reference.mix_sde_update(x, score, noise, *coefs)
    return torch.ops.fastsep.mix_sde_update(_contig(x), _contig(score), None if noise is None else _contig(noise),
                                            *coefs)


def guided_update(x0: Tensor, x: Tensor, grad: Tensor, noise: Optional[Tensor], coef_x0: float, coef_xt: float,
                  noise_std: float, radius: float, normalise: bool = True, eps: float = 1e-12) -> Tensor:
    """One fused step of the prior-guided solver (inference only, no grad): the ancestral sample and the guidance
    step of every source, ``[B, C, T]`` float32 (or float64) tensors:

    ``x' = coef_x0 x0 + coef_xt x + noise_std noise`` (no noise term when ``noise`` is None), then per row (item,
    source) ``x' - radius g / max(||g||, eps)`` when ``normalise`` (each source moves by exactly ``radius``: the
    hybrid and DSG steps) or ``x' - radius g`` otherwise (DPS, ``radius`` = zeta). The row norms are summed in
    float64. One pass over the inputs for the norms, one for the update (the row is still in cache).
    """
    op = "guided_update"
    x0 = _check_update_tensors(op, "x0", [("x0", x0), ("x", x), ("grad", grad), ("noise", noise)])
    coefs = [_check_scalar(op, n, v) for n, v in (("coef_x0", coef_x0), ("coef_xt", coef_xt),
                                                   ("noise_std", noise_std), ("radius", radius))]
    eps = _check_scalar(op, "eps", eps)
    if eps <= 0:
        _fail(op, f"eps must be positive, got {eps}")
    if not isinstance(normalise, bool):
        raise TypeError(f"fastsep.ops.{op}: normalise must be a bool, got {type(normalise).__name__}")
    if not _use_sampler_kernel(op, x0.device):
        return reference.guided_update(x0, x, grad, noise, *coefs, normalise, eps)
    return torch.ops.fastsep.guided_update(_contig(x0), _contig(x), _contig(grad),
                                           None if noise is None else _contig(noise), *coefs, normalise, eps)



# ------------------------------------------------------------------------------------------------- prelu_residual
def prelu_residual(y: Tensor, weight: Tensor, residual: Tensor) -> Tensor:
    """``prelu(y, weight) + residual`` in one pass (inference only, no grad): the step between the convolutions of
    F's residual heads. ``y`` and ``residual`` float32 or bfloat16 of one shape and dtype (any dense layout, e.g.
    channels-last; the output keeps it), ``weight`` a single PReLU slope. The CPU kernel reads each input once and
    writes once where ATen makes two passes (and converts bfloat16 twice); elsewhere the reference."""
    op = "prelu_residual"
    for name, t in (("y", y), ("residual", residual)):
        _check_tensor(op, name, t, (torch.float32, torch.bfloat16))
    _check_tensor(op, "weight", weight, (torch.float32, torch.bfloat16))
    if residual.dtype != y.dtype or residual.shape != y.shape:
        _fail(op, f"residual must match y's dtype and shape, got {residual.dtype} {tuple(residual.shape)} for "
                  f"{y.dtype} {tuple(y.shape)}")
    if weight.numel() != 1:
        _fail(op, f"weight must be one slope (PReLU with num_parameters=1), got shape {tuple(weight.shape)}")
    _check_same_device(op, y=y, weight=weight, residual=residual)
    if torch.is_grad_enabled() and (y.requires_grad or residual.requires_grad or weight.requires_grad):
        _fail(op, "is an inference op with no backward; call it under torch.no_grad() (training uses the module path)")
    if y.device.type != "cpu" or not _use_kernel(y.device) or not _has_op(op):
        return reference.prelu_residual(y, weight, residual)
    dense = y.is_contiguous() or (y.dim() == 4 and y.is_contiguous(memory_format=torch.channels_last))
    if y.stride() != residual.stride() or not dense:
        y, residual = y.contiguous(), residual.contiguous()
    return torch.ops.fastsep.prelu_residual(y, weight.detach().float().reshape(1), residual)


# ----------------------------------------------------------------------------------------------------- tcn_block_
def tcn_block_(state: Tensor, offset: Tensor, w_in: Tensor, b_in: Tensor, a_in: Tensor, g_in: Tensor,
               beta_in: Tensor, w_dw: Tensor, b_dw: Tensor, a_dw: Tensor, g_dw: Tensor, beta_dw: Tensor,
               w_out: Tensor, b_out: Tensor, dilation: int, eps: float = 1e-8) -> None:
    """One Conv-TasNet TCN block at inference (no grad), in place on the network's running state.

    The state is ``[x; skips]`` stacked along the channels and held as ``state + offset[..., None]``: ``state
    [B, R, T]`` and ``offset [B, R]`` float32, contiguous, ``x`` the first ``C = w_in.shape[1]`` rows. The block
    computes ``h = prelu(w_in x + b_in)``, ``d = prelu(dwconv(gLN(h)))``, ``m = gLN(d)``, and the last
    ``w_out.shape[0]`` rows gain ``w_out m + b_out``: ``w_out [R, H]`` stacks the residual and skip convolutions,
    ``w_out [R - C, H]`` is the skip convolution alone (a block without a residual conv). Which part of the result
    lands in ``state`` and which in ``offset`` is the implementation's choice; only their sum is defined.

    1x1 weights as matrices ``[out, in]``; ``w_dw [H, K]`` the depthwise kernel (K odd, zero "same" padding at
    ``dilation``); ``a_in``, ``a_dw`` one PReLU slope each; ``g_*``, ``beta_*`` the two gLNs' per-channel affine. The
    CPU kernel is two GEMMs and two passes over the activations: the gLNs applied as read, the second folded into the
    output GEMM, which adds into the state's rows, with the per-row constants kept in ``offset`` rather than added to
    every frame, so nothing copies ``x`` or the skips. Elsewhere (CUDA, no extension) the reference."""
    op = "tcn_block_"
    _check_tensor(op, "state", state, (torch.float32,), 3)
    _check_tensor(op, "offset", offset, (torch.float32,), 2)
    if state.dim() != 3 or offset.dim() != 2 or tuple(offset.shape) != tuple(state.shape[:2]):
        _fail(op, f"state must be [B, R, T] and offset [B, R], got {tuple(state.shape)} and {tuple(offset.shape)}")
    if not state.is_contiguous() or not offset.is_contiguous():
        _fail(op, "state and offset are updated in place and must be contiguous")
    if state.shape[2] < 1:
        _fail(op, "state must hold at least one frame (gLN's statistics of an empty signal are undefined)")
    rows = state.shape[1]
    if not isinstance(w_in, Tensor) or w_in.dim() != 2 or not 1 <= w_in.shape[1] < rows:
        _fail(op, f"w_in must be [H, C] with 1 <= C < R = {rows}, got {getattr(w_in, 'shape', w_in)}")
    hid, chan = w_in.shape
    if not isinstance(w_dw, Tensor) or w_dw.dim() != 2 or w_dw.shape[0] != hid or w_dw.shape[1] % 2 != 1:
        _fail(op, f"w_dw must be [{hid}, K] with K odd, got {getattr(w_dw, 'shape', w_dw)}")
    if (not isinstance(w_out, Tensor) or w_out.dim() != 2 or w_out.shape[1] != hid
            or w_out.shape[0] not in (rows, rows - chan)):
        _fail(op, f"w_out must be [{rows}, {hid}] (residual and skip convs) or [{rows - chan}, {hid}] (skip conv "
                  f"alone), got {getattr(w_out, 'shape', w_out)}")
    shapes = {"w_in": (hid, chan), "b_in": (hid,), "a_in": (1,), "g_in": (hid,), "beta_in": (hid,),
              "b_dw": (hid,), "a_dw": (1,), "g_dw": (hid,), "beta_dw": (hid,), "w_out": tuple(w_out.shape),
              "b_out": (w_out.shape[0],)}
    block = (w_in, b_in, a_in, g_in, beta_in, w_dw, b_dw, a_dw, g_dw, beta_dw, w_out, b_out)  # the op's order
    params = dict(zip(("w_in", "b_in", "a_in", "g_in", "beta_in", "w_dw", "b_dw", "a_dw", "g_dw", "beta_dw", "w_out",
                       "b_out"), block))
    for name, t in params.items():
        _check_tensor(op, name, t, (torch.float32,))
        if name != "w_dw" and tuple(t.shape) != shapes[name]:
            _fail(op, f"{name} must have shape {shapes[name]}, got {tuple(t.shape)}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        _fail(op, f"dilation must be an int >= 1, got {dilation!r}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        _fail(op, f"eps must be a number > 0, got {eps!r}")
    _check_same_device(op, state=state, offset=offset, **params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in [state, offset, *params.values()]):
        _fail(op, "is an inference op with no backward; call it under torch.no_grad() (training uses the module path)")
    if state.device.type != "cpu" or not uses_kernels(state.device, op):
        reference.tcn_block_(state, offset, *block, dilation, float(eps))
        return
    torch.ops.fastsep.tcn_block_(state, offset, *[_contig(t) for t in block], dilation, float(eps))


# --------------------------------------------------------------------------------- fake kernels and autograd glue
def _register() -> None:
    """Fake (meta) kernels for torch.compile and the fused backward of complex_combine; needs the library loaded."""
    lib = torch.library

    @lib.register_fake("fastsep::complex_combine")
    def _(vd, vg, mag, phase):
        return torch.empty_like(vd)

    @lib.register_fake("fastsep::complex_combine_backward")
    def _(grad, vd, vg, mag, phase):
        return torch.empty_like(vd), torch.empty_like(vg), torch.empty_like(mag), torch.empty_like(phase)

    @lib.register_fake("fastsep::combine_features")
    def _(vd, vg):
        shape = vd.shape[:-2] + (2,) + vd.shape[-2:]
        real = vd.real.dtype if vd.is_complex() else vd.dtype
        return vd.new_empty(shape, dtype=real), vd.new_empty(shape, dtype=real)

    @lib.register_fake("fastsep::xcorr_align")
    def _(vd, vg, n_fft):
        return torch.empty_like(vg), vd.new_empty(vd.shape[:-2] + vd.shape[-1:], dtype=torch.int64)

    @lib.register_fake("fastsep::diffwave_layer")
    def _(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilation):
        return torch.empty_like(x), torch.empty_like(x)

    @lib.register_fake("fastsep::diffwave_stack")
    def _(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations):
        return torch.empty_like(x)

    @lib.register_fake("fastsep::diffwave_stack_bf16")
    def _(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, mel=None, w_cond=None):
        return torch.empty_like(x)

    if _has_op("mix_sde_update"):
        @lib.register_fake("fastsep::mix_sde_update")
        def _(x, score, noise, a_p, a_q, b_p, b_q, c_p, c_q):
            return torch.empty_like(x)

    if _has_op("guided_update"):
        @lib.register_fake("fastsep::guided_update")
        def _(x0, x, grad, noise, coef_x0, coef_xt, noise_std, radius, normalise, eps):
            return torch.empty_like(x0)

    if _has_op("prelu_residual"):
        @lib.register_fake("fastsep::prelu_residual")
        def _(y, weight, residual):
            return torch.empty_like(y)

    if _has_op("tcn_block_"):
        @lib.register_fake("fastsep::tcn_block_")
        def _(state, offset, w_in, b_in, a_in, g_in, beta_in, w_dw, b_dw, a_dw, g_dw, beta_dw, w_out, b_out, dilation,
              eps):
            return None

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        vd, vg, mag, phase = ctx.saved_tensors
        return tuple(torch.ops.fastsep.complex_combine_backward(grad.contiguous(), vd, vg, mag, phase))

    lib.register_autograd("fastsep::complex_combine", backward, setup_context=setup_context)

    def features_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def features_backward(ctx, grad_mag, grad_phase):
        # Rarely needed (F's inputs come from frozen models), so the VJP of the reference serves.
        vd, vg = ctx.saved_tensors
        _, vjp = torch.func.vjp(reference.combine_features, vd, vg)
        return vjp((grad_mag, grad_phase))

    lib.register_autograd("fastsep::combine_features", features_backward, setup_context=features_setup)


if _ext.load() is not None:
    _register()
