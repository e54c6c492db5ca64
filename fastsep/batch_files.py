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
import queue
import threading
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


# ------------------------------------------------------------------------------------------------------ pipeline
# separate_files runs every group of files through three stages: read (decode, length and silence checks,
# resampling to the model's rate), compute (the models, on the calling thread, which is also where SIGINT/SIGTERM
# land) and write (resampling to the output rate, 16-bit files, the record). With overlap=True, reading and writing
# run on two threads beside the computation, joined by bounded queues: decoding the next files and writing the
# finished ones then use the cores while the models are not (torch's ops, numpy, scipy's filters and file I/O release
# the GIL). Every outcome goes through the writer's queue in the order the files are computed, so results, records,
# failures and their order are those of the sequential run (overlap=False runs the same stages one after another).
_END = object()  # the end of a queue
_INTERRUPTED = object()  # a streamed file whose computation was interrupted: its outputs are dropped, not failed


class _Crash:
    """An unexpected exception on a helper thread, carried to the calling thread to be raised there."""

    def __init__(self, exc: BaseException):
        self.exc = exc


@dataclass
class _Loaded:
    """A group as read. Short files: ``waves`` holds, per file, its mixture ``[n]`` at the model's rate (CPU) or the
    exception that makes it unusable, and ``rates`` the file's own rate. A long file: ``reader`` is open and checked,
    and the computing thread streams it through the chunker (memory bounded by a chunk, not the file)."""

    waves: List[Tuple[str, Union[torch.Tensor, Exception]]]
    rates: Dict[str, int]
    reader: Optional[AudioReader] = None
    path: Optional[str] = None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def _load(separator, group: List[str], long: bool) -> _Loaded:
    """Read one group (the read stage); unusable files become their exception, never an error of the run."""
    if long:
        path = group[0]
        try:
            reader = _open_checked(separator, path)
        except Exception as exc:  # noqa: BLE001 - the file's failure
            return _Loaded([(path, exc)], {})
        return _Loaded([], {path: reader.rate}, reader, path)
    waves: List[Tuple[str, Union[torch.Tensor, Exception]]] = []
    rates: Dict[str, int] = {}
    for path in group:
        try:
            with _open_checked(separator, path) as reader:
                # On the CPU: the chunker moves each chunk to the separator's device when it runs it.
                view = ResampledView(lambda a, b, r=reader: r.read(a, b - a), reader.frames, reader.rate,
                                     separator.sample_rate)
                waves.append((path, view[:, 0:view.shape[-1]][0]))
                rates[path] = reader.rate
        except Exception as exc:  # noqa: BLE001
            waves.append((path, exc))
    return _Loaded(waves, rates)


def _separate_short(separator, mixture: torch.Tensor, mode: str, seed: int) -> torch.Tensor:
    """``[B, n] -> [B, C, n]`` for files of one length, each shorter than a chunk (no padding anywhere)."""
    pieces = list(separator.iter_separate(mixture, mode, seed=[seed] * mixture.shape[0]))
    if len(pieces) != 1:
        raise RuntimeError("a batch of short files was split into chunks")
    return pieces[0][1]


def _compute_group(separator, loaded: _Loaded, mode: str, seed: int, output_rate, emit) -> None:
    """The compute stage of one group: separate it and ``emit`` one message per outcome for the writer, in the
    group's order. Files of a group are separated as one batch; if that fails, each is redone alone so that only the
    file that fails is reported."""
    if loaded.reader is not None:
        _compute_streamed(separator, loaded, mode, seed, output_rate, emit)
        return
    good = [(p, w) for p, w in loaded.waves if isinstance(w, torch.Tensor)]
    estimates: Dict[str, torch.Tensor] = {}
    if len(good) > 1:
        try:
            est = _separate_short(separator, torch.stack([w for _, w in good]), mode, seed)
            estimates = {p: est[b] for b, (p, _) in enumerate(good)}
        except Exception:  # noqa: BLE001 - redo one at a time below, to isolate the file that fails
            estimates = {}
    for path, wave in loaded.waves:
        if isinstance(wave, Exception):
            emit(("fail", path, wave))
            continue
        if path not in estimates:
            try:
                estimates[path] = _separate_short(separator, wave[None], mode, seed)[0]
            except Exception as exc:  # noqa: BLE001
                emit(("fail", path, exc))
                continue
        rate = _resolve_rate(output_rate, loaded.rates[path], separator.sample_rate)
        emit(("write", path, estimates.pop(path), rate))


