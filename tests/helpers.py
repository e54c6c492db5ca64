"""Builders shared by several test modules (importable as ``helpers``: pytest puts tests/ on sys.path)."""
import math
import os
import wave as wavmod

import numpy as np
import torch

SR = 8000


def write_wav(path, data, sr=SR):
    """Mono 16-bit PCM, creating the folder first (the wsj0-mix layouts are written file by file)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with wavmod.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(np.asarray(data), -1, 1) * 32767).astype("<i2").tobytes())


def assert_own_tone(path, f0, sr=SR):
    """The WAV at ``path`` is at ``sr`` and its strongest frequency is ``f0`` (within 5 Hz): the voice-corpus tests
    give each stand-in talker its own tone, so this says a written utterance holds only that talker's lines."""
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    spectrum = np.abs(np.fft.rfft(data.astype(np.float64)))
    assert rate == sr and abs(np.argmax(spectrum) * rate / len(data) - f0) < 5


def save_tiny_bundle(path, sr=SR):
    """Save a random, seeded tiny full model (backbone, DiffWave, F) to ``path``; returns it as a string.

    Its F starts near the identity, so mode full stays close to the backbone."""
    from fastsep.models.combiner import Combiner
    from fastsep.models.convtasnet import ConvTasNet
    from fastsep.models.diffwave import DiffWave
    from fastsep.separator import Separator

    torch.manual_seed(0)
    vocoder = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20, sample_rate=sr,
                       hop_length=128)
    comb = Combiner(n_fft=128, hop_length=32, hidden=(4, 4, 4, 4, 4))
    Separator(ConvTasNet.small(2, sr), vocoder, comb, sample_rate=sr).save_pretrained(path)
    return str(path)


def harmonic_items(n, length, sr=SR, seed=0):
    """Vocoder training items: harmonic tones with a random pitch each, enough structure for a loss to fall within a
    few steps."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sr
    items = []
    for i in range(n):
        f0 = 100 + 200 * torch.rand(1, generator=g)
        wave = sum(0.3 / k * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 4))
        items.append({"audio": wave.float(), "id": f"u{i}"})
    return items


class SwappingSquare(torch.nn.Module):
    """(x, x²) as two uncorrelated 'talkers', named in the opposite order on every other call (as PIT may): a
    stand-in backbone for the streams' talker-order tests."""

    def __init__(self):
        super().__init__()
        self.config = {"n_src": 2}
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = torch.stack([x, x * x], dim=1)
        return out.flip(1) if self.calls % 2 == 0 else out
