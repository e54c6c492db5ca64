"""The shared training loop, checkpoints and model I/O, on a tiny regression model and synthetic data."""
import json
import math
import os
import socket

import pytest
import torch
from torch import nn

import fastsep.models
from fastsep.models.io import load_model, save_model
from fastsep.train import checkpoint as ckpt
from fastsep.train.loop import PlateauScheduler, TrainConfig, train


class ToyRegressor(nn.Module):
    """Linear-ReLU-dropout-linear: dropout makes every step draw from the global RNG, so resume must restore it."""

    def __init__(self, n_in=4, hidden=8, n_out=2, dropout=0.1, tie=False):
        super().__init__()
        self.config = {"n_in": n_in, "hidden": hidden, "n_out": n_out, "dropout": dropout, "tie": tie}
        self.inp = nn.Linear(n_in, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_out)
        if tie:  # a tied weight: the same Parameter under two names
            self.inp2 = nn.Linear(n_in, hidden)
            self.inp2.weight = self.inp.weight

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.inp(x))))


class PairSet(torch.utils.data.Dataset):
    """y = x A with a little noise drawn in __getitem__ (on-the-fly augmentation from the global RNG)."""

    def __init__(self, n, seed=1, noise=0.01):
        self.noise = noise
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.a = torch.randn(4, 2, generator=torch.Generator().manual_seed(99))
        self.y = self.x @ self.a

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i] + self.noise * torch.randn(4) if self.noise else self.x[i], "y": self.y[i]}


@torch.no_grad()
def mse(model, x, y):
    return float(((model(x) - y) ** 2).mean())


class RegressionTask:
    def __init__(self, nan_calls=()):
        self.calls = 0
        self.nan_calls = set(nan_calls)

    def training_loss(self, model, batch):
        self.calls += 1
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        if self.calls in self.nan_calls:
            return loss * float("nan")
        return loss

    def validate(self, model, loader):
        total, n = 0.0, 0
        for batch in loader:
            total += float(((model(batch["x"]) - batch["y"]) ** 2).sum())
            n += batch["y"].numel()
        return {"loss": total / n}


def cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), epochs=2, batch_size=4, lr=1e-2, progress=False, seed=3,
                checkpoint_every=2, valid_batch_size=8)
    base.update(kw)
    return TrainConfig(**base)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_log(c):
    with open(os.path.join(c.out_dir, "log.jsonl")) as fh:
        return [json.loads(line) for line in fh]


# ---------------------------------------------------------------------------------------------------------- training
def test_a_few_epochs_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    data = PairSet(64)
    valid = PairSet(16, seed=2, noise=0.0)
    before = mse(model, valid.x, valid.y)
    out = train(model, RegressionTask(), data, valid, cfg(tmp_path, epochs=6))
    after = mse(model.eval(), valid.x, valid.y)
    assert after < 0.5 * before
    assert out["loss"] == pytest.approx(after, rel=1e-5)
    assert out["epoch"] == 6 and out["step"] == 6 * 16


def test_best_model_loads_through_registry(tmp_path, monkeypatch):
    monkeypatch.setitem(fastsep.models._WHERE, "ToyRegressor", ToyRegressor.__module__)
    model = ToyRegressor(dropout=0.0)
    data, valid = PairSet(32), PairSet(8, seed=2, noise=0.0)
    c = cfg(tmp_path, epochs=3)
    train(model, RegressionTask(), data, valid, c)
    with open(os.path.join(c.out_dir, "best", "metrics.json")) as fh:
        recorded = json.load(fh)
    best = load_model(os.path.join(c.out_dir, "best"))
    assert isinstance(best, ToyRegressor) and not best.training
    # the stored validation loss is that of the stored weights
    assert mse(best, valid.x, valid.y) == pytest.approx(recorded["loss"], rel=1e-5)
    last = load_model(os.path.join(c.out_dir, "last"))
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), model.state_dict().values()))


