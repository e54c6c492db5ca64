"""A Separate-And-Diffuse bundle on disk: backbone B, vocoder GM and combiner F, each as safetensors + JSON.

Layout of a bundle folder::

    bundle.json                     manifest: format, sample_rate, n_src, which components exist, free-form metrics
    backbone.safetensors/.json      B   (written by fastsep.models.io.save_model)
    vocoder.safetensors/.json       GM  (optional: without it only mode="backbone" works)
    combiner.safetensors/.json      F   (optional: without it mode="full" is unavailable)

The manifest is written last, so a folder whose writing was interrupted has no manifest and is refused on load.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from torch import nn

__all__ = ["save_bundle", "load_bundle", "read_manifest", "is_bundle", "MANIFEST", "COMPONENTS"]

MANIFEST = "bundle.json"
COMPONENTS = ("backbone", "vocoder", "combiner")
_FORMAT = 1


def is_bundle(directory) -> bool:
    """Whether ``directory`` holds a bundle manifest."""
    return os.path.isfile(os.path.join(os.fspath(directory), MANIFEST))


def save_bundle(
    directory,
    backbone: nn.Module,
    vocoder: Optional[nn.Module] = None,
    combiner: Optional[nn.Module] = None,
    sample_rate: int = 8000,
    n_src: int = 2,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """Write the three models and the manifest into ``directory`` (created); returns the manifest's path."""
    from .models.io import atomic_write_json, save_model

    if backbone is None:
        raise ValueError("save_bundle: a bundle needs at least a backbone")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    present = {}
    for name, model in zip(COMPONENTS, (backbone, vocoder, combiner)):
        if model is not None:
            save_model(model, directory, name)
            present[name] = name
    manifest = {
        "format": _FORMAT,
        "sample_rate": int(sample_rate),
        "n_src": int(n_src),
        "components": present,
        "extra": dict(extra or {}),
    }
    path = os.path.join(directory, MANIFEST)
    atomic_write_json(path, manifest)
    return path


def read_manifest(directory) -> Dict[str, Any]:
    """The parsed ``bundle.json`` of ``directory``, with clear errors for a missing or malformed manifest."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(directory)} is not a fastsep bundle: {MANIFEST} is missing "
                                f"(bundles are written by fastsep.bundle.save_bundle or Separator.save_pretrained)")
    with open(path, "r", encoding="utf-8") as fh:
        try:
            manifest = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    comps = manifest.get("components") if isinstance(manifest, dict) else None
    if not isinstance(comps, dict) or "backbone" not in comps:
        raise ValueError(f"{path} must list its components, including 'backbone'")
    for key in ("sample_rate", "n_src"):
        if not isinstance(manifest.get(key), int) or manifest[key] <= 0:
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {manifest.get(key)!r}")
    return manifest


def load_bundle(directory, map_location="cpu") -> Dict[str, Any]:
    """Load a bundle: ``{"backbone", "vocoder", "combiner" (modules or None), "sample_rate", "n_src", "extra"}``."""
    from .models.io import load_model

    manifest = read_manifest(directory)
    out: Dict[str, Any] = {k: None for k in COMPONENTS}
    for name, stem in manifest["components"].items():
        if name not in COMPONENTS:
            raise ValueError(f"{MANIFEST} lists an unknown component {name!r}; known: {', '.join(COMPONENTS)}")
        out[name] = load_model(directory, stem, map_location=map_location)
    out.update(sample_rate=manifest["sample_rate"], n_src=manifest["n_src"], extra=manifest.get("extra", {}))
    return out
