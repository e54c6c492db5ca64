"""Argument rules shared by models and data sets, stated once."""
from __future__ import annotations

from typing import Any

__all__ = ["MIN_SOURCES", "MAX_SOURCES", "check_n_src", "check_audio_pieces"]

#: Every separator and mixture data set in fastsep handles 2 to 20 talkers (the paper's bounds go to C = 20).
MIN_SOURCES = 2
MAX_SOURCES = 20


def check_n_src(owner: str, n_src: Any) -> int:
    """``n_src`` as an int in [MIN_SOURCES, MAX_SOURCES]; TypeError for a non-int, ValueError out of range."""
    if isinstance(n_src, bool) or not isinstance(n_src, int):
        raise TypeError(f"{owner}: n_src must be an int in [{MIN_SOURCES}, {MAX_SOURCES}], got {type(n_src).__name__}")
    if not MIN_SOURCES <= n_src <= MAX_SOURCES:
        raise ValueError(f"{owner}: n_src must be in [{MIN_SOURCES}, {MAX_SOURCES}], got {n_src}")
    return n_src


def check_audio_pieces(owner: str, wave: Any, min_samples: int) -> None:
    """``wave`` must be float audio pieces ``[N, T]`` of at least ``min_samples`` samples (ValueError otherwise):
    what the talker embeddings take."""
    import torch

    if not isinstance(wave, torch.Tensor) or wave.dim() != 2 or not wave.is_floating_point():
        raise ValueError(f"{owner} expects float audio [N, T], got {getattr(wave, 'dtype', type(wave).__name__)} "
                         f"{tuple(getattr(wave, 'shape', ()))}")
    if wave.shape[-1] < min_samples:
        raise ValueError(f"{owner} needs at least {min_samples} samples per piece, got {wave.shape[-1]}")
