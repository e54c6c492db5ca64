"""A talker-embedding network: a short piece of separated speech -> a unit vector that says who is speaking.

It exists to keep a separator's talkers on the same outputs (:mod:`fastsep.tracking`): a separator with a receptive
field of ~2 s hands a talker from one output to the other where one of them pauses (issue 9's talker swaps), and only
the voice, heard across the whole recording, can say which output each piece belongs to.

Layout: log-mel spectrogram (25 ms windows, 10 ms hop at 8 kHz), normalised either per band over the piece
(``normalise="piece"``: a recording channel's fixed colouring carries no weight, but neither does the voice's own
long-term spectrum) or by fixed, learned per-band statistics (``"fixed"``, a batch norm: the spectral envelope, the
strongest cue to a voice in half a second, is kept), a stack of dilated 1-D convolutions with
residual connections, mean-and-standard-deviation pooling over time (x-vector style), a linear projection and L2
normalisation. Small on purpose (~0.2 M parameters): it runs on every 0.5 s of every output.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_audio_pieces
from ..dsp import mel_filterbank

__all__ = ["TalkerEmbedding"]


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + F.relu(self.norm(self.conv(x)))


class TalkerEmbedding(nn.Module):
    """``forward(wave [N, T]) -> [N, dim]`` unit-norm embeddings, one per piece of audio.

    Args:
        sample_rate: audio rate (the mel bands span 0 .. sample_rate / 2).
        n_mels: mel bands.
        channels: width of the convolution stack.
        n_layers: dilated residual layers (dilations 1, 2, 4, ... cycling after 8).
        dim: embedding size.
        normalise: ``"piece"`` or ``"fixed"`` (see the module docstring).
    """

    def __init__(self, sample_rate: int = 8000, n_mels: int = 40, channels: int = 128, n_layers: int = 5,
                 dim: int = 64, normalise: str = "piece"):
        super().__init__()
        for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("channels", channels),
                            ("n_layers", n_layers), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TalkerEmbedding: {name} must be a positive int, got {value!r}")
        if normalise not in ("piece", "fixed"):
            raise ValueError(f"TalkerEmbedding: normalise must be 'piece' or 'fixed', got {normalise!r}")
        self.config: Dict[str, Any] = dict(sample_rate=sample_rate, n_mels=n_mels, channels=channels,
                                           n_layers=n_layers, dim=dim, normalise=normalise)
        self.normalise = normalise
        self.sample_rate = sample_rate
        self.win = int(round(0.025 * sample_rate))
        self.hop = int(round(0.010 * sample_rate))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.register_buffer("fbank", mel_filterbank(self.n_fft // 2 + 1, 20.0, sample_rate / 2.0, n_mels,
                                                     sample_rate), persistent=False)
        self.band_norm = nn.BatchNorm1d(n_mels) if normalise == "fixed" else None
        self.inp = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.layers = nn.ModuleList(_Residual(channels, 2 ** (i % 4)) for i in range(n_layers))
        self.proj = nn.Linear(2 * channels, dim)

    @property
    def min_samples(self) -> int:
        """The shortest piece the network takes (one analysis window)."""
        return self.win

    def features(self, wave: Tensor) -> Tensor:
        """Normalised log-mel ``[N, n_mels, frames]``."""
        spec = torch.stft(wave.float(), self.n_fft, self.hop, self.win, self.window, center=True,
                          return_complex=True)
        mel = torch.matmul(self.fbank.t(), spec.abs().pow(2))
        logmel = torch.log(mel + 1e-8)
        if self.band_norm is not None:
            return self.band_norm(logmel)
        return logmel - logmel.mean(dim=-1, keepdim=True)

    def forward(self, wave: Tensor) -> Tensor:
        check_audio_pieces("TalkerEmbedding", wave, self.min_samples)
        x = F.relu(self.inp(self.features(wave)))
        for layer in self.layers:
            x = layer(x)
        pooled = torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=1)
        return F.normalize(self.proj(pooled), dim=-1)
