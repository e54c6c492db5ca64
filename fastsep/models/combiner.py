"""Network F of Separate-And-Diffuse: mixes the backbone's estimate v_d and the vocoder's estimate v_g per STFT bin.

F reads ``A = [|Vd|, |Vg|]`` and ``psi = [angle Vd, angle(Vg·conj Vd)]`` (eqs. 24, 26) with two residual CNN heads
(six 3x3 conv layers, hidden channels 32, 32, 64, 64, 64, as in the paper), giving D1 (magnitudes) and D2 (phases)
of the complex weights ``alpha = D1[0]·exp(-j·D2[0])`` and ``beta = D1[1]·exp(-j·D2[1])``; the output is
``iSTFT(alpha·Vd + beta·Vg)`` (eqs. 27-30).

Initialisation: the last layer of each head starts at zero weight with bias D1 = (1, 0), D2 = (0, 0), so an untrained
F returns v_d exactly (alpha = 1, beta = 0). We chose this over (0.5, 0.5) because v_g from a mel vocoder carries an
arbitrary, time-varying phase: averaging it unaligned with v_d cancels energy and lowers SI-SDR below the backbone's,
so training would start below the baseline it is meant to improve. From alpha = 1, beta = 0 the SI-SDR loss starts at
the backbone's value and gradients with respect to D1[1] and D2 (both nonzero, since Vg != 0) tell F where v_g helps.
``init="average"`` gives the (0.5, 0.5) start for comparison.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .. import ops
from ..dsp import StftConfig, istft, stft

__all__ = ["Combiner", "ResNetHead"]

_INITS = {"backbone": (1.0, 0.0), "average": (0.5, 0.5)}
_BF16_WARNED = False


def _bf16_heads(device: torch.device) -> bool:
    """Whether bfloat16 heads pay here: CUDA, or a CPU with native bfloat16 products (else warn once, use float32)."""
    global _BF16_WARNED
    if device.type != "cpu":
        return True
    from ..roofline import cpu_bf16_support

    native, why = cpu_bf16_support()
    if not native and not _BF16_WARNED:
        _BF16_WARNED = True
        import warnings

        warnings.warn(f"fastsep: Combiner precision='bfloat16' needs native bfloat16 products ({why}); computing in "
                      f"float32", stacklevel=4)
    return native


class ResNetHead(nn.Module):
    """Six 3x3 conv layers over ``[N, in_ch, F, K]`` with residual connections between the hidden layers.

    Layer widths are ``in_ch -> hidden[0] -> ... -> hidden[-1] -> out_ch``; a hidden layer whose width changes gets a
    1x1 projection on its skip path. The last layer is linear (no activation) so that it can represent any real D1/D2.
    """

    def __init__(self, in_ch: int = 2, hidden: Sequence[int] = (32, 32, 64, 64, 64), out_ch: int = 2):
        super().__init__()
        widths = [int(in_ch)] + [int(h) for h in hidden]
        self.inp = nn.Conv2d(widths[0], widths[1], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.skips = nn.ModuleList()
        for a, b in zip(widths[1:-1], widths[2:]):
            self.blocks.append(nn.Conv2d(a, b, 3, padding=1))
            self.skips.append(nn.Identity() if a == b else nn.Conv2d(a, b, 1, bias=False))
        self.out = nn.Conv2d(widths[-1], int(out_ch), 3, padding=1)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            # oneDNN's CPU convolutions run ~1.2-1.6x faster on channels-last activations (and faster still with
            # channels-last weights, see Separator); every later activation inherits the layout from its conv.
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.act(self.inp(x))
        fuse = not torch.is_grad_enabled() and self.act.weight.numel() == 1
        for conv, skip in zip(self.blocks, self.skips):
            if fuse:  # inference: PReLU and the residual add in one pass (fastsep.ops.prelu_residual)
                y = conv(h)
                h = ops.prelu_residual(y, self.act.weight, skip(h).to(y.dtype))
            else:
                h = skip(h) + self.act(conv(h))
        return self.out(h)


class Combiner(nn.Module):
    """The Separate-And-Diffuse combiner F.

    Args:
        n_fft, hop_length: STFT in which v_d and v_g are combined (defaults: 512/128, 64 ms/16 ms at 8 kHz).
        hidden: hidden channels of each head (the paper: 32, 32, 64, 64, 64, i.e. six conv layers).
        init: ``"backbone"`` (alpha = 1, beta = 0: start from v_d) or ``"average"`` (alpha = beta = 0.5).
        log_floor: floor added to the (per-source normalised) magnitudes before the log compression.

    ``forward(vd, vg)`` takes waveforms ``[..., T]`` (e.g. ``[B, C, T]``; every leading index is one source and is
    treated as one batch item) and returns the combined waveform of the same shape.
    """

    def __init__(
        self,
        n_fft: int = 512,
        hop_length: int = 128,
        hidden: Sequence[int] = (32, 32, 64, 64, 64),
        init: str = "backbone",
        log_floor: float = 1e-3,
    ):
        super().__init__()
        if init not in _INITS:
            raise ValueError(f"Combiner: init must be one of {sorted(_INITS)}, got {init!r}")
        if int(n_fft) < 4 or int(hop_length) < 1 or int(hop_length) > int(n_fft):
            raise ValueError(f"Combiner: need n_fft >= 4 and 1 <= hop_length <= n_fft, got {n_fft}, {hop_length}")
        if len(hidden) < 1:
            raise ValueError("Combiner: hidden must list at least one channel count")
        self.config = {
            "n_fft": int(n_fft),
            "hop_length": int(hop_length),
            "hidden": [int(h) for h in hidden],
            "init": init,
            "log_floor": float(log_floor),
        }
        self.stft_cfg = StftConfig(n_fft=int(n_fft), hop_length=int(hop_length))
        self.log_floor = float(log_floor)
        self.mag_head = ResNetHead(2, hidden, 2)
        self.phase_head = ResNetHead(2, hidden, 2)
        a0, b0 = _INITS[init]
        with torch.no_grad():
            for head in (self.mag_head, self.phase_head):
                head.out.weight.zero_()
                head.out.bias.zero_()
            self.mag_head.out.bias.copy_(torch.tensor([a0, b0]))

    # ----------------------------------------------------------------------------------------------- spectral level
    def coefficients(self, spec_d: Tensor, spec_g: Tensor, precision: str = "float32") -> Tuple[Tensor, Tensor]:
        """D1, D2 (each real ``[..., 2, F, K]``, float32) for complex spectra ``spec_d``, ``spec_g`` ``[..., F, K]``.

        ``precision="bfloat16"`` runs the two heads' convolutions with bfloat16 inputs and weights (float32 sums;
        CPU autocast, which oneDNN maps onto AMX or AVX512-BF16: ~3x faster F on a CPU with AMX, ~1.9x on AMD Zen 4);
        features, STFTs and the combination stay float32. Where the CPU multiplies bfloat16 only by emulation it
        computes in float32."""
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"Combiner: precision must be 'float32' or 'bfloat16', got {precision!r}")
        mag, phase = ops.combine_features(spec_d, spec_g)
        lead = mag.shape[:-3]
        mag = mag.reshape(-1, *mag.shape[-3:])
        phase = phase.reshape(-1, *phase.shape[-3:])
        # Normalise by each source's mean |Vd| so F sees the same input whatever the backbone's output scale
        # (SI-SDR-trained backbones fix none), then log-compress the large dynamic range of speech spectra.
        scale = mag[:, :1].mean(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-8)
        log_mag = torch.log(mag / scale + self.log_floor)
        if precision == "bfloat16" and _bf16_heads(log_mag.device):
            with torch.autocast(log_mag.device.type, dtype=torch.bfloat16):
                d1, d2 = self.mag_head(log_mag).float(), self.phase_head(phase).float()
        else:
            d1, d2 = self.mag_head(log_mag), self.phase_head(phase)
        return d1.reshape(*lead, *d1.shape[-3:]), d2.reshape(*lead, *d2.shape[-3:])

    def combine_spectra(self, spec_d: Tensor, spec_g: Tensor, precision: str = "float32") -> Tensor:
        """``alpha·Vd + beta·Vg`` as a complex spectrum ``[..., F, K]``."""
        d1, d2 = self.coefficients(spec_d, spec_g, precision)
        return ops.complex_combine(spec_d, spec_g, d1.contiguous(), d2.contiguous())

    # ----------------------------------------------------------------------------------------------- waveform level
    def forward(self, vd: Tensor, vg: Tensor, precision: str = "float32") -> Tensor:
        if not isinstance(vd, Tensor) or not isinstance(vg, Tensor):
            raise TypeError(f"Combiner: vd and vg must be tensors, got {type(vd).__name__}, {type(vg).__name__}")
        if vd.shape != vg.shape:
            raise ValueError(f"Combiner: vd and vg must have one shape [..., T], got {tuple(vd.shape)}, {tuple(vg.shape)}")
        if vd.dim() < 1 or vd.shape[-1] == 0:
            raise ValueError(f"Combiner: expected waveforms [..., T] with T > 0, got shape {tuple(vd.shape)}")
        if not vd.is_floating_point():
            raise TypeError(f"Combiner: expected float waveforms, got {vd.dtype}")
        length = vd.shape[-1]
        short = self.stft_cfg.n_fft // 2 + 1
        if length < short:  # the centred STFT's reflect padding needs more samples than half a frame
            vd = nn.functional.pad(vd, (0, short - length))
            vg = nn.functional.pad(vg, (0, short - length))
        spec_d = stft(vd, self.stft_cfg)
        spec_g = stft(vg.to(vd.dtype), self.stft_cfg)
        return istft(self.combine_spectra(spec_d, spec_g, precision), vd.shape[-1], self.stft_cfg)[..., :length]
