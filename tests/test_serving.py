"""Serving behaviour (issue 14): batch == single, seeds, level invariance, output levels and rates, array inputs,
crash leftovers, resuming, early errors, minimum length, blocked file processing."""
import json
import os
import signal
import socket
import subprocess
import sys
import wave as wavmod

import numpy as np
import pytest
import torch
from torch import nn

from fastsep import batch_files
from fastsep.audio import load
from fastsep.models.combiner import Combiner
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.diffwave import DiffWave
from fastsep.separator import MIN_SECONDS, Separator
from fastsep.streaming import ResampledView, StreamResampler, ratio
from helpers import write_wav

SR = 8000


def speechlike(n, seed, sr=SR):
    """Two amplitude-modulated harmonic 'talkers' and their sum."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    srcs = []
    for f0 in (rng.uniform(100, 160), rng.uniform(180, 260)):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6))
        srcs.append(env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)))
    srcs = 0.1 * np.stack(srcs) / np.abs(np.stack(srcs)).max()
    return torch.tensor(srcs.sum(0), dtype=torch.float32), torch.tensor(srcs, dtype=torch.float32)


def tiny_vocoder():
    return DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20, sample_rate=SR,
                    hop_length=128)


def vocoder_dependent_combiner():
    """An F whose output depends on the vocoder's estimate (the untrained F returns v_d exactly)."""
    torch.manual_seed(7)
    comb = Combiner(n_fft=128, hop_length=32, hidden=(4, 4, 4, 4, 4))
    with torch.no_grad():
        for p in comb.parameters():
            p.add_(0.03 * torch.randn_like(p))
    return comb


@pytest.fixture(scope="module")
def full_sep():
    torch.manual_seed(0)
    return Separator(ConvTasNet.small(2, SR), tiny_vocoder(), vocoder_dependent_combiner(), sample_rate=SR)


def si_sdr(est, ref):
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    return 10 * torch.log10((proj ** 2).sum(-1) / ((est - proj) ** 2).sum(-1))


# ------------------------------------------------------------------------------------------------ 1. batch == single
def test_batch_of_files_equals_each_file_alone_with_gln_backbone(tmp_path, monkeypatch):
    torch.manual_seed(0)
    bb = ConvTasNet.small(2, SR)
    assert bb.config["norm"] == "gLN"
    sep = Separator(bb, sample_rate=SR)
    rng = np.random.default_rng(3)
    lengths = {"a": 3000, "b": 3000, "c": 3000, "d": 3100}  # d would have been padded into a's batch before
    paths = []
    for name, n in lengths.items():
        write_wav(tmp_path / "in" / f"{name}.wav", rng.uniform(-0.3, 0.3, n))
        paths.append(str(tmp_path / "in" / f"{name}.wav"))
    batches = []
    real = bb.forward
    monkeypatch.setattr(bb, "forward", lambda x: batches.append(x.shape[0]) or real(x))
    res = sep.separate_files(paths, tmp_path / "batched", mode="backbone", batch_size=4, progress=False)
    assert res.ok and sorted(res.written) == sorted(paths)
    assert max(batches) == 3  # the three equal-length files did share a batch
    for p in paths:
        alone = sep.separate_file(p, tmp_path / "alone", mode="backbone")
        for got, want in zip(res.written[p], alone):
            a, b = load(got)[0], load(want)[0]
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1.5 / 32767  # equal up to one 16-bit step of rounding


# ------------------------------------------------------------------------------------------------ 2. seeds
def test_seeded_full_mode_is_reproducible_and_independent_of_batch(full_sep):
    mix = torch.stack([speechlike(4000, 1)[0], speechlike(4000, 2)[0]])
    a = full_sep.separate(mix, mode="full", seed=5)
    b = full_sep.separate(mix, mode="full", seed=5)
    assert torch.equal(a, b)
    other = full_sep.separate(mix, mode="full", seed=6)
    seed_effect = float((other - a).abs().max())
    assert seed_effect > 0.1 * float(a.abs().max())  # the seed does reach the vocoder's noise
    # Alone or in a batch, an item gets the same noise; what remains is the backbone's float rounding for batch 1
    # vs 2 (~1e-8), which F's phase features amplify a little where v_d is near zero.
    alone = full_sep.separate(mix[1], mode="full", seed=5)
    assert float((a[1] - alone).abs().max()) < 0.02 * seed_effect
    per_item = full_sep.separate(mix, mode="full", seed=[6, 5])
    assert torch.equal(per_item[0], other[0]) and float((per_item[1] - a[1]).abs().max()) < 0.02 * seed_effect


