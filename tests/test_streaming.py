"""Streaming separation (issue 13): Separator.stream() against offline chunked separation, its stated latency,
talker order across windows, bad input; `fastsep separate --stream` over files and a real pipe; thread choice."""
import io
import os
import struct
import subprocess
import sys
import wave as wavmod

import numpy as np
import pytest
import torch

from fastsep import threads
from fastsep.models.combiner import Combiner
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.diffwave import DiffWave
from fastsep.separator import Separator
from fastsep.stream_io import PcmDecoder, PcmEncoder, StreamFormat, StreamFormatError, read_wav_header
from helpers import SwappingSquare

SR = 8000


def random_blocks(x, seed, most=700):
    """``x [.., T]`` cut into blocks of random sizes (1..most samples), as a live source delivers them."""
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < x.shape[-1]:
        k = int(rng.integers(1, most))
        yield x[..., pos:pos + k]
        pos += k


def offline(sep, x, window, hop, mode="backbone", seed=0):
    """Offline chunked separation with the chunk layout a stream of (window, hop) uses."""
    ref = Separator(sep.backbone, sep.vocoder, sep.combiner, sample_rate=SR, n_src=sep.n_src,
                    chunk_seconds=window, overlap_seconds=window - hop)
    return ref.separate(x, mode=mode, seed=seed)


def stream_all(sep, x, seed=0, **kw):
    """Stream ``x`` in random blocks; checks after every push that exactly received - latency samples are out."""
    st = sep.stream(seed=seed, **kw)
    outs, pushed = [], 0
    for block in random_blocks(x, seed=len(outs) + x.shape[-1]):
        outs.append(st.push(block))
        pushed += block.shape[-1]
        assert st.emitted == max(0, pushed - st.latency_samples)
        assert sum(o.shape[-1] for o in outs) == st.emitted
    outs.append(st.finish())
    return torch.cat(outs, dim=-1), st


@pytest.fixture(scope="module")
def backbone_sep():
    torch.manual_seed(3)
    return Separator(ConvTasNet.small(2, SR), sample_rate=SR, n_src=2)


@pytest.mark.parametrize("length", [800, 5000, 8000 + 123, 12345])  # one window; regular end; pulled-back end
def test_backbone_stream_equals_offline_chunking(backbone_sep, length):
    x = 0.1 * torch.randn(length)
    streamed, st = stream_all(backbone_sep, x, mode="backbone", window_seconds=0.1, hop_seconds=0.05)
    assert st.latency_samples == 800 and st.latency_seconds == pytest.approx(0.1)
    ref = offline(backbone_sep, x, 0.1, 0.05)
    assert streamed.shape == ref.shape == (2, length)
    torch.testing.assert_close(streamed, ref, atol=1e-5, rtol=1e-4)


def test_stream_shorter_than_a_window_is_one_chunk(backbone_sep):
    x = 0.1 * torch.randn(1200)  # above the 0.1 s minimum, below the 0.2 s window
    st = backbone_sep.stream("backbone", window_seconds=0.2, hop_seconds=0.1)
    assert st.push(x).shape == (2, 0)  # nothing is final before a whole window has arrived
    out = st.finish()
    torch.testing.assert_close(out, backbone_sep.separate(x, mode="backbone"), atol=1e-5, rtol=1e-4)


def test_full_mode_stream_equals_offline_with_the_same_seed():
    torch.manual_seed(5)
    vocoder = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20, sample_rate=SR,
                       hop_length=128)
    comb = Combiner(n_fft=128, hop_length=32, hidden=(4, 4, 4, 4, 4))
    with torch.no_grad():  # an F that uses the vocoder's estimate (the untrained F returns the backbone's exactly)
        for p in comb.parameters():
            p.add_(0.03 * torch.randn_like(p))
    sep = Separator(ConvTasNet.small(2, SR), vocoder, comb, sample_rate=SR, n_src=2)
    x = 0.1 * torch.randn(6000)
    streamed, st = stream_all(sep, x, seed=11, mode="full", window_seconds=0.5, hop_seconds=0.375)
    assert st.latency_samples == 4000
    ref = offline(sep, x, 0.5, 0.375, mode="full", seed=11)
    torch.testing.assert_close(streamed, ref, atol=1e-4, rtol=1e-3)
    other_seed = offline(sep, x, 0.5, 0.375, mode="full", seed=12)
    assert (other_seed - ref).abs().max() > 1e-4  # the seed does reach the output, so the match above is not luck


def test_talker_order_is_kept_across_windows():
    bb = SwappingSquare()
    sep = Separator(bb, sample_rate=SR, n_src=2, input_rms=None, mixture_consistent=False)
    x = torch.randn(4000)
    streamed, _ = stream_all(sep, x, mode="backbone", window_seconds=0.1, hop_seconds=0.05)
    assert bb.calls > 5
    # The first window names them (x, x²); every later one, flipped or not, is matched back to that order.
    torch.testing.assert_close(streamed, torch.stack([x, x * x]), atol=1e-5, rtol=1e-5)


