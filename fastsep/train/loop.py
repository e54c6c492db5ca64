"""The one training loop every fastsep model uses.

A *task* says how to compute the loss of a batch and how to validate; the loop does the rest: Adam, gradient
clipping, halving the learning rate on a plateau of the monitored metric, early stopping, mixed precision on CUDA,
checkpoints (resumable mid-epoch), the best model, a JSON-lines log, a progress bar, and DDP under ``torchrun``::

    from fastsep.train.loop import TrainConfig, train
    metrics = train(model, task, train_set, valid_set, TrainConfig(out_dir="runs/x", monitor="si_sdri",
                                                                   monitor_mode="max"))

Files in ``out_dir``: ``last/`` (full checkpoint, see :mod:`fastsep.train.checkpoint`), ``best/`` (the model with the
best monitored metric, readable by :func:`fastsep.models.io.load_model`, plus ``metrics.json``), ``log.jsonl``.
Calling :func:`train` again with the same ``out_dir`` resumes from ``last/``.

Reproducibility: on one process with ``num_workers=0`` a run that is stopped and resumed ends with exactly the weights
of an uninterrupted run (the shuffling order is rebuilt from ``seed`` and the epoch, the step within the epoch is
recorded and the batches already done are skipped, and every RNG state is restored). With data-loader workers the
workers' own random streams restart at the resume point, so on-the-fly augmentation there is reproducible per run but
not bit-identical across a resume.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..models.io import atomic_write_json, save_model
from . import checkpoint as ckpt
from .distributed import DistInfo, EpochSampler, any_flag, broadcast_object, init_distributed, shutdown, wrap_model

__all__ = ["TrainConfig", "TrainTask", "StepInfo", "train", "PlateauScheduler", "move_to_device"]


@runtime_checkable
class TrainTask(Protocol):
    """What :func:`train` needs to know about a model's objective (duck-typed: any object with these methods).

    Batches arrive already on the training device, as produced by the ``collate_fn`` given to :func:`train`.
    """

    def training_loss(self, model: nn.Module, batch: Any) -> Tensor:
        """A scalar loss for one training batch. ``model`` may be wrapped in DistributedDataParallel: call it,
        don't reach into its attributes (use ``fastsep.train.distributed.unwrap_model`` if you must)."""
        ...

    def validate(self, model: nn.Module, loader: Iterable[Any]) -> Dict[str, float]:
        """Validation metrics over ``loader`` (run under ``torch.no_grad`` with the model in eval mode);
        ``TrainConfig.monitor`` names the one that drives learning-rate halving, early stopping and ``best/``."""
        ...

    # Optional hooks, looked up with getattr (a task without them trains as before), for a task that trains a second
    # network itself (a GAN: fastsep.train.hifigan):
    #   make_optimizer(model, cfg) -> Optimizer: the model's optimizer instead of Adam(lr, weight_decay); called
    #       once the model is on its device and before a checkpoint is loaded into it.
    #   end_epoch(optimizer) -> None: after each epoch's validation and plateau step (e.g. a per-epoch lr decay).
    #   checkpoint_state() -> (tensors, meta) and load_checkpoint_state(tensors, meta): the task's own state, saved
    #       in every checkpoint beside the model's and given back on resume.


