"""A backbone that averages several separations of one mixture: several separators, several views of the input.

Why: runs of one training recipe that differ only in their seed (or in a small change of data) land up to ±0.5 dB
apart on voices they never heard, and not in the same direction on every source of voices; the mean of their
separated waveforms is nearer the truth than a typical member (each member's errors are partly its own). Averaging
their *weights* instead (:mod:`fastsep.models.averaging`, a "model soup") measured no better than the members here,
so the members are run one after another and their outputs averaged.

One network also errs differently on other *views* of the same mixture, which it answers exactly in principle:

* **polarity**: the negated mixture's sources are the negated sources, so ``-B(-x)`` is a second estimate. A
  Conv-TasNet's ReLU encoder is far from odd (``B(-x) != -B(x)``), so the two estimates differ;
* **shift**: a mixture delayed by ``s`` samples has the delayed sources; with ``s`` a fraction of the encoder's hop
  the network sees other frame boundaries (Demucs' "shift trick").

Every (member, view) pair costs one backbone pass; in full mode the vocoder and F dominate, so a few passes add
little to the latency. A separator names its talkers in an arbitrary order, so each estimate is first put into the
first one's order (:func:`fastsep.chunking.match_sources`, the Hungarian match on normalised correlation that also
joins a long file's chunks).

The ensemble saves and loads like any model (:func:`fastsep.models.io.save_model`): its config lists each member's
class and config and the views, its weights are the members' under ``members.<i>.``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["BackboneEnsemble"]


class BackboneEnsemble(nn.Module):
    """Average of the estimates ``[B, C, T]`` of ``members`` (each ``{"class": name, "config": {...}}`` of a
    :mod:`fastsep.models` separator) over the input views ``shifts`` (samples of delay, each >= 0) x ``polarities``
    (+1 and/or -1), every estimate's talkers reordered to the first one's (member 0, first shift, first polarity).

    Use :meth:`from_models` to build one from loaded models; ``BackboneEnsemble(members=...)`` builds untrained
    members (what :func:`fastsep.models.io.load_model` does before loading the weights). One member with several
    views is test-time augmentation of a single network."""

    def __init__(self, members: Sequence[Dict[str, Any]], shifts: Sequence[int] = (0,),
                 polarities: Sequence[int] = (1,), n_src: Optional[int] = None, sample_rate: Optional[int] = None):
        super().__init__()
        from .io import _resolve_class

        members = list(members)
        shifts = [self._int(s, "shifts") for s in shifts]
        polarities = [self._int(p, "polarities") for p in polarities]
        if not shifts or any(s < 0 for s in shifts) or len(set(shifts)) != len(shifts):
            raise ValueError(f"BackboneEnsemble: shifts must be distinct sample delays >= 0, got {shifts}")
        if not polarities or any(p not in (1, -1) for p in polarities) or len(set(polarities)) != len(polarities):
            raise ValueError(f"BackboneEnsemble: polarities must be 1 and/or -1, got {polarities}")
        if not members or (len(members) == 1 and shifts == [0] and polarities == [1]):
            # one member seen as it is would be that member under another name
            raise ValueError("BackboneEnsemble needs at least two members, or one member with another view than "
                             f"the plain mixture (got {len(members)} member(s), shifts {shifts}, polarities "
                             f"{polarities})")
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
        self.shifts, self.polarities = shifts, polarities
        first = members[0]["config"]
        self.n_src = int(first["n_src"])
        self.sample_rate = getattr(built[0], "sample_rate", first.get("sample_rate"))
        # n_src / sample_rate are stored beside the members (what the methods read from a backbone's config); given
        # back on loading, they must agree with the members
        for name, given, actual in (("n_src", n_src, self.n_src), ("sample_rate", sample_rate, self.sample_rate)):
            if given is not None and given != actual:
                raise ValueError(f"BackboneEnsemble: {name}={given} does not match its members' {actual}")
        self.config = {"members": [{"class": s["class"], "config": dict(s["config"])} for s in members],
                       "shifts": list(shifts), "polarities": list(polarities), "n_src": self.n_src,
                       "sample_rate": self.sample_rate}

    @staticmethod
    def _int(value, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"BackboneEnsemble: {name} must hold whole numbers, got {value!r}")
        return int(value)

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
    def from_models(cls, models: Sequence[nn.Module], shifts: Sequence[int] = (0,),
                    polarities: Sequence[int] = (1,)) -> "BackboneEnsemble":
        """An ensemble holding copies of the weights of ``models`` (each with a ``config``, as saved models have)."""
        models = list(models)
        specs = []
        for i, model in enumerate(models):
            config = getattr(model, "config", None)
            if not isinstance(config, dict):
                raise ValueError(f"model {i} ({type(model).__name__}) has no config dict; load it with "
                                 f"fastsep.models.io.load_model")
            specs.append({"class": type(model).__name__, "config": config})
        ensemble = cls(specs, shifts=shifts, polarities=polarities)
        for target, source in zip(ensemble.members, models):
            target.load_state_dict(source.state_dict(), strict=True)
        return ensemble.eval()

    @property
    def passes(self) -> int:
        """Backbone passes per call: members x shifts x polarities."""
        return len(self.members) * len(self.shifts) * len(self.polarities)

    def forward(self, mixture: Tensor) -> Tensor:
        length, batch = mixture.shape[-1], mixture.shape[0]
        delayed = {shift: nn.functional.pad(mixture, (shift, 0)) if shift else mixture for shift in self.shifts}
        # one call per member and shift: the polarities of a shift go through the member as one batch (the default's
        # two polarities of 4 s: 43-46 ms as a batch of two against 49-50 ms in two calls, one thread, AMX Xeon)
        signed = {shift: torch.cat([-d if sign < 0 else d for sign in self.polarities]) for shift, d in delayed.items()}
        first: Optional[Tensor] = None
        total: Optional[Tensor] = None
        for member in self.members:
            for shift in self.shifts:
                out = member(signed[shift])[..., shift:shift + length]
                for i, sign in enumerate(self.polarities):
                    estimate = out[i * batch:(i + 1) * batch]
                    total, first = self._accumulate(total, first, -estimate if sign < 0 else estimate)
        return total / self.passes

    @staticmethod
    def _accumulate(total: Optional[Tensor], first: Optional[Tensor], estimate: Tensor):
        """``(total + estimate in the first estimate's talker order, first)``; the first estimate starts both."""
        from ..chunking import _reorder, match_sources

        if first is None:
            return estimate.clone(), estimate
        if estimate.shape != first.shape:
            raise ValueError(f"BackboneEnsemble: a member returned {tuple(estimate.shape)}, the first "
                             f"{tuple(first.shape)}")
        # the order is chosen without gradient (a permutation); the reordered estimate keeps its own
        return total + _reorder(estimate, match_sources(first.detach(), estimate.detach())), first
