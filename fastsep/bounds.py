"""The Separate-And-Diffuse analysis (Lutati, Nachmani, Wolf; Sec. 3) as code.

Model (eq. 12-17). Within a short (20 ms) segment a source sample ``v`` is Laplace-distributed. Eq. 13 prints
``exp(-|x/sqrt(2)|)/sqrt(2)``, which does not integrate to one; we read it as the unit-variance Laplace density
``exp(-sqrt(2)|x|)/sqrt(2)`` (scale b = 1/sqrt(2)). A mixture of C speakers is ``m = v + s_2 + ... + s_C`` with iid
unit-variance Laplace sources (not renormalised, so var(m) = C).

Reading of rho. The paper defines rho = I(v; v_g) / I(v; m), where the generated signal is ``v_g = x + n``,
``n ~ N(0, sigma^2)`` (eq. 12), and ``x`` is "the desired part of the signal, based on the prior": at best the
generator recovers everything the mixture knows about the source, and no more (eq. 11). We therefore take
``v_g = m + n``: the noiseless generator carries exactly I(v; m), and its additive Gaussian error removes some of it.
By the data-processing inequality 0 <= rho <= 1, rho -> 1 as sigma^2 -> 0, and rho falls faster for small C, where
the mixture variance C is small next to sigma^2 -- the behaviour the paper describes for its Figure 1.

Computation. I(v; y) = h(y) - h(y | v) = h(v + z) - h(z), with z the interference (+ noise). The densities are
built on a fine grid from exact per-bin probabilities (CDF differences) and convolved with FFTs; the discrete
entropies share one bin width, so its log cancels in the difference. ``source="gaussian"`` swaps in Gaussian
sources, for which I = 0.5 log((C + sigma^2) / (C - 1 + sigma^2)) in closed form (used to check the integrator).
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
from scipy import special

__all__ = ["mutual_information", "rho", "rho_curve", "deterministic_sdr_bound", "generative_sdr_bound"]

LAPLACE_SCALE = 1 / math.sqrt(2)  # unit variance


def _check(sigma2: float, n_src: int, source: str) -> None:
    if not isinstance(n_src, (int, np.integer)) or n_src < 2:
        raise ValueError(f"n_src (C) must be an int >= 2 (a mixture of one source determines it), got {n_src!r}")
    if not (isinstance(sigma2, (int, float, np.floating)) and sigma2 >= 0 and math.isfinite(sigma2)):
        raise ValueError(f"sigma2 must be a finite number >= 0, got {sigma2!r}")
    if source not in ("laplace", "gaussian"):
        raise ValueError(f"source must be 'laplace' or 'gaussian', got {source!r}")


def _bin_masses(edges: np.ndarray, kind: str, scale: float) -> np.ndarray:
    """Probability of each grid bin under a zero-mean distribution (exact CDF differences)."""
    if kind == "laplace":
        cdf = np.where(edges < 0, 0.5 * np.exp(np.minimum(edges, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(edges, 0) / scale))
    else:  # gaussian with standard deviation `scale`
        cdf = 0.5 * (1 + special.erf(edges / (scale * math.sqrt(2))))
    return np.diff(cdf)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(sigma2: float, n_src: int, source: str = "laplace", dx: float = 2e-3) -> float:
    """I(v; v + s_2 + ... + s_C + n) in nats, n ~ N(0, sigma2), unit-variance iid sources (``sigma2=0``: I(v; m))."""
    _check(sigma2, n_src, source)
    half = 12.0 * math.sqrt(n_src + sigma2) + 12.0  # wide enough that tails (and FFT wrap-around) are negligible
    k = int(math.ceil(half / dx))
    n = 2 * k + 1  # odd grid centred on 0
    edges = (np.arange(n + 1) - k - 0.5) * dx
    one = _bin_masses(edges, source, LAPLACE_SCALE if source == "laplace" else 1.0)
    size = 1 << int(math.ceil(math.log2(n)))  # circular convolution on a grid as wide as the support
    # Put the centre bin at index 0 so powers of the spectrum keep the sum centred.
    shifted = np.zeros(size)
    shifted[:k + 1], shifted[size - k:] = one[k:], one[:k]
    spec = np.fft.rfft(shifted)
    interference = spec ** (n_src - 1)
    if sigma2 > 0:
        noise = _bin_masses(edges, "gaussian", math.sqrt(sigma2))
        ns = np.zeros(size)
        ns[:k + 1], ns[size - k:] = noise[k:], noise[:k]
        interference = interference * np.fft.rfft(ns)
    z = np.clip(np.fft.irfft(interference, size), 0, None)
    y = np.clip(np.fft.irfft(interference * spec, size), 0, None)
    return _entropy(y / y.sum()) - _entropy(z / z.sum())


def rho(sigma2: float, n_src: int, source: str = "laplace", dx: float = 2e-3) -> float:
    """rho(sigma^2, C) = I(v; m + n) / I(v; m): the share of the mixture's information about a source that a
    generator with Gaussian error of variance ``sigma2`` keeps (see the module docstring for this reading)."""
    return mutual_information(sigma2, n_src, source, dx) / mutual_information(0.0, n_src, source, dx)


def rho_curve(sigma2s: Sequence[float], n_src: int, source: str = "laplace", dx: float = 2e-3) -> np.ndarray:
    """rho over several noise variances (Figure 1 of the paper for one C)."""
    base = mutual_information(0.0, n_src, source, dx)
    return np.array([mutual_information(float(s), n_src, source, dx) / base for s in sigma2s])


def deterministic_sdr_bound(mutual_info: Union[float, np.ndarray], length: float, width: float,
                            variance: float = 1.0) -> Union[float, np.ndarray]:
    """Eq. 6: SDR <= 10 log10(L / w * Var(v) * I(m_r; v_r)) in dB, for any deterministic separator.

    ``length`` L and segment ``width`` w in the same unit (e.g. samples); ``mutual_info`` I(m_r; v_r) per segment, in
    the unit the caller's estimate uses (the paper inherits it from SepIt [22]).
    """
    for name, val in (("length", length), ("width", width), ("variance", variance)):
        if not val > 0:
            raise ValueError(f"{name} must be positive, got {val!r}")
    mi = np.asarray(mutual_info, dtype=np.float64)
    if np.any(mi <= 0):
        raise ValueError(f"mutual_info must be positive, got {mutual_info!r}")
    out = 10 * np.log10(length / width * variance * mi)
    return float(out) if out.ndim == 0 else out


def generative_sdr_bound(mutual_info: Union[float, np.ndarray], length: float, width: float,
                         variance: float = 1.0, rho_value: float = 1.0) -> Union[float, np.ndarray]:
    """Eq. 21: the deterministic bound plus 10 log10(1 + rho) dB (10 log10 2 = 3.01 dB at the paper's rho = 1).

    Combining a deterministic and a generative estimate at most doubles the usable information (eq. 11); with a
    generator keeping only ``rho`` of it (eq. 19) the gain is 10 log10(1 + rho) -- our generalisation, equal to the
    paper's +3.0 dB for rho = 1.
    """
    if not 0 <= rho_value <= 1:
        raise ValueError(f"rho_value must be in [0, 1], got {rho_value!r}")
    return deterministic_sdr_bound(mutual_info, length, width, variance) + 10 * math.log10(1 + rho_value)
