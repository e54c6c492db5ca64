"""Training-time augmentation for dynamic mixing: new voices, rooms and backgrounds drawn on the fly.

A separator trained on a few engines' voices learns those engines; these perturbations widen what it sees at no
storage cost. Per source (before levels are set): speed perturbation (resampling by a factor near 1 moves pitch,
formants -- a vocal-tract-length change -- and tempo together, turning one talker into a family of talkers),
synthetic room reverberation (exponentially decaying noise tails, RT60 drawn per source; the target is the
reverberant source, so the task stays separation, not dereverberation), and partial overlap (one source silent for
a leading or trailing part of the segment, as in real conversations). Per mixture: background noise (recorded music
or coloured noise) at a drawn SNR; the targets stay noise-free, so the separator also learns to reject it.

Every draw comes from the generator the caller passes, so a fixed evaluation list stays fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Augmentation", "speed_perturb", "synthetic_rir", "coloured_noise", "NOISE_FOLDERS"]

#: Folders searched for background recordings when ``noise_files`` is not given (Debian asterisk-moh-opsound-wav).
NOISE_FOLDERS = ("/usr/share/asterisk/moh",)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """``wave`` played ``factor`` times faster (shorter for factor > 1), by polyphase resampling."""
    from scipy.signal import resample_poly

    if not factor > 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    ratio = Fraction(factor).limit_denominator(40)
    if ratio == 1:
        return wave
    return resample_poly(wave, ratio.denominator, ratio.numerator)


def synthetic_rir(rng: np.random.Generator, sample_rate: int, rt60: float, direct_to_reverb_db: float) -> np.ndarray:
    """An impulse response: a unit direct path, then a noise tail decaying 60 dB in ``rt60`` seconds whose energy is
    ``direct_to_reverb_db`` below the direct path's (with a short pre-delay, as a room's first reflections)."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB at t = rt60
    tail[: max(1, int(0.002 * sample_rate))] = 0.0
    tail *= 10 ** (-direct_to_reverb_db / 20) / max(1e-12, np.sqrt(np.sum(tail ** 2)))
    tail[0] = 1.0
    return tail


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / max(1e-12, float(np.sqrt(np.mean(x ** 2))))  # unit RMS (not std: brown noise drifts off zero)


@dataclass
class Augmentation:
    """What :class:`fastsep.data.DynamicMix` does to training mixtures; each part has its own probability.

    Args:
        speed: range of the speed factor (0.85-1.15 spans roughly +-15 % in pitch and formants).
        speed_prob: probability that a source is speed-perturbed.
        reverb_prob: probability that a source is reverberated (each source its own room).
        rt60: range of reverberation times in seconds.
        drr_db: range of direct-to-reverberant energy ratios in dB.
        noise_prob: probability that background noise is added to the mixture.
        snr_db: range of mixture-to-noise ratios in dB.
        noise_files: background recordings (any rate; read once, resampled); None looks in :data:`NOISE_FOLDERS`,
            and coloured noise is used where none is found.
        overlap_prob: probability that one source is silenced over a leading or trailing part of the segment.
        max_silent: largest fraction of the segment that source is silent for.
    """

    speed: Tuple[float, float] = (0.85, 1.15)
    speed_prob: float = 0.8
    reverb_prob: float = 0.3
    rt60: Tuple[float, float] = (0.15, 0.7)
    drr_db: Tuple[float, float] = (0.0, 12.0)
    noise_prob: float = 0.3
    snr_db: Tuple[float, float] = (10.0, 30.0)
    noise_files: Optional[Sequence[str]] = None
    overlap_prob: float = 0.25
    max_silent: float = 0.5
    _noise_bank: Optional[List[np.ndarray]] = field(default=None, repr=False)
    _noise_rate: int = field(default=0, repr=False)

    def __post_init__(self):
        for name in ("speed_prob", "reverb_prob", "noise_prob", "overlap_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        for name in ("speed", "rt60", "drr_db", "snr_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)!r}")
        if self.speed[0] <= 0 or self.rt60[0] <= 0:
            raise ValueError("speed and rt60 ranges must be positive")
        if not 0.0 <= self.max_silent < 1.0:
            raise ValueError(f"max_silent must be in [0, 1), got {self.max_silent!r}")

    # -- per source, on the whole utterance before cropping ------------------------------------------------------
    def source(self, wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        if rng.random() < self.speed_prob:
            wave = speed_perturb(wave, float(rng.uniform(*self.speed)))
        return wave

    # -- per source crop, after cropping ------------------------------------------------------------------------
    def crop(self, crop: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        if rng.random() < self.reverb_prob:
            from scipy.signal import fftconvolve

            rir = synthetic_rir(rng, sample_rate, float(rng.uniform(*self.rt60)), float(rng.uniform(*self.drr_db)))
            crop = fftconvolve(crop, rir)[: len(crop)]
        return crop

    def overlap(self, sources: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Silence one source over a leading or trailing part (10 ms ramps), with probability ``overlap_prob``."""
        if self.max_silent == 0 or rng.random() >= self.overlap_prob:
            return sources
        k = int(rng.integers(sources.shape[0]))
        n = sources.shape[-1]
        cut = int(rng.uniform(0.1, self.max_silent) * n)
        ramp = min(cut, 80)
        env = np.ones(n)
        env[:cut] = 0.0
        env[cut:cut + ramp] = np.linspace(0.0, 1.0, len(env[cut:cut + ramp]))
        if rng.random() < 0.5:
            env = env[::-1]
        out = sources.copy()
        out[k] *= env
        return out

    # -- per mixture ---------------------------------------------------------------------------------------------
    def _bank(self, sample_rate: int) -> List[np.ndarray]:
        if self._noise_bank is not None and self._noise_rate == sample_rate:
            return self._noise_bank
        from .. import audio
        from ..dsp import resample

        files = list(self.noise_files) if self.noise_files is not None else sorted(
            str(p) for folder in NOISE_FOLDERS if Path(folder).is_dir() for p in Path(folder).iterdir()
            if p.suffix.lower() in (".wav", ".flac"))
        bank = []
        for path in files:
            try:
                wave, sr = audio.load(path, mono=True)
            except audio.AudioError:
                continue
            if sr != sample_rate:
                wave = resample(wave, sr, sample_rate)
            if wave.numel() > sample_rate:
                bank.append(wave.numpy().astype(np.float64))
        self._noise_bank, self._noise_rate = bank, sample_rate
        return bank

    def noise(self, n: int, rng: np.random.Generator, sample_rate: int) -> Optional[np.ndarray]:
        """A unit-RMS background of ``n`` samples, or None when this mixture gets none."""
        if rng.random() >= self.noise_prob:
            return None
        bank = self._bank(sample_rate)
        if bank and rng.random() < 0.6:
            rec = bank[int(rng.integers(len(bank)))]
            if len(rec) > n:
                start = int(rng.integers(0, len(rec) - n + 1))
                x = rec[start:start + n]
                rms = float(np.sqrt(np.mean(x ** 2)))
                if rms > 1e-4:
                    return x / rms
        return coloured_noise(rng, n, float(rng.uniform(0.0, 2.0)))

    def add_noise(self, mixture: torch.Tensor, rng: np.random.Generator, sample_rate: int) -> torch.Tensor:
        noise = self.noise(mixture.shape[-1], rng, sample_rate)
        if noise is None:
            return mixture
        power = float(mixture.pow(2).mean())
        gain = np.sqrt(power / 10 ** (float(rng.uniform(*self.snr_db)) / 10))
        return mixture + torch.from_numpy(noise * gain).to(mixture.dtype)
