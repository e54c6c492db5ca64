"""The user's entry point: :class:`Separator` runs Separate-And-Diffuse (or its ablations) on arrays and files.

Modes:
    ``"backbone"``: B alone, ``v_d = B(m)``.
    ``"xcorr"``: the paper's ablation without F: ``iSTFT((Vd + xcorr_align(Vd, Vg)) / 2)`` with ``v_g = GM(mel(v_d))``.
    ``"full"``: ``F(v_d, v_g)``, the combination learnt by network F.

Long inputs go through :mod:`fastsep.chunking` (overlapping chunks, overlap-add, talker order kept across chunks), so
memory is bounded by the chunk length, not the recording's.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import ops
from .chunking import separate_chunked
from .dsp import StftConfig, istft, stft

__all__ = ["Separator", "BatchResult", "MODES", "DEFAULT_BUNDLE", "output_paths"]

MODES = ("full", "xcorr", "backbone")
DEFAULT_BUNDLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "default")


def output_paths(path, out_dir, n_src: int) -> List[str]:
    """Where :meth:`Separator.separate_file` writes the talkers of ``path``: ``<out_dir>/<stem>_s1.wav``, ..."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return [os.path.join(os.fspath(out_dir), f"{stem}_s{i + 1}.wav") for i in range(n_src)]


@dataclass
class BatchResult:
    """Outcome of :meth:`Separator.separate_files`: files written, skipped (outputs existed) and failed (reason)."""

    written: Dict[str, List[str]] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


