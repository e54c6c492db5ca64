"""Weight averaging of several checkpoints of one model (the last few checkpoints of a run, for example).

Averaging the weights of checkpoints taken along one run at a small learning rate lands nearer the middle of the
region they wander over, which usually scores a little higher and more steadily than any single one of them
(Izmailov et al. 2018, "Averaging weights leads to wider optima"); speechbrain's and ESPnet's recipes average their
last or best checkpoints the same way. Only checkpoints of one run (same class and config) can be averaged: weights of
independently trained models do not line up.
"""
from __future__ import annotations

import copy
import os
from typing import List, Sequence, Union

import torch
from torch import nn

__all__ = ["average_models", "load_and_average"]

PathLike = Union[str, "os.PathLike[str]"]


def average_models(models: Sequence[nn.Module]) -> nn.Module:
    """A model of the first one's class and config whose floating-point weights and buffers are the mean of
    ``models``'s; integer buffers (counters) are taken from the last model. Raises ValueError unless every model has
    the same class, config and tensor names and shapes."""
    models = list(models)
    if not models:
        raise ValueError("average_models: no models given")
    first = models[0]
    for other in models[1:]:
        if type(other) is not type(first):
            raise ValueError(f"average_models: cannot average a {type(other).__name__} with a {type(first).__name__}")
        if getattr(other, "config", None) != getattr(first, "config", None):
            raise ValueError("average_models: the models were built with different configs (only checkpoints of one "
                             "run can be averaged)")
    states = [m.state_dict() for m in models]
    names = list(states[0])
    for state in states[1:]:
        if list(state) != names or any(state[k].shape != states[0][k].shape for k in names):
            raise ValueError("average_models: the models' tensors differ in names or shapes")
    averaged = {}
    for key in names:
        values = [state[key] for state in states]
        if values[0].is_floating_point():
            # summed in float64 so that the mean of many checkpoints does not depend on their order
            averaged[key] = (torch.stack([v.double() for v in values]).mean(0)).to(values[0].dtype)
        else:
            averaged[key] = values[-1].clone()
    result = copy.deepcopy(first)
    result.load_state_dict(averaged, strict=True)
    return result.eval()


def load_and_average(directories: Sequence[PathLike], map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Load model folders (:func:`fastsep.models.io.load_model` layout, e.g. ``RUN/steps/<step>``) and average them."""
    from .io import load_model

    models: List[nn.Module] = []
    for directory in directories:
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"no model folder at {os.fspath(directory)}")
        models.append(load_model(directory, map_location=map_location))
    return average_models(models)
