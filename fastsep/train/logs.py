"""Reading a training run's ``log.jsonl`` back: the learning curves a person looks at to see whether more steps,
a larger model or a data change moved anything.

The loop (:mod:`fastsep.train.loop`) appends one JSON object per line: ``start`` at every (re)start with the config,
``train`` every ``log_every`` steps with the running training loss, ``epoch`` after each validation with the monitored
metric, ``lr_halved``, and ``stop``. A run killed mid-write leaves at most one broken line, which is skipped and
counted rather than failing the whole read.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

__all__ = ["TrainingLog", "read_training_log"]


@dataclass
class TrainingLog:
    """The curves of one run. Steps are the loop's global step counts (they continue across resumes)."""

    name: str
    monitor: Optional[str] = None         # the validation metric the run monitored (e.g. si_sdri, mel_l1)
    monitor_mode: Optional[str] = None    # "max" or "min"
    train: List[Tuple[int, float]] = field(default_factory=list)      # (step, running training loss)
    valid: List[Tuple[int, float]] = field(default_factory=list)      # (step, monitored metric)
    lr: List[Tuple[int, float]] = field(default_factory=list)         # (step, lr) at each train record
    cpu: List[Tuple[int, float]] = field(default_factory=list)        # (step, CPU seconds used so far), if logged
    restarts: List[int] = field(default_factory=list)                 # steps at which the run was (re)started
    skipped_lines: int = 0

    def best_valid(self) -> Optional[Tuple[int, float]]:
        """(step, value) of the best validation score, by the monitor's mode; None without validations."""
        if not self.valid:
            return None
        pick = min if self.monitor_mode == "min" else max
        return pick(self.valid, key=lambda sv: sv[1])

    def cpu_minutes(self, steps):
        """The run's CPU time in minutes at each of ``steps`` (interpolated between its train records, which carry
        it since the loop started counting it); ValueError for a run that never logged it."""
        if not self.cpu:
            raise ValueError(f"run {self.name!r} logged no CPU time (its log predates fastsep's CPU accounting)")
        import numpy as np

        known_steps, seconds = (np.asarray(v, dtype=np.float64) for v in zip(*([(0, 0.0)] + self.cpu)))
        return np.interp(np.asarray(steps, dtype=np.float64), known_steps, seconds) / 60.0


def _log_path(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "log.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no training log at {path} (expected a run folder holding log.jsonl, or the file)")
    return path


def read_training_log(path: str, name: Optional[str] = None) -> TrainingLog:
    """The curves of the run at ``path`` (a run folder or its ``log.jsonl``).

    Where a run was resumed from an earlier checkpoint than its last record, the later records of the repeated steps
    replace the earlier ones, so each curve is a function of the step.
    """
    path = _log_path(path)
    log = TrainingLog(name or os.path.basename(os.path.dirname(os.path.abspath(path))))
    last_step = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
                event = record["event"]
            except (json.JSONDecodeError, KeyError, TypeError):
                log.skipped_lines += 1
                continue
            if event == "start":
                config = record.get("config") or {}
                log.monitor = config.get("monitor", log.monitor)
                log.monitor_mode = config.get("monitor_mode", log.monitor_mode)
                log.restarts.append(last_step)
            elif event == "train" and _number(record.get("loss")) and _number(record.get("step")):
                last_step = int(record["step"])
                log.train.append((last_step, float(record["loss"])))
                if _number(record.get("lr")):
                    log.lr.append((last_step, float(record["lr"])))
                if _number(record.get("cpu_s")):
                    log.cpu.append((last_step, float(record["cpu_s"])))
            elif event == "epoch" and _number(record.get("step")):
                last_step = int(record["step"])
                value = record.get(log.monitor) if log.monitor else None
                if _number(value):
                    log.valid.append((last_step, float(value)))
    log.train = _last_per_step(log.train)
    log.valid = _last_per_step(log.valid)
    log.lr = _last_per_step(log.lr)
    log.cpu = _last_per_step(log.cpu)
    return log


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN


def _last_per_step(points: List[Tuple[int, float]]) -> List[Tuple[int, float]]:
    by_step = {}
    for step, value in points:
        by_step[step] = value
    return sorted(by_step.items())
