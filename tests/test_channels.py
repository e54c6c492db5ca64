"""Recording channels of a corpus's talkers (fastsep.data.channels) and pairing within one channel."""
import json
import re

import numpy as np
import pytest
from scipy.io import wavfile

from fastsep import cli
from fastsep.data import open_mixture_dataset
from fastsep.data.channels import talker_channels

SR = 8000


def _corpus(root, speakers, info=None, seconds=1.5, seed=0):
    """A tiny fastsep corpus (two noise utterances per talker) with ``info`` as its corpus.json."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for spk in speakers:
        for u in range(2):
            rel = f"wav/{spk}_{u}.wav"
            wavfile.write(root / rel, SR, (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32))
            lines.append(json.dumps({"path": rel, "speaker": spk, "split": "train", "sample_rate": SR,
                                     "duration": seconds}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    if info is not None:
        (root / "corpus.json").write_text(json.dumps(info))
    return root


def test_channels_from_what_each_corpus_says(tmp_path):
    synth = _corpus(tmp_path / "s", [], {"talkers": [{"name": "e1", "engine": "espeak"},
                                                     {"name": "f1", "engine": "flite"}]})
    assert talker_channels(synth) == {"e1": "engine:espeak", "f1": "engine:flite"}
    rec = _corpus(tmp_path / "r", [], {"talkers": {"r1": {"packages": ["p-es", "p-en"]}, "r2": {"package": "q"},
                                                   "r3": {"channel": "studio 4", "package": "q"}}})
    assert talker_channels(rec) == {"r1": "package:p-en+p-es", "r2": "package:q", "r3": "studio 4"}
    dub = _corpus(tmp_path / "d", [], {"dubbings": ["en", "es"], "talkers": {"x_en_a": {}, "x_es_a": {}, "x_b": {}}})
    assert talker_channels(dub) == {"x_en_a": "dubbing:en", "x_es_a": "dubbing:es", "x_b": ""}
    apart = _corpus(tmp_path / "k", [], {"source": "klettres", "talkers": {"kl_fr": {}, "kl_de": {}}})
    assert talker_channels(apart) == {"kl_fr": "talker:kl_fr", "kl_de": "talker:kl_de"}
    cast = _corpus(tmp_path / "c", [], {"source": "adventure", "talkers": {"a": {"lines": 3}, "b": {}}})
    assert talker_channels(cast) == {"a": "", "b": ""}
    assert talker_channels(_corpus(tmp_path / "none", [])) == {}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "corpus.json").write_text(json.dumps({"talkers": 3}))
    with pytest.raises(ValueError, match="neither a list nor a mapping"):
        talker_channels(tmp_path / "bad")


def _talkers(ident):
    return re.findall(r"(?:^|_)([a-z]+\d)-", ident)


def test_pairs_stay_within_one_channel(tmp_path):
    # corpus a: two engines of two talkers each; corpus b: one cast of two talkers
    a = _corpus(tmp_path / "a", ["ea1", "ea2", "fa1", "fa2"],
                {"talkers": [{"name": n, "engine": n[0]} for n in ("ea1", "ea2", "fa1", "fa2")]}, seed=1)
    b = _corpus(tmp_path / "b", ["b1", "b2"], {"talkers": {"b1": {}, "b2": {}}}, seed=2)
    by_corpus = open_mixture_dataset([a, b], 2, SR, segment=1.0, length=200, within_corpus=1.0)
    by_channel = open_mixture_dataset([a, b], 2, SR, segment=1.0, length=200, within_corpus=1.0, pair_by="channel")
    corpus_pairs = [_talkers(by_corpus[i]["id"]) for i in range(100)]
    channel_pairs = [_talkers(by_channel[i]["id"]) for i in range(100)]
    assert all(len(p) == 2 for p in channel_pairs)
    # within a corpus, engines still meet; within a channel, never
    assert any({p[0][0], p[1][0]} == {"e", "f"} for p in corpus_pairs)
    assert all(p[0][0] == p[1][0] for p in channel_pairs)
    assert {p[0][0] for p in channel_pairs} == {"e", "f", "b"}
    # a single corpus is paired by channel too
    single = open_mixture_dataset([a], 2, SR, segment=1.0, length=100, within_corpus=1.0, pair_by="channel")
    assert all(p[0][0] == p[1][0] for p in (_talkers(single[i]["id"]) for i in range(60)))
    with pytest.raises(ValueError, match="pair_by"):
        open_mixture_dataset([a, b], 2, SR, segment=1.0, within_corpus=1.0, pair_by="studio")


def test_pair_by_channel_needs_a_probability(tmp_path, capsys):
    a = _corpus(tmp_path / "a", ["a1", "a2"], {"talkers": {"a1": {}, "a2": {}}})
    code = cli.main(["train", "separator", "--data", str(a), "--out", str(tmp_path / "run"), "--small",
                     "--pair-by", "channel", "--max-steps", "1"])
    assert code == 2 and "--pair-by channel takes effect only with --mix-within-corpus" in capsys.readouterr().err
