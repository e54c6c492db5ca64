"""``fastsep train vocoder``: train a DiffWave mel vocoder (GM) on single-speaker audio, as lmnt-com/diffwave does.

Each training item is a random crop; its mel spectrogram is computed on the fly (:func:`fastsep.dsp.mel_spectrogram`,
the reference's features). The loss is the reference's: pick a training step t per item, noise the audio to
``sqrt(a_t)·x + sqrt(1 − a_t)·ε`` and take the L1 distance between ε and the network's prediction; Adam (through the
shared loop, :mod:`fastsep.train.loop`). Validation vocodes held-out utterances with the fast schedule and reports the
L1 distance of their normalised log-mel spectrograms to the originals' (``mel_l1``, which drives ``best/``), plus the
noise-prediction L1 at fixed noise (``noise_l1``).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .options import USAGE_ERRORS, add_loop_arguments, config_from_args, format_metrics, report_usage_error

__all__ = ["VocoderTask", "audio_collate", "build_model", "add_arguments", "main"]


def audio_collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Batch speech items ``{"audio": [T], "id"}`` by zero-padding at the end.

    Returns ``{"audio": [B, T], "lengths": [B] int64, "id": [str]}`` with ``T`` the longest item.
    """
    if not items:
        raise ValueError("audio_collate got an empty list of items")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("audio"), Tensor) or item["audio"].dim() != 1:
            raise TypeError(f"item {i} must be a dict with 'audio', a 1-d tensor [T]; got "
                            f"{type(item).__name__ if not isinstance(item, dict) else sorted(item)}")
    lengths = torch.tensor([item["audio"].shape[0] for item in items], dtype=torch.long)
    audio = torch.zeros(len(items), int(lengths.max()), dtype=items[0]["audio"].dtype)
    for i, item in enumerate(items):
        audio[i, :item["audio"].shape[0]] = item["audio"]
    return {"audio": audio, "lengths": lengths, "id": [str(item.get("id", i)) for i, item in enumerate(items)]}


def held_out_utterances(loader: Iterable[Dict[str, Any]], sample_rate: int,
                        valid_seconds: Optional[float]) -> Iterator[Tensor]:
    """Each validation utterance of ``loader`` alone, ``[1, n]``: without its batch's padding, and cut to
    ``valid_seconds`` where that is set. Both vocoder tasks validate on exactly these samples."""
    for batch in loader:
        lengths = batch.get("lengths")
        for i in range(batch["audio"].shape[0]):
            n = int(lengths[i]) if lengths is not None else batch["audio"].shape[-1]
            if valid_seconds:
                n = min(n, int(valid_seconds * sample_rate))
            yield batch["audio"][i:i + 1, :n]