class Separator:
    """Separate-And-Diffuse around a backbone B, a DiffWave vocoder GM and a combiner F.

    Args:
        backbone: ``[B, T] -> [B, C, T]`` separation network.
        vocoder: model with ``vocode([N, T]) -> [N, T]`` (needed by modes "xcorr" and "full").
        combiner: :class:`fastsep.models.Combiner` (needed by mode "full").
        sample_rate: rate the models expect.
        n_src: number of talkers C (read from ``backbone.config["n_src"]`` when not given).
        chunk_seconds, overlap_seconds: inputs longer than a chunk are separated chunk by chunk, overlapping by
            ``overlap_seconds`` (default: a quarter of a chunk, at most 1 s).
        match_levels: rescale each chunk's talkers onto the previous chunk's gain and sign on their overlap, for
            backbones whose output level is not tied to the mixture (see :mod:`fastsep.chunking`).
        vocoder_precision: "float32", or "bfloat16" for the DiffWave vocoder's CPU kernel (~1.4-1.6x faster sampling
            on CPUs with AVX512-BF16, waveform differences of a few 1e-3; see ``DiffWave.generate``).
        device: where the models run (default: where the backbone's parameters are).
    """

    def __init__(
        self,
        backbone: nn.Module,
        vocoder: Optional[nn.Module] = None,
        combiner: Optional[nn.Module] = None,
        sample_rate: int = 8000,
        n_src: Optional[int] = None,
        chunk_seconds: float = 8.0,
        overlap_seconds: Optional[float] = None,
        device: Optional[Union[str, torch.device]] = None,
        match_levels: bool = False,
        vocoder_precision: str = "float32",
    ):
        if not callable(backbone):
            raise TypeError(f"Separator: backbone must be a callable module, got {type(backbone).__name__}")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"Separator: sample_rate must be a positive int, got {sample_rate!r}")
        if n_src is None:
            n_src = (getattr(backbone, "config", None) or {}).get("n_src", getattr(backbone, "n_src", None))
        if not isinstance(n_src, (int, np.integer)) or n_src < 1:
            raise ValueError(f"Separator: n_src must be a positive int (or in backbone.config), got {n_src!r}")
        if overlap_seconds is None:
            overlap_seconds = min(1.0, chunk_seconds / 4)
        chunk = int(round(chunk_seconds * sample_rate))
        overlap = int(round(overlap_seconds * sample_rate))
        if chunk <= 0 or overlap < 0 or overlap >= chunk:
            raise ValueError(f"Separator: need chunk_seconds > overlap_seconds >= 0, got {chunk_seconds}, "
                             f"{overlap_seconds}")
        if vocoder_precision not in ("float32", "bfloat16"):
            raise ValueError(f"Separator: vocoder_precision must be 'float32' or 'bfloat16', got {vocoder_precision!r}")
        if vocoder is not None and hasattr(vocoder, "sampling_precision"):
            vocoder.sampling_precision = vocoder_precision
        voc_rate = getattr(vocoder, "sample_rate", None)
        if vocoder is not None and voc_rate is not None and int(voc_rate) != int(sample_rate):
            raise ValueError(f"Separator: the vocoder runs at {voc_rate} Hz but the separator at {sample_rate} Hz")
        self.backbone = backbone
        self.vocoder = vocoder
        self.combiner = combiner
        self.sample_rate = int(sample_rate)
        self.n_src = int(n_src)
        self.chunk = chunk
        self.overlap = overlap
        self.match_levels = bool(match_levels)
        if device is None:
            params = list(backbone.parameters()) if isinstance(backbone, nn.Module) else []
            device = params[0].device if params else torch.device("cpu")
        self.device = torch.device(device)
        for m in (backbone, vocoder, combiner):
            if isinstance(m, nn.Module):
                m.to(self.device).eval()
        if isinstance(combiner, nn.Module) and self.device.type == "cpu":
            # F's 3x3 convolutions: channels-last weights spare oneDNN a reorder per call (~15% of F's time here).
            combiner.to(memory_format=torch.channels_last)
        # The xcorr ablation aligns in the same STFT as F combines in, so the two modes differ only by F.
        self.stft_cfg = getattr(combiner, "stft_cfg", None) or StftConfig()

    # ------------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path=None, device="cpu", **kwargs) -> "Separator":
        """Load a bundle folder written by :meth:`save_pretrained`; no ``path`` loads the default shipped inside
        the package (``fastsep/assets/default``). Never downloads anything."""
        from . import bundle

        directory = DEFAULT_BUNDLE if path is None else os.fspath(path)
        if not bundle.is_bundle(directory):
            if path is None:
                raise FileNotFoundError(
                    f"no default model is installed at {directory}. Make one with `bash recipes/train_default.sh` "
                    f"from the fastsep source tree (it trains B, GM and F on a synthetic corpus and writes the bundle "
                    f"there), or pass the folder of a trained bundle: Separator.from_pretrained('path/to/bundle')."
                )
            raise FileNotFoundError(f"{directory} is not a fastsep bundle ({bundle.MANIFEST} missing); bundles are "
                                    f"written by Separator.save_pretrained or fastsep.bundle.save_bundle")
        parts = bundle.load_bundle(directory, map_location=device)
        return cls(parts["backbone"], parts["vocoder"], parts["combiner"], sample_rate=parts["sample_rate"],
                   n_src=parts["n_src"], device=device, **kwargs)

    def save_pretrained(self, directory, extra: Optional[dict] = None) -> str:
        """Write this separator's models as a bundle (safetensors + JSON) that :meth:`from_pretrained` reads."""
        from .bundle import save_bundle

        return save_bundle(directory, self.backbone, self.vocoder, self.combiner, self.sample_rate, self.n_src, extra)

    # ------------------------------------------------------------------------------------------------ arrays
    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode in ("full", "xcorr") and self.vocoder is None:
            raise ValueError(f"mode {mode!r} needs a vocoder (GM); this separator has none: use mode='backbone'")
        if mode == "full" and self.combiner is None:
            raise ValueError("mode 'full' needs a combiner (F); this separator has none: use 'xcorr' or 'backbone'")

    def _vocode(self, vd: Tensor) -> Tensor:
        batch, n_src, length = vd.shape
        vg = self.vocoder.vocode(vd.reshape(batch * n_src, length))
        if vg.shape[-1] != length:  # a vocoder working in whole hops may return a few samples more or less
            vg = nn.functional.pad(vg, (0, length - vg.shape[-1])) if vg.shape[-1] < length else vg[..., :length]
        return vg.reshape(batch, n_src, length).to(vd.dtype)

    def _xcorr(self, vd: Tensor, vg: Tensor) -> Tensor:
        length = vd.shape[-1]
        short = self.stft_cfg.n_fft // 2 + 1
        if length < short:  # centred STFT padding needs more than half a frame
            vd = nn.functional.pad(vd, (0, short - length))
            vg = nn.functional.pad(vg, (0, short - length))
        spec_d, spec_g = stft(vd, self.stft_cfg), stft(vg, self.stft_cfg)
        aligned, _ = ops.xcorr_align(spec_d, spec_g, self.stft_cfg.n_fft)
        return istft((spec_d + aligned) * 0.5, vd.shape[-1], self.stft_cfg)[..., :length]

    def _run(self, mixture: Tensor, mode: str) -> Tensor:
        """One forward pass over ``[B, L]``; returns ``[B, C, L]``."""
        vd = self.backbone(mixture)
        if vd.dim() != 3 or vd.shape[0] != mixture.shape[0] or vd.shape[-1] != mixture.shape[-1]:
            raise ValueError(f"the backbone returned shape {tuple(vd.shape)} for input {tuple(mixture.shape)}; "
                             f"expected [B, C, T]")
        if mode == "backbone":
            return vd
        vg = self._vocode(vd)
        if mode == "xcorr":
            return self._xcorr(vd, vg)
        return self.combiner(vd, vg)

    @torch.no_grad()
    def separate(self, mixture, mode: str = "full", sample_rate: Optional[int] = None, progress: bool = False):
        """Separate ``mixture`` (1-D ``[T]`` or ``[B, T]``, torch tensor or numpy array, at the model's rate).

        Returns ``[C, T]`` or ``[B, C, T]``: a numpy float32 array for numpy input, else a tensor on the input's
        device. ``sample_rate``, when given, is checked against the model's (resample first with
        :func:`fastsep.dsp.resample`).
        """
        self._check_mode(mode)
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(f"the mixture is at {sample_rate} Hz but the model expects {self.sample_rate} Hz; "
                             f"resample it first (fastsep.dsp.resample) or use separate_file, which resamples")
        is_numpy = isinstance(mixture, np.ndarray)
        if is_numpy:
            if mixture.dtype.kind not in "fiu":
                raise TypeError(f"mixture must hold real numbers, got numpy dtype {mixture.dtype}")
            wave = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))
        elif isinstance(mixture, Tensor):
            if mixture.is_complex() or mixture.dtype == torch.bool:
                raise TypeError(f"mixture must be a real tensor, got dtype {mixture.dtype}")
            wave = mixture
        else:
            raise TypeError(f"mixture must be a torch.Tensor or numpy.ndarray, got {type(mixture).__name__}")
        if wave.dim() not in (1, 2):
            raise ValueError(f"mixture must be [T] or [B, T], got shape {tuple(wave.shape)}")
        if wave.shape[-1] == 0 or wave.numel() == 0:
            raise ValueError(f"mixture is empty (shape {tuple(wave.shape)})")
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
        if batch.shape[-1] <= self.chunk:
            est = self._run(batch, mode)
        else:
            est = separate_chunked(lambda m: self._run(m, mode), batch, self.chunk, self.overlap, progress,
                                   self.match_levels)
        est = est[0] if single else est
        if is_numpy:
            return est.float().cpu().numpy()
        return est.to(out_device)

    # ------------------------------------------------------------------------------------------------ files
    def _load(self, path) -> Tensor:
        from . import audio

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wave, _ = audio.load(path, sample_rate=self.sample_rate, mono=True)
        for w in caught:  # pass the downmix warning on, naming the file
            warnings.warn(str(w.message), w.category, stacklevel=3)
        if float(wave.abs().max()) == 0.0:
            raise audio.AudioError(path, "file is silent (all samples zero): there is nothing to separate")
        return wave

    def _write(self, est: Tensor, targets: Sequence[str]) -> None:
        from . import audio

        for wave, target in zip(est, targets):
            peak = float(wave.abs().max())
            # SI-SDR-trained backbones fix no output scale; keep 16-bit files from clipping.
            if peak > 0.99:
                wave = wave * (0.99 / peak)
            audio.save(target, wave.cpu(), self.sample_rate)

    def separate_file(self, path, out_dir, mode: str = "full", overwrite: bool = True) -> List[str]:
        """Separate one audio file (any format :func:`fastsep.audio.load` reads; resampled to the model's rate,
        stereo downmixed with a warning) into ``<out_dir>/<stem>_s1.wav``, ...; returns the written paths.

        Raises :class:`fastsep.audio.AudioError` for an unusable file; nothing is written in that case.
        """
        self._check_mode(mode)
        targets = output_paths(path, out_dir, self.n_src)
        if not overwrite and all(os.path.exists(t) for t in targets):
            return targets
        wave = self._load(path)
        est = self.separate(wave, mode=mode)
        os.makedirs(os.fspath(out_dir), exist_ok=True)
        self._write(est, targets)
        return targets

    def separate_files(
        self,
        paths: Iterable,
        out_dir,
        mode: str = "full",
        batch_size: int = 4,
        overwrite: bool = False,
        progress: Optional[bool] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> BatchResult:
        """Separate many files, resumably: outputs that already exist are skipped (unless ``overwrite``).

        Files are sorted by length and those of similar length (within 10 %, each at most one chunk) are batched
        together; a file that cannot be read or separated is recorded in ``result.failed`` and the run goes on.
        Under torchrun (``RANK``/``WORLD_SIZE`` in the environment, or the arguments) rank r takes
        ``files[r::world_size]``. ``progress``: None shows a bar on a terminal only.
        """
        from tqdm.auto import tqdm

        from . import audio

        self._check_mode(mode)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        paths = [os.fspath(p) for p in paths]
        stems: Dict[str, str] = {}
        for p in paths:
            stem = os.path.splitext(os.path.basename(p))[0]
            if stem in stems and stems[stem] != p:
                raise ValueError(f"{stems[stem]} and {p} would write the same outputs ({stem}_s1.wav, ...) in "
                                 f"{out_dir}; give them distinct names or separate them into different folders")
            stems[stem] = p
        rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        mine = sorted(paths)[rank::world_size]

        result = BatchResult()
        todo = []
        for p in mine:
            targets = output_paths(p, out_dir, self.n_src)
            if not overwrite and all(os.path.exists(t) for t in targets):
                result.skipped.append(p)
                continue
            try:
                frames, rate, _ = audio.info(p)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal
                result.failed[p] = str(exc)
                continue
            todo.append((frames / max(rate, 1), p))
        todo.sort()

        groups: List[List[str]] = []
        group_start = 0.0  # length of the shortest (first) file of the open group
        chunk_s = self.chunk / self.sample_rate
        for seconds, p in todo:
            if groups and len(groups[-1]) < batch_size and seconds <= chunk_s and seconds <= 1.1 * group_start:
                groups[-1].append(p)
            else:
                groups.append([p])
                group_start = seconds
        os.makedirs(os.fspath(out_dir), exist_ok=True)
        bar = tqdm(total=len(todo), desc="separating", unit="file", disable=(None if progress is None else not progress))
        try:
            for group in groups:
                waves = {}
                for p in group:
                    try:
                        waves[p] = self._load(p)
                    except Exception as exc:  # noqa: BLE001
                        result.failed[p] = str(exc)
                        bar.update(1)
                if not waves:
                    continue
                try:
                    estimates = self._separate_group(list(waves.values()), mode)
                except Exception as exc:  # noqa: BLE001 - fall back to one file at a time to isolate the bad one
                    if len(waves) == 1:
                        result.failed[next(iter(waves))] = f"separation failed: {exc}"
                        bar.update(1)
                        continue
                    estimates = None
                for i, (p, wave) in enumerate(waves.items()):
                    targets = output_paths(p, out_dir, self.n_src)
                    try:
                        est = estimates[i] if estimates is not None else self.separate(wave, mode=mode)
                        self._write(est, targets)
                        result.written[p] = targets
                    except Exception as exc:  # noqa: BLE001
                        result.failed[p] = f"separation failed: {exc}"
                    bar.update(1)
        finally:
            bar.close()
        return result

    def _separate_group(self, waves: List[Tensor], mode: str) -> List[Tensor]:
        """Separate files of similar length in one batch (zero-padded to the longest), cropped back per file."""
        if len(waves) == 1:
            return [self.separate(waves[0], mode=mode)]
        longest = max(w.shape[-1] for w in waves)
        batch = torch.stack([nn.functional.pad(w, (0, longest - w.shape[-1])) for w in waves])
        est = self.separate(batch, mode=mode)
        return [e[..., : w.shape[-1]] for e, w in zip(est, waves)]
