"""A backbone that is several separators of one task, their estimates averaged.

Why: runs of one training recipe that differ only in their seed (or in a small change of data) land up to ±0.5 dB
apart on voices they never heard, and not in the same direction on every source of voices; the mean of their
separated waveforms is nearer the truth than a typical member (each member's errors are partly its own). Averaging
their *weights* instead (:mod:`fastsep.models.averaging`, a "model soup") measured no better than the members here,
so the members are run one after another and their outputs averaged. The cost is one backbone pass per member; in
full mode the vocoder and F dominate, so a few members add little to the latency.

A separator names its talkers in an arbitrary order, so each member's estimates are first put into the first
member's order (:func:`fastsep.chunking.match_sources`, the Hungarian match on normalised correlation that also
joins a long file's chunks).

The ensemble saves and loads like any model (:func:`fastsep.models.io.save_model`): its config lists each member's
class and config, its weights are the members' under ``members.<i>.``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["BackboneEnsemble"]


class BackboneEnsemble(nn.Module):
    """Average of the estimates ``[B, C, T]`` of ``members`` (each ``{"class": name, "config": {...}}`` of a
    :mod:`fastsep.models` separator), every member's talkers reordered to the first member's.

    Use :meth:`from_models` to build one from loaded models; ``BackboneEnsemble(members=...)`` builds untrained
    members (what :func:`fastsep.models.io.load_model` does before loading the weights)."""

    def __init__(self, members: Sequence[Dict[str, Any]], n_src: Optional[int] = None,
                 sample_rate: Optional[int] = None):
        super().__init__()
        from .io import _resolve_class

        members = list(members)
        if len(members) < 2:
            raise ValueError(f"BackboneEnsemble needs at least two members, got {len(members)}")
        built: List[nn.Module] = []
        for i, spec in enumerate(members):
            if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) \
                    or not isinstance(spec.get("config"), dict):
                raise ValueError(f"BackboneEnsemble member {i} must be {{'class': name, 'config': {{...}}}}, "
                                 f"got {spec!r}")
            if spec["class"] == type(self).__name__:
                raise ValueError("BackboneEnsemble members cannot be ensembles themselves")
            built.append(_resolve_class(spec["class"])(**spec["config"]))
        self._check_compatible([m.__class__.__name__ for m in built], [spec["config"] for spec in members])
        self.members = nn.ModuleList(built)
        first = members[0]["config"]
        self.n_src = int(first["n_src"])
        self.sample_rate = getattr(built[0], "sample_rate", first.get("sample_rate"))
        # n_src / sample_rate are stored beside the members (what the methods read from a backbone's config); given
        # back on loading, they must agree with the members
        for name, given, actual in (("n_src", n_src, self.n_src), ("sample_rate", sample_rate, self.sample_rate)):
            if given is not None and given != actual:
                raise ValueError(f"BackboneEnsemble: {name}={given} does not match its members' {actual}")
        self.config = {"members": [{"class": s["class"], "config": dict(s["config"])} for s in members],
                       "n_src": self.n_src, "sample_rate": self.sample_rate}

    @staticmethod
    def _check_compatible(names: Sequence[str], configs: Sequence[Dict[str, Any]]) -> None:
        for key in ("n_src", "sample_rate"):
            values = {c.get(key) for c in configs}
            if key == "n_src" and None in values:
                raise ValueError("BackboneEnsemble members must state n_src in their configs")
            if len(values) > 1:
                raise ValueError(f"BackboneEnsemble members disagree on {key}: "
                                 + ", ".join(f"{n}={c.get(key)}" for n, c in zip(names, configs)))

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> "BackboneEnsemble":
        """An ensemble holding copies of the weights of ``models`` (each with a ``config``, as saved models have)."""
        models = list(models)
        specs = []
        for i, model in enumerate(models):
            config = getattr(model, "config", None)
            if not isinstance(config, dict):
                raise ValueError(f"model {i} ({type(model).__name__}) has no config dict; load it with "
                                 f"fastsep.models.io.load_model")
            specs.append({"class": type(model).__name__, "config": config})
        ensemble = cls(specs)
        for target, source in zip(ensemble.members, models):
            target.load_state_dict(source.state_dict(), strict=True)
        return ensemble.eval()

    def forward(self, mixture: Tensor) -> Tensor:
        from ..chunking import _reorder, match_sources

        first = self.members[0](mixture)
        total = first.clone()
        for member in self.members[1:]:
            estimate = member(mixture)
            if estimate.shape != first.shape:
                raise ValueError(f"BackboneEnsemble: a member returned {tuple(estimate.shape)}, the first "
                                 f"{tuple(first.shape)}")
            # the order is chosen without gradient (a permutation); the reordered estimate keeps its own
            total += _reorder(estimate, match_sources(first.detach(), estimate.detach()))
        return total / len(self.members)