@dataclass
class TrainConfig:
    """Settings of :func:`train`. Only ``out_dir`` is required.

    ``monitor``/``monitor_mode``: the validation metric to track and whether lower ("min") or higher ("max") is better
    (``train_loss``, the epoch's mean training loss, is always available too). ``patience``: epochs without
    improvement before the learning rate is multiplied by ``lr_factor`` (one half). ``early_stop_patience``: epochs
    without improvement before training stops (0 disables). ``max_steps``: stop after this many training batches in
    all (across epochs and resumes; None for no limit). ``max_cpu_seconds``: stop once the training process has used
    this much CPU time (``time.process_time``: all its threads; data-loader worker processes not counted), summed
    across resumes (None for no limit): equal budgets compare models of different cost per step fairly on a shared
    CPU, where wall time depends on what else runs. ``amp``: float16 autocast with a GradScaler, used only on CUDA.
    ``cpu_bf16``: bfloat16 autocast on CPU (convolutions and matrix products in bfloat16, which AVX512-BF16 and AMX
    run at twice the float32 rate or more; weights, optimizer state and the loss stay float32, and bfloat16's float32
    exponent range needs no loss scaling).
    ``grad_clip``: maximum gradient norm (None or 0 disables). ``checkpoint_every``: also checkpoint every this many
    steps inside an epoch (0: only at epoch ends). ``keep_every``: also keep the model of every this many steps as
    ``out_dir/steps/<step>`` (a model folder like ``best/``, weights only; 0: none), so that one run can be scored
    at several points (``fastsep eval --model OUT/steps/0012000``) while ``last/`` moves on. ``device``: "auto", "cpu", "cuda" or "cuda:N". ``progress``: show a
    tqdm bar (only on a terminal, only on rank 0). ``resume``: continue from ``out_dir/last`` when it exists.
    ``reset_monitor``: on resume, forget the best monitored value and the epochs counted since it (the learning rate
    stays as it was). For a run resumed on other data: its validation split changed with it, so the old best was
    measured on other utterances and would halve the learning rate for no fault of the new epochs.
    """

    out_dir: str
    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    grad_clip: Optional[float] = 5.0
    monitor: str = "loss"
    monitor_mode: str = "min"
    patience: int = 3
    early_stop_patience: int = 10
    amp: bool = True
    cpu_bf16: bool = False
    num_workers: int = 0
    seed: int = 0
    max_steps: Optional[int] = None
    max_cpu_seconds: Optional[float] = None
    device: str = "auto"
    progress: bool = True
    weight_decay: float = 0.0
    lr_factor: float = 0.5
    min_lr: float = 0.0
    valid_batch_size: int = 1
    checkpoint_every: int = 500
    keep_every: int = 0
    log_every: int = 50
    shuffle: bool = True
    resume: bool = True
    reset_monitor: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.out_dir, (str, os.PathLike)) or not os.fspath(self.out_dir):
            raise TypeError(f"TrainConfig.out_dir must be a non-empty path, got {self.out_dir!r}")
        self.out_dir = os.fspath(self.out_dir)
        for name in ("epochs", "batch_size", "valid_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("patience", "early_stop_patience", "num_workers", "checkpoint_every", "keep_every", "log_every",
                     "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 0):
            raise ValueError(f"TrainConfig.max_steps must be None or a non-negative integer, got {self.max_steps!r}")
        if self.max_cpu_seconds is not None and not (isinstance(self.max_cpu_seconds, (int, float))
                                                     and not isinstance(self.max_cpu_seconds, bool)
                                                     and 0 <= self.max_cpu_seconds < math.inf):
            raise ValueError(f"TrainConfig.max_cpu_seconds must be None or a non-negative finite number, "
                             f"got {self.max_cpu_seconds!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if self.grad_clip is not None and not (self.grad_clip >= 0):
            raise ValueError(f"TrainConfig.grad_clip must be None or >= 0, got {self.grad_clip!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"TrainConfig.lr_factor must be in (0, 1), got {self.lr_factor!r}")
        if self.monitor_mode not in ("min", "max"):
            raise ValueError(f"TrainConfig.monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}")
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f"TrainConfig.monitor must name a metric, got {self.monitor!r}")


# Settings that change the trajectory: resuming under different values would silently mix two runs.
_RESUME_KEYS = ("batch_size", "lr", "grad_clip", "monitor", "monitor_mode", "patience", "early_stop_patience", "seed",
                "weight_decay", "lr_factor", "min_lr", "shuffle")


@dataclass
class StepInfo:
    """Passed to the ``on_step`` hook of :func:`train` after every training step (and any checkpoint it wrote)."""

    epoch: int
    step: int
    step_in_epoch: int
    loss: float
    skipped: bool
    checkpointed: bool


class PlateauScheduler:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement; count towards early stop.

    "Improvement" is strict: lower than the best so far for mode "min", higher for "max". A NaN metric never
    improves. The counter towards the next halving restarts after each halving; the early-stop counter only restarts
    on improvement.
    """

    def __init__(self, mode: str, patience: int, early_stop_patience: int, factor: float = 0.5, min_lr: float = 0.0):
        self.mode, self.patience, self.early_stop_patience = mode, patience, early_stop_patience
        self.factor, self.min_lr = factor, min_lr
        self.best: Optional[float] = None
        self.bad_epochs = 0
        self.epochs_since_best = 0
        self.halvings = 0

    def improves(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def step(self, value: float, optimizer: torch.optim.Optimizer) -> Dict[str, bool]:
        """Record one epoch's metric; returns {"improved", "halved", "stop"}."""
        improved = self.improves(value)
        halved = False
        if improved:
            self.best, self.bad_epochs, self.epochs_since_best = float(value), 0, 0
        else:
            self.bad_epochs += 1
            self.epochs_since_best += 1
            if self.patience > 0 and self.bad_epochs >= self.patience:
                for group in optimizer.param_groups:
                    group["lr"] = max(group["lr"] * self.factor, self.min_lr)
                self.bad_epochs = 0
                self.halvings += 1
                halved = True
        stop = self.early_stop_patience > 0 and self.epochs_since_best >= self.early_stop_patience
        return {"improved": improved, "halved": halved, "stop": stop}

    def forget_best(self) -> None:
        """Start the plateau record over (the next epoch's metric becomes the best); halvings so far are kept."""
        self.best, self.bad_epochs, self.epochs_since_best = None, 0, 0

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "epochs_since_best": self.epochs_since_best,
                "halvings": self.halvings}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self.epochs_since_best = int(state["epochs_since_best"])
        self.halvings = int(state["halvings"])


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(moved) if isinstance(batch, list) else tuple(moved)
    return batch


class _OnDevice:
    """A loader whose batches arrive on ``device`` (what tasks' ``validate`` receives)."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield move_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


class _JsonLog:
    """Appends one JSON object per line to ``out_dir/log.jsonl`` (main process only).

    A log is appended to rather than rewritten; each record is one write of one complete line, flushed, so a crash
    loses at most the line being written.
    """

    def __init__(self, path: str, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, event: str, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **values}
        line = json.dumps(record, default=float, allow_nan=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


class _StopRequest:
    """SIGTERM / first SIGINT ask the loop to checkpoint at the next step boundary and return (second SIGINT aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"fastsep train: got signal {signum}; checkpointing after this step (Ctrl-C again to abort)",
              file=sys.stderr)

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader workers leave SIGTERM and SIGINT to the main process. A scheduler or a terminal signals every process
    of the job at once; a worker that died of it would make the main process fail with "DataLoader worker is killed"
    instead of checkpointing at the step boundary (the main process stops its workers itself)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False,
                disable=not (enabled and sys.stderr.isatty()))


