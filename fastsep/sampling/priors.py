"""Unsupervised separation with diffusion source priors (Shi et al., AAAI 2026; notes in
``shared/papers/unsupervised-diffusion-priors.md``): the DDPM machinery of the priors and the reconstruction-guided
solver that separates a mixture with nothing but priors trained on single sources.

Pieces:

- :class:`DDPMSchedule`: T steps of linear betas (the paper's T = 200, 1e-4 .. 0.02), ``q_sample``, the x0 estimate of
  an epsilon prediction and the ancestral step with the posterior variance ``beta_tilde``.
- Source priors, one interface (:class:`SourcePrior`: ``schedule`` and ``epsilon(x_t [N, T], t [N]) -> [N, T]``):
  :class:`NetworkPrior` (any epsilon network ``net(x_t, t)``, e.g. :class:`fastsep.models.tf_attention_unet.
  TFAttentionUNet`), :class:`DiffWavePrior` (an unconditional :class:`fastsep.models.DiffWave`, the cheaper prior) and
  :class:`GaussianPrior` (a zero-mean Gaussian with a per-sample variance whose epsilon is exact: the tests' oracle and
  a usable white/coloured-noise prior for enhancement).
- :class:`GuidedSolver`: initialise every source from the augmented mixture, then at each reverse step take each
  source's ancestral sample and x0 estimate, score the sum of the x0 estimates against the mixture (waveform,
  segment-wise and magnitude-STFT terms), differentiate that loss through the priors and step each source along its own
  normalised gradient (``"hybrid"``, the paper's), or the baselines ``"dps"`` and ``"dsg"``.

Shapes: mixtures ``[B, T]``, sources ``[B, C, T]``. Everything stays on the mixture's device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops

__all__ = [
    "DDPMSchedule",
    "SourcePrior",
    "NetworkPrior",
    "DiffWavePrior",
    "GaussianPrior",
    "ReconstructionLoss",
    "GuidedSolver",
    "SolverResult",
    "smooth_max",
    "hybrid_step_sizes",
    "per_source_normalised_step",
    "STEP_RULES",
]

STEP_RULES = ("hybrid", "dps", "dsg")


# ---------------------------------------------------------------------------------------------------------- schedule
class DDPMSchedule:
    """A DDPM noise schedule with its derived constants (float64 on the host, float32 tensors per device on demand).

    ``steps`` T, betas linear from ``beta_start`` to ``beta_end`` (the paper: 200, 1e-4, 0.02), or explicit ``betas``.
    Index t runs 0..T-1; ``alpha_bar[t] = prod_{s<=t} (1 - beta_s)``. ``posterior_variance[t]`` is
    ``beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (0 at t = 0), the variance of the ancestral
    step ``q(x_{t-1} | x_t, x0)``.
    """

    def __init__(self, steps: int = 200, beta_start: float = 1e-4, beta_end: float = 0.02,
                 betas: Optional[Sequence[float]] = None):
        if betas is None:
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
                raise ValueError(f"DDPMSchedule: steps must be an int >= 2, got {steps!r}")
            if not 0.0 < beta_start <= beta_end < 1.0:
                raise ValueError(f"DDPMSchedule: need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
            b = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
        else:
            b = np.asarray([float(v) for v in betas], dtype=np.float64)
            if b.ndim != 1 or b.shape[0] < 2 or not np.all((b > 0) & (b < 1)):
                raise ValueError("DDPMSchedule: betas must be a sequence of at least 2 values in (0, 1)")
        self.betas = b
        self.steps = int(b.shape[0])
        alphas = 1.0 - b
        self.alpha_bar = np.cumprod(alphas)
        self.alpha_bar_prev = np.concatenate([[1.0], self.alpha_bar[:-1]])
        self.posterior_variance = b * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        # Posterior mean mu = coef_x0 * x0 + coef_xt * x_t (Ho et al., eq. 7).
        self.coef_x0 = b * np.sqrt(self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        self.coef_xt = (1.0 - self.alpha_bar_prev) * np.sqrt(alphas) / (1.0 - self.alpha_bar)
        self._cache: Dict[Tuple[str, torch.dtype], Dict[str, Tensor]] = {}

    @classmethod
    def paper(cls) -> "DDPMSchedule":
        """The paper's schedule: T = 200, linear betas 1e-4 .. 0.02."""
        return cls(200, 1e-4, 0.02)

    def same_as(self, other: "DDPMSchedule") -> bool:
        return self.steps == other.steps and bool(np.allclose(self.betas, other.betas, rtol=1e-6, atol=0))

    def tensors(self, device, dtype=torch.float32) -> Dict[str, Tensor]:
        """The per-step constants as ``[T]`` tensors on ``device`` (built once per device and dtype)."""
        key = (str(torch.device(device)), dtype)
        got = self._cache.get(key)
        if got is None:
            host = {
                "betas": self.betas, "alpha_bar": self.alpha_bar, "sqrt_alpha_bar": np.sqrt(self.alpha_bar),
                "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - self.alpha_bar),
                "posterior_variance": self.posterior_variance, "posterior_std": np.sqrt(self.posterior_variance),
                "coef_x0": self.coef_x0, "coef_xt": self.coef_xt,
            }
            got = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in host.items()}
            self._cache[key] = got
        return got

    def _at(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        # [N] steps -> [N, 1, ..., 1] broadcastable over like's trailing dims
        values = self.tensors(like.device, like.dtype)[name][t]
        return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))

    def check_steps(self, t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or t.dtype not in (torch.int32, torch.int64) or t.dim() != 1:
            raise ValueError(f"diffusion steps must be a 1-d integer tensor, got "
                             f"{t.dtype if isinstance(t, Tensor) else type(t).__name__}")
        return t

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (the forward process), ``t`` ``[N]`` for ``x0 [N, ...]``."""
        return self._at("sqrt_alpha_bar", t, x0) * x0 + self._at("sqrt_one_minus_alpha_bar", t, x0) * noise

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor, clip: Optional[float] = 1.0) -> Tensor:
        """The x0 estimate ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, clamped to ``[-clip, clip]`` (None: not)."""
        x0 = (x_t - self._at("sqrt_one_minus_alpha_bar", t, x_t) * eps) / self._at("sqrt_alpha_bar", t, x_t)
        return x0.clamp(-clip, clip) if clip is not None else x0

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        return self._at("coef_x0", t, x_t) * x0 + self._at("coef_xt", t, x_t) * x_t

    def ancestral_step(self, x_t: Tensor, t: Tensor, eps: Tensor, noise: Optional[Tensor],
                       clip: Optional[float] = 1.0) -> Tuple[Tensor, Tensor]:
        """One reverse step from ``x_t`` given the predicted ``eps``: ``(x_{t-1}, x0_hat)`` with
        ``x_{t-1} = mu(x0_hat, x_t) + sqrt(beta_tilde_t) noise`` (no noise where t = 0, or when ``noise`` is None)."""
        x0 = self.x0_from_eps(x_t, t, eps, clip)
        mean = self.posterior_mean(x0, x_t, t)
        if noise is None:
            return mean, x0
        return mean + self._at("posterior_std", t, x_t) * noise, x0


# ------------------------------------------------------------------------------------------------------------ priors
@runtime_checkable
class SourcePrior(Protocol):
    """What the solver needs of a source prior: its DDPM ``schedule`` and the noise it predicts.

    ``epsilon(x_t [N, T], t [N] int64) -> [N, T]`` must be differentiable in ``x_t`` (the guidance gradient goes
    through it) and act on each row independently (so a batch item's result does not depend on its batch-mates).
    """

    schedule: DDPMSchedule

    def epsilon(self, x_t: Tensor, t: Tensor) -> Tensor:
        ...


class NetworkPrior(nn.Module):
    """An epsilon-prediction network ``net(x_t [N, T], t [N]) -> [N, T]`` (or ``[N, 1, T]``) with its schedule.

    The network's config may name its schedule (``diffusion_steps``, ``beta_start``, ``beta_end``, as
    :class:`~fastsep.models.tf_attention_unet.TFAttentionUNet` does); otherwise ``schedule`` or the paper's is used.
    """

    def __init__(self, net: nn.Module, schedule: Optional[DDPMSchedule] = None, name: str = "prior"):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"NetworkPrior: net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        cfg = getattr(net, "config", {}) or {}
        if schedule is None:
            if "diffusion_steps" in cfg:
                schedule = DDPMSchedule(int(cfg["diffusion_steps"]), float(cfg.get("beta_start", 1e-4)),
                                        float(cfg.get("beta_end", 0.02)))
            else:
                schedule = DDPMSchedule.paper()
        self.schedule = schedule
        self.name = name
        self.sample_rate = cfg.get("sample_rate")

    def epsilon(self, x_t: Tensor, t: Tensor) -> Tensor:
        eps = self.net(x_t, t)
        return eps.squeeze(1) if eps.dim() == 3 else eps


class DiffWavePrior(nn.Module):
    """The unconditional :class:`fastsep.models.DiffWave` behind the prior interface: a cheaper waveform prior.

    Its schedule is the model's own training schedule (``noise_schedule``); train it on the paper's (``fastsep train
    prior --arch diffwave`` gives it T = 200, 1e-4 .. 0.02) to mix it with other priors in one solve, since every
    prior of a solve must share one schedule. The model is used as is (read-only): ``model(x_t, t, None)``.
    """

    def __init__(self, model: nn.Module, name: str = "diffwave"):
        super().__init__()
        from ..models.diffwave import DiffWave

        if not isinstance(model, DiffWave):
            raise TypeError(f"DiffWavePrior needs a fastsep.models.DiffWave, got {type(model).__name__}")
        if not model.unconditional:
            raise ValueError("DiffWavePrior needs an unconditional DiffWave (a speech prior); this one is "
                             "mel-conditioned (a vocoder)")
        self.model = model
        self.schedule = DDPMSchedule(betas=model.config["noise_schedule"])
        self.name = name
        self.sample_rate = model.sample_rate

    def epsilon(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.model(x_t, t, None).squeeze(1)


class GaussianPrior(nn.Module):
    """A zero-mean Gaussian source ``x0 ~ N(0, diag(variance))`` whose noise prediction is exact.

    With ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` (a = alpha_bar_t), ``x_t ~ N(0, a v + 1 - a)`` and
    ``E[eps | x_t] = sqrt(1 - a) x_t / (a v + 1 - a)``. ``variance`` is a scalar (white) or a ``[T]`` profile (the
    length of every input then must be T). A reference for testing the solver against the exact posterior, and a
    stationary-noise prior for enhancement (a speech prior plus a Gaussian noise prior).
    """

    def __init__(self, variance: Union[float, Tensor], schedule: Optional[DDPMSchedule] = None, name: str = "gauss"):
        super().__init__()
        var = torch.as_tensor(variance, dtype=torch.float32)
        if var.dim() > 1 or not bool(torch.all(var > 0)):
            raise ValueError("GaussianPrior: variance must be a positive scalar or a positive [T] profile")
        self.register_buffer("variance", var)
        self.schedule = schedule or DDPMSchedule.paper()
        self.name = name

    def epsilon(self, x_t: Tensor, t: Tensor) -> Tensor:
        if self.variance.dim() == 1 and x_t.shape[-1] != self.variance.shape[0]:
            raise ValueError(f"GaussianPrior: inputs must have {self.variance.shape[0]} samples, got {x_t.shape[-1]}")
        a = self.schedule._at("alpha_bar", t, x_t)
        v = self.variance.to(x_t)
        return (1.0 - a).sqrt() * x_t / (a * v + 1.0 - a)


# ------------------------------------------------------------------------------------------------------------- loss
class ReconstructionLoss:
    """The solver's data term for a mixture ``y [B, T]``, per mixture ``[B]``:

    ``||y - y_hat||_2 + w_seg * sum_k ||seg_k(y - y_hat)||_2 + w_stft * || |STFT(y_hat)| - |STFT(y)| ||_2``

    with ``n_segments`` equal segments (the residual is zero-padded to a whole number of them, which changes no norm)
    and an STFT of ``n_fft``/``hop`` with a Hann window (the paper: 512 segments, 0.05, 0.1, 512/256). Everything that
    depends on ``y`` alone (its magnitude spectrogram, the window, the padding) is computed once here, not per step.
    """

    def __init__(self, mixture: Tensor, n_segments: int = 512, segment_weight: float = 0.05,
                 stft_weight: float = 0.1, n_fft: int = 512, hop_length: int = 256):
        self.y = mixture
        length = mixture.shape[-1]
        self.n_segments = max(1, min(int(n_segments), length))
        self.seg_len = math.ceil(length / self.n_segments)
        self.pad = self.seg_len * self.n_segments - length
        self.segment_weight = float(segment_weight)
        self.stft_weight = float(stft_weight)
        # A centred STFT reflect-pads n_fft/2 samples: shrink the frame for short inputs instead of failing.
        n_fft = int(min(n_fft, 2 * ((length - 1) // 2)))
        self.n_fft = max(n_fft, 2)
        self.hop = max(1, min(int(hop_length), self.n_fft // 2))
        self.window = torch.hann_window(self.n_fft, device=mixture.device, dtype=mixture.dtype)
        self.y_mag = self._mag(mixture) if self.stft_weight else None

    def _mag(self, wave: Tensor) -> Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return spec.abs()

    def __call__(self, y_hat: Tensor) -> Tuple[Tensor, Tensor]:
        """``(loss [B], waveform residual norm [B])`` of the estimated mixture ``y_hat [B, T]``."""
        res = self.y - y_hat
        wave = res.norm(dim=-1)
        loss = wave
        if self.segment_weight:
            segs = F.pad(res, (0, self.pad)).reshape(res.shape[0], self.n_segments, self.seg_len)
            loss = loss + self.segment_weight * segs.norm(dim=-1).sum(-1)
        if self.stft_weight:
            loss = loss + self.stft_weight * (self._mag(y_hat) - self.y_mag).flatten(1).norm(dim=-1)
        return loss, wave


# ------------------------------------------------------------------------------------------------------ step sizes
def smooth_max(a: Union[Tensor, float], b: Union[Tensor, float], k: float = 1000.0) -> Tensor:
    """``log(exp(k a) + exp(k b)) / k``, computed stably (logaddexp): a max that stays smooth near a = b."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return torch.logaddexp(k * a, k * b) / k


def hybrid_step_sizes(schedule: DDPMSchedule, scale: float = 0.09, floor: Optional[float] = 0.002,
                      sharpness: float = 1000.0) -> Tensor:
    """The per-sample step size of every t (``[T]`` float64): ``smoothmax(scale sqrt(beta_tilde_t), floor)``. The
    solver multiplies it by ``sqrt(L)``, L the source's length in samples, so that the step's norm is that of a
    per-sample step of this size (the scale of the ancestral noise, ``sqrt(L) sqrt(beta_tilde_t)``, times ``scale``).
    ``floor`` None: no floor (DSG's ``scale sqrt(beta_tilde_t)``, which vanishes at t = 0)."""
    sigma = scale * torch.as_tensor(np.sqrt(schedule.posterior_variance))
    return sigma if floor is None else smooth_max(sigma, floor, sharpness)


def per_source_normalised_step(x_prime: Tensor, grad: Tensor, radius: Tensor, eps: float = 1e-12) -> Tensor:
    """``x'_i - r g_i / ||g_i||`` for each source i of each mixture: ``x_prime``, ``grad`` ``[B, C, T]``, ``radius``
    ``[B]`` (or broadcastable to ``[B, 1, 1]``). Each source moves by exactly ``radius`` (a zero gradient: not at
    all), whatever the other sources' gradients: one source's large likelihood gradient cannot swamp another's."""
    norm = grad.norm(dim=-1, keepdim=True)
    r = radius.reshape(radius.shape + (1,) * (3 - radius.dim())) if radius.dim() < 3 else radius
    return x_prime - (r.to(grad.dtype) / norm.clamp_min(eps)) * grad


# ------------------------------------------------------------------------------------------------------------ solver
@dataclass
class SolverResult:
    """What :meth:`GuidedSolver.solve` returns: the separated ``sources [B, C, T]`` and, per reverse step (in the
    order run, from the first to t = 0), the waveform residual ``||y - sum_i x0_hat_i||`` ``[steps, B]`` and the
    loss ``[steps, B]``; ``steps`` the t of each row."""

    sources: Tensor
    residual: Tensor
    loss: Tensor
    steps: List[int] = field(default_factory=list)


class GuidedSolver:
    """Reconstruction-guided reverse diffusion that separates ``y [B, T]`` into one source per prior.

    Each reverse step t, for every source i: the prior's ancestral sample ``x'_{t-1,i}`` and x0 estimate
    ``x0_hat_i``; the loss ``L(y, sum_i x0_hat_i)`` (:class:`ReconstructionLoss`) is differentiated through the priors
    to ``g_i = dL/dx_{t,i}``, and the source moves by a guidance step:

    - ``"hybrid"`` (the paper's): ``x_{t-1,i} = x'_{t-1,i} - r_t g_i / ||g_i||`` with
      ``r_t = sqrt(n) smoothmax(0.09 sqrt(beta_tilde_t), 0.002)``, n the source's length: every source moves by
      exactly r_t whatever the others' gradients, on the scale of the ancestral noise, never below the floor;
    - ``"dsg"``: the same per-source normalised step with DSG's radius ``r_t = sqrt(n) dsg_scale sqrt(beta_tilde_t)``
      (no floor: guidance fades with the noise);
    - ``"dps"``: ``x'_{t-1} - zeta g`` (the raw joint gradient, a fixed step; the loss is a norm, not its square, so
      this is DPS's step normalised by the residual norm).

    Args:
        priors: one :class:`SourcePrior` per source to extract (the same prior object may appear several times, e.g.
            two talkers of one speech prior; its sources then share one network call per step). Every prior must use
            the same schedule.
        step: "hybrid", "dsg" or "dps".
        init_step: the noise level the sources start from, ``q_sample(y, init_step)`` (the augmented mixture).
            None: the paper's ``T - 1 - 50`` at T = 200, scaled to other T.
        start_step: the first reverse step run. None: ``T - 1``, as the authors' code does (its loop runs over all
            steps from the less noisy start); pass ``init_step`` to start where the noise level matches.
        clip: clamp of the x0 estimates (the paper: 1.0; None disables).
        hybrid_scale, hybrid_floor, sharpness: the hybrid step's constants (0.09, 0.002, 1000).
        dsg_scale: DSG's radius factor (1.0 as in DSG; the authors' comparison code used 0.09).
        zeta: the DPS step (1.5 in the authors' code).
        n_segments, segment_weight, stft_weight, n_fft, hop_length: the loss (:class:`ReconstructionLoss`).
        fused: run each step's ancestral sample and guidance step as one :func:`fastsep.ops.guided_update` (a
            compiled kernel where the extension is built, its reference otherwise), with every per-step constant
            taken from tables built once and the noise drawn into one reused buffer. The same noise is drawn in the
            same order as the eager update (``fused=False``, the readable form and the benchmarks' baseline), so a
            seeded solve agrees with it up to float rounding.
    """

    def __init__(self, priors: Sequence[SourcePrior], step: str = "hybrid", init_step: Optional[int] = None,
                 start_step: Optional[int] = None, clip: Optional[float] = 1.0, hybrid_scale: float = 0.09,
                 hybrid_floor: float = 0.002, sharpness: float = 1000.0, dsg_scale: float = 1.0, zeta: float = 1.5,
                 n_segments: int = 512, segment_weight: float = 0.05, stft_weight: float = 0.1, n_fft: int = 512,
                 hop_length: int = 256, fused: bool = True):
        if not isinstance(fused, bool):
            raise TypeError(f"GuidedSolver: fused must be a bool, got {type(fused).__name__}")
        self.fused = fused
        priors = list(priors) if not isinstance(priors, (str, bytes, Tensor)) else []
        if len(priors) < 1:
            raise ValueError("GuidedSolver: give at least one source prior (one per source to extract)")
        for i, p in enumerate(priors):
            if not callable(getattr(p, "epsilon", None)) or not isinstance(getattr(p, "schedule", None), DDPMSchedule):
                raise TypeError(f"GuidedSolver: prior {i} ({type(p).__name__}) needs .epsilon(x_t, t) and a "
                                f"DDPMSchedule .schedule")
            if not p.schedule.same_as(priors[0].schedule):
                raise ValueError(f"GuidedSolver: prior {i} uses a {p.schedule.steps}-step schedule that differs from "
                                 f"prior 0's ({priors[0].schedule.steps} steps); one solve needs one schedule")
        if step not in STEP_RULES:
            raise ValueError(f"GuidedSolver: step must be one of {STEP_RULES}, got {step!r}")
        self.priors = priors
        self.schedule = priors[0].schedule
        T = self.schedule.steps
        if init_step is None:
            init_step = int(round((T - 1) * (149 / 199)))
        if start_step is None:
            start_step = T - 1
        for name, value in (("init_step", init_step), ("start_step", start_step)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < T:
                raise ValueError(f"GuidedSolver: {name} must be an int in [0, {T - 1}], got {value!r}")
        for name, value in (("hybrid_scale", hybrid_scale), ("dsg_scale", dsg_scale), ("zeta", zeta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GuidedSolver: {name} must be a finite number >= 0, got {value!r}")
        self.init_step, self.start_step = init_step, start_step
        self.step_rule = step
        self.clip = clip
        self.zeta = float(zeta)
        self.loss_options = dict(n_segments=n_segments, segment_weight=segment_weight, stft_weight=stft_weight,
                                 n_fft=n_fft, hop_length=hop_length)
        # Per-sample radius of every step, computed once (the loop only indexes it).
        if step == "hybrid":
            self.radius_per_sample = hybrid_step_sizes(self.schedule, hybrid_scale, hybrid_floor, sharpness)
        else:
            self.radius_per_sample = hybrid_step_sizes(self.schedule, dsg_scale, None)
        # The fused step's per-step scalars as Python floats (float64 host tables, read once): no device indexing
        # or tensor arithmetic per step. sqrt(abar), sqrt(1 - abar) for the x0 estimate, the posterior mean's
        # coefficients and the ancestral noise's std.
        sc = self.schedule
        self._sqrt_ab = np.sqrt(sc.alpha_bar).tolist()
        self._sqrt_1mab = np.sqrt(1.0 - sc.alpha_bar).tolist()
        self._coef_x0 = sc.coef_x0.tolist()
        self._coef_xt = sc.coef_xt.tolist()
        self._noise_std = np.sqrt(sc.posterior_variance).tolist()
        self._radius_per_sample = self.radius_per_sample.tolist()
        # Sources grouped by prior object: one network call per prior and step, on all its sources at once.
        groups: Dict[int, List[int]] = {}
        for i, p in enumerate(priors):
            groups.setdefault(id(p), []).append(i)
        self.groups = [(priors[idx[0]], idx) for idx in groups.values()]

    @property
    def n_sources(self) -> int:
        return len(self.priors)

    # ---------------------------------------------------------------------------------------------------- checks
    def _check_mixture(self, y) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"GuidedSolver: mixture must be a torch.Tensor [batch, time], got {type(y).__name__}")
        if y.dim() != 2:
            raise ValueError(f"GuidedSolver: mixture must have shape [batch, time], got {tuple(y.shape)}")
        if not y.is_floating_point():
            raise TypeError(f"GuidedSolver: mixture must be floating point, got {y.dtype}")
        if y.shape[0] < 1 or y.shape[1] < 2:
            raise ValueError(f"GuidedSolver: mixture must hold at least one item of 2+ samples, got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("GuidedSolver: mixture contains NaN or infinite samples")
        return y

    # ----------------------------------------------------------------------------------------------------- noise
    @staticmethod
    def _generators(batch: int, seed: Optional[int], device) -> List[torch.Generator]:
        # One generator per item, seeded from (seed, item): an item's result does not depend on its batch-mates.
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"GuidedSolver: seed must be an int or None, got {type(seed).__name__}")
        gens = []
        for i in range(batch):
            g = torch.Generator(device=device)
            g.manual_seed((int(seed) * 1000003 + i) % (2 ** 63 - 1))
            gens.append(g)
        return gens

    @staticmethod
    def _noise(gens: List[torch.Generator], shape: Tuple[int, ...], like: Tensor, out: Optional[Tensor] = None) -> Tensor:
        if out is not None:
            # In place into a reused buffer: the values torch.randn(shape, generator=g) would return, no stack copy.
            for i, g in enumerate(gens):
                out[i].normal_(generator=g)
            return out
        return torch.stack([torch.randn(shape, generator=g, device=like.device, dtype=like.dtype) for g in gens])

    # ----------------------------------------------------------------------------------------------------- solve
    def _predict(self, x_t: Tensor, t: int) -> Tensor:
        """Noise predicted by each source's prior, ``[B, C, T]``; one call per prior on all its sources."""
        B, C, T = x_t.shape
        if len(self.groups) == 1:
            prior, _ = self.groups[0]
            steps = torch.full((B * C,), t, dtype=torch.long, device=x_t.device)
            return prior.epsilon(x_t.reshape(B * C, T), steps).reshape(B, C, T)
        eps: List[Optional[Tensor]] = [None] * C
        for prior, idx in self.groups:
            rows = x_t[:, idx].reshape(B * len(idx), T)
            steps = torch.full((rows.shape[0],), t, dtype=torch.long, device=x_t.device)
            out = prior.epsilon(rows, steps).reshape(B, len(idx), T)
            for j, i in enumerate(idx):
                eps[i] = out[:, j]
        return torch.stack(eps, dim=1)

    def solve(self, mixture: Tensor, seed: Optional[int] = None,
              callback: Optional[Callable[[int, Tensor], None]] = None) -> SolverResult:
        """Separate ``mixture [B, T]`` into ``[B, C, T]``; deterministic for a given ``seed`` (per item: item i's
        noise comes from its own generator, so its result does not depend on its batch-mates).

        ``callback(t, x0_hat [B, C, T])``, if given, sees the detached x0 estimates of every step.
        """
        y = self._check_mixture(mixture).float()
        B, T = y.shape
        C = self.n_sources
        sched = self.schedule
        consts = sched.tensors(y.device, y.dtype)
        loss_fn = ReconstructionLoss(y, **self.loss_options)
        gens = self._generators(B, seed, y.device)
        radius = (self.radius_per_sample * math.sqrt(T)).to(device=y.device, dtype=y.dtype)

        start = torch.full((B,), self.init_step, dtype=torch.long, device=y.device)
        x = sched.q_sample(y.unsqueeze(1).expand(B, C, T), start, self._noise(gens, (C, T), y))
        if self.fused:
            return self._solve_fused(x, loss_fn, gens, callback)
        residuals, losses, steps = [], [], []
        for t in range(self.start_step, -1, -1):
            x = x.detach().requires_grad_(True)
            tt = torch.full((B,), t, dtype=torch.long, device=y.device)
            with torch.enable_grad():
                eps = self._predict(x, t)
                x0 = sched.x0_from_eps(x, tt, eps, self.clip)
                loss, wave = loss_fn(x0.sum(dim=1))
                grad, = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                x0 = x0.detach()
                x_prev = consts["coef_x0"][t] * x0 + consts["coef_xt"][t] * x.detach()
                if t > 0:
                    x_prev = x_prev.add_(self._noise(gens, (C, T), y), alpha=float(sched.posterior_variance[t]) ** 0.5)
                if self.step_rule == "dps":
                    x = x_prev.sub_(grad, alpha=self.zeta)
                else:
                    x = per_source_normalised_step(x_prev, grad, radius[t].expand(B))
            residuals.append(wave.detach())
            losses.append(loss.detach())
            steps.append(t)
            if callback is not None:
                callback(t, x0)
        return SolverResult(sources=x.detach(), residual=torch.stack(residuals), loss=torch.stack(losses),
                            steps=steps)

    def _solve_fused(self, x: Tensor, loss_fn: "ReconstructionLoss", gens: List[torch.Generator],
                     callback: Optional[Callable[[int, Tensor], None]]) -> SolverResult:
        """The reverse loop of :meth:`solve` with the update fused (:func:`fastsep.ops.guided_update`)."""
        B, C, T = x.shape
        sqrt_len = math.sqrt(T)
        normalise = self.step_rule != "dps"
        clip = self.clip
        buf = torch.empty_like(x)  # the ancestral noise of every step, drawn in place
        residuals, losses, steps = [], [], []
        for t in range(self.start_step, -1, -1):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                eps = self._predict(x, t)
                # x0 estimate with Python-float constants: the same float32 arithmetic as DDPMSchedule.x0_from_eps
                # without indexing the device tables per step
                x0 = (x - self._sqrt_1mab[t] * eps) / self._sqrt_ab[t]
                if clip is not None:
                    x0 = x0.clamp(-clip, clip)
                loss, wave = loss_fn(x0.sum(dim=1))
                grad, = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                x0 = x0.detach()
                noise = self._noise(gens, (C, T), x, out=buf) if t > 0 else None
                radius = self.zeta if not normalise else self._radius_per_sample[t] * sqrt_len
                x = ops.guided_update(x0, x.detach(), grad, noise, self._coef_x0[t], self._coef_xt[t],
                                      self._noise_std[t], radius, normalise)
            residuals.append(wave.detach())
            losses.append(loss.detach())
            steps.append(t)
            if callback is not None:
                callback(t, x0)
        return SolverResult(sources=x, residual=torch.stack(residuals), loss=torch.stack(losses), steps=steps)
