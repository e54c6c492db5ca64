"""Separate-And-Diffuse (Lutati, Nachmani & Wolf) behind the methods' interface (:mod:`fastsep.methods.base`).

Modes:
    ``"backbone"``: B alone, ``v_d = B(m)``.
    ``"xcorr"``: the paper's ablation without F: ``iSTFT((Vd + xcorr_align(Vd, Vg)) / 2)`` with ``v_g = GM(mel(v_d))``.
    ``"full"``: ``F(v_d, v_g)``, the combination learnt by network F.

A bundle without a vocoder offers only ``backbone``; one without a combiner offers ``xcorr`` and ``backbone``.
:class:`fastsep.separator.Separator` wraps this class; it keeps its old constructor
(``Separator(backbone, vocoder, combiner, ...)``) and its ``backbone``/``vocoder``/``combiner`` attributes.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .. import ops
from ..dsp import StftConfig, istft, stft
from ..models.combiner import Combiner
from ..precision import check_precision, resolve_combiner_precision, resolve_vocoder_precision
from .base import SeparationMethod

__all__ = ["SeparateAndDiffuse", "SAD_MODES"]

SAD_MODES = ("full", "xcorr", "backbone")


def _module_device(module) -> Optional[torch.device]:
    """Where a module's first parameter lives (None for no module or one without parameters)."""
    params = getattr(module, "parameters", None)
    if params is None:
        return None
    first = next(iter(params()), None)
    return None if first is None else first.device


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