def test_keep_every_keeps_the_model_of_those_steps(tmp_path, monkeypatch):
    # PairSet(24) in batches of 4: 6 steps per epoch, 12 in two epochs; every 5th step is kept as it was then
    monkeypatch.setitem(fastsep.models._WHERE, "ToyRegressor", ToyRegressor.__module__)
    seen = {}

    def snap(info):
        seen[info.step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    torch.manual_seed(0)
    model = ToyRegressor()
    c = cfg(tmp_path, keep_every=5)
    train(model, RegressionTask(), PairSet(24), PairSet(8, seed=2), c, on_step=snap)
    assert sorted(os.listdir(os.path.join(c.out_dir, "steps"))) == ["0000005", "0000010"]
    for step in (5, 10):
        kept = load_model(os.path.join(c.out_dir, "steps", f"{step:07d}"))
        assert all(torch.equal(kept.state_dict()[k], v) for k, v in seen[step].items())
    assert not all(torch.equal(a, b) for a, b in zip(seen[5].values(), seen[10].values()))
    with pytest.raises(ValueError, match="keep_every"):
        cfg(tmp_path, keep_every=-1)


def _run(tmp_path, name, **kw):
    torch.manual_seed(0)
    model = ToyRegressor()
    hook = kw.pop("on_step", None)
    c = cfg(tmp_path, out_dir=str(tmp_path / name), **kw)
    out = train(model, RegressionTask(), PairSet(24), PairSet(8, seed=2), c, on_step=hook)
    return model, out, c


def test_crash_mid_epoch_resumes_to_the_same_weights(tmp_path):
    reference, ref_out, _ = _run(tmp_path, "whole", epochs=3)

    class Crash(Exception):
        pass

    def crash_at_9(info):
        if info.step == 9:  # 6 batches per epoch: step 9 is mid-epoch 2, the last checkpoint was at step 8
            raise Crash()

    with pytest.raises(Crash):
        _run(tmp_path, "crashed", epochs=3, on_step=crash_at_9)
    with open(os.path.join(str(tmp_path / "crashed"), "last", "state.json")) as fh:
        stored = json.load(fh)["trainer"]
    assert (stored["epoch"], stored["step"], stored["step_in_epoch"]) == (1, 8, 2)
    resumed, out, c = _run(tmp_path, "crashed", epochs=3)
    assert any(r["event"] == "resume" and r["step"] == 8 for r in read_log(c))
    assert out["step"] == ref_out["step"] == 18
    ref_w, got_w = weights(reference), weights(resumed)
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)
    torch.manual_seed(0)  # the run did move the weights away from their start
    init = ToyRegressor()
    assert not torch.equal(init.out.weight, resumed.out.weight)


def test_max_steps_then_continue_matches_one_run(tmp_path, monkeypatch):
    monkeypatch.setitem(fastsep.models._WHERE, "ToyRegressor", ToyRegressor.__module__)
    reference, _, _ = _run(tmp_path, "whole", epochs=2, checkpoint_every=0)
    part, out1, _ = _run(tmp_path, "parts", epochs=2, checkpoint_every=0, max_steps=4)
    assert out1["step"] == 4 and out1["epoch"] == 0 and "loss" in out1
    # stopped inside the first epoch, the run still leaves a usable model with the metrics it was validated on
    best = load_model(os.path.join(tmp_path, "parts", "best"))
    torch.testing.assert_close(weights(best)["out.weight"], weights(part)["out.weight"])
    with open(os.path.join(tmp_path, "parts", "best", "metrics.json")) as fh:
        assert json.load(fh)["step"] == 4
    whole, out2, _ = _run(tmp_path, "parts", epochs=2, checkpoint_every=0)
    assert out2["step"] == 12
    ref_w, got_w = weights(reference), weights(whole)
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


