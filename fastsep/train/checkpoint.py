"""Training checkpoints: a folder of safetensors files plus one JSON, replaced as a whole.

A checkpoint folder holds

- ``model.safetensors`` + ``model.json``   the model, via :func:`fastsep.models.io.save_model` (loadable on its own);
- ``optimizer.safetensors``               every tensor of the optimizer state, named ``<param index>.<key>``;
- ``rng.safetensors``                     the torch (CPU and CUDA), numpy and Python generator states;
- ``state.json``                          everything else: optimizer scalars and param groups, grad-scaler state,
                                          the trainer's counters and scheduler, written last as the completion mark;
- ``extra.safetensors``                   only for a task that keeps state of its own (a GAN's discriminator and
                                          its optimizer): its tensors; the rest of it under ``"extra"`` in state.json.

No pickle anywhere. :func:`save_checkpoint` writes into a fresh temporary folder next to the target and then renames
it into place, so a crash mid-write leaves the previous checkpoint untouched (see :func:`find_checkpoint` for the one
window where the previous checkpoint sits under its ``.old`` name).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..models.io import atomic_write_json, load_state_dict_checked, read_model_info, save_model, \
    state_dict_for_safetensors

__all__ = ["save_checkpoint", "load_checkpoint", "load_extra_state", "find_checkpoint", "remove_stale_temporaries",
           "flatten_optimizer_state", "unflatten_optimizer_state", "capture_rng", "restore_rng"]

STATE_FILE = "state.json"
_FORMAT = 1


# ------------------------------------------------------------------------------------------------ JSON with tuples
def _to_json(obj: Any) -> Any:
    # Param groups hold tuples (Adam's betas); JSON has only lists, so tuples are tagged to come back as tuples.
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v) for v in obj]}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, Tensor):
        if obj.numel() != 1:
            raise TypeError(f"only scalar tensors can go into the checkpoint JSON, got shape {tuple(obj.shape)}")
        return obj.item()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in the checkpoint JSON")


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tuple__"}:
            return tuple(_from_json(v) for v in obj["__tuple__"])
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------------- optimizer
def flatten_optimizer_state(optimizer: torch.optim.Optimizer) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors (for safetensors) and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: Dict[str, Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for pid, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = _to_json(value)
    meta = {"param_groups": _to_json(sd["param_groups"]), "scalars": scalars,
            "tensor_params": sorted({str(pid) for pid in sd["state"]})}
    return state_dict_for_safetensors(tensors), meta


def unflatten_optimizer_state(tensors: Dict[str, Tensor], meta: Dict[str, Any]) -> Dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: Dict[int, Dict[str, Any]] = {}
    for pid in meta.get("tensor_params", []):
        state[int(pid)] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(_from_json(values))
    return {"state": state, "param_groups": _from_json(meta["param_groups"])}


# ------------------------------------------------------------------------------------------------------------- RNG
def capture_rng() -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Every generator a training step may draw from, as tensors plus JSON scalars."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(py_state, dtype=torch.int64)
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, gauss_next]}
    return state_dict_for_safetensors(tensors), meta


def restore_rng(tensors: Dict[str, Tensor], meta: Dict[str, Any]) -> None:
    """Put back the generator states captured by :func:`capture_rng`."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        else:  # a different GPU count: at least restore the generators this process uses
            torch.cuda.set_rng_state(states[min(torch.cuda.current_device(), len(states) - 1)])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, gauss_next = meta["python"]
    random.setstate((int(version), tuple(int(v) for v in tensors["python"].tolist()), gauss_next))


# ------------------------------------------------------------------------------------------------------ the folder
def _paths(out_dir: str, name: str) -> Tuple[str, str]:
    return os.path.join(out_dir, name), os.path.join(out_dir, f".{name}.old")


def find_checkpoint(out_dir: str, name: str = "last") -> Optional[str]:
    """The complete checkpoint folder ``out_dir/<name>``, or None.

    The swap in :func:`save_checkpoint` renames the old folder aside before renaming the new one in; a crash between
    those two renames leaves only ``.<name>.old``, which is then the latest complete checkpoint and is used.
    """
    final, old = _paths(out_dir, name)
    for candidate in (final, old):
        if os.path.isfile(os.path.join(candidate, STATE_FILE)):
            return candidate
    return None


