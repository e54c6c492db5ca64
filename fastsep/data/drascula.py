"""Real voices from a third talkie adventure game: the English and Spanish casts of Drascula, as a fastsep corpus.

Debian ships the freeware release of Drascula: The Vampire Strikes Back with its speech (packages drascula, the
English dubbing, and drascula-spanish, the Spanish one; in main, free to redistribute). The other language packages
reuse the English recordings (the Italian files are the English ones, sample for sample), so two dubbings with
different actors remain. Every spoken line is a file ``<prefix><line>.ALS`` in ``/usr/share/scummvm/drascula/<lang>``:
raw unsigned 8-bit mono PCM at 11025 Hz, 32 bytes of header and trailer around the samples (as ScummVM plays them).

Who speaks a line follows from the prefix, the one the game's talk routine of each character opens:

* a bare number: John Hacker, the hero (also on the telephone);
* ``VB`` von Braun, ``I`` Igor, ``BJ`` B.J. (the hero's girlfriend), ``T`` the bartender, ``P`` the pianist,
  ``B`` the drunk, ``L`` the werewolf, ``E`` the musician.

``D`` lines are left out: Drascula's routine opens them, but so do the blind man's (from line 58 on), one of the
bartender's and a few narrations, so their owner is not known from the name. ``S`` files are sound effects.
One actor may voice several characters of a dubbing; like the other game casts, such talkers only make a mixture
harder, never wrong. Each character of each dubbing becomes a training talker (``dras_<lang>_<character>``), its
lines trimmed, brought to 8 kHz and joined into ~8 s utterances; every 16th utterance goes to a ``valid`` split;
characters with under ``min_seconds`` of speech are left out.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

__all__ = ["DATA_DIR", "PACKAGES", "DUBBINGS", "CHARACTERS", "read_line", "line_speakers", "build_drascula"]

DATA_DIR = Path("/usr/share/scummvm/drascula")
#: dubbing folder -> the Debian package that installs its speech
DUBBINGS = {"en": "drascula", "es": "drascula-spanish"}
PACKAGES = tuple(DUBBINGS.values())
#: file-name prefix -> character
CHARACTERS = {"": "hacker", "VB": "vonbraun", "I": "igor", "BJ": "bj", "T": "bartender", "P": "pianist",
              "B": "drunk", "L": "werewolf", "E": "musician"}
RATE = 11025
_HEADER = 32  # bytes before and after the samples
_LINE = re.compile(r"^([A-Z]*)(\d+)\.ALS$", re.IGNORECASE)


def read_line(path: Path) -> np.ndarray:
    """One ``.ALS`` line as float32 samples in [-1, 1) at 11025 Hz; a clear error for a file too short to hold one."""
    raw = Path(path).read_bytes()
    if len(raw) <= 2 * _HEADER:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a Drascula speech line")
    pcm = np.frombuffer(raw[_HEADER:len(raw) - _HEADER], dtype=np.uint8)
    return (pcm.astype(np.float32) - 128.0) / 128.0


def line_speakers(folder: Path) -> Dict[str, List[Path]]:
    """``{character: [line files]}`` of one dubbing's folder, by file-name prefix (see the module docstring)."""
    lines: Dict[str, List[Path]] = defaultdict(list)
    for path in sorted(Path(folder).iterdir()):
        match = _LINE.match(path.name)
        if match is None:
            continue
        character = CHARACTERS.get(match.group(1).upper())
        if character is not None:
            lines[character].append(path)
    return dict(lines)


def build_drascula(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
                   data_dir: Path = DATA_DIR, min_seconds: float = 45.0, valid_every: int = 16,
                   progress: bool = False) -> Path:
    """The ``drascula`` source in ``out`` (see the module docstring); returns the manifest path."""
    from .corpus import trim_silence
    from .voices import _finish, _resampled, _write_cast_member

    data_dir = Path(data_dir)
    dubbings = [lang for lang in DUBBINGS if (data_dir / lang).is_dir()]
    if not dubbings:
        raise RuntimeError(f"drascula voices need {' '.join(PACKAGES)} (apt-get install -y {' '.join(PACKAGES)}); "
                           f"no dubbing folder under {data_dir}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    kept: Dict[str, dict] = {}
    dropped: Dict[str, float] = {}
    rate = 8000
    for d_index, lang in enumerate(dubbings):
        speakers = line_speakers(data_dir / lang)
        for c_index, character in enumerate(sorted(speakers)):
            rng = np.random.default_rng([seed, 29, d_index, c_index])
            lines, failed = [], 0
            for path in speakers[character]:
                try:
                    x = trim_silence(_resampled(read_line(path), RATE, rate), rate)
                except (OSError, ValueError) as exc:
                    failed += 1
                    if progress:
                        print(f"skipped {path}: {exc}", file=sys.stderr)
                    continue
                if len(x) >= rate // 4:
                    lines.append(x)
            records += _write_cast_member(out, f"dras_{lang}_{character}", lines, rate, rng,
                                          sample_rates=sample_rates, utterance_s=utterance_s,
                                          valid_every=valid_every, min_seconds=min_seconds, source="drascula",
                                          failed=failed, kept=kept, dropped=dropped, progress=progress)
    if len(kept) < 2:
        raise RuntimeError(f"{data_dir}: fewer than two characters with {min_seconds:.0f} s of speech")
    info = {"source": "drascula", "game": "Drascula: The Vampire Strikes Back (Debian drascula, drascula-spanish)",
            "dubbings": dubbings, "seed": seed, "sample_rates": list(sample_rates), "talkers": kept,
            "left_out": dropped, "split": "train (every 16th utterance valid)"}
    return _finish(out, records, info)
