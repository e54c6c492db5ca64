"""A backbone whose outputs keep their talkers: a separator followed by talker tracking (issue 9).

The separator runs as before; its outputs are then re-ordered every 0.5 s where a talker embedding says a talker
moved to the other output (:func:`fastsep.tracking.track_talkers`). Wrapped as one backbone so that every mode,
chunking, streaming and the bundle format take it as they take any separator.

Saved like :class:`~fastsep.models.ensemble.BackboneEnsemble`: its config holds the separator's and the embedding's
class and config and the tracking settings; its weights are theirs under ``separator.`` and ``embedding.``.
"""
from __future__ import annotations

from typing import Any, Dict

from torch import Tensor, nn

__all__ = ["TrackedBackbone"]


def _build(spec: Dict[str, Any], what: str) -> nn.Module:
    from .io import _resolve_class

    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) or not isinstance(spec.get("config"), dict):
        raise ValueError(f"TrackedBackbone: {what} must be {{'class': name, 'config': {{...}}}}, got {spec!r}")
    return _resolve_class(spec["class"])(**spec["config"])


class TrackedBackbone(nn.Module):
    """``forward(mixture [B, T]) -> [B, C, T]``: ``separator``'s estimates re-ordered by ``embedding``.

    Args:
        separator, embedding: ``{"class": name, "config": {...}}`` of a :mod:`fastsep.models` separator and of a
            :class:`~fastsep.models.talker_embedding.TalkerEmbedding` (use :meth:`from_models` for trained ones).
        piece_seconds: length of the pieces re-ordered.
        threshold: how much better a new order must fit (see :func:`fastsep.tracking.choose_orders`).
    """

    def __init__(self, separator: Dict[str, Any], embedding: Dict[str, Any], piece_seconds: float = 0.5,
                 threshold: float = 0.0, n_src=None, sample_rate=None):
        super().__init__()
        if not (isinstance(piece_seconds, (int, float)) and 0 < piece_seconds <= 10):
            raise ValueError(f"TrackedBackbone: piece_seconds must lie in (0, 10], got {piece_seconds!r}")
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"TrackedBackbone: threshold must be >= 0, got {threshold!r}")
        if isinstance(separator, dict) and separator.get("class") == type(self).__name__:
            raise ValueError("TrackedBackbone: the separator is tracked already")
        self.separator = _build(separator, "separator")
        self.embedding = _build(embedding, "embedding")
        cfg = separator["config"]
        self.n_src = int(cfg["n_src"])
        self.sample_rate = int(cfg.get("sample_rate") or getattr(self.separator, "sample_rate", 8000))
        if int(self.embedding.config["sample_rate"]) != self.sample_rate:
            raise ValueError(f"TrackedBackbone: the embedding's sample rate {self.embedding.config['sample_rate']} "
                             f"differs from the separator's {self.sample_rate}")
        self.piece_seconds, self.threshold = float(piece_seconds), float(threshold)
        self.config = {"separator": {"class": separator["class"], "config": dict(cfg)},
                       "embedding": {"class": embedding["class"], "config": dict(embedding["config"])},
                       "piece_seconds": self.piece_seconds, "threshold": self.threshold, "n_src": self.n_src,
                       "sample_rate": self.sample_rate}

    @classmethod
    def from_models(cls, separator: nn.Module, embedding: nn.Module, piece_seconds: float = 0.5,
                    threshold: float = 0.0) -> "TrackedBackbone":
        """A tracked backbone holding copies of the weights of a loaded separator and embedding."""
        specs = []
        for what, model in (("separator", separator), ("embedding", embedding)):
            if not isinstance(getattr(model, "config", None), dict):
                raise ValueError(f"TrackedBackbone.from_models: the {what} ({type(model).__name__}) has no config; "
                                 f"load it with fastsep.models.io.load_model")
            specs.append({"class": type(model).__name__, "config": model.config})
        tracked = cls(specs[0], specs[1], piece_seconds, threshold)
        tracked.separator.load_state_dict(separator.state_dict(), strict=True)
        tracked.embedding.load_state_dict(embedding.state_dict(), strict=True)
        return tracked.eval()

    def forward(self, mixture: Tensor) -> Tensor:
        from ..tracking import track_talkers

        est = self.separator(mixture)
        return track_talkers(self.embedding.eval(), est, self.sample_rate, self.piece_seconds, self.threshold)[0]
