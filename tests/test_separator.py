"""fastsep.Separator and fastsep.chunking on tiny stand-in models (CPU, no trained weights needed)."""
import os
import subprocess
import sys
import textwrap
import wave as wavmod

import numpy as np
import pytest
import torch
from torch import nn

import fastsep
from fastsep import separator as sepmod
from fastsep.chunking import chunk_starts, match_gains, match_sources, separate_chunked
from fastsep.dsp import StftConfig, istft, stft
from fastsep.models.combiner import Combiner
from fastsep.separator import Separator, output_paths

SR = 8000


class PointwiseBackbone(nn.Module):
    """Time-local stand-in: source i = gain_i * mixture (no context at all)."""

    def __init__(self, n_src=2):
        super().__init__()
        self.config = {"n_src": n_src}
        self.gains = nn.Parameter(torch.arange(1, n_src + 1, dtype=torch.float32) / n_src)

    def forward(self, x):
        return x[:, None, :] * self.gains[None, :, None]


class ConvBackbone(nn.Module):
    """Short-context stand-in: a 1-D conv with a 9-sample receptive field."""

    def __init__(self, n_src=2):
        super().__init__()
        self.config = {"n_src": n_src}
        self.conv = nn.Conv1d(1, n_src, 9, padding=4)

    def forward(self, x):
        return self.conv(x[:, None, :])


class SquareBackbone(PointwiseBackbone):
    """Time-local stand-in with distinct talkers: (x, x**2), which are uncorrelated for zero-mean Gaussian x."""

    def forward(self, x):
        return torch.stack([x, x * x], dim=1)


class SwappingBackbone(SquareBackbone):
    """Names its outputs in a different order on every other call, as a PIT-trained separator may per chunk."""

    calls = 0

    def forward(self, x):
        out = super().forward(x)
        SwappingBackbone.calls += 1
        return out.flip(1) if SwappingBackbone.calls % 2 == 0 else out


class RescalingBackbone(SquareBackbone):
    """Gives each call's outputs a different gain and sign, as a separator trained with SI-SDR may per chunk."""

    calls = 0

    def forward(self, x):
        RescalingBackbone.calls += 1
        gains = torch.tensor([(-1.0) ** RescalingBackbone.calls * 3.0 ** (RescalingBackbone.calls % 3), 0.5])
        return super().forward(x) * gains[:, None]


class DelayVocoder(nn.Module):
    """Stand-in GM: returns its input delayed by `delay` samples (a phase shift the xcorr mode must undo)."""

    sample_rate = SR

    def __init__(self, delay=5):
        super().__init__()
        self.delay = delay

    def vocode(self, x):
        return nn.functional.pad(x, (self.delay, 0))[..., : x.shape[-1]]


RAW = dict(input_rms=None, mixture_consistent=False)  # the models' own output, for tests of chunking mechanics


def make(backbone=None, combiner=True, **kw):
    backbone = backbone if backbone is not None else ConvBackbone()
    comb = Combiner(n_fft=128, hop_length=32, hidden=(4, 4, 4, 4, 4)) if combiner else None
    return Separator(backbone, DelayVocoder(), comb, sample_rate=SR, **kw)


def si_sdr_db(est, ref):
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    return 10 * torch.log10((proj ** 2).sum(-1) / ((est - proj) ** 2).sum(-1))


def write_wav(path, data, sr=SR, channels=1):
    data = np.asarray(data, dtype=np.float64)
    with wavmod.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())


# ------------------------------------------------------------------------------------------------------ modes, types
@pytest.mark.parametrize("mode", ["full", "xcorr", "backbone"])
def test_modes_shapes_and_types(mode):
    sep = make(chunk_seconds=0.5, overlap_seconds=0.1)
    x = torch.randn(2, 1500) * 0.1
    single = sep.separate(x[0], mode=mode)
    batch = sep.separate(x, mode=mode)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 1500)
    assert batch.shape == (2, 2, 1500) and torch.isfinite(batch).all()
    close = (batch[0] - single).abs() <= 1e-5
    if mode == "xcorr":
        # The per-frame argmax of the alignment can pick another lag where two are within float rounding of each
        # other (the conv backbone rounds differently for batch 1 and 2); everywhere else the two agree.
        assert close.float().mean() > 0.97
    else:
        assert close.all()
    as_np = sep.separate(x.numpy(), mode=mode)
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.float32 and as_np.shape == (2, 2, 1500)
    assert np.allclose(as_np, batch.numpy(), atol=1e-5)
    long = sep.separate(torch.randn(1, 3 * SR) * 0.1, mode=mode)  # 3 s > 0.5 s chunk: chunked path
    assert long.shape == (1, 2, 3 * SR) and torch.isfinite(long).all()