class VocoderTask:
    """DiffWave's training objective and its validation (see the module docstring).

    Args:
        model_config: the DiffWave's ``config`` (its schedule, features and conditioning; the model itself may reach
            :meth:`training_loss` wrapped in DistributedDataParallel, so nothing is read from it there).
        valid_seconds: validate on at most this much of each held-out utterance (vocoding is the costly part).
        seed: fixes the validation's sampling noise and noise levels, so that epochs compare like with like.
    """

    def __init__(self, model_config: Dict[str, Any], valid_seconds: Optional[float] = 4.0, seed: int = 0):
        self.sample_rate = int(model_config["sample_rate"])
        self.hop_length = int(model_config["hop_length"])
        self.n_mels = int(model_config["n_mels"])
        self.unconditional = bool(model_config.get("unconditional", False))
        betas = np.asarray(model_config["noise_schedule"], dtype=np.float64)
        self.noise_level = torch.tensor(np.cumprod(1.0 - betas).astype(np.float32))  # a_t
        self.valid_seconds = valid_seconds
        self.seed = int(seed)

    # ---------------------------------------------------------------------------------------------------- features
    def features(self, audio: Tensor):
        """``(audio [B, F·hop], mel [B, n_mels, F] or None)``: the crop cut to whole frames and its mel, frame k
        standing for samples ``[k·hop, (k+1)·hop)`` as in the reference's data pipeline."""
        from ..dsp import mel_spectrogram

        audio = torch.clamp(audio.float(), -1.0, 1.0)
        frames = audio.shape[-1] // self.hop_length
        if frames < 1:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one hop ({self.hop_length})")
        cut = audio[..., :frames * self.hop_length]
        if self.unconditional:
            return cut, None
        with torch.no_grad():
            mel = mel_spectrogram(audio, self.sample_rate, self.hop_length, self.n_mels)[..., :frames]
        return cut, mel

    def noise_loss(self, model: nn.Module, audio: Tensor, mel: Optional[Tensor],
                   generator: Optional[torch.Generator] = None) -> Tensor:
        """L1 between the added noise and the model's prediction at random training steps (the reference's loss)."""
        batch = audio.shape[0]
        level = self.noise_level.to(audio.device)
        t = torch.randint(0, level.shape[0], (batch,), device=audio.device, generator=generator)
        a = level[t].unsqueeze(1)
        noise = torch.randn(audio.shape, device=audio.device, dtype=audio.dtype, generator=generator)
        noisy = a.sqrt() * audio + (1.0 - a).sqrt() * noise
        predicted = model(noisy, t, mel)
        return torch.nn.functional.l1_loss(predicted.squeeze(1), noise)

    # ------------------------------------------------------------------------------------------------- loop's API
    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """The reference's L1 noise-prediction loss on a batch of equal-length crops."""
        audio, mel = self.features(batch["audio"])
        return self.noise_loss(model, audio, mel)

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``mel_l1`` (vocoded vs original normalised log-mel, mean over bands and frames and utterances; conditional
        models only), ``noise_l1`` (the training loss at fixed noise) and ``loss`` (= mel_l1, or noise_l1)."""
        from ..dsp import mel_spectrogram

        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        mel_total, noise_total, count = 0.0, 0.0, 0
        for wave in held_out_utterances(loader, self.sample_rate, self.valid_seconds):
            n = wave.shape[-1]
            if n // self.hop_length < 1 or (not self.unconditional and n <= 2 * self.hop_length):
                continue  # too short for a mel frame (reflect padding needs > n_fft / 2 samples)
            audio, mel = self.features(wave)
            cpu_gen = generator if audio.device.type == "cpu" else None
            noise_total += float(self.noise_loss(model, audio, mel, generator=cpu_gen))
            if not self.unconditional:
                vocoded = model.vocode(wave.float(), fast=True, seed=self.seed + count)
                ref = mel_spectrogram(wave.float(), self.sample_rate, self.hop_length, self.n_mels)
                got = mel_spectrogram(vocoded, self.sample_rate, self.hop_length, self.n_mels)
                mel_total += float((got - ref).abs().mean())
            count += 1
        if count == 0:
            raise ValueError("the validation set yielded no utterance long enough to vocode")
        metrics = {"noise_l1": noise_total / count}
        if not self.unconditional:
            metrics["mel_l1"] = mel_total / count
        metrics["loss"] = metrics.get("mel_l1", metrics["noise_l1"])
        return metrics


# ------------------------------------------------------------------------------------------------------------ CLI
SMALL = dict(residual_layers=12, residual_channels=32, dilation_cycle_length=6)


def build_model(args: argparse.Namespace) -> nn.Module:
    """A fresh DiffWave from the command line's options, or one initialised from ``--init``."""
    from ..models.diffwave import DiffWave

    if args.init:
        if os.path.isdir(args.init):
            model = DiffWave.load(args.init)
        else:
            model = DiffWave.from_reference_checkpoint(args.init)
        if model.sample_rate != args.sample_rate:
            raise ValueError(f"--init model is for {model.sample_rate} Hz, but --sample-rate is {args.sample_rate}")
        return model.train()
    arch = dict(SMALL) if args.small else {}
    for name in ("residual_layers", "residual_channels", "dilation_cycle_length"):
        if getattr(args, name) is not None:
            arch[name] = getattr(args, name)
    return DiffWave(**arch, n_mels=args.n_mels, sample_rate=args.sample_rate, hop_length=args.hop_length,
                    unconditional=args.unconditional)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train vocoder``."""
    add_speech_arguments(parser)
    parser.add_argument("--hop-length", type=int, default=256, help="samples per mel frame (default 256)")
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--residual-layers", type=int, default=None, help="default 30 (12 with --small)")
    parser.add_argument("--residual-channels", type=int, default=None, help="default 64 (32 with --small)")
    parser.add_argument("--dilation-cycle-length", type=int, default=None, help="default 10 (6 with --small)")
    parser.add_argument("--small", action="store_true", help="a CPU-sized model (12 layers x 32 channels)")
    parser.add_argument("--unconditional", action="store_true", help="no mel input: a speech prior")
    parser.add_argument("--init", default=None,
                        help="start from a fastsep DiffWave folder or an lmnt-com/diffwave weights.pt")
    parser.add_argument("--crop-frames", type=int, default=62,
                        help="training crop in mel frames (the reference's crop_mel_frames, default 62)")
    add_valid_arguments(parser)
    add_loop_arguments(parser, batch_size=16, lr=2e-4, grad_clip=0.0)


# Shared with .hifigan, the other vocoder trainer, so that `fastsep train hifigan` pools, validates and crops its
# --data exactly as `fastsep train vocoder` does.
def add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --out and --sample-rate."""
    parser.add_argument("--data", required=True, nargs="+",
                        help="single-speaker audio: one or more fastsep corpora, LibriMix, wsj0-mix (their clean "
                             "sources) or folders of audio files; their training utterances are pooled, and the "
                             "first with a 'valid' split validates")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/) and log.jsonl")
    parser.add_argument("--sample-rate", type=int, default=8000)