class _Trainer:
    def __init__(self, model: nn.Module, task: Any, train_set: Dataset, valid_set: Optional[Dataset],
                 cfg: TrainConfig, collate_fn: Optional[Callable], on_step: Optional[Callable[[StepInfo], None]],
                 info: DistInfo):
        self.model, self.task, self.train_set, self.valid_set = model, task, train_set, valid_set
        self.cfg, self.collate_fn, self.on_step, self.info = cfg, collate_fn, on_step, info
        self.device = info.device
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.use_bf16 = bool(cfg.cpu_bf16 and self.device.type == "cpu")
        self.autocast_dtype = torch.bfloat16 if self.use_bf16 else torch.float16
        self.log = _JsonLog(os.path.join(cfg.out_dir, "log.jsonl"), info.is_main)
        self.stop = _StopRequest()

    # ----------------------------------------------------------------------------------------------- bookkeeping
    def _fresh_state(self) -> Dict[str, Any]:
        return {"epoch": 0, "step": 0, "step_in_epoch": 0, "epoch_loss_sum": 0.0, "epoch_loss_count": 0,
                "nonfinite_steps": 0, "amp_skipped_steps": 0, "last_metrics": {}, "stopped_early": False,
                "best": None, "config": asdict(self.cfg), "world_size": self.info.world_size,
                "train_items": len(self.train_set), "cpu_seconds": 0.0}

    def _cpu_seconds(self) -> float:
        """CPU time this run has used so far, earlier sessions of it (resumes) included."""
        return self._cpu_before + time.process_time() - self._cpu_start

    def _budget_spent(self) -> bool:
        """Whether this process has used its CPU budget (each rank its own; callers OR it over the ranks)."""
        return self.cfg.max_cpu_seconds is not None and self._cpu_seconds() >= self.cfg.max_cpu_seconds

    def _check_same_config(self, stored: Dict[str, Any], where: str) -> None:
        diffs = [f"{k}: checkpoint {stored.get(k)!r} vs now {getattr(self.cfg, k)!r}"
                 for k in _RESUME_KEYS if stored.get(k) != getattr(self.cfg, k)]
        if diffs:
            raise ValueError(f"cannot resume from {where}: the run was started with other settings ("
                             + "; ".join(diffs) + "). Use another out_dir, or TrainConfig(resume=False) to restart.")

    def _save(self) -> None:
        self.state["scheduler"] = self.scheduler.state_dict()
        self.state["cpu_seconds"] = self._cpu_seconds()
        if self.info.is_main:
            task_state = getattr(self.task, "checkpoint_state", None)
            extra = task_state() if callable(task_state) else None
            ckpt.save_checkpoint(self.cfg.out_dir, self.model, self.optimizer, self.state, self.scaler, extra=extra)

    def _batches_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_set) / self.info.world_size)
        return math.ceil(per_rank / self.cfg.batch_size)

    def _loader(self, dataset: Dataset, sampler, batch_size: int, generator_seed: int) -> DataLoader:
        # A private generator: creating a DataLoader iterator draws a seed for its workers, and drawing it from the
        # global RNG would shift every later random draw depending on where a run was resumed.
        gen = torch.Generator()
        gen.manual_seed(generator_seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=self.collate_fn,
                          num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
                          generator=gen, drop_last=False, worker_init_fn=_ignore_stop_signals)

    # ------------------------------------------------------------------------------------------------- one step
    def _train_step(self, batch: Any) -> Dict[str, Any]:
        cfg = self.cfg
        batch = move_to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype,
                            enabled=self.use_amp or self.use_bf16):
            loss = self.task.training_loss(self.ddp_model, batch)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
            raise TypeError(f"{type(self.task).__name__}.training_loss must return a scalar tensor, got {got}")
        value = float(loss.detach().float().item())
        # The CPU budget is ORed over the ranks with the other flags: each rank's CPU time differs, and a rank that
        # stopped alone would leave the others waiting in the next all-reduce.
        nonfinite, stop, spent = any_flag([not math.isfinite(value), self.stop.requested, self._budget_spent()],
                                          self.info)
        if nonfinite:
            # Backward through a NaN/inf would poison Adam's moments; every rank skips together (see any_flag).
            self.state["nonfinite_steps"] += 1
            self.log.write("nonfinite_loss", epoch=self.state["epoch"], step=self.state["step"] + 1, loss=value)
            return {"loss": value, "skipped": True, "stop": stop, "budget_spent": spent}
        self.scaler.scale(loss.reshape(())).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        skipped = False
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if not self.use_amp and not math.isfinite(float(norm)):
                # Without AMP nobody else catches overflowing gradients; gradients are all-reduced, so the norm
                # (and this decision) is the same on every rank.
                self.state["nonfinite_steps"] += 1
                self.log.write("nonfinite_grad", epoch=self.state["epoch"], step=self.state["step"] + 1)
                skipped = True
        if not skipped:
            scale_before = self.scaler.get_scale() if self.use_amp else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.use_amp and self.scaler.get_scale() < scale_before:
                self.state["amp_skipped_steps"] += 1  # the scaler found inf gradients and skipped this update
        if not skipped:
            self.state["epoch_loss_sum"] += value
            self.state["epoch_loss_count"] += 1
        return {"loss": value, "skipped": skipped, "stop": stop, "budget_spent": spent}

    # ------------------------------------------------------------------------------------------------ validation
    def _validate(self) -> Dict[str, float]:
        metrics: Optional[Dict[str, float]] = None
        if self.info.is_main:
            metrics = {}
            if self.valid_set is not None:
                loader = self._loader(self.valid_set, None, self.cfg.valid_batch_size, self.cfg.seed + 7919)
                self.model.eval()
                with torch.no_grad():
                    got = self.task.validate(self.model, _OnDevice(loader, self.device))
                self.model.train()
                if not isinstance(got, dict):
                    raise TypeError(f"{type(self.task).__name__}.validate must return a dict of metrics, "
                                    f"got {type(got).__name__}")
                metrics = {str(k): float(v) for k, v in got.items()}
            count = self.state["epoch_loss_count"]
            metrics["train_loss"] = self.state["epoch_loss_sum"] / count if count else float("nan")
        return broadcast_object(metrics, self.info)

    def _write_best(self, metrics: Dict[str, float]) -> None:
        """The model as out_dir/best (fastsep.models.io layout) with the metrics that earned it; rank 0 only."""
        if self.info.is_main:
            best_dir = os.path.join(self.cfg.out_dir, "best")
            save_model(self.model, best_dir)
            atomic_write_json(os.path.join(best_dir, "metrics.json"),
                              {"epoch": self.state["epoch"] + 1, "step": self.state["step"], **metrics})

    def _keep_step(self) -> None:
        """The model as out_dir/steps/<step> (fastsep.models.io layout); rank 0 only."""
        if self.info.is_main:
            save_model(self.model, os.path.join(self.cfg.out_dir, "steps", f"{self.state['step']:07d}"))

    def _end_epoch(self) -> bool:
        """Validate, schedule, save best and checkpoint; returns True when early stopping fires."""
        st, cfg = self.state, self.cfg
        metrics = self._validate()
        if cfg.monitor not in metrics:
            raise ValueError(f"monitored metric {cfg.monitor!r} is not among the validation metrics "
                             f"{sorted(metrics)}; set TrainConfig.monitor to one of them")
        decision = self.scheduler.step(metrics[cfg.monitor], self.optimizer)
        end_epoch = getattr(self.task, "end_epoch", None)
        if callable(end_epoch):
            end_epoch(self.optimizer)
        lr = self.optimizer.param_groups[0]["lr"]
        if decision["improved"]:
            st["best"] = metrics[cfg.monitor]
            self._write_best(metrics)
        self.log.write("epoch", epoch=st["epoch"] + 1, step=st["step"], lr=lr, best=st["best"],
                       improved=decision["improved"], **metrics)
        if decision["halved"]:
            self.log.write("lr_halved", epoch=st["epoch"] + 1, lr=lr)
        st["last_metrics"] = metrics
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["epoch_loss_sum"], st["epoch_loss_count"] = 0.0, 0
        if decision["stop"]:
            st["stopped_early"] = True
            self.log.write("early_stop", epoch=st["epoch"], best=st["best"])
        self._save()
        return decision["stop"]

    # ------------------------------------------------------------------------------------------------------ run
    def setup(self) -> None:
        cfg = self.cfg
        if self.info.is_main:
            os.makedirs(cfg.out_dir, exist_ok=True)
            ckpt.remove_stale_temporaries(cfg.out_dir)
        self.model.to(self.device)
        make_optimizer = getattr(self.task, "make_optimizer", None)
        if callable(make_optimizer):
            self.optimizer = make_optimizer(self.model, cfg)
            if not isinstance(self.optimizer, torch.optim.Optimizer):
                raise TypeError(f"{type(self.task).__name__}.make_optimizer must return a torch.optim.Optimizer, "
                                f"got {type(self.optimizer).__name__}")
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.scheduler = PlateauScheduler(cfg.monitor_mode, cfg.patience, cfg.early_stop_patience, cfg.lr_factor,
                                          cfg.min_lr)
        found = ckpt.find_checkpoint(cfg.out_dir) if cfg.resume else None
        if found is not None:
            with open(os.path.join(found, ckpt.STATE_FILE), "r", encoding="utf-8") as fh:
                stored = json.load(fh)["trainer"]
            self._check_same_config(stored.get("config", {}), found)
            if stored.get("step_in_epoch", 0) and stored.get("world_size", 1) != self.info.world_size:
                raise ValueError(f"cannot resume {found} inside an epoch with {self.info.world_size} processes: it "
                                 f"was written by {stored.get('world_size')} (each process's share of the epoch "
                                 f"would differ). Resume with the original process count.")
            if stored.get("step_in_epoch", 0) and stored.get("train_items", len(self.train_set)) != len(self.train_set):
                raise ValueError(f"cannot resume {found} inside an epoch: the training set had "
                                 f"{stored.get('train_items')} items then and has {len(self.train_set)} now")
            self.state = ckpt.load_checkpoint(found, self.model, self.optimizer, self.scaler)
            load_task_state = getattr(self.task, "load_checkpoint_state", None)
            if callable(load_task_state):
                extra = ckpt.load_extra_state(found)
                if extra is None:
                    raise ValueError(f"cannot resume {found} with {type(self.task).__name__}: the checkpoint holds no "
                                     f"state of that task (it was written by another kind of run)")
                load_task_state(*extra)
            self.state["world_size"] = self.info.world_size
            self.state["train_items"] = len(self.train_set)
            self.state["config"] = asdict(cfg)
            self.scheduler.load_state_dict(self.state["scheduler"])
            if cfg.reset_monitor:
                forgotten = self.scheduler.best
                self.scheduler.forget_best()
                self.state["best"] = None  # the scheduler's own record goes into the next checkpoint (_save)
                self.log.write("monitor_reset", step=self.state["step"], forgotten_best=forgotten)
            if self.info.rank:  # ranks other than 0 must not replay rank 0's random streams
                _seed_everything(cfg.seed + 1000003 * self.info.rank + self.state["step"])
            self.log.write("resume", epoch=self.state["epoch"], step=self.state["step"],
                           step_in_epoch=self.state["step_in_epoch"], checkpoint=found)
        else:
            _seed_everything(cfg.seed + 1000003 * self.info.rank)
            self.state = self._fresh_state()
            self.log.write("start", config=asdict(cfg), world_size=self.info.world_size, device=str(self.device),
                           amp=self.use_amp, model=type(self.model).__name__,
                           parameters=sum(p.numel() for p in self.model.parameters()))
        self.ddp_model = wrap_model(self.model, self.info)
        self._cpu_before = float(self.state.get("cpu_seconds", 0.0))  # checkpoints written before it was kept: 0
        self._cpu_start = time.process_time()

    def _summary(self, reason: str) -> Dict[str, float]:
        st = self.state
        out = {k: float(v) for k, v in st["last_metrics"].items()}
        out.update({"epoch": float(st["epoch"]), "step": float(st["step"]),
                    "best": float("nan") if st["best"] is None else float(st["best"]),
                    "lr": float(self.optimizer.param_groups[0]["lr"]), "nonfinite_steps": float(st["nonfinite_steps"]),
                    "amp_skipped_steps": float(st["amp_skipped_steps"]),
                    "stopped_early": float(bool(st["stopped_early"])),
                    "cpu_seconds": round(self._cpu_seconds(), 1)})
        self.log.write("stop", reason=reason, **out)
        return out

    def run(self) -> Dict[str, float]:
        cfg, st = self.cfg, None
        with self.stop:
            self.setup()
            st = self.state
            if st["stopped_early"]:
                return self._summary("already stopped early")
            per_epoch = self._batches_per_epoch()
            while st["epoch"] < cfg.epochs:
                if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                    return self._summary("max_steps")
                if any_flag([self._budget_spent()], self.info)[0]:
                    return self._summary("max_cpu_seconds")
                epoch = st["epoch"]
                sampler = EpochSampler(self.train_set, self.info, cfg.seed, epoch, cfg.batch_size,
                                       skip_batches=st["step_in_epoch"], shuffle=cfg.shuffle)
                loader = self._loader(self.train_set, sampler, cfg.batch_size, cfg.seed * 1000003 + epoch)
                self.ddp_model.train()
                interrupted = None
                since_log, loss_acc = 0, 0.0
                with _progress_bar(per_epoch, st["step_in_epoch"], f"epoch {epoch + 1}/{cfg.epochs}",
                                   cfg.progress and self.info.is_main) as bar:
                    for batch in loader:
                        out = self._train_step(batch)
                        st["step"] += 1
                        st["step_in_epoch"] += 1
                        if not out["skipped"]:
                            since_log, loss_acc = since_log + 1, loss_acc + out["loss"]
                        if cfg.log_every and st["step"] % cfg.log_every == 0 and since_log:
                            self.log.write("train", epoch=epoch + 1, step=st["step"], loss=loss_acc / since_log,
                                           lr=self.optimizer.param_groups[0]["lr"],
                                           cpu_s=round(self._cpu_seconds(), 1))
                            since_log, loss_acc = 0, 0.0
                        count = st["epoch_loss_count"]
                        bar.set_postfix(loss=f"{out['loss']:.4g}",
                                        avg=f"{st['epoch_loss_sum'] / count:.4g}" if count else "nan")
                        bar.update(1)
                        if out["stop"]:
                            interrupted = "signal"
                        elif cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                            interrupted = "max_steps"
                        elif out["budget_spent"]:
                            interrupted = "max_cpu_seconds"
                        end_of_epoch = st["step_in_epoch"] >= per_epoch
                        checkpointed = False
                        if not end_of_epoch and (interrupted or (cfg.checkpoint_every
                                                                 and st["step"] % cfg.checkpoint_every == 0)):
                            self._save()
                            checkpointed = True
                        if cfg.keep_every and st["step"] % cfg.keep_every == 0:
                            self._keep_step()
                        if self.on_step is not None:
                            self.on_step(StepInfo(epoch=epoch, step=st["step"], step_in_epoch=st["step_in_epoch"],
                                                  loss=out["loss"], skipped=out["skipped"],
                                                  checkpointed=checkpointed))
                        if interrupted:
                            break
                if st["step_in_epoch"] >= per_epoch:
                    if self._end_epoch():
                        return self._summary("early_stop")
                    if interrupted == "signal":
                        return self._summary("signal")
                elif interrupted:
                    # Stopped inside an epoch: the checkpoint is already written, so validating now for the report
                    # cannot change what a resumed run does.
                    st["last_metrics"] = self._validate()
                    if (interrupted in ("max_steps", "max_cpu_seconds")
                            and self.scheduler.improves(st["last_metrics"].get(self.cfg.monitor))):
                        # A run ended by max_steps inside its first (or any) epoch still leaves its model in best/.
                        # The scheduler's record is left alone, so a resumed run behaves as it would have.
                        self._write_best(st["last_metrics"])
                    return self._summary(interrupted)
            return self._summary("epochs")


