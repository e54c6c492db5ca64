"""fastsep.data readers on small trees written here: LibriMix (CSV + folders), wsj0-mix, dynamic mixing, manifest,
and robustness to corrupt / silent / too-short / wrong-rate files."""
import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fastsep.data import (DynamicMix, LibriMix, Wsj0Mix, detect_layout, open_mixture_dataset,
                          open_speech_dataset, utterances_by_speaker)

SR = 8000


def _speech_like(n, seed, sr=SR):
    """Noise bursts with a tone: non-silent, distinct per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * math.pi * (150 + 40 * (seed % 7)) * t) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def _write(path, x, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, x)


def _make_pair(folder, name, n, seed, sr=SR, folders=("mix_clean", "s1", "s2")):
    s1, s2 = _speech_like(n, seed, sr), _speech_like(n, seed + 100, sr)
    srcs = {folders[1]: s1, folders[2]: s2}
    _write(folder / folders[0] / name, s1 + s2, sr)
    for k, v in srcs.items():
        _write(folder / k / name, v, sr)
    return s1, s2


def _librimix_tree(tmp_path, names_lengths):
    tree = tmp_path / "Libri2Mix" / "wav8k" / "min"
    rows = []
    for i, (name, n) in enumerate(names_lengths):
        _make_pair(tree / "test", name, n, i)
        rows.append({"mixture_ID": name[:-4], "mixture_path": str(tree / "test" / "mix_clean" / name),
                     "source_1_path": str(tree / "test" / "s1" / name),
                     "source_2_path": str(tree / "test" / "s2" / name), "length": n})
    meta = tree / "metadata"
    meta.mkdir(parents=True)
    with open(meta / "mixture_test_mix_clean.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"])
        w.writeheader()
        w.writerows(rows)
    return tree


def test_librimix_from_csv_whole_and_segment(tmp_path):
    names = [("61-70968-0000_8455-210777-0012.wav", 4000), ("1089-134686-0000_121-121726-0000.wav", 6000)]
    tree = _librimix_tree(tmp_path, names)
    ds = LibriMix(tmp_path, split="test", n_src=2, sample_rate=SR)
    assert len(ds) == 2 and detect_layout(tmp_path, "test") == "librimix"
    item = ds[0]
    s1, s2 = _speech_like(4000, 0), _speech_like(4000, 100)
    assert item["id"] == "61-70968-0000_8455-210777-0012"
    assert item["sources"].shape == (2, 4000) and item["mixture"].shape == (4000,)
    np.testing.assert_allclose(item["sources"].numpy(), np.stack([s1, s2]), atol=1e-6)
    np.testing.assert_allclose(item["mixture"].numpy(), s1 + s2, atol=1e-6)
    # Segments: random crop, same offset in mixture and sources; the CSV file may also be given directly.
    seg = LibriMix(tree / "metadata" / "mixture_test_mix_clean.csv", split="test", n_src=2, sample_rate=SR,
                   segment=0.25)
    it = seg[1]
    assert it["mixture"].shape == (2000,) and it["sources"].shape == (2, 2000)
    torch.testing.assert_close(it["mixture"], it["sources"].sum(0), atol=1e-5, rtol=0)


def test_librimix_csv_paths_moved_tree(tmp_path):
    tree = _librimix_tree(tmp_path / "old", [("1-2-3_4-5-6.wav", 3000)])
    moved = tmp_path / "new"
    (tmp_path / "old").rename(moved)  # the CSV still names /old/... paths
    ds = LibriMix(moved / "Libri2Mix" / "wav8k" / "min" / "metadata" / "mixture_test_mix_clean.csv",
                  split="test", n_src=2, sample_rate=SR)
    assert ds[0]["sources"].shape == (2, 3000) and not ds.skipped
    del tree


def test_librimix_wrong_n_src_is_clear(tmp_path):
    _librimix_tree(tmp_path, [("1-2-3_4-5-6.wav", 3000)])
    csv_path = tmp_path / "Libri2Mix" / "wav8k" / "min" / "metadata" / "mixture_test_mix_clean.csv"
    with pytest.raises(ValueError, match="source_3_path"):
        LibriMix(csv_path, split="test", n_src=3, sample_rate=SR)


def test_librimix_folders_without_csv_and_16k_resampled(tmp_path):
    d = tmp_path / "train-360"
    _make_pair(d, "a.wav", 3200, 1, sr=16000)
    ds = LibriMix(tmp_path, split="train", n_src=2, sample_rate=SR)
    item = ds[0]
    assert item["sources"].shape == (2, 1600)  # resampled 16 kHz -> 8 kHz
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = LibriMix(tmp_path, split="train", n_src=2, sample_rate=SR, resample=False)
        with pytest.raises(RuntimeError, match="no usable"):
            strict[0]
    assert strict.skipped["wrong_rate"] >= 1


def test_wsj0mix_folders(tmp_path):
    root = tmp_path / "wsj0-mix" / "2speakers" / "wav8k" / "min"
    for i, name in enumerate(["011a0101_1.75_20ac010b_-1.75.wav", "40po031e_0.2_22ga010f_-0.2.wav"]):
        _make_pair(root / "tt", name, 2400 + 800 * i, i, folders=("mix", "s1", "s2"))
    _write(root / "tt" / "mix" / "orphan.wav", _speech_like(1000, 9))  # no s1/s2 counterpart
    with pytest.warns(UserWarning, match="skipped"):
        ds = Wsj0Mix(tmp_path / "wsj0-mix", split="tt", n_src=2, sample_rate=SR)
    assert len(ds) == 2 and ds.skipped["missing_source"] == 1
    item = ds[1]
    np.testing.assert_allclose(item["sources"][0].numpy(), _speech_like(3200, 1), atol=1e-6)
    assert item["id"] == "40po031e_0.2_22ga010f_-0.2"
    assert detect_layout(tmp_path / "wsj0-mix", "test") == "wsj0mix"
    via_open = open_mixture_dataset(tmp_path / "wsj0-mix", 2, SR, split="test")
    assert isinstance(via_open, Wsj0Mix) and len(via_open) == 2
    with pytest.raises(ValueError, match="split"):
        Wsj0Mix(root, split="bogus")


def test_bad_files_are_skipped_and_counted(tmp_path):
    d = tmp_path / "tt"
    _make_pair(d, "good.wav", 4000, 0, folders=("mix", "s1", "s2"))
    _make_pair(d, "corrupt.wav", 4000, 1, folders=("mix", "s1", "s2"))
    (d / "s1" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage that is not a wav")
    _make_pair(d, "silent.wav", 4000, 2, folders=("mix", "s1", "s2"))
    _write(d / "s2" / "silent.wav", np.zeros(4000, np.float32))
    _make_pair(d, "short.wav", 800, 3, folders=("mix", "s1", "s2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = Wsj0Mix(tmp_path, split="tt", n_src=2, sample_rate=SR, segment=0.25)  # 2000 samples
        ids = [ds[i]["id"] for i in range(len(ds))]  # never raises: bad items are replaced
    assert set(ids) == {"good"}
    assert ds.skipped["corrupt"] == 1 and ds.skipped["silent"] == 1 and ds.skipped["too_short"] == 1


def test_skip_warning_summarises(tmp_path):
    d = tmp_path / "tt"
    _make_pair(d, "good.wav", 4000, 0, folders=("mix", "s1", "s2"))
    _make_pair(d, "bad.wav", 4000, 1, folders=("mix", "s1", "s2"))
    (d / "mix" / "bad.wav").write_bytes(b"nope")
    ds = Wsj0Mix(tmp_path, split="tt", n_src=2, sample_rate=SR)
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\) so far: \{'corrupt': 1\}"):
        ds[0 if ds.entries[0].id == "bad" else 1]


def _utterance_tree(tmp_path, n_spk=4, per=3, n=4000, sr=SR):
    groups = {}
    for s in range(n_spk):
        for u in range(per):
            p = tmp_path / "utts" / f"spk{s}" / f"u{u}.wav"
            _write(p, _speech_like(n + 400 * u, 10 * s + u, sr) * (0.1 + 0.3 * s), sr)
            groups.setdefault(f"spk{s}", []).append(str(p))
    return groups


@pytest.mark.parametrize("n_src", [2, 3])
def test_dynamic_mix_levels_and_distinct_speakers(tmp_path, n_src):
    groups = _utterance_tree(tmp_path)
    ds = DynamicMix(groups, n_src=n_src, sample_rate=SR, segment=0.3, length=40, seed=1)
    lo, hi = math.inf, -math.inf
    for i in range(len(ds)):
        item = ds[i]
        src = item["sources"].double()
        assert src.shape == (n_src, 2400) and item["mixture"].shape == (2400,)
        torch.testing.assert_close(item["mixture"].double(), src.sum(0), atol=1e-5, rtol=0)
        power = src.pow(2).mean(-1)
        rel_db = 10 * torch.log10(power.max() / power)  # loudest (the reference) over each other source
        assert float(rel_db.min()) == pytest.approx(0.0, abs=1e-6)
        lo, hi = min(lo, float(rel_db.sort().values[1])), max(hi, float(rel_db.max()))
        assert float(rel_db.max()) <= 5.0 + 1e-6
        speakers = [tok.split("-")[0] for tok in item["id"].split("_")]
        assert len(set(speakers)) == n_src
    assert lo < 1.5 and hi > 3.5  # the draws cover the range, not one fixed level


def test_dynamic_mix_fixed_is_repeatable_and_training_varies(tmp_path):
    groups = _utterance_tree(tmp_path)
    fixed = DynamicMix(groups, 2, SR, segment=0.3, length=5, seed=3, fixed=True)
    again = DynamicMix(groups, 2, SR, segment=0.3, length=5, seed=3, fixed=True)
    for i in range(5):
        torch.testing.assert_close(fixed[i]["mixture"], again[i]["mixture"])
    train = DynamicMix(groups, 2, SR, segment=0.3, length=5, seed=3)
    assert not torch.equal(train[0]["mixture"], train[0]["mixture"])


def test_dynamic_mix_whole_utterances_and_errors(tmp_path):
    groups = _utterance_tree(tmp_path, n_spk=2)
    ds = DynamicMix(groups, 2, SR, segment=None, length=3, fixed=True)
    item = ds[0]
    assert item["sources"].shape[-1] >= 4000  # whole utterances, cut to the shorter one
    with pytest.raises(ValueError, match="at least n_src=3 speakers"):
        DynamicMix(groups, 3, SR, segment=0.3)
    with pytest.raises(TypeError, match="mapping"):
        DynamicMix([["a.wav"]], 2, SR)


def test_dynamic_mix_skips_bad_utterances(tmp_path):
    groups = _utterance_tree(tmp_path, n_spk=3, per=2)
    (tmp_path / "utts" / "spk0" / "u0.wav").write_bytes(b"not audio")
    _write(tmp_path / "utts" / "spk1" / "u0.wav", np.zeros(4000, np.float32))
    _write(tmp_path / "utts" / "spk2" / "u0.wav", _speech_like(1000, 5))  # shorter than the segment
    _write(tmp_path / "utts" / "spk2" / "u1.wav", _speech_like(4000, 6, sr=16000), sr=16000)  # wrong rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = DynamicMix(groups, 2, SR, segment=0.3, length=30, seed=0, resample=False)
        for i in range(30):
            assert ds[i]["sources"].shape == (2, 2400)
    for reason in ("corrupt", "silent", "too_short", "wrong_rate"):
        assert ds.skipped[reason] == 1, (reason, ds.skipped)


def _manifest_corpus(tmp_path):
    root = tmp_path / "corpus"
    lines = []
    for split, spks in (("train", range(0, 3)), ("test", range(3, 6))):
        for s in spks:
            for u in range(2):
                rel = f"wav8k/{split}/t{s}/u{u}.wav"
                _write(root / rel, _speech_like(4000, 7 * s + u))
                lines.append({"path": rel, "speaker": f"t{s}", "split": split, "sample_rate": SR,
                              "duration": 0.5, "text": "a sentence"})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def test_manifest_layout_opens_dynamic_mixing(tmp_path):
    root = _manifest_corpus(tmp_path)
    groups = utterances_by_speaker(root, "test", SR)
    assert sorted(groups) == ["t3", "t4", "t5"] and all(len(v) == 2 for v in groups.values())
    test = open_mixture_dataset(root, 2, SR, split="test", length=4)
    assert isinstance(test, DynamicMix) and test.fixed and len(test) == 4
    torch.testing.assert_close(test[2]["sources"], test[2]["sources"])
    assert {t.split("-")[0] for t in test[0]["id"].split("_")} <= {"t3", "t4", "t5"}
    train = open_mixture_dataset(root, 2, SR, segment=0.25, split="train", length=4)
    assert not train.fixed and train[0]["mixture"].shape == (2000,)
    # evaluation on the train split of a corpus no scored model trained on: a fixed list, the same in every opening
    first = open_mixture_dataset(root, 2, SR, segment=0.25, split="train", length=4, fixed=True)
    second = open_mixture_dataset(root, 2, SR, segment=0.25, split="train", length=4, fixed=True)
    assert first.fixed and [first[i]["id"] for i in range(4)] == [second[i]["id"] for i in range(4)]
    torch.testing.assert_close(first[1]["mixture"], second[1]["mixture"])
    speech = open_speech_dataset(root, SR, segment=0.25, split="train")
    assert len(speech) == 6 and speech[0]["audio"].shape == (2000,)
    with pytest.raises(ValueError, match="splits"):
        open_mixture_dataset(root, 2, SR, split="valid")


def test_manifest_errors_are_clear(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.wav", "speaker": "x"}\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:1: missing field"):
        utterances_by_speaker(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="no known data set layout"):
        open_mixture_dataset(tmp_path / "..", 2, SR, split="nothing")


def test_librimix_dynamic_mixing_regroups_speakers(tmp_path):
    names = [("61-70968-0000_8455-210777-0012.wav", 4000), ("1089-134686-0000_121-121726-0000.wav", 4000)]
    _librimix_tree(tmp_path, names)
    ds = open_mixture_dataset(tmp_path, 2, SR, segment=0.25, split="test", dynamic_mixing=True, length=3)
    assert isinstance(ds, DynamicMix) and ds.speakers == ["1089", "121", "61", "8455"]
    assert ds[0]["sources"].shape == (2, 2000)
