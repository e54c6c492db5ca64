"""The pretrained speaker encoder's network and front end, its importer, and hard-pair drawing with it (issue 9)."""
import io
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fastsep.data import DynamicMix, open_mixture_dataset
from fastsep.data.voice_similarity import talker_embeddings
from fastsep.dsp import hz_to_mel_slaney, mel_to_hz_slaney, slaney_mel_filterbank
from fastsep.models.io import load_model
from fastsep.models.voice_encoder import GE2EVoiceEncoder

SR = 8000


def _tiny_encoder(seed=0, sample_rate=SR):
    torch.manual_seed(seed)
    return GE2EVoiceEncoder(sample_rate=sample_rate, hidden=16, layers=2, dim=8).eval()


class _SpectrumEncoder(torch.nn.Module):
    """A stand-in speaker encoder: the unit-norm magnitude spectrum in 16 bands (tones of different pitch differ)."""

    config = {"sample_rate": SR}

    def forward(self, wave):
        spec = torch.fft.rfft(wave.float(), dim=-1).abs()
        bands = torch.stack([b.sum(-1) for b in spec[:, 1:].chunk(16, dim=-1)], dim=-1)
        return bands / bands.norm(dim=-1, keepdim=True)


def test_slaney_scale_is_linear_below_1khz_and_logarithmic_above():
    f = torch.tensor([0.0, 500.0, 1000.0, 6400.0])
    m = hz_to_mel_slaney(f)
    assert torch.allclose(m[:3], torch.tensor([0.0, 7.5, 15.0], dtype=torch.float64))
    assert math.isclose(float(m[3]), 15.0 + 27.0, rel_tol=1e-12)  # 27 mels per factor 6.4 above 1 kHz
    assert torch.allclose(mel_to_hz_slaney(m), f.double(), rtol=1e-12, atol=1e-9)


def test_slaney_filters_have_unit_area_per_hz_and_tile_the_band():
    fb = slaney_mel_filterbank(16000, 400, 40).double()  # [201, 40]
    assert fb.shape == (201, 40) and float(fb.min()) >= 0
    # a triangle of height 2 / (upper - lower) over its base has area 1 in Hz: the bins are 40 Hz apart
    area = fb.sum(0) * 40.0
    assert torch.allclose(area[5:], torch.ones(35, dtype=torch.float64), rtol=0.05)
    # neighbouring triangles overlap: every bin between the first and the last filter's peak is covered
    edges = mel_to_hz_slaney(torch.linspace(0.0, float(hz_to_mel_slaney(8000.0)), 42))
    inside = (torch.arange(201) * 40.0 > edges[1]) & (torch.arange(201) * 40.0 < edges[40])
    assert bool((fb[inside].sum(1) > 0).all())
    with pytest.raises(ValueError, match="f_min < f_max"):
        slaney_mel_filterbank(16000, 400, 40, f_min=9000.0)


def test_encoder_features_match_a_direct_16khz_power_mel():
    enc = _tiny_encoder(sample_rate=16000)
    t = torch.arange(16000) / 16000.0
    wave = (0.01 * torch.sin(2 * math.pi * 440.0 * t))[None]  # -43 dBFS: raised
    feats = enc.features(wave)
    # the same computation written out: raised to -30 dBFS, centred frames with zero padding, |STFT|^2, mel
    raised = wave * (10 ** (-30 / 20) / wave.pow(2).mean().sqrt())
    frames = torch.nn.functional.pad(raised, (200, 200)).unfold(-1, 400, 160) * torch.hann_window(400)
    power = torch.fft.rfft(frames, dim=-1).abs().pow(2)
    expected = power @ slaney_mel_filterbank(16000, 400, 40)
    assert feats.shape == (1, 101, 40)
    assert torch.allclose(feats, expected, rtol=1e-4, atol=1e-6)
    # the 440 Hz tone lands in the band around 440 Hz
    centres = mel_to_hz_slaney(torch.linspace(0.0, float(hz_to_mel_slaney(8000.0)), 42))[1:41]
    assert int(feats[0].mean(0).argmax()) == int((centres - 440.0).abs().argmin())