def add_valid_arguments(parser: argparse.ArgumentParser) -> None:
    """--valid-items and --valid-seconds."""
    parser.add_argument("--valid-items", type=int, default=8, help="held-out utterances vocoded per validation")
    parser.add_argument("--valid-seconds", type=float, default=4.0, help="vocode at most this much of each")


def _check_args(args: argparse.Namespace) -> None:
    for name in ("crop_frames", "valid_items", "hop_length", "n_mels", "sample_rate"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.valid_seconds is not None and args.valid_seconds <= 0:
        raise ValueError(f"--valid-seconds must be positive, got {args.valid_seconds}")
    for folder in args.data:
        if not os.path.exists(folder):
            raise FileNotFoundError(f"--data {folder} does not exist")


def _pooled_speech(roots: Sequence[str], sample_rate: int, segment: float):
    """The training utterances of every root as one dataset (each utterance once, whatever its source)."""
    from ..data import open_speech_dataset
    from ..data.speech import SpeechFiles

    paths: List[str] = []
    for root in roots:
        paths += open_speech_dataset(root, sample_rate, segment=segment, split="train").paths
    return SpeechFiles(paths, sample_rate, segment)


def _first_valid_split(roots: Sequence[str], sample_rate: int, train_paths: Sequence[str] = ()):
    """Whole utterances of the first root that has a validation split (a recorded-voice corpus has none). A folder
    of audio without a ``valid`` folder offers its training files as its split; those are passed over while another
    root holds real held-out audio, so that validation never scores training utterances unless nothing else exists."""
    from ..data import open_speech_dataset

    seen, fallback = set(train_paths), None
    for root in roots:
        try:
            found = open_speech_dataset(root, sample_rate, segment=None, split="valid")
        except (FileNotFoundError, ValueError):
            continue
        if not seen.intersection(found.paths):
            return found
        fallback = fallback or found
    if fallback is not None:
        return fallback
    raise FileNotFoundError(f"none of --data {' '.join(roots)} has a 'valid' split to validate on")


def speech_sets(args: argparse.Namespace, hop_length: int):
    """(training crops of --crop-frames mel frames, at most --valid-items whole validation utterances)."""
    segment = args.crop_frames * hop_length / args.sample_rate
    train_set = _pooled_speech(args.data, args.sample_rate, segment)
    valid_set = _first_valid_split(args.data, args.sample_rate, train_set.paths)
    if len(valid_set) > args.valid_items:
        valid_set = torch.utils.data.Subset(valid_set, range(args.valid_items))
    return train_set, valid_set


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train vocoder``; returns the exit status."""
    from .loop import train

    try:
        _check_args(args)
        model = build_model(args)
        train_set, valid_set = speech_sets(args, model.hop_length)
        task = VocoderTask(model.config, valid_seconds=args.valid_seconds, seed=args.seed)
        monitor = "noise_l1" if model.unconditional else "mel_l1"
        cfg = config_from_args(args, monitor=monitor, monitor_mode="min")
        metrics = train(model, task, train_set, valid_set, cfg, collate_fn=audio_collate)
    except USAGE_ERRORS as exc:
        return report_usage_error("vocoder", exc)
    shown = format_metrics(metrics)
    print(f"fastsep train vocoder: done ({shown}); best model in {os.path.join(args.out, 'best')}")
    return 0
