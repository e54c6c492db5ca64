"""Training augmentation (fastsep.data.augment), pooled corpora and the recorded-voice corpus builder."""
import json
import re

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fastsep.data import DynamicMix, open_mixture_dataset
from fastsep.data.augment import (CODECS, Augmentation, apply_fir, coloured_noise, formant_shift, lpc_envelope,
                                  random_channel_response, speech_codec, speed_perturb, synthetic_rir)
from fastsep.data.voices import _joined_utterances, build_game, build_recorded
from helpers import assert_own_tone

SR = 8000


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_speed_perturb_scales_length_and_pitch():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 500 * t)
    fast = speed_perturb(tone, 1.25)
    assert abs(len(fast) - SR / 1.25) <= 2
    assert abs(_peak_hz(fast, SR) - 625) < 10
    slow = speed_perturb(tone, 0.8)
    assert abs(len(slow) - SR / 0.8) <= 2
    assert abs(_peak_hz(slow, SR) - 400) < 10
    with pytest.raises(ValueError):
        speed_perturb(tone, 0.0)


def _vowel(formants, f0=125.0, seconds=1.0):
    # A pulse train at f0 through second-order resonators: a vowel whose formants and pitch are known.
    from scipy.signal import lfilter

    x = np.zeros(int(seconds * SR))
    x[:: int(round(SR / f0))] = 1.0
    a = np.array([1.0])
    for f, bw in formants:
        r = np.exp(-np.pi * bw / SR)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r])
    return lfilter([1.0], a, x)


def _formant_peaks(x):
    from scipy.signal import find_peaks

    frame = x[2000:2256] * np.hanning(256)
    env = lpc_envelope(np.abs(np.fft.rfft(frame))[None] ** 2, 10)[0]
    return np.array(find_peaks(env)[0]) * SR / 256


def _pitch(x):
    seg = x[2000:4000]
    ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
    return SR / (30 + np.argmax(ac[30:200]))


def test_formant_shift_moves_the_formants_and_keeps_the_pitch():
    vowel = _vowel([(500, 80), (1500, 100), (2500, 120)])
    assert np.allclose(_formant_peaks(vowel), [500, 1500, 2500], atol=20)
    for factor in (0.85, 1.15):
        out = formant_shift(vowel, factor, SR)
        assert out.shape == vowel.shape
        assert np.allclose(_formant_peaks(out), factor * np.array([500, 1500, 2500]), atol=SR / 256)  # a bin
        assert abs(_pitch(out) - 125.0) < 2.0  # the harmonics stayed where they were
        assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(vowel ** 2)), rel=1e-6)
    # a factor of 1 is the input itself; next to 1, the analysis-resynthesis is transparent
    assert formant_shift(vowel, 1.0, SR) is vowel
    assert np.max(np.abs(formant_shift(vowel, 1.0 + 1e-9, SR) - vowel)) < 1e-6 * np.max(np.abs(vowel))
    with pytest.raises(ValueError):
        formant_shift(vowel, 0.0, SR)


def test_formant_augmentation_is_opt_in_and_leaves_other_streams_alone():
    # formant_prob 0 (the default) draws nothing: runs without it keep the random stream they had before it existed
    crop = np.random.default_rng(1).standard_normal(SR)
    plain = Augmentation(reverb_prob=0.0)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(plain.crop(crop, rng_a, SR), crop)
    rng_b.random()  # what the reverberation draw consumes
    assert rng_a.random() == rng_b.random()
    shifted = Augmentation(reverb_prob=0.0, formant_prob=1.0, formant=(1.1, 1.1)).crop(crop, np.random.default_rng(5),
                                                                                       SR)
    assert np.allclose(shifted, formant_shift(crop, 1.1, SR))
    with pytest.raises(ValueError):
        Augmentation(formant_prob=2.0)
    with pytest.raises(ValueError):
        Augmentation(formant=(1.2, 0.9))


