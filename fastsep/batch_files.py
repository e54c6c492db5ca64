"""Separating files: one WAV per talker for each input, resumable, shardable across ranks, failure-isolated.

What a run does, in order:

* checks that the output folder can be created and written before anything is separated;
* removes temporary files that writers killed mid-write (SIGKILL) left in the output folder (live writers' files,
  e.g. another rank's, are kept: see :mod:`fastsep.fileio`);
* keeps this rank's share of the (de-duplicated, sorted) inputs: rank r of world_size takes every world_size-th;
* skips an input when its outputs and its record (``<stem>.fastsep.json``: mode, model fingerprint, seed, output
  rate, the input's size and modification time) exist and the record matches this run; otherwise redoes it;
* batches only files of exactly the same length and rate, so no file is padded and a file's result does not depend
  on its batch-mates (backbones with global layer norm would see the padding); longer files go one by one through
  the chunked path, read, resampled and written in blocks, so memory does not grow with a file's length;
* writes each talker at the output rate (default: the input's) as 16-bit PCM. Estimates are tied to the mixture's
  level (see :class:`fastsep.separator.Separator`); when a talker would clip, all talkers of that file are scaled
  down by the same factor, which is recorded in the result and the record.

Output names mirror the inputs' relative names (``names``): ``spkA/001.wav`` -> ``<out>/spkA/001_s1.wav``.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import __version__
from .audio import AudioError, AudioReader, WavWriter
from .fileio import TEMP_PREFIX, atomic_output, atomic_write_json, remove_stale_temps, temp_path
from .streaming import ResampledView, StreamResampler

__all__ = ["BatchResult", "OutputFolderError", "output_paths", "record_path", "check_output_folder", "separate_file",
           "separate_files", "RECORD_SUFFIX"]

RECORD_SUFFIX = ".fastsep.json"
_BLOCK = 1 << 18  # samples per block when scanning or converting files


@dataclass
class BatchResult:
    """Outcome of :func:`separate_files`.

    Attributes:
        written: input -> output paths written by this run.
        skipped: inputs whose outputs were already made by the same settings.
        failed: input -> reason.
        scaled: input -> the factor (< 1) all its talkers were scaled by so that none clips.
        removed_temps: leftover temporary files of dead writers that were removed.
        interrupted: why the run stopped early (e.g. "SIGTERM"), else None.
    """

    written: Dict[str, List[str]] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    scaled: Dict[str, float] = field(default_factory=dict)
    removed_temps: List[str] = field(default_factory=list)
    interrupted: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.interrupted is None


class OutputFolderError(ValueError):
    """The output folder cannot be created or written."""


def _stem(path, name: Optional[str]) -> str:
    rel = os.path.basename(os.fspath(path)) if name is None else os.path.normpath(name)
    if os.path.isabs(rel) or rel.startswith(".." + os.sep) or rel == "..":
        raise ValueError(f"output name {name!r} must be a relative path inside the output folder")
    return os.path.splitext(rel)[0]


def output_paths(path, out_dir, n_src: int, name: Optional[str] = None) -> List[str]:
    """Where the talkers of ``path`` are written: ``<out_dir>/<name without extension>_s1.wav``, ...; ``name`` is
    the input's name relative to the folder it was found in (default: its base name)."""
    stem = _stem(path, name)
    return [os.path.join(os.fspath(out_dir), f"{stem}_s{i + 1}.wav") for i in range(n_src)]


def record_path(path, out_dir, name: Optional[str] = None) -> str:
    """The JSON record saying what produced the outputs of ``path``."""
    return os.path.join(os.fspath(out_dir), _stem(path, name) + RECORD_SUFFIX)


