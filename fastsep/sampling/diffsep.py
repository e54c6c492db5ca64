"""DiffSep's diffusion-mixing SDE and its predictor-corrector sampler (Scheibler et al., eqs. 8-15, section 3.1).

The forward process on the stacked sources ``x [B, K, T]`` is

    dx = -gamma * Pbar x dt + g(t) dw,   x_0 = s,
    g(t) = sigma_min * rho^t * sqrt(2 log rho),   rho = sigma_max / sigma_min

with ``P = 1 1^T / K`` (the average across sources) and ``Pbar = I - P``, both acting on the source axis only. Because
the drift is linear and g is scalar, every marginal is Gaussian (Theorem 1):

    mu_t    = (1 - e^{-gamma t}) sbar + e^{-gamma t} s,          sbar = P s (the mixture over K, repeated)
    Sigma_t = lambda1(t) P + lambda2(t) Pbar,
    lambda_k(t) = sigma_min^2 (rho^{2t} - e^{-2 xi_k t}) log rho / (xi_k + log rho),   xi_1 = 0, xi_2 = gamma.

P and Pbar are orthogonal projections, so any function of Sigma_t is that function applied to the two eigenvalues:
``Sigma^p v = lambda1^p P v + lambda2^p Pbar v``. Nothing here forms a K x K matrix, so every K (2 to 20) costs the
same two reductions over the source axis. Speech enhancement is the case K = 2 with (speech, noise) as the sources.

The sampler solves the reverse-time SDE from ``x_T ~ N(sbar, Sigma_T)`` (eq. 14) with a reverse-diffusion predictor
and one annealed Langevin corrector step per predictor step, preconditioned by Sigma_t: the step is
``eps = 2 r^2 Sigma_t`` so that the noise it injects, ``sqrt(2 eps) z = 2 r L_t z``, has the shape of the process's
own noise (the isotropic step of NCSN would over-step the small P component, whose variance lambda1 is much smaller
than lambda2 at large t).
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import ops

__all__ = ["MixSDE", "PCSampler", "ScoreFn", "StepCoefficients", "make_generators", "randn_per_item"]

#: ``score_fn(x [B, K, T], t [B], mixture [B, T]) -> [B, K, T]``: an approximation of grad_x log p_t(x | mixture).
ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]

Seed = Union[None, int, Sequence[int]]


def _positive(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_sources(owner: str, x, n_src: int, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor [batch, {n_src}, time], got {type(x).__name__}")
    if x.dim() != 3 or x.shape[1] != n_src:
        raise ValueError(f"{owner}: {name} must have shape [batch, {n_src}, time], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be floating point, got {x.dtype}")
    return x


def check_mixture(owner: str, mixture) -> Tensor:
    """A mixture batch ``[B, T]`` of floats with at least one sample, or a clear error."""
    if not isinstance(mixture, Tensor):
        raise TypeError(f"{owner}: mixture must be a torch.Tensor [batch, time], got {type(mixture).__name__}")
    if mixture.dim() != 2:
        raise ValueError(f"{owner}: mixture must have shape [batch, time] (2-D), got {tuple(mixture.shape)}; use "
                         "mixture.unsqueeze(0) for a single one")
    if not mixture.is_floating_point():
        raise TypeError(f"{owner}: mixture must be floating point, got {mixture.dtype}")
    if mixture.shape[0] < 1 or mixture.shape[1] < 1:
        raise ValueError(f"{owner}: mixture must be non-empty, got shape {tuple(mixture.shape)}")
    if not bool(torch.isfinite(mixture).all()):
        raise ValueError(f"{owner}: mixture contains NaN or infinite samples")
    return mixture


def make_generators(seed: Seed, batch: int, device: torch.device) -> Optional[List[torch.Generator]]:
    """One generator per batch item, so an item's noise does not depend on its batch-mates.

    ``seed`` None: no generators (the global RNG is used). An int: item ``b`` gets ``seed + b``. A sequence: one seed
    per item.
    """
    if seed is None:
        return None
    if isinstance(seed, bool):
        raise TypeError(f"seed must be None, an int or a sequence of ints, got {seed!r}")
    seeds = [int(seed) + b for b in range(batch)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != batch:
        raise ValueError(f"seed: got {len(seeds)} seeds for a batch of {batch}")
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(s)
        gens.append(g)
    return gens


def randn_per_item(shape, generators: Optional[List[torch.Generator]], device, dtype,
                   out: Optional[Tensor] = None) -> Tensor:
    """Standard normal noise of ``shape`` whose item ``b`` is drawn from ``generators[b]`` (global RNG when None).

    ``out``: a contiguous tensor of ``shape`` to fill in place (the sampler reuses one buffer for every step instead
    of allocating and stacking per-item draws); the values are those of the allocating call.
    """
    if out is not None:
        if tuple(out.shape) != tuple(shape) or not out.is_contiguous():
            raise ValueError(f"randn_per_item: out must be a contiguous tensor of shape {tuple(shape)}, got "
                             f"{tuple(out.shape)}")
        if generators is None:
            return out.normal_()
        for b, g in enumerate(generators):
            out[b].normal_(generator=g)  # what torch.randn(shape[1:], generator=g) draws, written in place
        return out
    if generators is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in generators])


class MixSDE:
    """The diffusion-mixing SDE of eq. (8) for ``n_src`` sources, with its closed-form marginals (Theorem 1).

    Times are tensors ``[B]`` (one per batch item) or Python floats; sources are ``[B, K, T]``.

    Args:
        n_src: K, 2 to 20 (2 for enhancement: speech and noise).
        gamma: mixing rate; the mean at T is ``sbar + e^{-gamma T}(s - sbar)``.
        sigma_min, sigma_max: the VE diffusion's range (eq. 9).
        T: the final time of the forward process.
        t_eps: the smallest time trained on and the last time the sampler reaches (the score blows up at t = 0).
    """

    def __init__(self, n_src: int, gamma: float = 2.0, sigma_min: float = 0.05, sigma_max: float = 0.5,
                 T: float = 1.0, t_eps: float = 0.03):
        owner = type(self).__name__
        if isinstance(n_src, bool) or not isinstance(n_src, int) or not 2 <= n_src <= 20:
            raise ValueError(f"{owner}: n_src must be an int in [2, 20], got {n_src!r}")
        self.n_src = n_src
        self.gamma = _positive(owner, "gamma", gamma)
        self.sigma_min = _positive(owner, "sigma_min", sigma_min)
        self.sigma_max = _positive(owner, "sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"{owner}: sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self.T = _positive(owner, "T", T)
        self.t_eps = _positive(owner, "t_eps", t_eps)
        if self.t_eps >= self.T:
            raise ValueError(f"{owner}: t_eps ({t_eps}) must be smaller than T ({T})")
        self.log_rho = math.log(self.sigma_max / self.sigma_min)

    # ------------------------------------------------------------------------------------------------- helpers
    def _time(self, t, like: Tensor) -> Tensor:
        """``t`` as a float64-free tensor of shape [B, 1, 1] on ``like``'s device (broadcast over sources/time)."""
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        if t.dim() == 0:
            t = t.expand(like.shape[0])
        if t.dim() != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"{type(self).__name__}: t must be a scalar or [batch] = [{like.shape[0]}], got "
                             f"shape {tuple(t.shape)}")
        return t.view(-1, 1, 1)

    @staticmethod
    def split(x: Tensor):
        """``(P x, Pbar x)``: the source average repeated over K, and what is left."""
        avg = x.mean(dim=1, keepdim=True).expand_as(x)
        return avg, x - avg

    # ---------------------------------------------------------------------------------------------- the process
    def g(self, t) -> Tensor:
        """Diffusion coefficient g(t) (eq. 9)."""
        t = torch.as_tensor(t, dtype=torch.float64 if not isinstance(t, Tensor) else t.dtype)
        return self.sigma_min * torch.exp(t * self.log_rho) * math.sqrt(2.0 * self.log_rho)

    def drift(self, x: Tensor) -> Tensor:
        """f(x) = -gamma Pbar x."""
        return -self.gamma * self.split(x)[1]

    def lambdas(self, t):
        """``(lambda1(t), lambda2(t))`` (eq. 12): Sigma_t's eigenvalues on the average and on its complement."""
        t = torch.as_tensor(t) if not isinstance(t, Tensor) else t
        rho2t = torch.exp(2.0 * t * self.log_rho)
        s2 = self.sigma_min ** 2
        lam1 = s2 * (rho2t - 1.0)  # xi_1 = 0: the log rho factors cancel
        lam2 = s2 * (rho2t - torch.exp(-2.0 * self.gamma * t)) * self.log_rho / (self.gamma + self.log_rho)
        return lam1, lam2

    def mean(self, s: Tensor, t) -> Tensor:
        """mu_t = sbar + e^{-gamma t}(s - sbar) (eq. 10) for sources ``s [B, K, T]``."""
        _check_sources("MixSDE.mean", s, self.n_src, "s")
        avg, rest = self.split(s)
        return avg + torch.exp(-self.gamma * self._time(t, s)) * rest

    def cov_power(self, v: Tensor, t, power: float) -> Tensor:
        """``Sigma_t^power v``: power 0.5 is L_t, -0.5 is L_t^{-1}, 1 is Sigma_t, -1 its inverse."""
        tt = self._time(t, v)
        lam1, lam2 = self.lambdas(tt)
        avg, rest = self.split(v)
        return lam1 ** power * avg + lam2 ** power * rest

    def marginal_sample(self, s: Tensor, t, z: Tensor) -> Tensor:
        """x_t = mu_t + L_t z (eq. 13)."""
        _check_sources("MixSDE.marginal_sample", z, self.n_src, "z")
        return self.mean(s, t) + self.cov_power(z, t, 0.5)

    def mixture_mean(self, mixture: Tensor) -> Tensor:
        """sbar: the mixture divided by K on every source, ``[B, K, T]``."""
        return (mixture / self.n_src).unsqueeze(1).expand(-1, self.n_src, -1)

    def prior_sample(self, mixture: Tensor, z: Tensor) -> Tensor:
        """x_T = sbar + L_T z, the start of the reverse process (eq. 14)."""
        return self.mixture_mean(mixture) + self.cov_power(z, self.T, 0.5)

    def config(self) -> dict:
        return dict(n_src=self.n_src, gamma=self.gamma, sigma_min=self.sigma_min, sigma_max=self.sigma_max, T=self.T,
                    t_eps=self.t_eps)