def test_polarity_flip_negates_about_its_share_of_the_crops_and_is_opt_in():
    crop = np.random.default_rng(1).standard_normal(400)
    # off by default: no draw, so the stream after it is the one runs without the option always had
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(Augmentation(reverb_prob=0.0).crop(crop, rng_a, SR), crop)
    rng_b.random()  # the reverberation draw
    assert rng_a.random() == rng_b.random()
    aug = Augmentation(reverb_prob=0.0, polarity_prob=0.3)
    rng = np.random.default_rng(7)
    outs = [aug.crop(crop, rng, SR) for _ in range(2000)]
    negated = sum(np.array_equal(o, -crop) for o in outs)
    assert all(np.array_equal(o, crop) or np.array_equal(o, -crop) for o in outs)
    assert abs(negated / 2000 - 0.3) < 0.04
    with pytest.raises(ValueError, match="polarity_prob"):
        Augmentation(polarity_prob=-0.1)


def test_channel_response_is_what_the_filtered_noise_measures():
    from scipy.signal import welch

    rng = np.random.default_rng(4)
    noise = rng.standard_normal(400_000)
    _, p_in = welch(noise, nperseg=512)
    spans = []
    for _ in range(6):
        gain = random_channel_response(rng, SR)
        assert gain.shape == (257,) and np.isfinite(gain).all()
        out = apply_fir(noise, gain)
        assert out.shape == noise.shape
        _, p_out = welch(out, nperseg=512)
        measured = 10 * np.log10(p_out / p_in)
        # away from DC and Nyquist (where the window's edges smear the band edges) within 0.6 dB of the drawn curve
        inner = slice(8, -8)
        np.testing.assert_array_less(np.abs(measured[inner] - gain[inner]), 0.6)
        spans.append(gain[inner].max() - gain[inner].min())
    assert max(spans) > 6.0  # the chains differ by more than a dB or two somewhere


def test_channel_filter_neither_delays_nor_wraps():
    pulse = np.zeros(4001)
    pulse[2000] = 1.0
    flat = apply_fir(pulse, np.zeros(257))
    assert int(np.argmax(flat)) == 2000 and flat[2000] == pytest.approx(1.0, abs=1e-9)
    edge = np.zeros(4001)
    edge[0] = 1.0  # an impulse at the start: its response's left half is cut, nothing appears at the end
    out = apply_fir(edge, np.full(257, -6.0))
    assert out[0] == pytest.approx(10 ** (-6 / 20), rel=1e-6) and np.abs(out[-300:]).max() < 1e-12


def _opt_in_crops(field: str, crop: np.ndarray, n: int):
    """A crop part that is off by default draws nothing from the stream when off; on at p 0.5 (``field``), the
    crops of ``n`` draws, and those it changed."""
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(Augmentation(reverb_prob=0.0).crop(crop, rng_a, SR), crop)
    rng_b.random()  # only the reverberation draw
    assert rng_a.random() == rng_b.random()
    aug = Augmentation(reverb_prob=0.0, **{field: 0.5})
    rng = np.random.default_rng(7)
    outs = [aug.crop(crop, rng, SR) for _ in range(n)]
    return outs, [o for o in outs if not np.array_equal(o, crop)]


def test_channel_colouring_is_opt_in_and_drawn_per_source():
    crop = np.random.default_rng(1).standard_normal(4000)
    outs, coloured = _opt_in_crops("eq_prob", crop, 400)
    assert abs(len(coloured) / 400 - 0.5) < 0.08
    assert all(o.shape == crop.shape for o in outs)
    assert not np.allclose(coloured[0], coloured[1])  # every coloured crop has its own chain
    with pytest.raises(ValueError, match="eq_prob"):
        Augmentation(eq_prob=1.5)


def _speechlike(n, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 180 + 30 * np.sin(2 * np.pi * 2 * t)
    voiced = sum(np.sin(2 * np.pi * np.cumsum(f0 * h) / sr) / h for h in range(1, 12))
    return 0.2 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)


def _aligned_snr(ref, out, max_lag=200):
    """SNR (dB) of ``out`` against ``ref`` after the best delay and gain (coders may delay)."""
    lags = [float(np.dot(ref[:len(ref) - max_lag], out[lag:lag + len(ref) - max_lag])) for lag in range(max_lag)]
    lag = int(np.argmax(lags))
    y, x = out[lag:lag + len(ref) - max_lag], ref[:len(ref) - max_lag]
    g = np.dot(x, y) / np.dot(x, x)
    return 10 * np.log10(np.sum((g * x) ** 2) / np.sum((y - g * x) ** 2))


