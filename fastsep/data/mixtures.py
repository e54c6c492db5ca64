"""Pre-mixed separation corpora on disk: LibriMix (metadata CSVs + folders) and wsj0-mix (folders).

Items are ``{"mixture": [T], "sources": [C, T], "id": str}`` float32 at the requested rate. With ``segment`` (seconds)
a random crop of that length is returned (training); with ``segment=None`` the whole utterance (evaluation). Bad files
are skipped and counted in ``dataset.skipped`` (see :mod:`fastsep.data.robust`).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

import torch
from torch.utils.data import Dataset

from .robust import (SkipFile, SkipLog, check_n_src, check_rate, random_offset, read_checked,
                     seconds_to_frames)

__all__ = ["MixtureEntry", "FileMixtures", "LibriMix", "Wsj0Mix", "AUDIO_EXTENSIONS"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class MixtureEntry(NamedTuple):
    id: str
    mixture: Optional[str]  # None: the mixture is the sum of the sources
    sources: List[str]
    length: Optional[int] = None  # in samples at the corpus rate, when the metadata says


class FileMixtures(SkipLog, Dataset):
    """Mixtures listed as files. Subclasses only build ``entries``; reading, cropping and skipping live here.

    Args:
        entries: the listed mixtures.
        sample_rate: rate of the returned tensors; files at another rate are resampled (or skipped when
            ``resample=False``, counted as ``wrong_rate``).
        segment: crop length in seconds (random offset, same for mixture and sources), or None for whole files.
        max_retries: how many replacement items are tried before giving up on one index.
    """

    def __init__(self, entries: Sequence[MixtureEntry], n_src: int, sample_rate: int,
                 segment: Optional[float] = None, resample: bool = True, max_retries: int = 50):
        self._init_skips()
        self.n_src = check_n_src(n_src)
        self.sample_rate = check_rate(sample_rate)
        self.segment = segment
        self.segment_frames = seconds_to_frames(segment, sample_rate)
        self.resample = bool(resample)
        self.max_retries = int(max_retries)
        self.entries = list(entries)
        self._bad = set()
        if self.segment_frames is not None:
            # Lengths known from metadata let us drop too-short mixtures up front, without opening them.
            keep = []
            for e in self.entries:
                if e.length is not None and e.length < self.segment_frames:
                    self._record_skip("too_short", e.id)
                else:
                    keep.append(e)
            self.entries = keep
        if not self.entries:
            raise ValueError(f"{type(self).__name__}: no usable mixtures found (skipped: {dict(self.skipped)})")

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, entry: MixtureEntry) -> dict:
        min_frames = self.segment_frames or 0
        sources = [read_checked(p, self.sample_rate, self.resample, min_frames) for p in entry.sources]
        mix = read_checked(entry.mixture, self.sample_rate, self.resample, min_frames) if entry.mixture else None
        n = min([s.shape[-1] for s in sources] + ([mix.shape[-1]] if mix is not None else []))
        sources = torch.stack([s[:n] for s in sources])
        mixture = mix[:n] if mix is not None else sources.sum(0)
        if self.segment_frames is not None:
            start = random_offset(n, self.segment_frames)
            sl = slice(start, start + self.segment_frames)
            mixture, sources = mixture[sl], sources[:, sl]
        return {"mixture": mixture.contiguous(), "sources": sources.contiguous(), "id": entry.id}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.entries):
            if -len(self.entries) <= index < 0:
                index += len(self.entries)
            else:
                raise IndexError(f"index {index} out of range for {len(self.entries)} mixtures")
        n = len(self.entries)
        for attempt in range(self.max_retries):
            # Replacement items walk the list with a large prime stride so neighbours (often the same
            # recording session) are not all tried in turn.
            i = (index + attempt * 7919) % n
            if i in self._bad:
                continue
            try:
                return self._load(self.entries[i])
            except SkipFile as skip:
                self._bad.add(i)
                self._record_skip(skip.reason, skip.path)
        raise RuntimeError(f"{type(self).__name__}: no usable mixture after {self.max_retries} attempts from index "
                           f"{index}; skipped so far: {dict(self.skipped)}")


def _audio_files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def folder_entries(mix_dir: Optional[Path], src_dirs: Sequence[Path]) -> tuple:
    """Entries for files with the same name in every source folder (and the mixture folder when given).

    Returns ``(entries, n_missing)``: names present in the first folder but absent from another are counted.
    """
    first = mix_dir if mix_dir is not None else src_dirs[0]
    entries, missing = [], 0
    for name in _audio_files(first):
        srcs = [d / name for d in src_dirs]
        if not all(p.is_file() for p in srcs):
            missing += 1
            continue
        entries.append(MixtureEntry(Path(name).stem, str(mix_dir / name) if mix_dir else None,
                                    [str(p) for p in srcs]))
    return entries, missing


# --------------------------------------------------------------------------------------------------- LibriMix

LIBRIMIX_SPLITS = {"train": ("train-360", "train-100"), "valid": ("dev",), "dev": ("dev",), "test": ("test",)}


def _librimix_split_names(split: str) -> Sequence[str]:
    return LIBRIMIX_SPLITS.get(split, (split,))


def find_librimix_csv(root: Path, split: str, n_src: int, sample_rate: int, mix_type: str = "mix_clean",
                      mode: str = "min") -> Optional[Path]:
    """Locate ``mixture_<split>_<mix_type>.csv`` under the usual LibriMix tree rooted anywhere above it."""
    k = f"wav{sample_rate // 1000}k"
    bases = [root, root / "metadata", root / mode / "metadata", root / k / mode / "metadata",
             root / f"Libri{n_src}Mix" / k / mode / "metadata"]
    # Fall back to the other rate's metadata: the loader resamples.
    other = [b for r in ("wav8k", "wav16k") if r != k
             for b in (root / r / mode / "metadata", root / f"Libri{n_src}Mix" / r / mode / "metadata")]
    for name in _librimix_split_names(split):
        for base in bases + other:
            p = base / f"mixture_{name}_{mix_type}.csv"
            if p.is_file():
                return p
    return None


class LibriMix(FileMixtures):
    """LibriMix (Cosentino et al., 2020) from its metadata CSVs, or from its folders when no CSV is present.

    Args:
        root_or_metadata_csv: a ``mixture_<split>_mix_clean.csv`` file (columns ``mixture_ID, mixture_path,
            source_1_path, ..., source_C_path[, noise_path], length``), or a folder holding the LibriMix tree
            (``Libri2Mix/wav8k/min/{metadata,train-360/{mix_clean,s1,s2},dev,test}`` or any level of it).
        split: ``train`` (= ``train-360``, else ``train-100``), ``valid``/``dev``, ``test``, or a LibriMix name.
        n_src: number of sources C; must match the CSV's ``source_k_path`` columns.
        sample_rate, segment, resample: as in :class:`FileMixtures`.

    Paths in the CSV that do not exist (the tree was moved) are looked up as ``<tree>/<split>/<folder>/<name>``
    beside the metadata folder.
    """

    def __init__(self, root_or_metadata_csv, split: str = "train", n_src: int = 2, sample_rate: int = 8000,
                 segment: Optional[float] = None, mix_type: str = "mix_clean", **kwargs):
        check_n_src(n_src)
        check_rate(sample_rate)
        root = Path(root_or_metadata_csv)
        if not root.exists():
            raise FileNotFoundError(f"LibriMix: {root} does not exist")
        self.split = split
        if root.is_file():
            entries = self._from_csv(root, n_src)
        else:
            csv_path = find_librimix_csv(root, split, n_src, sample_rate, mix_type)
            if csv_path is not None:
                entries = self._from_csv(csv_path, n_src)
            else:
                entries = self._from_folders(root, split, n_src, sample_rate, mix_type)
        super().__init__(entries, n_src, sample_rate, segment, **kwargs)

    @staticmethod
    def _from_csv(csv_path: Path, n_src: int) -> List[MixtureEntry]:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            need = ["mixture_ID", "mixture_path"] + [f"source_{k + 1}_path" for k in range(n_src)]
            absent = [c for c in need if c not in cols]
            if absent:
                raise ValueError(f"LibriMix: {csv_path} lacks columns {absent}; it has {cols}")
            n_in_csv = sum(1 for c in cols if re.fullmatch(r"source_\d+_path", c))
            if n_in_csv != n_src:
                raise ValueError(f"LibriMix: {csv_path} lists {n_in_csv} sources per mixture, n_src={n_src} asked")
            rows = list(reader)
        # metadata/ sits inside wav8k/min/, next to the split folders
        tree = csv_path.parent.parent if csv_path.parent.name == "metadata" else csv_path.parent
        split_name = re.sub(r"^mixture_(.*)_mix_\w+$", r"\1", csv_path.stem)
        mix_dir_name = re.sub(r"^mixture_.*_(mix_\w+)$", r"\1", csv_path.stem)

        def resolve(p: str, folder: str) -> str:
            cand = Path(p)
            if not cand.is_absolute():
                for base in (tree, csv_path.parent):
                    if (base / cand).exists():
                        return str(base / cand)
            if cand.exists():
                return str(cand)
            moved = tree / split_name / folder / cand.name
            return str(moved if moved.exists() else cand)  # a still-missing file is skipped at read time

        entries = []
        for row in rows:
            length = row.get("length")
            entries.append(MixtureEntry(
                row["mixture_ID"],
                resolve(row["mixture_path"], mix_dir_name),
                [resolve(row[f"source_{k + 1}_path"], f"s{k + 1}") for k in range(n_src)],
                int(float(length)) if length not in (None, "") else None,
            ))
        return entries

    @staticmethod
    def _from_folders(root: Path, split: str, n_src: int, sample_rate: int, mix_type: str) -> List[MixtureEntry]:
        k = f"wav{sample_rate // 1000}k"
        for name in _librimix_split_names(split):
            for base in (root, root / "min", root / k / "min", root / f"Libri{n_src}Mix" / k / "min"):
                d = base / name
                if (d / mix_type).is_dir() and all((d / f"s{j + 1}").is_dir() for j in range(n_src)):
                    entries, _ = folder_entries(d / mix_type, [d / f"s{j + 1}" for j in range(n_src)])
                    return entries
        raise FileNotFoundError(f"LibriMix: no metadata CSV and no {{{mix_type},s1..s{n_src}}} folders for split "
                                f"{split!r} under {root}")


# --------------------------------------------------------------------------------------------------- wsj0-mix

WSJ0_SPLITS = {"train": "tr", "valid": "cv", "dev": "cv", "test": "tt", "tr": "tr", "cv": "cv", "tt": "tt"}


def find_wsj0_split(root: Path, split: str, n_src: int, sample_rate: int) -> Optional[Path]:
    """The ``{tr,cv,tt}`` folder holding ``mix`` and ``s1..sC`` under ``root`` (any level of the usual tree)."""
    name = WSJ0_SPLITS.get(split)
    if name is None:
        return None
    k = f"wav{sample_rate // 1000}k"
    for base in (root, root / "min", root / k / "min", root / f"{n_src}speakers" / k / "min",
                 root / "max", root / k / "max", root / f"{n_src}speakers" / k / "max"):
        d = base / name
        if (d / "mix").is_dir() and all((d / f"s{j + 1}").is_dir() for j in range(n_src)):
            return d
    return None


class Wsj0Mix(FileMixtures):
    """wsj0-2mix / wsj0-3mix (Hershey et al.) folders: ``<root>/{tr,cv,tt}/{mix,s1,s2,...}`` with matching names.

    ``root`` may also be the top of the generated tree (``<root>/2speakers/wav8k/min/tt/...``). ``split`` is
    ``tr``/``cv``/``tt`` or ``train``/``valid``/``test``. Mixture files without all their sources are skipped
    (counted as ``missing_source``).
    """

    def __init__(self, root, split: str = "tr", n_src: int = 2, sample_rate: int = 8000,
                 segment: Optional[float] = None, **kwargs):
        check_n_src(n_src)
        check_rate(sample_rate)
        if split not in WSJ0_SPLITS:
            raise ValueError(f"Wsj0Mix: split must be one of tr, cv, tt (or train, valid, test), got {split!r}")
        root = Path(root)
        d = find_wsj0_split(root, split, n_src, sample_rate)
        if d is None:
            raise FileNotFoundError(f"Wsj0Mix: no {WSJ0_SPLITS[split]}/{{mix,s1..s{n_src}}} folders under {root}")
        self.split = split
        entries, missing = folder_entries(d / "mix", [d / f"s{j + 1}" for j in range(n_src)])
        super().__init__(entries, n_src, sample_rate, segment, **kwargs)
        for _ in range(missing):
            self._record_skip("missing_source")
