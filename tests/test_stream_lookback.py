"""Look-back streaming (issue 13): short hops out of long windows. Exactness against offline separation for a model
whose reach the windows cover, the stated latency after every push, talker order, the CLI default, bad input."""
import wave as wavmod

import numpy as np
import pytest
import torch
from torch import nn

from fastsep.models.convtasnet import ConvTasNet
from fastsep.separator import Separator
from fastsep.stream_lookback import LookbackStream
from helpers import SwappingSquare

SR = 8000


class FirTalkers(nn.Module):
    """Two fixed FIR filters of the mixture as two 'talkers': every output sample depends on the input within
    ``reach`` samples on each side, so a window that covers that much context and look-ahead gives exactly what the
    whole signal gives."""

    def __init__(self, reach: int):
        super().__init__()
        self.config = {"n_src": 2}
        self.conv = nn.Conv1d(1, 2, 2 * reach + 1, padding=reach, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(2, 1, 2 * reach + 1, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.conv(x.unsqueeze(1))


def plain(backbone):
    # no levelling, no mixture-consistent gain: the model's output as it is
    return Separator(backbone, sample_rate=SR, n_src=2, input_rms=None, mixture_consistent=False)


def blocks(x, seed, most=300):
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < x.shape[-1]:
        k = int(rng.integers(1, most))
        yield x[..., pos:pos + k]
        pos += k


def expected_emitted(received, hop, lookahead, min_samples):
    """What a look-back stream must have returned after ``received`` samples: every whole hop whose look-ahead has
    arrived, once the separator's minimum input has."""
    k = 0
    while received >= max((k + 1) * hop + lookahead, min_samples):
        k += 1
    return k * hop


def stream_all(stream, x, seed=0):
    outs, pushed = [], 0
    for block in blocks(x, seed):
        outs.append(stream.push(block))
        pushed += block.shape[-1]
        assert stream.emitted == expected_emitted(pushed, stream.hop, stream.lookahead, stream.min_samples)
        assert sum(o.shape[-1] for o in outs) == stream.emitted
        assert pushed - stream.emitted < max(stream.latency_samples, stream.min_samples)
    outs.append(stream.finish())
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("length", [800, 3000, 4001])
@pytest.mark.parametrize("hop,lookahead", [(0.05, 0.05), (0.1, 0.0), (0.03, 0.02)])
def test_lookback_equals_offline_when_windows_cover_the_reach(length, hop, lookahead):
    reach = int(0.02 * SR)  # 160 samples each side: covered by 0.1 s of context and >= 0.02 s look-ahead
    sep = plain(FirTalkers(reach))
    x = 0.1 * torch.randn(length)
    st = sep.stream("backbone", context_seconds=0.1, hop_seconds=hop, lookahead_seconds=lookahead)
    assert isinstance(st, LookbackStream)
    assert st.latency_samples == round((hop + lookahead) * SR)
    streamed = stream_all(st, x, seed=length)
    assert streamed.shape == (2, length)
    whole = sep.separate(x, mode="backbone")
    # Exact when the look-ahead covers the reach for every emitted sample, the 2 ms (16-sample) seam fade included:
    # there the previous window's estimate is used too, and it must also have seen `reach` samples past it.
    # (An input no longer than the separator's minimum is one window, whole, in every push.)
    if lookahead * SR >= reach + st.crossfade or length <= st.min_samples:
        torch.testing.assert_close(streamed, whole, atol=1e-6, rtol=1e-5)
    else:  # too little look-ahead: the samples near each window's end differ (a mutant that ignores it passes nothing)
        assert float((streamed - whole).abs().max()) > 1e-3


def test_context_shorter_than_the_reach_changes_the_result():
    # the same model and layout with 10 ms of context (80 samples < 160): the emitted samples lack their past
    sep = plain(FirTalkers(160))
    x = 0.1 * torch.randn(3000)
    streamed = stream_all(sep.stream("backbone", context_seconds=0.01, hop_seconds=0.05, lookahead_seconds=0.05), x)
    assert float((streamed - sep.separate(x, mode="backbone")).abs().max()) > 1e-3


def test_lookback_keeps_talker_order():
    bb = SwappingSquare()
    sep = plain(bb)
    x = torch.randn(4000)
    streamed = stream_all(sep.stream("backbone", context_seconds=0.2, hop_seconds=0.05, lookahead_seconds=0.05), x)
    assert bb.calls == 4000 // 400  # one window per 50 ms hop, half of them named the other way round
    torch.testing.assert_close(streamed, torch.stack([x, x * x]), atol=1e-6, rtol=1e-6)


def test_backbone_default_is_lookback_at_100_ms():
    sep = plain(FirTalkers(8))
    st = sep.stream("backbone")
    assert isinstance(st, LookbackStream) and st.latency_seconds == pytest.approx(0.1)
    assert st.window_samples == 2 * SR  # 1.9 s of context + 0.05 s hop + 0.05 s look-ahead
    assert "look-back" in st.layout
    # offline-equal windows on request, as before
    assert not isinstance(sep.stream("backbone", window_seconds=0.2, hop_seconds=0.1), LookbackStream)
    with pytest.raises(ValueError, match="not both"):
        sep.stream("backbone", window_seconds=0.2, context_seconds=1.0)


def test_batch_and_numpy_blocks():
    sep = plain(FirTalkers(40))
    x = 0.1 * torch.randn(2, 2500)
    st = sep.stream("backbone", context_seconds=0.1, hop_seconds=0.05, lookahead_seconds=0.01)
    outs = [st.push(b.numpy()) for b in blocks(x, 3)] + [st.finish()]
    assert all(isinstance(o, np.ndarray) for o in outs)
    streamed = np.concatenate(outs, axis=-1)
    for b in range(2):
        single = sep.stream("backbone", context_seconds=0.1, hop_seconds=0.05, lookahead_seconds=0.01)
        np.testing.assert_allclose(streamed[b], stream_all(single, x[b]).numpy(), atol=1e-6)


def test_lookback_bad_input():
    sep = plain(FirTalkers(8))
    for kw in ({"hop_seconds": 0.0}, {"context_seconds": -1.0}, {"lookahead_seconds": -0.1}):
        with pytest.raises(ValueError, match="need hop_seconds > 0"):
            sep.stream("backbone", **{"context_seconds": 1.0, **kw})
    with pytest.raises(TypeError, match="seed"):
        LookbackStream(sep, seed=1.5)
    st = sep.stream("backbone")
    with pytest.raises(ValueError, match=r"\[n\] or \[B, n\]"):
        st.push(torch.zeros(1, 2, 10))
    st.push(torch.zeros(100))
    with pytest.raises(ValueError, match="NaN"):
        st.push(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="shortest input"):
        st.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        st.push(torch.zeros(10))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle")
    Separator(ConvTasNet.small(2, SR), sample_rate=SR, n_src=2).save_pretrained(path)
    return str(path)


def test_cli_stream_default_is_lookback(bundle, tmp_path, capsys):
    from fastsep import cli

    x = (0.1 * torch.randn(20000)).numpy()
    pcm = np.round(np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2")
    with wavmod.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR), w.writeframes(pcm.tobytes())
    assert cli.main(["separate", "--stream", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"),
                     "--model", bundle, "--mode", "backbone", "--context", "1.0"]) == 0
    err = capsys.readouterr().err
    assert "algorithmic latency 100 ms" in err and "look-back" in err
    with wavmod.open(str(tmp_path / "out.wav"), "rb") as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).T / 32768.0
    # the library's look-back stream on what the model saw (16-bit PCM) gives the same talkers
    st = Separator.from_pretrained(bundle).stream("backbone", context_seconds=1.0)
    ref = np.concatenate([st.push(pcm / 32768.0)] + [st.finish()], axis=-1)
    assert got.shape == ref.shape == (2, 20000)
    np.testing.assert_allclose(got, ref, atol=2e-4)