@pytest.mark.skipif(__import__("shutil").which("sox") is None, reason="sox is not installed")
def test_speech_codec_codes_each_coder_at_its_own_fidelity():
    x = _speechlike(16000)
    snrs = {}
    for codec in CODECS:
        y = speech_codec(x, SR, codec, 2)
        assert y.shape == x.shape and np.isfinite(y).all()
        assert not np.allclose(y, x, atol=1e-4)
        assert abs(np.std(y) / np.std(x) - 1) < 0.2  # the level comes back
        snrs[codec] = _aligned_snr(x, y)
    # companding keeps a waveform within ~30-40 dB; the vocoders (GSM, AMR-NB) keep far less of it
    assert snrs["ul"] > 30 and snrs["al"] > 30
    assert 0 < snrs["gsm"] < 20 and -10 < snrs["amr-nb"] < 20  # AMR-NB at 5.9 kbit/s keeps little waveform
    assert np.array_equal(speech_codec(np.zeros(800), SR, "gsm"), np.zeros(800))
    assert speech_codec(x, 16000, "gsm").shape == x.shape  # other rates: to 8 kHz and back
    with pytest.raises(ValueError, match="codec"):
        speech_codec(x, SR, "opus")
    with pytest.raises(ValueError, match="mode"):
        speech_codec(x, SR, "amr-nb", 9)


@pytest.mark.skipif(__import__("shutil").which("sox") is None, reason="sox is not installed")
def test_codec_augmentation_is_opt_in_and_named_by_augment():
    import argparse

    from fastsep.train.separator import augmentation_from_args

    _, coded = _opt_in_crops("codec_prob", _speechlike(4000, seed=1), 60)
    assert 15 <= len(coded) <= 45
    assert augmentation_from_args(argparse.Namespace(augment="speed,codec")).codec_prob == 0.3
    assert augmentation_from_args(argparse.Namespace(augment="all")).codec_prob == 0.0
    with pytest.raises(ValueError, match="codec_prob"):
        Augmentation(codec_prob=2.0)


def test_augment_option_names_the_formant_shift():
    import argparse

    from fastsep.train.separator import augmentation_from_args

    aug = augmentation_from_args(argparse.Namespace(augment="speed,overlap,formant"))
    assert (aug.formant_prob, aug.reverb_prob, aug.noise_prob) == (0.5, 0.0, 0.0) and aug.speed_prob > 0
    assert augmentation_from_args(argparse.Namespace(augment="all")).formant_prob == 0.0
    assert augmentation_from_args(argparse.Namespace(augment="all")).polarity_prob == 0.0
    assert augmentation_from_args(argparse.Namespace(augment="speed,polarity")).polarity_prob == 0.5
    assert augmentation_from_args(argparse.Namespace(augment="polarity:0.2")).polarity_prob == 0.2
    assert augmentation_from_args(argparse.Namespace(augment="all")).eq_prob == 0.0
    assert augmentation_from_args(argparse.Namespace(augment="speed,eq")).eq_prob == 0.5
    assert augmentation_from_args(argparse.Namespace(augment="eq:0.25")).eq_prob == 0.25
    with pytest.raises(ValueError, match="formant"):
        augmentation_from_args(argparse.Namespace(augment="speed,vtlp"))
    strong = augmentation_from_args(argparse.Namespace(augment="speed:0.3,formant:0.9"))
    assert (strong.speed_prob, strong.formant_prob, strong.overlap_prob) == (0.3, 0.9, 0.0)
    for bad in ("formant:1.5", "speed:fast"):
        with pytest.raises(ValueError):
            augmentation_from_args(argparse.Namespace(augment=bad))


