"""The Drascula voice source: the .ALS line format, who speaks which line, and the corpus it writes."""
import json

import numpy as np
import pytest

from fastsep.data import drascula
from fastsep.data.voices import missing_packages
from helpers import assert_own_tone


def _als(path, f0, seconds, rate=drascula.RATE):
    """A line file: a tone standing in for a voice, with silence around it, as unsigned 8-bit between the
    32-byte header and trailer (filled with 0xFF so that reading them as samples would show)."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.concatenate([np.zeros(rate // 2), 0.5 * np.sin(2 * np.pi * f0 * t), np.zeros(rate // 2)])
    pcm = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8)
    path.write_bytes(b"\xff" * 32 + pcm.tobytes() + b"\xff" * 32)


def _game(root):
    """Two dubbings; tone frequency marks the character."""
    for lang, shift in (("en", 0.0), ("es", 40.0)):
        d = root / lang
        d.mkdir(parents=True)
        for k in (1, 2, 3):
            _als(d / f"{k}.ALS", 300 + shift, 1.5)           # the hero
            _als(d / f"VB{k}.ALS", 700 + shift, 1.5)         # von Braun
        _als(d / "BJ1.ALS", 1100 + shift, 1.0)               # B.J.: too little speech, left out
        _als(d / "D1.ALS", 1500, 3.0)                        # Drascula's and others' prefix: owner unknown
        _als(d / "S1.ALS", 1700, 3.0)                        # a sound effect
        (d / "1.ALG").write_bytes(b"picture")
    return root


def test_line_format_skips_header_and_trailer(tmp_path):
    _als(tmp_path / "1.ALS", 440.0, 0.1)
    x = drascula.read_line(tmp_path / "1.ALS")
    assert x.dtype == np.float32 and len(x) == int(0.1 * drascula.RATE) + 2 * (drascula.RATE // 2)
    assert x.max() < 0.51 and x.min() >= -0.51  # no 0xFF header byte read as a sample (it would be 0.99)
    (tmp_path / "2.ALS").write_bytes(b"\x80" * 64)
    with pytest.raises(ValueError, match="too short"):
        drascula.read_line(tmp_path / "2.ALS")


def test_line_owners_by_prefix(tmp_path):
    lines = drascula.line_speakers(_game(tmp_path) / "en")
    assert {c: [p.name for p in v] for c, v in lines.items()} == {
        "hacker": ["1.ALS", "2.ALS", "3.ALS"], "vonbraun": ["VB1.ALS", "VB2.ALS", "VB3.ALS"], "bj": ["BJ1.ALS"]}


def test_build_writes_one_talker_per_character_and_dubbing(tmp_path):
    manifest = drascula.build_drascula(tmp_path / "out", data_dir=_game(tmp_path / "game"), utterance_s=2.0,
                                       min_seconds=3.0, valid_every=2)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    info = json.loads((manifest.parent / "corpus.json").read_text())
    assert set(info["talkers"]) == {"dras_en_hacker", "dras_en_vonbraun", "dras_es_hacker", "dras_es_vonbraun"}
    assert set(info["left_out"]) == {"dras_en_bj", "dras_es_bj"}
    assert {r["source"] for r in recs} == {"drascula"}
    assert {r["split"] for r in recs if r["speaker"] == "dras_en_hacker"} == {"train", "valid"}
    for speaker, f0 in (("dras_en_hacker", 300), ("dras_es_hacker", 340), ("dras_en_vonbraun", 700),
                        ("dras_es_vonbraun", 740)):
        mine = [r for r in recs if r["speaker"] == speaker]
        assert mine
        for rec in mine:
            assert_own_tone(manifest.parent / rec["path"], f0)  # only its own lines


def test_missing_game_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install -y drascula drascula-spanish"):
        drascula.build_drascula(tmp_path / "out", data_dir=tmp_path / "absent")
    assert set(missing_packages("drascula")) <= {"drascula", "drascula-spanish"}
