"""A pretrained speaker encoder (GE2E, 3-layer LSTM) that tells real talkers apart (issue 9): tracking, hard pairs,
the speaker loss and `fastsep eval --metrics speaker`.

fastsep's own talker embedding (:mod:`fastsep.models.talker_embedding`) learned from the project's ~50 real talkers
and could not tell them apart on a separator's outputs. This network is the speaker encoder of Wan et al.'s
generalised end-to-end loss (ICASSP 2018) as Resemblyzer (Apache-2.0, PyPI ``resemblyzer``) ships it trained, on
thousands of real talkers (LibriSpeech, VoxCeleb 1 and 2). fastsep does not import Resemblyzer: its weights are
converted once to safetensors (``fastsep import-encoder``) and run here.

What the weights expect, kept exactly: 16 kHz audio raised (Resemblyzer: never lowered) to -30 dBFS RMS, a power (not log) mel
spectrogram of 40 Slaney-normalised Slaney-scale bands over 0-8 kHz from 25 ms Hann windows every 10 ms (librosa's
``melspectrogram`` defaults, centred frames with zero padding), an LSTM over the frames, its last layer's final
hidden state through a linear map and a ReLU, then L2 normalisation. Audio at another rate is resampled to 16 kHz
first (8 kHz speech leaves the bands above 4 kHz empty, which the encoder has seen in telephone speech).

One departure by default: every piece is brought to -30 dBFS, louder ones lowered too (``level="fixed"``). The mel is
not logarithmic, so the embedding of audio above -30 dBFS moves with its level, and a separator trained on SI-SDR
gives its outputs an arbitrary scale: compared at their own levels, an output and its reference (or two talkers of
corpora recorded at different levels) would differ by loudness as much as by voice. ``level="raise"`` is
Resemblyzer's preprocessing exactly.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import Tensor, nn

from ..checks import check_audio_pieces
from ..dsp import resample, slaney_mel_filterbank

__all__ = ["GE2EVoiceEncoder"]

ENCODER_RATE = 16000


class GE2EVoiceEncoder(nn.Module):
    """``forward(wave [N, T]) -> [N, dim]`` unit-norm speaker embeddings, one per piece of audio.

    Args:
        sample_rate: the rate of the audio it is handed (resampled to 16 kHz inside).
        n_mels, hidden, layers, dim: the network's sizes (Resemblyzer's: 40, 256, 3, 256).
        target_dbfs: the level each piece is brought to (Resemblyzer's -30 dBFS).
        level: ``"fixed"`` (every piece to ``target_dbfs``) or ``"raise"`` (only quieter ones, as Resemblyzer).
    """

    FRONT_END = "upsample2-kaiser16-level"  # names the front end's arithmetic, for caches of its embeddings

    def __init__(self, sample_rate: int = 8000, n_mels: int = 40, hidden: int = 256, layers: int = 3, dim: int = 256,
                 target_dbfs: float = -30.0, level: str = "fixed"):
        super().__init__()
        for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("hidden", hidden),
                            ("layers", layers), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GE2EVoiceEncoder: {name} must be a positive int, got {value!r}")
        if not (isinstance(target_dbfs, (int, float)) and -100.0 < float(target_dbfs) <= 0.0):
            raise ValueError(f"GE2EVoiceEncoder: target_dbfs must lie in (-100, 0], got {target_dbfs!r}")
        if level not in ("fixed", "raise"):
            raise ValueError(f"GE2EVoiceEncoder: level must be 'fixed' or 'raise', got {level!r}")
        self.config: Dict[str, Any] = dict(sample_rate=sample_rate, n_mels=n_mels, hidden=hidden, layers=layers,
                                           dim=dim, target_dbfs=float(target_dbfs), level=level)
        self.level = level
        self.sample_rate = sample_rate
        self.win = ENCODER_RATE * 25 // 1000
        self.hop = ENCODER_RATE * 10 // 1000
        self.target_dbfs = float(target_dbfs)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.register_buffer("fbank", slaney_mel_filterbank(ENCODER_RATE, self.win, n_mels), persistent=False)
        # 8 kHz input is upsampled in torch (differentiable: the encoder also serves as a training loss); other
        # rates go through fastsep.dsp.resample
        self.register_buffer("upsample_taps", _half_band_taps(), persistent=False)
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, dim)

    @property
    def min_samples(self) -> int:
        """The shortest piece worth embedding (0.2 s: twenty frames)."""
        return self.sample_rate // 5

    def raised(self, wave: Tensor) -> Tensor:
        """Each row brought to ``target_dbfs`` RMS: always (``level="fixed"``), or only when quieter (``"raise"``,
        Resemblyzer's own preprocessing). A silent row stays silent."""
        rms = wave.pow(2).mean(-1, keepdim=True).sqrt()
        gain = (10.0 ** (self.target_dbfs / 20.0)) / rms.clamp_min(1e-10)
        if self.level == "raise":
            gain = gain.clamp_min(1.0)
        return wave * torch.where(rms > 1e-10, gain, torch.ones_like(gain))

    def features(self, wave: Tensor) -> Tensor:
        """``[N, frames, n_mels]`` power mel spectrogram of the 16 kHz, level-raised audio."""
        check_audio_pieces("GE2EVoiceEncoder", wave, self.min_samples)
        if self.sample_rate * 2 == ENCODER_RATE:
            wave16 = self.upsample2(wave.float())
        else:
            wave16 = resample(wave.float(), self.sample_rate, ENCODER_RATE)
        wave16 = self.raised(wave16)
        padded = torch.nn.functional.pad(wave16, (self.win // 2, self.win // 2))
        spec = torch.stft(padded, self.win, self.hop, self.win, self.window, center=False, return_complex=True)
        return (spec.abs().pow(2).transpose(1, 2) @ self.fbank).contiguous()

    def upsample2(self, wave: Tensor) -> Tensor:
        """``[N, T] -> [N, 2T]``: zeros between the samples, then the half-band low-pass (gain 2), centred."""
        taps = self.upsample_taps
        up = torch.nn.functional.conv_transpose1d(wave[:, None], taps.view(1, 1, -1), stride=2)[:, 0]
        half = (taps.numel() - 1) // 2
        return up[:, half:half + 2 * wave.shape[-1]]

    def forward(self, wave: Tensor) -> Tensor:
        _, (h, _) = self.lstm(self.features(wave))
        raw = torch.relu(self.linear(h[-1]))
        return raw / raw.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _half_band_taps(zero_crossings: int = 16, beta: float = 8.0) -> Tensor:
    """A Kaiser-windowed sinc low-pass at a quarter of the doubled rate, gain 2: interpolation by 2 with ~16 input
    samples of support on each side (stop-band ~ -80 dB)."""
    n = torch.arange(-2 * zero_crossings + 1, 2 * zero_crossings, dtype=torch.float64)
    sinc = torch.special.sinc(n / 2.0)
    window = torch.special.i0(beta * torch.sqrt((1 - (n / (2 * zero_crossings)) ** 2).clamp_min(0))) / \
        torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    return (sinc * window).float()