def train(model: nn.Module, task: TrainTask, train_set: Dataset, valid_set: Optional[Dataset], cfg: TrainConfig,
          collate_fn: Optional[Callable] = None, *, on_step: Optional[Callable[[StepInfo], None]] = None
          ) -> Dict[str, float]:
    """Train ``model`` on ``task`` and return the final metrics (the last validation's, plus ``epoch``, ``step``,
    ``best``, ``lr``, ``nonfinite_steps``, ``amp_skipped_steps``, ``stopped_early``).

    ``train_set``/``valid_set`` are map-style datasets (``__len__`` and ``__getitem__``); ``collate_fn`` batches their
    items for both (the validation loader uses ``cfg.valid_batch_size``, one by default, for whole utterances).
    ``valid_set`` may be None, leaving ``train_loss`` as the only metric. ``model`` must carry ``model.config`` (see
    :func:`fastsep.models.io.save_model`). ``on_step`` is called after every step with a :class:`StepInfo`.
    Resumes from ``cfg.out_dir/last`` when it exists; under ``torchrun`` trains with DDP, rank 0 writing all files.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"train expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train expects cfg to be a TrainConfig, got {type(cfg).__name__}")
    for method in ("training_loss", "validate"):
        if not callable(getattr(task, method, None)):
            raise TypeError(f"task {type(task).__name__} has no {method}() method (see fastsep.train.loop.TrainTask)")
    if not isinstance(getattr(model, "config", None), dict):
        raise TypeError(f"{type(model).__name__} needs a dict model.config (its constructor's keyword arguments) so "
                        f"checkpoints can rebuild it")
    try:
        n = len(train_set)
    except TypeError:
        raise TypeError(f"train_set must be a map-style dataset with __len__, got {type(train_set).__name__}") from None
    if n == 0:
        raise ValueError("train_set is empty")
    info = init_distributed(cfg.device)
    try:
        return _Trainer(model, task, train_set, valid_set, cfg, collate_fn, on_step, info).run()
    finally:
        shutdown(info)
