"""``fastsep train diffsep``: train DiffSep's score network (Scheibler et al., section 3.2) on the shared loop.

Each training item is scaled by its mixture's standard deviation (sources by the same factor, so they still sum to
the mixture; the authors' code normalises the same way), its sources are put in a fixed order (by increasing power,
the authors' released setting, or as given for enhancement), and then, per item:

- with probability ``1 - p_T``: t ~ U(t_eps, T), x_t = mu_t + L_t z, and the weighted score-matching loss (eq. 17)
  ``mean (L_t q(x_t, t, y) + z)^2``;
- with probability ``p_T``: t = T, x = sbar + L_T z (what the sampler starts from, eq. 14), and the mismatch-aware
  PIT loss ``min_pi mean (L_T q + z + L_T^{-1}(sbar - mu_T(pi)))^2``, which teaches the network both the gap between
  mu_T and sbar and which source order to pick. The correction ``L_T^{-1}(sbar - mu_T(pi))`` has rows that depend on
  one source each, so the minimum over permutations is a linear assignment on a K x K cost matrix: one network call
  per item whatever K (every permutation up to 6 sources, the Hungarian algorithm beyond). For enhancement the order
  is fixed (speech, noise) and the minimum is dropped.

The model carries an exponential moving average of its weights (``NCSNpp(ema_decay=...)``), updated after every
optimizer step through the loop's ``on_step`` hook and saved with it; validation and inference use the average.
Validation reports the score-matching loss at seeded times and noise (``loss``) and, on the first
``valid_sample_items`` mixtures, the SI-SDR(i) of sampled separations (``si_sdr``, ``si_sdri``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
from typing import Any, Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from .options import USAGE_ERRORS, add_loop_arguments, config_from_args, report_usage_error

__all__ = ["DiffSepTask", "normalize", "order_sources", "best_assignment", "mismatch_pit_loss", "add_arguments",
           "main", "PAPER_DEFAULTS"]

#: The paper's hyper-parameters (section 4.3); p_T differs between separation and enhancement.
PAPER_DEFAULTS = dict(gamma=2.0, sigma_min=0.05, sigma_max=0.5, p_T_separation=0.1, p_T_enhancement=0.03,
                      ema_decay=0.999, lr_separation=5e-4, lr_enhancement=1e-4, t_eps=0.03)

_EXHAUSTIVE_MAX = 6


def normalize(mixture: Tensor, sources: Optional[Tensor] = None, eps: float = 1e-5):
    """``(mixture / std, sources / std, std [B, 1])``: every mixture at unit standard deviation.

    Only a scale (no mean removal), so the sources keep summing to the mixture.
    """
    std = mixture.std(dim=-1, keepdim=True).clamp_min(eps)
    return mixture / std, (None if sources is None else sources / std.unsqueeze(1)), std


def order_sources(sources: Tensor, order: str) -> Tensor:
    """Sources ``[B, K, T]`` reordered per item: ``"power"`` (quietest first), ``"given"`` (unchanged)."""
    if order == "given":
        return sources
    if order != "power":
        raise ValueError(f"source order must be 'power' or 'given', got {order!r}")
    idx = sources.pow(2).mean(-1).argsort(dim=1)
    return torch.gather(sources, 1, idx.unsqueeze(-1).expand_as(sources))


def best_assignment(cost: Tensor) -> Tensor:
    """``perm [B, K]`` minimising ``sum_k cost[b, k, perm[b, k]]``: exhaustive up to 6 sources, Hungarian beyond."""
    batch, k, _ = cost.shape
    if k <= _EXHAUSTIVE_MAX:
        perms = torch.tensor(list(itertools.permutations(range(k))), device=cost.device)  # [P, K]
        totals = cost[:, torch.arange(k, device=cost.device), perms].sum(-1)  # [B, P]
        return perms[totals.argmin(dim=-1)]
    from scipy.optimize import linear_sum_assignment

    arr = cost.detach().double().cpu().numpy()
    out = torch.empty(batch, k, dtype=torch.long)
    for b in range(batch):
        rows, cols = linear_sum_assignment(arr[b])
        out[b, torch.as_tensor(rows)] = torch.as_tensor(cols)
    return out.to(cost.device)


def mismatch_pit_loss(sde, weighted: Tensor, sources: Tensor, permute: bool = True):
    """Per-item mismatch-aware loss at t = T (section 3.2) and the chosen permutation.

    Args:
        sde: the :class:`~fastsep.sampling.diffsep.MixSDE`.
        weighted: ``L_T q + z`` ``[B, K, T]`` (the network's weighted output plus the noise it was fed).
        sources: the (normalised, ordered) sources ``[B, K, T]``.
        permute: minimise over source permutations (False for enhancement: identity).

    Returns ``(loss [B], perm [B, K])`` with ``perm[b, k]`` the source whose mean output row k is matched with.
    """
    k = sources.shape[1]
    _, lam2 = sde.lambdas(torch.tensor(sde.T, dtype=torch.float64))
    # L_T^{-1}(sbar - mu_T(pi)), row k: e^{-gamma T} lambda2(T)^{-1/2} (y/K - s_pi(k)); it lies in Pbar's range
    scale = math.exp(-sde.gamma * sde.T) / math.sqrt(float(lam2))
    corr = scale * (sources.mean(dim=1, keepdim=True) - sources)  # [B, K(source), T]
    if not permute:
        perm = torch.arange(k, device=sources.device).expand(sources.shape[0], k)
        return (weighted + corr).pow(2).mean(dim=(1, 2)), perm
    cost = (weighted.unsqueeze(2) + corr.unsqueeze(1)).pow(2).mean(-1)  # [B, K(row), K(source)]
    with torch.no_grad():
        perm = best_assignment(cost)
    matched = torch.gather(cost, 2, perm.unsqueeze(-1)).squeeze(-1)  # [B, K]
    return matched.mean(-1), perm


class DiffSepTask:
    """Task of :func:`fastsep.train.loop.train` for DiffSep's score network.

    Batches are ``{"mixture": [B, T], "sources": [B, K, T]}`` (see :func:`fastsep.train.separator.pad_collate`).

    Args:
        sde: the :class:`~fastsep.sampling.diffsep.MixSDE` (K must match the model's).
        p_T: probability of the mismatch-aware loss at t = T (0.1 separation, 0.03 enhancement).
        enhancement: sources are (speech, noise) in that order: no reordering, no permutation.
        source_order: ``"power"`` or ``"given"``; default power for separation, given for enhancement.
        valid_sample_items: sample this many validation mixtures (0: loss only); ``sampler_steps`` steps each.
        seed: fixes the validation's times, noise and sampling.
    """

    def __init__(self, sde, p_T: float = 0.1, enhancement: bool = False, source_order: Optional[str] = None,
                 valid_sample_items: int = 2, sampler_steps: int = 30, snr: float = 0.5, seed: int = 0):
        from ..sampling.diffsep import MixSDE

        if not isinstance(sde, MixSDE):
            raise TypeError(f"DiffSepTask: sde must be a MixSDE, got {type(sde).__name__}")
        if not (isinstance(p_T, (int, float)) and 0.0 <= p_T <= 1.0):
            raise ValueError(f"DiffSepTask: p_T must be a probability in [0, 1], got {p_T!r}")
        if enhancement and sde.n_src != 2:
            raise ValueError(f"DiffSepTask: enhancement separates speech from noise (K = 2), got K = {sde.n_src}")
        self.sde, self.p_T, self.enhancement = sde, float(p_T), bool(enhancement)
        self.source_order = source_order or ("given" if enhancement else "power")
        order_sources(torch.zeros(1, 2, 1), self.source_order)  # validates the name
        self.valid_sample_items, self.sampler_steps, self.snr = int(valid_sample_items), int(sampler_steps), snr
        self.seed = int(seed)

    def _check_batch(self, batch: Dict[str, Any]):
        mix, src = batch.get("mixture"), batch.get("sources")
        if not isinstance(mix, Tensor) or not isinstance(src, Tensor):
            raise TypeError("DiffSepTask: a batch must hold 'mixture' [B, T] and 'sources' [B, K, T] tensors")
        if src.dim() != 3 or mix.dim() != 2 or src.shape[0] != mix.shape[0] or src.shape[-1] != mix.shape[-1]:
            raise ValueError(f"DiffSepTask: expected mixture [B, T] and sources [B, K, T], got {tuple(mix.shape)} "
                             f"and {tuple(src.shape)}")
        if src.shape[1] != self.sde.n_src:
            raise ValueError(f"DiffSepTask: the SDE has K = {self.sde.n_src} sources, the batch {src.shape[1]}")
        return mix.float(), src.float()

    def loss_terms(self, model: nn.Module, mixture: Tensor, sources: Tensor, generator=None):
        """``(loss [B], at_T [B] bool)`` per item for already normalised and ordered inputs."""
        sde = self.sde
        b = mixture.shape[0]
        dev = mixture.device
        u = torch.rand(b, device=dev, generator=generator)
        t = sde.t_eps + (sde.T - sde.t_eps) * torch.rand(b, device=dev, generator=generator)
        at_T = u < self.p_T
        t = torch.where(at_T, torch.full_like(t, sde.T), t)
        z = torch.randn(sources.shape, device=dev, generator=generator)
        start = torch.where(at_T.view(-1, 1, 1), sde.mixture_mean(mixture), sde.mean(sources, t))
        x = start + sde.cov_power(z, t, 0.5)
        weighted = sde.cov_power(model(x, t, mixture).float(), t, 0.5) + z
        loss = weighted.pow(2).mean(dim=(1, 2))
        if bool(at_T.any()):
            pit_loss, _ = mismatch_pit_loss(sde, weighted[at_T], sources[at_T], permute=not self.enhancement)
            loss = _replace(loss, at_T, pit_loss)
        return loss, at_T

    def prepare(self, batch: Dict[str, Any]):
        mix, src = self._check_batch(batch)
        mix, src, _ = normalize(mix, src)
        return mix, order_sources(src, self.source_order)

    def training_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tensor:
        """Mean over the batch of eq. (17), or of the mismatch-aware PIT loss for the items drawn at t = T."""
        mix, src = self.prepare(batch)
        return self.loss_terms(model, mix, src)[0].mean()

    @staticmethod
    def update_ema(model: nn.Module) -> None:
        """Update the model's weight average (pass ``on_step=lambda _: task.update_ema(model)`` to the loop)."""
        from .distributed import unwrap_model

        inner = unwrap_model(model)
        if getattr(inner, "ema", None) is not None:
            inner.update_ema()

    def validate(self, model: nn.Module, loader: Iterable[Dict[str, Any]]) -> Dict[str, float]:
        """``loss`` (seeded score-matching loss with the averaged weights) and, when sampling, ``si_sdr`` and
        ``si_sdri`` (dB; for enhancement of the speech only)."""
        from ..metrics import pit, si_sdr
        from ..sampling.diffsep import PCSampler
        from .distributed import unwrap_model

        inner = unwrap_model(model)
        net = inner.averaged() if getattr(inner, "ema", None) is not None else inner
        net.eval()
        sampler = PCSampler(self.sde, self.sampler_steps, self.snr)
        total, count, sdr, sdri, sampled = 0.0, 0, 0.0, 0.0, 0
        for i, batch in enumerate(loader):
            mix, src = self.prepare(batch)
            gen = torch.Generator(device=mix.device).manual_seed(self.seed + i)
            loss, _ = self.loss_terms(net, mix, src, generator=gen)
            total += float(loss.sum())
            count += mix.shape[0]
            if sampled < self.valid_sample_items:
                est = sampler.sample(net, mix, seed=self.seed + 1000 * i)
                if not self.enhancement:
                    est, _ = pit(est, src)
                score = si_sdr(est, src)
                base = si_sdr(mix.unsqueeze(1).expand_as(src), src)
                keep = 1 if self.enhancement else src.shape[1]  # enhancement scores the speech only
                sdr += float(score[:, :keep].mean(1).sum())
                sdri += float((score - base)[:, :keep].mean(1).sum())
                sampled += mix.shape[0]
        if count == 0:
            raise ValueError("the validation set yielded no mixtures")
        out = {"loss": total / count}
        if sampled:
            out.update(si_sdr=sdr / sampled, si_sdri=sdri / sampled)
        return out


def _replace(values: Tensor, mask: Tensor, new: Tensor) -> Tensor:
    """``values`` with the entries under ``mask`` replaced by ``new`` (in order), differentiably."""
    out = values.clone()
    out[mask] = new
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep train diffsep``."""
    parser.add_argument("--data", required=True, nargs="+",
                        help="data set folder (fastsep corpus, LibriMix or wsj0-mix); several fastsep corpora are "
                             "pooled")
    parser.add_argument("--out", required=True, help="run folder: checkpoints (last/, best/) and log.jsonl")
    parser.add_argument("--n-src", type=int, default=2, help="sources per mixture (default 2)")
    parser.add_argument("--enhancement", action="store_true",
                        help="speech enhancement: K = 2 with source 0 the speech and source 1 the noise, no "
                             "permutation, p_T 0.03, lr 1e-4 (unless given)")
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--small", action="store_true", help="the CPU-sized preset of the score network")
    parser.add_argument("--model-args", default=None, help="JSON object of NCSNpp constructor arguments")
    parser.add_argument("--gamma", type=float, default=PAPER_DEFAULTS["gamma"])
    parser.add_argument("--sigma-min", type=float, default=PAPER_DEFAULTS["sigma_min"])
    parser.add_argument("--sigma-max", type=float, default=PAPER_DEFAULTS["sigma_max"])
    parser.add_argument("--t-eps", type=float, default=PAPER_DEFAULTS["t_eps"])
    parser.add_argument("--p-T", dest="p_T", type=float, default=None,
                        help="probability of the mismatch-aware PIT loss at t = T (0.1; 0.03 for enhancement)")
    parser.add_argument("--ema-decay", type=float, default=PAPER_DEFAULTS["ema_decay"])
    parser.add_argument("--sampler-steps", type=int, default=30, help="predictor steps when validating")
    parser.add_argument("--valid-sample-items", type=int, default=2,
                        help="validation mixtures separated by sampling for SI-SDRi (0: loss only, monitored)")
    parser.add_argument("--segment", type=float, default=2.0, help="training segment in seconds")
    parser.add_argument("--train-items", type=int, default=None, help="mixtures per epoch (corpus: on the fly)")
    parser.add_argument("--valid-items", type=int, default=16)
    # batch 48 and lr 5e-4 are the paper's separation settings; the CPU default batch is smaller
    add_loop_arguments(parser, batch_size=8, lr=None, grad_clip=5.0, epochs=100, early_stop=10)


def main(args: argparse.Namespace) -> int:
    """Run ``fastsep train diffsep``; returns the exit status."""
    from ..data import open_mixture_dataset
    from ..models.io import atomic_write_json
    from ..models.ncsnpp import NCSNpp
    from ..sampling.diffsep import MixSDE
    from .loop import train
    from .separator import pad_collate

    try:
        if args.lr is None:
            args.lr = PAPER_DEFAULTS["lr_enhancement" if args.enhancement else "lr_separation"]
        n_src = 2 if args.enhancement else args.n_src
        if args.enhancement and args.n_src != 2:
            raise ValueError("--enhancement works on two sources (speech, noise); drop --n-src")
        p_T = args.p_T if args.p_T is not None else PAPER_DEFAULTS["p_T_enhancement" if args.enhancement
                                                                   else "p_T_separation"]
        overrides = json.loads(args.model_args) if args.model_args else {}
        if not isinstance(overrides, dict):
            raise ValueError("--model-args must be a JSON object")
        if args.small and overrides:
            raise ValueError("--small and --model-args cannot be combined: the preset fixes every size")
        if args.small:
            config = dict(NCSNpp.small(n_src, args.sample_rate).config, ema_decay=args.ema_decay)
        else:
            config = dict(n_src=n_src, sample_rate=args.sample_rate, ema_decay=args.ema_decay, **overrides)
        model = NCSNpp(**config)
        sde = MixSDE(n_src, gamma=args.gamma, sigma_min=args.sigma_min, sigma_max=args.sigma_max, t_eps=args.t_eps)
        task = DiffSepTask(sde, p_T=p_T, enhancement=args.enhancement, valid_sample_items=args.valid_sample_items,
                           sampler_steps=args.sampler_steps, seed=args.seed)
        train_set = open_mixture_dataset(args.data, n_src, args.sample_rate, segment=args.segment, split="train",
                                         seed=args.seed, length=args.train_items)
        valid_set = open_mixture_dataset(args.data, n_src, args.sample_rate, segment=args.segment, split="valid",
                                         seed=args.seed + 1, length=args.valid_items)
        if args.valid_items is not None and len(valid_set) > args.valid_items:
            valid_set = torch.utils.data.Subset(valid_set, range(args.valid_items))
        sampling = args.valid_sample_items > 0
        cfg = config_from_args(args, monitor="si_sdri" if sampling else "loss",
                               monitor_mode="max" if sampling else "min")
        cfg.amp = False  # complex STFTs and the 1/L_t weights: float32 throughout
        os.makedirs(args.out, exist_ok=True)
        method = dict(sde=sde.config(), enhancement=bool(args.enhancement), n_steps=30, snr=0.5, corrector_steps=1)
        atomic_write_json(os.path.join(args.out, "diffsep.json"), method)
        result = train(model, task, train_set, valid_set, cfg, collate_fn=pad_collate,
                       on_step=lambda _info: task.update_ema(model))
    except USAGE_ERRORS as exc:
        return report_usage_error("diffsep", exc)
    best = os.path.join(args.out, "best")
    if os.path.isdir(best):
        # the method's settings travel with the weights, so DiffSepMethod.from_pretrained(best) needs nothing else
        atomic_write_json(os.path.join(best, "diffsep.json"), method)
    metric = "si_sdri" if args.valid_sample_items > 0 else "loss"
    print(f"epochs {int(result['epoch'])}, steps {int(result['step'])}: valid {metric} "
          f"{result.get(metric, float('nan')):.3f} (best {result['best']:.3f}); model in {best}")
    return 0