def test_encoder_gives_unit_vectors_at_any_level_and_refuses_bad_input():
    enc = _tiny_encoder()
    x = 0.3 * torch.randn(3, SR)
    e = enc(x)
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    # level="fixed" (the default): the embedding does not depend on the level, as an SI-SDR-trained output's
    # scale is arbitrary
    assert torch.allclose(enc(0.01 * x), enc(3.0 * x), atol=1e-5)
    quiet, loud = 1e-3 * x[:1], x[:1]
    assert torch.allclose(enc.raised(quiet), enc.raised(loud), atol=1e-6)
    assert torch.equal(enc.raised(torch.zeros(1, 100)), torch.zeros(1, 100))
    # level="raise" is Resemblyzer's: quiet audio raised to -30 dBFS, louder audio left as it is
    resemblyzer = GE2EVoiceEncoder(sample_rate=SR, hidden=16, layers=2, dim=8, level="raise")
    assert torch.allclose(resemblyzer.raised(quiet), resemblyzer.raised(10 * quiet))
    assert torch.equal(resemblyzer.raised(loud), loud)
    with pytest.raises(ValueError, match="level"):
        GE2EVoiceEncoder(level="loud")
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        enc(x[0])
    with pytest.raises(ValueError, match="at least"):
        enc(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="target_dbfs"):
        GE2EVoiceEncoder(target_dbfs=3.0)


def _fake_wheel(path, state):
    buf = io.BytesIO()
    torch.save({"step": 1, "model_state": state, "optimizer_state": {}}, buf)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("resemblyzer/pretrained.pt", buf.getvalue())
        z.writestr("Resemblyzer-0.1.4.dist-info/LICENSE", "Apache License 2.0 (test)")
    return str(path)


def test_import_encoder_converts_a_wheel_checkpoint_to_safetensors(tmp_path, capsys):
    from fastsep.cli import main

    torch.manual_seed(3)
    source = GE2EVoiceEncoder(sample_rate=16000)
    state = dict(source.state_dict())
    state["similarity_weight"] = torch.tensor([10.0])  # the GE2E loss's own parameters are left behind
    state["similarity_bias"] = torch.tensor([-5.0])
    wheel = _fake_wheel(tmp_path / "Resemblyzer-0.1.4-py3-none-any.whl", state)
    assert main(["import-encoder", "-o", str(tmp_path / "enc"), "--wheel", wheel]) == 0
    enc = load_model(tmp_path / "enc")
    assert isinstance(enc, GE2EVoiceEncoder) and enc.config["sample_rate"] == 8000
    for name, value in source.state_dict().items():
        assert torch.equal(enc.state_dict()[name], value)
    meta = json.loads((tmp_path / "enc" / "SOURCE.json").read_text())
    assert meta["licence"] == "Apache-2.0" and (tmp_path / "enc" / "LICENSE.resemblyzer").read_text()
    # a wheel without the checkpoint, or with a checkpoint of other shapes, is refused with a message
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as z:
        z.writestr("x.txt", "no weights")
    assert main(["import-encoder", "-o", str(tmp_path / "e2"), "--wheel", str(tmp_path / "other.whl")]) == 2
    bad = _fake_wheel(tmp_path / "bad.whl", {"lstm.weight_ih_l0": torch.zeros(3, 3)})
    assert main(["import-encoder", "-o", str(tmp_path / "e3"), "--wheel", bad]) == 2
    assert "error" in capsys.readouterr().err


