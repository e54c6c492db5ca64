"""Voice sources beyond espeak-ng/flite: real recorded speech and the festival engine, as fastsep corpora.

fastsep's promise is separating voices it has never heard, so its yardstick needs voices from *sources* that no
training data uses, not only unseen talkers of the training engines. Two such sources can be installed from Debian's
package registry (no download at run time):

* ``recorded``: studio recordings of professional voice talent shipped as telephone prompts (8 kHz, 16-bit PCM or
  GSM 06.10). The Digium core sound sets (asterisk-core-sounds-{en,es,fr,it,ru}-wav; talkers Allison (en and es),
  June, Carlo and the IvrvoiceRU talker) are *training* talkers; three third-party prompt sets recorded by other
  people in other studios (asterisk-prompt-it-menardi-wav, asterisk-prompt-es-co, asterisk-prompt-fr-armelle) are the
  *test* talkers. Prompts are short (0.5-4 s), so each talker's prompts are shuffled and joined with natural pauses
  into utterances of about 8 s.
* ``game``: the spoken dialogue of the puzzle game Fish Fillets NG (fillets-ng-data-cs, fillets-ng-data-nl; GPL-2):
  the two fish of its Czech and of its Dutch dubbing, four actors recorded in studio, about 37-41 minutes each
  (22.05 kHz Ogg Vorbis). Lines are named ``<level>-<character>-<line>.ogg``; ``m`` is the small fish and ``v`` the
  big one in both dubbings. The side characters (a few lines each, some played through voice effects) are left out.
  Every talker is a *training* talker (1/16 of each one's utterances are held out as a ``valid`` split): it doubles the real voices B and GM learn from, while the test talkers of
  ``recorded`` and ``festival`` stay unseen.
* ``adventure``: the studio cast of the talkie game Flight of the Amazon Queen, read from its resource archive
  (:mod:`fastsep.data.adventure`): 27 characters, 3.4 h, training talkers with a ``valid`` split.
* ``steelsky``: the studio cast of the talkie game Beneath a Steel Sky (CD), read from its ``sky.dsk`` with the
  speaker of each line recovered from the game's scripts where that can be done statically
  (:mod:`fastsep.data.steelsky`): Foster, Joey and named characters, plus one pseudo-talker per conversation script.
  Labels are approximate: training talkers only, with a ``valid`` split.
* ``drascula``: the English and the Spanish cast of the talkie game Drascula, one training talker per character and
  dubbing (:mod:`fastsep.data.drascula`): 16 characters, ~1.2 h, with a ``valid`` split.
* ``klettres``: KDE KLettres' recorded letters and syllables of about twenty languages, one training talker per
  language (:mod:`fastsep.data.klettres`): isolated speech, ~35 min after a per-talker cap, with a ``valid`` split.
* ``festival``: festival's English diphone voices kal and ked, the HTS voice slt and the Italian diphone voices lp and
  pc reading fastsep's English sentences. Festival is never used for training: every talker is a test talker.

Layout and manifest are those of :mod:`fastsep.data.corpus` (``wav8k/<split>/<talker>/...``, ``manifest.jsonl``),
with an extra ``source`` field per line, so every reader of fastsep corpora reads these too. Builds resume.
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
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..models.io import atomic_write_bytes
from .corpus import load_sentences, trim_silence

__all__ = ["RECORDED_TALKERS", "FESTIVAL_TALKERS", "GAME_TALKERS", "SOURCES", "build_recorded", "build_festival",
           "build_game", "add_arguments", "main"]

SOUNDS = Path("/usr/share/asterisk/sounds")

#: talker -> (split, folders under SOUNDS, Debian packages). Allison recorded both the en and es sets: one talker.
RECORDED_TALKERS: Dict[str, tuple] = {
    "rec_allison": ("train", ["en_US_f_Allison", "es_MX_f_Allison"],
                    ["asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav"]),
    "rec_june": ("train", ["fr_CA_f_June"], ["asterisk-core-sounds-fr-wav"]),
    "rec_carlo": ("train", ["it_IT_m_Carlo"], ["asterisk-core-sounds-it-wav"]),
    "rec_ivrru": ("train", ["ru_RU_f_IvrvoiceRU"], ["asterisk-core-sounds-ru-wav"]),
    "rec_menardi": ("test", ["it_IT_f_Menardi"], ["asterisk-prompt-it-menardi-wav"]),
    "rec_esco": ("test", ["es"], ["asterisk-prompt-es-co"]),
    "rec_armelle": ("test", ["fr"], ["asterisk-prompt-fr-armelle"]),
}
#: talker -> (festival voice, Debian package). All are test talkers.
FESTIVAL_TALKERS: Dict[str, tuple] = {
    "fest_kal": ("kal_diphone", "festvox-kallpc16k"),
    "fest_ked": ("ked_diphone", "festvox-kdlpc16k"),
    "fest_slt": ("cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
    "fest_lp": ("lp_diphone", "festvox-italp16k"),
    "fest_pc": ("pc_diphone", "festvox-itapc16k"),
}
GAME_SOUNDS = Path("/usr/share/games/fillets-ng/sound")
#: talker -> (split, dubbing language folder, character code, Debian package)
GAME_TALKERS: Dict[str, tuple] = {
    "game_cs_small": ("train", "cs", "m", "fillets-ng-data-cs"),
    "game_cs_big": ("train", "cs", "v", "fillets-ng-data-cs"),
    "game_nl_small": ("train", "nl", "m", "fillets-ng-data-nl"),
    "game_nl_big": ("train", "nl", "v", "fillets-ng-data-nl"),
}
SOURCES = ("recorded", "festival", "game", "adventure", "steelsky", "drascula", "klettres")
PROMPT_EXTENSIONS = (".wav", ".gsm")


def _decode(path: Path) -> tuple:
    """(float64 mono samples, rate) of a prompt: PCM WAV through scipy, GSM 06.10 through sox."""
    from scipy.io import wavfile

    if path.suffix == ".wav":
        sr, data = wavfile.read(path)
    else:
        if shutil.which("sox") is None:
            raise RuntimeError("decoding GSM prompts needs sox (apt-get install -y sox)")
        # GSM 06.10 prompts are 8 kHz mono
        return sox_decode([str(path)], 8000), 8000
    x = data.astype(np.float64)
    if data.dtype == np.int16:
        x /= 32768.0
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x, int(sr)


def sox_decode(source: List[str], rate: int, data: Optional[bytes] = None) -> np.ndarray:
    """Mono float64 samples at ``rate`` of what sox reads from ``source`` (its input arguments: a path, or
    ``["-t", "mp3", "-"]`` with ``data`` on stdin). Raw PCM comes back on stdout: a piped WAV header cannot carry its
    length."""
    done = subprocess.run(["sox", *source, "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", str(rate),
                           "-"], input=data, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"sox could not decode {source[0] if data is None else 'its input'}: "
                           f"{done.stderr.decode(errors='replace').strip()[:200] or 'sox failed'}")
    return np.frombuffer(done.stdout, dtype="<i2").astype(np.float64) / 32768.0


def _prompt_files(folders: Sequence[str], sounds: Path) -> List[Path]:
    files: List[Path] = []
    for folder in folders:
        base = sounds / folder
        # only the folder's own prompts: the digits/letters subfolders are single words, mostly clipped
        files.extend(sorted(p for p in base.iterdir() if p.suffix in PROMPT_EXTENSIONS and p.is_file()))
    return files


def _write_wav(dest: Path, x: np.ndarray, sr: int) -> None:
    from scipy.io import wavfile

    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    buf = io.BytesIO()
    wavfile.write(buf, sr, pcm)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, buf.getvalue())


def _resampled(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return x
    g = np.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _joined_utterances(prompts: List[np.ndarray], sr: int, rng: np.random.Generator,
                       target_s: float) -> List[np.ndarray]:
    """Prompts in a random order, joined with 0.15-0.5 s pauses into utterances of at least ``target_s``."""
    out, current, length = [], [], 0
    for k in rng.permutation(len(prompts)):
        current.append(prompts[int(k)])
        length += len(prompts[int(k)])
        if length >= target_s * sr:
            out.append(current)
            current, length = [], 0
    if current and length >= 0.5 * target_s * sr:
        out.append(current)
    joined = []
    for parts in out:
        pieces = []
        for i, p in enumerate(parts):
            if i:
                pieces.append(np.zeros(int(rng.uniform(0.15, 0.5) * sr)))
            pieces.append(p)
        joined.append(np.concatenate(pieces))
    return joined


def _write_utterances(out: Path, name: str, utterances: List[np.ndarray], rate: int, sample_rates: Sequence[int],
                      splits: Sequence[str], source: str) -> List[dict]:
    """Write a talker's joined utterances (peak 0.5) at every rate, utterance ``u`` into ``splits[u]``, skipping
    files a previous build wrote; returns their manifest records."""
    records = []
    for u, (x, where) in enumerate(zip(utterances, splits)):
        x = x * (0.5 / max(1e-9, np.abs(x).max()))
        for sr in sample_rates:
            rel = f"wav{sr // 1000}k/{where}/{name}/{name}_u{u:04d}.wav"
            y = _resampled(x, rate, sr)
            if not (out / rel).is_file():
                _write_wav(out / rel, y, sr)
            records.append({"path": rel, "speaker": name, "split": where, "sample_rate": sr,
                            "duration": round(len(y) / sr, 4), "text": "", "source": source})
    return records


def _write_cast_member(out: Path, name: str, lines: List[np.ndarray], rate: int, rng: np.random.Generator, *,
                       sample_rates: Sequence[int], utterance_s: float, valid_every: int, min_seconds: float,
                       source: str, failed: int, kept: Dict[str, dict], dropped: Dict[str, float],
                       progress: bool) -> List[dict]:
    """One game character's trimmed lines (at ``rate``) as a training talker: joined into utterances, every
    ``valid_every``-th into ``valid``, written at every rate and noted in ``kept``; with under ``min_seconds`` of
    speech, noted in ``dropped`` and nothing written. Returns the manifest records."""
    seconds = sum(len(x) for x in lines) / rate
    if seconds < min_seconds:
        dropped[name] = round(seconds, 1)
        return []
    kept[name] = {"lines": len(lines), "seconds": round(seconds, 1), "undecodable": failed}
    utterances = _joined_utterances(lines, rate, rng, utterance_s)
    splits = ["valid" if valid_every and u % valid_every == valid_every - 1 else "train"
              for u in range(len(utterances))]
    records = _write_utterances(out, name, utterances, rate, sample_rates, splits, source)
    if progress:
        print(f"{name}: {len(lines)} lines, {seconds:.0f} s", file=sys.stderr)
    return records


def _finish(out: Path, records: List[dict], info: dict) -> Path:
    manifest = out / "manifest.jsonl"
    atomic_write_bytes(manifest, "".join(json.dumps(r) + "\n" for r in records).encode())
    atomic_write_bytes(out / "corpus.json", (json.dumps(info, indent=1) + "\n").encode())
    return manifest


def missing_packages(source: str, sounds: Path = SOUNDS) -> List[str]:
    """Debian packages a source needs that are not installed (judged by their files/programs)."""
    if source == "recorded":
        return sorted({pkg for _, folders, pkgs in RECORDED_TALKERS.values()
                       if not all((sounds / f).is_dir() for f in folders) for pkg in pkgs})
    if source == "festival":
        need = [] if shutil.which("text2wave") else ["festival"]
        voices = Path("/usr/share/festival/voices")
        found = {p.name for p in voices.glob("*/*")} if voices.is_dir() else set()
        return need + sorted(pkg for voice, pkg in FESTIVAL_TALKERS.values() if voice not in found)
    if source == "game":
        base = GAME_SOUNDS if sounds == SOUNDS else Path(sounds)
        return sorted({pkg for _, lang, ch, pkg in GAME_TALKERS.values() if not _game_lines(base, lang, ch)})
    if source == "adventure":
        from .adventure import ARCHIVE, PACKAGES

        return [] if ARCHIVE.is_file() else list(PACKAGES)
    if source == "steelsky":
        from .steelsky import DATA_DIR, PACKAGES as SKY_PACKAGES

        return [] if (DATA_DIR / "sky.dsk").is_file() else list(SKY_PACKAGES)
    if source == "drascula":
        from .drascula import DATA_DIR as DRAS_DIR, DUBBINGS

        return [pkg for lang, pkg in DUBBINGS.items() if not (DRAS_DIR / lang).is_dir()]
    if source == "klettres":
        from .klettres import DATA_DIR as KL_DIR, PACKAGES as KL_PACKAGES

        return [] if KL_DIR.is_dir() else list(KL_PACKAGES)
    raise ValueError(f"unknown voice source {source!r}; choose one of {SOURCES}")


def _game_lines(sounds: Path, lang: str, character: str) -> List[Path]:
    """The dialogue lines of one character in one dubbing (``<level>-<character>-<line>.ogg``)."""
    return sorted(p for p in sounds.glob(f"*/{lang}/*.ogg") if p.name.count("-") >= 2
                  and p.name.split("-")[1] == character)


def build_game(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
               sounds: Path = GAME_SOUNDS, talkers: Optional[Dict[str, tuple]] = None, valid_every: int = 16,
               progress: bool = False) -> Path:
    """The ``game`` source in ``out`` (see the module docstring); returns the manifest path. Every
    ``valid_every``-th utterance of a training talker goes to the ``valid`` split (0: none), so that training on real
    voices can be validated on real voices (unseen utterances of seen talkers)."""
    import soundfile

    talkers = GAME_TALKERS if talkers is None else talkers
    sounds = Path(sounds)
    absent = sorted({pkg for _, lang, ch, pkg in talkers.values() if not _game_lines(sounds, lang, ch)})
    if absent:
        raise RuntimeError(f"game voices need {' '.join(absent)} (apt-get install -y {' '.join(absent)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    for t_index, (name, (split, lang, character, _)) in enumerate(sorted(talkers.items())):
        rng = np.random.default_rng([seed, t_index])
        lines = []
        for path in _game_lines(sounds, lang, character):
            try:
                x, sr = soundfile.read(str(path), dtype="float64", always_2d=True)
            except (RuntimeError, ValueError, soundfile.LibsndfileError) as exc:
                print(f"skipping {path}: {exc}", file=sys.stderr)
                continue
            # the game's lines come at 22.05 kHz; bring each to 8 kHz once, before joining
            x = trim_silence(_resampled(x.mean(axis=1), int(sr), 8000), 8000)
            if len(x) >= 8000 // 4:
                lines.append(x)
        utterances = _joined_utterances(lines, 8000, rng, utterance_s)
        # every valid_every-th utterance of a training talker is held out: a real-speech validation set
        splits = ["valid" if split == "train" and valid_every and u % valid_every == valid_every - 1 else split
                  for u in range(len(utterances))]
        records += _write_utterances(out, name, utterances, 8000, sample_rates, splits, "game")
        if progress:
            print(f"{name}: {len(lines)} lines", file=sys.stderr)
    info = {"source": "game", "seed": seed, "sample_rates": list(sample_rates),
            "talkers": {n: {"split": s, "language": l, "character": c, "package": p}
                        for n, (s, l, c, p) in talkers.items()}}
    return _finish(out, records, info)


def build_recorded(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
                   sounds: Path = SOUNDS, talkers: Optional[Dict[str, tuple]] = None,
                   progress: bool = False) -> Path:
    """The ``recorded`` source in ``out`` (see the module docstring); returns the manifest path."""
    talkers = RECORDED_TALKERS if talkers is None else talkers
    sounds = Path(sounds)
    absent = [name for name, (_, folders, _) in talkers.items() if not all((sounds / f).is_dir() for f in folders)]
    if absent:
        pkgs = sorted({p for n in absent for p in talkers[n][2]})
        raise RuntimeError(f"recorded voices need {' '.join(pkgs)} (apt-get install -y {' '.join(pkgs)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    for t_index, (name, (split, folders, _)) in enumerate(sorted(talkers.items())):
        rng = np.random.default_rng([seed, t_index])
        prompts, rate = [], None
        for path in _prompt_files(folders, sounds):
            try:
                x, sr = _decode(path)
            except (RuntimeError, ValueError) as exc:
                print(f"skipping {path}: {exc}", file=sys.stderr)
                continue
            rate = rate or sr
            x = trim_silence(_resampled(x, sr, rate), rate)
            if len(x) >= rate // 4:
                prompts.append(x)
        utterances = _joined_utterances(prompts, rate or 8000, rng, utterance_s)
        records += _write_utterances(out, name, utterances, rate, sample_rates, [split] * len(utterances),
                                     "recorded")
        if progress:
            print(f"{name}: {len(prompts)} prompts", file=sys.stderr)
    info = {"source": "recorded", "seed": seed, "sample_rates": list(sample_rates),
            "talkers": {n: {"split": s, "folders": f, "packages": p} for n, (s, f, p) in talkers.items()}}
    return _finish(out, records, info)


def build_festival(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, seconds_per_talker: float = 180.0,
                   progress: bool = False) -> Path:
    """The ``festival`` source in ``out``: every talker a test talker; returns the manifest path."""
    from scipy.io import wavfile

    absent = missing_packages("festival")
    if absent:
        raise RuntimeError(f"festival voices need {' '.join(absent)} (apt-get install -y {' '.join(absent)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sentences = load_sentences()
    records: List[dict] = []
    for t_index, (name, (voice, _)) in enumerate(sorted(FESTIVAL_TALKERS.items())):
        rng = np.random.default_rng([seed, 11, t_index])
        total, u, skipped = 0.0, 0, 0
        while total < seconds_per_talker and u < 400:
            if skipped > 50:
                raise RuntimeError(f"text2wave ({voice}) produced no audio for 50 sentences")
            text = " ".join(sentences[int(i)] for i in rng.integers(0, len(sentences), size=2))
            rels = {sr: f"wav{sr // 1000}k/test/{name}/{name}_u{u:04d}.wav" for sr in sample_rates}
            if not all((out / r).is_file() for r in rels.values()):
                with tempfile.TemporaryDirectory(dir=out) as tmp:
                    txt, raw = os.path.join(tmp, "t.txt"), os.path.join(tmp, "raw.wav")
                    Path(txt).write_text(text + "\n")
                    done = subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-o", raw, txt],
                                          capture_output=True, text=True, timeout=300)
                    if done.returncode != 0 or not os.path.isfile(raw):
                        raise RuntimeError(f"text2wave ({voice}) failed: {done.stderr.strip()[:300]}")
                    if os.path.getsize(raw) <= 44:  # some diphone voices give up on a sentence: take another
                        skipped += 1
                        continue
                    raw_sr, data = wavfile.read(raw)
                x = trim_silence(data.astype(np.float64) / 32768.0, raw_sr)
                if len(x) < raw_sr // 10:  # (almost) nothing spoken: take another sentence
                    skipped += 1
                    continue
                x = x * (0.5 / max(1e-9, np.abs(x).max()))
                for sr, rel in rels.items():
                    _write_wav(out / rel, _resampled(x, raw_sr, sr), sr)
            for sr, rel in rels.items():
                file_sr, data = wavfile.read(out / rel, mmap=True)
                records.append({"path": rel, "speaker": name, "split": "test", "sample_rate": sr,
                                "duration": round(len(data) / file_sr, 4), "text": text, "source": "festival"})
            total += records[-1]["duration"]
            u += 1
        if progress:
            print(f"{name}: {u} utterances, {total:.0f} s", file=sys.stderr)
    info = {"source": "festival", "seed": seed, "sample_rates": list(sample_rates),
            "talkers": {n: {"voice": v, "package": p, "split": "test"} for n, (v, p) in FESTIVAL_TALKERS.items()}}
    return _finish(out, records, info)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=SOURCES,
                        help="recorded (telephone-prompt recordings), festival (an engine for testing only), game "
                             "(a game's dubbed dialogue: four real training talkers), adventure (the studio cast of "
                             "Flight of the Amazon Queen: about thirty real training talkers) or steelsky (the studio "
                             "cast of Beneath a Steel Sky: approximate talker labels, for training only) or drascula "
                             "(the English and Spanish casts of Drascula: 16 real training talkers) or klettres "
                             "(KLettres' letters and syllables: about twenty real talkers of twenty languages)")
    parser.add_argument("out", help="output folder (a partial build is completed)")
    parser.add_argument("--sample-rates", type=int, nargs="+", default=[8000], help="rates to write (default 8000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-talker lines")
    parser.add_argument("--game-dir", default=None,
                        help="steelsky: the folder holding sky.dnr, sky.dsk and sky.cpt; drascula: the folder holding "
                             "the en/ and es/ dubbings; klettres: the folder of the language folders (default: where "
                             "Debian's packages install them), e.g. a package unpacked with dpkg-deb -x")


def main(args: argparse.Namespace) -> int:
    try:
        if args.source == "recorded":
            manifest = build_recorded(args.out, args.sample_rates, args.seed, progress=not args.quiet)
        elif args.source == "game":
            manifest = build_game(args.out, args.sample_rates, args.seed, progress=not args.quiet)
        elif args.source == "adventure":
            from .adventure import build_adventure

            manifest = build_adventure(args.out, args.sample_rates, args.seed, progress=not args.quiet)
        elif args.source == "steelsky":
            from .steelsky import DATA_DIR, build_steelsky

            manifest = build_steelsky(args.out, args.sample_rates, args.seed, progress=not args.quiet,
                                      data_dir=Path(args.game_dir) if args.game_dir else DATA_DIR)
        elif args.source == "drascula":
            from .drascula import DATA_DIR as DRAS_DIR, build_drascula

            manifest = build_drascula(args.out, args.sample_rates, args.seed, progress=not args.quiet,
                                      data_dir=Path(args.game_dir) if args.game_dir else DRAS_DIR)
        elif args.source == "klettres":
            from .klettres import DATA_DIR as KL_DIR, build_klettres

            manifest = build_klettres(args.out, args.sample_rates, args.seed, progress=not args.quiet,
                                      data_dir=Path(args.game_dir) if args.game_dir else KL_DIR)
        else:
            manifest = build_festival(args.out, args.sample_rates, args.seed, progress=not args.quiet)
    except (RuntimeError, ValueError) as exc:
        print(f"fastsep corpus voices: {exc}", file=sys.stderr)
        return 1
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    per_split: Dict[str, float] = {}
    for r in recs:
        per_split[r["split"]] = per_split.get(r["split"], 0.0) + r["duration"] / len(args.sample_rates)
    summary = ", ".join(f"{s} {h / 3600:.2f} h" for s, h in sorted(per_split.items()))
    print(f"wrote {manifest} ({len(recs)} files; {summary})")
    return 0
