"""``fastsep corpus synth OUT``: a synthetic multi-talker English speech corpus made with espeak-ng and flite.

No speech corpus can be downloaded here, so talkers are synthesised: each talker is a fixed choice of engine, voice,
accent/variant, pitch and speaking rate, and speaks sentences bundled with fastsep (``sentences.txt``, public domain).
Talkers are split speaker-disjointly into train/valid/test. Layout of OUT::

    wav8k/<split>/<talker>/<talker>_u0000.wav     (16-bit PCM, silences trimmed)
    wav16k/<split>/<talker>/<talker>_u0000.wav
    manifest.jsonl     one line per file: path, speaker, split, sample_rate, duration, text
    corpus.json        talker definitions and build settings

The build is resumable: files already present are kept (and re-listed in the manifest). Requires the
``espeak-ng`` and ``flite`` programs (Debian/Ubuntu: ``apt-get install -y espeak-ng flite``).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..models.io import atomic_write_bytes

__all__ = ["build_corpus", "make_talkers", "load_sentences", "trim_silence", "add_arguments", "main"]

SENTENCES = Path(__file__).with_name("sentences.txt")

# espeak-ng's built-in English voices (mbrola voices are excluded: they need the separate mbrola package).
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc"]
# Variants that change the voice timbre without robotic or whispered effects.
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
                   "klatt2", "klatt3", "klatt4", "adam", "Andy", "Annie", "Alicia", "Andrea", "anika", "belinda",
                   "benjamin", "boris", "david", "edward", "iven", "john", "linda", "max", "michel", "norbert",
                   "paul", "pedro", "steph", "travis", "victor", "zac"]
# flite's 16 kHz general-purpose voices and their typical mean F0 in Hz (the centre of the per-talker F0 draw).
FLITE_VOICES = {"kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
TOOLS = {"espeak": ("espeak-ng", "espeak-ng"), "flite": ("flite", "flite")}  # engine -> (program, Debian package)


def load_sentences(path: Path = SENTENCES) -> List[str]:
    """The bundled sentences (comment lines starting with '#' and blank lines dropped)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def check_tools(engines: Sequence[str] = ("espeak", "flite")) -> None:
    """Raise RuntimeError naming the package to install when a synthesiser program is missing."""
    missing = [TOOLS[e] for e in engines if shutil.which(TOOLS[e][0]) is None]
    if missing:
        names = " ".join(pkg for _, pkg in missing)
        raise RuntimeError(f"fastsep corpus synth needs {', '.join(p for p, _ in missing)}, which is not installed; "
                           f"install it with: apt-get install -y {names}")


def make_talkers(n_talkers: int, seed: int = 0, flite_share: float = 0.2) -> List[dict]:
    """``n_talkers`` distinct talker definitions (deterministic in ``seed``).

    About ``flite_share`` of them are flite voices with a drawn mean F0 and duration stretch; the rest are
    espeak-ng (accent, variant) pairs, all distinct, each with its own pitch, speed and word gap.
    """
    if not isinstance(n_talkers, int) or n_talkers < 1:
        raise ValueError(f"n_talkers must be a positive int, got {n_talkers!r}")
    rng = np.random.default_rng(seed)
    n_flite = int(round(n_talkers * flite_share)) if n_talkers >= 5 else min(1, n_talkers - 1)
    n_espeak = n_talkers - n_flite
    pairs = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    if n_espeak > len(pairs):
        raise ValueError(f"at most {len(pairs) + n_flite} talkers can be made distinct, asked for {n_talkers}")
    order = rng.permutation(len(pairs))[:n_espeak]
    talkers = []
    for k, idx in enumerate(order):
        accent, variant = pairs[idx]
        talkers.append({"name": f"e{k:03d}", "engine": "espeak", "voice": f"{accent}+{variant}",
                        "pitch": int(rng.integers(25, 76)), "speed": int(rng.integers(140, 196)),
                        "gap": int(rng.integers(0, 4))})
    voices = list(FLITE_VOICES)
    for k in range(n_flite):
        voice = voices[k % len(voices)]
        talkers.append({"name": f"f{k:03d}", "engine": "flite", "voice": voice,
                        "f0_mean": round(FLITE_VOICES[voice] * float(rng.uniform(0.8, 1.25)), 1),
                        "stretch": round(float(rng.uniform(0.85, 1.2)), 3)})
    return talkers