def test_backbone_mode_is_backbone_output():
    bb = ConvBackbone()
    sep = make(bb, **RAW)
    x = torch.randn(3, 1000)
    with torch.no_grad():
        assert torch.allclose(sep.separate(x, mode="backbone"), bb(x))


def test_full_mode_with_untrained_combiner_equals_backbone():
    bb = ConvBackbone()
    sep = make(bb, **RAW)
    x = torch.randn(2, 2000)
    with torch.no_grad():
        assert torch.allclose(sep.separate(x, mode="full"), bb(x), atol=1e-5)


def test_xcorr_mode_undoes_the_vocoder_delay():
    # v_g = v_d delayed by 5 samples: the aligned average is close to v_d; the plain average is not.
    bb = PointwiseBackbone()
    sep = make(bb)
    t = torch.arange(4000) / SR
    x = (torch.sin(2 * torch.pi * 300 * t) + 0.5 * torch.sin(2 * torch.pi * 1100 * t))[None]
    vd = bb(x).detach()
    out = sep.separate(x, mode="xcorr")
    plain = (vd + DelayVocoder().vocode(vd)) / 2
    assert si_sdr_db(out, vd).min() > 20
    assert si_sdr_db(plain, vd).max() < si_sdr_db(out, vd).min() - 10


# ------------------------------------------------------------------------------------------------------ chunking
def test_chunk_starts_cover_signal():
    for length in (1, 99, 100, 101, 1000, 1234):
        starts = chunk_starts(length, 100, 20)
        assert starts[0] == 0 and min(length, starts[-1] + 100) == length
        assert all(b - a <= 80 for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError):
        chunk_starts(10, 10, 10)


@pytest.mark.parametrize("mode", ["backbone", "full"])
def test_chunked_equals_whole_for_pointwise_backbone(mode):
    # The cross-fade weights sum to one, so a time-local pipeline gives the same output chunked or whole.
    # (full mode with the alpha=1, beta=0 initialisation is iSTFT(STFT(v_d)) = v_d, also time-local.)
    x = torch.randn(2, 5000)
    whole = make(PointwiseBackbone(), chunk_seconds=1.0).separate(x, mode=mode)
    chunked = make(PointwiseBackbone(), chunk_seconds=0.1, overlap_seconds=0.025).separate(x, mode=mode)
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_chunked_equals_whole_outside_overlaps_for_conv_backbone():
    bb = ConvBackbone()
    x = torch.randn(1, 4000)
    whole = Separator(bb, sample_rate=SR, chunk_seconds=1.0, **RAW).separate(x, mode="backbone")
    chunk, overlap = 800, 200
    chunked = Separator(bb, sample_rate=SR, chunk_seconds=chunk / SR, overlap_seconds=overlap / SR, **RAW).separate(
        x, mode="backbone")
    starts = chunk_starts(4000, chunk, overlap)
    clean = torch.ones(4000, dtype=torch.bool)
    for s in starts[1:]:
        prev_end = starts[starts.index(s) - 1] + chunk
        clean[s:prev_end] = False  # the overlap window
    assert torch.allclose(chunked[..., clean], whole[..., clean], atol=1e-5)
    # inside the overlap only the 4 edge samples of each chunk lack context, and they are faded out
    assert (chunked - whole).abs().max() < 0.05 * whole.abs().max()


def test_talker_order_is_kept_across_chunks():
    SwappingBackbone.calls = 0
    x = torch.randn(1, 6000)
    ref = SquareBackbone()(x).detach()
    out = Separator(SwappingBackbone(), sample_rate=SR, chunk_seconds=0.1, overlap_seconds=0.02, **RAW).separate(
        x, mode="backbone")
    assert SwappingBackbone.calls > 3
    assert torch.allclose(out, ref, atol=1e-5)