def test_batch_of_streams_and_numpy_blocks(backbone_sep):
    x = 0.1 * torch.randn(2, 3000)
    st = backbone_sep.stream("backbone", window_seconds=0.1, hop_seconds=0.05)
    outs = [st.push(b.numpy()) for b in random_blocks(x, 1)] + [st.finish()]
    assert all(isinstance(o, np.ndarray) for o in outs)
    streamed = np.concatenate(outs, axis=-1)
    for b in range(2):  # each row equals its own stream
        single, _ = stream_all(backbone_sep, x[b], mode="backbone", window_seconds=0.1, hop_seconds=0.05)
        np.testing.assert_allclose(streamed[b], single.numpy(), atol=1e-5)


def test_stream_bad_input_errors(backbone_sep):
    with pytest.raises(ValueError, match="window_seconds must be at least"):
        backbone_sep.stream("backbone", window_seconds=0.05, hop_seconds=0.01)
    with pytest.raises(ValueError, match="hop_seconds < window_seconds"):
        backbone_sep.stream("backbone", window_seconds=0.2, hop_seconds=0.2)
    with pytest.raises(ValueError, match="needs a vocoder"):
        backbone_sep.stream("full")
    st = backbone_sep.stream("backbone")
    with pytest.raises(ValueError, match=r"\[n\] or \[B, n\]"):
        st.push(torch.zeros(1, 2, 10))
    st.push(torch.zeros(100))
    with pytest.raises(ValueError, match="first block's shape"):
        st.push(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="NaN"):
        st.push(torch.tensor([0.0, float("nan")]))
    with pytest.raises(TypeError, match="real"):
        st.push(torch.zeros(4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="shortest input"):
        st.finish()  # 100 samples in all: below the 0.1 s minimum
    with pytest.raises(RuntimeError, match="after finish"):
        st.push(torch.zeros(10))


# ------------------------------------------------------------------------------------------------ wire formats
def test_wav_stream_header_and_pcm_round_trip():
    fmt = StreamFormat(8000, 2, "s16")
    enc = PcmEncoder(fmt)
    talkers = np.array([[0.5, -0.25, 1.5], [0.0, 0.125, -2.0]], np.float32)
    data = enc.encode(talkers)
    assert enc.clipped == 2  # 1.5 and -2.0
    parsed = read_wav_header(io.BytesIO(enc.wav_header() + data))
    assert (parsed.rate, parsed.channels, parsed.encoding) == (8000, 2, "s16")
    dec = PcmDecoder(fmt)
    mono = np.concatenate([dec.decode(data[:3]), dec.decode(data[3:])])  # a frame split across reads
    np.testing.assert_allclose(mono, [(0.5 + 0) / 2, (-0.25 + 0.125) / 2, (32767 / 32768 - 1) / 2], atol=1e-4)
    with pytest.raises(StreamFormatError, match="not a WAV"):
        read_wav_header(io.BytesIO(b"OggS" + bytes(40)))
    bad = b"RIFF" + struct.pack("<I", 0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    with pytest.raises(StreamFormatError, match="unsupported WAV encoding"):
        read_wav_header(io.BytesIO(bad + b"data" + bytes(4)))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle")
    Separator(ConvTasNet.small(2, SR), sample_rate=SR, n_src=2).save_pretrained(path)
    return str(path)


def wav_bytes(x, sr=SR):
    buf = io.BytesIO()
    with wavmod.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.round(np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())
    return buf.getvalue()


def test_cli_stream_wav_file_matches_offline(bundle, tmp_path, capsys):
    from fastsep import cli

    x = (0.1 * torch.randn(6000)).numpy()
    (tmp_path / "in.wav").write_bytes(wav_bytes(x))
    rc = cli.main(["separate", "--stream", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"),
                   "--model", bundle, "--mode", "backbone", "--window", "0.1", "--hop", "0.05"])
    assert rc == 0
    assert "algorithmic latency 100 ms" in capsys.readouterr().err
    with wavmod.open(str(tmp_path / "out.wav"), "rb") as w:  # the header was rewritten with the real sizes
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, SR, 6000)
        got = np.frombuffer(w.readframes(6000), "<i2").reshape(-1, 2).T / 32768.0
    quantised = np.round(x * 32768) / 32768  # what the model saw after 16-bit PCM
    sep = Separator.from_pretrained(bundle, chunk_seconds=0.1, overlap_seconds=0.05)
    ref = sep.separate(quantised.astype(np.float32), mode="backbone")
    np.testing.assert_allclose(got, ref, atol=2e-4)


def test_cli_stream_raw_pipe_at_another_rate(bundle, tmp_path):
    x = (0.1 * torch.randn(16000)).numpy()  # 1 s at 16 kHz: resampled to the model's 8 kHz and back
    raw = np.round(x * 32767).astype("<i2").tobytes()
    env = dict(os.environ, FASTSEP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "fastsep", "separate", "--stream", "--model", bundle, "--mode",
                           "backbone", "--window", "0.1", "--hop", "0.05", "--input-format", "raw",
                           "--raw-rate", "16000"], input=raw,
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    out = np.frombuffer(proc.stdout, "<i2").reshape(-1, 2)
    assert out.shape == (16000, 2)  # same rate and length as the input, two talkers interleaved
    assert "with resampling" in proc.stderr.decode()
    # The same as resampling the whole input to 8 kHz (scipy's resample_poly, which the streaming resamplers
    # reproduce block by block), separating offline in the stream's chunks, and resampling each talker back.
    from scipy.signal import resample_poly

    model_in = resample_poly(np.frombuffer(raw, "<i2") / 32768.0, 1, 2).astype(np.float32)
    sep = Separator.from_pretrained(bundle, chunk_seconds=0.1, overlap_seconds=0.05)
    ref = resample_poly(sep.separate(model_in, mode="backbone").astype(np.float64), 2, 1, axis=-1)
    np.testing.assert_allclose(out.T / 32768.0, ref, atol=3e-4)


def test_cli_stream_errors(bundle, tmp_path, capsys):
    from fastsep import cli

    (tmp_path / "bad.wav").write_bytes(b"RIFX" + bytes(100))
    assert cli.main(["separate", "--stream", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "o.wav"), "--model",
                     bundle, "--mode", "backbone", "--input-format", "wav"]) == 2
    assert "not a WAV stream" in capsys.readouterr().err
    assert cli.main(["separate", "--stream", "a", "b", "--model", bundle, "--mode", "backbone"]) == 2
    assert "one input" in capsys.readouterr().err
    assert cli.main(["separate", "--stream", "-", "--model", bundle, "--mode", "backbone", "--window", "0.2",
                     "--hop", "0.3"]) == 2
    assert "hop_seconds < window_seconds" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ threads