def _corpus(root, speakers, rate=SR, seconds=1.5, splits=("train", "train")):
    """Each talker a tone of its own frequency with a little noise; utterance u of each talker in ``splits[u]``."""
    rng = np.random.default_rng(0)
    lines = []
    (root / "wav").mkdir(parents=True, exist_ok=True)
    for spk, f0 in speakers.items():
        for u in range(2):
            rel = f"wav/{spk}_{u}.wav"
            t = np.arange(int(seconds * rate)) / rate
            x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
            wavfile.write(root / rel, rate, x.astype(np.float32))
            lines.append(json.dumps({"path": rel, "speaker": spk, "split": splits[u], "sample_rate": rate,
                                     "duration": seconds}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_talker_embeddings_are_cached_per_encoder(tmp_path):
    root = _corpus(tmp_path / "c", {"a": 200, "b": 210, "c": 900})
    enc = _tiny_encoder()
    first = talker_embeddings(root, enc)
    assert sorted(first) == ["a", "b", "c"]
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-5 for v in first.values())
    cache = root / "talker_embeddings_train.safetensors"
    assert cache.exists()
    stamp = cache.stat().st_mtime_ns
    again = talker_embeddings(root, enc)
    assert cache.stat().st_mtime_ns == stamp and all(np.array_equal(first[k], again[k]) for k in first)
    other = talker_embeddings(root, _tiny_encoder(seed=1))  # another encoder's weights: computed afresh
    assert cache.stat().st_mtime_ns != stamp and any(not np.allclose(first[k], other[k]) for k in first)
    stamp = cache.stat().st_mtime_ns
    quieter = GE2EVoiceEncoder(sample_rate=SR, hidden=16, layers=2, dim=8, target_dbfs=-40.0)
    quieter.load_state_dict(_tiny_encoder(seed=1).state_dict())
    talker_embeddings(root, quieter)  # the same weights, another front-end setting: computed afresh too
    assert cache.stat().st_mtime_ns != stamp


def _pools(tmp_path, names):
    root = _corpus(tmp_path / "p", {n: 200 + 50 * i for i, n in enumerate(names)})
    plain = open_mixture_dataset(root, 2, SR, segment=1.0, length=10, fixed=True)
    return root, {s: plain.pools[s] for s in plain.speakers}


def test_similar_pairs_draw_alike_talkers_together(tmp_path):
    _, pools = _pools(tmp_path, ["a", "b", "c", "d"])
    # a and b sound alike, c and d each unlike every other talker
    emb = {"a": np.array([1.0, 0.0, 0.0]), "b": np.array([0.95, 0.31, 0.0]), "c": np.array([0.0, 1.0, 0.0]),
           "d": np.array([0.0, 0.0, 1.0])}
    rng = np.random.default_rng(0)
    plain = DynamicMix(pools, 2, SR, segment=1.0)
    similar = DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings=emb, similar_pairs=1.0,
                         similarity_temperature=0.1)
    def share_ab(ds):
        pairs = [frozenset(ds._choose_speakers(ds.speakers, rng)) for _ in range(600)]
        return sum(p == frozenset("ab") for p in pairs) / len(pairs)
    assert share_ab(plain) < 0.25  # 1 of 6 pairs at random
    assert share_ab(similar) > 0.4  # whenever a or b comes first, the other is ~e^9.5 times likelier
    # the cap: near-identical voices are favoured no more than voices at the cap
    capped = DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings=emb, similar_pairs=1.0,
                        similarity_temperature=0.1, similarity_cap=0.0)
    assert share_ab(capped) < 0.25


