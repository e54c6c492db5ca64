"""Signal processing front end: STFT/iSTFT in fastsep's layouts, resampling, and (see below) the mel front end.

Spectra are complex ``[..., F, K]``; waveforms ``[..., T]``. Everything runs in plain torch on the input's device.
"""
from __future__ import annotations

import math
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


def stft(wave: Tensor, cfg: StftConfig = StftConfig(), pad_mode: str = "reflect") -> Tensor:
    """Complex STFT ``[..., F, K]`` of ``wave [..., T]`` (centred, Hann window, not normalised). ``pad_mode`` pads
    the ends for the centred first and last frames ("constant": zeros, for signals shorter than half a frame)."""
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window(wave.device, wave.dtype),
        center=True,
        pad_mode=pad_mode,
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


# ------------------------------------------------------------------------------------------------------ mel front end
# The DiffWave vocoder (fastsep.models.diffwave) is conditioned on exactly the features lmnt-com/diffwave computes in
# its preprocess.py with torchaudio.transforms.MelSpectrogram; torchaudio does not import everywhere fastsep runs, so
# the same computation is written here in plain torch (HTK mel scale, no filter normalisation, as torchaudio's
# defaults). Any change here changes what a trained vocoder sees: keep it bit-for-bit in step with the reference.
__all__ += ["hz_to_mel_htk", "mel_to_hz_htk", "mel_filterbank", "mel_spectrogram"]

MEL_F_MIN = 20.0  # the reference's fmin; fmax is always sample_rate / 2


def hz_to_mel_htk(freq):
    """HTK mel scale: ``2595·log10(1 + f/700)``; accepts a float or a tensor."""
    if isinstance(freq, Tensor):
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    import math

    return 2595.0 * math.log10(1.0 + float(freq) / 700.0)