def test_default_threads_divide_the_given_cores(monkeypatch):
    for name in ("FASTSEP_NUM_THREADS", "OMP_NUM_THREADS", "TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6}, raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    assert threads.available_cores() == 7
    assert threads.default_threads() == 7
    assert threads.default_threads(workers=2) == 3
    assert threads.default_threads(workers=16) == 1
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: 2.5)  # docker --cpus 2.5
    assert threads.available_cores() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun, which also writes OMP_NUM_THREADS=1 by default
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # set by the user: honoured
    assert threads.default_threads() == 2
    monkeypatch.setenv("FASTSEP_NUM_THREADS", "5")
    assert threads.default_threads() == 5
    monkeypatch.setenv("FASTSEP_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="FASTSEP_NUM_THREADS"):
        threads.default_threads()


@pytest.mark.parametrize("env, torch_first, expected", [
    ({}, False, ("1000", "GOMP_SPINCOUNT=1000 (set by fastsep)")),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, False, (None, "OMP_WAIT_POLICY=PASSIVE")),  # the user's choice stands
    ({"GOMP_SPINCOUNT": "50"}, False, ("50", "GOMP_SPINCOUNT=50")),
    ({}, True, (None, "OpenMP's default (spin 300000 times, then sleep)")),  # too late: OpenMP already loaded
])
def test_openmp_spin_is_bounded_only_when_nobody_chose(env, torch_first, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import os\n" + ("import torch\n" if torch_first else "") +
            "import fastsep.threads as t\nprint(os.environ.get('GOMP_SPINCOUNT'), '|', t.wait_policy())")
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    spin, policy = (part.strip() for part in out.split("|"))
    assert (None if spin == "None" else spin, policy) == expected


def test_cgroup_quota_parsing(tmp_path):
    (tmp_path / "a").write_text("max 100000\n")
    (tmp_path / "b").write_text("150000 100000\n")
    assert threads._cgroup_quota_cores(str(tmp_path / "a")) is None
    assert threads._cgroup_quota_cores(str(tmp_path / "b")) == 1.5
    assert threads._cgroup_quota_cores(str(tmp_path / "missing")) is None


def test_limited_restores_the_thread_count():
    before = torch.get_num_threads()
    with threads.limited(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_default_threads_count_hyperthreads_of_a_core_once(monkeypatch):
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    # 4 cores with 2 hyperthreads each (siblings 0,4 / 1,5 / 2,6 / 3,7)
    monkeypatch.setattr(threads, "_thread_siblings", lambda cpu: f"{cpu % 4},{cpu % 4 + 4}")
    assert threads.available_cores() == 8 and threads.physical_cores() == 4
    assert threads.default_threads() == 4
    monkeypatch.setenv(threads.ENV_THREADS, "6")  # an explicit request wins
    assert threads.default_threads() == 6
    monkeypatch.delenv(threads.ENV_THREADS)
    # torchrun's automatic OMP_NUM_THREADS=1 is not a choice: the physical cores are split between its workers
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.default_threads() == 2
    monkeypatch.setattr(threads, "_thread_siblings", lambda cpu: None)  # topology unreadable: every CPU counts
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert threads.physical_cores() == 8
