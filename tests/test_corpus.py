"""The synthetic corpus builder: a tiny build with espeak-ng and flite, its manifest, splits and resumability."""
import json
import shutil

import numpy as np
import pytest
from scipy.io import wavfile

from fastsep.data import corpus, open_mixture_dataset, utterances_by_speaker

needs_tools = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                                 reason="espeak-ng and flite are not installed (apt-get install -y espeak-ng flite)")


def test_sentences_and_talkers_are_distinct():
    sentences = corpus.load_sentences()
    assert len(sentences) >= 200 and len(set(sentences)) == len(sentences)
    talkers = corpus.make_talkers(150, seed=0)
    keys = {json.dumps({k: v for k, v in t.items() if k != "name"}, sort_keys=True) for t in talkers}
    assert len(keys) == 150 and len({t["name"] for t in talkers}) == 150
    assert {t["engine"] for t in talkers} == {"espeak", "flite"}
    splits = corpus.assign_splits(talkers)
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "valid", "test")}
    assert counts == {"train": 120, "valid": 15, "test": 15}


def test_trim_silence_cuts_leading_and_trailing_quiet():
    sr = 8000
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)
    x = np.concatenate([np.zeros(sr), tone, 1e-5 * np.ones(sr)])
    y = corpus.trim_silence(x, sr, pad_s=0.0)
    assert abs(len(y) - sr) <= sr // 100  # within one 10 ms frame of the tone


def test_missing_tool_is_named(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "flite" else "/usr/bin/" + name)
    with pytest.raises(RuntimeError, match="apt-get install -y flite"):
        corpus.check_tools()


@needs_tools
def test_tiny_build_manifest_and_resume(tmp_path):
    out = tmp_path / "corpus"
    manifest = corpus.build_corpus(out, sample_rates=(8000, 16000), n_talkers=6, hours=6 * 4 / 3600, jobs=2)
    recs = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {r["sample_rate"] for r in recs} == {8000, 16000}
    speakers = {s: {r["speaker"] for r in recs if r["split"] == s} for s in ("train", "valid", "test")}
    assert len(set.union(*speakers.values())) == 6
    assert not (speakers["train"] & speakers["test"]) and not (speakers["train"] & speakers["valid"])
    for r in recs[:6]:
        sr, data = wavfile.read(out / r["path"])
        assert sr == r["sample_rate"] and data.dtype == np.int16
        assert abs(len(data) / sr - r["duration"]) < 1e-3 and np.abs(data).max() > 1000  # real, audible speech
        assert r["text"] and r["speaker"] in r["path"]
    # The same utterance at both rates has the same duration.
    by_key = {}
    for r in recs:
        by_key.setdefault(r["path"].split("/", 1)[1], []).append(r["duration"])
    assert all(abs(a - b) < 1e-3 for a, b in by_key.values())
    # Resume: existing files are kept byte for byte and the manifest is the same.
    first = sorted(out.rglob("*.wav"))[0]
    stamp = first.stat().st_mtime_ns
    corpus.build_corpus(out, sample_rates=(8000, 16000), n_talkers=6, hours=6 * 4 / 3600, jobs=2)
    assert first.stat().st_mtime_ns == stamp
    assert [json.loads(x) for x in manifest.read_text().splitlines()] == recs
    # The corpus opens as a data set.
    groups = utterances_by_speaker(out, "train", 8000)
    assert set(groups) == speakers["train"]
    ds = open_mixture_dataset(out, 2, 8000, segment=0.5, split="train", length=2)
    assert ds[0]["sources"].shape == (2, 4000)
