"""Single-speaker utterances for vocoder training: items ``{"audio": Tensor[T], "id": str}``."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from torch.utils.data import Dataset

from .robust import SkipFile, SkipLog, check_rate, random_offset, read_checked, seconds_to_frames

__all__ = ["SpeechFiles"]


class SpeechFiles(SkipLog, Dataset):
    """A list of single-speaker audio files, read at ``sample_rate``.

    With ``segment`` (seconds) each item is a random crop of that length and shorter files are skipped
    (``too_short``); without, whole files. Bad files are replaced by another file and counted in ``skipped``.
    """

    def __init__(self, paths: Sequence, sample_rate: int, segment: Optional[float] = None,
                 resample: bool = True, max_retries: int = 50):
        self._init_skips()
        self.sample_rate = check_rate(sample_rate)
        self.segment = segment
        self.segment_frames = seconds_to_frames(segment, sample_rate)
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("SpeechFiles: no audio files given")
        self.resample, self.max_retries = bool(resample), int(max_retries)
        self._bad = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} files")
        index %= n
        for attempt in range(self.max_retries):
            i = (index + attempt * 7919) % n
            if i in self._bad:
                continue
            path = self.paths[i]
            try:
                wave = read_checked(path, self.sample_rate, self.resample, self.segment_frames or 0)
            except SkipFile as skip:
                self._bad.add(i)
                self._record_skip(skip.reason, skip.path)
                continue
            if self.segment_frames is not None:
                start = random_offset(wave.shape[-1], self.segment_frames)
                wave = wave[start:start + self.segment_frames]
            return {"audio": wave.contiguous(), "id": os.path.splitext(os.path.basename(path))[0]}
        raise RuntimeError(f"SpeechFiles: no usable file after {self.max_retries} attempts from index {index}; "
                           f"skipped so far: {dict(self.skipped)}")
