"""``fastsep train prior``: train an unconditional diffusion source prior on single-source audio (issue 11).

The prior is a DDPM over waveform crops with the paper's schedule (T = 200, linear betas 1e-4 .. 0.02): each item
gets a step t drawn uniformly, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, and the network's prediction of eps
is scored by mean squared error (the paper's loss). Crops can be brought to a random RMS level first (the paper mixes
sources at -25 .. -20 dBFS RMS), so the prior sees the levels the solver will meet.

The network is the time-frequency attention U-Net (``--arch tfunet``, :class:`fastsep.models.tf_attention_unet.
TFAttentionUNet`) or an unconditional DiffWave on the same schedule (``--arch diffwave``, the cheaper prior). It is
trained inside :class:`EMAPrior`, which carries an exponential moving average of its weights as a second copy: the
copy lives in the model's state, so the shared loop's checkpoints keep it and a resumed run continues it (the task
updates it at each training step, so nothing outside the task is needed). The run
folder gets ``prior/``: the bare network with the EMA weights, what :func:`fastsep.methods.priors.load_prior` reads
(the EMA weights are the ones used at test time, as in the paper).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import USAGE_ERRORS, add_loop_arguments, config_from_args, format_metrics, report_usage_error

__all__ = ["EMAPrior", "PriorTask", "build_network", "export_prior", "add_arguments", "main", "NETWORKS"]

NETWORKS = ("TFAttentionUNet", "DiffWave")


def _network_class(name: str) -> type:
    if name == "TFAttentionUNet":
        from ..models.tf_attention_unet import TFAttentionUNet

        return TFAttentionUNet
    if name == "DiffWave":
        from ..models.diffwave import DiffWave

        return DiffWave
    raise ValueError(f"unknown prior network {name!r}; expected one of {NETWORKS}")


class EMAPrior(nn.Module):
    """A prior network under training plus the exponential moving average of its weights.

    ``forward(x_t [B, T], t [B]) -> eps [B, T]`` runs the trained network (``net``); :meth:`update_ema` moves the
    average (``ema``, not trained) towards it with decay ``min(decay, (1 + n) / (10 + n))`` after n updates, the usual
    warm-up that keeps the first steps' random weights from lingering in the average. ``config`` rebuilds the pair
    (network class, its config, the decay), so the shared loop can save and resume it like any fastsep model.
    """

    def __init__(self, net_class: str, net_config: Dict[str, Any], decay: float = 0.999):
        super().__init__()
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"EMAPrior: decay must be in [0, 1), got {decay!r}")
        cls = _network_class(net_class)
        self.net = cls(**net_config)
        if net_class == "DiffWave" and not self.net.unconditional:
            raise ValueError("EMAPrior: a DiffWave prior must be unconditional")
        self.ema = copy.deepcopy(self.net)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.decay = float(decay)
        self.net_class = net_class
        self.config = dict(net_class=net_class, net_config=dict(self.net.config), decay=self.decay)

    @classmethod
    def wrap(cls, net: nn.Module, decay: float = 0.999) -> "EMAPrior":
        """An EMAPrior starting from ``net``'s current weights (both copies)."""
        model = cls(type(net).__name__, dict(net.config), decay)
        model.net.load_state_dict(net.state_dict())
        model.ema.load_state_dict(net.state_dict())
        return model

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return _epsilon(self.net, x_t, t)

    @torch.no_grad()
    def update_ema(self) -> None:
        n = int(self.ema_updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        for avg, cur in zip(self.ema.parameters(), self.net.parameters()):
            avg.lerp_(cur.detach(), 1.0 - decay)
        for avg, cur in zip(self.ema.buffers(), self.net.buffers()):
            avg.copy_(cur)
        self.ema_updates += 1


def _epsilon(net: nn.Module, x_t: Tensor, t: Tensor) -> Tensor:
    # The two prior networks differ only in their call: DiffWave takes a (None) spectrogram and returns [B, 1, T].
    from ..models.diffwave import DiffWave

    if isinstance(net, DiffWave):
        return net(x_t, t, None).squeeze(1)
    return net(x_t, t)


class PriorTask:
    """The DDPM objective of a source prior for :func:`fastsep.train.loop.train`.

    Args:
        steps, beta_start, beta_end: the schedule (the paper: 200, 1e-4, 0.02).
        level_range: RMS levels in dBFS between which each training crop is rescaled (None: keep the data's level).
            Silent crops are left silent.
        seed: fixes validation noise, steps and levels, so epochs compare like with like.
    """

    def __init__(self, steps: int = 200, beta_start: float = 1e-4, beta_end: float = 0.02,
                 level_range: Optional[Tuple[float, float]] = (-25.0, -20.0), seed: int = 0):
        from ..sampling.priors import DDPMSchedule

        self.schedule = DDPMSchedule(steps, beta_start, beta_end)
        if level_range is not None:
            lo, hi = (float(v) for v in level_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi <= 0):
                raise ValueError(f"level_range must be two dBFS levels lo <= hi <= 0, got {level_range!r}")
            level_range = (lo, hi)
        self.level_range = level_range
        self.seed = int(seed)

    def _levelled(self, audio: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        audio = audio.float()
        if self.level_range is None:
            return audio.clamp(-1.0, 1.0)
        lo, hi = self.level_range
        u = torch.rand(audio.shape[0], 1, generator=generator, device="cpu").to(audio.device)
        target = 10.0 ** ((lo + (hi - lo) * u) / 20.0)
        rms = audio.pow(2).mean(dim=-1, keepdim=True).sqrt()
        gain = torch.where(rms > 1e-8, target / rms.clamp_min(1e-8), torch.ones_like(rms))
        return (audio * gain).clamp(-1.0, 1.0)

    def noise_loss(self, model: nn.Module, audio: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """MSE between the added noise and the model's prediction at uniformly drawn steps."""
        x0 = self._levelled(audio, generator)
        B = x0.shape[0]
        t = torch.randint(0, self.schedule.steps, (B,), generator=generator, device="cpu").to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
        x_t = self.schedule.q_sample(x0, t, noise)
        return F.mse_loss(model(x_t, t).float(), noise)

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """The noise MSE of a batch. Before it, an :class:`EMAPrior` folds its current weights (those after the
        previous optimizer step) into the average: a checkpoint then holds the weights and the average that a resumed
        run continues from exactly, with no hook outside the task."""
        from .distributed import unwrap_model

        inner = unwrap_model(model)
        if isinstance(inner, EMAPrior):
            inner.update_ema()
        return self.noise_loss(model, batch["audio"])

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``noise_mse`` (= ``loss``): the training loss of the EMA weights at fixed noise, steps and levels."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        inner = getattr(model, "module", model)  # DistributedDataParallel never reaches here, but be safe
        net = inner.ema if isinstance(inner, EMAPrior) else inner
        total, count = 0.0, 0
        for batch in loader:
            audio = batch["audio"]
            total += float(self.noise_loss(lambda x, t: _epsilon(net, x, t), audio, generator)) * audio.shape[0]
            count += audio.shape[0]
        if count == 0:
            raise ValueError("the validation set is empty")
        return {"noise_mse": total / count, "loss": total / count}


def build_network(arch: str, small: bool, sample_rate: int, steps: int = 200, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> nn.Module:
    """A fresh prior network: ``"tfunet"`` (the paper's, ``small`` for the CPU preset) or ``"diffwave"`` (an
    unconditional DiffWave on the same schedule; 12 layers x 32 channels when ``small``)."""
    if arch == "tfunet":
        from ..models.tf_attention_unet import TFAttentionUNet

        kwargs = dict(diffusion_steps=steps, beta_start=beta_start, beta_end=beta_end)
        return TFAttentionUNet.small(sample_rate, **kwargs) if small else TFAttentionUNet(sample_rate, **kwargs)
    if arch == "diffwave":
        from ..models.diffwave import DiffWave

        arch_kwargs = dict(residual_layers=12, residual_channels=32, dilation_cycle_length=6) if small else {}
        return DiffWave(**arch_kwargs, sample_rate=sample_rate, unconditional=True,
                        noise_schedule=np.linspace(beta_start, beta_end, steps).tolist())
    raise ValueError(f"unknown prior architecture {arch!r}; expected 'tfunet' or 'diffwave'")


def export_prior(model: EMAPrior, directory: str) -> str:
    """Write the EMA weights, with the last optimizer step folded in, as a bare network (``model.json`` +
    ``model.safetensors``) into ``directory``. ``model`` itself is left as it is (a copy takes the last update), so
    exporting twice gives the same file."""
    from ..models.io import save_model

    final = copy.deepcopy(model)
    final.update_ema()
    return save_model(final.ema, directory)


# ------------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train prior``."""
    parser.add_argument("--data", required=True, help="single-source audio: a fastsep corpus, LibriMix, wsj0-mix "
                                                      "(their clean sources) or a folder of audio files")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/), log.jsonl, prior/")
    parser.add_argument("--arch", choices=("tfunet", "diffwave"), default="tfunet",
                        help="the paper's time-frequency attention U-Net, or an unconditional DiffWave (cheaper)")
    parser.add_argument("--small", action="store_true", help="the CPU-sized preset of the network")
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--segment", type=float, default=2.0, help="training crop in seconds (the paper: 4)")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--level-range", type=float, nargs=2, default=(-25.0, -20.0), metavar=("LO", "HI"),
                        help="rescale each crop to an RMS drawn in [LO, HI] dBFS (default -25 -20)")
    parser.add_argument("--keep-level", action="store_true", help="train at the data's own level")
    parser.add_argument("--valid-items", type=int, default=16, help="held-out crops scored per validation")
    add_loop_arguments(parser, batch_size=8, lr=2e-4, grad_clip=1.0)


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train prior``; returns the exit status."""
    from ..data import open_speech_dataset
    from .loop import train
    from .vocoder import audio_collate

    try:
        if args.segment <= 0 or args.valid_items < 1 or args.sample_rate < 1:
            raise ValueError("--segment, --valid-items and --sample-rate must be positive")
        if not os.path.exists(args.data):
            raise FileNotFoundError(f"--data {args.data} does not exist")
        net = build_network(args.arch, args.small, args.sample_rate)
        model = EMAPrior.wrap(net, args.ema_decay)
        train_set = open_speech_dataset(args.data, args.sample_rate, segment=args.segment, split="train")
        valid_set = open_speech_dataset(args.data, args.sample_rate, segment=args.segment, split="valid")
        if len(valid_set) > args.valid_items:
            valid_set = torch.utils.data.Subset(valid_set, range(args.valid_items))
        task = PriorTask(level_range=None if args.keep_level else tuple(args.level_range), seed=args.seed)
        cfg = config_from_args(args, monitor="noise_mse", monitor_mode="min")
        metrics = train(model, task, train_set, valid_set, cfg, collate_fn=audio_collate)
        export_prior(model, os.path.join(args.out, "prior"))
    except USAGE_ERRORS as exc:
        return report_usage_error("prior", exc)
    shown = format_metrics(metrics)
    print(f"fastsep train prior: done ({shown}); EMA prior in {os.path.join(args.out, 'prior')}")
    return 0
