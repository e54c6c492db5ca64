"""Separation with diffusion source priors only (issue 11): no mixture was ever seen in training.

:class:`PriorSeparation` composes one source prior per output track with the reconstruction-guided solver
(:class:`fastsep.sampling.priors.GuidedSolver`) behind the methods' one interface,
``separate(mixture [B, T], seed) -> [B, C, T]`` at the priors' sample rate::

    from fastsep.methods.priors import PriorSeparation, load_prior
    speech = load_prior("runs/prior/prior")                     # a trained prior (fastsep train prior)
    method = PriorSeparation([speech, speech])                  # two talkers of one speech prior
    tracks = method.separate(mixture, seed=0)                   # [B, T] -> [B, 2, T]

Sources of different types mix freely (a speech prior and a Gaussian noise prior separate speech from stationary
noise, i.e. enhancement), as long as the priors share one DDPM schedule.

Level: each mixture is scaled to a peak of ``peak`` (0.95, the paper's evaluation) before the solve and the tracks are
scaled back by the same gain, so results do not depend on the recording's level (the priors clamp their x0 estimates
to [-1, 1], so the level they work at matters).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling.priors import (STEP_RULES, DDPMSchedule, DiffWavePrior, GuidedSolver, NetworkPrior, SourcePrior,
                               SolverResult)
from .base import SeparationMethod

__all__ = ["PriorSeparation", "load_prior", "as_prior", "PRIOR_MODE"]

#: The Separator mode that runs the solver with the guidance step the method (bundle) was configured with; the
#: modes ``prior-hybrid``, ``prior-dsg`` and ``prior-dps`` name a step explicitly (the paper's comparison).
PRIOR_MODE = "prior"


class _PerItemSeedSolver(GuidedSolver):
    """The guided solver, also taking one seed per batch item (what the Separator passes: each item's seed is
    derived from its own seed and its chunk's index). Item i with seed ``s`` draws exactly the noise a solve of that
    item alone with ``seed=s`` draws, so an item's result never depends on its batch-mates."""

    @staticmethod
    def _generators(batch: int, seed, device) -> List[torch.Generator]:
        if seed is None or isinstance(seed, (int, np.integer)):
            return GuidedSolver._generators(batch, seed, device)
        seeds = [int(s) for s in seed]
        if len(seeds) != batch:
            raise ValueError(f"PriorSeparation: got {len(seeds)} seeds for a batch of {batch}")
        return [GuidedSolver._generators(1, s, device)[0] for s in seeds]


def as_prior(obj: Any) -> SourcePrior:
    """A :class:`SourcePrior` from a prior, a prior network (TFAttentionUNet or any ``net(x, t)`` with a schedule in
    its config), an unconditional DiffWave, or a saved model folder (see :func:`load_prior`)."""
    from ..models.diffwave import DiffWave

    if isinstance(obj, (str, os.PathLike)):
        return load_prior(obj)
    if isinstance(obj, DiffWave):
        return DiffWavePrior(obj)
    if callable(getattr(obj, "epsilon", None)) and isinstance(getattr(obj, "schedule", None), DDPMSchedule):
        return obj
    if isinstance(obj, nn.Module):
        from ..train.prior import EMAPrior

        if isinstance(obj, EMAPrior):
            return as_prior(obj.ema)
        return NetworkPrior(obj)
    raise TypeError(f"cannot use a {type(obj).__name__} as a source prior: give a SourcePrior, a prior network, an "
                    f"unconditional DiffWave or a saved prior's folder")


def _run_prior_folder(run: str) -> str:
    """The folder of a training run to load: its exported ``prior/``, else ``best/``, else ``last/``.

    A run still training has only last/ (best/ comes with the first validation, prior/ at the end), and a run resumed
    after an export trains on while its prior/ stays as it was: a prior/ older than the run's last/ is passed over
    for best/ (else last/), which hold what the run has learnt since.
    """
    found = {sub: os.path.join(run, sub, "model.json") for sub in ("prior", "best", "last")}
    found = {sub: f for sub, f in found.items() if os.path.isfile(f)}
    if not found:
        raise FileNotFoundError(f"no prior at {run}: expected model.json there, or a training run's prior/, best/ or "
                                f"last/ folder")
    if "prior" in found and "last" in found and os.path.getmtime(found["last"]) > os.path.getmtime(found["prior"]):
        del found["prior"]
    return os.path.join(run, next(iter(found)))


def load_prior(path: Union[str, "os.PathLike[str]"], map_location: str = "cpu") -> SourcePrior:
    """Load a trained prior: a folder holding ``model.json`` + ``model.safetensors`` of a TFAttentionUNet or an
    unconditional DiffWave (what ``fastsep train prior`` writes to ``<run>/prior``), the training wrapper saved in a
    run's ``best/`` or ``last/`` (its EMA weights are used), or a run folder (``<run>/prior``, else ``<run>/best``,
    else ``<run>/last``; a ``prior/`` older than ``last/`` is stale and passed over). Weights are checked against
    their recorded SHA-256 and loaded strictly; the network is put in eval mode."""
    from safetensors.torch import load_file

    from ..models.io import _sha256, load_state_dict_checked, read_model_info
    from ..train.prior import EMAPrior, _network_class

    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "model.json")):
        path = _run_prior_folder(path)
    info = read_model_info(path)
    weights = os.path.join(path, info.get("weights", "model.safetensors"))
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{path}/model.json names weights {weights}, which does not exist")
    if info.get("sha256") and _sha256(weights) != info["sha256"]:
        raise ValueError(f"{weights} does not match the SHA-256 recorded in model.json (modified after saving)")
    state = load_file(weights, device="cpu")
    if info["class"] == "EMAPrior":
        model = EMAPrior(**info["config"])
        load_state_dict_checked(model, state, source=weights)
        net = model.ema
    else:
        try:
            cls = _network_class(info["class"])
        except ValueError:
            raise ValueError(f"{path} holds a {info['class']}, not a source prior (TFAttentionUNet, an unconditional "
                             f"DiffWave, or a training run's EMAPrior)") from None
        net = cls(**info["config"])
        load_state_dict_checked(net, state, source=weights)
    net = net.to(map_location).eval()
    for p in net.parameters():
        p.requires_grad_(False)  # the solver differentiates w.r.t. the input only
    return as_prior(net)