def test_similar_pairs_off_keeps_the_streams_and_settings_are_checked(tmp_path):
    root, pools = _pools(tmp_path, ["a", "b", "c"])
    plain = open_mixture_dataset(root, 2, SR, segment=1.0, length=10, fixed=True)
    off = open_mixture_dataset(root, 2, SR, segment=1.0, length=10, fixed=True, similar_pairs=0.0)
    assert [plain[i]["id"] for i in range(10)] == [off[i]["id"] for i in range(10)]
    emb = {s: np.ones(3) for s in pools}
    with pytest.raises(ValueError, match="needs speaker_embeddings"):
        DynamicMix(pools, 2, SR, segment=1.0, similar_pairs=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings=emb, similar_pairs=2.0)
    with pytest.raises(ValueError, match="temperature"):
        DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings=emb, similar_pairs=1.0, similarity_temperature=0)
    with pytest.raises(ValueError, match="non-zero"):
        DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings={"a": np.zeros(3)}, similar_pairs=1.0)
    with pytest.raises(ValueError, match="none of the speakers"):
        DynamicMix(pools, 2, SR, segment=1.0, speaker_embeddings={"zz": np.ones(3)}, similar_pairs=1.0)
    with pytest.raises(ValueError, match="voice_encoder"):
        open_mixture_dataset(root, 2, SR, segment=1.0, length=10, similar_pairs=1.0)
    # through open_mixture_dataset with an encoder: every talker gets an embedding, and the draws stay seeded
    enc = _tiny_encoder()
    a = open_mixture_dataset(root, 2, SR, segment=1.0, length=10, fixed=True, similar_pairs=1.0, voice_encoder=enc)
    b = open_mixture_dataset(root, 2, SR, segment=1.0, length=10, fixed=True, similar_pairs=1.0, voice_encoder=enc)
    assert sorted(a._embedding) == ["a", "b", "c"]
    assert [a[i]["id"] for i in range(10)] == [b[i]["id"] for i in range(10)]


def test_train_separator_refuses_similar_pairs_without_an_encoder(tmp_path, capsys):
    from fastsep.cli import main

    root, _ = _pools(tmp_path, ["a", "b", "c"])
    rc = main(["train", "separator", "--data", str(root), "--out", str(tmp_path / "run"), "--small",
               "--similar-pairs", "1", "--max-steps", "1", "--no-progress"])
    assert rc == 2 and "--voice-encoder" in capsys.readouterr().err


def test_upsampling_by_two_keeps_the_samples_and_interpolates_a_tone():
    enc = _tiny_encoder()
    t = torch.arange(4000, dtype=torch.float64) / SR
    x = torch.sin(2 * math.pi * 300.0 * t).float()[None]
    up = enc.upsample2(x)
    assert up.shape == (1, 8000)
    assert torch.allclose(up[:, ::2], x, atol=1e-6)  # the original samples come through unchanged
    t2 = torch.arange(8000, dtype=torch.float64) / (2 * SR)
    exact = torch.sin(2 * math.pi * 300.0 * t2).float()[None]
    assert float((up - exact)[:, 200:-200].abs().max()) < 2e-3  # in between: the tone itself, away from the edges


def test_speaker_loss_is_zero_on_the_references_and_trains_the_outputs():
    from fastsep.train.separator import SeparationTask

    t = torch.arange(SR) / SR
    tones = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (200.0, 1500.0)])
    src = torch.stack([tones, 0.5 * tones])
    task = SeparationTask(speaker_encoder=_SpectrumEncoder(), speaker_weight=1.0)
    assert float(task.speaker_loss(src[:, [1, 0]], src)) < 1e-5  # the outputs' order does not matter (PIT)
    est = (0.7 * src + 0.3 * src.flip(1)).requires_grad_(True)  # each output holds both talkers
    loss = task.speaker_loss(est, src)
    loss.backward()
    assert float(loss) > 0.01 and est.grad is not None and float(est.grad.abs().sum()) > 0
    # a GE2E encoder is frozen by the task: its weights get no gradient
    enc = _tiny_encoder()
    ge2e = SeparationTask(speaker_encoder=enc, speaker_weight=1.0)
    ge2e.speaker_loss(est, src).backward()
    assert all(not p.requires_grad and p.grad is None for p in enc.parameters())
    with pytest.raises(ValueError, match="needs a speaker encoder"):
        SeparationTask(speaker_weight=1.0)


