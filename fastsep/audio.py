"""Audio file input/output: ``load``, ``save`` and ``info``.

soundfile is used when it imports (it reads FLAC, OGG, WAV, ... ); otherwise WAV files are read with
``scipy.io.wavfile`` (PCM 8/16/24/32-bit and 32/64-bit float). Every failure to read a file is reported as
:class:`AudioError` naming the path, so callers (data sets, the CLI) can catch one exception type.
"""
from __future__ import annotations

import os
import struct
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["AudioError", "load", "save", "info", "to_float", "wav_truncation", "AudioReader", "WavWriter"]

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


def to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1) (int16 / 32768, int32 / 2**31, uint8 centred on 128); float data passes
    through as float32. The scaling :func:`load` applies, for arrays that did not come from a file."""
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
            data = to_float(data)
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
    _warn_if_truncated(path)
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

    from .fileio import atomic_output

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path, ".wav") as tmp:
        with open(tmp, "wb") as f:
            wavfile.write(f, int(sample_rate), np.ascontiguousarray(data))


# ------------------------------------------------------------------------------------------------ truncation
def wav_truncation(path: PathLike) -> Optional[Tuple[int, int]]:
    """``(frames the header declares, frames the file holds)`` for a WAV file cut short (a copy or a recording that
    was interrupted), else None (complete, not a WAV, or a streamed header whose size field is left open)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                elif cid == b"data":
                    if not block or size in (0, 0xFFFFFFFF):
                        return None
                    available = os.path.getsize(path) - f.tell()
                    return (size // block, available // block) if available < size else None
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def _warn_if_truncated(path: str) -> None:
    cut = wav_truncation(path)
    if cut is not None:
        warnings.warn(f"{path}: truncated WAV file: the header declares {cut[0]} frames but only {cut[1]} are "
                      f"present; using those", stacklevel=3)


# ------------------------------------------------------------------------------------------------ blocked I/O
class AudioReader:
    """Mono float32 samples of a file, read block by block so that long recordings need not fit in memory.

    With soundfile the file is read in blocks (any format it reads); without it the whole WAV is read once (scipy
    cannot read part of a file), which still works but keeps the file in memory. Channels are averaged (with a
    warning), integer PCM is scaled to [-1, 1) as :func:`load` does, and NaN/inf samples raise :class:`AudioError`.
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        _warn_if_truncated(self.path)
        self._file = None
        self._data: Optional[np.ndarray] = None
        if _sf is not None:
            try:
                self._file = _sf.SoundFile(self.path)
            except Exception as exc:  # noqa: BLE001
                if not os.path.exists(self.path):
                    raise AudioError(self.path, "file not found") from None
                raise AudioError(self.path, f"not a readable audio file: {exc}") from exc
            self.frames, self.rate, self.channels = int(self._file.frames), int(self._file.samplerate), \
                int(self._file.channels)
        else:
            data, self.rate = _read(self.path)
            self.channels = 1 if data.ndim == 1 else int(data.shape[1])
            self._data = data if data.ndim == 1 else data.mean(axis=1)
            self.frames = int(self._data.shape[0])
        if self.frames == 0:
            self.close()
            raise AudioError(self.path, "file holds no samples")
        if self.channels > 1:
            warnings.warn(f"{self.path}: {self.channels} channels averaged to mono", stacklevel=2)

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames ``[start, start + count)`` clipped to the file, averaged to mono, float32."""
        start = max(0, int(start))
        count = max(0, min(int(count), self.frames - start))
        if count == 0:
            return np.zeros(0, np.float32)
        if self._file is not None:
            self._file.seek(start)
            block = self._file.read(count, dtype="float32", always_2d=True).mean(axis=1)
        else:
            block = self._data[start:start + count]
        block = np.ascontiguousarray(block, dtype=np.float32)
        if not np.all(np.isfinite(block)):
            raise AudioError(self.path, "file holds NaN or infinite samples")
        return block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WavWriter:
    """A mono WAV file written block by block (16-bit PCM or 32-bit float), for outputs longer than memory allows.

    The header's sizes are written when the file is closed; a file whose writer died has a zero data size and is
    rejected by readers, and it only ever exists under a temporary name (see :mod:`fastsep.fileio`).
    """

    def __init__(self, path: PathLike, sample_rate: int, subtype: str = "PCM_16"):
        if subtype not in ("PCM_16", "FLOAT"):
            raise ValueError(f"subtype must be 'PCM_16' or 'FLOAT', got {subtype!r}")
        self.path, self.rate, self.subtype = os.fspath(path), int(sample_rate), subtype
        self.width = 2 if subtype == "PCM_16" else 4
        self.frames = 0
        self.peak = 0.0
        self._fh = open(self.path, "wb")
        self._fh.write(self._header())

    def _header(self) -> bytes:
        fmt_tag = 1 if self.subtype == "PCM_16" else 3
        data_bytes = self.frames * self.width
        if data_bytes + 64 >= 2 ** 32:
            raise ValueError(f"{self.path}: over 4 GiB, more than a WAV file can hold")
        fmt = struct.pack("<HHIIHH", fmt_tag, 1, self.rate, self.rate * self.width, self.width, 8 * self.width)
        # A float WAV carries a fact chunk (frame count), which some readers require.
        fact = b"fact" + struct.pack("<II", 4, self.frames) if fmt_tag == 3 else b""
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + fact + b"data" + struct.pack("<I", data_bytes)
        return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body

    @property
    def data_offset(self) -> int:
        return len(self._header())

    def write(self, block) -> None:
        """Append float samples (``[n]``; PCM_16 values are clipped to [-1, 1])."""
        data = block.detach().cpu().numpy() if isinstance(block, Tensor) else np.asarray(block)
        data = np.asarray(data, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"refusing to write NaN/inf samples to {self.path}")
        if data.size:
            self.peak = max(self.peak, float(np.abs(data).max()))
        if self.subtype == "PCM_16":
            out = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
        else:
            out = data.astype("<f4")
        self._fh.write(out.tobytes())
        self.frames += data.size

    def close(self) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.write(self._header())
        self._fh.close()
        self._fh = None

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