def test_separator_does_not_mutate_the_vocoder():
    voc = tiny_vocoder()
    before = voc.sampling_precision
    sep = Separator(ConvTasNet.small(2, SR), voc, None, sample_rate=SR, vocoder_precision="bfloat16")
    assert voc.sampling_precision == before and sep.vocoder_precision == "bfloat16"
    seen = []
    real = voc.vocode
    voc.vocode = lambda x, **kw: seen.append(kw.get("precision")) or real(x, **kw)
    sep.separate(speechlike(2000, 0)[0], mode="xcorr", seed=0)
    assert seen and set(seen) == {"bfloat16"}


# ------------------------------------------------------------------------------------------------ 3. level invariance
@pytest.mark.parametrize("mode", ["backbone", "xcorr", "full"])
def test_result_does_not_depend_on_input_level(full_sep, mode):
    # The stand-in models separate nothing, so the scale-1 result serves as the reference: a quieter copy of the
    # mixture must give the same estimates, scaled (a vocoder adding noise at a fixed level fails this at 0.001).
    mix, _ = speechlike(6000, 4)
    ref = full_sep.separate(mix, mode=mode, seed=1)
    # Scaled by a power of two, the input RMS normalisation hands the models bit-identical input: the estimates must
    # be exact scaled copies.
    for scale in (2.0 ** -7, 2.0 ** -10):
        est = full_sep.separate(mix * scale, mode=mode, seed=1)
        torch.testing.assert_close(est, ref * scale, rtol=1e-6, atol=0.0)
    # Any other scale changes the models' input by float rounding (~1e-7). xcorr's per-frame lag is an argmax, and on
    # these random stand-in models some frames hold near-ties that such rounding flips (on the AVX-512 Xeon of
    # 2026-11-23 one talker lands at 26 dB; fixed-level noise would put it below 10 dB at 0.001).
    # At one thread a flipped frame also moves xcorr's level by ~4 % (a frame from another lag); fixed-level noise
    # would move it by orders of magnitude.
    floor, level_tol = (20.0, 0.08) if mode == "xcorr" else (30.0, 0.02)
    for scale in (0.01, 0.001):
        est = full_sep.separate(mix * scale, mode=mode, seed=1)
        assert float(si_sdr(est, ref).min()) > floor
        assert float(est.norm() / (scale * ref.norm())) == pytest.approx(1.0, abs=level_tol)


# ------------------------------------------------------------------------------------------------ 4. output levels
class SignedBackbone(nn.Module):
    """Talkers (2x, -x): their sum is the mixture, and talker 1 is twice the mixture's level."""

    def __init__(self):
        super().__init__()
        self.config = {"n_src": 2}
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.stack([2 * x, -x], 1) * self.w


def test_estimates_sum_to_the_mixture_in_least_squares(full_sep):
    mix, _ = speechlike(5000, 5)
    for mode in ("backbone", "full"):
        est = full_sep.separate(mix * 0.3, mode=mode, seed=0)
        total = est.sum(0)
        # least squares with one gain: the residual is orthogonal to the sum of the estimates
        assert abs(float((mix * 0.3 - total) @ total)) < 1e-4 * float(total @ total)
        # and it is the models' own output times that one gain (numpy's least squares, not the code's formula)
        full_sep.mixture_consistent = False
        try:
            raw = full_sep.separate(mix * 0.3, mode=mode, seed=0)
        finally:
            full_sep.mixture_consistent = True
        gain = np.linalg.lstsq(raw.sum(0)[:, None].double().numpy(), (mix * 0.3).double().numpy(), rcond=None)[0]
        torch.testing.assert_close(est, raw * float(gain[0]), atol=1e-6, rtol=1e-3)