def assign_splits(talkers: List[dict], seed: int = 0, held_out: float = 0.1) -> Dict[str, str]:
    """Speaker-disjoint split: ``held_out`` of talkers each to valid and test (at least 2 each when possible)."""
    names = [t["name"] for t in talkers]
    rng = np.random.default_rng(seed + 1)
    rng.shuffle(names)
    n = len(names)
    n_eval = max(2, int(round(n * held_out))) if n >= 6 else (1 if n >= 3 else 0)
    splits = {name: "test" for name in names[:n_eval]}
    splits.update({name: "valid" for name in names[n_eval:2 * n_eval]})
    splits.update({name: "train" for name in names[2 * n_eval:]})
    return splits


def trim_silence(x: np.ndarray, sr: int, threshold_db: float = -45.0, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing frames (10 ms) quieter than ``threshold_db`` below the loudest frame."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-20)
    active = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    if active.size == 0:
        return x[:0]
    pad = int(pad_s * sr)
    return x[max(0, active[0] * hop - pad): min(len(x), (active[-1] + 1) * hop + pad)]


def _synthesise(talker: dict, text: str, wav_path: str, model_dir: Optional[str] = None) -> None:
    if talker["engine"] == "kokoro":
        from .kokoro import write_kokoro_wav
        write_kokoro_wav(talker, text, wav_path, model_dir)
        return
    if talker["engine"] == "espeak":
        cmd = ["espeak-ng", "-v", talker["voice"], "-p", str(talker["pitch"]), "-s", str(talker["speed"]),
               "-g", str(talker["gap"]), "-w", wav_path, text]
    else:
        cmd = ["flite", "-voice", talker["voice"], "--setf", f"int_f0_target_mean={talker['f0_mean']}",
               "--setf", f"duration_stretch={talker['stretch']}", "-t", text, "-o", wav_path]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # espeak-ng exits 0 even on a bad option, so the output file is the real success test.
    if done.returncode != 0 or not os.path.isfile(wav_path) or os.path.getsize(wav_path) <= 44:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed ({done.returncode}): {done.stderr.strip()[:300]}")


def _texts(talker_index: int, seed: int, sentences: List[str]):
    """Endless deterministic stream of 1-2 sentence utterances for one talker (same on every resume)."""
    rng = np.random.default_rng([seed, 7, talker_index])
    while True:
        k = 1 + int(rng.random() < 0.35)
        yield " ".join(sentences[int(i)] for i in rng.integers(0, len(sentences), size=k))


def _build_talker(job: dict) -> List[dict]:
    """Synthesise one talker's utterances until its share of audio is reached; return manifest records."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    talker, split, out = job["talker"], job["split"], Path(job["out"])
    rates, target, seed = job["sample_rates"], job["seconds"], job["seed"]
    name = talker["name"]
    records, total = [], 0.0
    texts = _texts(job["index"], seed, job["sentences"])
    for u in range(job["max_utterances"]):
        if total >= target:
            break
        text = next(texts)
        rels = {sr: f"wav{sr // 1000}k/{split}/{name}/{name}_u{u:04d}.wav" for sr in rates}
        if all((out / rel).is_file() for rel in rels.values()):  # resume: keep what exists
            durs = {}
            for sr, rel in rels.items():
                file_sr, data = wavfile.read(out / rel, mmap=True)
                durs[sr] = len(data) / file_sr
        else:
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                raw_path = os.path.join(tmp, "raw.wav")
                _synthesise(talker, text, raw_path, job.get("model_dir"))
                raw_sr, raw = wavfile.read(raw_path)
            x = raw.astype(np.float64) / 32768.0 if raw.dtype == np.int16 else raw.astype(np.float64)
            if x.ndim == 2:
                x = x.mean(axis=1)
            x = trim_silence(x, raw_sr)
            if len(x) < raw_sr // 10:  # the synthesiser produced (almost) nothing: skip this text
                continue
            x = x * (0.5 / max(1e-9, np.abs(x).max()))  # peak-normalise; mixing sets levels later
            durs = {}
            for sr, rel in rels.items():
                g = np.gcd(raw_sr, sr)
                y = resample_poly(x, sr // g, raw_sr // g) if sr != raw_sr else x
                pcm = np.round(np.clip(y, -1, 1) * 32767).astype(np.int16)
                dest = out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                wavfile.write(buf, sr, pcm)
                atomic_write_bytes(dest, buf.getvalue())
                durs[sr] = len(pcm) / sr
        for sr, rel in rels.items():
            records.append({"path": rel, "speaker": name, "split": split, "sample_rate": sr,
                            "duration": round(durs[sr], 4), "text": text})
        total += durs[rates[0]]
    return records


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def build_corpus(out, sample_rates: Sequence[int] = (8000, 16000), n_talkers: int = 120, hours: float = 3.0,
                 jobs: Optional[int] = None, seed: int = 0, progress: Optional[bool] = None) -> Path:
    """Build (or complete) the synthetic corpus in ``out``; returns the manifest path.

    Args:
        out: output folder (created).
        sample_rates: rates to write every utterance at.
        n_talkers: distinct talkers (espeak-ng and flite voices with their own pitch/rate).
        hours: total speech duration at one rate, shared equally between talkers.
        jobs: worker processes (default: all cores).
        seed: makes talkers, splits and texts reproducible; a resumed build must use the same seed.
        progress: tqdm bar over talkers; default on when stderr is a terminal.
    """
    check_tools()
    return build_from_talkers(out, make_talkers(n_talkers, seed), sample_rates, hours, jobs, seed, progress)


def build_from_talkers(out, talkers: List[dict], sample_rates: Sequence[int], hours: float,
                       jobs: Optional[int] = None, seed: int = 0, progress: Optional[bool] = None,
                       model_dir: Optional[str] = None, extra_info: Optional[dict] = None) -> Path:
    """Synthesise ``talkers`` (entries naming their ``engine``) into ``out``: speaker-disjoint splits, ``hours`` of
    speech shared equally, manifest and ``corpus.json`` (``extra_info`` added to it) written atomically at the end.
    ``model_dir`` is handed to engines that keep a model on disk (Kokoro)."""
    from tqdm import tqdm

    rates = sorted({int(r) for r in sample_rates})
    if not rates or any(r <= 0 for r in rates):
        raise ValueError(f"sample_rates must be positive ints, got {sample_rates!r}")
    if not hours > 0:
        raise ValueError(f"hours must be positive, got {hours!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = assign_splits(talkers, seed)
    sentences = load_sentences()
    seconds = hours * 3600.0 / len(talkers)
    jobs_list = [{"talker": t, "split": splits[t["name"]], "out": str(out), "sample_rates": rates,
                  "seconds": seconds, "seed": seed, "index": i, "sentences": sentences, "model_dir": model_dir,
                  "max_utterances": max(10, int(seconds / 0.5) + 10)} for i, t in enumerate(talkers)]
    workers = max(1, jobs or os.cpu_count() or 1)
    show = sys.stderr.isatty() if progress is None else progress
    records: List[dict] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for recs in tqdm(pool.map(_build_talker, jobs_list), total=len(jobs_list), desc="talkers",
                         disable=not show):
            records.extend(recs)
    manifest = out / "manifest.jsonl"
    _write_atomic(manifest, "".join(json.dumps(r) + "\n" for r in records))
    info = {"seed": seed, "hours": hours, "sample_rates": rates, "n_talkers": len(talkers), **(extra_info or {}),
            "splits": {s: sorted(n for n, v in splits.items() if v == s) for s in ("train", "valid", "test")},
            "talkers": talkers}
    _write_atomic(out / "corpus.json", json.dumps(info, indent=1) + "\n")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (an existing partial build is completed)")
    parser.add_argument("--talkers", type=int, default=120, help="number of distinct talkers (default 120)")
    parser.add_argument("--hours", type=float, default=3.0, help="hours of speech in total (default 3)")
    parser.add_argument("--sample-rates", type=int, nargs="+", default=[8000, 16000], help="rates to write")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="8 talkers, 20 seconds each: for tests")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_build(command: str, build, n_talkers: int, sample_rates: Sequence[int]) -> int:
    """Run ``build()`` (returns the manifest path) for the CLI ``fastsep corpus <command>``: a clear error and status
    1 on a bad setting or a missing tool, else the corpus's size on stdout and status 0."""
    try:
        manifest = build()
    except (RuntimeError, ValueError) as exc:
        print(f"fastsep corpus {command}: {exc}", file=sys.stderr)
        return 1
    lines = manifest.read_text().splitlines()
    total = sum(json.loads(x)["duration"] for x in lines) / max(1, len(sample_rates))
    print(f"wrote {manifest} ({len(lines)} files, {total / 3600:.2f} h of speech per rate, {n_talkers} talkers)")
    return 0


def main(args: argparse.Namespace) -> int:
    n_talkers, hours = (8, 8 * 20 / 3600.0) if args.tiny else (args.talkers, args.hours)
    return run_build("synth", lambda: build_corpus(args.out, args.sample_rates, n_talkers, hours, args.jobs, args.seed,
                                                   progress=False if args.quiet else None),
                     n_talkers, args.sample_rates)
