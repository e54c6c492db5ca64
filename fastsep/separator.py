"""The user's entry point: :class:`Separator` runs any of fastsep's methods on arrays and files.

The method and its modes come from the bundle (:mod:`fastsep.bundle`, :mod:`fastsep.methods`); ``Separator.modes``
lists them:

    Separate-And-Diffuse: ``"backbone"`` (B alone), ``"xcorr"`` (the paper's ablation without F:
    ``iSTFT((Vd + xcorr_align(Vd, Vg)) / 2)`` with ``v_g = GM(mel(v_d))``), ``"full"`` (``F(v_d, v_g)``).
    DiffSep: ``"diffsep"`` (the predictor-corrector sampler of the score network).
    Diffusion priors: ``"prior"`` (the reconstruction-guided solver with the bundle's guidance step) and
    ``"prior-hybrid"``, ``"prior-dsg"``, ``"prior-dps"`` (a named step: the paper's comparison).

Everything below is written once against the methods' interface (:mod:`fastsep.methods.base`) and holds for all
of them.

Levels: each mixture (each chunk of a long one) is brought to a fixed RMS (``input_rms``) before the models and the
estimates are brought back to the mixture's level after, because the vocoder adds its noise at a fixed absolute
level: without this, quiet recordings came out worse than the mixture in full and xcorr modes. The estimates are
then scaled by one gain shared by all talkers, the least-squares gain that makes their sum closest to the mixture
(``mixture_consistent``), so outputs are at the mixture's level and the talkers keep the levels the model gave them
relative to each other.

Determinism: the sampling noise (the vocoder's, DiffSep's sampler's, the prior solver's) comes from generators seeded
per batch item (``seed=``), so an item's result does not depend on its batch-mates, and a chunk's seed is derived
from the item's seed and the chunk's index.

Long inputs go through :mod:`fastsep.chunking` (overlapping chunks, overlap-add, talker order kept across chunks), so
memory is bounded by the chunk length, not the recording's; files are read, resampled and written in blocks too
(:mod:`fastsep.batch_files`, :mod:`fastsep.streaming`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .chunking import iter_separated, separate_chunked
from .dsp import StftConfig
from .methods.separate_and_diffuse import SAD_MODES
from .precision import check_precision

__all__ = ["Separator", "BatchResult", "MODES", "DEFAULT_BUNDLE", "MIN_SECONDS", "INPUT_RMS", "output_paths"]

#: Separate-And-Diffuse's modes (a separator's own: :attr:`Separator.modes`).
MODES = SAD_MODES
DEFAULT_BUNDLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "default")
# Shortest input separated, in every mode: below this there is no speech to speak of, and full mode's mel and STFT
# frames (a few hundredths of a second) would be mostly padding.
MIN_SECONDS = 0.1
# Level each mixture is brought to before the models: about that of the mixtures the default bundle was trained and
# demonstrated on (fastsep demo's mixture has an RMS of 0.077).
INPUT_RMS = 0.08
# Below this RMS a chunk counts as silence and is not amplified (it would only amplify dither).
_SILENT_RMS = 1e-7


def _derive_seed(seed: int, index: int) -> int:
    """A 63-bit seed from (seed, index) that does not collide for neighbouring seeds or indices."""
    return int(np.random.SeedSequence([int(seed) % (1 << 63), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def __getattr__(name: str):
    # Batch file processing moved to fastsep.batch_files; these names stay importable from here.
    if name in ("BatchResult", "output_paths"):
        from . import batch_files

        return getattr(batch_files, name)
    raise AttributeError(f"module 'fastsep.separator' has no attribute {name!r}")


class Separator:
    """Any separation method behind one API: Separate-And-Diffuse (B, a DiffWave vocoder GM and a combiner F),
    DiffSep, or the prior-guided solver.

    ``Separator(backbone, vocoder, combiner, ...)`` composes Separate-And-Diffuse as it always did;
    ``Separator(method=m, ...)`` (or ``Separator(m)``) serves any method object of :mod:`fastsep.methods`
    (:class:`~fastsep.methods.diffsep.DiffSepMethod`, :class:`~fastsep.methods.priors.PriorSeparation`, ...);
    :meth:`from_pretrained` loads any bundle. :attr:`modes` lists what the loaded method offers.

    Args:
        backbone: ``[B, T] -> [B, C, T]`` separation network (Separate-And-Diffuse).
        vocoder: model with ``vocode([N, T]) -> [N, T]`` (needed by modes "xcorr" and "full").
        combiner: :class:`fastsep.models.Combiner` (needed by mode "full").
        sample_rate: rate the models expect (default: the method's; 8000 for a backbone given without one).
        n_src: number of talkers C (read from ``backbone.config["n_src"]`` when not given).
        chunk_seconds, overlap_seconds: inputs longer than a chunk are separated chunk by chunk, overlapping by
            ``overlap_seconds`` (default: a quarter of a chunk, at most 1 s).
        match_levels: rescale each chunk's talkers onto the previous chunk's gain and sign on their overlap, for
            backbones whose output level is not tied to the mixture (see :mod:`fastsep.chunking`).
        vocoder_precision: "float32", or "bfloat16" for the DiffWave vocoder's CPU kernel (~2x faster sampling on
            CPUs with AMX, ~1.5x on AMD's with AVX512-BF16, waveform differences of a few 1e-3; see
            ``DiffWave.generate``). Passed to each ``vocode`` call; the vocoder object itself is left as it was
            given. Separate-And-Diffuse only.
        combiner_precision: "float32", or "bfloat16" for the convolutions of F's two heads (~3x faster F on a CPU
            with AMX, ~1.9x on AMD Zen 4; see ``Combiner.coefficients``). Separate-And-Diffuse only. The CLI's
            ``--precision`` sets both. Either may be "auto": bfloat16 on a CPU with AMX (the vocoder only when its
            channels fill the tiles) or on an AMD CPU with AVX512-BF16, float32 elsewhere
            (:mod:`fastsep.precision`); the resolved choice is what the properties report.
        device: where the models run (default: where the method's networks are).
        input_rms: RMS each mixture (chunk) is scaled to before the models, undone after (None: no scaling).
        mixture_consistent: scale the talkers by the one least-squares gain that makes their sum closest to the
            mixture (False: the models' own output level).
        method: a method object (see :mod:`fastsep.methods.base`) instead of backbone/vocoder/combiner.
    """

    def __init__(
        self,
        backbone: Optional[nn.Module] = None,
        vocoder: Optional[nn.Module] = None,
        combiner: Optional[nn.Module] = None,
        sample_rate: Optional[int] = None,
        n_src: Optional[int] = None,
        chunk_seconds: float = 8.0,
        overlap_seconds: Optional[float] = None,
        device: Optional[Union[str, torch.device]] = None,
        match_levels: bool = False,
        vocoder_precision: str = "float32",
        combiner_precision: str = "float32",
        input_rms: Optional[float] = INPUT_RMS,
        mixture_consistent: bool = True,
        method=None,
    ):
        from .methods.base import is_method
        from .methods.separate_and_diffuse import SeparateAndDiffuse

        if method is None and is_method(backbone):  # Separator(method_object)
            method, backbone = backbone, None
        if method is not None:
            if backbone is not None or vocoder is not None or combiner is not None:
                raise ValueError("Separator: give either a method or backbone/vocoder/combiner, not both")
            if not is_method(method):
                raise TypeError(f"Separator: method must offer the methods' interface (run, modes, modules; see "
                                f"fastsep.methods.base), got {type(method).__name__}")
            for what, value in (("vocoder_precision", vocoder_precision), ("combiner_precision", combiner_precision)):
                check_precision(what, value)
                # "auto" asks for the fast arithmetic where there is one: nothing to set for the other methods.
                if value not in ("float32", "auto") and getattr(method, "name", None) != "separate_and_diffuse":
                    raise ValueError(f"Separator: {what} applies to Separate-And-Diffuse, not to {method.name}")
            if getattr(method, "name", None) == "separate_and_diffuse":
                method.set_precision(None if vocoder_precision == "float32" else vocoder_precision,
                                     None if combiner_precision == "float32" else combiner_precision)
            rate = getattr(method, "sample_rate", None)
            if sample_rate is not None and rate is not None and int(sample_rate) != int(rate):
                raise ValueError(f"Separator: sample_rate {sample_rate} differs from the method's {rate} Hz")
            sample_rate = rate if rate is not None else sample_rate
            if n_src is not None and int(n_src) != int(method.n_src):
                raise ValueError(f"Separator: n_src {n_src} differs from the method's {method.n_src}")
        else:
            if backbone is None:
                raise TypeError("Separator: give a backbone (Separate-And-Diffuse) or a method")
            method = SeparateAndDiffuse(backbone, vocoder, combiner, 8000 if sample_rate is None else sample_rate,
                                        n_src, vocoder_precision, combiner_precision)
            sample_rate = method.sample_rate
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ValueError(f"Separator: sample_rate must be a positive int, got {sample_rate!r}")
        if overlap_seconds is None:
            overlap_seconds = min(1.0, chunk_seconds / 4)
        chunk = int(round(chunk_seconds * sample_rate))
        overlap = int(round(overlap_seconds * sample_rate))
        if chunk <= 0 or overlap < 0 or overlap >= chunk:
            raise ValueError(f"Separator: need chunk_seconds > overlap_seconds >= 0, got {chunk_seconds}, "
                             f"{overlap_seconds}")
        if input_rms is not None and not (isinstance(input_rms, (int, float)) and 0 < float(input_rms) < 1):
            raise ValueError(f"Separator: input_rms must be in (0, 1) or None, got {input_rms!r}")
        self.method = method
        self.sample_rate = int(sample_rate)
        self.n_src = int(method.n_src)
        self.chunk = chunk
        self.overlap = overlap
        self.match_levels = bool(match_levels)
        self.input_rms = None if input_rms is None else float(input_rms)
        self.mixture_consistent = bool(mixture_consistent)
        self.device = torch.device(device) if device is not None else method.device
        method.to(self.device)
        # One minimum for every mode, in seconds; raised above MIN_SECONDS only for a model whose frames need more
        # (full mode's mel needs more than half its n_fft = 4 hops).
        self.min_seconds = max(MIN_SECONDS, method.min_samples / self.sample_rate)
        self._fingerprint: Optional[str] = None
        self._bundle_dir: Optional[str] = None

    # ------------------------------------------------------------------------------------------------ the method
    @property
    def method_name(self) -> str:
        """Which method this separator serves: "separate_and_diffuse", "diffsep" or "priors"."""
        return self.method.name

    @property
    def modes(self) -> Tuple[str, ...]:
        """The modes this separator offers (e.g. ("full", "xcorr", "backbone"), ("diffsep",), ("prior", ...))."""
        return tuple(self.method.modes)

    @property
    def default_mode(self) -> str:
        """The mode used when none is named: "full" for a complete Separate-And-Diffuse bundle, else the method's
        first."""
        return self.method.default_mode

    def _sad(self, name: str):
        return getattr(self.method, name) if self.method.name == "separate_and_diffuse" else None

    # Separate-And-Diffuse's parts, as attributes (None for other methods); assignable, as they always were.
    @property
    def backbone(self):
        return self._sad("backbone")

    @backbone.setter
    def backbone(self, value):
        self._set_sad("backbone", value)

    @property
    def vocoder(self):
        return self._sad("vocoder")

    @vocoder.setter
    def vocoder(self, value):
        self._set_sad("vocoder", value)

    @property
    def combiner(self):
        return self._sad("combiner")

    @combiner.setter
    def combiner(self, value):
        self._set_sad("combiner", value)

    def _set_sad(self, name: str, value) -> None:
        if self.method.name != "separate_and_diffuse":
            raise AttributeError(f"a {self.method.name} separator has no {name}")
        setattr(self.method, name, value)
        self._fingerprint = None

    @property
    def vocoder_precision(self) -> str:
        return getattr(self.method, "vocoder_precision", "float32")

    @property
    def combiner_precision(self) -> str:
        return getattr(self.method, "combiner_precision", "float32")

    @property
    def stft_cfg(self) -> StftConfig:
        cfg = self._sad("stft_cfg")
        return cfg if cfg is not None else StftConfig()

    # ------------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path=None, device="cpu", **kwargs) -> "Separator":
        """Load a bundle folder of any method (Separate-And-Diffuse, DiffSep, priors; see :mod:`fastsep.bundle`);
        no ``path`` loads the default shipped inside the package (``fastsep/assets/default``). Never downloads
        anything. ``vocoder_precision`` and ``combiner_precision`` apply to Separate-And-Diffuse bundles only."""
        from . import bundle

        directory = DEFAULT_BUNDLE if path is None else os.fspath(path)
        if path is not None and not bundle.is_bundle(directory) and os.path.isfile(os.path.join(directory,
                                                                                               "model.json")):
            return cls.from_checkpoint(directory, device=device, **kwargs)
        if not bundle.is_bundle(directory):
            if path is None:
                raise FileNotFoundError(
                    f"no default model is installed at {directory}. Make one with `bash recipes/train_default.sh` "
                    f"from the fastsep source tree (it trains B, GM and F on a synthetic corpus and writes the bundle "
                    f"there), or pass the folder of a trained bundle: Separator.from_pretrained('path/to/bundle')."
                )
            if not os.path.exists(directory):
                raise FileNotFoundError(f"{directory} does not exist (expected a fastsep bundle or a training "
                                        f"checkpoint folder)")
            raise FileNotFoundError(f"{directory} is not a fastsep bundle ({bundle.MANIFEST} missing); bundles are "
                                    f"written by Separator.save_pretrained, fastsep.bundle.save_bundle, "
                                    f"write_diffsep_bundle or write_priors_bundle")
        options = {}
        held = bundle.bundle_method(directory)  # reads the manifest once
        for what in ("vocoder_precision", "combiner_precision"):
            if held == "separate_and_diffuse":
                options[what] = kwargs.pop(what, "float32")
            elif kwargs.get(what, "float32") not in ("float32", "auto"):
                raise ValueError(f"{what} applies to Separate-And-Diffuse bundles; {directory} holds {held}")
            else:
                kwargs.pop(what, None)
        method = bundle.load_method(directory, map_location=device, **options)
        sep = cls(method=method, device=device, **kwargs)
        sep._bundle_dir = directory
        return sep

    @classmethod
    def from_checkpoint(cls, path, device="cpu", **kwargs) -> "Separator":
        """A backbone-only separator of a separator model folder (``model.json`` + ``model.safetensors``, as
        ``fastsep train separator`` writes in ``last/`` and ``best/``), so that any training checkpoint can be
        served and evaluated (``fastsep eval --model OUT/last``) before it is bundled. Only "backbone" mode."""
        from .methods.separate_and_diffuse import SeparateAndDiffuse
        from .models.io import load_model

        directory = os.fspath(path)
        for what, part in (("vocoder_precision", "a vocoder"), ("combiner_precision", "a combiner")):
            if kwargs.pop(what, "float32") not in ("float32", "auto"):
                raise ValueError(f"{what} needs {part}; {directory} is a backbone checkpoint")
        model = load_model(directory, map_location=device)
        config = getattr(model, "config", None) or {}
        if "n_src" not in config or "sample_rate" not in config:
            raise ValueError(f"{directory} holds a {type(model).__name__}, not a separator backbone (its config "
                             f"names no n_src and sample_rate); bundles are loaded from their own folder")
        sep = cls(method=SeparateAndDiffuse(model.eval(), sample_rate=int(config["sample_rate"])), device=device,
                  **kwargs)
        sep._bundle_dir = directory
        return sep

    def save_pretrained(self, directory, extra: Optional[dict] = None) -> str:
        """Write this separator's method as a bundle (safetensors + JSON) that :meth:`from_pretrained` reads."""
        from .bundle import save_method

        return save_method(directory, self.method, extra)

    # ------------------------------------------------------------------------------------------------ arrays
    def _check_mode(self, mode: str) -> None:
        """ValueError naming the modes offered when this separator cannot run ``mode``."""
        self.method.check_mode(mode)

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the models' weights and the settings that change the output: what resuming
        compares to tell whether existing outputs were made by this separator."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            sad = self.method.name == "separate_and_diffuse"
            if not sad:  # Separate-And-Diffuse hashes as it did before methods existed, so old records still match
                h.update(self.method.name.encode())
            for name, model in self.method.modules().items():
                h.update(name.encode())
                if isinstance(model, nn.Module):
                    for key, value in sorted(model.state_dict().items()):
                        h.update(key.encode())
                        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
                elif model is not None:
                    h.update(type(model).__qualname__.encode())
            settings = (self.sample_rate, self.n_src, self.chunk, self.overlap, self.match_levels,
                        self.vocoder_precision, self.input_rms, self.mixture_consistent)
            if self.combiner_precision != "float32":  # appended only when set, so that earlier records still match
                settings += (("combiner_precision", self.combiner_precision),)
            h.update(repr(settings).encode())
            if not sad:
                h.update(json.dumps(self.method.settings(), sort_keys=True).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def _vocode(self, vd: Tensor, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """GM's estimates ``[B, C, L]`` (Separate-And-Diffuse; see :meth:`SeparateAndDiffuse.vocode`)."""
        return self._sad_method("vocoder stage").vocode(vd, seeds)

    def _combine(self, vd: Tensor, vg: Tensor) -> Tensor:
        """F's stage, as full mode runs it (Separate-And-Diffuse)."""
        return self._sad_method("combiner stage").combine(vd, vg)

    def _xcorr(self, vd: Tensor, vg: Tensor) -> Tensor:
        """The xcorr ablation's alignment and average (Separate-And-Diffuse)."""
        return self._sad_method("xcorr stage").xcorr(vd, vg)

    def _sad_method(self, what: str):
        if self.method.name != "separate_and_diffuse":
            raise ValueError(f"the {what} belongs to Separate-And-Diffuse; this separator serves {self.method.name}")
        return self.method

    def _run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """One forward pass of the method over ``[B, L]`` (on :attr:`device`); returns ``[B, C, L]`` at the models'
        own level. ``seeds``: None (torch's generator) or one int per row."""
        out = self.method.run(mixture, mode, seeds)
        if out.dim() != 3 or out.shape[0] != mixture.shape[0] or out.shape[1] != self.n_src \
                or out.shape[-1] != mixture.shape[-1]:
            raise ValueError(f"the {self.method.name} method returned shape {tuple(out.shape)} for input "
                             f"{tuple(mixture.shape)}; expected [B, {self.n_src}, T]")
        return out

    def _run_leveled(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """:meth:`_run` on the mixture brought to ``input_rms``, returned at the mixture's level (see the module's
        notes). Everything here is per batch row, so a row's result does not depend on the others."""
        gain_in = torch.ones(mixture.shape[0], 1, device=mixture.device, dtype=mixture.dtype)
        if self.input_rms is not None:
            rms = mixture.pow(2).mean(-1, keepdim=True).sqrt()
            gain_in = torch.where(rms > _SILENT_RMS, self.input_rms / rms.clamp_min(_SILENT_RMS), gain_in)
        est = self._run(mixture * gain_in, mode, seeds)
        if not self.mixture_consistent:
            return est / gain_in[:, :, None]
        total = est.sum(1)
        # Least squares: g = <m, sum_c e_c> / |sum_c e_c|^2, one gain per row shared by all talkers.
        gain = (mixture * total).sum(-1) / (total * total).sum(-1).clamp_min(1e-20)
        return est * torch.nan_to_num(gain, nan=0.0, posinf=0.0, neginf=0.0)[:, None, None]

    def _chunk_fn(self, mode: str, seeds: Optional[Sequence[int]]):
        """The function the chunker calls per chunk: chunk k of row b uses the seed derived from (seeds[b], k)."""
        count = [0]

        def separate_chunk(chunk: Tensor) -> Tensor:
            k = count[0]
            count[0] += 1
            chunk_seeds = None if seeds is None else [_derive_seed(s, k) for s in seeds]
            return self._run_leveled(chunk.to(self.device, torch.float32), mode, chunk_seeds)

        return separate_chunk

    def _row_seeds(self, seed, batch: int) -> List[int]:
        if seed is None:  # drawn from torch's generator, so torch.manual_seed also fixes the result
            return [int(torch.randint(0, 2 ** 62, (1,)).item())] * batch
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed)] * batch
        items = seed.tolist() if isinstance(seed, (np.ndarray, Tensor)) else seed
        if isinstance(items, (list, tuple)) and len(items) == batch and all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in items):
            return [int(s) for s in items]
        raise TypeError(f"seed must be None, an int, or one int per batch item ({batch}), got {seed!r}")

    @torch.no_grad()  # torch's decorator keeps grad off across the generator's yields
    def iter_separate(self, mixture, mode: Optional[str] = None, seed=None, progress: bool = False
                      ) -> Iterator[Tuple[int, Tensor]]:
        """Yield ``(start, piece [B, C, n])`` in order; ``mixture`` is ``[B, T]`` at the model's rate, a tensor or
        any object the chunker can slice (e.g. :class:`fastsep.streaming.ResampledView`, which reads a file).
        ``mode`` None: :attr:`default_mode`."""
        mode = self.default_mode if mode is None else mode
        self._check_mode(mode)
        seeds = self._row_seeds(seed, mixture.shape[0])
        yield from iter_separated(self._chunk_fn(mode, seeds), mixture, self.chunk, self.overlap, progress,
                                  self.match_levels)

    def _as_wave(self, mixture) -> Tuple[Tensor, bool]:
        """The mixture as a float tensor, with clear errors for what cannot be a ``[T]`` or ``[B, T]`` waveform."""
        from .audio import to_float

        is_numpy = isinstance(mixture, np.ndarray)
        if is_numpy:
            if mixture.dtype.kind not in "fiu":
                raise TypeError(f"mixture must hold real numbers, got numpy dtype {mixture.dtype}")
            wave = torch.from_numpy(np.ascontiguousarray(to_float(mixture)))
        elif isinstance(mixture, Tensor):
            if mixture.is_complex() or mixture.dtype == torch.bool:
                raise TypeError(f"mixture must be a real tensor, got dtype {mixture.dtype}")
            wave = mixture
            if not wave.is_floating_point():  # integer PCM, scaled to [-1, 1) as fastsep.audio.load does
                wave = torch.from_numpy(to_float(wave.cpu().numpy())).to(mixture.device)
        else:
            raise TypeError(f"mixture must be a torch.Tensor or numpy.ndarray, got {type(mixture).__name__}")
        if wave.dim() not in (1, 2):
            raise ValueError(f"mixture must be [T] or [B, T], got shape {tuple(wave.shape)}")
        if wave.numel() == 0:
            raise ValueError(f"mixture is empty (shape {tuple(wave.shape)})")
        if wave.dim() == 2 and wave.shape[-1] <= 8 and wave.shape[0] > wave.shape[-1]:
            raise ValueError(f"mixture of shape {tuple(wave.shape)} looks like channels-last audio [T, channels]; "
                             f"separate() takes [T] or [B, T]: pass one channel or the average "
                             f"(x.mean(axis=-1)) as [T]")
        return wave, is_numpy

    @torch.no_grad()
    def separate(self, mixture, mode: Optional[str] = None, sample_rate: Optional[int] = None,
                 progress: bool = False, seed=None, output_rate: Optional[int] = None):
        """Separate ``mixture`` (``[T]`` or ``[B, T]``, torch tensor or numpy array; integer PCM is scaled to
        [-1, 1) as :func:`fastsep.audio.load` does).

        Args:
            mode: one of :attr:`modes` (default :attr:`default_mode`: "full" for Separate-And-Diffuse).
            sample_rate: the mixture's rate (default: the model's); another rate is resampled to the model's.
            output_rate: rate of the returned estimates (default: ``sample_rate``, i.e. the input's).
            seed: sampling noise seed (the vocoder's in modes xcorr and full, DiffSep's, the prior solver's): an int
                used by every batch item, or one int per item; item b's result depends only on its own mixture and
                seed. None draws one from torch's generator.

        Returns:
            ``[C, T']`` or ``[B, C, T']`` at ``output_rate``, at the mixture's level (see the module's notes): a numpy
            float32 array for numpy input, else a tensor on the input's device.

        Raises:
            ValueError: inputs shorter than :attr:`min_seconds`, silent, NaN/inf, or of the wrong shape.
        """
        from .dsp import resample

        mode = self.default_mode if mode is None else mode
        self._check_mode(mode)
        wave, is_numpy = self._as_wave(mixture)
        in_rate = self.sample_rate if sample_rate is None else sample_rate
        if not isinstance(in_rate, (int, np.integer)) or isinstance(in_rate, bool) or in_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        out_rate = int(in_rate) if output_rate is None else output_rate
        if not isinstance(out_rate, (int, np.integer)) or isinstance(out_rate, bool) or out_rate <= 0:
            raise ValueError(f"output_rate must be a positive int, got {output_rate!r}")
        seconds = wave.shape[-1] / in_rate
        if seconds < self.min_seconds:
            raise ValueError(f"mixture is {seconds:.4f} s long ({wave.shape[-1]} samples at {in_rate} Hz); the "
                             f"shortest input fastsep separates is {self.min_seconds:g} s")
        out_device = wave.device
        wave = wave.to(self.device, torch.float32)
        if not bool(torch.isfinite(wave).all()):
            raise ValueError("mixture holds NaN or infinite samples")
        single = wave.dim() == 1
        batch = wave[None] if single else wave
        silent = (batch.abs().amax(dim=-1) == 0).nonzero().flatten().tolist()
        if silent:
            raise ValueError(f"mixture {'is' if single else 'rows ' + str(silent) + ' are'} silent (all samples "
                             f"zero): there is nothing to separate")
        if in_rate != self.sample_rate:
            batch = resample(batch, int(in_rate), self.sample_rate).contiguous()
        seeds = self._row_seeds(seed, batch.shape[0])
        est = separate_chunked(self._chunk_fn(mode, seeds), batch, self.chunk, self.overlap, progress,
                               self.match_levels)
        if out_rate != self.sample_rate:
            est = resample(est, self.sample_rate, int(out_rate))
            want = math.ceil(wave.shape[-1] * out_rate / in_rate)
            est = est[..., :want] if est.shape[-1] >= want else nn.functional.pad(est, (0, want - est.shape[-1]))
        est = est[0] if single else est
        if is_numpy:
            return est.float().cpu().numpy()
        return est.to(out_device)

    def stream(self, mode: str = "backbone", window_seconds: Optional[float] = None,
               hop_seconds: Optional[float] = None, seed: int = 0, threads: Optional[int] = None,
               context_seconds: Optional[float] = None, lookahead_seconds: Optional[float] = None):
        """A stream: push audio blocks at the model's rate, get the separated talkers back after a stated, fixed
        algorithmic latency (``latency_seconds``), talker order kept across windows.

        With ``window_seconds`` (the default for xcorr and full: 2 s windows every 1.5 s) it is a
        :class:`fastsep.stream_separate.SeparationStream`, whose output equals offline chunked separation with
        ``chunk_seconds=window_seconds`` and ``overlap_seconds=window_seconds - hop_seconds``; the latency is the
        window.

        ``stream = sep.stream("backbone"); for block in source: play(stream.push(block)); play(stream.finish())``

        Otherwise (the default for backbone mode, or with ``context_seconds`` / ``lookahead_seconds``) it is a
        :class:`fastsep.stream_lookback.LookbackStream`: every ``hop_seconds`` the model separates the last
        ``context + hop + lookahead`` seconds and only the hop is emitted, so the latency is ``hop + lookahead``
        (default 0.05 + 0.05 s) while the model sees ``context`` (default 1.9 s) of the past. Its output is not the
        offline chunking's, and it costs a window of compute per hop; on the unseen festival voices the bundled
        backbone keeps 4.3 of its 5.0 dB offline SI-SDRi at 100 ms, where 100 ms offline-equal windows lose
        everything (BENCHMARKS.md).

        Separate-And-Diffuse only (DiffSep and the prior solver take seconds per second of audio, far from live).
        """
        from .stream_separate import SeparationStream

        if self.method.name != "separate_and_diffuse":
            raise ValueError(f"streaming serves Separate-And-Diffuse bundles only; this one holds {self.method.name} "
                             f"(modes {', '.join(self.modes)}): use separate(), iter_separate() or separate_files()")

        lookback = context_seconds is not None or lookahead_seconds is not None
        if lookback and window_seconds is not None:
            raise ValueError("stream: give window_seconds (offline-equal windows) or context_seconds/"
                             "lookahead_seconds (look-back windows), not both")
        if lookback or (mode == "backbone" and window_seconds is None):
            from .stream_lookback import LookbackStream

            return LookbackStream(self, mode, context_seconds, hop_seconds, lookahead_seconds, seed=seed,
                                  threads=threads)
        return SeparationStream(self, mode, window_seconds, hop_seconds, seed, threads)

    # ------------------------------------------------------------------------------------------------ files
    def separate_file(self, path, out_dir, mode: Optional[str] = None, overwrite: bool = True, output_rate=None,
                      seed: int = 0) -> List[str]:
        """Separate one audio file into ``<out_dir>/<stem>_s1.wav``, ... (see :func:`fastsep.batch_files.
        separate_file`); returns the written paths. Raises :class:`fastsep.audio.AudioError` for an unusable file."""
        from .batch_files import separate_file

        mode = self.default_mode if mode is None else mode
        return separate_file(self, path, out_dir, mode=mode, overwrite=overwrite, output_rate=output_rate,
                             seed=seed)

    def separate_files(self, paths: Iterable, out_dir, mode: Optional[str] = None, **kwargs):
        """Separate many files, resumably; see :func:`fastsep.batch_files.separate_files` for the options."""
        from .batch_files import separate_files

        mode = self.default_mode if mode is None else mode
        return separate_files(self, paths, out_dir, mode=mode, **kwargs)