def test_train_separator_with_a_speaker_loss_runs_and_refuses_it_without_an_encoder(tmp_path, capsys):
    from fastsep.cli import main
    from fastsep.models.io import save_model

    root = _corpus(tmp_path / "tv", {"a": 200, "b": 400, "c": 800}, splits=("train", "valid"))
    save_model(_tiny_encoder(), tmp_path / "enc")
    common = ["train", "separator", "--data", str(root), "--small", "--segment", "0.5", "--batch-size", "2",
              "--max-steps", "2", "--train-items", "4", "--valid-items", "2", "--num-workers", "0", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "r0"), "--speaker-loss", "1"]) == 2  # refused before any data
    assert "--voice-encoder" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "r1"), "--speaker-loss", "1", "--voice-encoder",
                          str(tmp_path / "enc")]) == 0
    assert (tmp_path / "r1" / "last" / "model.json").exists()


def test_speaker_metrics_say_whether_each_output_sounds_like_its_talker():
    from fastsep.metrics import expand_metrics, metric_unavailable_reason, separation_scores, use_speaker_encoder

    t = torch.arange(SR) / SR
    ref = torch.stack([0.3 * torch.sin(2 * math.pi * 250.0 * t), 0.3 * torch.sin(2 * math.pi * 1800.0 * t)])
    mix = ref.sum(0)
    assert expand_metrics(["speaker"], SR) == ["speaker_sim", "speaker_id"]
    try:
        use_speaker_encoder(None)
        assert "speaker encoder" in metric_unavailable_reason("speaker_sim", SR)
        assert separation_scores(ref, ref, mix, SR, ["speaker_id"])["speaker_id"] is None
        use_speaker_encoder(_SpectrumEncoder())
        assert "16000 Hz" in metric_unavailable_reason("speaker_id", 16000)
        clean = separation_scores(ref.flip(0), ref, mix, SR, ["speaker_sim", "speaker_id"])  # order solved by PIT
        assert torch.allclose(clean["speaker_sim"], torch.ones(2, dtype=torch.float64), atol=1e-6)
        assert clean["speaker_id"].tolist() == [1.0, 1.0]
        # one output mostly the other talker: it sounds like the wrong talker, the other output like its own
        est = torch.stack([ref[0] + 0.1 * ref[1], 0.8 * ref[0] + 0.4 * ref[1]])
        leaky = separation_scores(est, ref, mix, SR, ["speaker_id", "speaker_sim"])
        assert leaky["speaker_id"].tolist() == [1.0, 0.0] and float(leaky["speaker_sim"][1]) < 0.9
    finally:
        use_speaker_encoder(None)


def test_eval_reports_speaker_columns_with_an_encoder_and_refuses_a_bad_one(tmp_path, capsys):
    from fastsep.cli import main
    from fastsep.models.io import save_model
    from helpers import save_tiny_bundle

    data = _corpus(tmp_path / "d", {"a": 200, "b": 500, "c": 900}, seconds=1.0, splits=("test", "test"))
    bundle = save_tiny_bundle(tmp_path / "bundle")
    save_model(_tiny_encoder(), tmp_path / "enc")
    out = tmp_path / "e.json"
    args = ["eval", "--data", str(data), "--model", bundle, "--modes", "backbone", "--segment", "1",
            "--max-items", "2", "--no-progress", "--json", str(out)]
    assert main(args + ["--metrics", "speaker", "--speaker-encoder", str(tmp_path / "enc")]) == 0
    row = json.loads(out.read_text())["results"]["backbone"]
    assert 0.0 <= row["speaker_id"] <= 1.0 and -1.0 <= row["speaker_sim"] <= 1.0 and row["speaker_id_n"] == 2
    assert main(args + ["--metrics", "speaker", "--speaker-encoder", str(tmp_path / "nothing")]) == 2
    assert "--speaker-encoder" in capsys.readouterr().err
    from fastsep.metrics import metric_unavailable_reason

    assert metric_unavailable_reason("speaker_id", SR) is not None  # the run's encoder is not left behind