class PCSampler:
    """Predictor-corrector sampler of the reverse SDE (section 3.1): ``n_steps`` reverse-diffusion predictor steps on
    a uniform grid from T down to t_eps, each preceded by ``corrector_steps`` annealed Langevin steps with
    signal-to-noise ratio ``snr`` (the paper's r). Returns the last predictor step's noise-free mean.

    Batched; noise per item from ``seed`` (see :func:`make_generators`), so a seeded item's result does not depend
    on its batch-mates.

    ``fused`` (default): every step's update is one call of :func:`fastsep.ops.mix_sde_update` (a compiled kernel
    where the extension is built, its reference otherwise) with coefficients computed once per sampler, and the noise
    is drawn into one reused buffer; the same noise is drawn in the same order as the eager update (``fused=False``,
    kept as the readable form and the benchmarks' baseline), so seeded samples agree up to float rounding.
    """

    def __init__(self, sde: MixSDE, n_steps: int = 30, snr: float = 0.5, corrector_steps: int = 1,
                 fused: bool = True):
        if not isinstance(fused, bool):
            raise TypeError(f"PCSampler: fused must be a bool, got {type(fused).__name__}")
        if not isinstance(sde, MixSDE):
            raise TypeError(f"PCSampler: sde must be a MixSDE, got {type(sde).__name__}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"PCSampler: n_steps must be a positive int, got {n_steps!r}")
        if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
            raise ValueError(f"PCSampler: corrector_steps must be a non-negative int, got {corrector_steps!r}")
        if not isinstance(snr, (int, float)) or isinstance(snr, bool) or not snr >= 0 or not math.isfinite(snr):
            raise ValueError(f"PCSampler: snr must be a non-negative number, got {snr!r}")
        self.sde, self.n_steps, self.snr, self.corrector_steps = sde, n_steps, float(snr), corrector_steps
        self.fused = fused
        self._plan: Optional[List[StepCoefficients]] = None

    def timesteps(self) -> List[float]:
        """The predictor's times, T first, t_eps last."""
        sde = self.sde
        if self.n_steps == 1:
            return [sde.T]
        return [sde.T + (sde.t_eps - sde.T) * i / (self.n_steps - 1) for i in range(self.n_steps)]

    @torch.no_grad()
    def sample(self, score_fn: ScoreFn, mixture: Tensor, seed: Seed = None, x_init: Optional[Tensor] = None) -> Tensor:
        """Sources ``[B, K, T]`` for ``mixture [B, T]``.

        ``x_init``: start from this ``x_T`` instead of drawing ``N(sbar, Sigma_T)`` (tests start from the exact
        marginal to measure the solver alone).
        """
        sde = self.sde
        mixture = check_mixture("PCSampler.sample", mixture)
        b, n = mixture.shape
        k = sde.n_src
        gens = make_generators(seed, b, mixture.device)
        noise = lambda: randn_per_item((b, k, n), gens, mixture.device, mixture.dtype)  # noqa: E731
        if x_init is None:
            x = sde.prior_sample(mixture, noise())
        else:
            x = _check_sources("PCSampler.sample", x_init, k, "x_init").to(mixture.dtype).clone()
            if x.shape[0] != b or x.shape[-1] != n:
                raise ValueError(f"PCSampler.sample: x_init {tuple(x.shape)} does not fit mixture "
                                 f"{tuple(mixture.shape)}")
        if self.fused and mixture.dtype in (torch.float32, torch.float64):  # the op's dtypes; others stay eager
            return self._sample_fused(score_fn, mixture, x, gens)
        times = self.timesteps()
        x_mean = x
        for i, t in enumerate(times):
            # the last step goes from t_eps by the same stride, as in Song et al.'s sampler
            dt = (times[i] - times[i + 1]) if i + 1 < len(times) else (sde.T - sde.t_eps) / max(1, self.n_steps - 1)
            tb = torch.full((b,), t, dtype=mixture.dtype, device=mixture.device)
            for _ in range(self.corrector_steps):
                if self.snr == 0:
                    break
                # Langevin with preconditioner Sigma_t: eps = 2 r^2 Sigma_t, injected noise sqrt(2 eps) z = 2 r L_t z
                score = score_fn(x, tb, mixture)
                x = x + 2.0 * self.snr ** 2 * sde.cov_power(score, t, 1.0) \
                    + 2.0 * self.snr * sde.cov_power(noise(), t, 0.5)
            # reverse diffusion: x <- x - [f dt - g^2 dt score] + g sqrt(dt) z
            score = score_fn(x, tb, mixture)
            g2dt = float(sde.g(t)) ** 2 * dt
            x_mean = x - sde.drift(x) * dt + g2dt * score
            x = x_mean + math.sqrt(g2dt) * noise()
        return x_mean

    # ------------------------------------------------------------------------------------------------ fused path
    def plan(self) -> List["StepCoefficients"]:
        """The coefficients of every step's corrector and predictor update (:func:`fastsep.ops.mix_sde_update`),
        computed once in float64 from the SDE and the grid: nothing of them depends on the mixture."""
        if self._plan is None:
            sde, times = self.sde, self.timesteps()
            stride = (sde.T - sde.t_eps) / max(1, self.n_steps - 1)
            plan = []
            for i, t in enumerate(times):
                dt = (times[i] - times[i + 1]) if i + 1 < len(times) else stride
                lam1, lam2 = sde.lambdas(torch.tensor(t, dtype=torch.float64))
                lam1, lam2 = float(lam1), float(lam2)
                r = self.snr
                # corrector: x + 2 r^2 Sigma_t score + 2 r L_t z
                corrector = (1.0, 1.0, 2.0 * r * r * lam1, 2.0 * r * r * lam2, 2.0 * r * math.sqrt(lam1),
                             2.0 * r * math.sqrt(lam2))
                # predictor: x - f dt + g^2 dt score (+ g sqrt(dt) z), f = -gamma Pbar x
                g2dt = float(sde.g(t)) ** 2 * dt
                predictor = (1.0, 1.0 + sde.gamma * dt, g2dt, g2dt, math.sqrt(g2dt), math.sqrt(g2dt))
                plan.append(StepCoefficients(t, corrector, predictor))
            self._plan = plan
        return self._plan

    def _sample_fused(self, score_fn: ScoreFn, mixture: Tensor, x: Tensor,
                      gens: Optional[List[torch.Generator]]) -> Tensor:
        b, n = mixture.shape
        shape = (b, self.sde.n_src, n)
        plan = self.plan()
        # One noise buffer for every draw: each update has read it before the next draw overwrites it.
        buf = torch.empty(shape, device=mixture.device, dtype=mixture.dtype)
        times = torch.tensor([step.t for step in plan], dtype=mixture.dtype, device=mixture.device)
        times = times[:, None].repeat(1, b)  # row i: step i's time for every item (what torch.full gives)
        corrector_on = self.snr != 0
        for i, step in enumerate(plan):
            tb = times[i]
            if corrector_on:
                for _ in range(self.corrector_steps):
                    score = score_fn(x, tb, mixture)
                    z = randn_per_item(shape, gens, mixture.device, mixture.dtype, out=buf)
                    x = ops.mix_sde_update(x, score, z, *step.corrector)
            score = score_fn(x, tb, mixture)
            last = i + 1 == len(plan)
            # The last step returns the noise-free mean: its noise would be drawn only to be discarded.
            z = None if last else randn_per_item(shape, gens, mixture.device, mixture.dtype, out=buf)
            x = ops.mix_sde_update(x, score, z, *step.predictor)
        return x


class StepCoefficients(NamedTuple):
    """One predictor step of :class:`PCSampler`: its time and the (a_p, a_q, b_p, b_q, c_p, c_q) of
    :func:`fastsep.ops.mix_sde_update` for its corrector and its predictor update."""

    t: float
    corrector: Tuple[float, float, float, float, float, float]
    predictor: Tuple[float, float, float, float, float, float]