def test_synthetic_rir_direct_path_ratio_and_decay():
    rng = np.random.default_rng(0)
    rir = synthetic_rir(rng, SR, rt60=0.5, direct_to_reverb_db=6.0)
    assert rir[0] == 1.0 and len(rir) == int(0.5 * SR)
    tail = rir[1:]
    assert abs(10 * np.log10(1.0 / np.sum(tail ** 2)) - 6.0) < 1e-6
    early, late = np.sum(tail[: len(tail) // 10] ** 2), np.sum(tail[-len(tail) // 10:] ** 2)
    assert late < early * 1e-3  # 60 dB decay over the length: the last tenth is far below the first


def test_coloured_noise_slope():
    rng = np.random.default_rng(1)
    n = 1 << 15

    def low_high(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[1: len(p) // 8].mean() / p[len(p) // 2:].mean()

    white, brown = coloured_noise(rng, n, 0.0), coloured_noise(rng, n, 2.0)
    assert abs(np.sqrt(np.mean(white ** 2)) - 1) < 1e-6 and abs(np.sqrt(np.mean(brown ** 2)) - 1) < 1e-6
    assert 0.5 < low_high(white) < 2.0
    assert low_high(brown) > 100.0


def test_overlap_silences_one_source_partly():
    aug = Augmentation(overlap_prob=1.0, max_silent=0.5)
    rng = np.random.default_rng(2)
    src = np.ones((2, 1000))
    out = aug.overlap(src, rng)
    silent = (out == 0).sum(axis=1)
    assert sorted(silent > 0) == [False, True]  # exactly one source touched
    assert 100 <= silent.max() <= 500


def test_add_noise_at_drawn_snr():
    aug = Augmentation(noise_prob=1.0, snr_db=(12.0, 12.0), noise_files=[])
    mix = torch.from_numpy(np.random.default_rng(3).standard_normal(SR))
    noisy = aug.add_noise(mix, np.random.default_rng(4), SR)
    snr = 10 * torch.log10(mix.pow(2).mean() / (noisy - mix).pow(2).mean())
    assert abs(float(snr) - 12.0) < 0.01


def test_augmentation_rejects_bad_settings():
    with pytest.raises(ValueError):
        Augmentation(speed_prob=1.5)
    with pytest.raises(ValueError):
        Augmentation(rt60=(0.8, 0.2))
    with pytest.raises(TypeError):
        DynamicMix({"a": [], "b": []}, augment="all")


def _corpus(root, speakers, seconds, split="train", rate=SR, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for spk in speakers:
        for u in range(2):
            rel = f"wav/{spk}_{u}.wav"
            (root / "wav").mkdir(parents=True, exist_ok=True)
            x = (0.3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
            wavfile.write(root / rel, rate, x)
            lines.append(json.dumps({"path": rel, "speaker": spk, "split": split, "sample_rate": rate,
                                     "duration": seconds}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_augmented_mixture_sums_to_sources_without_noise_and_is_repeatable(tmp_path):
    root = _corpus(tmp_path / "c", ["a", "b", "c"], 3.0)
    aug = Augmentation(speed_prob=1.0, reverb_prob=1.0, noise_prob=0.0, overlap_prob=1.0)
    ds = open_mixture_dataset(root, 2, SR, segment=1.0, augment=aug, length=4)
    item = ds[0]
    assert torch.allclose(item["sources"].sum(0), item["mixture"], atol=1e-6)
    fixed = DynamicMix({"a": [str(p) for p in (root / "wav").glob("a_*")],
                        "b": [str(p) for p in (root / "wav").glob("b_*")]}, 2, SR, 1.0, length=3, fixed=True,
                       augment=aug)
    again = DynamicMix(fixed.pools, 2, SR, 1.0, length=3, fixed=True, augment=aug)
    assert torch.equal(fixed[1]["mixture"], again[1]["mixture"])
    assert not torch.equal(fixed[0]["mixture"], fixed[1]["mixture"])


def test_noise_only_in_the_mixture(tmp_path):
    root = _corpus(tmp_path / "c", ["a", "b"], 2.0)
    aug = Augmentation(speed_prob=0.0, reverb_prob=0.0, overlap_prob=0.0, noise_prob=1.0, snr_db=(5.0, 5.0),
                       noise_files=[])
    item = open_mixture_dataset(root, 2, SR, segment=1.0, augment=aug, length=2)[0]
    residual = item["mixture"] - item["sources"].sum(0)
    snr = 10 * torch.log10(item["sources"].sum(0).pow(2).mean() / residual.pow(2).mean())
    assert abs(float(snr) - 5.0) < 0.05


def test_pooled_corpora_weighted_by_duration(tmp_path):
    short = _corpus(tmp_path / "short", ["s1", "s2", "s3", "s4"], 1.5, seed=1)
    long = _corpus(tmp_path / "long", ["l1"], 40.0, seed=2)
    ds = open_mixture_dataset([short, long], 2, SR, segment=1.0, length=200)
    assert set(ds.speakers) == {"s1", "s2", "s3", "s4", "l1"}
    with_long = sum("l1-" in ds[i]["id"] for i in range(60))
    # l1 holds 80 of 92 seconds: it is in nearly every mixture (uniform drawing would give 40 %)
    assert with_long >= 50
    dup = _corpus(tmp_path / "dup", ["s1", "x"], 1.5, seed=3)
    with pytest.raises(ValueError, match="more than one"):
        open_mixture_dataset([short, dup], 2, SR, segment=1.0)
    with pytest.raises(ValueError, match="split"):
        open_mixture_dataset([short, long], 2, SR, segment=1.0, split="test")


def _pair_corpora(ident):
    """The corpora (first letters of the talker names a1, b2, ...) of a mixture's id."""
    return {spk[0] for spk in re.findall(r"(?:^|_)([a-z]\d)-", ident)}


def test_pooled_corpora_mixed_within_one_corpus(tmp_path):
    a = _corpus(tmp_path / "a", ["a1", "a2", "a3"], 1.5, seed=1)
    b = _corpus(tmp_path / "b", ["b1", "b2"], 3.0, seed=2)
    c = _corpus(tmp_path / "c", ["c1"], 6.0, seed=3)  # one talker: can never fill a within-corpus mixture
    pool = open_mixture_dataset([a, b, c], 2, SR, segment=1.0, length=300)
    within = open_mixture_dataset([a, b, c], 2, SR, segment=1.0, length=300, within_corpus=1.0)
    pool_ids = [pool[i]["id"] for i in range(120)]
    within_ids = [within[i]["id"] for i in range(120)]
    assert sum(len(_pair_corpora(i)) == 2 for i in pool_ids) > 40  # the pool mostly crosses corpora
    assert all(len(_pair_corpora(i)) == 1 for i in within_ids) and not any("c1-" in i for i in within_ids)
    # corpora are chosen by their speech (a: 4.5 s, b: 6 s, c unusable): both are drawn, b more often
    n_b = sum(_pair_corpora(i) == {"b"} for i in within_ids)
    assert 50 <= n_b <= 95
    half = open_mixture_dataset([a, b, c], 2, SR, segment=1.0, length=300, within_corpus=0.5)
    n_cross = sum(len(_pair_corpora(half[i]["id"])) == 2 for i in range(120))
    assert 0 < n_cross < sum(len(_pair_corpora(i)) == 2 for i in pool_ids)


def test_within_group_draws_nothing_when_off_and_checks_settings(tmp_path):
    a = _corpus(tmp_path / "a", ["a1", "a2"], 1.5, seed=1)
    b = _corpus(tmp_path / "b", ["b1", "b2"], 1.5, seed=2)
    plain = open_mixture_dataset([a, b], 2, SR, segment=1.0, length=10, fixed=True)
    off = open_mixture_dataset([a, b], 2, SR, segment=1.0, length=10, fixed=True, within_corpus=0.0)
    assert [plain[i]["id"] for i in range(10)] == [off[i]["id"] for i in range(10)]  # earlier runs keep their streams
    pooled = {s: plain.pools[s] for s in plain.speakers}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DynamicMix(pooled, 2, SR, segment=1.0, speaker_groups={s: s[0] for s in pooled}, within_group=1.5)
    with pytest.raises(ValueError, match="needs speaker_groups"):
        DynamicMix(pooled, 2, SR, segment=1.0, within_group=0.5)
    with pytest.raises(ValueError, match="no group for"):
        DynamicMix(pooled, 2, SR, segment=1.0, speaker_groups={"a1": "a"}, within_group=0.5)
    with pytest.raises(ValueError, match="at least n_src=2 speakers"):
        DynamicMix(pooled, 2, SR, segment=1.0, speaker_groups={s: s for s in pooled}, within_group=0.5)


def test_joined_utterances_reach_the_target_length():
    rng = np.random.default_rng(5)
    prompts = [np.ones(int(SR * s)) for s in rng.uniform(0.5, 2.0, size=30)]
    utts = _joined_utterances(prompts, SR, rng, target_s=5.0)
    assert utts and all(len(u) >= 2.5 * SR for u in utts)
    assert sum(len(u) >= 5.0 * SR for u in utts) >= len(utts) - 1
    # every prompt's samples are used once; the rest are pauses (zeros)
    used = sum(int(u.sum()) for u in utts)
    assert used <= sum(len(p) for p in prompts)
    assert any((u == 0).any() for u in utts)


def test_build_recorded_from_prompt_folders(tmp_path):
    sounds = tmp_path / "sounds"
    rng = np.random.default_rng(6)
    for folder in ("spk_a", "spk_b"):
        (sounds / folder).mkdir(parents=True)
        for k in range(12):
            x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR) * 32767).astype(np.int16)
            wavfile.write(sounds / folder / f"p{k}.wav", SR, x + rng.integers(-5, 5, SR).astype(np.int16))
    talkers = {"rec_a": ("train", ["spk_a"], ["pkg-a"]), "rec_b": ("test", ["spk_b"], ["pkg-b"])}
    manifest = build_recorded(tmp_path / "out", sample_rates=(8000,), sounds=sounds, talkers=talkers,
                              utterance_s=4.0)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert {(r["speaker"], r["split"]) for r in recs} == {("rec_a", "train"), ("rec_b", "test")}
    assert all(r["source"] == "recorded" and r["duration"] >= 2.0 for r in recs)
    sr, data = wavfile.read(manifest.parent / recs[0]["path"])
    assert sr == 8000 and len(data) == round(recs[0]["duration"] * sr)
    with pytest.raises(RuntimeError, match="apt-get install"):
        build_recorded(tmp_path / "out2", sounds=sounds, talkers={"rec_c": ("test", ["missing"], ["pkg-c"])})


def test_build_game_keeps_one_character_of_one_dubbing_per_talker(tmp_path):
    # Lines are <level>-<character>-<line>.ogg at 22.05 kHz under <level>/<language>/; a talker is one character in
    # one dubbing, and the other characters' lines (and the other dubbing's) never leak into it.
    import soundfile

    sounds, rate = tmp_path / "sound", 22050
    tone = {"m": 300.0, "v": 120.0, "x": 900.0}
    for level in ("lvl1", "lvl2"):
        for lang in ("cs", "nl"):
            (sounds / level / lang).mkdir(parents=True)
            for ch, f0 in tone.items():
                for k in range(4):
                    x = 0.3 * np.sin(2 * np.pi * f0 * np.arange(int(1.5 * rate)) / rate)
                    soundfile.write(str(sounds / level / lang / f"{level}-{ch}-line{k}.ogg"), x, rate)
    talkers = {"g_cs_m": ("train", "cs", "m", "pkg-cs"), "g_nl_v": ("test", "nl", "v", "pkg-nl")}
    manifest = build_game(tmp_path / "out", sounds=sounds, talkers=talkers, utterance_s=4.0, valid_every=2)
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    # a training talker's every 2nd utterance is held out as valid; a test talker's stay test
    assert {(r["speaker"], r["split"], r["source"]) for r in recs} == {
        ("g_cs_m", "train", "game"), ("g_cs_m", "valid", "game"), ("g_nl_v", "test", "game")}
    assert all(f"/{r['split']}/" in r["path"] for r in recs)
    for speaker, f0 in (("g_cs_m", 300.0), ("g_nl_v", 120.0)):
        rec = next(r for r in recs if r["speaker"] == speaker)
        assert rec["duration"] >= 4.0
        assert_own_tone(manifest.parent / rec["path"], f0)  # the character's own tone, resampled right
    # 8 lines of 1.5 s per talker: every line is used once (pauses between them are extra)
    for speaker in talkers:
        total = sum(r["duration"] for r in recs if r["speaker"] == speaker)
        assert 8 * 1.5 - 0.5 <= total <= 8 * 1.5 + 8 * 0.5
    with pytest.raises(RuntimeError, match="apt-get install -y pkg-z"):
        build_game(tmp_path / "out2", sounds=sounds, talkers={"g": ("train", "cs", "z", "pkg-z")})


def test_corpus_weights_scale_a_corpus_share_of_the_mixtures(tmp_path):
    a = _corpus(tmp_path / "a", ["a1", "a2"], 3.0, seed=1)
    b = _corpus(tmp_path / "b", ["b1", "b2"], 3.0, seed=2)
    n_b = {}
    for weights in ([1.0, 1.0], [1.0, 9.0]):
        ds = open_mixture_dataset([a, b], 2, SR, segment=1.0, length=300, within_corpus=1.0,
                                  corpus_weights=weights)
        n_b[weights[1]] = sum(_pair_corpora(ds[i]["id"]) == {"b"} for i in range(150))
    # equal speech: about half the mixtures from b; weighted 9:1, about 90 %
    assert 50 <= n_b[1.0] <= 100 and n_b[9.0] >= 120
    with pytest.raises(ValueError, match="one weight per corpus"):
        open_mixture_dataset([a, b], 2, SR, segment=1.0, corpus_weights=[1.0])
    with pytest.raises(ValueError, match="positive"):
        open_mixture_dataset([a, b], 2, SR, segment=1.0, corpus_weights=[1.0, 0.0])


def _tone_corpus(root, tones, seconds):
    """A corpus of talkers each speaking a pure tone of its own (Hz) in utterances of the given lengths."""
    lines = []
    (root / "wav").mkdir(parents=True, exist_ok=True)
    for spk, f0 in tones.items():
        for u, sec in enumerate(seconds):
            rel = f"wav/{spk}_{u}.wav"
            t = np.arange(int(sec * SR)) / SR
            wavfile.write(root / rel, SR, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32))
            lines.append(json.dumps({"path": rel, "speaker": spk, "split": "train", "sample_rate": SR,
                                     "duration": sec}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_short_utterances_are_joined_with_their_own_talkers_speech(tmp_path):
    tones = {"a": 300.0, "b": 700.0}
    root = _tone_corpus(tmp_path / "c", tones, [1.2, 1.5, 0.5])
    # a 3 s segment: without joining no utterance is long enough
    with pytest.raises(ValueError, match="too_short"):
        open_mixture_dataset(root, 2, SR, segment=3.0, length=4)
    ds = open_mixture_dataset(root, 2, SR, segment=3.0, length=6, join_short=1.0)
    assert sum(len(p) for p in ds.pools.values()) == 4  # the 0.5 s utterances stay out
    for i in range(6):
        item = ds[i]
        assert item["sources"].shape == (2, 3 * SR)
        for src in item["sources"].numpy():
            spectrum = np.abs(np.fft.rfft(src))
            peak = np.argmax(spectrum) * SR / len(src)
            talker = min(tones, key=lambda s: abs(tones[s] - peak))
            assert abs(tones[talker] - peak) < 5
            other = [f for s, f in tones.items() if s != talker][0]
            # nothing of the other talker joined in
            assert spectrum[int(round(other * len(src) / SR))] < 1e-3 * spectrum.max()
            # a pause of 0.1-0.4 s between the pieces: some silence, far from all of it
            silent = float((np.abs(src) < 1e-6).mean())
            assert 0.0 < silent < 0.5
    # joining leaves a corpus whose utterances already fill the segment as it was
    long_root = _tone_corpus(tmp_path / "long", tones, [2.0, 2.5])
    plain = open_mixture_dataset(long_root, 2, SR, segment=1.0, length=3, fixed=True)
    joined = open_mixture_dataset(long_root, 2, SR, segment=1.0, length=3, fixed=True, join_short=0.5)
    assert torch.equal(plain[2]["mixture"], joined[2]["mixture"])
    with pytest.raises(ValueError, match="join_short"):
        DynamicMix({"a": [], "b": []}, 2, SR, 1.0, join_short=-1.0)
