"""The KLettres voice source: one talker per language folder, the per-talker cap, undecodable files, the corpus."""
import json

import numpy as np
import pytest

from fastsep.data import klettres
from fastsep.data.voices import missing_packages
from helpers import assert_own_tone

soundfile = pytest.importorskip("soundfile")


def _sound(path, f0, seconds, rate=44100):
    """A letter: a tone standing in for a voice, with silence around it, as Ogg Vorbis like the package's files."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.concatenate([np.zeros(rate // 4), 0.5 * np.sin(2 * np.pi * f0 * t), np.zeros(rate // 4)])
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x.astype(np.float32), rate, format="OGG", subtype="VORBIS")


def _package(root):
    """Three languages (tone frequency marks the talker); one with too little speech; a broken file; no sounds in
    a folder that only holds the index."""
    for k in range(6):
        _sound(root / "en" / "alpha" / f"{chr(65 + k)}.ogg", 300, 0.8)
        _sound(root / "fr" / "syllab" / f"s{k}.ogg", 700, 0.8)
    for k in range(40):  # a large folder: capped
        _sound(root / "ml" / "syllab" / f"m{k}.ogg", 1100, 0.8)
    _sound(root / "nb" / "alpha" / "A.ogg", 1500, 0.5)
    (root / "fr" / "alpha").mkdir(parents=True)
    (root / "fr" / "alpha" / "broken.ogg").write_bytes(b"not an ogg file")
    (root / "en" / "sounds.xml").write_text("<klettres/>")
    (root / "empty").mkdir()
    return root


def test_language_folders_are_talkers(tmp_path):
    files = klettres.language_files(_package(tmp_path))
    assert set(files) == {"en", "fr", "ml", "nb"}  # "empty" holds no sounds
    assert len(files["en"]) == 6 and len(files["ml"]) == 40
    assert any(p.name == "broken.ogg" for p in files["fr"])


def test_build_caps_each_talker_and_skips_what_it_cannot_read(tmp_path):
    manifest = klettres.build_klettres(tmp_path / "out", data_dir=_package(tmp_path / "pkg"), utterance_s=2.0,
                                       min_seconds=3.0, max_seconds=6.0, valid_every=2)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    info = json.loads((manifest.parent / "corpus.json").read_text())
    assert set(info["talkers"]) == {"kl_en", "kl_fr", "kl_ml"}
    assert set(info["left_out"]) == {"kl_nb"}
    assert info["talkers"]["kl_fr"]["undecodable"] == 1
    # the cap: ~0.9 s per trimmed file, so 40 files would be ~36 s; the talker stops at the first file past 6 s
    assert 6.0 <= info["talkers"]["kl_ml"]["seconds"] < 8.0
    assert {r["source"] for r in recs} == {"klettres"}
    assert {r["split"] for r in recs if r["speaker"] == "kl_en"} == {"train", "valid"}
    for speaker, f0 in (("kl_en", 300), ("kl_fr", 700), ("kl_ml", 1100)):
        mine = [r for r in recs if r["speaker"] == speaker]
        assert mine
        for rec in mine:
            assert_own_tone(manifest.parent / rec["path"], f0)  # only its own sounds


def test_missing_package_and_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install -y klettres-data"):
        klettres.build_klettres(tmp_path / "out", data_dir=tmp_path / "absent")
    with pytest.raises(ValueError, match="max_seconds"):
        klettres.build_klettres(tmp_path / "out", data_dir=_package(tmp_path / "pkg"), min_seconds=10.0,
                                max_seconds=5.0)
    assert set(missing_packages("klettres")) <= {"klettres-data"}


def test_cli_reports_a_package_too_small_to_use(tmp_path, capsys):
    from fastsep import cli

    # the toy package holds a few seconds per language, under the CLI's 20 s per talker
    rc = cli.main(["corpus", "voices", "klettres", str(tmp_path / "out"), "--game-dir",
                   str(_package(tmp_path / "pkg")), "--quiet"])
    assert rc == 1
    assert "fewer than two languages with 20 s of speech" in capsys.readouterr().err
