"""Rob Northen (RNC) method-1 decompression, as Beneath a Steel Sky packs the files of its ``sky.dsk``.

Written for :mod:`fastsep.data.steelsky` from the description in ScummVM's ``engines/sky/rnc_deco.cpp``
(``RncDecoder::unpackM1``); these facts come from there:

* an 18-byte header: ``RNC\\x01``, unpacked length and packed length (uint32 big-endian), CRC-16 of the unpacked
  data and of the packed data (uint16 big-endian), a "leeway" byte and the number of blocks (bytes 16 and 17);
* the CRC is the reflected CRC-16 with polynomial 0xA001 and initial value 0 (CRC-16/ARC);
* the packed data is a bit stream of little-endian 16-bit words read least significant bit first; its first two
  bits are flags that method 1 ignores;
* each block starts with three Huffman tables (literal-run lengths, match offsets, match lengths), each coded as a
  5-bit symbol count then a 4-bit code length per symbol (canonical codes, shortest first, lower symbols first; the
  codes are stored bit-reversed since the stream is read LSB first), then a 16-bit count of steps;
* a decoded symbol ``s`` stands for ``s`` when ``s < 2``, else for ``2**(s-1)`` plus ``s-1`` further bits;
* a step is a literal run (that many bytes copied verbatim from the packed *bytes* right after the last 16-bit word
  the bit reader has started on; the bit stream resumes after them) then, except in a block's last step, a match
  (offset = value + 1, length = value + 2) copied from the output already written (it may overlap itself).

The bit reader below fetches words when it needs bits and gives back whole words it fetched ahead before a literal
run, which puts the run exactly where ScummVM's reader (which prefetches one word and then corrects for it) takes it
from. The last word of the bit stream may straddle the end of the packed data, so the reader may look a few bytes
past it (as ScummVM does); both checksums are verified by default.
"""
from __future__ import annotations

import struct
from typing import List, Tuple

__all__ = ["RNC_SIGNATURE", "HEADER_LEN", "crc16", "is_rnc", "rnc_unpack"]

RNC_SIGNATURE = b"RNC\x01"
HEADER_LEN = 18
_SLACK = 6  # bytes the bit reader may peek past the packed data (the last word may straddle its end)


def _crc_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC (reflected polynomial 0xA001, initial value 0), the checksum RNC headers carry."""
    crc, table = 0, _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def is_rnc(data: bytes) -> bool:
    return data[:4] == RNC_SIGNATURE


class _Bits:
    """LSB-first reader over little-endian 16-bit words, with raw byte runs embedded between words."""

    __slots__ = ("data", "pos", "buf", "nbits", "end")

    def __init__(self, data: bytes, start: int, end: int):
        self.data, self.pos, self.end = data, start, end
        self.buf, self.nbits = 0, 0

    def _fill(self, need: int) -> None:
        while self.nbits < need:
            # the reader may look a word or two past the packed length (ScummVM's reads what follows in memory):
            # the caller pads the data with zero bytes for that, and the checksums judge the result
            if self.pos + 2 > self.end + _SLACK:
                raise ValueError("RNC data truncated (bit stream runs past the packed length)")
            self.buf |= (self.data[self.pos] | self.data[self.pos + 1] << 8) << self.nbits
            self.pos += 2
            self.nbits += 16

    def read(self, n: int) -> int:
        if self.nbits < n:
            self._fill(n)
        value = self.buf & ((1 << n) - 1)
        self.buf >>= n
        self.nbits -= n
        return value

    def raw(self, n: int) -> bytes:
        # the run starts right after the last word a bit was taken from: give back words fetched ahead, unread
        while self.nbits >= 16:
            self.pos -= 2
            self.nbits -= 16
        self.buf &= (1 << self.nbits) - 1
        if self.pos + n > self.end:
            raise ValueError("RNC data truncated (a literal run runs past the packed length)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


def _read_table(bits: _Bits) -> Tuple[List[Tuple[int, int]], int]:
    """A Huffman table as a lookup list indexed by the next ``width`` stream bits: (symbol, code length)."""
    count = bits.read(5)
    if not count:
        return [], 0
    lengths = [bits.read(4) for _ in range(count)]
    width = max(lengths)
    if width == 0:
        return [], 0
    table: List[Tuple[int, int]] = [(-1, 0)] * (1 << width)
    code = 0  # canonical code, left-aligned in 16 bits
    for length in range(1, 17):
        for symbol, l in enumerate(lengths):
            if l != length:
                continue
            top = code >> (16 - length)
            if top >= 1 << length:
                raise ValueError("RNC data corrupt (over-full Huffman table)")
            reversed_code = int(format(top, f"0{length}b")[::-1], 2)
            table[reversed_code::1 << length] = [(symbol, length)] * (1 << (width - length))
            code += 1 << (16 - length)
    return table, width


def _read_value(bits: _Bits, table: List[Tuple[int, int]], width: int) -> int:
    if not width:
        raise ValueError("RNC data corrupt (a value coded with an empty Huffman table)")
    if bits.nbits < width:
        bits._fill(width)
    symbol, length = table[bits.buf & ((1 << width) - 1)]
    if symbol < 0 or length > bits.nbits:
        raise ValueError("RNC data corrupt (no Huffman code matches)")
    bits.buf >>= length
    bits.nbits -= length
    if symbol < 2:
        return symbol
    return (1 << (symbol - 1)) | bits.read(symbol - 1)


def rnc_unpack(data: bytes, check_crc: bool = True) -> bytes:
    """The unpacked bytes of an RNC method-1 stream ``data`` (header included); ``ValueError`` when it is not one,
    is truncated or fails its checksums."""
    if len(data) < HEADER_LEN or not is_rnc(data):
        raise ValueError("not RNC method-1 data (no 'RNC\\x01' signature)")
    unpacked_len, packed_len, crc_unpacked, crc_packed = struct.unpack(">IIHH", data[4:16])
    blocks = data[17]
    end = HEADER_LEN + packed_len
    if end > len(data):
        raise ValueError(f"RNC data truncated: {len(data) - HEADER_LEN} of {packed_len} packed bytes")
    if check_crc and crc16(data[HEADER_LEN:end]) != crc_packed:
        raise ValueError("RNC data corrupt (packed checksum mismatch)")
    bits = _Bits(bytes(data[:end]) + bytes(_SLACK), HEADER_LEN, end)
    out = bytearray()
    bits.read(2)
    for _ in range(blocks):
        raw_table, raw_w = _read_table(bits)
        pos_table, pos_w = _read_table(bits)
        len_table, len_w = _read_table(bits)
        steps = bits.read(16)
        for step in range(steps, 0, -1):
            run = _read_value(bits, raw_table, raw_w)
            if run:
                out += bits.raw(run)
            if step > 1:
                offset = _read_value(bits, pos_table, pos_w) + 1
                length = _read_value(bits, len_table, len_w) + 2
                start = len(out) - offset
                if start < 0:
                    raise ValueError("RNC data corrupt (a match reaches before the start of the output)")
                if offset >= length:
                    out += out[start:start + length]
                else:  # overlapping copy: the last `offset` bytes repeat
                    pattern = bytes(out[start:])
                    out += (pattern * (length // offset + 1))[:length]
            if len(out) > unpacked_len:
                raise ValueError("RNC data corrupt (more output than the header states)")
    if len(out) != unpacked_len:
        raise ValueError(f"RNC data corrupt: unpacked {len(out)} bytes, header states {unpacked_len}")
    if check_crc and crc16(out) != crc_unpacked:
        raise ValueError("RNC data corrupt (unpacked checksum mismatch)")
    return bytes(out)