def test_levels_and_signs_are_kept_across_chunks():
    # Without level matching, a sign flip between neighbouring chunks cancels the cross-fade and the level jumps at
    # every seam; with it, every chunk is brought onto the first chunk's level and sign.
    x = torch.randn(1, 6000)
    want = SquareBackbone()(x).detach() * torch.tensor([-3.0, 0.5])[:, None]  # the first call's gains
    outs = {}
    for match in (False, True):
        RescalingBackbone.calls = 0
        sep = Separator(RescalingBackbone(), sample_rate=SR, chunk_seconds=0.1, overlap_seconds=0.02,
                        match_levels=match, **RAW)
        outs[match] = sep.separate(x, mode="backbone")
        assert RescalingBackbone.calls > 3
    torch.testing.assert_close(outs[True], want, atol=1e-4, rtol=1e-4)
    assert (outs[False] - want).abs().max() > 1.0  # the failure it fixes


def test_match_gains_on_silence_and_extremes():
    ref = torch.randn(1, 3, 200)
    cand = torch.stack([ref[0, 0] * -4.0, torch.zeros(200), ref[0, 2] * 1e-3])[None]
    gains = match_gains(ref, cand, max_gain=100.0)
    torch.testing.assert_close(gains[0, 0], torch.tensor(-0.25))
    assert gains[0, 1] == 1.0  # silent candidate: nothing to match
    assert gains[0, 2] == 100.0  # clipped


def test_match_sources_finds_permutation():
    a = torch.randn(3, 4, 500)
    perm = torch.stack([torch.randperm(4) for _ in range(3)])
    b = torch.stack([a[i, perm[i]] for i in range(3)]) * -2.0  # scaled and sign-flipped copies
    found = match_sources(a, b)
    for i in range(3):
        assert torch.equal(b[i, found[i]] / -2.0, a[i])