class CpuHungryTask(RegressionTask):
    """Each training step burns ``seconds`` of this process's CPU time, so a CPU budget ends the run after a known
    number of steps whatever else the machine is doing."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def training_loss(self, model, batch):
        import time

        until = time.process_time() + self.seconds
        while time.process_time() < until:
            pass
        return super().training_loss(model, batch)


def test_cpu_budget_stops_the_run_and_carries_over_resumes(tmp_path):
    def run(budget):
        torch.manual_seed(0)
        c = cfg(tmp_path, out_dir=str(tmp_path / "cpu"), epochs=50, checkpoint_every=0, max_cpu_seconds=budget)
        return train(ToyRegressor(), CpuHungryTask(0.02), PairSet(24), PairSet(8, seed=2), c), c

    out, c = run(0.2)
    # each step costs >= 0.02 s of CPU, so at most ~10 steps fit (validation and setup use some of the budget too)
    assert 1 <= out["step"] <= 10 and out["cpu_seconds"] >= 0.2
    assert [r["reason"] for r in read_log(c) if r["event"] == "stop"] == ["max_cpu_seconds"]
    with open(os.path.join(c.out_dir, "last", "state.json")) as fh:
        saved = json.load(fh)["trainer"]
    assert saved["step"] == out["step"] and saved["cpu_seconds"] >= 0.2
    assert os.path.isdir(os.path.join(c.out_dir, "best"))  # a budget-ended run leaves its model like max_steps does
    again, _ = run(0.2)  # resumed with the same budget: already spent, no further step
    assert again["step"] == out["step"]
    more, _ = run(0.6)  # a larger budget goes on from the CPU time already used, not from zero
    assert out["step"] < more["step"] <= out["step"] + 21 and more["cpu_seconds"] >= 0.6


def test_cpu_budget_option_is_checked():
    for bad in (-1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="max_cpu_seconds"):
            TrainConfig(out_dir="x", max_cpu_seconds=bad)
    import argparse

    from fastsep.train.options import add_loop_arguments, config_from_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_loop_arguments(parser, batch_size=4, lr=1e-3, grad_clip=5.0)
    assert config_from_args(parser.parse_args(["--out", "o", "--max-cpu-minutes", "1.5"]), monitor="loss",
                            monitor_mode="min").max_cpu_seconds == 90.0
    unlimited = config_from_args(parser.parse_args(["--out", "o"]), monitor="loss", monitor_mode="min")
    assert unlimited.max_cpu_seconds is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o", "--max-cpu-minutes", "-2"])


def test_sigterm_checkpoints_and_resumes_to_the_same_weights(tmp_path):
    import signal

    reference, _, _ = _run(tmp_path, "whole", epochs=2, checkpoint_every=0)

    def terminate_at_3(info):
        if info.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster scheduler would

    before = signal.getsignal(signal.SIGTERM)
    _, out, c = _run(tmp_path, "term", epochs=2, checkpoint_every=0, on_step=terminate_at_3)
    assert signal.getsignal(signal.SIGTERM) is before  # the loop's handler is gone again
    assert out["step"] == 4  # the step under way when the request was seen completes, then a checkpoint
    assert [r["reason"] for r in read_log(c) if r["event"] == "stop"] == ["signal"]
    resumed, _, _ = _run(tmp_path, "term", epochs=2, checkpoint_every=0)
    ref_w, got_w = weights(reference), weights(resumed)
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


def test_sigterm_to_the_whole_job_with_loader_workers_still_checkpoints(tmp_path):
    """A scheduler signals every process of a job: the DataLoader workers must survive it so the loop checkpoints."""
    import multiprocessing
    import signal as sig

    def kill_job(info):
        if info.step == 3:
            for child in multiprocessing.active_children():
                os.kill(child.pid, sig.SIGTERM)
            os.kill(os.getpid(), sig.SIGTERM)

    _, out, c = _run(tmp_path, "job", epochs=3, checkpoint_every=0, num_workers=1, on_step=kill_job)
    assert out["step"] == 4  # as with SIGTERM to the main process alone: the step under way, then a checkpoint
    assert [r["reason"] for r in read_log(c) if r["event"] == "stop"] == ["signal"]
    with open(os.path.join(c.out_dir, "last", "state.json")) as fh:
        assert json.load(fh)["trainer"]["step"] == 4


def test_resume_refuses_other_settings(tmp_path):
    _run(tmp_path, "r", epochs=1)
    with pytest.raises(ValueError, match="lr"):
        _run(tmp_path, "r", epochs=2, lr=0.5)
    c = cfg(tmp_path, out_dir=str(tmp_path / "mid"), max_steps=2, monitor="train_loss")
    out = train(ToyRegressor(), RegressionTask(), PairSet(24), None, c)  # no validation set: train_loss only
    assert math.isfinite(out["train_loss"]) and "loss" not in out
    with pytest.raises(ValueError, match="had 24 items then and has 20 now"):
        train(ToyRegressor(), RegressionTask(), PairSet(20), None,
              cfg(tmp_path, out_dir=c.out_dir, monitor="train_loss"))


def test_nonfinite_losses_are_skipped_and_counted(tmp_path):
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    snapshots = {}

    def snap(info):
        snapshots[info.step] = (info.skipped, weights(model))

    task = RegressionTask(nan_calls={3, 5})
    out = train(model, task, PairSet(24), PairSet(8, seed=2), cfg(tmp_path, epochs=1, checkpoint_every=0),
                on_step=snap)
    assert out["nonfinite_steps"] == 2
    assert [s for s in snapshots if snapshots[s][0]] == [3, 5]
    for step in (3, 5):  # a skipped step leaves every weight exactly as the step before left it
        before, after = snapshots[step - 1][1], snapshots[step][1]
        assert all(torch.equal(before[k], after[k]) for k in before)
    changed = snapshots[4][1]
    assert not torch.equal(changed["out.weight"], snapshots[3][1]["out.weight"])
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert sum(r["event"] == "nonfinite_loss" for r in read_log(cfg(tmp_path))) == 2


# ---------------------------------------------------------------------------------------- plateau and early stopping
def test_plateau_scheduler_halves_and_stops_by_hand():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = PlateauScheduler("max", patience=2, early_stop_patience=5)
    # metric:   1 (best)  0.5  0.5 -> halve  2 (best)  2  1 -> halve  1  1 -> stop (5 epochs since best)
    seq = [1.0, 0.5, 0.5, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    lrs, stops = [], []
    for v in seq:
        d = sched.step(v, opt)
        lrs.append(opt.param_groups[0]["lr"])
        stops.append(d["stop"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert stops == [False] * 8 + [True]
    assert sched.best == 2.0 and sched.halvings == 3


class ConstantTask(RegressionTask):
    def validate(self, model, loader):
        return {"score": 1.0}


def test_lr_halving_and_early_stop_in_the_loop(tmp_path):
    torch.manual_seed(0)
    c = cfg(tmp_path, epochs=50, monitor="score", monitor_mode="max", patience=2, early_stop_patience=3,
            checkpoint_every=0, lr=0.01)
    out = train(ToyRegressor(), ConstantTask(), PairSet(8), PairSet(4, seed=2), c)
    # epoch 1 sets the best; epochs 2, 3 don't improve -> halve after 3; epoch 4 is the third without -> stop
    assert out["stopped_early"] == 1.0 and out["epoch"] == 4
    lrs = [r["lr"] for r in read_log(c) if r["event"] == "epoch"]
    assert lrs == [0.01, 0.01, 0.005, 0.005]
    assert [r["epoch"] for r in read_log(c) if r["event"] == "lr_halved"] == [3]
    again = train(ToyRegressor(), ConstantTask(), PairSet(8), PairSet(4, seed=2), c)  # resuming does not restart
    assert again["epoch"] == 4


class ScoreTask(RegressionTask):
    """A validation score fixed per run: a resumed run on new data validates on other utterances."""

    def __init__(self, score):
        super().__init__()
        self.score = score

    def validate(self, model, loader):
        return {"score": self.score}


@pytest.mark.parametrize("reset", [False, True])
def test_reset_monitor_forgets_a_best_from_other_validation_data(tmp_path, reset):
    torch.manual_seed(0)
    c = cfg(tmp_path, epochs=2, monitor="score", monitor_mode="max", patience=2, early_stop_patience=0,
            checkpoint_every=0, lr=0.01)
    train(ToyRegressor(), ScoreTask(5.0), PairSet(8), PairSet(4, seed=2), c)  # epoch 1 best 5.0, epoch 2 not better
    c2 = cfg(tmp_path, epochs=4, monitor="score", monitor_mode="max", patience=2, early_stop_patience=0,
             checkpoint_every=0, lr=0.01, reset_monitor=reset)
    train(ToyRegressor(), ScoreTask(1.0), PairSet(8), PairSet(4, seed=2), c2)
    log = read_log(c2)
    lrs = [r["lr"] for r in log if r["event"] == "epoch"]
    resets = [r for r in log if r["event"] == "monitor_reset"]
    with open(os.path.join(c2.out_dir, "best", "metrics.json")) as fh:
        best_score = json.load(fh)["score"]
    if reset:
        # epoch 3 is the first on the new data and becomes the best; epoch 4 is one without improvement: no halving
        assert lrs == [0.01, 0.01, 0.01, 0.01]
        assert len(resets) == 1 and resets[0]["forgotten_best"] == 5.0
        assert best_score == 1.0
    else:
        # the stale best of 5.0 makes epoch 3 the second epoch without improvement: halved at once
        assert lrs == [0.01, 0.01, 0.005, 0.005]
        assert resets == [] and best_score == 5.0


def test_unknown_monitor_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="si_sdri"):
        train(ToyRegressor(), RegressionTask(), PairSet(8), PairSet(4), cfg(tmp_path, monitor="si_sdri", epochs=1))


def test_config_checks():
    with pytest.raises(ValueError, match="monitor_mode"):
        TrainConfig(out_dir="x", monitor_mode="up")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(out_dir="x", batch_size=0)
    with pytest.raises(TypeError, match="training_loss"):
        train(ToyRegressor(), object(), PairSet(4), None, TrainConfig(out_dir="x"))


# ------------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_write_failure_keeps_previous(tmp_path, monkeypatch):
    out_dir = str(tmp_path / "ck")
    model = ToyRegressor()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    ckpt.save_checkpoint(out_dir, model, opt, {"step": 1})
    saved = weights(model)
    with torch.no_grad():
        model.out.weight.add_(1.0)

    def broken():
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "capture_rng", broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(out_dir, model, opt, {"step": 2})
    assert sorted(os.listdir(out_dir)) == ["last"]  # no half-written folder left behind
    fresh = ToyRegressor()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(out_dir), fresh, fresh_opt, restore_rng_state=False)
    assert state["step"] == 1
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
    # the crash window of the swap: the old folder renamed aside, the new one not yet in place
    os.rename(os.path.join(out_dir, "last"), os.path.join(out_dir, ".last.old"))
    assert ckpt.find_checkpoint(out_dir) == os.path.join(out_dir, ".last.old")


def test_rng_roundtrip():
    import random

    import numpy as np

    tensors, meta = ckpt.capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    ckpt.restore_rng(tensors, meta)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# ---------------------------------------------------------------------------------------------------------- model io
def test_save_load_roundtrip_and_tied_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(fastsep.models._WHERE, "ToyRegressor", ToyRegressor.__module__)
    model = ToyRegressor(hidden=5, tie=True).eval()
    save_model(model, tmp_path / "m")
    with open(tmp_path / "m" / "model.json") as fh:
        info = json.load(fh)
    assert info["class"] == "ToyRegressor" and info["config"]["hidden"] == 5
    assert info["fastsep_version"] == fastsep.__version__
    back = load_model(tmp_path / "m")
    x = torch.randn(7, 4)
    assert torch.equal(model(x), back(x))
    assert back.inp2.weight is back.inp.weight  # the tie survives


def test_load_refuses_bad_files(tmp_path, monkeypatch):
    monkeypatch.setitem(fastsep.models._WHERE, "ToyRegressor", ToyRegressor.__module__)
    folder = tmp_path / "m"
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(folder)
    save_model(ToyRegressor(hidden=6), folder)
    json_path, weights_path = folder / "model.json", folder / "model.safetensors"
    info = json.loads(json_path.read_text())

    info_shape = dict(info, config=dict(info["config"], hidden=7))
    json_path.write_text(json.dumps(info_shape))
    with pytest.raises(ValueError, match=r"shape mismatch .*inp.weight: file \(6, 4\) vs model \(7, 4\)"):
        load_model(folder)

    json_path.write_text(json.dumps(dict(info, **{"class": "NoSuchNet"})))
    with pytest.raises(ValueError, match="unknown model class 'NoSuchNet'"):
        load_model(folder)

    json_path.write_text(json.dumps(info))
    raw = bytearray(weights_path.read_bytes())
    raw[-1] ^= 0xFF  # flip bits in the last weight
    weights_path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(folder)

    with pytest.raises(TypeError, match="config"):
        save_model(nn.Linear(2, 2), folder)


# ------------------------------------------------------------------------------------------------------ distributed
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_environment_single_process_matches_plain_run(tmp_path, monkeypatch):
    plain, _, _ = _run(tmp_path, "plain", epochs=1)
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    ddp, _, _ = _run(tmp_path, "ddp", epochs=1, device="cpu")
    assert not torch.distributed.is_initialized()  # the group was left again
    a, b = weights(plain), weights(ddp)
    assert all(torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7) for k in a)


def _ddp_worker(rank, world, port, out_dir, result_dir):
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = ToyRegressor()
    seen = []

    class Recording(RegressionTask):
        def training_loss(self, model, batch):
            seen.extend(batch["y"][:, 0].tolist())
            return super().training_loss(model, batch)

    c = TrainConfig(out_dir=out_dir, epochs=2, batch_size=2, lr=1e-2, progress=False, seed=3, checkpoint_every=0)
    out = train(model, Recording(), PairSet(8, noise=0.0), PairSet(4, seed=2), c)
    torch.save({"w": weights(model), "seen": seen, "out": out}, os.path.join(result_dir, f"rank{rank}.pt"))


def test_two_process_ddp_on_cpu(tmp_path):
    import torch.multiprocessing as mp

    out_dir, result_dir = str(tmp_path / "run"), str(tmp_path)
    mp.spawn(_ddp_worker, args=(2, _free_port(), out_dir, result_dir), nprocs=2, join=True)
    r0, r1 = (torch.load(os.path.join(result_dir, f"rank{r}.pt")) for r in (0, 1))
    assert all(torch.equal(r0["w"][k], r1["w"][k]) for k in r0["w"])  # gradients were averaged: one model
    # each epoch, the two ranks saw disjoint halves of the data set
    ys = PairSet(8, noise=0.0).y[:, 0].tolist()
    for epoch in range(2):
        a, b = r0["seen"][epoch * 4:(epoch + 1) * 4], r1["seen"][epoch * 4:(epoch + 1) * 4]
        assert sorted(a + b) == pytest.approx(sorted(ys))
    assert r0["out"]["loss"] == r1["out"]["loss"]  # rank 0's validation was broadcast
    assert r0["out"]["step"] == 4  # 8 items / 2 ranks / batch 2 = 2 steps per epoch
    assert sorted(os.listdir(out_dir)) == ["best", "last", "log.jsonl"]


def _ddp_budget_worker(rank, world, port, out_dir, result_dir):
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    # only rank 1 burns CPU, so only its own budget runs out: both ranks must still stop after the same step
    task = CpuHungryTask(0.03) if rank == 1 else RegressionTask()
    c = TrainConfig(out_dir=out_dir, epochs=100, batch_size=2, lr=1e-2, progress=False, seed=3, checkpoint_every=0,
                    max_cpu_seconds=0.25)
    out = train(ToyRegressor(), task, PairSet(8, noise=0.0), PairSet(4, seed=2), c)
    torch.save({"out": out}, os.path.join(result_dir, f"budget{rank}.pt"))


def test_two_process_ddp_stops_together_on_one_rank_s_cpu_budget(tmp_path):
    import torch.multiprocessing as mp

    out_dir, result_dir = str(tmp_path / "run"), str(tmp_path)
    mp.spawn(_ddp_budget_worker, args=(2, _free_port(), out_dir, result_dir), nprocs=2, join=True)
    r0, r1 = (torch.load(os.path.join(result_dir, f"budget{r}.pt"))["out"] for r in (0, 1))
    assert r0["step"] == r1["step"] < 200  # 100 epochs would be 200 steps
    with open(os.path.join(out_dir, "log.jsonl")) as fh:
        assert [json.loads(line)["reason"] for line in fh if '"stop"' in line] == ["max_cpu_seconds"]


def test_written_files_get_the_usual_permissions(tmp_path):
    from fastsep.models.io import FILE_MODE, atomic_write_json

    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    assert (target.stat().st_mode & 0o777) == FILE_MODE
    assert FILE_MODE & 0o400 and not FILE_MODE & 0o111
