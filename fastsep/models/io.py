"""Saving and loading fastsep models as ``<name>.safetensors`` (weights) + ``<name>.json`` (class and config).

Never pickle: the JSON names the class (looked up in the registry of :mod:`fastsep.models`) and holds the keyword
arguments it was built with (``model.config``); the weights load strictly, so a missing, extra or reshaped tensor is an
error that names the tensor. The JSON also records the SHA-256 of the weights file, so a weights file that was edited
or swapped after saving is refused instead of loading silently.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from typing import Any, Dict, Mapping, Union

import torch
from torch import Tensor, nn

__all__ = ["FolderPersistence", "save_model", "load_model", "read_model_info", "atomic_write_bytes", "atomic_write_json",
           "state_dict_for_safetensors", "load_state_dict_checked"]

PathLike = Union[str, "os.PathLike[str]"]
_FORMAT = 1


# One atomic writer for the whole package lives in fastsep.fileio (temporary names a rerun can recognise, fsync,
# the permissions a plain open() would give); models, checkpoints and corpora use it through these names.
from ..fileio import DIR_MODE, FILE_MODE, atomic_write_bytes, atomic_write_json  # noqa: E402,F401


def state_dict_for_safetensors(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """A copy of ``state`` that safetensors accepts: detached, contiguous, on the CPU, with no shared storage.

    safetensors refuses tensors that alias one another (tied weights, views of one buffer); cloning gives each name
    its own storage. Loading puts the same values back into every tied name, so the tie in the model is unaffected.
    """
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"state entry {key!r} must be a torch.Tensor to be stored in safetensors, "
                            f"got {type(value).__name__}")
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version() -> str:
    from .. import __version__

    return __version__


def save_model(model: nn.Module, directory: PathLike, name: str = "model") -> str:
    """Write ``model`` to ``directory/<name>.safetensors`` and ``directory/<name>.json``; returns the JSON's path.

    The model must carry ``model.config``: the JSON-serialisable keyword arguments that rebuild it
    (``type(model)(**model.config)``). Each file is written atomically; the weights go first and the JSON, which
    records the weights' SHA-256, last, so a crash in between leaves a pair that :func:`load_model` refuses rather
    than a mismatched model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_model expects a torch.nn.Module, got {type(model).__name__}")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"save_model needs model.config, a dict of the constructor's keyword arguments; "
                        f"{type(model).__name__} has {type(config).__name__}")
    try:
        config_text = json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{type(model).__name__}.config must be JSON-serialisable: {exc}") from None
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"name must be a plain file stem such as 'model', got {name!r}")
    from safetensors.torch import save

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    weights_path = os.path.join(directory, name + ".safetensors")
    atomic_write_bytes(weights_path, save(state_dict_for_safetensors(model.state_dict()),
                                          metadata={"class": type(model).__name__, "format": str(_FORMAT)}))
    info = {"class": type(model).__name__, "config": json.loads(config_text), "fastsep_version": _version(),
            "format": _FORMAT, "weights": name + ".safetensors", "sha256": _sha256(weights_path)}
    json_path = os.path.join(directory, name + ".json")
    atomic_write_json(json_path, info)
    return json_path


def read_model_info(directory: PathLike, name: str = "model") -> Dict[str, Any]:
    """The parsed ``<name>.json`` of a saved model (class, config, fastsep_version, ...), with clear errors."""
    json_path = os.path.join(os.fspath(directory), name + ".json")
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"no saved model at {json_path} (expected {name}.json and {name}.safetensors "
                                f"written by fastsep.models.io.save_model)")
    try:
        with open(json_path, "r", encoding="utf-8") as fh:
            info = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{json_path} is not valid JSON: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("class"), str) or not isinstance(info.get("config"), dict):
        raise ValueError(f"{json_path} must hold an object with 'class' (a string) and 'config' (an object)")
    return info


def _resolve_class(class_name: str) -> type:
    from . import _WHERE

    if class_name not in _WHERE:
        known = ", ".join(sorted(_WHERE))
        raise ValueError(f"unknown model class {class_name!r}; fastsep.models knows: {known}")
    module = importlib.import_module(_WHERE[class_name])
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{_WHERE[class_name]}.{class_name} is not a torch.nn.Module class")
    return cls


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly, first naming every missing, unexpected or reshaped tensor.

    Models that renamed parameters keep old files loading through their ``upgrade_state_dict`` class method."""
    upgrade = getattr(type(model), "upgrade_state_dict", None)
    if upgrade is not None:
        state = upgrade(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    if reshaped:
        problems.append("shape mismatch " + "; ".join(reshaped[:10]) + (" ..." if len(reshaped) > 10 else ""))
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}: " + " | ".join(problems))
    model.load_state_dict(dict(state), strict=True)


def load_model(directory: PathLike, name: str = "model", map_location: Union[str, torch.device] = "cpu",
               verify: bool = True) -> nn.Module:
    """Rebuild a model saved by :func:`save_model`: its class from the registry, its config, its weights (strictly).

    ``verify`` checks the weights file against the SHA-256 recorded at save time. Raises FileNotFoundError for a
    missing file, ValueError for an unknown class, a tampered weights file or a shape/name mismatch.
    The model is returned in eval mode on ``map_location``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = os.fspath(directory)
    info = read_model_info(directory, name)
    weights_path = os.path.join(directory, info.get("weights", name + ".safetensors"))
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"{os.path.join(directory, name + '.json')} names weights {weights_path}, "
                                f"which does not exist")
    if verify and "sha256" in info and _sha256(weights_path) != info["sha256"]:
        raise ValueError(f"{weights_path} does not match the SHA-256 recorded in {name}.json: the weights were "
                         f"modified or replaced after saving (pass verify=False to load them anyway)")
    cls = _resolve_class(info["class"])
    try:
        model = cls(**info["config"])
    except TypeError as exc:
        raise ValueError(f"config in {name}.json does not fit {info['class']}: {exc}") from None
    try:
        state = load_file(weights_path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_path} is not a readable safetensors file: {exc}") from None
    load_state_dict_checked(model, state, source=weights_path)
    return model.to(map_location).eval()


class FolderPersistence:
    """``model.save(folder)`` and ``Class.load(folder)`` for a model class, over :func:`save_model` and
    :func:`load_model`; ``load`` refuses a folder that holds another class of model."""

    def save(self, directory: PathLike) -> str:
        """Write ``model.safetensors`` + ``model.json`` (class and config) into ``directory``; returns the JSON path."""
        return save_model(self, directory)

    @classmethod
    def load(cls, directory: PathLike, map_location: Union[str, torch.device] = "cpu"):
        """Rebuild a model written by :meth:`save` (weights loaded strictly, in eval mode)."""
        model = load_model(directory, map_location=map_location)
        if not isinstance(model, cls):
            raise ValueError(f"{os.fspath(directory)} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