def _compute_streamed(separator, loaded: _Loaded, mode: str, seed: int, output_rate, emit) -> None:
    """A long file, chunk by chunk: each separated piece goes to the writer as it is final."""
    path, reader = loaded.path, loaded.reader
    try:
        emit(("open", path, _resolve_rate(output_rate, reader.rate, separator.sample_rate)))
        try:
            for _, piece in separator.iter_separate(_view(reader, separator), mode, seed=[seed]):
                emit(("piece", path, piece[0]))
        except Exception as exc:  # noqa: BLE001 - the file's failure
            emit(("close", path, exc))
            return
        except BaseException:  # interrupted: drop the partial outputs, the file is simply not done
            emit(("close", path, _INTERRUPTED))
            raise
        emit(("close", path, None))
    finally:
        loaded.close()


class _Writer:
    """The write stage: turns the compute stage's messages into files, records and the run's result, in order.

    Messages: ``("write", path, estimate [C, n], rate)``, ``("fail", path, exception)``, and for a streamed file
    ``("open", path, rate)``, ``("piece", path, [C, n])``..., ``("close", path, None | exception | _INTERRUPTED)``.
    """

    def __init__(self, separator, out_dir, names: Dict[str, Optional[str]], settings: dict, result: BatchResult,
                 bar):
        self.separator, self.out_dir, self.names, self.settings = separator, out_dir, names, settings
        self.result, self.bar = result, bar
        self.sink: Union[None, _Outputs, Exception] = None

    def targets(self, path: str) -> List[str]:
        return output_paths(path, self.out_dir, self.separator.n_src, self.names[path])

    def handle(self, msg) -> None:
        kind, path = msg[0], msg[1]
        if kind == "write":
            try:
                sink = _Outputs(self.targets(path), self.separator.sample_rate, msg[3])
                sink.push(msg[2])
                scale = sink.finish()
            except Exception as exc:  # noqa: BLE001 - one file's write failure is that file's
                self.fail(path, exc)
                return
            self.done(path, scale)
        elif kind == "fail":
            self.fail(path, msg[2])
        elif kind == "open":
            try:
                self.sink = _Outputs(self.targets(path), self.separator.sample_rate, msg[2])
            except Exception as exc:  # noqa: BLE001 - reported when the file closes
                self.sink = exc
        elif kind == "piece":
            if isinstance(self.sink, _Outputs):
                try:
                    self.sink.push(msg[2])
                except Exception as exc:  # noqa: BLE001
                    self.sink.abort()
                    self.sink = exc
        elif kind == "close":
            sink, outcome, self.sink = self.sink, msg[2], None
            if outcome is not None or isinstance(sink, Exception):
                if isinstance(sink, _Outputs):
                    sink.abort()
                if outcome is not _INTERRUPTED:
                    self.fail(path, sink if isinstance(sink, Exception) else outcome)
                return
            try:
                scale = sink.finish()
            except Exception as exc:  # noqa: BLE001
                self.fail(path, exc)
                return
            self.done(path, scale)
        else:  # pragma: no cover - a programming error
            raise ValueError(f"unknown writer message {kind!r}")

    def done(self, path: str, scale: float) -> None:
        targets = self.targets(path)
        _write_record(path, self.names[path], self.out_dir, targets, self.settings, scale)
        self.result.written[path] = targets
        if scale < 1.0:
            self.result.scaled[path] = scale
        self.bar.update(1)

    def fail(self, path: str, exc: Exception) -> None:
        text = str(exc)
        self.result.failed[path] = text if isinstance(exc, AudioError) else f"separation failed: {text}"
        self.bar.update(1)

    def close(self) -> None:
        """At the end of the run: a streamed file still open was interrupted; its temporary files go."""
        if isinstance(self.sink, _Outputs):
            self.sink.abort()
        self.sink = None


