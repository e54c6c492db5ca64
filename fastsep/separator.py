"""The user's entry point: :class:`Separator` runs Separate-And-Diffuse (or its ablations) on arrays and files.

Modes:
    ``"backbone"``: B alone, ``v_d = B(m)``.
    ``"xcorr"``: the paper's ablation without F: ``iSTFT((Vd + xcorr_align(Vd, Vg)) / 2)`` with ``v_g = GM(mel(v_d))``.
    ``"full"``: ``F(v_d, v_g)``, the combination learnt by network F.

Levels: each mixture (each chunk of a long one) is brought to a fixed RMS (``input_rms``) before the models and the
estimates are brought back to the mixture's level after, because the vocoder adds its noise at a fixed absolute
level: without this, quiet recordings came out worse than the mixture in full and xcorr modes. The estimates are
then scaled by one gain shared by all talkers, the least-squares gain that makes their sum closest to the mixture
(``mixture_consistent``), so outputs are at the mixture's level and the talkers keep the levels the model gave them
relative to each other.

Determinism: the vocoder's noise comes from generators seeded per batch item (``seed=``), so an item's result does
not depend on its batch-mates, and a chunk's seed is derived from the item's seed and the chunk's index.

Long inputs go through :mod:`fastsep.chunking` (overlapping chunks, overlap-add, talker order kept across chunks), so
memory is bounded by the chunk length, not the recording's; files are read, resampled and written in blocks too
(:mod:`fastsep.batch_files`, :mod:`fastsep.streaming`).
"""
from __future__ import annotations

import hashlib
import inspect
import math
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import ops
from .chunking import iter_separated, separate_chunked
from .dsp import StftConfig, istft, stft

__all__ = ["Separator", "BatchResult", "MODES", "DEFAULT_BUNDLE", "MIN_SECONDS", "INPUT_RMS", "output_paths"]

