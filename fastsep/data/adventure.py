"""Real voices from a talkie adventure game: the cast of Flight of the Amazon Queen, as a fastsep corpus.

Debian ships the freeware CD release of Flight of the Amazon Queen (package flight-of-the-amazon-queen, in main;
its data are free to redistribute). Its ``queen.1c`` resource archive holds ~6700 spoken lines of about thirty
characters, acted by a studio cast, as MP3 files (``*.SB``). fastsep reads that archive directly:

* the archive (ScummVM's compressed layout): ``QTBL``, a version string, a compression byte, the entry count
  (uint16 BE), then per entry a 12-byte name, a bundle byte, offset and size (uint32 BE);
* who speaks a line: dialogue lines are named ``<talk key:2 digits><node:4 hex>`` + ``J`` (Joe, the hero) or ``P``
  (the person Joe talks to) + a counter; each dialogue file ``<CHARACTER><n>.DOG`` states its talk key in its header
  (int16 BE at byte 24), so a ``P`` line belongs to the character that names the dialogue file. Joe also speaks
  every ``JOE*.SB`` line. Cut-scene lines (``C*``) mix several speakers and are left out.

Each character becomes a training talker (several dialogue files of one character are one talker), its lines
trimmed, resampled to 8 kHz by sox (MP3 decoding needs libsox-fmt-mp3) and joined into ~8 s utterances like the
other voice sources; every 16th utterance goes to a ``valid`` split. Characters with under ``min_seconds`` of
speech are left out. A voice actor may play more than one character; such talkers are rare and only make a
mixture harder, never wrong.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["ARCHIVE", "PACKAGES", "read_archive", "line_speakers", "build_adventure"]

ARCHIVE = Path("/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")
PACKAGES = ("flight-of-the-amazon-queen", "libsox-fmt-mp3")
_DOG_TALK_KEY = 24  # the .DOG header (20 bytes) then levelMax, uniqueKey, talkKey (int16 BE)
_DIALOGUE_LINE = re.compile(r"^(\d\d)([0-9A-FSX]{4})([JP])\d+\.SB$")


def read_archive(path: Path = ARCHIVE) -> Dict[str, bytes]:
    """``{entry name: bytes}`` of a compressed ``queen.1c`` archive; a clear error for anything else."""
    data = Path(path).read_bytes()
    if data[:4] != b"QTBL" or len(data) < 15:
        raise ValueError(f"{path} is not a Flight of the Amazon Queen resource archive (no QTBL header)")
    (count,) = struct.unpack(">H", data[13:15])
    entries, pos = {}, 15
    for _ in range(count):
        if pos + 21 > len(data):
            raise ValueError(f"{path}: entry table truncated")
        name = data[pos:pos + 12].split(b"\0")[0].decode("ascii", "replace")
        offset, size = struct.unpack(">II", data[pos + 13:pos + 21])
        pos += 21
        if offset + size > len(data):
            raise ValueError(f"{path}: entry {name} runs past the end of the file")
        entries[name] = data[offset:offset + size]
    return entries


def line_speakers(entries: Dict[str, bytes]) -> Dict[str, List[str]]:
    """``{character: [speech entry names]}``: Joe's lines and each dialogue partner's by the talk key of the
    character's dialogue files."""
    key_to_character = {}
    for name, blob in entries.items():
        if name.endswith(".DOG") and len(blob) >= _DOG_TALK_KEY + 2:
            (key,) = struct.unpack(">h", blob[_DOG_TALK_KEY:_DOG_TALK_KEY + 2])
            key_to_character[key] = re.sub(r"\d+$", "", name[:-4]).lower()
    lines: Dict[str, List[str]] = defaultdict(list)
    for name in sorted(entries):
        if not name.endswith(".SB"):
            continue
        if name.startswith("JOE"):
            lines["joe"].append(name)
            continue
        match = _DIALOGUE_LINE.match(name)
        if match is None:
            continue  # cut-scene lines: several speakers, no reliable owner
        if match.group(3) == "J":
            lines["joe"].append(name)
        elif int(match.group(1)) in key_to_character:
            lines[key_to_character[int(match.group(1))]].append(name)
    return dict(lines)


def _decode_mp3(blob: bytes, rate: int) -> np.ndarray:
    from .voices import sox_decode

    return sox_decode(["-t", "mp3", "-"], rate, blob)


def build_adventure(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
                    archive: Path = ARCHIVE, min_seconds: float = 45.0, valid_every: int = 16,
                    progress: bool = False) -> Path:
    """The ``adventure`` source in ``out`` (see the module docstring); returns the manifest path."""
    from .corpus import trim_silence
    from .voices import _finish, _write_cast_member

    if not Path(archive).is_file():
        raise RuntimeError(f"adventure voices need {' '.join(PACKAGES)} (apt-get install -y {' '.join(PACKAGES)})")
    if shutil.which("sox") is None:
        raise RuntimeError("adventure voices need sox with MP3 support (apt-get install -y sox libsox-fmt-mp3)")
    entries = read_archive(archive)
    speakers = line_speakers(entries)
    if not speakers:
        raise RuntimeError(f"{archive}: no dialogue lines found")
    try:  # one line first: a sox without MP3 support fails every line the same way
        _decode_mp3(entries[next(iter(speakers.values()))[0]], 8000)
    except RuntimeError as exc:
        raise RuntimeError(f"sox cannot decode the game's MP3 lines ({exc}): apt-get install -y libsox-fmt-mp3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    kept, dropped = {}, {}
    rate = 8000  # decoded straight to 8 kHz; _write_utterances resamples to every other rate asked for
    for t_index, character in enumerate(sorted(speakers)):
        rng = np.random.default_rng([seed, 23, t_index])
        name = f"fotaq_{character}"
        lines, failed = [], 0
        for entry in speakers[character]:
            try:
                x = trim_silence(_decode_mp3(entries[entry], rate), rate)
            except (RuntimeError, subprocess.TimeoutExpired):
                failed += 1
                continue
            if len(x) >= rate // 4:
                lines.append(x)
        records += _write_cast_member(out, name, lines, rate, rng, sample_rates=sample_rates, utterance_s=utterance_s,
                                      valid_every=valid_every, min_seconds=min_seconds, source="adventure",
                                      failed=failed, kept=kept, dropped=dropped, progress=progress)
    if len(kept) < 2:
        raise RuntimeError(f"{archive}: fewer than two characters with {min_seconds:.0f} s of speech")
    info = {"source": "adventure", "game": "Flight of the Amazon Queen (Debian flight-of-the-amazon-queen)",
            "seed": seed, "sample_rates": list(sample_rates), "talkers": kept, "left_out": dropped,
            "split": "train (every 16th utterance valid)"}
    return _finish(out, records, info)