def test_files_keep_relative_levels_and_scale_jointly_only_to_avoid_clipping(tmp_path):
    sep = Separator(SignedBackbone(), sample_rate=SR)
    t = np.arange(4000) / SR
    write_wav(tmp_path / "quiet.wav", 0.2 * np.sin(2 * np.pi * 200 * t))
    write_wav(tmp_path / "loud.wav", 0.8 * np.sin(2 * np.pi * 200 * t))
    res = sep.separate_files([tmp_path / "quiet.wav", tmp_path / "loud.wav"], tmp_path / "o", mode="backbone",
                             progress=False)
    q1, q2 = (load(p)[0] for p in res.written[str(tmp_path / "quiet.wav")])
    mix = load(tmp_path / "quiet.wav")[0]
    assert (q1 - 2 * mix).abs().max() < 2e-4 and (q2 + mix).abs().max() < 2e-4  # not peak-normalised
    l1, l2 = (load(p)[0] for p in res.written[str(tmp_path / "loud.wav")])
    scale = res.scaled[str(tmp_path / "loud.wav")]
    assert scale == pytest.approx(1 / 1.6, rel=1e-3)
    assert float(l1.abs().max()) == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(l1, -2 * l2, atol=2e-4, rtol=0)  # one factor for both talkers
    assert str(tmp_path / "quiet.wav") not in res.scaled


# ------------------------------------------------------------------------------------------------ 5. rates
def test_array_output_at_the_input_rate_by_default(full_sep):
    mix16 = speechlike(8000, 6, sr=16000)[0]
    est = full_sep.separate(mix16, mode="backbone", sample_rate=16000)
    assert est.shape == (2, 8000)
    assert full_sep.separate(mix16, mode="backbone", sample_rate=16000, output_rate=SR).shape == (2, 4000)


def test_blockwise_resampling_equals_whole_signal():
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal(40_001).astype(np.float32)
    for orig, new in ((44100, 8000), (8000, 16000), (16000, 8000)):
        up, down = ratio(orig, new)
        want = resample_poly(x.astype(np.float64), up, down)
        view = ResampledView(lambda a, b: x[a:b], len(x), orig, new)
        got = np.concatenate([view[:, a:a + 1777][0].numpy() for a in range(0, view.shape[-1], 1777)])
        stream = StreamResampler(orig, new)
        streamed = np.concatenate([stream.push(x[a:a + 3001]) for a in range(0, len(x), 3001)] + [stream.finish()])
        assert len(got) == len(streamed) == len(want)
        assert np.abs(got - want).max() < 1e-5 and np.abs(streamed - want).max() < 1e-5


def test_long_file_in_blocks_equals_in_memory_separation(tmp_path):
    torch.manual_seed(0)
    sep = Separator(ConvTasNet.small(2, SR), sample_rate=SR, chunk_seconds=0.5, overlap_seconds=0.1)
    mix16 = speechlike(3 * 16000, 7, sr=16000)[0]
    write_wav(tmp_path / "long.wav", mix16.numpy(), sr=16000)
    mix16 = load(tmp_path / "long.wav")[0]  # the 16-bit values the file holds
    out = sep.separate_file(tmp_path / "long.wav", tmp_path / "o", mode="backbone")
    want = sep.separate(mix16, mode="backbone", sample_rate=16000)
    for p, w in zip(out, want):
        got, rate = load(p)
        assert rate == 16000 and got.shape == w.shape
        assert (got - w).abs().max() < 3e-4


