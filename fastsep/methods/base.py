"""The one interface every separation method serves through (see DESIGN.md, "Three methods, one serving path").

A method turns mixtures ``[B, L]`` at its ``sample_rate`` into ``[B, C, L]`` tracks, in one of the ``modes`` it
offers; :class:`fastsep.separator.Separator` does everything else once for all methods: input checks, resampling,
levels, seeds per item and chunk, chunking with talker order kept, files (:mod:`fastsep.batch_files`), ``fastsep
separate``/``eval``/``bench``. The three methods:

=====================  =========================================  ==================================================
``name``               class                                      modes
=====================  =========================================  ==================================================
separate_and_diffuse   :class:`~.separate_and_diffuse.             ``full``, ``xcorr``, ``backbone`` (those its parts
                       SeparateAndDiffuse`                        allow)
diffsep                :class:`~.diffsep.DiffSepMethod`           ``diffsep``
priors                 :class:`~.priors.PriorSeparation`          ``prior`` (the bundle's guidance) and
                                                                  ``prior-hybrid``/``prior-dsg``/``prior-dps``
=====================  =========================================  ==================================================

What a method provides (:class:`SeparationMethod` has the shared parts):

* ``name``, ``sample_rate``, ``n_src``, ``modes``, ``default_modes`` (what ``fastsep eval`` scores when no
  ``--modes`` is given) and ``min_samples`` (the shortest chunk its networks take);
* ``run(mixture [B, L], mode, seeds) -> [B, C, L]``: one pass at the models' level; ``seeds`` is None (global RNG)
  or one int per batch item, and item ``b``'s result may depend only on its own mixture and ``seeds[b]``;
* ``modules()``: the networks by name (the Separator hashes them for its fingerprint and finds their device),
  ``settings()``: the JSON-able options that change the output, ``to(device)``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["SeparationMethod", "is_method"]


def is_method(obj) -> bool:
    """Whether ``obj`` offers the method interface (duck-typed: ``run``, ``modes``, ``modules``)."""
    return not isinstance(obj, nn.Module) and all(callable(getattr(obj, a, None)) for a in ("run", "modules")) \
        and isinstance(getattr(obj, "modes", None), tuple)


class SeparationMethod:
    """Shared parts of the method interface; subclasses set ``name`` and implement ``modes``, ``run``,
    ``modules`` and ``settings``."""

    name: str = ""

    @property
    def modes(self) -> Tuple[str, ...]:  # pragma: no cover - every method overrides it
        raise NotImplementedError

    @property
    def default_modes(self) -> Tuple[str, ...]:
        """The modes scored by ``fastsep eval`` when ``--modes`` is not given (default: all)."""
        return self.modes

    @property
    def default_mode(self) -> str:
        """The mode ``separate`` and ``fastsep separate`` use when none is named."""
        return self.modes[0]

    @property
    def min_samples(self) -> int:
        """The shortest input (chunk) the method's networks take, in samples at ``sample_rate``."""
        return 2

    def check_mode(self, mode: str) -> None:
        """ValueError naming the modes this method offers when ``mode`` is not one of them."""
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not offered by this {self.name} model; its modes: "
                             f"{', '.join(self.modes)}")

    def modules(self) -> Dict[str, Optional[nn.Module]]:  # pragma: no cover
        raise NotImplementedError

    def settings(self) -> dict:
        """JSON-able options that change the output (part of the Separator's fingerprint)."""
        return {}

    def run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the first parameter or buffer of the method's networks lives (CPU when it has none)."""
        for module in self.modules().values():
            if isinstance(module, nn.Module):
                for t in list(module.parameters()) + list(module.buffers()):
                    return t.device
        return torch.device("cpu")

    def to(self, device: Union[str, torch.device]) -> "SeparationMethod":
        """Move every network to ``device`` in eval mode."""
        for module in self.modules().values():
            if isinstance(module, nn.Module):
                module.to(device).eval()
        return self
