"""Shared file checks for fastsep's data sets: bad files are skipped and counted, never fatal.

A data set keeps ``skipped``, a :class:`collections.Counter` of reasons (``missing``, ``corrupt``, ``empty``,
``nonfinite``, ``silent``, ``too_short``, ``wrong_rate``, ...). Files are checked when they are first read, so opening
a data set stays cheap; an item whose files turn out bad is replaced by another item. With DataLoader workers each
worker counts in its own copy.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Optional

import torch
from torch import Tensor

from .. import audio

# Peak amplitude below which a file counts as silent: three 16-bit quantisation steps, i.e. dither-level noise.
SILENCE_PEAK = 1e-4


class SkipFile(Exception):
    """Raised inside a data set when a file must be skipped; carries the reason used as the counter key."""

    def __init__(self, reason: str, path: str, detail: str = ""):
        self.reason, self.path = reason, str(path)
        super().__init__(f"{path}: {reason}{': ' + detail if detail else ''}")


def _reason(err: audio.AudioError) -> str:
    text = err.reason
    if "not found" in text:
        return "missing"
    if "no samples" in text:
        return "empty"
    if "NaN" in text:
        return "nonfinite"
    return "corrupt"


def read_checked(path, sample_rate: int, resample: bool = True, min_frames: int = 0) -> Tensor:
    """Mono float32 ``[T]`` at ``sample_rate``, or :class:`SkipFile` saying why the file cannot be used.

    A file at another rate is resampled when ``resample`` is true and skipped (``wrong_rate``) otherwise.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*averaged to mono")  # multichannel corpora are expected
            wave, sr = audio.load(path, mono=True)
    except audio.AudioError as err:
        raise SkipFile(_reason(err), path, err.reason) from None
    if sr != sample_rate:
        if not resample:
            raise SkipFile("wrong_rate", path, f"{sr} Hz, expected {sample_rate} Hz")
        from ..dsp import resample as _resample

        wave = _resample(wave, sr, sample_rate).contiguous()
    if wave.numel() == 0 or float(wave.abs().max()) < SILENCE_PEAK:
        raise SkipFile("silent", path)
    if wave.shape[-1] < min_frames:
        raise SkipFile("too_short", path, f"{wave.shape[-1]} samples < segment of {min_frames}")
    return wave


class SkipLog:
    """Mixin: ``self.skipped`` counter plus a warning that summarises at 1, 2, 4, 8, ... skips (rarer as they grow)."""

    def _init_skips(self) -> None:
        self.skipped: Counter = Counter()

    def _record_skip(self, reason: str, path: Optional[str] = None) -> None:
        self.skipped[reason] += 1
        total = sum(self.skipped.values())
        if total & (total - 1) == 0:
            where = f" (latest: {path}, {reason})" if path else f" (latest: {reason})"
            warnings.warn(f"{type(self).__name__}: skipped {total} file(s) so far: {dict(self.skipped)}{where}",
                          stacklevel=3)


def random_offset(length: int, segment: int, generator: Optional[torch.Generator] = None) -> int:
    """Uniform start in ``[0, length - segment]``."""
    if length <= segment:
        return 0
    return int(torch.randint(0, length - segment + 1, (1,), generator=generator))


def seconds_to_frames(segment: Optional[float], sample_rate: int) -> Optional[int]:
    if segment is None:
        return None
    if not isinstance(segment, (int, float)) or segment <= 0:
        raise ValueError(f"segment must be a positive number of seconds or None, got {segment!r}")
    return int(round(segment * sample_rate))


def check_rate(sample_rate) -> int:
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    return sample_rate


def check_n_src(n_src) -> int:
    """The package's one rule for the number of talkers (:func:`fastsep.checks.check_n_src`), for data sets."""
    from ..checks import check_n_src as _check

    return _check("data set", n_src)
