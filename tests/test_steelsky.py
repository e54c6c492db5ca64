"""The Beneath a Steel Sky voice source: RNC unpacking, the sky.dnr/sky.dsk reader, who speaks which line, and the
corpus it writes -- all on tiny game files made here (no Debian package needed)."""
import json
import struct

import numpy as np
import pytest

from fastsep.data import rnc, steelsky
from helpers import assert_own_tone


def _crc(data):  # bit by bit, independent of the table-driven one under test
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class _Bits:
    """LSB-first writer over little-endian 16-bit words; raw bytes go right after the word being filled."""

    def __init__(self):
        self.out, self.word, self.used = bytearray(), 0, 16

    def put(self, value, n):
        for k in range(n):
            if self.used == 16:
                self.word, self.used = len(self.out), 0
                self.out += b"\0\0"
            if value >> k & 1:
                self.out[self.word + self.used // 8] |= 1 << self.used % 8
            self.used += 1

    def code(self, symbol):  # 16 symbols of 4-bit codes: symbol i has canonical code i, sent MSB first
        self.put(int(format(symbol, "04b")[::-1], 2), 4)

    def value(self, v):
        s = v if v < 2 else v.bit_length()
        self.code(s)
        if s >= 2:
            self.put(v - (1 << (s - 1)), s - 1)


def _pack(steps):
    """An RNC method-1 stream of one block: ``steps`` = [(literal bytes, (offset, length) or None)], None last."""
    bits = _Bits()
    bits.put(0, 2)
    for _ in range(3):  # raw, offset and length tables: 16 symbols, all 4-bit codes
        bits.put(16, 5)
        for _ in range(16):
            bits.put(4, 4)
    bits.put(len(steps), 16)
    out = bytearray()
    for literal, match in steps:
        bits.value(len(literal))
        bits.out += literal
        out += literal
        if match:
            offset, length = match
            bits.value(offset - 1)
            bits.value(length - 2)
            for _ in range(length):
                out.append(out[-offset])
    packed = bytes(bits.out)
    header = b"RNC\x01" + struct.pack(">IIHH", len(out), len(packed), _crc(out), _crc(packed)) + b"\0\x01"
    return header + packed, bytes(out)


def test_crc_and_rnc_round_trip():
    assert rnc.crc16(b"123456789") == 0xBB3D  # the CRC-16/ARC check value
    # odd literal runs (the bit stream then resumes at odd byte offsets), an overlapping match, a long literal run
    packed, plain = _pack([(b"abc", (3, 10)), (b"Z", (1, 5)), (bytes(range(200)) * 3, (600, 40)), (b"end!", None)])
    assert plain[:13] == b"abcabcabcabca" and plain.endswith(b"end!")
    assert rnc.rnc_unpack(packed) == plain
    broken = bytearray(packed)
    broken[40] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        rnc.rnc_unpack(bytes(broken))
    with pytest.raises(ValueError, match="truncated"):
        rnc.rnc_unpack(packed[:-30])
    with pytest.raises(ValueError, match="signature"):
        rnc.rnc_unpack(b"RNC\x02" + packed[4:])


def _header(n_data, packed):
    # DataFileHeader: flag (bit 7 = packed), ..., s_tot_size (word 6) = header + data
    flag = (0x81 if packed else 0x01) | ((HEADER + n_data) >> 16) << 8
    return struct.pack("<11H", flag, 0, 0, 0, 0, 0, (HEADER + n_data) & 0xFFFF, 0, 0, 0, 0)


HEADER = steelsky.HEADER_SIZE


def _speech_file(samples, packed=True):
    """A speech file as sky.dsk stores it: header, then the 8-bit unsigned samples (RNC-packed or not)."""
    pcm = bytes(np.clip(np.round(samples * 127 + 128), 0, 255).astype(np.uint8))
    if not packed:
        return _header(len(pcm), False) + pcm, 1 << 23  # dnr flags: stored uncompressed
    return _header(len(pcm), True) + _pack([(pcm, None)])[0], 0


def _write_disk(folder, files):
    """sky.dnr + sky.dsk holding ``files`` ({number: (bytes, dnr flag bits)})."""
    table, data = struct.pack("<I", len(files)), b""
    for number, (blob, flags) in files.items():
        table += struct.pack("<H", number) + len(data).to_bytes(3, "little") + (len(blob) | flags).to_bytes(3, "little")
        data += blob
    (folder / "sky.dnr").write_bytes(table)
    (folder / "sky.dsk").write_bytes(data)


def _tone(f0, seconds=1.5, rate=11025):
    t = np.arange(int(seconds * rate)) / rate
    return 0.6 * np.sin(2 * np.pi * f0 * t)


def test_disk_reads_packed_and_plain_speech_and_rejects_bad_files(tmp_path):
    tone = _tone(440.0, 0.2)
    packed, flags = _speech_file(tone)
    _write_disk(tmp_path, {50000: (packed, flags), 50001: _speech_file(tone, packed=False),
                           50002: (packed[:-40], flags)})  # a packed line cut short
    disk = steelsky.SkyDisk(tmp_path / "sky.dnr", tmp_path / "sky.dsk")
    assert disk.speech_numbers() == [0, 1, 2]
    for line in (0, 1):
        x = disk.speech(line)
        assert len(x) == len(tone) and np.max(np.abs(x - tone * 127 / 128)) < 1.5 / 128
    with pytest.raises(ValueError, match="file 50002: RNC data truncated"):
        disk.speech(2)
    # a directory claiming more entries than it holds, and an entry past the end of the data
    dnr = (tmp_path / "sky.dnr").read_bytes()
    (tmp_path / "short.dnr").write_bytes(struct.pack("<I", 9) + dnr[4:])
    with pytest.raises(ValueError, match="truncated"):
        steelsky.SkyDisk(tmp_path / "short.dnr", tmp_path / "sky.dsk")
    (tmp_path / "cut.dsk").write_bytes((tmp_path / "sky.dsk").read_bytes()[:100])
    with pytest.raises(ValueError, match="runs past the end"):
        steelsky.SkyDisk(tmp_path / "sky.dnr", tmp_path / "cut.dsk")


def test_text_numbers_and_speech_files():
    assert steelsky.speech_file(0x2005) == 1105 and steelsky.text_number(1105) == 0x2005
    assert steelsky.speech_file(0x0012) == 18 and steelsky.text_number(18) == 0x0012
    assert steelsky.text_number(5231) == 0x7001


# compact ids of the fake game: Foster is 3 (the player), as in the real one
BOB, JOEY, ANITA, FOSTER = 0x10, 0x11, 0x12, 3


def _op_speak(who, text, function=35):
    # who: ("n", id) a constant, ("v", variable index) a script variable
    push = [2, who[1]] if who[0] == "n" else [0, who[1] * 4]
    return push + [2, text, 2, 0, 11, 3, function * 4]


def _module(scripts):
    """A script module: the offset table (word 0 = its length), then each script's words, ending in script_exit."""
    table_len = max(scripts) + 1
    words, offsets = [], {}
    for number, code in scripts.items():
        offsets[number] = table_len + len(words)
        words += code + [19]
    table = [table_len] + [offsets.get(n, 0) for n in range(1, table_len)]
    return struct.pack(f"<{len(table) + len(words)}H", *table, *words)


def _game_scripts():
    """Texts 1-8 (section 0, so speech lines 1-8) spoken in the ways the game speaks them."""
    return {
        # an action script (bob's): the player runs it; cur_id is Foster, id_talking the character talked to
        1: _op_speak(("v", 12), 1) + _op_speak(("v", 120), 2, function=37),
        # joey's logic script, and a sub-script it starts: cur_id is Joey there
        2: _op_speak(("v", 12), 3) + [2, 3, 11, 1, 7 * 4],
        3: _op_speak(("v", 12), 4),
        # a named speaker, a dialogue option (said by the player), a line two speakers say
        4: _op_speak(("n", ANITA), 5) + [2, 6, 2, 0, 11, 2, 70 * 4] + _op_speak(("n", ANITA), 8),
        5: _op_speak(("v", 12), 7) + _op_speak(("n", JOEY), 8),  # no compact runs script 5: its runner is unknown
    }


def _cpt(compacts):
    """A sky.cpt: one data list holding ``compacts`` ({id: (name, action script, base script)})."""
    count = max(compacts) + 1
    src, names = [], b""
    for cid in range(count):
        if cid not in compacts:
            src.append(0)
            continue
        name, action, base = compacts[cid]
        words = [0] * 40
        words[17], words[27] = action, base
        src += [len(words), 1] + words
        names += name.encode() + b"\0"
    return (struct.pack("<HHH", 0, 1, count) + struct.pack("<I", 0) + struct.pack("<I", len(src))
            + struct.pack(f"<{len(src)}H", *src) + struct.pack("<I", len(names)) + names)


def _game(folder, tones):
    """A fake game in ``folder``: speech lines 1-9 as tones (``tones``: line -> Hz), script module 0, sky.cpt."""
    files = {steelsky.SPEECH_BASE + line: _speech_file(_tone(f0), packed=line % 2 == 1) for line, f0 in tones.items()}
    files[steelsky.MODULE_BASE] = (_module(_game_scripts()), 1 << 23)
    _write_disk(folder, files)
    (folder / "sky.cpt").write_bytes(_cpt({FOSTER: ("foster", 0, 0), BOB: ("bob", 1, 0), JOEY: ("joey", 0, 2),
                                           ANITA: ("anita", 0, 0)}))


def test_who_speaks_which_line(tmp_path):
    _game(tmp_path, {line: 200.0 for line in range(1, 10)})
    disk, talkers, left_out = steelsky.read_game(tmp_path)
    assert talkers == {"foster": [1, 6], "conv_0001": [2], "joey": [3, 4], "anita": [5]}
    assert left_out == {"speaker unknown": 1, "several speakers": 1, "no script speaks it": 1}  # lines 7, 8, 9
    names, scripts = steelsky.read_compacts(tmp_path / "sky.cpt")
    assert names == {3: "foster", 16: "bob", 17: "joey", 18: "anita"}
    assert scripts == {3: (0, 0), 16: (1, 0), 17: (0, 2), 18: (0, 0)}
    with pytest.raises(RuntimeError, match="apt-get install -y beneath-a-steel-sky"):
        steelsky.read_game(tmp_path / "absent")
    (tmp_path / "sky.cpt").write_bytes(b"\x07\x00\x01\x00")
    with pytest.raises(ValueError, match="sky.cpt"):
        steelsky.read_game(tmp_path)


def test_build_writes_one_talker_per_speaker(tmp_path):
    tones = {1: 300.0, 6: 300.0, 3: 900.0, 4: 900.0, 2: 500.0, 5: 700.0, 7: 1200.0, 8: 1200.0}
    (tmp_path / "game").mkdir()
    _game(tmp_path / "game", tones)
    manifest = steelsky.build_steelsky(tmp_path / "out", data_dir=tmp_path / "game", utterance_s=2.5,
                                       min_seconds=2.0, valid_every=2)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    info = json.loads((manifest.parent / "corpus.json").read_text())
    # Foster and Joey have two 1.5 s lines each; the other talkers one line, under min_seconds: left out, said so
    assert set(info["talkers"]) == {"bass_foster", "bass_joey"}
    assert set(info["left_out"]) == {"bass_conv_0001", "bass_anita"}
    assert info["lines_not_attributed"] == {"speaker unknown": 1, "several speakers": 1}
    assert {r["source"] for r in recs} == {"steelsky"} and {r["split"] for r in recs} == {"train"}
    for speaker, f0 in (("bass_foster", 300.0), ("bass_joey", 900.0)):
        mine = [r for r in recs if r["speaker"] == speaker]
        assert len(mine) == 1 and mine[0]["duration"] > 3.0  # both lines joined into one utterance
        assert_own_tone(manifest.parent / mine[0]["path"], f0)  # only its own lines
