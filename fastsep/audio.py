"""Audio file input/output: ``load``, ``save`` and ``info``.

soundfile is used when it imports (it reads FLAC, OGG, WAV, ... ); otherwise WAV files are read with
``scipy.io.wavfile`` (PCM 8/16/24/32-bit and 32/64-bit float). Every failure to read a file is reported as
:class:`AudioError` naming the path, so callers (data sets, the CLI) can catch one exception type.
"""
from __future__ import annotations

import os
import struct
import tempfile
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["AudioError", "load", "save", "info"]

PathLike = Union[str, os.PathLike]

try:  # optional dependency: more formats, faster header reads
    import soundfile as _sf
except Exception:  # noqa: BLE001 - missing module or missing libsndfile both mean "no soundfile"
    _sf = None


class AudioError(ValueError):
    """A file could not be used as audio (missing, unreadable, not audio, empty, or holding NaN/inf samples)."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1); float data passes through as float32."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned with a 128 offset
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype.kind == "i":
        # scipy returns 24-bit PCM left-aligned in int32, so dividing by the int32 range is right for both.
        return (data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))).astype(np.float32)
    raise TypeError(f"unsupported sample type {data.dtype}")


def _read_scipy(path: str) -> Tuple[np.ndarray, int]:
    from scipy.io import wavfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks (LIST etc.) are harmless
        sr, data = wavfile.read(path)
    return data, int(sr)


def _read(path: str) -> Tuple[np.ndarray, int]:
    """Samples as [frames] or [frames, channels] float32 and the rate; raises AudioError on any failure."""
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, expected an audio file")
    try:
        if _sf is not None:
            data, sr = _sf.read(path, dtype="float32", always_2d=False)
        else:
            data, sr = _read_scipy(path)
            data = _to_float(data)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - readers raise many types for bad files; report them all the same way
        hint = "" if _sf is not None else " (only WAV can be read without the optional soundfile package)"
        raise AudioError(path, f"not a readable audio file{hint}: {exc}") from exc
    return data, int(sr)


def load(path: PathLike, sample_rate: Optional[int] = None, mono: bool = True) -> Tuple[Tensor, int]:
    """Read an audio file.

    Args:
        path: file to read.
        sample_rate: resample to this rate (with :func:`fastsep.dsp.resample`) when given and different.
        mono: average the channels into one (with a warning when there was more than one).

    Returns:
        ``(wave, sr)``: float32 ``[T]`` when ``mono`` else ``[channels, T]``, and the rate of the returned wave.

    Raises:
        AudioError: missing, unreadable or non-audio file, a file with no samples, or NaN/inf samples.
    """
    path = os.fspath(path)
    if sample_rate is not None and (not isinstance(sample_rate, int) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r}")
    data, sr = _read(path)
    if data.size == 0:
        raise AudioError(path, "file holds no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "file holds NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.T if data.ndim == 2 else data[None]))  # [ch, T]
    if mono:
        if wave.shape[0] > 1:
            warnings.warn(f"{path}: {wave.shape[0]} channels averaged to mono", stacklevel=2)
        wave = wave.mean(dim=0)
    if sample_rate is not None and sample_rate != sr:
        from .dsp import resample

        wave = resample(wave, sr, sample_rate).contiguous()
        sr = sample_rate
    return wave.to(torch.float32), sr


def _wav_info(path: str) -> Tuple[int, int, int]:
    """(frames, rate, channels) from a RIFF/WAVE header without reading the samples."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise AudioError(path, "not a WAV file (no RIFF/WAVE header)")
        channels = sr = block = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioError(path, "WAV file has no data chunk")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                channels, sr = struct.unpack("<HI", fmt[2:8])
                block = struct.unpack("<H", fmt[12:14])[0]
            elif cid == b"data":
                if channels is None or not block:
                    raise AudioError(path, "WAV data chunk before a valid fmt chunk")
                available = os.path.getsize(path) - f.tell()
                return min(size, available) // block, int(sr), int(channels)
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)


def info(path: PathLike) -> Tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` of an audio file, from its header when possible (no sample decoding)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(path, "file not found")
    if _sf is not None:
        try:
            i = _sf.info(path)
            return int(i.frames), int(i.samplerate), int(i.channels)
        except Exception as exc:  # noqa: BLE001
            raise AudioError(path, f"not a readable audio file: {exc}") from exc
    try:
        return _wav_info(path)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated headers raise struct.error etc.
        raise AudioError(path, f"not a readable WAV file: {exc}") from exc


def save(path: PathLike, wave: Tensor, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``wave`` (``[T]`` or ``[channels, T]``, float in [-1, 1]) as a WAV file, atomically.

    ``subtype`` is ``"PCM_16"`` (values are clipped to [-1, 1] and rounded) or ``"FLOAT"`` (32-bit float, lossless).
    The data goes to a temporary file in the destination folder which then replaces ``path``, so a reader never sees
    a half-written file and a failure leaves no partial file behind. Parent folders are created.
    """
    path = os.fspath(path)
    if not isinstance(wave, (Tensor, np.ndarray)):
        raise TypeError(f"wave must be a torch.Tensor or numpy array, got {type(wave).__name__}")
    data = wave.detach().cpu().numpy() if isinstance(wave, Tensor) else np.asarray(wave)
    if data.ndim not in (1, 2):
        raise ValueError(f"wave must be [T] or [channels, T], got shape {tuple(data.shape)}")
    if data.dtype.kind not in "fiu":
        raise TypeError(f"wave must hold real numbers, got dtype {data.dtype}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if subtype not in ("PCM_16", "FLOAT"):
        raise ValueError(f"subtype must be 'PCM_16' or 'FLOAT', got {subtype!r}")
    data = data.astype(np.float32).T  # wavfile wants [frames, channels]
    if not np.all(np.isfinite(data)):
        raise ValueError(f"refusing to write NaN/inf samples to {path}")
    if subtype == "PCM_16":
        data = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)

    from scipy.io import wavfile

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".wav", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            wavfile.write(f, int(sample_rate), np.ascontiguousarray(data))
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; audio outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
