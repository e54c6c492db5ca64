"""The fastsep corpus manifest: one JSON object per line describing one single-speaker utterance.

Fields: ``path`` (relative to the manifest's folder, or absolute), ``speaker``, ``split`` (train/valid/test),
``sample_rate``, ``duration`` (seconds), ``text``. Written by :mod:`fastsep.data.corpus`; any corpus laid out this way
can be used for dynamic mixing and vocoder training.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

__all__ = ["Utterance", "MANIFEST_NAME", "find_manifest", "read_manifest", "utterances_by_speaker"]

MANIFEST_NAME = "manifest.jsonl"
REQUIRED = ("path", "speaker", "split", "sample_rate")


class Utterance(NamedTuple):
    path: str
    speaker: str
    split: str = "train"
    sample_rate: Optional[int] = None
    duration: Optional[float] = None
    text: str = ""


def find_manifest(root) -> Optional[Path]:
    """``root`` itself when it is a ``.jsonl`` file, else ``root/manifest.jsonl`` when present."""
    root = Path(root)
    if root.is_file() and root.suffix == ".jsonl":
        return root
    p = root / MANIFEST_NAME
    return p if p.is_file() else None


def read_manifest(root) -> List[Utterance]:
    """All utterances listed in a manifest (``root`` is the corpus folder or the ``.jsonl`` file).

    Raises ValueError naming the line for malformed JSON or missing fields.
    """
    path = find_manifest(root)
    if path is None:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {root}")
    base = path.parent
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None
            absent = [k for k in REQUIRED if k not in rec]
            if absent:
                raise ValueError(f"{path}:{n}: missing field(s) {absent}; expected {list(REQUIRED)}")
            p = rec["path"]
            out.append(Utterance(
                p if os.path.isabs(p) else str(base / p), str(rec["speaker"]), str(rec["split"]),
                int(rec["sample_rate"]), float(rec["duration"]) if rec.get("duration") is not None else None,
                str(rec.get("text", "")),
            ))
    return out


def utterances_by_speaker(root, split: str, sample_rate: Optional[int] = None) -> Dict[str, List[Utterance]]:
    """``{speaker: [Utterance, ...]}`` for one split.

    When the corpus holds several rates, the copy at ``sample_rate`` is used; if there is none at that rate, the
    lowest rate above it (else the highest below it) is used and resampled when read.
    """
    utts = [u for u in read_manifest(root) if u.split == split]
    if not utts:
        splits = sorted({u.split for u in read_manifest(root)})
        raise ValueError(f"manifest {root} has no utterances in split {split!r}; it has splits {splits}")
    rates = sorted({u.sample_rate for u in utts})
    if sample_rate is None or sample_rate in rates:
        rate = sample_rate if sample_rate is not None else rates[-1]
    else:
        above = [r for r in rates if r > sample_rate]
        rate = above[0] if above else rates[-1]
    groups: Dict[str, List[Utterance]] = {}
    for u in utts:
        if u.sample_rate == rate:
            groups.setdefault(u.speaker, []).append(u)
    return groups
