"""Multi-GPU / multi-node training through ``torchrun``, and a plain single process otherwise.

Under ``torchrun`` the environment carries RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
:func:`init_distributed` joins the process group from them (NCCL on CUDA, Gloo on CPU) and pins each process to its
local GPU. Without those variables every helper here is a no-op, so the loop has one code path.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sized

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

__all__ = ["DistInfo", "init_distributed", "shutdown", "wrap_model", "unwrap_model", "any_flag", "broadcast_object",
           "barrier", "EpochSampler"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank among ``world_size`` processes and the device it trains on."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.initialized_here


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but this torch build sees no CUDA device")
        if dev.index is None:  # one process per GPU: "cuda" means this process's GPU
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group if the environment describes one; otherwise describe a single process.

    ``device``: "auto" (this process's GPU if CUDA is available, else CPU), "cpu", "cuda" or "cuda:N".
    The group timeout can be raised with FASTSEP_DIST_TIMEOUT_S (default two hours) for long validations.
    """
    world = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    if world is None or rank is None:
        return DistInfo(device=_pick_device(device, 0))
    local_rank = _env_int("LOCAL_RANK") or 0
    dev = _pick_device(device, local_rank)
    if dist.is_initialized():  # the caller (or an earlier train call) already joined; reuse that group
        return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get("FASTSEP_DIST_TIMEOUT_S", 7200)))
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev, initialized_here=True)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """The model as the training step should call it: DistributedDataParallel when distributed, else unchanged."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if info.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[info.device.index], output_device=info.device.index)
    return DistributedDataParallel(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module) else model


def any_flag(flags: List[bool], info: DistInfo) -> List[bool]:
    """Element-wise OR of boolean flags over all processes, so every rank takes the same decision.

    The loop uses it each step for "this loss is not finite" and "asked to stop": if one rank skipped a backward
    pass the others would wait forever in the gradient all-reduce.
    """
    if not info.distributed:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (validation metrics, so that all ranks schedule the learning rate alike)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


class EpochSampler(Sampler):
    """This rank's share of one epoch's shuffled order, starting after the first ``skip_batches`` batches.

    The order comes from :class:`torch.utils.data.DistributedSampler` seeded by ``seed`` and ``epoch``, so it can be
    rebuilt exactly on resume; skipping indices here (instead of drawing and discarding batches) means a resumed
    run neither reloads nor re-augments the samples it already trained on.
    """

    def __init__(self, dataset: Sized, info: DistInfo, seed: int, epoch: int, batch_size: int,
                 skip_batches: int = 0, shuffle: bool = True):
        inner = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                                   seed=seed, drop_last=False)
        inner.set_epoch(epoch)
        self._indices = list(iter(inner))[skip_batches * batch_size:]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
