"""The Kokoro corpus builder's parts that need no 92 MB model: the phoneme rewrite, the talker draw, the integer ->
float convolution rewrite (on a tiny dynamically quantised model), and the channel its corpus.json names."""
import json

import numpy as np
import pytest

from fastsep.data.channels import talker_channels
from fastsep.data.kokoro import espeak_to_kokoro, make_kokoro_talkers


def test_espeak_ipa_becomes_kokoro_symbols():
    # "The bay, high house, toy boat, judge church" as espeak-ng en-us writes it, over two lines
    ipa = "ðə bˈeɪ hˈaɪ hˈaʊs tˈɔɪ bˈoʊt\ndʒˈʌdʒ tʃˈɜːtʃ ɡˈoʊ"
    out = espeak_to_kokoro(ipa)
    assert out == "ðə bˈA hˈI hˈWs tˈY bˈOt, ʤˈʌʤ ʧˈɜʧ ɡˈO"
    assert espeak_to_kokoro("ɡɹˈəʊ") == "ɡɹˈQ"  # British "grow"


def test_talkers_are_deterministic_blends():
    packs = ["a", "b", "c"]
    first, again = make_kokoro_talkers(12, packs, seed=3), make_kokoro_talkers(12, packs, seed=3)
    assert first == again
    assert first != make_kokoro_talkers(12, packs, seed=4)
    assert len({t["name"] for t in first}) == 12
    for t in first:
        assert t["engine"] == "kokoro" and set(t["blend"]) == set(packs)
        assert abs(sum(t["blend"].values()) - 1) < 1e-3 and min(t["blend"].values()) >= 0
        assert 0.85 <= t["speed"] <= 1.15
    with pytest.raises(ValueError):
        make_kokoro_talkers(0, packs)


def test_a_second_corpus_names_its_talkers_apart():
    packs = ["a", "b", "c"]
    first, second = make_kokoro_talkers(5, packs, seed=0), make_kokoro_talkers(5, packs, seed=1, prefix="kb")
    assert [t["name"] for t in first] == [f"k{i:03d}" for i in range(5)]
    assert [t["name"] for t in second] == [f"kb{i:03d}" for i in range(5)]
    assert [t["blend"] for t in second] == [t["blend"] for t in make_kokoro_talkers(5, packs, seed=1)]
    for bad in ("", "1k", "k/", "k b"):
        with pytest.raises(ValueError, match="prefix"):
            make_kokoro_talkers(3, packs, prefix=bad)


def test_kokoro_talkers_share_one_channel(tmp_path):
    talkers = make_kokoro_talkers(4, ["a", "b"])
    (tmp_path / "corpus.json").write_text(json.dumps({"talkers": talkers}))
    assert set(talker_channels(tmp_path).values()) == {"engine:kokoro"}


def test_float_conv_rewrite_matches_the_integer_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    quantization = pytest.importorskip("onnxruntime.quantization")
    from onnx import TensorProto, helper, numpy_helper

    from fastsep.data.kokoro import float_conv_model

    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[2, 2], dilations=[1]),
         helper.make_node("LeakyRelu", ["y"], ["z"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, None])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    float_path, int_path = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(model, str(float_path))
    # uint8 weights: onnxruntime has no CPU ConvInteger for int8 weights (Kokoro's export uses uint8 too)
    quantization.quantize_dynamic(str(float_path), str(int_path), op_types_to_quantize=["Conv"],
                                  weight_type=quantization.QuantType.QUInt8)
    assert "ConvInteger" in {n.op_type for n in onnx.load(str(int_path)).graph.node}

    rewritten = float_conv_model(int_path, tmp_path / "out" / "fast.onnx")
    ops = {n.op_type for n in onnx.load(str(rewritten)).graph.node}
    assert "ConvInteger" not in ops and "Conv" in ops

    x = rng.standard_normal((1, 4, 64)).astype(np.float32)
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for p in (float_path, int_path, rewritten)}
    scale = np.abs(run[float_path]).max()
    # the rewrite keeps the int8 weights but not the 8-bit input: at least as close to the float model
    err_int = np.abs(run[int_path] - run[float_path]).max() / scale
    err_new = np.abs(run[rewritten] - run[float_path]).max() / scale
    assert err_int < 0.05 and err_new < 0.05
    assert err_new <= err_int + 1e-6
    assert np.abs(run[rewritten] - run[int_path]).max() / scale < 0.05


class _RecordingSession:
    """Stands in for the onnxruntime session: records its feeds, answers with a second of a tone."""

    def __init__(self):
        self.feeds = []

    def run(self, _outputs, feeds):
        self.feeds.append(feeds)
        return [np.sin(np.arange(24000, dtype=np.float32) * 0.05)[None]]


def test_synthesis_feeds_the_blended_style_for_the_token_count(monkeypatch, tmp_path):
    import shutil

    from fastsep.data import kokoro

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    session = _RecordingSession()
    packs = {"a": np.tile(np.arange(8, dtype=np.float32)[:, None], (1, 4)),  # row r of pack a: all r
             "b": np.full((8, 4), 100.0, np.float32)}
    vocab = {c: i + 1 for i, c in enumerate("ðəbˈAhIWstYOɪnkɹl ,")}
    monkeypatch.setattr(kokoro, "_STATE", {"session": session, "packs": packs, "vocab": vocab})
    talker = {"name": "k000", "engine": "kokoro", "blend": {"a": 0.75, "b": 0.25}, "speed": 1.1, "accent": "en-us"}
    audio = kokoro.synthesise_kokoro(talker, "the bay")
    assert audio.shape == (24000,) and audio.dtype == np.float32
    feed = session.feeds[0]
    tokens = feed["tokens"][0]
    assert tokens[0] == 0 and tokens[-1] == 0 and len(tokens) > 2
    n = min(len(tokens) - 2, 8)  # the packs hold 8 rows: longer texts use the last one
    assert np.allclose(feed["style"], 0.75 * (n - 1) + 0.25 * 100.0)
    assert np.allclose(feed["speed"], [1.1])
    kokoro.write_kokoro_wav(talker, "the bay", str(tmp_path / "x.wav"))
    from scipy.io import wavfile
    rate, pcm = wavfile.read(tmp_path / "x.wav")
    assert rate == kokoro.KOKORO_RATE and len(pcm) == 24000 and pcm.dtype == np.int16
