"""``fastsep separate IN... -o OUT``: one WAV per talker for every input file (resumable, torchrun-aware)."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep separate``."""
    parser.add_argument("inputs", nargs="+", help="audio files (any format fastsep.audio reads) or folders of them")
    parser.add_argument("-o", "--out", required=True, help="output folder: <stem>_s1.wav, <stem>_s2.wav, ...")
    parser.add_argument("--mode", choices=["full", "xcorr", "backbone"], default="full",
                        help="full: B+GM+F (default); xcorr: B+GM aligned and averaged; backbone: B alone")
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda uses LOCAL_RANK)")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="vocoder sampling precision; bfloat16 is faster on CPUs with AVX512-BF16")
    parser.add_argument("--batch-size", type=int, default=4, help="files of similar length separated together")
    parser.add_argument("--chunk", type=float, default=8.0, help="chunk length in seconds for long files")
    parser.add_argument("--match-levels", action="store_true",
                        help="match each chunk's talker levels and signs to the previous chunk's (for backbones "
                             "whose output level is not tied to the mixture)")
    parser.add_argument("--overwrite", action="store_true", help="redo files whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".sph")


def expand_inputs(inputs):
    """Files as given, folders replaced by the audio files inside them (recursively, sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in os.walk(item):
                paths += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(AUDIO_EXT)]
        else:
            paths.append(item)
    return paths


def _device(name: str) -> str:
    local = os.environ.get("LOCAL_RANK")
    if name == "cuda" and local is not None:  # one GPU per torchrun process
        return f"cuda:{int(local)}"
    return name


def main(args: argparse.Namespace) -> int:
    from ..separator import Separator

    paths = expand_inputs(args.inputs)
    if not paths:
        print("fastsep separate: no audio files found in the inputs", file=sys.stderr)
        return 2
    try:
        sep = Separator.from_pretrained(args.model, device=_device(args.device), chunk_seconds=args.chunk, vocoder_precision=args.precision,
                                        match_levels=args.match_levels)
        result = sep.separate_files(paths, args.out, mode=args.mode, batch_size=args.batch_size,
                                    overwrite=args.overwrite, progress=False if args.no_progress else None)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"fastsep separate: {exc}", file=sys.stderr)
        return 2
    for path, reason in result.failed.items():
        print(f"fastsep separate: FAILED {reason}" if path in reason else f"fastsep separate: FAILED {path}: {reason}",
              file=sys.stderr)
    print(f"{len(result.written)} separated, {len(result.skipped)} skipped (outputs existed), "
          f"{len(result.failed)} failed; outputs in {args.out}")
    return 1 if result.failed else 0
