"""DiffSep (Scheibler et al.) behind the methods' one interface, ``separate(mixture [B, T], seed) -> [B, K, T]``::

    from fastsep.methods.diffsep import DiffSepMethod
    method = DiffSepMethod.from_pretrained("runs/diffsep/best")     # what ``fastsep train diffsep`` writes
    tracks = method.separate(mixture, seed=0)                        # [B, T] -> [B, K, T] at method.sample_rate
    speech = DiffSepMethod.from_pretrained("runs/enh/best").enhance(noisy, seed=0)   # enhancement: [B, T] -> [B, T]

The score network (:class:`fastsep.models.ncsnpp.NCSNpp`, its weight average when it carries one) drives the
predictor-corrector sampler of :mod:`fastsep.sampling.diffsep`: 30 steps, r = 0.5, from ``N(sbar, Sigma_T)``.

Level: each mixture is scaled to unit standard deviation before sampling (the level training saw) and the tracks
are scaled back by the same factor, so results do not depend on the recording's level. Seeds: an int ``seed`` gives
batch item ``b`` the noise of ``seed + b``, so an item's result does not depend on its batch-mates.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..sampling.diffsep import MixSDE, PCSampler, check_mixture
from .base import SeparationMethod

__all__ = ["DiffSepMethod", "load_score_model"]

PathLike = Union[str, "os.PathLike[str]"]


def load_score_model(directory: PathLike, name: str = "model") -> nn.Module:
    """The NCSNpp saved in ``directory`` (by ``save_model`` or the training loop's ``best/``/``last/``), read by
    :func:`fastsep.models.io.load_model` (SHA-256 of the weights, strict names and shapes); anything but a DiffSep
    score network is refused."""
    from ..models.io import load_model, read_model_info

    directory = os.fspath(directory)
    cls = read_model_info(directory, name)["class"]
    if cls != "NCSNpp":
        raise ValueError(f"{directory}/{name}.json holds a {cls}, not a DiffSep score network (NCSNpp)")
    return load_model(directory, name)


class DiffSepMethod(SeparationMethod):
    """DiffSep separation (or enhancement, K = 2 with the speech first) of mixtures ``[B, T]``.

    Served by :class:`fastsep.separator.Separator` in mode ``"diffsep"`` (a bundle: :func:`fastsep.bundle.
    write_diffsep_bundle`).

    Args:
        model: the score network ``model(x [B, K, T], t [B], mixture [B, T]) -> [B, K, T]``; an NCSNpp carrying a
            weight average is replaced by its average.
        sde: the :class:`MixSDE` it was trained with (default: the paper's, K from the model).
        n_steps, snr, corrector_steps: the sampler's (paper: 30, 0.5, 1).
        enhancement: the sources are (speech, noise); :meth:`enhance` returns the speech.
        sample_rate: default the model's ``sample_rate``.
    """

    name = "diffsep"

    def __init__(self, model: nn.Module, sde: Optional[MixSDE] = None, n_steps: int = 30, snr: float = 0.5,
                 corrector_steps: int = 1, enhancement: bool = False, sample_rate: Optional[int] = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"DiffSepMethod: model must be a torch.nn.Module, got {type(model).__name__}")
        if getattr(model, "ema", None) is not None and callable(getattr(model, "averaged", None)):
            model = model.averaged()
        self.model = model.eval().requires_grad_(False)
        n_src = int(getattr(model, "n_src", sde.n_src if sde is not None else 2))
        self.sde = sde if sde is not None else MixSDE(n_src)
        if self.sde.n_src != n_src:
            raise ValueError(f"DiffSepMethod: the SDE has K = {self.sde.n_src}, the model {n_src}")
        if enhancement and n_src != 2:
            raise ValueError("DiffSepMethod: enhancement needs K = 2 (speech, noise)")
        self.sampler = PCSampler(self.sde, n_steps, snr, corrector_steps)
        self.n_steps, self.snr, self.corrector_steps = n_steps, snr, corrector_steps
        self.enhancement = bool(enhancement)
        self.sample_rate = int(sample_rate or getattr(model, "sample_rate", 8000))

    @classmethod
    def from_pretrained(cls, directory: PathLike, **overrides: Any) -> "DiffSepMethod":
        """Load ``directory/model.*`` and the method's settings from ``directory/diffsep.json`` when present
        (``fastsep train diffsep`` writes it to the run folder and to ``best/``); ``overrides`` replace settings
        (``n_steps``, ``snr``, ``corrector_steps``, ``enhancement``)."""
        directory = os.fspath(directory)
        model = load_score_model(directory)
        settings: Dict[str, Any] = {}
        for path in (os.path.join(directory, "diffsep.json"), os.path.join(os.path.dirname(directory), "diffsep.json")):
            if os.path.isfile(path):
                with open(path, "r", encoding="utf-8") as fh:
                    settings = json.load(fh)
                break
        sde = MixSDE(**settings["sde"]) if "sde" in settings else None
        options = {k: settings[k] for k in ("n_steps", "snr", "corrector_steps", "enhancement") if k in settings}
        options.update(overrides)
        return cls(model, sde=sde, **options)

    @property
    def n_src(self) -> int:
        return self.sde.n_src

    # ------------------------------------------------------------------------------------ the methods' interface
    @property
    def modes(self):
        return ("diffsep",)

    @property
    def min_samples(self) -> int:
        # The score network's centred STFT reflect-pads half a frame: the input must be longer than that.
        return max(2, int(getattr(self.model, "n_fft", 2)) // 2 + 1)

    def modules(self) -> Dict[str, nn.Module]:
        return {"score": self.model}

    def settings(self) -> Dict[str, Any]:
        """The sampler's options and the SDE, as ``diffsep.json`` and a bundle's manifest hold them."""
        return dict(sde=self.sde.config(), n_steps=int(self.n_steps), snr=float(self.snr),
                    corrector_steps=int(self.corrector_steps), enhancement=self.enhancement)

    def run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """The Separator's call: ``[B, L] -> [B, K, L]``, item b's noise from ``seeds[b]`` (global RNG: None)."""
        self.check_mode(mode)
        return self.separate(mixture, seed=None if seeds is None else [int(s) for s in seeds])

    def to(self, device: Union[str, torch.device]) -> "DiffSepMethod":
        self.model.to(device)
        return self

    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @torch.no_grad()
    def separate(self, mixture: Tensor, seed: Union[None, int, Sequence[int]] = 0) -> Tensor:
        """Sources ``[B, K, T]`` of ``mixture [B, T]`` (on the mixture's device and dtype)."""
        mixture = check_mixture("DiffSepMethod.separate", mixture)
        if mixture.shape[-1] < 2:
            raise ValueError(f"DiffSepMethod.separate: need at least 2 samples, got {mixture.shape[-1]}")
        device, dtype = mixture.device, mixture.dtype
        mix = mixture.to(self._device(), torch.float32)
        std = mix.std(dim=-1, keepdim=True).clamp_min(1e-5)
        est = self.sampler.sample(self.model, mix / std, seed=seed)
        return (est * std.unsqueeze(1)).to(device, dtype)

    def enhance(self, mixture: Tensor, seed: Union[None, int, Sequence[int]] = 0) -> Tensor:
        """The speech ``[B, T]`` of noisy ``mixture [B, T]`` (an enhancement model: source 0 is the speech)."""
        if not self.enhancement:
            raise ValueError("DiffSepMethod.enhance: this model was trained for separation; use separate()")
        return self.separate(mixture, seed)[:, 0]


# ------------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser) -> None:
    """Options of ``fastsep bundle diffsep``."""
    parser.add_argument("run", help="the run folder of `fastsep train diffsep` (its best/ is used) or a checkpoint "
                                    "folder (best/, last/)")
    parser.add_argument("-o", "--out", required=True, help="the bundle folder to write")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's, 30)")
    parser.add_argument("--snr", type=float, default=None, help="corrector step r (default: the run's, 0.5)")
    parser.add_argument("--corrector-steps", type=int, default=None, help="corrector steps per predictor step")


def main(args) -> int:
    """``fastsep bundle diffsep RUN -o OUT``: a DiffSep bundle that ``fastsep separate/eval --model OUT`` serve."""
    import sys

    from ..bundle import write_diffsep_bundle

    overrides = {k: v for k, v in (("n_steps", args.steps), ("snr", args.snr),
                                   ("corrector_steps", args.corrector_steps)) if v is not None}
    try:
        path = write_diffsep_bundle(args.out, args.run, **overrides)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"fastsep bundle diffsep: {exc}", file=sys.stderr)
        return 2
    print(f"DiffSep bundle written: {path}")
    return 0
