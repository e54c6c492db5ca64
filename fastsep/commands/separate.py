"""``fastsep separate IN... -o OUT``: one WAV per talker for every input file (resumable, torchrun-aware).

Everything that can be checked before separating is checked first (output folder, device, model), each problem
reported on one line. SIGTERM stops the run after cleaning up the file in progress and prints what was done.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep separate``."""
    parser.add_argument("inputs", nargs="*", help="audio files (any format fastsep.audio reads) or folders of them; "
                                                  "with --stream: one file or pipe, - for stdin (the default)")
    parser.add_argument("-o", "--out", default=None, help="output folder: <stem>_s1.wav, <stem>_s2.wav, ...; with "
                                                          "--stream: the output file, - for stdout (the default)")
    parser.add_argument("--mode", default=None,
                        help="one of the bundle's modes (default: its first). Separate-And-Diffuse: full (B+GM+F), "
                             "xcorr (B+GM aligned and averaged), backbone (B alone); DiffSep: diffsep; priors: prior "
                             "(the bundle's guidance), prior-hybrid, prior-dsg, prior-dps")
    parser.add_argument("--model", default=None,
                        help="bundle folder of any method (default: the bundled default Separate-And-Diffuse model), or "
                             "a separator training checkpoint (OUT/last, OUT/best: backbone mode only)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda uses LOCAL_RANK)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="arithmetic of the vocoder's residual stack and F's convolutions (Separate-And-"
                             "Diffuse): auto (default) takes bfloat16 on CPUs with AMX (2-3x faster) and AMD CPUs "
                             "with AVX512-BF16 (1.5-1.9x), at the same quality, and float32 elsewhere")
    parser.add_argument("--batch-size", type=int, default=4, help="files of similar length separated together")
    parser.add_argument("--chunk", type=float, default=8.0, help="chunk length in seconds for long files")
    parser.add_argument("--match-levels", action="store_true",
                        help="match each chunk's talker levels and signs to the previous chunk's (for backbones "
                             "whose output level is not tied to the mixture)")
    parser.add_argument("--output-rate", default="input",
                        help="rate of the written files: input (default: each input's own rate), model (the "
                             "model's rate, e.g. 8000), or a number in Hz")
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling noise seed (the vocoder's in xcorr and full modes, DiffSep's, the prior "
                             "solver's), the same for every file (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo every file (by default a file is redone only when its outputs are missing or "
                             "were made with other settings: mode, model, seed, output rate)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: FASTSEP_NUM_THREADS, else the cores this process may "
                             "use divided by torchrun's local processes)")
    stream = parser.add_argument_group("streaming (--stream)")
    stream.add_argument("--stream", action="store_true",
                        help="read audio from a pipe as it arrives (WAV or raw mono PCM) and write the talkers as the "
                             "channels of one stream in the same container and rate, each block as soon as it is "
                             "final, with a fixed latency (stated on stderr)")
    stream.add_argument("--input-format", choices=["auto", "wav", "raw"], default="auto",
                        help="auto: WAV if the input starts with a RIFF header, else raw")
    stream.add_argument("--raw-rate", type=int, default=None, help="rate of raw input in Hz (default: the model's)")
    stream.add_argument("--raw-encoding", choices=["s16", "s32", "f32"], default="s16",
                        help="raw input (and output) encoding: little-endian signed 16/32-bit or 32-bit float")
    stream.add_argument("--window", type=float, default=None,
                        help="offline-equal windows of this many seconds (= the algorithmic latency; default for "
                             "xcorr/full: 2.0)")
    stream.add_argument("--hop", type=float, default=None,
                        help="seconds between windows (default: 0.05 backbone, 1.5 xcorr/full)")
    stream.add_argument("--context", type=float, default=None,
                        help="look-back windows (the default in backbone mode): seconds of past audio each window "
                             "sees before the hop it emits (default 1.9)")
    stream.add_argument("--lookahead", type=float, default=None,
                        help="look-back windows: seconds after the emitted hop each window sees; latency = hop + "
                             "lookahead (default 0.05)")


AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".sph")


def expand_inputs(inputs):
    """``(paths, names)``: files as given (named by their base name) and the audio files found recursively in
    folders (named by their path relative to the folder, so the output tree mirrors the input tree). Hidden files,
    fastsep's temporary files among them, are never inputs."""
    from ..batch_files import is_input_candidate

    paths, names = [], []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.lower().endswith(AUDIO_EXT) and is_input_candidate(f):
                        paths.append(os.path.join(root, f))
                        names.append(os.path.relpath(paths[-1], item))
        else:
            paths.append(item)
            names.append(os.path.basename(item))
    return paths, names


