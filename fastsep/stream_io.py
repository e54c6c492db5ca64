"""Audio over pipes for ``fastsep separate --stream``: WAV or raw PCM in, the talkers interleaved out, sox style.

Input: a WAV stream (detected by its ``RIFF``/``WAVE`` magic; 16/32-bit integer or 32-bit float PCM, any channel
count, which is averaged to mono) or raw mono PCM of a stated rate and encoding (``s16`` little-endian, as
``sox ... -t raw -e signed -b 16 -`` writes, or ``f32``). A WAV stream's data size is ignored and data is read to the
end of the pipe, because writers that cannot seek (sox to a pipe) put a placeholder there.

Output: the talkers as the channels of one stream (talker 1 = channel 1), in the input's container: a WAV stream
whose size fields are the 0xFFFFFFFF placeholder (rewritten with the real sizes when the output is a seekable
file), or raw interleaved PCM in the input's encoding. ``sox -t wav - t1.wav remix 1`` (or ``-t raw ... remix 1``)
takes one talker out.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Optional, Tuple

import numpy as np

__all__ = ["StreamFormat", "read_wav_header", "PcmDecoder", "PcmEncoder", "StreamFormatError"]

_ENCODINGS = {"s16": ("<i2", 2), "s32": ("<i4", 4), "f32": ("<f4", 4)}


class StreamFormatError(ValueError):
    """The input stream is not audio fastsep can read."""


class StreamFormat:
    """Sample rate, channel count and encoding ("s16", "s32" or "f32") of a PCM stream."""

    def __init__(self, rate: int, channels: int, encoding: str):
        if encoding not in _ENCODINGS:
            raise StreamFormatError(f"unsupported encoding {encoding!r} (s16, s32 or f32)")
        if rate <= 0 or channels <= 0:
            raise StreamFormatError(f"bad stream format: rate {rate}, channels {channels}")
        self.rate, self.channels, self.encoding = int(rate), int(channels), encoding
        self.dtype, self.width = _ENCODINGS[encoding]

    def __repr__(self) -> str:
        return f"StreamFormat({self.rate} Hz, {self.channels} ch, {self.encoding})"


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        part = stream.read(n - len(data))
        if not part:
            raise StreamFormatError(f"the input ended inside the WAV header ({what})")
        data += part
    return data


def read_wav_header(stream: BinaryIO, magic: bytes = b"") -> StreamFormat:
    """Parse a WAV header from ``stream`` up to the start of its ``data`` chunk; ``magic``: bytes of it already
    read (to detect the format). The data chunk's size is not used (see the module's notes)."""
    head = magic + _read_exact(stream, 12 - len(magic), "RIFF header")
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise StreamFormatError("the input is not a WAV stream (no RIFF/WAVE header)")
    fmt: Optional[StreamFormat] = None
    while True:
        cid, size = struct.unpack("<4sI", _read_exact(stream, 8, "chunk header"))
        if cid == b"data":
            if fmt is None:
                raise StreamFormatError("the WAV stream's data chunk comes before its fmt chunk")
            return fmt
        if cid == b"fmt ":
            body = _read_exact(stream, size + (size & 1), "fmt chunk")
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the subformat GUID
                tag = struct.unpack("<H", body[24:26])[0]
            if tag == 1 and bits in (16, 32):
                fmt = StreamFormat(rate, channels, f"s{bits}")
            elif tag == 3 and bits == 32:
                fmt = StreamFormat(rate, channels, "f32")
            else:
                raise StreamFormatError(f"unsupported WAV encoding (format tag {tag}, {bits} bits): fastsep reads "
                                        f"16- or 32-bit integer and 32-bit float PCM")
        else:
            if size == 0xFFFFFFFF:
                raise StreamFormatError(f"WAV chunk {cid!r} of unknown size before the data chunk")
            _read_exact(stream, size + (size & 1), f"{cid!r} chunk")


class PcmDecoder:
    """Bytes of interleaved PCM -> mono float32 samples in [-1, 1), keeping a partial frame between calls."""

    def __init__(self, fmt: StreamFormat):
        self.fmt = fmt
        self._frame = fmt.width * fmt.channels
        self._rest = b""

    def decode(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        whole = len(data) - len(data) % self._frame
        self._rest = data[whole:]
        samples = np.frombuffer(data[:whole], dtype=self.fmt.dtype).astype(np.float32)
        if self.fmt.encoding == "s16":
            samples /= 32768.0
        elif self.fmt.encoding == "s32":
            samples /= 2147483648.0
        return samples.reshape(-1, self.fmt.channels).mean(axis=1) if self.fmt.channels > 1 else samples

    @property
    def leftover(self) -> int:
        """Bytes of an incomplete frame still held (non-zero at the end means a truncated stream)."""
        return len(self._rest)


class PcmEncoder:
    """``[C, n]`` float talkers -> interleaved PCM bytes; integer encodings clip to their range (and count it)."""

    def __init__(self, fmt: StreamFormat):
        self.fmt = fmt
        self.clipped = 0

    def encode(self, talkers: np.ndarray) -> bytes:
        inter = np.ascontiguousarray(np.asarray(talkers, np.float32).T)
        if self.fmt.encoding == "f32":
            return inter.astype("<f4").tobytes()
        full = 32768.0 if self.fmt.encoding == "s16" else 2147483648.0
        scaled = inter.astype(np.float64) * full
        over = (scaled > full - 1) | (scaled < -full)
        self.clipped += int(over.sum())
        return np.clip(np.round(scaled), -full, full - 1).astype(self.fmt.dtype).tobytes()

    def wav_header(self, frames: Optional[int] = None) -> bytes:
        """A WAV header for this format; ``frames=None`` writes the streaming placeholder sizes."""
        fmt = self.fmt
        tag = 3 if fmt.encoding == "f32" else 1
        block = fmt.channels * fmt.width
        data = 0xFFFFFFFF if frames is None else frames * block
        riff = 0xFFFFFFFF if frames is None else 36 + data
        return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " +
                struct.pack("<IHHIIHH", 16, tag, fmt.channels, fmt.rate, fmt.rate * block, block, fmt.width * 8) +
                b"data" + struct.pack("<I", data))


def sniff(stream: BinaryIO) -> Tuple[bytes, bool]:
    """``(first bytes, is_wav)``: reads the first 4 bytes of ``stream`` to tell a WAV stream from raw PCM."""
    head = b""
    while len(head) < 4:
        part = stream.read(4 - len(head))
        if not part:
            break
        head += part
    return head, head[:4] in (b"RIFF", b"RF64")
