"""Real voices of twenty languages: KLettres' recorded letters and syllables, as a fastsep corpus.

KDE's alphabet trainer KLettres ships its sounds in Debian's klettres-data (main, GPL): for each of about twenty
languages, native speakers recorded the alphabet (``<lang>/alpha/*.ogg``) and a set of syllables
(``<lang>/syllab/*.ogg``), mono Ogg Vorbis at 44.1 kHz, one letter or syllable per file, ~0.4-2 s each. That is
isolated speech, not sentences, but from talkers of other languages, ages and studios than any other voice of
fastsep's corpora: a source of timbres, ~43 min in all (Malayalam alone holds ~21 min of syllables).

Each language folder becomes one training talker ``kl_<lang>`` (``en`` and ``en_GB`` are different recordings).
Who recorded which folder is not stated per file; a folder recorded by two people makes a "talker" of two voices,
which only makes a mixture harder, never wrong. A talker's files are trimmed, brought to 8 kHz, capped at
``max_seconds`` (so that the one large folder does not outweigh the rest) and joined with short pauses into ~8 s
utterances; every 16th utterance goes to a ``valid`` split; talkers with under ``min_seconds`` are left out.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

__all__ = ["DATA_DIR", "PACKAGES", "language_files", "build_klettres"]

DATA_DIR = Path("/usr/share/klettres")
PACKAGES = ("klettres-data",)
_KINDS = ("alpha", "syllab")


def language_files(data_dir: Path = DATA_DIR) -> Dict[str, List[Path]]:
    """``{language: [sound files]}``: every language folder holding letter or syllable recordings."""
    found: Dict[str, List[Path]] = {}
    for lang in sorted(p for p in Path(data_dir).iterdir() if p.is_dir()):
        files = sorted(f for kind in _KINDS for f in (lang / kind).glob("*.ogg") if f.is_file())
        if files:
            found[lang.name] = files
    return found


def build_klettres(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
                   data_dir: Path = DATA_DIR, min_seconds: float = 20.0, max_seconds: float = 180.0,
                   valid_every: int = 16, progress: bool = False) -> Path:
    """The ``klettres`` source in ``out`` (see the module docstring); returns the manifest path."""
    import soundfile

    from .corpus import trim_silence
    from .voices import _finish, _resampled, _write_cast_member

    data_dir = Path(data_dir)
    languages = language_files(data_dir) if data_dir.is_dir() else {}
    if not languages:
        raise RuntimeError(f"klettres voices need {' '.join(PACKAGES)} (apt-get install -y {' '.join(PACKAGES)}); "
                           f"no recordings under {data_dir}")
    if max_seconds < min_seconds:
        raise ValueError(f"max_seconds ({max_seconds}) must not be below min_seconds ({min_seconds})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rate = 8000
    records: List[dict] = []
    kept: Dict[str, dict] = {}
    dropped: Dict[str, float] = {}
    for index, (lang, files) in enumerate(languages.items()):
        rng = np.random.default_rng([seed, 31, index])
        lines, failed, total = [], 0, 0
        for k in rng.permutation(len(files)):  # a random subset when the folder holds more than max_seconds
            path = files[int(k)]
            try:
                x, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
            except (OSError, RuntimeError, ValueError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
                failed += 1
                if progress:
                    print(f"skipped {path}: {exc}", file=sys.stderr)
                continue
            x = trim_silence(_resampled(x.mean(axis=1), sr, rate), rate)
            if len(x) < rate // 8:
                continue
            lines.append(x.astype(np.float32))
            total += len(x)
            if total >= max_seconds * rate:
                break
        records += _write_cast_member(out, f"kl_{lang}", lines, rate, rng, sample_rates=sample_rates,
                                      utterance_s=utterance_s, valid_every=valid_every, min_seconds=min_seconds,
                                      source="klettres", failed=failed, kept=kept, dropped=dropped,
                                      progress=progress)
    if len(kept) < 2:
        raise RuntimeError(f"{data_dir}: fewer than two languages with {min_seconds:.0f} s of speech")
    info = {"source": "klettres", "package": "klettres-data (KDE KLettres: letters and syllables)", "seed": seed,
            "sample_rates": list(sample_rates), "talkers": kept, "left_out": dropped, "max_seconds": max_seconds,
            "split": "train (every 16th utterance valid)"}
    return _finish(out, records, info)
