"""The mel front end of fastsep.dsp against independent numpy re-statements (and torchaudio where it imports)."""
import math

import numpy as np
import pytest
import torch

from fastsep.dsp import hz_to_mel_htk, mel_filterbank, mel_spectrogram, mel_to_hz_htk


# ----------------------------------------------------------------------------------- independent numpy oracle
def np_filterbank(n_freqs, f_min, f_max, n_mels, sr):
    """Triangle by triangle, in float64, straight from the HTK definition."""
    freqs = np.array([k * (sr // 2) / (n_freqs - 1) for k in range(n_freqs)])
    lo, hi = 2595.0 * np.log10(1 + f_min / 700.0), 2595.0 * np.log10(1 + f_max / 700.0)
    edges = [700.0 * (10 ** ((lo + (hi - lo) * i / (n_mels + 1)) / 2595.0) - 1) for i in range(n_mels + 2)]
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if left < f <= centre:
                fb[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[k, m] = (right - f) / (right - centre)
    return fb


def np_mel_spectrogram(x, sr, hop, n_mels, n_fft=None):
    win = 4 * hop
    n_fft = n_fft or win
    n = np.arange(win)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)  # periodic Hann
    padded_window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    padded_window[start:start + win] = window
    xp = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + (len(xp) - n_fft) // hop
    mags = np.stack([np.abs(np.fft.rfft(xp[i * hop:i * hop + n_fft] * padded_window)) for i in range(frames)], 1)
    mags /= math.sqrt(np.sum(window ** 2))
    mel = np_filterbank(n_fft // 2 + 1, 20.0, sr / 2.0, n_mels, sr).T @ mags
    db = 20 * np.log10(np.maximum(mel, 1e-5)) - 20
    return np.clip((db + 100) / 100, 0, 1)


# ------------------------------------------------------------------------------------------------------- tests
def test_mel_scale_round_trip_and_anchor():
    assert hz_to_mel_htk(700.0) == pytest.approx(2595.0 * math.log10(2.0))
    f = torch.tensor([0.0, 20.0, 1000.0, 4000.0])
    assert torch.allclose(mel_to_hz_htk(hz_to_mel_htk(f)), f, atol=1e-2)


@pytest.mark.parametrize("n_freqs,n_mels,sr", [(513, 80, 22050), (257, 80, 8000), (129, 40, 16000), (65, 13, 8000)])
def test_filterbank_matches_numpy_formula(n_freqs, n_mels, sr):
    fb = mel_filterbank(n_freqs, 20.0, sr / 2.0, n_mels, sr)
    assert fb.shape == (n_freqs, n_mels) and fb.dtype == torch.float32
    want = np_filterbank(n_freqs, 20.0, sr / 2.0, n_mels, sr)
    np.testing.assert_allclose(fb.numpy(), want, atol=2e-5)
    assert (fb >= 0).all() and fb.max() <= 1.0 + 1e-6


def test_filterbank_bad_input():
    with pytest.raises(ValueError, match="n_mels"):
        mel_filterbank(257, 20.0, 4000.0, 0, 8000)
    with pytest.raises(ValueError, match="f_min < f_max"):
        mel_filterbank(257, 4000.0, 20.0, 80, 8000)


@pytest.mark.parametrize("sr,hop,n_mels,n_fft,length", [(8000, 64, 80, None, 3000), (22050, 256, 80, None, 6000),
                                                       (16000, 100, 40, 512, 2345)])
def test_mel_spectrogram_matches_numpy(sr, hop, n_mels, n_fft, length):
    rng = np.random.default_rng(1)
    t = np.arange(length) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(length)
    got = mel_spectrogram(torch.tensor(x, dtype=torch.float32), sr, hop_length=hop, n_mels=n_mels, n_fft=n_fft)
    want = np_mel_spectrogram(x, sr, hop, n_mels, n_fft)
    assert got.shape == (n_mels, length // hop + 1) == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=2e-4)


def test_mel_spectrogram_batches_and_dtype():
    x = torch.randn(2, 3, 1000, dtype=torch.float64) * 0.1
    out = mel_spectrogram(x, 8000, hop_length=50, n_mels=20)
    assert out.shape == (2, 3, 20, 21) and out.dtype == torch.float64
    single = mel_spectrogram(x[1, 2], 8000, hop_length=50, n_mels=20)
    torch.testing.assert_close(out[1, 2], single)
    assert out.min() >= 0 and out.max() <= 1


def test_mel_of_a_tone_peaks_in_its_band():
    sr, hop, n_mels = 8000, 64, 40
    x = torch.sin(2 * math.pi * 1000.0 * torch.arange(4000) / sr) * 0.5
    mel = mel_spectrogram(x, sr, hop_length=hop, n_mels=n_mels)
    edges = [mel_to_hz_htk(hz_to_mel_htk(20.0) + (hz_to_mel_htk(sr / 2) - hz_to_mel_htk(20.0)) * i / (n_mels + 1))
             for i in range(n_mels + 2)]
    centre_band = min(range(n_mels), key=lambda m: abs(edges[m + 1] - 1000.0))
    assert int(mel[:, 30].argmax()) in (centre_band - 1, centre_band, centre_band + 1)
    silence = mel_spectrogram(torch.zeros(4000), sr, hop_length=hop, n_mels=n_mels)
    # -100 dB floor: 20·log10(1e-5) − 20 = −120 dB, clamped to 0
    assert torch.all(silence == 0)


def test_mel_spectrogram_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        mel_spectrogram(np.zeros(1000), 8000)
    with pytest.raises(TypeError, match="float"):
        mel_spectrogram(torch.zeros(2000, dtype=torch.int16), 8000)
    with pytest.raises(ValueError, match="longer than"):
        mel_spectrogram(torch.zeros(100), 8000, hop_length=64)
    with pytest.raises(ValueError, match="n_fft"):
        mel_spectrogram(torch.zeros(2000), 8000, hop_length=64, n_fft=128)
    with pytest.raises(ValueError, match="hop_length"):
        mel_spectrogram(torch.zeros(2000), 8000, hop_length=0)


def _torchaudio():
    try:
        import torchaudio.transforms as tt

        return tt
    except Exception as exc:  # noqa: BLE001 - a broken install counts as absent
        pytest.skip(f"torchaudio does not import here ({type(exc).__name__}); the numpy oracle covers the formula")


def test_mel_spectrogram_matches_torchaudio():
    tt = _torchaudio()
    sr, hop = 22050, 256
    transform = tt.MelSpectrogram(sample_rate=sr, win_length=4 * hop, hop_length=hop, n_fft=1024, f_min=20.0,
                                  f_max=sr / 2.0, n_mels=80, power=1.0, normalized=True)
    x = torch.randn(2, 10000) * 0.1
    ref = transform(x)
    ref = torch.clamp((20 * torch.log10(torch.clamp(ref, min=1e-5)) - 20 + 100) / 100, 0.0, 1.0)
    torch.testing.assert_close(mel_spectrogram(x, sr, hop_length=hop, n_mels=80), ref, atol=1e-5, rtol=0)
