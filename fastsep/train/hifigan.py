"""``fastsep train hifigan``: train a HiFi-GAN generator (GM's deterministic alternative) against its discriminators.

The paper's recipe (Kong et al., 2020) on the shared loop (:mod:`fastsep.train.loop`), on the same single-talker data
as ``fastsep train vocoder`` (``--data`` pools one or more roots):

- each item is a random crop of whole mel frames; its features are :func:`fastsep.dsp.mel_spectrogram`, the ones GM
  reads at separation time;
- per batch, first the **discriminator step**: the multi-period and multi-scale discriminators
  (:class:`fastsep.models.HiFiGANDiscriminator`) take a least-squares step on real audio against the generator's
  output (detached), with their own AdamW;
- then the **generator loss** that the loop back-propagates and steps: ``45·mel + 2·feature matching +
  adversarial``, through the discriminators as just updated (their weights frozen for this part). The mel term is
  the L1 distance of natural-log mel magnitudes (the features' STFT and filterbank, floored at 1e-5 as the
  reference's loss, rather than the features' normalised, clipped dB scale), so the paper's weight 45 keeps its
  meaning;
- both optimisers are AdamW (lr 2e-4, betas 0.8/0.99, weight decay 0.01) and both learning rates decay by 0.999 per
  epoch. No plateau halving and no early stopping by default (``--patience 0 --early-stop 0``): a GAN's validation
  score is too noisy to schedule on.

The discriminators and their optimiser state live in this task and travel in every checkpoint (``last/``'s
``extra.safetensors``), so a killed run resumes with them; ``best/`` holds the generator alone, the folder that
``fastsep train combiner --vocoder`` and bundles take. Validation vocodes held-out utterances and reports ``mel_l1``
(the L1 distance of the normalised log-mel features, the same number ``fastsep train vocoder`` reports for DiffWave,
so the two vocoders compare directly; it drives ``best/``), ``log_mel_l1`` (the training's mel term, unweighted) and
the training losses averaged over the epoch (``train_mel``, ``train_fm``, ``train_adv``, ``train_disc``).

Mixed precision: float16 autocast is not used (the discriminator step would need its own loss scaler); ``--bf16``
autocast on CPU works.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .options import USAGE_ERRORS, add_loop_arguments, config_from_args, format_metrics, report_usage_error
from .vocoder import _check_args as check_vocoder_args
from .vocoder import add_speech_arguments, add_valid_arguments, audio_collate, held_out_utterances, speech_sets

__all__ = ["HiFiGANTask", "log_mel_magnitude", "build_models", "add_arguments", "main"]

LOG_FLOOR = 1e-5  # the reference's floor on mel magnitudes before the log (its dynamic_range_compression)


def log_mel_magnitude(audio: Tensor, sample_rate: int, hop_length: int, n_mels: int) -> Tensor:
    """Natural log of the mel magnitudes of ``audio [..., T]``: ``[..., n_mels, T // hop + 1]``, differentiable.

    The same STFT (window 4·hop, periodic Hann, centred, normalised by the window's L2 norm) and HTK filterbank as
    :func:`fastsep.dsp.mel_spectrogram`, so wherever the features are not clipped ``log_mel = ln(10)·(100·feature −
    80)/20``; but floored at 1e-5 (−100 dB) and never capped, as the reference's loss features: the features' own
    floor (−80 dB) would leave a near-silent generator output without any mel gradient.
    """
    from ..dsp import MEL_F_MIN, mel_filterbank

    win = 4 * hop_length
    window = torch.hann_window(win, periodic=True, device=audio.device, dtype=audio.dtype)
    lead = audio.shape[:-1]
    spec = torch.stft(audio.reshape(-1, audio.shape[-1]), n_fft=win, hop_length=hop_length, win_length=win,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    # |spec| has no finite gradient at exactly 0 (a silent frame); the floor below makes that gradient irrelevant,
    # so take the magnitude of a tiny offset instead of risking NaN
    mag = torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-18) / window.pow(2.0).sum().sqrt()
    fb = mel_filterbank(win // 2 + 1, MEL_F_MIN, sample_rate / 2.0, n_mels, sample_rate).to(audio.device, audio.dtype)
    mel = torch.matmul(mag.transpose(-1, -2), fb).transpose(-1, -2)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).reshape(*lead, n_mels, mel.shape[-1])


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Build graphs through ``module`` without gradients for its weights (the generator step's pass through D), so the
    generator's backward neither computes nor leaves discriminator gradients."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _split(pairs, batch: int):
    """Split outputs of one pass over ``cat([real, fake])`` into the real and the generated halves."""
    return [x[:batch] for x in pairs], [x[batch:] for x in pairs]


class HiFiGANTask:
    """HiFi-GAN's GAN training as a task of :func:`fastsep.train.loop.train` (the model trained there is the
    generator; see the module docstring).

    Args:
        generator_config: the generator's ``config`` (features: sample_rate, hop_length, n_mels).
        discriminator: the :class:`fastsep.models.HiFiGANDiscriminator` to train alongside (moved to the generator's
            device when the loop builds the optimisers).
        mel_weight, fm_weight: the paper's 45 and 2.
        betas, weight_decay: AdamW's, for both optimisers (the paper's 0.8/0.99; 0.01 is AdamW's default, which the
            reference keeps).
        lr_decay: both learning rates are multiplied by this after every epoch (the paper's 0.999).
        valid_seconds: vocode at most this much of each held-out utterance.
    """

    # settings that change the trajectory: resuming a checkpoint under others would mix two runs
    _RESUME_KEYS = ("mel_weight", "fm_weight", "betas", "weight_decay", "lr_decay")

    def __init__(self, generator_config: Dict[str, Any], discriminator: nn.Module, *, mel_weight: float = 45.0,
                 fm_weight: float = 2.0, betas: Tuple[float, float] = (0.8, 0.99), weight_decay: float = 0.01,
                 lr_decay: float = 0.999, valid_seconds: Optional[float] = 4.0):
        from ..models.hifigan_discriminators import HiFiGANDiscriminator

        if not isinstance(discriminator, HiFiGANDiscriminator):
            raise TypeError(f"HiFiGANTask needs a HiFiGANDiscriminator, got {type(discriminator).__name__}")
        for name, value in (("mel_weight", mel_weight), ("fm_weight", fm_weight), ("weight_decay", weight_decay)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"HiFiGANTask: {name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
            raise ValueError(f"HiFiGANTask: lr_decay must be in (0, 1], got {lr_decay!r}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"HiFiGANTask: betas must be two numbers in [0, 1), got {betas!r}")
        if valid_seconds is not None and not valid_seconds > 0:
            raise ValueError(f"HiFiGANTask: valid_seconds must be positive or None, got {valid_seconds!r}")
        self.sample_rate = int(generator_config["sample_rate"])
        self.hop_length = int(generator_config["hop_length"])
        self.n_mels = int(generator_config["n_mels"])
        self.discriminator = discriminator
        self.settings = dict(mel_weight=float(mel_weight), fm_weight=float(fm_weight),
                             betas=[float(b) for b in betas], weight_decay=float(weight_decay),
                             lr_decay=float(lr_decay))
        self.valid_seconds = valid_seconds
        self.optimizer_d: Optional[torch.optim.Optimizer] = None
        self._d_train: nn.Module = discriminator  # the DDP-wrapped discriminator under torchrun
        self._stats = self._fresh_stats()

    @staticmethod
    def _fresh_stats() -> Dict[str, float]:
        return {"mel": 0.0, "fm": 0.0, "adv": 0.0, "disc": 0.0, "steps": 0, "skipped_disc_steps": 0}

    # ---------------------------------------------------------------------------------------------------- features
    def features(self, audio: Tensor) -> Tuple[Tensor, Tensor]:
        """``(audio [B, F·hop], mel [B, n_mels, F])``: the crop cut to whole frames and its features, frame k standing
        for samples ``[k·hop, (k+1)·hop)`` (as :class:`fastsep.train.vocoder.VocoderTask`)."""
        from ..dsp import mel_spectrogram

        audio = torch.clamp(audio.float(), -1.0, 1.0)
        frames = audio.shape[-1] // self.hop_length
        if audio.shape[-1] <= 2 * self.hop_length:
            raise ValueError(f"audio of {audio.shape[-1]} samples is too short: HiFi-GAN training needs crops longer "
                             f"than two hops ({2 * self.hop_length} samples)")
        with torch.no_grad():
            mel = mel_spectrogram(audio, self.sample_rate, self.hop_length, self.n_mels)[..., :frames]
        return audio[..., :frames * self.hop_length], mel

    def mel_loss(self, generated: Tensor, audio: Tensor) -> Tensor:
        """Mean L1 distance of the natural-log mel magnitudes (unweighted)."""
        args = (self.sample_rate, self.hop_length, self.n_mels)
        with torch.no_grad():
            target = log_mel_magnitude(audio.float(), *args)
        return torch.nn.functional.l1_loss(log_mel_magnitude(generated.float(), *args), target)

    # --------------------------------------------------------------------------------------------- loop's hooks
    def make_optimizer(self, model: nn.Module, cfg) -> torch.optim.Optimizer:
        """The generator's AdamW; also puts the discriminators on the generator's device (DDP-wrapped under
        torchrun) and builds their AdamW, before any checkpoint is loaded into either."""
        betas = tuple(self.settings["betas"])
        device = next(model.parameters()).device
        self.discriminator.to(device).train()
        self._d_train = self.discriminator
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self._d_train = DistributedDataParallel(self.discriminator, device_ids=ids, output_device=ids and ids[0])
        self.optimizer_d = torch.optim.AdamW(self.discriminator.parameters(), lr=cfg.lr, betas=betas,
                                             weight_decay=self.settings["weight_decay"])
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=betas, weight_decay=self.settings["weight_decay"])

    def end_epoch(self, optimizer: torch.optim.Optimizer) -> None:
        """Decay the generator's learning rate by ``lr_decay`` (the reference's per-epoch ExponentialLR) and give the
        discriminators the same rate (the two schedules are the same in the paper; this also carries a plateau
        halving of the generator's rate, when ``--patience`` asks for one, over to the discriminators)."""
        for group in optimizer.param_groups:
            group["lr"] *= self.settings["lr_decay"]
        if self.optimizer_d is not None:
            for group in self.optimizer_d.param_groups:
                group["lr"] = optimizer.param_groups[0]["lr"]

    def checkpoint_state(self) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
        """The discriminators' weights and optimiser state, the task's settings and the epoch's running losses."""
        from .checkpoint import flatten_optimizer_state

        if self.optimizer_d is None:
            raise RuntimeError("HiFiGANTask.checkpoint_state before make_optimizer: the discriminators' optimiser "
                               "does not exist yet")
        tensors = {f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer_d)
        tensors.update({f"optimizer_d.{k}": v for k, v in opt_tensors.items()})
        meta = {"discriminator_config": self.discriminator.config, "optimizer_d": opt_meta,
                "settings": self.settings, "stats": dict(self._stats)}
        return tensors, meta

    def load_checkpoint_state(self, tensors: Dict[str, Tensor], meta: Dict[str, Any]) -> None:
        """Put back what :meth:`checkpoint_state` saved; refuses a checkpoint of other discriminators or settings."""
        from ..models.io import load_state_dict_checked
        from .checkpoint import unflatten_optimizer_state

        if self.optimizer_d is None:
            raise RuntimeError("HiFiGANTask.load_checkpoint_state before make_optimizer")
        stored_cfg = meta.get("discriminator_config")
        if stored_cfg != self.discriminator.config:
            raise ValueError(f"cannot resume: the checkpoint's discriminators are {stored_cfg}, this run's are "
                             f"{self.discriminator.config} (use another --out, or the same --small setting)")
        stored = meta.get("settings", {})
        diffs = [f"{k}: checkpoint {stored.get(k)!r} vs now {self.settings[k]!r}" for k in self._RESUME_KEYS
                 if _as_list(stored.get(k)) != _as_list(self.settings[k])]
        if diffs:
            raise ValueError("cannot resume: the run was started with other GAN settings (" + "; ".join(diffs) + ")")
        prefix_d, prefix_o = "discriminator.", "optimizer_d."
        load_state_dict_checked(self.discriminator,
                                {k[len(prefix_d):]: v for k, v in tensors.items() if k.startswith(prefix_d)},
                                source="the checkpoint's discriminators")
        opt = {k[len(prefix_o):]: v for k, v in tensors.items() if k.startswith(prefix_o)}
        self.optimizer_d.load_state_dict(unflatten_optimizer_state(opt, meta["optimizer_d"]))
        self._stats = {**self._fresh_stats(), **meta.get("stats", {})}

    # ------------------------------------------------------------------------------------------------- loop's API
    def discriminator_step(self, real: Tensor, fake: Tensor) -> float:
        """One AdamW step of the discriminators on ``real`` against ``fake`` (both ``[B, 1, T]``, fake detached);
        returns the loss. A non-finite loss skips the update (on every process alike under torchrun)."""
        from ..models.hifigan_discriminators import discriminator_loss

        if self.optimizer_d is None:
            raise RuntimeError("HiFiGANTask: the discriminators' optimiser is built by make_optimizer, which the "
                               "training loop calls first; call it before training_loss when driving the task by hand")
        self.optimizer_d.zero_grad(set_to_none=True)
        # one pass over real and generated together (no layer here mixes batch items, so this equals two passes)
        logits, _ = self._d_train(torch.cat([real, fake.detach()]))
        real_logits, fake_logits = _split(logits, real.shape[0])
        loss = discriminator_loss(real_logits, fake_logits)
        loss.backward()
        value = float(loss.detach())
        bad = torch.tensor([0.0 if math.isfinite(value) else 1.0], device=real.device)
        if self._d_train is not self.discriminator:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bool(bad.item()):
            self._stats["skipped_disc_steps"] += 1
            self.optimizer_d.zero_grad(set_to_none=True)
        else:
            self.optimizer_d.step()
        return value

    def generator_losses(self, model: nn.Module, audio: Tensor, mel: Tensor, update_discriminator: bool = True
                         ) -> Dict[str, Tensor]:
        """``{"total", "mel", "fm", "adv", "disc"}`` for one batch: the discriminator step first (when
        ``update_discriminator``), then the generator's losses through the updated discriminators."""
        from ..models.hifigan_discriminators import feature_matching_loss, generator_adversarial_loss

        fake = model(mel)  # [B, 1, T]
        real = audio.unsqueeze(1)
        disc = self.discriminator_step(real, fake) if update_discriminator else float("nan")
        mel_term = self.mel_loss(fake.squeeze(1), audio)
        with _frozen(self.discriminator):
            logits, features = self.discriminator(torch.cat([real, fake]))
        _, fake_logits = _split(logits, real.shape[0])
        real_features, fake_features = zip(*(_split(f, real.shape[0]) for f in features))
        adv = generator_adversarial_loss(fake_logits)
        fm = feature_matching_loss(list(real_features), list(fake_features))
        total = adv + self.settings["fm_weight"] * fm + self.settings["mel_weight"] * mel_term
        return {"total": total, "mel": mel_term, "fm": fm, "adv": adv, "disc": torch.tensor(disc)}

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """Discriminator step, then the generator's loss ``adv + 2·fm + 45·mel`` for the loop to step."""
        audio, mel = self.features(batch["audio"])
        losses = self.generator_losses(model, audio, mel)
        st = self._stats
        for key in ("mel", "fm", "adv", "disc"):
            st[key] += float(losses[key].detach())
        st["steps"] += 1
        return losses["total"]

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``mel_l1`` (normalised log-mel features of the vocoded held-out utterances vs the originals, as
        ``fastsep train vocoder``), ``log_mel_l1`` (the training's mel term), ``loss`` (= mel_l1) and the epoch's mean
        training losses ``train_mel/fm/adv/disc``."""
        from ..dsp import mel_spectrogram

        features_total, log_total, count = 0.0, 0.0, 0
        for wave in held_out_utterances(loader, self.sample_rate, self.valid_seconds):
            if wave.shape[-1] <= 2 * self.hop_length:
                continue  # too short for a mel frame (reflect padding needs > n_fft / 2 samples)
            wave = wave.float()
            vocoded = model.vocode(wave)
            args = (self.sample_rate, self.hop_length, self.n_mels)
            features_total += float((mel_spectrogram(vocoded, *args) - mel_spectrogram(wave, *args)).abs().mean())
            log_total += float(self.mel_loss(vocoded, wave))
            count += 1
        if count == 0:
            raise ValueError("the validation set yielded no utterance long enough to vocode")
        metrics = {"mel_l1": features_total / count, "log_mel_l1": log_total / count}
        metrics["loss"] = metrics["mel_l1"]
        st = self._stats
        if st["steps"]:
            for key in ("mel", "fm", "adv", "disc"):
                metrics[f"train_{key}"] = st[key] / st["steps"]
        metrics["skipped_disc_steps"] = float(st["skipped_disc_steps"])
        self._stats = {**self._fresh_stats(), "skipped_disc_steps": st["skipped_disc_steps"]}
        return metrics


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------------------------------------------------ CLI
def build_models(args: argparse.Namespace) -> Tuple[nn.Module, nn.Module]:
    """``(generator, discriminators)`` from the command line's options (the generator from ``--init`` if given)."""
    from ..models.hifigan import HiFiGAN
    from ..models.hifigan_discriminators import HiFiGANDiscriminator

    if args.init:
        generator = HiFiGAN.load(args.init).train()
        got = (generator.sample_rate, generator.hop_length, generator.n_mels)
        want = (args.sample_rate, args.hop_length, args.n_mels)
        if got != want:
            raise ValueError(f"--init generator reads (sample rate, hop, mels) = {got}, but the options ask for "
                             f"{want}")
    else:
        arch = {}
        if args.upsample_initial_channel is not None:
            arch["upsample_initial_channel"] = args.upsample_initial_channel
        preset = HiFiGAN.small if args.small else HiFiGAN.paper
        generator = preset(sample_rate=args.sample_rate, hop_length=args.hop_length, n_mels=args.n_mels, **arch)
    discriminator = HiFiGANDiscriminator.small() if args.small else HiFiGANDiscriminator.paper()
    return generator, discriminator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train hifigan``."""
    add_speech_arguments(parser)
    parser.add_argument("--hop-length", type=int, default=128,
                        help="samples per mel frame (default 128, the bundled default model's GM)")
    parser.add_argument("--n-mels", type=int, default=40, help="mel bands (default 40, the bundled default's GM)")
    parser.add_argument("--small", action="store_true",
                        help="CPU-sized generator (128 initial channels) and discriminators (1/8 of the channels)")
    parser.add_argument("--upsample-initial-channel", type=int, default=None,
                        help="generator width (default 512, the paper's V1; 128 with --small)")
    parser.add_argument("--init", default=None, help="start the generator from a fastsep HiFiGAN folder")
    parser.add_argument("--crop-frames", type=int, default=32,
                        help="training crop in mel frames (default 32: the reference's 8192 samples at hop 256)")
    add_valid_arguments(parser)
    parser.add_argument("--mel-weight", type=float, default=45.0, help="weight of the mel L1 loss (paper: 45)")
    parser.add_argument("--fm-weight", type=float, default=2.0, help="weight of feature matching (paper: 2)")
    parser.add_argument("--lr-decay", type=float, default=0.999,
                        help="both learning rates are multiplied by this after every epoch (paper: 0.999)")
    add_loop_arguments(parser, batch_size=16, lr=2e-4, grad_clip=0.0, early_stop=0)
    # a GAN's validation score is too noisy to halve the learning rate on: the per-epoch decay is the schedule
    parser.set_defaults(patience=0)


def _check_args(args: argparse.Namespace) -> None:
    """``fastsep train vocoder``'s checks (the options are the same), and a crop long enough for the mel loss."""
    check_vocoder_args(args)
    if args.crop_frames < 3:
        raise ValueError(f"--crop-frames must be at least 3 (the mel needs more than two hops), got {args.crop_frames}")


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train hifigan``; returns the exit status."""
    from .loop import train

    try:
        _check_args(args)
        generator, discriminator = build_models(args)
        train_set, valid_set = speech_sets(args, generator.hop_length)
        task = HiFiGANTask(generator.config, discriminator, mel_weight=args.mel_weight, fm_weight=args.fm_weight,
                           lr_decay=args.lr_decay, valid_seconds=args.valid_seconds)
        cfg = config_from_args(args, monitor="mel_l1", monitor_mode="min")
        # float16 autocast would need a second loss scaler for the discriminator step: float32 on CUDA (--bf16 on
        # CPU is fine: bfloat16 needs no scaling)
        cfg.amp = False
        metrics = train(generator, task, train_set, valid_set, cfg, collate_fn=audio_collate)
    except USAGE_ERRORS as exc:
        return report_usage_error("hifigan", exc)
    shown = format_metrics(metrics)
    print(f"fastsep train hifigan: done ({shown}); best generator in {os.path.join(args.out, 'best')}")
    return 0