class PriorSeparation(SeparationMethod):
    """Unsupervised separation of a mixture into one track per source prior.

    Served by :class:`fastsep.separator.Separator` in mode ``"prior"`` (the configured ``step``) and
    ``"prior-hybrid"``, ``"prior-dsg"``, ``"prior-dps"`` (a bundle: :func:`fastsep.bundle.write_priors_bundle`).

    Args:
        priors: one entry per output track: a :class:`SourcePrior`, a prior network, an unconditional DiffWave or a
            saved prior's folder. Repeat one prior for several sources of its type.
        sample_rate: the rate the mixture must be at; None takes it from the priors (an error if they disagree).
        step: the solver's guidance step, "hybrid" (the paper's), "dsg" or "dps".
        peak: each mixture is scaled to this peak before solving (None: as given).
        **solver_options: the remaining :class:`~fastsep.sampling.priors.GuidedSolver` options.
    """

    name = "priors"

    def __init__(self, priors: Sequence[Any], sample_rate: Optional[int] = None, step: str = "hybrid",
                 peak: Optional[float] = 0.95, **solver_options):
        if isinstance(priors, (str, os.PathLike)) or not isinstance(priors, Sequence) or len(priors) < 1:
            raise ValueError("PriorSeparation: give a non-empty list of priors, one per source to extract")
        resolved: List[SourcePrior] = []
        seen = {}
        for p in priors:
            key = os.fspath(p) if isinstance(p, (str, os.PathLike)) else id(p)
            if key not in seen:  # one object per distinct prior, so the solver batches its sources in one call
                seen[key] = as_prior(p)
            resolved.append(seen[key])
        rates = {getattr(p, "sample_rate", None) for p in resolved} - {None}
        if len(rates) > 1:
            raise ValueError(f"PriorSeparation: the priors were trained at different rates {sorted(rates)}")
        if sample_rate is None:
            sample_rate = rates.pop() if rates else None
        elif rates and int(sample_rate) not in rates:
            raise ValueError(f"PriorSeparation: sample_rate {sample_rate} differs from the priors' {sorted(rates)}")
        if peak is not None and not 0 < float(peak) <= 1.0:
            raise ValueError(f"PriorSeparation: peak must be in (0, 1] or None, got {peak!r}")
        self.priors = resolved
        self.sample_rate = sample_rate
        self.peak = None if peak is None else float(peak)
        self.step = step
        self.solver_options = dict(solver_options)
        self.solver = _PerItemSeedSolver(resolved, step=step, **solver_options)
        self._solvers = {step: self.solver}  # one per guidance step, made when a mode first asks for it

    @property
    def n_src(self) -> int:
        return len(self.priors)

    # ------------------------------------------------------------------------------------ the methods' interface
    @property
    def modes(self):
        return (PRIOR_MODE,) + tuple(f"{PRIOR_MODE}-{k}" for k in STEP_RULES)

    @property
    def default_modes(self):
        # The guidance comparison triples the (long) solve: scored only when asked for.
        return (PRIOR_MODE,)

    def step_of(self, mode: str) -> str:
        """The guidance step a mode runs (``prior``: the configured one)."""
        self.check_mode(mode)
        return self.step if mode == PRIOR_MODE else mode[len(PRIOR_MODE) + 1:]

    @property
    def min_samples(self) -> int:
        # A spectral prior's centred STFT reflect-pads half a frame; the solver itself takes 2 samples.
        frames = [int(getattr(getattr(p, "net", None), "n_fft", 0) or 0) for p in self.priors]
        return max([2] + [f // 2 + 1 for f in frames])

    def distinct_priors(self) -> List[SourcePrior]:
        """Each prior object once, in the order of first use."""
        return list({id(p): p for p in self.priors}.values())

    def modules(self) -> Dict[str, nn.Module]:
        return {f"prior{i}": p for i, p in enumerate(self.distinct_priors()) if isinstance(p, nn.Module)}

    def settings(self) -> Dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self.distinct_priors())}
        return {"tracks": [index[id(p)] for p in self.priors], "step": self.step, "peak": self.peak,
                "solver": dict(self.solver_options)}

    def run(self, mixture: Tensor, mode: str, seeds: Optional[Sequence[int]] = None) -> Tensor:
        """The Separator's call: ``[B, L] -> [B, C, L]`` with the mode's guidance step, item b seeded by
        ``seeds[b]`` (None: a seed drawn from torch's generator)."""
        step = self.step_of(mode)
        if step not in self._solvers:
            self._solvers[step] = _PerItemSeedSolver(self.priors, step=step, **self.solver_options)
        return self._separate(mixture, None if seeds is None else [int(s) for s in seeds], self._solvers[step],
                              False)

    def to(self, device: Union[str, torch.device]) -> "PriorSeparation":
        """Move every prior network to ``device`` (mixtures must then be on it too)."""
        for p in {id(p): p for p in self.priors}.values():
            if isinstance(p, nn.Module):
                p.to(device)
        return self

    def separate(self, mixture: Tensor, seed: Union[None, int, Sequence[int]] = 0, return_result: bool = False
                 ) -> Union[Tensor, SolverResult]:
        """Separate ``mixture [B, T]`` (or ``[T]``) into ``[B, C, T]`` (``[C, T]``) at the priors' rate.

        ``seed`` fixes the result: an int (item i of a batch draws from its own generator seeded from (seed, i), so
        its tracks do not depend on its batch-mates) or one int per item. ``return_result`` gives the solver's
        :class:`SolverResult` (per-step residuals and losses) with the sources at the mixture's level.
        """
        return self._separate(mixture, seed, self.solver, return_result)

    def _separate(self, mixture: Tensor, seed, solver: GuidedSolver, return_result: bool
                  ) -> Union[Tensor, SolverResult]:
        if not isinstance(mixture, Tensor) or not mixture.is_floating_point() or mixture.dim() not in (1, 2):
            got = f"shape {tuple(mixture.shape)} {mixture.dtype}" if isinstance(mixture, Tensor) else \
                type(mixture).__name__
            raise ValueError(f"PriorSeparation.separate: mixture must be a float tensor [batch, time] or [time], "
                             f"got {got}")
        squeeze = mixture.dim() == 1
        y = mixture.unsqueeze(0) if squeeze else mixture
        if not bool(torch.isfinite(y).all()):
            raise ValueError("PriorSeparation.separate: mixture contains NaN or infinite samples")
        y = y.float()
        if self.peak is not None:
            top = y.abs().amax(dim=-1, keepdim=True)
            gain = torch.where(top > 0, self.peak / top.clamp_min(1e-12), torch.ones_like(top))
        else:
            gain = torch.ones(y.shape[0], 1, device=y.device)
        result = solver.solve(y * gain, seed=seed)
        sources = (result.sources / gain.unsqueeze(1)).to(mixture.dtype)
        if return_result:
            result.sources = sources.squeeze(0) if squeeze else sources
            return result
        return sources.squeeze(0) if squeeze else sources


