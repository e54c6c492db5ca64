"""Training-time augmentation for dynamic mixing: new voices, rooms and backgrounds drawn on the fly.

A separator trained on a few engines' voices learns those engines; these perturbations widen what it sees at no
storage cost. Per source (before levels are set): speed perturbation (resampling by a factor near 1 moves pitch,
formants -- a vocal-tract-length change -- and tempo together, turning one talker into a family of talkers),
synthetic room reverberation (exponentially decaying noise tails, RT60 drawn per source; the target is the
reverberant source, so the task stays separation, not dereverberation), and partial overlap (one source silent for
a leading or trailing part of the segment, as in real conversations), and, when asked for, a formant shift (the
spectral envelope warped along frequency with the harmonics left in place: a longer or shorter vocal tract at the
same pitch, so that with speed perturbation pitch and vocal-tract length vary independently), and a polarity flip
(the source negated: a microphone, codec or synthesiser may deliver speech either way up, and voiced speech is not
symmetric about zero -- its glottal pulses point one way -- so a network that only ever saw one polarity per corpus
separates the other one worse; measured in session 20: the default's B scored up to 0.85 dB higher on an unseen
engine's voices when the negated mixture's estimate was averaged in), and a random channel colouring (each source
through its own recording chain: a smooth random equaliser curve -- tilt and a few broad peaks or dips -- with an
optional high-pass and low-pass edge, as microphones, rooms' early reflections, codecs and telephone lines shape a
voice; a corpus recorded in one studio otherwise teaches one spectral colour per talker), and a speech codec (each
source through its own narrow-band coder and back -- GSM full rate, AMR-NB at a random bit rate, mu-law or A-law
-- with sox: telephone prompts, voicemail and VoIP calls reach a separator coded, and a codec's artefacts are
nothing like a studio's; the target is the coded source). Per mixture:
background noise (recorded music or coloured noise) at a drawn SNR; the targets stay noise-free, so the separator
also learns to reject it.

Every draw comes from the generator the caller passes, so a fixed evaluation list stays fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Augmentation", "speed_perturb", "formant_shift", "lpc_envelope", "synthetic_rir", "coloured_noise",
           "random_channel_response", "apply_fir", "speech_codec", "CODECS", "FORMANT_PROB", "POLARITY_PROB", "EQ_PROB",
           "CODEC_PROB", "NOISE_FOLDERS"]

#: The formant shift's probability when it is asked for by name without one (it is off by default: formant_prob 0).
FORMANT_PROB = 0.5

#: The polarity flip's probability when it is asked for by name without one (off by default: polarity_prob 0).
POLARITY_PROB = 0.5

#: The channel colouring's probability when it is asked for by name without one (off by default: eq_prob 0).
EQ_PROB = 0.5

#: The codec's probability when it is asked for by name without one (off by default: codec_prob 0).
CODEC_PROB = 0.3

#: The coders :func:`speech_codec` draws from (sox file types; all narrow-band, 8 kHz).
CODECS = ("gsm", "amr-nb", "ul", "al")

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


def lpc_envelope(frames_power: np.ndarray, order: int) -> np.ndarray:
    """Magnitude of the all-pole (LPC) envelope of each frame, on the same rfft grid as ``frames_power``.

    ``frames_power`` is ``(frames, bins)`` power spectra; the autocorrelation is their inverse FFT and the
    Levinson-Durbin recursion runs over all frames at once. Only the envelope's shape is meaningful (its gain is
    each frame's prediction error, which a ratio of two envelopes of one frame cancels).
    """
    r = np.fft.irfft(frames_power, axis=-1)[:, : order + 1]
    r[:, 0] *= 1.0 + 1e-4  # white-noise correction: keeps the recursion well conditioned on silent frames
    r[:, 0] += 1e-12
    a = np.zeros((r.shape[0], order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -(a[:, :i] * r[:, i:0:-1]).sum(-1) / err
        a[:, 1:i + 1] = a[:, 1:i + 1] + k[:, None] * a[:, i - 1::-1][:, :i]
        err *= 1.0 - k ** 2
    n_fft = 2 * (frames_power.shape[-1] - 1)
    return 1.0 / np.maximum(np.abs(np.fft.rfft(a, n_fft, axis=-1)), 1e-8)


def formant_shift(wave: np.ndarray, factor: float, sample_rate: int, max_gain_db: float = 20.0) -> np.ndarray:
    """``wave`` with its formants moved by ``factor`` (> 1 up: a shorter vocal tract) and its pitch kept.

    Per 32 ms frame (75 % overlap; :func:`fastsep.dsp.stft`), the LPC envelope E(f) is replaced by E(f / factor):
    the spectrum is multiplied by the real gain E(f / factor) / E(f) (limited to +-``max_gain_db``) and inverted
    (:func:`fastsep.dsp.istft`). The harmonics, and so the pitch and the phase, stay where they were. The output
    has the input's RMS.
    """
    from ..dsp import StftConfig, istft, stft

    if not factor > 0:
        raise ValueError(f"formant factor must be positive, got {factor}")
    if factor == 1.0 or wave.size == 0:
        return wave
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    cfg = StftConfig(n_fft=n_fft, hop_length=n_fft // 4)
    spec = stft(torch.from_numpy(np.asarray(wave, dtype=np.float64)), cfg, pad_mode="constant")  # [F, frames]
    env = lpc_envelope((spec.abs() ** 2).T.numpy(), 2 + sample_rate // 1000)  # (frames, bins)
    bins = np.arange(env.shape[-1])
    src = np.minimum(bins / factor, bins[-1])  # E(f / factor); above Nyquist / factor hold the last value
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, bins[-1])
    w = src - lo
    warped = env[:, lo] * (1 - w) + env[:, hi] * w
    limit = 10 ** (max_gain_db / 20)
    gain = np.clip(warped / env, 1 / limit, limit)
    out = istft(spec * torch.from_numpy(gain.T), len(wave), cfg).numpy()
    rms_in = float(np.sqrt(np.mean(wave ** 2)))
    rms_out = float(np.sqrt(np.mean(out ** 2)))
    return out * (rms_in / rms_out) if rms_out > 1e-12 else out


def random_channel_response(rng: np.random.Generator, sample_rate: int, n_bins: int = 257,
                            max_tilt_db: float = 8.0, max_peak_db: float = 8.0) -> np.ndarray:
    """A random recording chain's gain in dB on ``n_bins`` frequencies from 0 to Nyquist.

    A spectral tilt of up to +-``max_tilt_db`` across the band, one to three broad peaks or dips (Gaussian on a log
    frequency axis, 0.3-1.2 octaves wide, up to +-``max_peak_db``), and with probability 0.5 each a 2nd-order
    high-pass edge at 80-350 Hz and a 4th-order low-pass edge at 65-95 % of Nyquist (telephone lines, codecs and
    small microphones cut both ends).
    """
    nyq = sample_rate / 2
    f = np.linspace(0.0, nyq, n_bins)
    f_safe = np.maximum(f, 1.0)
    gain = float(rng.uniform(-max_tilt_db, max_tilt_db)) * (f / nyq - 0.5)
    for _ in range(int(rng.integers(1, 4))):
        centre = float(np.exp(rng.uniform(np.log(150.0), np.log(0.9 * nyq))))
        width = float(rng.uniform(0.3, 1.2)) * np.log(2.0)  # octaves, as natural-log units
        gain = gain + float(rng.uniform(-max_peak_db, max_peak_db)) * np.exp(
            -0.5 * ((np.log(f_safe) - np.log(centre)) / width) ** 2)
    if rng.random() < 0.5:
        cut = float(rng.uniform(80.0, 350.0))
        gain = gain - 10.0 * np.log10(1.0 + (cut / f_safe) ** 4)
    if rng.random() < 0.5:
        cut = float(rng.uniform(0.65, 0.95)) * nyq
        gain = gain - 10.0 * np.log10(1.0 + (f / cut) ** 8)
    return gain


def apply_fir(wave: np.ndarray, gain_db: np.ndarray) -> np.ndarray:
    """``wave`` filtered by the zero-phase FIR whose magnitude follows ``gain_db`` (bins 0..Nyquist), same length.

    The filter is the inverse FFT of the gain, centred and Hann-windowed to ``2 * (len(gain_db) - 1) - 1`` taps, so
    the result is neither delayed nor circularly wrapped.
    """
    from scipy.signal import fftconvolve

    impulse = np.fft.irfft(10.0 ** (gain_db / 20.0))
    n = impulse.shape[0]
    taps = np.roll(impulse, n // 2)[1:] * np.hanning(n + 1)[1:-1]
    half = (taps.shape[0] - 1) // 2
    return fftconvolve(wave, taps)[half:half + wave.shape[0]]


def speech_codec(wave: np.ndarray, sample_rate: int, codec: str, mode: int = 7) -> np.ndarray:
    """``wave`` coded by a narrow-band speech codec and decoded again (sox), at its own rate, length and level.

    ``codec``: one of :data:`CODECS`; ``mode``: AMR-NB's bit-rate mode 0-7 (4.75-12.2 kbit/s; ignored by the
    others). The coders work at 8 kHz: other rates are resampled there and back. The signal is brought to a peak of
    0.9 for the coder's 16-bit input and scaled back; the decoded signal is cut or zero-padded to the input's
    length (a coder's delay stays in it: used as a training target, it is the coded source either way).
    """
    import subprocess

    from .voices import sox_decode

    if codec not in CODECS:
        raise ValueError(f"speech_codec: codec must be one of {CODECS}, got {codec!r}")
    if not (isinstance(mode, int) and 0 <= mode <= 7):
        raise ValueError(f"speech_codec: mode must be an int 0-7, got {mode!r}")
    x = np.asarray(wave, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < 1e-8:
        return x.copy()
    scale = 0.9 / peak
    raw = (x * scale).astype("<f4").tobytes()
    inp = ["-t", "f32", "-r", str(sample_rate), "-c", "1"]
    options = ["-C", str(mode)] if codec == "amr-nb" else []
    try:
        coded = subprocess.run(["sox", *inp, "-", *options, "-t", codec, "-r", "8000", "-c", "1", "-"], input=raw,
                               capture_output=True, check=True).stdout
    except FileNotFoundError:
        raise RuntimeError("speech_codec needs sox (apt-get install sox libsox-fmt-all)") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"sox could not code {codec}: {exc.stderr.decode(errors='replace').strip()}") from None
    y = sox_decode(["-t", codec, "-r", "8000", "-c", "1", "-"], sample_rate, coded) / scale
    out = np.zeros_like(x)
    out[:min(len(x), len(y))] = y[:len(x)]
    return out


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
        formant: range of the formant factor (0.85-1.18: vocal tracts ~15 % longer to ~15 % shorter).
        formant_prob: probability that a source's crop is formant-shifted (0 unless asked for: ``--augment
            ...,formant`` sets :data:`FORMANT_PROB`; ``all`` keeps the four parts it always meant).
        polarity_prob: probability that a source's crop is negated (each source drawn on its own; 0 unless asked
            for: ``--augment ...,polarity`` sets :data:`POLARITY_PROB`).
        eq_prob: probability that a source's crop goes through a random recording chain
            (:func:`random_channel_response`; each source its own; 0 unless asked for: ``--augment ...,eq`` sets
            :data:`EQ_PROB`).
        codec_prob: probability that a source's crop is coded and decoded by one of :data:`CODECS`
            (:func:`speech_codec`; 0 unless asked for: ``--augment ...,codec`` sets :data:`CODEC_PROB`).
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
    formant: Tuple[float, float] = (0.85, 1.18)
    formant_prob: float = 0.0
    polarity_prob: float = 0.0
    eq_prob: float = 0.0
    codec_prob: float = 0.0
    _noise_bank: Optional[List[np.ndarray]] = field(default=None, repr=False)
    _noise_rate: int = field(default=0, repr=False)

    def __post_init__(self):
        for name in ("speed_prob", "reverb_prob", "noise_prob", "overlap_prob", "formant_prob", "polarity_prob",
                     "eq_prob", "codec_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        for name in ("speed", "rt60", "drr_db", "snr_db", "formant"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)!r}")
        if self.speed[0] <= 0 or self.rt60[0] <= 0 or self.formant[0] <= 0:
            raise ValueError("speed, rt60 and formant ranges must be positive")
        if not 0.0 <= self.max_silent < 1.0:
            raise ValueError(f"max_silent must be in [0, 1), got {self.max_silent!r}")

    # -- per source, on the whole utterance before cropping ------------------------------------------------------
    def source(self, wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        if rng.random() < self.speed_prob:
            wave = speed_perturb(wave, float(rng.uniform(*self.speed)))
        return wave

    # -- per source crop, after cropping ------------------------------------------------------------------------
    def crop(self, crop: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        # drawn only when enabled, so runs without it keep the random stream they always had
        if self.formant_prob > 0 and rng.random() < self.formant_prob:
            crop = formant_shift(crop, float(rng.uniform(*self.formant)), sample_rate)
        if rng.random() < self.reverb_prob:
            from scipy.signal import fftconvolve

            rir = synthetic_rir(rng, sample_rate, float(rng.uniform(*self.rt60)), float(rng.uniform(*self.drr_db)))
            crop = fftconvolve(crop, rir)[: len(crop)]
        if self.polarity_prob > 0 and rng.random() < self.polarity_prob:  # drawn only when enabled, as above
            crop = -crop
        if self.eq_prob > 0 and rng.random() < self.eq_prob:  # likewise
            crop = apply_fir(crop, random_channel_response(rng, sample_rate))
        if self.codec_prob > 0 and rng.random() < self.codec_prob:  # likewise
            codec = CODECS[int(rng.integers(len(CODECS)))]
            crop = speech_codec(crop, sample_rate, codec, int(rng.integers(0, 8)))
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
