"""The adventure-game voice source: archive parsing, who speaks which line, and the corpus it writes."""
import json
import struct

import numpy as np
import pytest

from fastsep.data import adventure
from helpers import assert_own_tone


def _archive(path, files):
    """A queen.1c-layout archive holding ``files`` ({name: bytes})."""
    table, blobs = b"", b""
    start = 15 + 21 * len(files)
    for name, blob in files.items():
        table += name.encode().ljust(12, b"\0") + b"\x01" + struct.pack(">II", start + len(blobs), len(blob))
        blobs += blob
    path.write_bytes(b"QTBL" + b"CEM10\0" + b"\0\0" + b"\x01" + struct.pack(">H", len(files)) + table + blobs)
    return path


def _dog(talk_key):
    # 20-byte file header, then levelMax, uniqueKey, talkKey (int16 big-endian)
    return b"AmBk" + b"\0" * 16 + struct.pack(">hhh", 1, 0, talk_key) + b"\0" * 40


def _lines():
    # tone frequency stands in for a voice: the decoder below turns a line's bytes into that tone
    return {"BOB1.DOG": _dog(6), "BOB2.DOG": _dog(7), "FAYE2.DOG": _dog(18), "WITCH1.DOG": _dog(59),
            "060001P1.SB": b"300", "060002P2.SB": b"300", "07XXXXP1.SB": b"300",   # Bob, two dialogue files
            "060001J1.SB": b"120", "18SSSSJ1.SB": b"120", "JOE00001.SB": b"120",    # Joe, in any dialogue
            "180003P1.SB": b"900", "180004P1.SB": b"900",                           # Faye
            "590001P1.SB": b"500",                                                  # the witch: one line only
            "C12A_001.SB": b"700", "99AAAAP1.SB": b"700", "PIC.PCX": b"x"}          # cut-scene, unknown key


def test_archive_entries_and_line_owners(tmp_path):
    files = _lines()
    entries = adventure.read_archive(_archive(tmp_path / "queen.1c", files))
    assert entries == files
    assert adventure.line_speakers(entries) == {
        "bob": ["060001P1.SB", "060002P2.SB", "07XXXXP1.SB"],
        "joe": ["060001J1.SB", "18SSSSJ1.SB", "JOE00001.SB"],
        "faye": ["180003P1.SB", "180004P1.SB"], "witch": ["590001P1.SB"]}


def test_archive_errors_are_clear(tmp_path):
    (tmp_path / "bad").write_bytes(b"RIFF" + b"\0" * 40)
    with pytest.raises(ValueError, match="no QTBL header"):
        adventure.read_archive(tmp_path / "bad")
    good = _archive(tmp_path / "queen.1c", {"A.SB": b"abc"}).read_bytes()
    (tmp_path / "cut").write_bytes(good[:-2])
    with pytest.raises(ValueError, match="past the end"):
        adventure.read_archive(tmp_path / "cut")
    with pytest.raises(RuntimeError, match="apt-get install -y flight-of-the-amazon-queen"):
        adventure.build_adventure(tmp_path / "out", archive=tmp_path / "absent.1c")


def test_build_writes_one_talker_per_character(tmp_path, monkeypatch):
    def tone(blob, rate):  # 2 s of the line's tone, with silence around it that the builder trims
        f0 = float(blob.decode())
        x = 0.3 * np.sin(2 * np.pi * f0 * np.arange(2 * rate) / rate)
        return np.concatenate([np.zeros(rate // 2), x, np.zeros(rate // 2)])

    monkeypatch.setattr(adventure, "_decode_mp3", tone)
    manifest = adventure.build_adventure(tmp_path / "out", archive=_archive(tmp_path / "queen.1c", _lines()),
                                         utterance_s=3.0, min_seconds=3.0, valid_every=2)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    info = json.loads((manifest.parent / "corpus.json").read_text())
    # the witch has 2 s of speech (2.1 s with the trimmer's 50 ms margins), under min_seconds: left out, said so
    assert set(info["talkers"]) == {"fotaq_bob", "fotaq_joe", "fotaq_faye"}
    assert info["left_out"] == {"fotaq_witch": 2.1}
    assert {r["source"] for r in recs} == {"adventure"}
    assert {r["split"] for r in recs if r["speaker"] == "fotaq_bob"} == {"train", "valid"}
    for speaker, f0 in (("fotaq_bob", 300.0), ("fotaq_joe", 120.0), ("fotaq_faye", 900.0)):
        for rec in (r for r in recs if r["speaker"] == speaker):
            assert_own_tone(manifest.parent / rec["path"], f0)  # only its own lines