class SeparateAndDiffuse(SeparationMethod):
    """B, GM and F composed as the paper does.

    Args:
        backbone: ``[B, T] -> [B, C, T]`` separation network.
        vocoder: model with ``vocode([N, T]) -> [N, T]`` (needed by modes "xcorr" and "full").
        combiner: :class:`fastsep.models.Combiner` (needed by mode "full").
        sample_rate: rate the models expect.
        n_src: number of talkers C (read from ``backbone.config["n_src"]`` when not given).
        vocoder_precision: "float32", or "bfloat16" for the DiffWave vocoder's CPU kernel; passed to each ``vocode``.
            "auto": bfloat16 where the CPU has AMX and the vocoder fills its tiles (:mod:`fastsep.precision`).
        combiner_precision: "float32", or "bfloat16" for F's two heads (see ``Combiner.coefficients``); "auto" as
            above.
    """

    name = "separate_and_diffuse"

    def __init__(self, backbone: nn.Module, vocoder: Optional[nn.Module] = None,
                 combiner: Optional[nn.Module] = None, sample_rate: int = 8000, n_src: Optional[int] = None,
                 vocoder_precision: str = "float32", combiner_precision: str = "float32"):
        if not callable(backbone):
            raise TypeError(f"Separator: backbone must be a callable module, got {type(backbone).__name__}")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"Separator: sample_rate must be a positive int, got {sample_rate!r}")
        if n_src is None:
            n_src = (getattr(backbone, "config", None) or {}).get("n_src", getattr(backbone, "n_src", None))
        if not isinstance(n_src, (int, np.integer)) or n_src < 1:
            raise ValueError(f"Separator: n_src must be a positive int (or in backbone.config), got {n_src!r}")
        check_precision("vocoder_precision", vocoder_precision)
        check_precision("combiner_precision", combiner_precision)
        voc_rate = getattr(vocoder, "sample_rate", None)
        if vocoder is not None and voc_rate is not None and int(voc_rate) != int(sample_rate):
            raise ValueError(f"Separator: the vocoder runs at {voc_rate} Hz but the separator at {sample_rate} Hz")
        self.backbone = backbone
        self.combiner = combiner
        self.sample_rate = int(sample_rate)
        self.n_src = int(n_src)
        self.vocoder = vocoder  # the setter reads what vocode() accepts
        self.set_precision(vocoder_precision, combiner_precision)

    def set_precision(self, vocoder: Optional[str] = None, combiner: Optional[str] = None) -> None:
        """Set the vocoder's and/or F's arithmetic ("float32", "bfloat16", or "auto": bfloat16 where the CPU has
        AMX and the model fills its tiles, see :mod:`fastsep.precision`); "auto" is decided here, for the device
        the parts are on now."""
        device = _module_device(self.vocoder) or _module_device(self.backbone)
        if vocoder is not None:
            vocoder = resolve_vocoder_precision(vocoder, self.vocoder, device)
            if vocoder != "float32" and self.vocoder is not None and not self._vocoder_precision_arg:
                raise ValueError("Separator: vocoder_precision needs a vocoder whose vocode() takes precision=")
            self.vocoder_precision = vocoder
        if combiner is not None:
            self.combiner_precision = resolve_combiner_precision(combiner, _module_device(self.combiner) or device)

    # ------------------------------------------------------------------------------------------------ parts
    @property
    def vocoder(self) -> Optional[nn.Module]:
        return self._vocoder

    @vocoder.setter
    def vocoder(self, vocoder: Optional[nn.Module]) -> None:
        # Assignable (tests and scripts drop a part before saving); what vocode() takes is read again.
        self._vocoder = vocoder
        vocode = getattr(vocoder, "vocode", None)
        self._vocoder_seeds = vocode is not None and _accepts(vocode, "seed")
        self._vocoder_precision_arg = vocode is not None and _accepts(vocode, "precision")

    @property
    def stft_cfg(self) -> StftConfig:
        """The STFT the xcorr ablation aligns in: F's, so that the two modes differ only by F."""
        return getattr(self.combiner, "stft_cfg", None) or StftConfig()

    @property
    def modes(self) -> Tuple[str, ...]:
        if self.vocoder is None:
            return ("backbone",)
        return SAD_MODES if self.combiner is not None else ("xcorr", "backbone")

    @property
    def default_modes(self) -> Tuple[str, ...]:
        # fastsep eval's table order: the backbone first, the modes that add to it after.
        return tuple(m for m in ("backbone", "xcorr", "full") if m in self.modes)

    def check_mode(self, mode: str) -> None:
        # The messages say which part is missing, as Separator's always did.
        if mode not in SAD_MODES:
            raise ValueError(f"mode must be one of {', '.join(SAD_MODES)}, got {mode!r}")
        if mode in ("full", "xcorr") and self.vocoder is None:
            raise ValueError(f"mode {mode!r} needs a vocoder (GM); this separator has none: use mode='backbone'")
        if mode == "full" and self.combiner is None:
            raise ValueError("mode 'full' needs a combiner (F); this separator has none: use 'xcorr' or 'backbone'")

    @property
    def min_samples(self) -> int:
        # Full mode's mel needs more than two hops, the STFT more than half its frame.
        hop = getattr(self.vocoder, "hop_length", None)
        return max(self.stft_cfg.n_fft // 2 + 1, 2 * int(hop) + 1 if isinstance(hop, (int, np.integer)) else 0)

    def modules(self) -> Dict[str, Optional[nn.Module]]:
        return {"backbone": self.backbone, "vocoder": self.vocoder, "combiner": self.combiner}

    def settings(self) -> dict:
        return {"vocoder_precision": self.vocoder_precision, "combiner_precision": self.combiner_precision}

    @property
    def device(self) -> torch.device:
        params = list(self.backbone.parameters()) if isinstance(self.backbone, nn.Module) else []
        return params[0].device if params else torch.device("cpu")

    def to(self, device: Union[str, torch.device]) -> "SeparateAndDiffuse":
        device = torch.device(device)
        super().to(device)
        if isinstance(self.combiner, nn.Module) and device.type == "cpu":
            # F's 3x3 convolutions: channels-last weights spare oneDNN a reorder per call (~15% of F's time here).
            self.combiner.to(memory_format=torch.channels_last)
        return self

    # ------------------------------------------------------------------------------------------------ stages
    def vocode(self, vd: Tensor, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """GM's estimates ``[B, C, L]``; item b's noise is drawn from ``seeds[b]`` alone (one vocode call per item,
        so that no item's noise depends on its position in the batch)."""
        batch, n_src, length = vd.shape
        kwargs = {"precision": self.vocoder_precision} if self._vocoder_precision_arg else {}
        if seeds is not None and self._vocoder_seeds:
            vg = torch.cat([self.vocoder.vocode(vd[b], seed=int(seeds[b]), **kwargs) for b in range(batch)])
        elif vd.device.type == "cpu" and batch > 1:
            # One item per call on CPU, as F in run(): the sampler's per-layer state of a stacked batch outgrows the
            # caches. (Without seeds the noise comes from torch's generator either way.)
            vg = torch.cat([self.vocoder.vocode(vd[b], **kwargs) for b in range(batch)])
        else:
            vg = self.vocoder.vocode(vd.reshape(batch * n_src, length), **kwargs)
        if vg.shape[-1] != length:  # a vocoder working in whole hops may return a few samples more or less
            vg = nn.functional.pad(vg, (0, length - vg.shape[-1])) if vg.shape[-1] < length else vg[..., :length]
        return vg.reshape(batch, n_src, length).to(vd.dtype)

    def xcorr(self, vd: Tensor, vg: Tensor) -> Tensor:
        """The ablation without F: Vg aligned to Vd per frame by cross-correlation, the two averaged."""
        cfg = self.stft_cfg
        length = vd.shape[-1]
        short = cfg.n_fft // 2 + 1
        if length < short:  # centred STFT padding needs more than half a frame
            vd = nn.functional.pad(vd, (0, short - length))
            vg = nn.functional.pad(vg, (0, short - length))
        spec_d, spec_g = stft(vd, cfg), stft(vg, cfg)
        aligned, _ = ops.xcorr_align(spec_d, spec_g, cfg.n_fft)
        return istft((spec_d + aligned) * 0.5, vd.shape[-1], cfg)[..., :length]

    def run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """One forward pass of the models over ``[B, L]``; returns ``[B, C, L]`` at the models' own level."""
        vd = self.backbone(mixture)
        if vd.dim() != 3 or vd.shape[0] != mixture.shape[0] or vd.shape[-1] != mixture.shape[-1]:
            raise ValueError(f"the backbone returned shape {tuple(vd.shape)} for input {tuple(mixture.shape)}; "
                             f"expected [B, C, T]")
        if mode == "backbone":
            return vd
        vg = self.vocode(vd, seeds)
        if mode == "xcorr":
            return self.xcorr(vd, vg)
        return self.combine(vd, vg)

    def combine(self, vd: Tensor, vg: Tensor) -> Tensor:
        """F's combination of ``vd`` and ``vg`` ``[B, C, L]`` in this method's ``combiner_precision``."""
        if vd.device.type == "cpu" and vd.shape[0] > 1:
            # One batch item per call on CPU: F's activations ([C, 64, 257 bins, frames], ~33 MB per item of 4 s at
            # 8 kHz) outgrow the caches when items are stacked, and a batch of 8 in one call cost 1.48x the CPU time
            # per second of audio of 8 calls of one item (measured on the bundled default). GPUs want the batch.
            return torch.cat([self._combine(vd[b:b + 1], vg[b:b + 1]) for b in range(vd.shape[0])])
        return self._combine(vd, vg)

    def _combine(self, vd: Tensor, vg: Tensor) -> Tensor:
        # Only fastsep's Combiner takes a precision; another F is called as it was given.
        if self.combiner_precision != "float32" and isinstance(self.combiner, Combiner):
            return self.combiner(vd, vg, precision=self.combiner_precision)
        return self.combiner(vd, vg)

    @torch.no_grad()
    def separate(self, mixture: Tensor, seed: Union[None, int, Sequence[int]] = 0, mode: str = "full") -> Tensor:
        """The methods' interface: ``[B, T] -> [B, C, T]`` at the models' level (no level handling or chunking:
        :class:`fastsep.separator.Separator` adds those). An int ``seed`` gives item b the vocoder seed
        ``seed + b``."""
        self.check_mode(mode)
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seed = [int(seed) + b for b in range(mixture.shape[0])]
        return self.run(mixture, mode, seed)