def remove_stale_temporaries(out_dir: str, name: str = "last") -> None:
    """Delete half-written temporary folders left by a crash during :func:`save_checkpoint`."""
    if not os.path.isdir(out_dir):
        return
    for entry in os.listdir(out_dir):
        if entry.startswith(f".{name}.tmp-"):
            shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform lets a folder be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(out_dir: str, model: nn.Module, optimizer: torch.optim.Optimizer, trainer_state: Dict[str, Any],
                    scaler: Optional[Any] = None, name: str = "last",
                    extra: Optional[Tuple[Dict[str, Tensor], Dict[str, Any]]] = None) -> str:
    """Write a complete checkpoint to ``out_dir/<name>`` atomically; returns its path.

    ``trainer_state`` is the loop's JSON-able bookkeeping (epoch, step, scheduler, best metric, config...).
    ``extra``: ``(tensors, meta)`` of a task's own state, stored in the same folder (so it is replaced together with
    the model's) and given back by :func:`load_extra_state`.
    """
    from ..models.io import DIR_MODE, atomic_write_bytes
    from safetensors.torch import save

    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_dir)
    os.chmod(tmp, DIR_MODE)
    try:
        save_model(model, tmp, "model")
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer)
        atomic_write_bytes(os.path.join(tmp, "optimizer.safetensors"), save(opt_tensors))
        rng_tensors, rng_meta = capture_rng()
        atomic_write_bytes(os.path.join(tmp, "rng.safetensors"), save(rng_tensors))
        scaler_state = _to_json(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None
        doc = {"format": _FORMAT, "trainer": _to_json(trainer_state), "optimizer": opt_meta, "rng": rng_meta,
               "scaler": scaler_state}
        if extra is not None:
            extra_tensors, extra_meta = extra
            atomic_write_bytes(os.path.join(tmp, "extra.safetensors"),
                               save(state_dict_for_safetensors(extra_tensors)))
            doc["extra"] = _to_json(extra_meta)
        atomic_write_json(os.path.join(tmp, STATE_FILE), doc)  # last: its presence marks the folder complete
        _fsync_dir(tmp)
        final, old = _paths(out_dir, name)
        if os.path.isdir(final):
            if os.path.isdir(old):
                shutil.rmtree(old)
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                    scaler: Optional[Any] = None, restore_rng_state: bool = True) -> Dict[str, Any]:
    """Load a checkpoint folder into ``model`` (and ``optimizer``, ``scaler``, the RNGs); returns the trainer state.

    The model's weights are checked against the SHA-256 recorded with them and loaded strictly.
    """
    from safetensors.torch import load_file

    state_path = os.path.join(path, STATE_FILE)
    if not os.path.isfile(state_path):
        raise FileNotFoundError(f"{path} is not a complete fastsep checkpoint (no {STATE_FILE})")
    with open(state_path, "r", encoding="utf-8") as fh:
        doc = json.load(fh)
    if doc.get("format") != _FORMAT:
        raise ValueError(f"{state_path}: checkpoint format {doc.get('format')!r}, this fastsep reads {_FORMAT}")
    info = read_model_info(path, "model")
    if info["class"] != type(model).__name__:
        raise ValueError(f"checkpoint {path} holds a {info['class']}, not a {type(model).__name__}")
    from ..models.io import _sha256

    weights = os.path.join(path, "model.safetensors")
    if info.get("sha256") and _sha256(weights) != info["sha256"]:
        raise ValueError(f"{weights} does not match the SHA-256 recorded in model.json (modified after saving)")
    load_state_dict_checked(model, load_file(weights, device="cpu"), source=weights)
    if optimizer is not None:
        # loaded on the CPU: load_state_dict moves each state tensor to its parameter's device itself, and keeps
        # Adam's "step" counters on the CPU where the non-capturable implementation expects them
        tensors = load_file(os.path.join(path, "optimizer.safetensors"), device="cpu")
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, doc["optimizer"]))
    if scaler is not None and doc.get("scaler") is not None and scaler.is_enabled():
        scaler.load_state_dict(_from_json(doc["scaler"]))
    if restore_rng_state:
        restore_rng(load_file(os.path.join(path, "rng.safetensors")), doc["rng"])
    return _from_json(doc["trainer"])


def load_extra_state(path: str) -> Optional[Tuple[Dict[str, Tensor], Dict[str, Any]]]:
    """The ``(tensors, meta)`` a task stored with ``save_checkpoint(extra=...)`` in checkpoint folder ``path``, or
    None when the checkpoint holds none (tensors on the CPU)."""
    from safetensors.torch import load_file

    with open(os.path.join(path, STATE_FILE), "r", encoding="utf-8") as fh:
        doc = json.load(fh)
    if "extra" not in doc:
        return None
    tensors_path = os.path.join(path, "extra.safetensors")
    if not os.path.isfile(tensors_path):
        raise FileNotFoundError(f"{path} records a task state but {tensors_path} is missing")
    return load_file(tensors_path, device="cpu"), _from_json(doc["extra"])