def mel_to_hz_htk(mel):
    """Inverse of :func:`hz_to_mel_htk`: ``700·(10^(m/2595) − 1)``; accepts a float or a tensor."""
    if isinstance(mel, Tensor):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (float(mel) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular HTK mel filterbank ``[n_freqs, n_mels]`` (float32, CPU), as torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")``.

    The FFT bin frequencies run linearly from 0 to ``sample_rate // 2`` (integer division, as torchaudio does); the
    n_mels + 2 band edges are equally spaced on the mel scale between f_min and f_max; filter m rises linearly from
    edge m to edge m+1 and falls to zero at edge m+2, with peak value 1.
    """
    for name, value in (("n_freqs", n_freqs), ("n_mels", n_mels), ("sample_rate", sample_rate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"mel_filterbank: {name} must be a positive int, got {value!r}")
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"mel_filterbank: need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    bins = torch.linspace(0, sample_rate // 2, n_freqs)
    edges_mel = torch.linspace(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2)
    edges = mel_to_hz_htk(edges_mel)
    widths = edges[1:] - edges[:-1]  # [n_mels + 1]
    offset = edges.unsqueeze(0) - bins.unsqueeze(1)  # [n_freqs, n_mels + 2]: edge minus bin frequency
    rising = -offset[:, :-2] / widths[:-1]
    falling = offset[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def _mel_check(audio, sample_rate, hop_length, n_mels, n_fft) -> int:
    if not isinstance(audio, Tensor):
        raise TypeError(f"mel_spectrogram: audio must be a torch.Tensor [..., T], got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise TypeError(f"mel_spectrogram: audio must be a float tensor, got dtype {audio.dtype}")
    if audio.dim() < 1:
        raise ValueError("mel_spectrogram: audio must have a time dimension [..., T], got a 0-d tensor")
    for name, value in (("sample_rate", sample_rate), ("hop_length", hop_length), ("n_mels", n_mels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"mel_spectrogram: {name} must be a positive int, got {value!r}")
    win = 4 * hop_length
    n_fft = win if n_fft is None else n_fft
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < win:
        raise ValueError(f"mel_spectrogram: n_fft must be an int >= the window 4·hop = {win}, got {n_fft!r}")
    if audio.shape[-1] <= n_fft // 2:
        # Reflect padding of the centred STFT needs more samples than half a frame.
        raise ValueError(
            f"mel_spectrogram: audio must be longer than n_fft // 2 = {n_fft // 2} samples, got {audio.shape[-1]}"
        )
    return n_fft


def mel_spectrogram(
    audio: Tensor, sample_rate: int, hop_length: int = 256, n_mels: int = 80, n_fft: Optional[int] = None
) -> Tensor:
    """DiffWave's conditioning features: a normalised log-magnitude mel spectrogram ``[..., n_mels, frames]``.

    Identical to lmnt-com/diffwave's preprocessing: window ``4·hop`` (periodic Hann), ``n_fft`` (default ``4·hop``),
    centred STFT with reflect padding, normalised by the window's L2 norm, magnitude (power 1), HTK mel filterbank
    from 20 Hz to ``sample_rate / 2``, then ``20·log10(max(x, 1e-5)) − 20`` and ``clamp((x + 100)/100, 0, 1)``.

    Args:
        audio: float ``[..., T]`` waveform in [-1, 1], any device.
        sample_rate, hop_length, n_mels: as the vocoder was trained with.
        n_fft: FFT size; the window is zero-padded (centred) to it when larger than ``4·hop``.

    Returns:
        ``[..., n_mels, T // hop + 1]`` in [0, 1], in the audio's dtype and device.
    """
    n_fft = _mel_check(audio, sample_rate, hop_length, n_mels, n_fft)
    win = 4 * hop_length
    window = torch.hann_window(win, periodic=True, device=audio.device, dtype=audio.dtype)
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    # torchaudio's normalized=True divides the complex spectrum by the window's L2 norm, then takes the magnitude
    mag = (spec / window.pow(2.0).sum().sqrt()).abs()
    fb = mel_filterbank(n_fft // 2 + 1, MEL_F_MIN, sample_rate / 2.0, n_mels, sample_rate)
    mel = torch.matmul(mag.transpose(-1, -2), fb.to(device=audio.device, dtype=audio.dtype)).transpose(-1, -2)
    db = 20.0 * torch.log10(torch.clamp(mel, min=1e-5)) - 20.0
    out = torch.clamp((db + 100.0) / 100.0, 0.0, 1.0)
    return out.reshape(*lead, n_mels, out.shape[-1])


__all__ += ["like_input"]


def like_input(out: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """A vocoder's output ``[B, T']`` made to match the ``audio`` it re-synthesised (``[B, T]`` or ``[T]``): cut or
    zero-padded to ``T`` samples (whole mel frames rarely land on the input's length), on the input's device and
    dtype, and without the batch dimension when the input had none."""
    length = audio.shape[-1]
    out = out[..., :length] if out.shape[-1] >= length else torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    out = out.to(device=audio.device, dtype=audio.dtype)
    return out.squeeze(0) if audio.dim() == 1 else out


# The Slaney mel scale and filter normalisation (Auditory Toolbox; librosa's defaults, htk=False, norm="slaney"):
# what speaker encoders trained with librosa features (fastsep.models.voice_encoder) expect.
__all__ += ["hz_to_mel_slaney", "mel_to_hz_slaney", "slaney_mel_filterbank"]

_SLANEY_HZ_PER_MEL = 200.0 / 3.0  # linear part: 0-1000 Hz is mel 0-15
_SLANEY_LOG_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # log part: 27 mels per factor 6.4 above 1 kHz


def hz_to_mel_slaney(freq: Tensor) -> Tensor:
    """Slaney mel scale: linear below 1 kHz (``f / (200/3)``), logarithmic above it."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    linear = freq / _SLANEY_HZ_PER_MEL
    log = _SLANEY_LOG_HZ / _SLANEY_HZ_PER_MEL + torch.log(freq.clamp_min(_SLANEY_LOG_HZ) / _SLANEY_LOG_HZ) \
        / _SLANEY_LOG_STEP
    return torch.where(freq >= _SLANEY_LOG_HZ, log, linear)


def mel_to_hz_slaney(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    split = _SLANEY_LOG_HZ / _SLANEY_HZ_PER_MEL
    log = _SLANEY_LOG_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - split))
    return torch.where(mel >= split, log, _SLANEY_HZ_PER_MEL * mel)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                          f_max: Optional[float] = None) -> Tensor:
    """``[n_fft // 2 + 1, n_mels]`` float32 triangles on the Slaney scale, each scaled to unit area per Hz
    (``2 / (upper edge - lower edge)``), over the FFT bins' exact frequencies ``k * sample_rate / n_fft``."""
    for name, value in (("sample_rate", sample_rate), ("n_fft", n_fft), ("n_mels", n_mels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"slaney_mel_filterbank: {name} must be a positive int, got {value!r}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"slaney_mel_filterbank: need 0 <= f_min < f_max, got {f_min}, {f_max}")
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    edges = mel_to_hz_slaney(torch.linspace(float(hz_to_mel_slaney(f_min)), float(hz_to_mel_slaney(f_max)),
                                            n_mels + 2, dtype=torch.float64))
    widths = edges[1:] - edges[:-1]
    offset = edges[None, :] - bins[:, None]  # [bins, n_mels + 2]
    rising = -offset[:, :-2] / widths[:-1]
    falling = offset[:, 2:] / widths[1:]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0) * (2.0 / (edges[2:] - edges[:-2]))
    return weights.float()