def _put(q: "queue.Queue", item, alive) -> bool:
    """Put ``item`` on a bounded queue, giving up (False) when ``alive()`` turns false while it is full."""
    while True:
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            if not alive():
                return False


def _run_pipeline(jobs: List[Tuple[List[str], bool]], load, compute, writer: _Writer, overlap: bool,
                  depth: int) -> None:
    """Run every job (a group of paths, and whether it is one long file) through read -> compute -> write; see the
    notes above. Compute runs on the calling thread; a KeyboardInterrupt there stops reading, lets the writer
    finish what was computed, and is re-raised."""
    if not overlap:
        try:
            for group, long in jobs:
                compute(load(group, long), writer.handle)
        finally:
            writer.close()
        return

    stop = threading.Event()
    loaded_q: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
    # Short groups emit up to a batch of estimates, streamed files a piece per chunk: room for a few groups.
    write_q: "queue.Queue" = queue.Queue(maxsize=max(2, 4 * depth))
    crashes: List[BaseException] = []

    def read_all() -> None:
        try:
            for group, long in jobs:
                if stop.is_set():
                    return
                item = load(group, long)
                if not _put(loaded_q, item, lambda: not stop.is_set()):
                    item.close()
                    return
        except BaseException as exc:  # noqa: BLE001 - carried to the calling thread
            _put(loaded_q, _Crash(exc), lambda: not stop.is_set())
            return
        _put(loaded_q, _END, lambda: not stop.is_set())

    def write_all() -> None:
        try:
            while True:
                msg = write_q.get()
                if msg is _END:
                    return
                writer.handle(msg)
        except BaseException as exc:  # noqa: BLE001
            crashes.append(exc)
        finally:
            writer.close()

    reader_t = threading.Thread(target=read_all, name="fastsep-read", daemon=True)
    writer_t = threading.Thread(target=write_all, name="fastsep-write", daemon=True)

    def emit(msg) -> None:
        if not _put(write_q, msg, writer_t.is_alive):
            raise crashes[0] if crashes else RuntimeError("the writer thread stopped")

    reader_t.start()
    writer_t.start()
    try:
        while True:
            item = loaded_q.get()
            if item is _END:
                break
            if isinstance(item, _Crash):
                raise item.exc
            compute(item, emit)
            if crashes:
                raise crashes[0]
    finally:
        stop.set()
        _put(write_q, _END, writer_t.is_alive)  # the writer finishes what was computed, then stops
        writer_t.join()
        reader_t.join()
        while not loaded_q.empty():  # long files opened ahead and never computed
            item = loaded_q.get_nowait()
            if isinstance(item, _Loaded):
                item.close()
    if crashes:
        raise crashes[0]


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
    overlap: bool = True,
    prefetch: int = 2,
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
        overlap: decode and resample the next files, and write the finished ones, on two threads while the models
            run (same outputs, records and failures as ``overlap=False``, which does one stage after another).
        prefetch: groups of files read ahead of the computation (with overlap; bounds the memory held in queues).
    """
    from tqdm.auto import tqdm

    separator._check_mode(mode)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 1:
        raise ValueError(f"prefetch must be an int >= 1, got {prefetch!r}")
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
    jobs = [(g[i:i + batch_size], key[0] < 0) for key, g in sorted(todo.items())
            for i in range(0, len(g), batch_size)]

    total = sum(len(g) for g, _ in jobs)
    bar = tqdm(total=total, desc="separating", unit="file", disable=(None if progress is None else not progress))
    writer = _Writer(separator, out_dir, items, settings, result, bar)
    try:
        _run_pipeline(jobs, lambda group, long: _load(separator, group, long),
                      lambda loaded, emit: _compute_group(separator, loaded, mode, seed, output_rate, emit),
                      writer, bool(overlap), int(prefetch))
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