def test_peak_memory_scales_with_chunk_not_length(tmp_path):
    # A wide conv stand-in makes activations 64 channels * 4 bytes per sample: whole-signal processing of the long
    # input would need ~490 MB more than the short one; chunked, the extra is only the input/output arrays.
    script = textwrap.dedent("""
        import resource, sys, torch
        from torch import nn
        from fastsep.chunking import separate_chunked
        torch.set_num_threads(1)
        conv = nn.Sequential(nn.Conv1d(1, 64, 5, padding=2), nn.ReLU(), nn.Conv1d(64, 2, 5, padding=2))
        def sep(m):
            with torch.no_grad():
                return conv(m[:, None, :])
        n = int(sys.argv[1])
        out = separate_chunked(sep, torch.randn(1, n), chunk=16000, overlap=2000)
        assert out.shape == (1, 2, n)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsep.__file__)))
    env = dict(os.environ, FASTSEP_NO_EXTENSION="1", OMP_NUM_THREADS="1",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def peak(n):
        res = subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True, text=True, env=env,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        return int(res.stdout.strip().splitlines()[-1]) * 1024

    short, long = 480_000, 1_920_000
    grow = peak(long) - peak(short)
    io_bytes = (long - short) * 4 * 3  # float32 input + two output sources
    assert grow < 3 * io_bytes + 40e6, f"peak grew by {grow / 1e6:.0f} MB for {(long - short)} more samples"


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_arrays_raise_clear_errors():
    sep = make()
    with pytest.raises(ValueError, match="NaN"):
        sep.separate(torch.tensor([0.1, float("nan"), 0.2] * 400))
    with pytest.raises(ValueError, match="silent"):
        sep.separate(torch.zeros(1000))
    with pytest.raises(ValueError, match="empty"):
        sep.separate(torch.zeros(0))
    with pytest.raises(ValueError, match="shortest input fastsep separates is 0.1 s"):
        sep.separate(torch.randn(799))  # 0.0999 s at 8 kHz
    with pytest.raises(ValueError, match=r"\[T\] or \[B, T\]"):
        sep.separate(torch.randn(1, 2, 100))
    with pytest.raises(TypeError, match="list"):
        sep.separate([0.1, 0.2])
    with pytest.raises(ValueError, match="mode"):
        sep.separate(torch.randn(100), mode="magic")
    with pytest.raises(ValueError, match="vocoder"):
        Separator(ConvBackbone(), sample_rate=SR).separate(torch.randn(100), mode="xcorr")
    with pytest.raises(ValueError, match="combiner"):
        Separator(ConvBackbone(), DelayVocoder(), sample_rate=SR).separate(torch.randn(100), mode="full")
    with pytest.raises(ValueError, match="vocoder runs at"):
        Separator(ConvBackbone(), DelayVocoder(), sample_rate=16000)


def test_bad_files_give_clear_errors_and_no_output(tmp_path):
    from fastsep.audio import AudioError

    sep = make()
    out = tmp_path / "out"
    cases = {}
    cases["empty.wav"] = b""
    cases["text.wav"] = b"this is not audio at all\n" * 20
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    write_wav(tmp_path / "silence.wav", np.zeros(4000))
    header_only = tmp_path / "noframes.wav"
    write_wav(header_only, np.zeros(0))
    for name in ["empty.wav", "text.wav", "silence.wav", "noframes.wav"]:
        with pytest.raises(AudioError) as info:
            sep.separate_file(tmp_path / name, out, mode="backbone")
        assert name in str(info.value)
    assert not out.exists() or not any(out.iterdir())
    # NaN samples: a float WAV written with scipy
    from scipy.io import wavfile

    wavfile.write(tmp_path / "nan.wav", SR, np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        sep.separate_file(tmp_path / "nan.wav", out, mode="backbone")
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------------------ files
def test_separate_file_resamples_and_downmixes(tmp_path):
    sep = make()
    stereo = np.random.default_rng(0).uniform(-0.3, 0.3, size=(16000, 2))
    write_wav(tmp_path / "mix.wav", stereo.reshape(-1), sr=16000, channels=2)
    with pytest.warns(UserWarning, match="mono"):
        paths = sep.separate_file(tmp_path / "mix.wav", tmp_path / "out", mode="full")
    assert [os.path.basename(p) for p in paths] == ["mix_s1.wav", "mix_s2.wav"]
    for p in paths:  # back at the input's rate by default
        with wavmod.open(p) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getnframes() == 16000
    paths = sep.separate_file(tmp_path / "mix.wav", tmp_path / "out8", mode="full", output_rate="model")
    for p in paths:
        with wavmod.open(p) as w:
            assert w.getframerate() == SR and w.getnframes() == 8000
    assert not [f for f in os.listdir(tmp_path / "out") if f.startswith(".")]  # no temp files left


def test_separate_files_batches_resumes_and_reports_failures(tmp_path):
    bb = ConvBackbone()
    sep = Separator(bb, DelayVocoder(), None, sample_rate=SR)
    rng = np.random.default_rng(1)
    good = []
    for i, n in enumerate([3000, 3100, 3200, 9000, 20000]):
        p = tmp_path / f"g{i}.wav"
        write_wav(p, rng.uniform(-0.3, 0.3, n))
        good.append(str(p))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    res = sep.separate_files(good + [str(bad)], out, mode="backbone", batch_size=3, progress=False)
    assert not res.ok and list(res.failed) == [str(bad)] and "bad.wav" in res.failed[str(bad)]
    assert sorted(res.written) == sorted(good)
    # batched results match one-at-a-time results up to 16-bit rounding
    from fastsep.audio import load

    for p in good[:3]:
        mix, _ = load(p)
        want = sep.separate(mix, mode="backbone")
        for i, q in enumerate(output_paths(p, out, 2)):
            got, _ = load(q)
            assert torch.allclose(got, want[i].clamp(-1, 1) * (0.99 / max(0.99, float(want[i].abs().max()))),
                                  atol=2e-3)
    # resume: a second run skips everything already written
    res2 = sep.separate_files(good, out, mode="backbone", progress=False)
    assert res2.ok and sorted(res2.skipped) == sorted(good) and not res2.written


def test_separate_files_rank_split(tmp_path):
    sep = Separator(PointwiseBackbone(), sample_rate=SR)
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}.wav"
        write_wav(p, np.full(1000, 0.1 * (i + 1)))
        paths.append(str(p))
    seen = []
    for rank in range(2):
        res = sep.separate_files(paths, tmp_path / "o", mode="backbone", progress=False, rank=rank, world_size=2)
        seen += list(res.written)
    assert sorted(seen) == sorted(paths)
    with pytest.raises(ValueError, match="same outputs"):
        os.makedirs(tmp_path / "sub")
        write_wav(tmp_path / "sub" / "f0.wav", np.full(1000, 0.1))
        sep.separate_files(paths + [str(tmp_path / "sub" / "f0.wav")], tmp_path / "o2", mode="backbone")


# ------------------------------------------------------------------------------------------------------ bundles
def test_from_pretrained_without_default_says_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setattr(sepmod, "DEFAULT_BUNDLE", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="recipes/train_default.sh"):
        Separator.from_pretrained()
    with pytest.raises(FileNotFoundError, match="not a fastsep bundle"):
        Separator.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a mistyped path is named as such
        Separator.from_pretrained(tmp_path / "no_such_folder")


def test_a_training_checkpoint_serves_backbone_mode(tmp_path):
    # fastsep train separator writes OUT/last and OUT/best as model folders: they load as backbone-only separators,
    # the same network as the checkpoint's own, and refuse what needs a vocoder.
    from fastsep.models.convtasnet import ConvTasNet
    from fastsep.models.diffwave import DiffWave
    from fastsep.models.io import save_model

    torch.manual_seed(0)
    net = ConvTasNet(2, 8000, n_filters=4, kernel_size=4, bn_chan=3, hid_chan=5, skip_chan=2, conv_kernel_size=3,
                     n_blocks=1, n_repeats=1).eval()
    save_model(net, tmp_path / "last")
    sep = Separator.from_pretrained(tmp_path / "last")
    assert sep.modes == ("backbone",) and sep.n_src == 2 and sep.sample_rate == 8000
    x = torch.randn(1, 4000)
    with torch.no_grad():
        direct = net(x)
    out = sep.separate(x, mode="backbone")
    assert out.shape == (1, 2, 4000)
    # the separator's output is the network's, up to its per-source least-squares level and mixture consistency
    assert min(abs(float(torch.corrcoef(torch.stack([out[0, i], direct[0, i]]))[0, 1])) for i in range(2)) > 0.9
    with pytest.raises(ValueError, match="full"):
        sep.separate(x, mode="full")
    # fastsep eval of a checkpoint writes its JSON in the working folder, never into the checkpoint (training state)
    from fastsep.cli import main as cli_main
    from helpers import write_wav

    corpus = tmp_path / "corpus"
    for spk in ("a", "b"):
        write_wav(corpus / "wav8k" / "test" / spk / f"{spk}0.wav", 0.1 * torch.randn(8000).numpy(), 8000)
    (corpus / "manifest.jsonl").write_text("".join(
        f'{{"path": "wav8k/test/{spk}/{spk}0.wav", "speaker": "{spk}", "split": "test", "sample_rate": 8000, '
        f'"duration": 1.0}}\n' for spk in ("a", "b")))
    before = sorted(os.listdir(tmp_path / "last"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert cli_main(["eval", "--data", str(corpus), "--model", str(tmp_path / "last"), "--segment", "0.5",
                         "--max-items", "1", "--metrics", "si_sdr", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    assert sorted(os.listdir(tmp_path / "last")) == before and (tmp_path / "eval.json").is_file()
    save_model(DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20), tmp_path / "voc")
    with pytest.raises(ValueError, match="not a separator backbone"):
        Separator.from_pretrained(tmp_path / "voc")


def test_bundle_roundtrip(monkeypatch, tmp_path):
    import fastsep.models as models

    monkeypatch.setitem(models._WHERE, "ConvBackbone", __name__)
    sep = make(ConvBackbone())
    sep.vocoder = None  # DelayVocoder has no config: a backbone + combiner bundle
    sep.save_pretrained(tmp_path / "b", extra={"note": "test"})
    again = Separator.from_pretrained(tmp_path / "b")
    assert again.n_src == 2 and again.sample_rate == SR and again.vocoder is None
    x = torch.randn(1, 1000)
    assert torch.allclose(again.separate(x, mode="backbone"), sep.separate(x, mode="backbone"))
    assert fastsep.Separator is Separator