# ------------------------------------------------------------------------------------------------ 6. arrays
def test_integer_arrays_are_scaled_and_channels_last_is_refused(full_sep):
    mix, _ = speechlike(4000, 8)
    pcm = np.round(mix.numpy() * 32767).astype(np.int16)
    as_int = full_sep.separate(pcm, mode="backbone")
    as_float = full_sep.separate(pcm.astype(np.float32) / 32768, mode="backbone")
    np.testing.assert_allclose(as_int, as_float, atol=1e-6)
    assert np.abs(as_int).max() < 1.0
    as_i32 = full_sep.separate(pcm.astype(np.int32) << 16, mode="backbone")
    np.testing.assert_allclose(as_i32, as_float, atol=1e-6)
    with pytest.raises(ValueError, match="channels-last"):
        full_sep.separate(np.stack([mix.numpy(), mix.numpy()], axis=1), mode="backbone")


# ------------------------------------------------------------------------------------------------ 10. minimum length
def test_one_minimum_length_in_every_mode(full_sep, tmp_path):
    assert full_sep.min_seconds == MIN_SECONDS
    short = speechlike(int(MIN_SECONDS * SR) - 1, 9)[0]
    ok = speechlike(int(MIN_SECONDS * SR), 9)[0]
    for mode in ("backbone", "xcorr", "full"):
        with pytest.raises(ValueError, match=r"shortest input fastsep separates is 0\.1 s"):
            full_sep.separate(short, mode=mode)
        assert full_sep.separate(ok, mode=mode, seed=0).shape == (2, ok.shape[-1])
    write_wav(tmp_path / "short.wav", short.numpy())
    res = full_sep.separate_files([tmp_path / "short.wav"], tmp_path / "o", mode="full", progress=False)
    assert "0.1 s" in res.failed[str(tmp_path / "short.wav")]


def test_truncated_wav_warns(full_sep, tmp_path):
    write_wav(tmp_path / "cut.wav", speechlike(4000, 10)[0].numpy())
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-2000])
    with pytest.warns(UserWarning, match="truncated WAV.*4000 frames.*3000"):
        full_sep.separate_file(tmp_path / "cut.wav", tmp_path / "o", mode="backbone")