MODES = ("full", "xcorr", "backbone")
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


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def __getattr__(name: str):
    # Batch file processing moved to fastsep.batch_files; these names stay importable from here.
    if name in ("BatchResult", "output_paths"):
        from . import batch_files

        return getattr(batch_files, name)
    raise AttributeError(f"module 'fastsep.separator' has no attribute {name!r}")


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
            on CPUs with AVX512-BF16, waveform differences of a few 1e-3; see ``DiffWave.generate``). Passed to each
            ``vocode`` call; the vocoder object itself is left as it was given.
        device: where the models run (default: where the backbone's parameters are).
        input_rms: RMS each mixture (chunk) is scaled to before the models, undone after (None: no scaling).
        mixture_consistent: scale the talkers by the one least-squares gain that makes their sum closest to the
            mixture (False: the models' own output level).
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
        input_rms: Optional[float] = INPUT_RMS,
        mixture_consistent: bool = True,
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
        if input_rms is not None and not (isinstance(input_rms, (int, float)) and 0 < float(input_rms) < 1):
            raise ValueError(f"Separator: input_rms must be in (0, 1) or None, got {input_rms!r}")
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
        self.vocoder_precision = vocoder_precision
        self.input_rms = None if input_rms is None else float(input_rms)
        self.mixture_consistent = bool(mixture_consistent)
        vocode = getattr(vocoder, "vocode", None)
        self._vocoder_seeds = vocode is not None and _accepts(vocode, "seed")
        self._vocoder_precision_arg = vocode is not None and _accepts(vocode, "precision")
        if vocoder_precision != "float32" and vocode is not None and not self._vocoder_precision_arg:
            raise ValueError("Separator: vocoder_precision needs a vocoder whose vocode() takes precision=")
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
        # One minimum for every mode, in seconds; raised above MIN_SECONDS only for a model whose mel or STFT frame
        # needs more (full mode's mel needs more than half its n_fft = 4 hops).
        hop = getattr(vocoder, "hop_length", None)
        need = max(self.stft_cfg.n_fft // 2 + 1, 2 * int(hop) + 1 if isinstance(hop, (int, np.integer)) else 0)
        self.min_seconds = max(MIN_SECONDS, need / self.sample_rate)
        self._fingerprint: Optional[str] = None

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
        sep = cls(parts["backbone"], parts["vocoder"], parts["combiner"], sample_rate=parts["sample_rate"],
                  n_src=parts["n_src"], device=device, **kwargs)
        sep._bundle_dir = directory
        return sep

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

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the models' weights and the settings that change the output: what resuming
        compares to tell whether existing outputs were made by this separator."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, model in (("backbone", self.backbone), ("vocoder", self.vocoder), ("combiner", self.combiner)):
                h.update(name.encode())
                if isinstance(model, nn.Module):
                    for key, value in sorted(model.state_dict().items()):
                        h.update(key.encode())
                        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
                elif model is not None:
                    h.update(type(model).__qualname__.encode())
            settings = (self.sample_rate, self.n_src, self.chunk, self.overlap, self.match_levels,
                        self.vocoder_precision, self.input_rms, self.mixture_consistent)
            h.update(repr(settings).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def _vocode(self, vd: Tensor, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """GM's estimates ``[B, C, L]``; item b's noise is drawn from ``seeds[b]`` alone (one vocode call per item,
        so that no item's noise depends on its position in the batch)."""
        batch, n_src, length = vd.shape
        kwargs = {"precision": self.vocoder_precision} if self._vocoder_precision_arg else {}
        if seeds is not None and self._vocoder_seeds:
            vg = torch.cat([self.vocoder.vocode(vd[b], seed=int(seeds[b]), **kwargs) for b in range(batch)])
        elif self.device.type == "cpu" and batch > 1:
            # One item per call on CPU, as F in _run: the sampler's per-layer state of a stacked batch outgrows the
            # caches. (Without seeds the noise comes from torch's generator either way.)
            vg = torch.cat([self.vocoder.vocode(vd[b], **kwargs) for b in range(batch)])
        else:
            vg = self.vocoder.vocode(vd.reshape(batch * n_src, length), **kwargs)
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

    def _run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """One forward pass of the models over ``[B, L]``; returns ``[B, C, L]`` at the models' own level."""
        vd = self.backbone(mixture)
        if vd.dim() != 3 or vd.shape[0] != mixture.shape[0] or vd.shape[-1] != mixture.shape[-1]:
            raise ValueError(f"the backbone returned shape {tuple(vd.shape)} for input {tuple(mixture.shape)}; "
                             f"expected [B, C, T]")
        if mode == "backbone":
            return vd
        vg = self._vocode(vd, seeds)
        if mode == "xcorr":
            return self._xcorr(vd, vg)
        if self.device.type == "cpu" and vd.shape[0] > 1:
            # One batch item per call on CPU: F's activations ([C, 64, 257 bins, frames], ~33 MB per item of 4 s at
            # 8 kHz) outgrow the caches when items are stacked, and a batch of 8 in one call cost 1.48x the CPU time
            # per second of audio of 8 calls of one item (measured on the bundled default). GPUs want the batch.
            return torch.cat([self.combiner(vd[b:b + 1], vg[b:b + 1]) for b in range(vd.shape[0])])
        return self.combiner(vd, vg)

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
    def iter_separate(self, mixture, mode: str = "full", seed=None, progress: bool = False
                      ) -> Iterator[Tuple[int, Tensor]]:
        """Yield ``(start, piece [B, C, n])`` in order; ``mixture`` is ``[B, T]`` at the model's rate, a tensor or
        any object the chunker can slice (e.g. :class:`fastsep.streaming.ResampledView`, which reads a file)."""
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
    def separate(self, mixture, mode: str = "full", sample_rate: Optional[int] = None, progress: bool = False,
                 seed=None, output_rate: Optional[int] = None):
        """Separate ``mixture`` (``[T]`` or ``[B, T]``, torch tensor or numpy array; integer PCM is scaled to
        [-1, 1) as :func:`fastsep.audio.load` does).

        Args:
            sample_rate: the mixture's rate (default: the model's); another rate is resampled to the model's.
            output_rate: rate of the returned estimates (default: ``sample_rate``, i.e. the input's).
            seed: vocoder noise seed (modes xcorr and full): an int used by every batch item, or one int per item;
                item b's result depends only on its own mixture and seed. None draws one from torch's generator.

        Returns:
            ``[C, T']`` or ``[B, C, T']`` at ``output_rate``, at the mixture's level (see the module's notes): a numpy
            float32 array for numpy input, else a tensor on the input's device.

        Raises:
            ValueError: inputs shorter than :attr:`min_seconds`, silent, NaN/inf, or of the wrong shape.
        """
        from .dsp import resample

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
               hop_seconds: Optional[float] = None, seed: int = 0, threads: Optional[int] = None):
        """A :class:`fastsep.stream_separate.SeparationStream`: push audio blocks at the model's rate, get the
        separated talkers back ``window_seconds`` later (the stated, fixed algorithmic latency; defaults per mode:
        backbone 0.1 s windows every 0.05 s, xcorr and full 2 s every 1.5 s), talker order kept across windows.
        The output equals offline chunked separation with ``chunk_seconds=window_seconds`` and
        ``overlap_seconds=window_seconds - hop_seconds``.

        ``stream = sep.stream("backbone"); for block in source: play(stream.push(block)); play(stream.finish())``
        """
        from .stream_separate import SeparationStream

        return SeparationStream(self, mode, window_seconds, hop_seconds, seed, threads)

    # ------------------------------------------------------------------------------------------------ files
    def separate_file(self, path, out_dir, mode: str = "full", overwrite: bool = True, output_rate=None,
                      seed: int = 0) -> List[str]:
        """Separate one audio file into ``<out_dir>/<stem>_s1.wav``, ... (see :func:`fastsep.batch_files.
        separate_file`); returns the written paths. Raises :class:`fastsep.audio.AudioError` for an unusable file."""
        from .batch_files import separate_file

        return separate_file(self, path, out_dir, mode=mode, overwrite=overwrite, output_rate=output_rate,
                             seed=seed)

    def separate_files(self, paths: Iterable, out_dir, mode: str = "full", **kwargs):
        """Separate many files, resumably; see :func:`fastsep.batch_files.separate_files` for the options."""
        from .batch_files import separate_files

        return separate_files(self, paths, out_dir, mode=mode, **kwargs)