def check_output_folder(out_dir) -> None:
    """Create ``out_dir`` if needed and check that files can be created in it; raises :class:`OutputFolderError`
    with one line naming the folder and the reason."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputFolderError(f"output folder {out_dir} exists and is not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    try:
        os.unlink(temp_path(out_dir, ".probe"))
    except OSError as exc:
        raise OutputFolderError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None


def _resolve_rate(output_rate, input_rate: int, model_rate: int) -> int:
    if output_rate is None or output_rate == "input":
        return int(input_rate)
    if output_rate == "model":
        return int(model_rate)
    if isinstance(output_rate, (int, np.integer)) and not isinstance(output_rate, bool) and output_rate > 0:
        return int(output_rate)
    raise ValueError(f"output_rate must be a positive int, 'input' or 'model', got {output_rate!r}")


def _settings(separator, mode: str, seed: int, output_rate) -> dict:
    return {"mode": mode, "model": separator.fingerprint(), "seed": int(seed),
            "output_rate": "input" if output_rate is None else output_rate, "n_src": separator.n_src}


def _signature(path: str) -> dict:
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _done(path: str, targets: List[str], record: str, settings: dict) -> bool:
    """Whether existing outputs were made from this very input by the same settings."""
    import json

    if not all(os.path.isfile(t) for t in targets) or not os.path.isfile(record):
        return False
    try:
        with open(record, "r", encoding="utf-8") as fh:
            done = json.load(fh)
        return done.get("settings") == settings and done.get("input") == _signature(path)
    except (OSError, ValueError):
        return False


class _Outputs:
    """The talkers of one file on their way to disk: resampled to the output rate as pieces arrive, kept as float
    in temporary files (so a loud talker is not clipped before the file's peak is known), then written as 16-bit
    PCM, all scaled by one factor if any would clip."""

    def __init__(self, targets: List[str], model_rate: int, out_rate: int):
        self.targets, self.out_rate = targets, out_rate
        folder = os.path.dirname(os.path.abspath(targets[0]))
        os.makedirs(folder, exist_ok=True)
        self.resamplers = [StreamResampler(model_rate, out_rate) for _ in targets]
        self.writers: List[WavWriter] = []
        try:
            for _ in targets:
                self.writers.append(WavWriter(temp_path(folder, ".f32.wav"), out_rate, "FLOAT"))
        except BaseException:
            self.abort()
            raise

    def push(self, piece: torch.Tensor) -> None:
        """``piece [C, n]`` at the model's rate."""
        for c, (res, writer) in enumerate(zip(self.resamplers, self.writers)):
            writer.write(res.push(piece[c].float().cpu()))

    def finish(self) -> float:
        """Write the final files; returns the factor applied to all talkers (1.0 unless they would clip)."""
        for res, writer in zip(self.resamplers, self.writers):
            writer.write(res.finish())
            writer.close()
        peak = max(w.peak for w in self.writers)
        scale = 1.0 if peak <= 1.0 else 1.0 / peak
        try:
            for writer, target in zip(self.writers, self.targets):
                # Plain reads, not a memmap: touched pages of a mapping count as the process's memory, which
                # then grew with the file's length (230 MB per talker for an hour at 16 kHz).
                with open(writer.path, "rb") as src, atomic_output(target, ".wav") as tmp, \
                        WavWriter(tmp, self.out_rate, "PCM_16") as out:
                    src.seek(writer.data_offset)
                    for a in range(0, writer.frames, _BLOCK):
                        out.write(np.fromfile(src, dtype="<f4", count=min(_BLOCK, writer.frames - a)) * scale)
        finally:
            self.abort()
        return scale

    def abort(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(writer.path)
        self.writers = []


def _open_checked(separator, path: str) -> AudioReader:
    """A reader for ``path``, after checks that need no separation: length and silence (one blocked pass)."""
    reader = AudioReader(path)
    try:
        seconds = reader.frames / reader.rate
        if seconds < separator.min_seconds:
            raise AudioError(path, f"{seconds:.4f} s long; the shortest input fastsep separates is "
                                   f"{separator.min_seconds:g} s")
        if all(not np.any(reader.read(a, _BLOCK)) for a in range(0, reader.frames, _BLOCK)):
            raise AudioError(path, "file is silent (all samples zero): there is nothing to separate")
    except BaseException:
        reader.close()
        raise
    return reader


def _view(reader: AudioReader, separator) -> ResampledView:
    """The file at the model's rate, computed block by block as the chunker asks for it."""
    return ResampledView(lambda a, b: reader.read(a, b - a), reader.frames, reader.rate, separator.sample_rate,
                         separator.device)


def _separate_streamed(separator, path: str, targets: List[str], mode: str, seed: int, output_rate) -> float:
    """One file through the chunked path, in blocks from reading to writing; returns the anti-clipping factor."""
    with _open_checked(separator, path) as reader:
        view = _view(reader, separator)
        sink = _Outputs(targets, separator.sample_rate, _resolve_rate(output_rate, reader.rate, separator.sample_rate))
        try:
            for _, piece in separator.iter_separate(view, mode, seed=[seed]):
                sink.push(piece[0])
        except BaseException:
            sink.abort()
            raise
        return sink.finish()


def _separate_batch(separator, group: List[Tuple[str, List[str]]], mode: str, seed: int, output_rate
                    ) -> List[Union[float, Exception]]:
    """Files of identical length and rate, each shorter than a chunk, as one batch (no padding anywhere)."""
    waves, rate = [], None
    for path, _ in group:
        with _open_checked(separator, path) as reader:
            view = _view(reader, separator)
            waves.append(view[:, 0:view.shape[-1]][0])
            rate = reader.rate
    mixture = torch.stack(waves)
    pieces = list(separator.iter_separate(mixture, mode, seed=[seed] * len(group)))
    if len(pieces) != 1:
        raise RuntimeError("a batch of short files was split into chunks")
    out_rate = _resolve_rate(output_rate, rate, separator.sample_rate)
    scales: List[Union[float, Exception]] = []
    for b, (_, targets) in enumerate(group):
        try:
            sink = _Outputs(targets, separator.sample_rate, out_rate)
            sink.push(pieces[0][1][b])
            scales.append(sink.finish())
        except Exception as exc:  # noqa: BLE001 - one file's write failure is that file's
            scales.append(exc)
    return scales


def _write_record(path: str, name: Optional[str], out_dir, targets: List[str], settings: dict, scale: float) -> None:
    record = record_path(path, out_dir, name)
    atomic_write_json(record, {
        "fastsep": __version__,
        "input": _signature(path),
        "input_name": name if name is not None else os.path.basename(path),
        "settings": settings,
        "outputs": [os.path.relpath(t, os.path.dirname(record)) for t in targets],
        "clip_scale": scale,
    })


def separate_file(separator, path, out_dir, mode: str = "full", overwrite: bool = True, output_rate=None,
                  seed: int = 0, name: Optional[str] = None) -> List[str]:
    """Separate one file into ``<out_dir>/<stem>_s1.wav``, ... (see the module's notes); returns the paths.

    Raises :class:`fastsep.audio.AudioError` for an unusable file; nothing is written in that case.
    """
    separator._check_mode(mode)
    path = os.fspath(path)
    targets = output_paths(path, out_dir, separator.n_src, name)
    settings = _settings(separator, mode, seed, output_rate)
    if not overwrite and _done(path, targets, record_path(path, out_dir, name), settings):
        return targets
    check_output_folder(out_dir)
    scale = _separate_streamed(separator, path, targets, mode, seed, output_rate)
    _write_record(path, name, out_dir, targets, settings, scale)
    return targets


def separate_files(
    separator,
    paths: Sequence,
    out_dir,
    mode: str = "full",
    batch_size: int = 4,
    overwrite: bool = False,
    progress: Optional[bool] = None,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    output_rate=None,
    seed: int = 0,
    names: Optional[Sequence[str]] = None,
) -> BatchResult:
    """Separate many files (see the module's notes).

    Args:
        separator: a :class:`fastsep.separator.Separator`.
        paths: input files; ``names``: their names relative to the folder they were found in, mirrored under
            ``out_dir`` (default: base names, which must then be distinct).
        batch_size: at most this many files of identical length are separated together.
        overwrite: redo every file, even those whose outputs match this run.
        progress: a progress bar on stderr; None shows it on a terminal only.
        rank, world_size: this process's share (default: ``RANK``/``WORLD_SIZE`` from torchrun, else all).
        output_rate: rate of the written files: None or "input" (each input's own), "model", or an int.
        seed: vocoder noise seed of every file (modes xcorr and full), recorded with the outputs.
    """
    from tqdm.auto import tqdm

    separator._check_mode(mode)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    _resolve_rate(output_rate, 1, 1)  # validates before any work
    paths = [os.fspath(p) for p in paths]
    names = [None] * len(paths) if names is None else [os.fspath(n) for n in names]
    if len(names) != len(paths):
        raise ValueError(f"names must give one name per path ({len(paths)}), got {len(names)}")
    owner: Dict[str, str] = {}
    items: Dict[str, Optional[str]] = {}
    for p, n in zip(paths, names):
        if p in items:  # the same file listed twice
            continue
        stem = _stem(p, n)
        if stem in owner:
            raise ValueError(f"{owner[stem]} and {p} would write the same outputs ({stem}_s1.wav, ...) in "
                             f"{out_dir}; give them distinct names or separate them into different folders")
        owner[stem] = p
        items[p] = n
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")

    check_output_folder(out_dir)
    result = BatchResult(removed_temps=remove_stale_temps(out_dir))
    settings = _settings(separator, mode, seed, output_rate)
    mine = sorted(items, key=lambda p: (_stem(p, items[p]), p))[rank::world_size]
    todo: Dict[Tuple[int, int], List[str]] = {}  # (frames, rate) -> short files; long files get their own key
    for p in mine:
        targets = output_paths(p, out_dir, separator.n_src, items[p])
        if not overwrite and _done(p, targets, record_path(p, out_dir, items[p]), settings):
            result.skipped.append(p)
            continue
        try:
            reader = AudioReader(p)
            frames, rate = reader.frames, reader.rate
            reader.close()
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal
            result.failed[p] = str(exc)
            continue
        short = frames * separator.sample_rate <= separator.chunk * rate
        todo.setdefault((frames, rate) if short else (-len(todo) - 1, rate), []).append(p)
    groups = [g[i:i + batch_size] for _, g in sorted(todo.items()) for i in range(0, len(g), batch_size)]

    def record(p: str, scale: float) -> None:
        targets = output_paths(p, out_dir, separator.n_src, items[p])
        _write_record(p, items[p], out_dir, targets, settings, scale)
        result.written[p] = targets
        if scale < 1.0:
            result.scaled[p] = scale

    total = sum(len(g) for g in groups)
    bar = tqdm(total=total, desc="separating", unit="file", disable=(None if progress is None else not progress))
    try:
        for group in groups:
            outcomes: Dict[str, Union[float, Exception]] = {}
            if len(group) > 1:
                try:
                    batch = [(p, output_paths(p, out_dir, separator.n_src, items[p])) for p in group]
                    outcomes = dict(zip(group, _separate_batch(separator, batch, mode, seed, output_rate)))
                except Exception:  # noqa: BLE001 - redo one at a time below, to isolate the bad file
                    outcomes = {}
            for p in group:
                if p not in outcomes:
                    try:
                        outcomes[p] = _separate_streamed(separator, p, output_paths(p, out_dir, separator.n_src,
                                                                                    items[p]), mode, seed, output_rate)
                    except Exception as exc:  # noqa: BLE001
                        outcomes[p] = exc
                outcome = outcomes[p]
                if isinstance(outcome, Exception):
                    text = str(outcome)
                    result.failed[p] = text if isinstance(outcome, AudioError) else f"separation failed: {text}"
                else:
                    record(p, outcome)
                bar.update(1)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM turned into one by the CLI: stop and report
        result.interrupted = str(exc) or "interrupted"
    finally:
        bar.close()
    return result


# Temporary names are never inputs: the CLI's folder scan and any caller can use this to filter.
def is_input_candidate(name: str) -> bool:
    """Whether a file name found in an input folder may be an input (not hidden, not a temporary file)."""
    base = os.path.basename(name)
    return not base.startswith(".") and not base.startswith(TEMP_PREFIX)