# ------------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser) -> None:
    """Options of ``fastsep bundle priors``."""
    parser.add_argument("priors", nargs="+", help="trained prior folders (`fastsep train prior` runs or their "
                                                  "prior/ folders), one per kind of source")
    parser.add_argument("-o", "--out", required=True, help="the bundle folder to write")
    parser.add_argument("--tracks", default=None,
                        help="comma-separated prior index of each output track (default: 0,0 for one prior, two "
                             "talkers; else one track per prior)")
    parser.add_argument("--noise-variance", type=float, default=None,
                        help="add a white Gaussian noise prior of this variance as the last track (enhancement)")
    parser.add_argument("--step", choices=STEP_RULES, default="hybrid",
                        help="guidance of mode 'prior' (default hybrid, the paper's); the others stay reachable "
                             "as modes prior-<step>")
    parser.add_argument("--init-step", type=int, default=None, help="noise level the solve starts from")
    parser.add_argument("--start-step", type=int, default=None, help="first reverse step run")
    parser.add_argument("--peak", type=float, default=0.95, help="peak each mixture is scaled to before solving")
    parser.add_argument("--dsg-scale", type=float, default=None,
                        help="radius factor of the DSG step (default 1.0, DSG's own; the paper's authors compared "
                             "with 0.09)")


def main(args) -> int:
    """``fastsep bundle priors PRIOR... -o OUT``: a priors bundle that ``fastsep separate/eval --model OUT`` serve."""
    import sys

    from ..bundle import write_priors_bundle
    from ..sampling.priors import GaussianPrior

    try:
        priors: List[Any] = [load_prior(p) for p in args.priors]
        tracks = None if args.tracks is None else [int(t) for t in args.tracks.split(",") if t.strip()]
        if args.noise_variance is not None:
            priors.append(GaussianPrior(args.noise_variance, priors[0].schedule))
            if tracks is None:  # one track per trained prior (one speech prior: enhancement), then the noise
                tracks = list(range(len(args.priors))) + [len(priors) - 1]
        options = {k: v for k, v in (("init_step", args.init_step), ("start_step", args.start_step),
                                     ("dsg_scale", args.dsg_scale)) if v is not None}
        path = write_priors_bundle(args.out, priors, tracks=tracks, step=args.step, peak=args.peak, **options)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"fastsep bundle priors: {exc}", file=sys.stderr)
        return 2
    print(f"priors bundle written: {path}")
    return 0
