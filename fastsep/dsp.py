"""Signal processing front end: STFT/iSTFT in fastsep's layouts, resampling, and (see below) the mel front end.

Spectra are complex ``[..., F, K]``; waveforms ``[..., T]``. Everything runs in plain torch on the input's device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["StftConfig", "stft", "istft", "resample"]


@dataclass(frozen=True)
class StftConfig:
    """STFT parameters shared by the combiner, the xcorr ablation and the benchmarks (8 kHz defaults)."""

    n_fft: int = 512
    hop_length: int = 128
    win_length: Optional[int] = None

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def window(self, device=None, dtype=torch.float32) -> Tensor:
        return torch.hann_window(self.win_length or self.n_fft, periodic=True, device=device, dtype=dtype)


def stft(wave: Tensor, cfg: StftConfig = StftConfig()) -> Tensor:
    """Complex STFT ``[..., F, K]`` of ``wave [..., T]`` (centred, Hann window, not normalised)."""
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window(wave.device, wave.dtype),
        center=True,
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: Tensor, length: int, cfg: StftConfig = StftConfig()) -> Tensor:
    """Inverse of :func:`stft`: ``[..., F, K]`` -> ``[..., length]``."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:])
    wave = torch.istft(
        flat,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window(spec.device, spec.real.dtype),
        center=True,
        length=length,
    )
    return wave.reshape(*lead, length)


def resample(wave: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited resampling along the last dimension (windowed-sinc polyphase via scipy, then back to torch).

    Uses torchaudio when it imports (GPU machines), else scipy's ``resample_poly``; both are anti-aliased.
    """
    if orig_sr == new_sr:
        return wave
    try:
        import torchaudio.functional as taf  # optional: absent or broken on CPU-only torch builds

        return taf.resample(wave, orig_sr, new_sr)
    except Exception:  # noqa: BLE001 - any import/ABI failure means "use scipy"
        pass
    import math

    import numpy as np
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(new_sr))
    out = resample_poly(wave.detach().cpu().double().numpy(), int(new_sr) // g, int(orig_sr) // g, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=wave.device, dtype=wave.dtype)
