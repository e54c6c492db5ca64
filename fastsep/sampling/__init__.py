"""Sampling machinery kept apart from the networks it drives (the networks live in :mod:`fastsep.models`)."""
from .diffwave import DiffWaveSampler

__all__ = ["DiffWaveSampler"]