# ------------------------------------------------------------------------------------------------ 7. crash leftovers
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_writer_are_removed_and_never_inputs(tmp_path):
    from fastsep.commands.separate import expand_inputs

    code = ("import os, signal, sys\n"
            "from fastsep.fileio import atomic_output\n"
            "with atomic_output(sys.argv[1], '.wav') as tmp:\n"
            "    open(tmp, 'wb').write(b'RIFF' + bytes(1000))\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "in"
    write_wav(out / "a.wav", speechlike(2000, 11)[0].numpy())
    env = dict(os.environ, FASTSEP_NO_EXTENSION="1")
    proc = subprocess.run([sys.executable, "-c", code, str(out / "x_s1.wav")], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [f for f in os.listdir(out) if f.startswith(".tmp-")]
    assert len(leftovers) == 1
    paths, names = expand_inputs([str(out)])
    assert names == ["a.wav"]  # the leftover is not an input
    live = out / f".tmp-{socket.gethostname()}-{os.getpid()}-live.wav"  # a live writer's file is kept
    live.write_bytes(b"")
    sep = Separator(SignedBackbone(), sample_rate=SR)
    res = sep.separate_files(paths, out, mode="backbone", names=names, progress=False)
    assert [os.path.basename(p) for p in res.removed_temps] == leftovers
    assert sorted(f for f in os.listdir(out) if f.startswith(".tmp-")) == [live.name]


# ------------------------------------------------------------------------------------------------ 8. resuming
def test_resume_redoes_what_other_settings_made_and_mirrors_the_tree(full_sep, tmp_path):
    paths, names = [], []
    for spk in ("spkA", "spkB"):
        write_wav(tmp_path / "in" / spk / "001.wav", speechlike(3000, len(paths))[0].numpy())
        paths.append(str(tmp_path / "in" / spk / "001.wav"))
        names.append(os.path.join(spk, "001.wav"))
    out = tmp_path / "out"
    first = full_sep.separate_files(paths, out, mode="backbone", names=names, progress=False)
    assert first.ok and len(first.written) == 2
    assert os.path.isfile(out / "spkA" / "001_s1.wav") and os.path.isfile(out / "spkB" / "001_s2.wav")
    record = json.loads((out / "spkA" / "001.fastsep.json").read_text())
    assert record["settings"]["mode"] == "backbone" and record["settings"]["model"] == full_sep.fingerprint()
    again = full_sep.separate_files(paths, out, mode="backbone", names=names, progress=False)
    assert sorted(again.skipped) == sorted(paths) and not again.written
    full = full_sep.separate_files(paths, out, mode="full", names=names, progress=False)
    assert sorted(full.written) == sorted(paths)  # other mode: redone, not skipped
    reseeded = full_sep.separate_files(paths, out, mode="full", names=names, progress=False, seed=1)
    assert sorted(reseeded.written) == sorted(paths)
    write_wav(paths[0], speechlike(3000, 99)[0].numpy())  # an input that changed since
    os.utime(paths[0], ns=(1, 1))
    changed = full_sep.separate_files(paths, out, mode="full", names=names, progress=False, seed=1)
    assert list(changed.written) == [paths[0]] and changed.skipped == [paths[1]]


# ------------------------------------------------------------------------------------------------ 9 / 7. the CLI
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle")
    Separator(ConvTasNet.small(2, SR), tiny_vocoder(), vocoder_dependent_combiner(), sample_rate=SR
              ).save_pretrained(path)
    return str(path)


def run_cli(*argv):
    from fastsep import cli

    return cli.main([str(a) for a in argv])


def test_cli_problems_found_before_any_work_in_one_line(bundle, tmp_path, capsys, monkeypatch):
    write_wav(tmp_path / "a.wav", speechlike(2000, 12)[0].numpy())
    loaded = []
    real = Separator.from_pretrained.__func__
    monkeypatch.setattr(Separator, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loaded.append(1) or real(cls, *a, **k)))
    (tmp_path / "file").write_text("x")
    cases = [(["-o", tmp_path / "file"], "exists and is not a folder"),
             (["-o", tmp_path / "file" / "sub"], "cannot create output folder"),
             (["-o", "/proc/fastsep-test-out"], "cannot create output folder"),
             (["-o", "/proc/self"], "is not writable")]
    if not torch.cuda.is_available():
        cases.append((["-o", tmp_path / "o", "--device", "cuda"], "CUDA is not available"))
    for extra, message in cases:
        rc = run_cli("separate", tmp_path / "a.wav", "--model", bundle, *extra)
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not loaded  # none of these got as far as loading the model


def test_cli_sigterm_stops_with_a_summary(bundle, tmp_path, capsys, monkeypatch):
    for i in range(3):
        write_wav(tmp_path / "in" / f"f{i}.wav", speechlike(2000 + 100 * i, i)[0].numpy())
    real = batch_files._compute_group  # called once per group of files (here: one file per group)
    calls = []

    def second_gets_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_files, "_compute_group", second_gets_sigterm)
    rc = run_cli("separate", tmp_path / "in", "-o", tmp_path / "o", "--model", bundle, "--mode", "backbone",
                 "--no-progress")
    out = capsys.readouterr().out
    assert rc == 143
    assert "stopped by SIGTERM" in out and "1 separated" in out and "2 not done" in out
    assert not [f for f in os.listdir(tmp_path / "o") if f.startswith(".tmp-")]
    assert signal.getsignal(signal.SIGTERM) is not None


def test_cli_states_rate_and_seed(bundle, tmp_path, capsys):
    write_wav(tmp_path / "a.wav", speechlike(4000, 13, sr=16000)[0].numpy(), sr=16000)
    assert run_cli("separate", tmp_path / "a.wav", "-o", tmp_path / "o", "--model", bundle, "--seed", "3",
                   "--no-progress") == 0
    err = capsys.readouterr().err
    assert "vocoder seed 3" in err and "each input's rate" in err
    with wavmod.open(str(tmp_path / "o" / "a_s1.wav")) as w:
        assert w.getframerate() == 16000
    assert run_cli("separate", tmp_path / "a.wav", "-o", tmp_path / "o8", "--model", bundle, "--output-rate",
                   "model", "--no-progress") == 0
    with wavmod.open(str(tmp_path / "o8" / "a_s1.wav")) as w:
        assert w.getframerate() == SR
