"""Command-line options of the shared training loop, for every ``fastsep train <model>`` command.

Each trainer adds its own data and model options, then these, with its own defaults, and turns the parsed options
into a :class:`~fastsep.train.loop.TrainConfig` with :func:`config_from_args`.
"""
from __future__ import annotations

import argparse
import sys

# What a train command turns into "error: ..." and exit status 2: bad options, data or files (a bug elsewhere still
# shows its traceback).
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError)

__all__ = ["add_loop_arguments", "add_pairing_argument", "config_from_args", "format_metrics",
           "pairing_from_args", "USAGE_ERRORS", "report_usage_error"]


def add_pairing_argument(parser: argparse.ArgumentParser) -> None:
    """``--mix-within-corpus P``: how the talkers of a training mixture are paired when corpora are pooled."""
    parser.add_argument("--mix-within-corpus", type=float, default=0.0, metavar="P",
                        help="with several --data corpora: probability that a training mixture's talkers all come "
                             "from one corpus (one recording channel, as in a real recording) instead of the "
                             "whole pool (default 0: the pool)")
    parser.add_argument("--pair-by", choices=("corpus", "channel"), default="corpus",
                        help="what one group is for --mix-within-corpus: a --data corpus (default), or one recording "
                             "channel inside a corpus (its synthesiser, Debian package or dubbing, from its "
                             "corpus.json; see fastsep.data.channels), which also applies to a single corpus")
    parser.add_argument("--data-weights", type=float, nargs="+", default=None, metavar="W",
                        help="one factor per --data corpus scaling its share of the training mixtures (default: "
                             "every corpus in proportion to its speech; 4 gives a corpus four times that share)")
    parser.add_argument("--similar-pairs", type=float, default=0.0, metavar="P",
                        help="probability that a training mixture's other talkers are drawn by how alike they sound "
                             "to its first (hard pairs, as in real same-gender recordings; needs --voice-encoder; "
                             "default 0: at random)")
    parser.add_argument("--voice-encoder", default=None, metavar="DIR",
                        help="speaker encoder for --similar-pairs (and train separator's --speaker-loss): a folder "
                             "written by `fastsep import-encoder`")
    parser.add_argument("--similarity-temperature", type=float, default=0.1, metavar="T",
                        help="for --similar-pairs: a talker 0.1 more alike in cosine is drawn exp(0.1 / T) times "
                             "as often (default 0.1)")


def pairing_from_args(args: argparse.Namespace) -> dict:
    """The checked pairing options as ``open_mixture_dataset`` keywords (``within_corpus``, ``pair_by``,
    ``corpus_weights``)."""
    p = float(args.mix_within_corpus)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"--mix-within-corpus must lie in [0, 1], got {args.mix_within_corpus}")
    if args.pair_by != "corpus" and p == 0:
        raise ValueError(f"--pair-by {args.pair_by} takes effect only with --mix-within-corpus P > 0")
    weights = getattr(args, "data_weights", None)
    if weights is not None:
        data = args.data if isinstance(args.data, (list, tuple)) else [args.data]
        if len(weights) != len(data):
            raise ValueError(f"--data-weights takes one weight per --data corpus: {len(weights)} for {len(data)}")
        if any(not (w > 0) for w in weights):
            raise ValueError(f"--data-weights must be positive, got {weights}")
        if len(data) < 2:
            raise ValueError("--data-weights applies to several pooled --data corpora")
    similar = float(getattr(args, "similar_pairs", 0.0) or 0.0)
    if not 0.0 <= similar <= 1.0:
        raise ValueError(f"--similar-pairs must lie in [0, 1], got {similar}")
    if similar > 0 and not getattr(args, "voice_encoder", None):
        raise ValueError("--similar-pairs needs --voice-encoder DIR (fastsep import-encoder -o DIR)")
    temperature = float(getattr(args, "similarity_temperature", 0.1))
    if not temperature > 0:
        raise ValueError(f"--similarity-temperature must be positive, got {temperature}")
    out = {"within_corpus": p, "pair_by": args.pair_by, "corpus_weights": weights}
    if similar > 0:
        out.update(similar_pairs=similar, voice_encoder=args.voice_encoder, similarity_temperature=temperature)
    return out


def add_loop_arguments(parser: argparse.ArgumentParser, *, batch_size: int, lr: float, grad_clip: float,
                       epochs: int = 100, early_stop: int = 10) -> None:
    """Options every loop run takes: schedule, stopping, checkpoints, device, workers, seed, AMP, progress."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--grad-clip", type=float, default=grad_clip,
                        help=f"maximum gradient norm (0 disables; default {grad_clip:g})")
    parser.add_argument("--patience", type=int, default=3, help="epochs without improvement before halving the lr")
    parser.add_argument("--early-stop", type=int, default=early_stop,
                        help="epochs without improvement before stopping (0 disables)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many batches in all")
    parser.add_argument("--max-cpu-minutes", type=_non_negative_float, default=None,
                        help="stop once the training process has used this much CPU time (all its threads, summed "
                             "across resumes; data workers not counted): an equal budget for models that cost "
                             "differently per step")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="also checkpoint every N steps")
    parser.add_argument("--keep-every", type=int, default=0,
                        help="also keep the model of every N-th step as OUT/steps/<step> (0: none)")
    parser.add_argument("--reset-monitor", action="store_true",
                        help="on resume, forget the best validation score so far (after changing --data: the "
                             "validation split changed with it); the learning rate stays")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast on CPU. Measure before using it: on the 2-core AVX512-BF16/AMX "
                             "development CPU it is slower than float32 for the default backbone (~0.3x) and for "
                             "the attention prior (BENCHMARKS.md, benchmarks/bench_training.py)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a non-negative finite number, got {text!r}")
    return value


def config_from_args(args: argparse.Namespace, *, monitor: str, monitor_mode: str):
    """The TrainConfig of options added by :func:`add_loop_arguments` (plus ``--out``)."""
    from .loop import TrainConfig

    return TrainConfig(out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       grad_clip=args.grad_clip or None, monitor=monitor, monitor_mode=monitor_mode,
                       patience=args.patience, early_stop_patience=args.early_stop, amp=not args.no_amp,
                       cpu_bf16=bool(getattr(args, "bf16", False)),
                       num_workers=args.num_workers, seed=args.seed, max_steps=args.max_steps,
                       max_cpu_seconds=None if getattr(args, "max_cpu_minutes", None) is None
                       else 60.0 * args.max_cpu_minutes, device=args.device,
                       progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                       keep_every=args.keep_every, reset_monitor=bool(getattr(args, "reset_monitor", False)))


def format_metrics(metrics) -> str:
    """A finished run's metrics for its one closing line: sorted by name, floats to 4 significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items()))


def report_usage_error(command: str, exc: BaseException) -> int:
    """Print ``fastsep train <command>: error: <exc>`` on stderr; returns the exit status 2."""
    print(f"fastsep train {command}: error: {exc}", file=sys.stderr)
    return 2
