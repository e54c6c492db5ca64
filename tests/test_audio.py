"""fastsep.audio: round trips against scipy's writer/reader, atomic writes, clear errors for bad files."""
import math
import os
import warnings

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fastsep import audio
from fastsep.audio import AudioError


def _tone(n=800, sr=8000, f=440.0):
    t = np.arange(n) / sr
    return (0.5 * np.sin(2 * math.pi * f * t)).astype(np.float32)


def test_save_load_pcm16_round_trip(tmp_path):
    x = torch.from_numpy(_tone())
    path = tmp_path / "deep" / "folder" / "a.wav"  # parents are created
    audio.save(path, x, 8000)
    y, sr = audio.load(path)
    assert sr == 8000 and y.dtype == torch.float32 and y.shape == x.shape
    # 16-bit quantisation step is 1/32767; reading divides by 32768, so allow one step plus the scale error.
    assert torch.max(torch.abs(y - x)).item() < 2.0 / 32767
    raw_sr, raw = wavfile.read(path)  # independent reader: the file really is PCM16
    assert raw_sr == 8000 and raw.dtype == np.int16
    np.testing.assert_array_equal(raw, np.round(_tone() * 32767).astype(np.int16))


def test_save_float_is_lossless(tmp_path):
    x = torch.randn(2, 300) * 0.3
    audio.save(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    y, sr = audio.load(tmp_path / "f.wav", mono=False)
    assert sr == 16000
    torch.testing.assert_close(y, x, rtol=0, atol=0)


@pytest.mark.parametrize("dtype,scale", [(np.int16, 2 ** 15), (np.int32, 2 ** 31), (np.float32, 1.0)])
def test_load_formats_written_by_scipy(tmp_path, dtype, scale):
    x = _tone(400)
    raw = (x * (scale - 1)).astype(dtype) if dtype != np.float32 else x
    wavfile.write(tmp_path / "s.wav", 8000, raw)
    y, sr = audio.load(tmp_path / "s.wav")
    np.testing.assert_allclose(y.numpy(), raw.astype(np.float64) / scale, atol=1e-6)


def test_load_24bit(tmp_path):
    # Hand-built 24-bit PCM WAV: scipy's writer cannot produce one.
    vals = np.array([0, 1, -1, 2 ** 22, -(2 ** 23), 2 ** 23 - 1], dtype=np.int64)
    data = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in vals)
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (8000 * 3).to_bytes(4, "little") + (3).to_bytes(2, "little") + (24).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    (tmp_path / "p24.wav").write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    y, _ = audio.load(tmp_path / "p24.wav")
    np.testing.assert_allclose(y.numpy(), vals / 2.0 ** 23, atol=1e-7)
    assert audio.info(tmp_path / "p24.wav") == (6, 8000, 1)


def test_stereo_downmix_warns(tmp_path):
    left, right = _tone(500), -0.5 * _tone(500)
    wavfile.write(tmp_path / "st.wav", 8000, np.stack([left, right], axis=1))
    with pytest.warns(UserWarning, match="averaged to mono"):
        y, _ = audio.load(tmp_path / "st.wav")
    np.testing.assert_allclose(y.numpy(), (left + right) / 2, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both, _ = audio.load(tmp_path / "st.wav", mono=False)
    assert both.shape == (2, 500)


def test_resample_on_load(tmp_path):
    wavfile.write(tmp_path / "r.wav", 16000, _tone(1600, sr=16000, f=300.0))
    y, sr = audio.load(tmp_path / "r.wav", sample_rate=8000)
    assert sr == 8000 and y.shape == (800,)
    # A 300 Hz tone stays a 300 Hz tone: compare with the analytic signal away from the edges.
    ref = _tone(800, sr=8000, f=300.0)
    np.testing.assert_allclose(y.numpy()[100:-100], ref[100:-100], atol=1e-2)


def test_info_matches_file(tmp_path):
    wavfile.write(tmp_path / "i.wav", 22050, np.zeros((1234, 3), dtype=np.int16) + 5)
    assert audio.info(tmp_path / "i.wav") == (1234, 22050, 3)


@pytest.mark.parametrize("content,reason", [
    (b"this is plain text, not audio at all", "not a readable"),
    (b"", "not a readable"),
])
def test_non_audio_raises_audio_error(tmp_path, content, reason):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as err:
        audio.load(p)
    assert str(p) in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(AudioError):
        audio.info(p)


def test_missing_empty_nan(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        audio.load(tmp_path / "nope.wav")
    wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, dtype=np.int16))
    with pytest.raises(AudioError, match="no samples"):
        audio.load(tmp_path / "empty.wav")
    x = _tone(100)
    x[10] = np.nan
    wavfile.write(tmp_path / "nan.wav", 8000, x)
    with pytest.raises(AudioError, match="NaN"):
        audio.load(tmp_path / "nan.wav")


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    audio.save(target, torch.zeros(100), 8000)
    before = target.read_bytes()

    def broken_write(f, rate, data):
        f.write(b"RIFF partial")
        raise OSError("disk full")

    monkeypatch.setattr(wavfile, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        audio.save(target, torch.ones(100) * 0.5, 8000)
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # and no temporary file is left behind


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        audio.save(tmp_path / "x.wav", torch.zeros(1, 2, 3), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        audio.save(tmp_path / "x.wav", torch.zeros(10), 0)
    with pytest.raises(TypeError, match="Tensor"):
        audio.save(tmp_path / "x.wav", [0.0, 1.0], 8000)
    with pytest.raises(ValueError, match="NaN"):
        audio.save(tmp_path / "x.wav", torch.tensor([0.0, float("nan")]), 8000)
    assert not (tmp_path / "x.wav").exists()