def _device(name: str) -> str:
    local = os.environ.get("LOCAL_RANK")
    if name == "cuda" and local is not None:  # one GPU per torchrun process
        return f"cuda:{int(local)}"
    return name


def check_device(name: str) -> str:
    """The torch device named, or ValueError saying in one line why it cannot be used here."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device name (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                             f"{'built without CUDA' if not torch.backends.cuda.is_built() else 'no visible GPU'})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda are supported")
    return name


def parse_output_rate(text: str):
    if text in ("input", "model"):
        return None if text == "input" else "model"
    try:
        rate = int(text)
    except ValueError:
        rate = 0
    if rate <= 0:
        raise ValueError(f"--output-rate must be input, model or a positive number of Hz, got {text!r}")
    return rate


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the run stops the way Ctrl-C stops it."""


def _on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


def main(args: argparse.Namespace) -> int:
    from ..batch_files import OutputFolderError, check_output_folder
    from ..separator import Separator

    def fail(text: str) -> int:
        print(f"fastsep separate: {text}", file=sys.stderr)
        return 2

    from ..threads import set_threads

    try:
        set_threads(args.threads)
    except ValueError as exc:
        return fail(str(exc))
    if args.stream:
        from .separate_stream import run_stream

        if args.mode is None:  # streaming serves Separate-And-Diffuse, whose default mode is full
            args.mode = "full"
        return run_stream(args, fail)
    if not args.inputs or args.out is None:
        return fail("needs input files and -o OUT (or --stream to read a pipe)")
    paths, names = expand_inputs(args.inputs)
    if not paths:
        return fail("no audio files found in the inputs")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        return fail(f"input not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    created = not os.path.exists(args.out)
    try:
        output_rate = parse_output_rate(str(args.output_rate))
        device = check_device(_device(args.device))
        check_output_folder(args.out)
    except (OutputFolderError, ValueError) as exc:
        return fail(str(exc))
    try:
        sep = Separator.from_pretrained(args.model, device=device, chunk_seconds=args.chunk,
                                        vocoder_precision=args.precision, combiner_precision=args.precision,
                                        match_levels=args.match_levels)
        mode = sep.default_mode if args.mode is None else args.mode
        sep._check_mode(mode)  # a mode this bundle lacks: one line naming those it has, before any work
    except (FileNotFoundError, ValueError, TypeError, OSError) as exc:
        if created:  # leave no empty folder behind a run that did nothing
            try:
                os.rmdir(args.out)
            except OSError:
                pass
        return fail(str(exc))
    rate_text = "each input's rate" if output_rate is None else (
        f"{sep.sample_rate} Hz (the model's)" if output_rate == "model" else f"{output_rate} Hz")
    seed_text = "" if mode == "backbone" else (f", vocoder seed {args.seed}" if sep.method_name ==
                                               "separate_and_diffuse" else f", sampling seed {args.seed}")
    print(f"{sep.method_name} mode {mode}{seed_text}; writing 16-bit WAV at {rate_text} to {args.out}",
          file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if hasattr(signal, "SIGTERM") else None
    try:
        result = sep.separate_files(paths, args.out, mode=mode, batch_size=args.batch_size,
                                    overwrite=args.overwrite, progress=False if args.no_progress else None,
                                    output_rate=output_rate, seed=args.seed, names=names)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        return fail(str(exc))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for path in result.removed_temps:
        print(f"fastsep separate: removed {path}, left by an interrupted earlier run", file=sys.stderr)
    for path, reason in result.failed.items():
        print(f"fastsep separate: FAILED {reason}" if path in reason else f"fastsep separate: FAILED {path}: {reason}",
              file=sys.stderr)
    for path, scale in result.scaled.items():
        print(f"fastsep separate: {path}: all talkers scaled by {scale:.3f} so that none clips", file=sys.stderr)
    summary = (f"{len(result.written)} separated, {len(result.skipped)} skipped (done before with the same "
               f"settings), {len(result.failed)} failed; outputs in {args.out}")
    if result.interrupted:
        left = len(paths) - len(result.written) - len(result.skipped) - len(result.failed)
        print(f"fastsep separate: stopped by {result.interrupted}: {summary}; {left} not done (rerun to resume)")
        return 143 if result.interrupted == "SIGTERM" else 130
    print(summary)
    return 1 if result.failed else 0
