"""Figures: the paper's analysis (:mod:`fastsep.bounds`) and labelled spectrograms, drawn with matplotlib.

matplotlib is optional: nothing here imports it until a figure is drawn, and :func:`require_matplotlib` turns its
absence into one clear error. Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly rather
than through pyplot, so drawing one never switches the caller's (e.g. a notebook's) pyplot backend or leaves
figures open in pyplot's registry.
"""
from __future__ import annotations

import io
import math
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Measured", "bounds_figure", "spectrogram_figure", "demo_panels", "save_figure", "require_matplotlib",
           "MatplotlibMissing", "roofline_figure", "throughput_figure", "learning_curves_figure",
           "CheckpointScore", "checkpoint_scores_figure"]


class MatplotlibMissing(ImportError):
    """matplotlib is needed for this figure and is not installed."""


def require_matplotlib():
    """Import matplotlib, or raise :class:`MatplotlibMissing` saying how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise MatplotlibMissing("matplotlib is needed for figures: pip install matplotlib") from exc
    return matplotlib


def save_figure(fig, path: str, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically (a killed run never leaves half an image)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .fileio import atomic_write_bytes

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------------------- bounds
class Measured(NamedTuple):
    """A measured SI-SDR (dB) of some separator on ``n_src``-talker mixtures, drawn against the bounds."""

    n_src: int
    si_sdr: float
    label: str


def bounds_figure(measured: Iterable[Measured] = (), n_srcs: Sequence[int] = tuple(range(2, 21)),
                  sigma2s: Optional[Sequence[float]] = None, length_s: float = 4.0, segment_ms: float = 20.0,
                  rho_value: float = 1.0):
    """Two panels: rho(sigma^2) for each C in ``n_srcs`` (the paper's Figure 1), and the eq. 6 / eq. 21 SDR bounds
    against C with the ``measured`` values marked.

    The bounds are ``10 log10(L/w · Var(v) · I(v; m))`` (+ ``10 log10(1 + rho)`` for eq. 21) with unit-variance
    sources, ``I`` from :func:`fastsep.bounds.mutual_information` in nats, ``L/w`` = ``length_s`` over
    ``segment_ms``: their absolute level rests on those choices (see fastsep.bounds), their gap on rho alone.
    """
    matplotlib = require_matplotlib()
    from matplotlib import cm, colors, ticker
    from matplotlib.figure import Figure

    from . import bounds

    n_srcs = sorted(int(c) for c in n_srcs)
    if not n_srcs:
        raise ValueError("n_srcs must name at least one number of sources")
    sigma2s = np.logspace(-4, 1, 26) if sigma2s is None else np.asarray(sigma2s, dtype=np.float64)
    measured = list(measured)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_rho, ax_sdr = fig.subplots(1, 2)

    norm = colors.Normalize(vmin=min(n_srcs), vmax=max(max(n_srcs), min(n_srcs) + 1))
    cmap = matplotlib.colormaps["viridis"]
    for c in n_srcs:
        ax_rho.plot(sigma2s, bounds.rho_curve(sigma2s, c), color=cmap(norm(c)), lw=1.4)
    ax_rho.set_xscale("log")
    ax_rho.set_xlabel("generator noise variance $\\sigma^2$")
    ax_rho.set_ylabel("$\\rho = I(v; m + n) \\,/\\, I(v; m)$")
    ax_rho.set_title("Information a noisy generator keeps (Fig. 1)")
    ax_rho.axvline(1e-2, color="0.6", ls=":", lw=1)
    ax_rho.text(1.1e-2, 0.02, "$\\sigma^2 = 10^{-2}$", color="0.4", fontsize=8)
    ax_rho.set_ylim(0, 1.02)
    ax_rho.grid(True, which="major", alpha=0.3)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_rho)
    bar.set_label("number of talkers C")

    grid = list(range(min(n_srcs + [m.n_src for m in measured]), max(n_srcs + [m.n_src for m in measured]) + 1))
    info = np.array([bounds.mutual_information(0.0, c) for c in grid])
    ratio = length_s * 1000.0 / segment_ms
    det = bounds.deterministic_sdr_bound(info, ratio, 1.0)
    gen = bounds.generative_sdr_bound(info, ratio, 1.0, rho_value=rho_value)
    ax_sdr.plot(grid, det, "-", color="tab:blue", lw=2, label="eq. 6: deterministic separators")
    ax_sdr.plot(grid, gen, "--", color="tab:orange", lw=2,
                label=f"eq. 21: deterministic + generative ($\\rho$ = {rho_value:g}, +{10 * math.log10(1 + rho_value):.2f} dB)")
    ax_sdr.fill_between(grid, det, gen, color="tab:orange", alpha=0.12)
    markers = "osD^vP*X"
    for k, m in enumerate(measured):
        # spread points that share a C sideways so that none hides another
        same = [x for x in measured if x.n_src == m.n_src]
        shift = 0.12 * (same.index(m) - (len(same) - 1) / 2)
        ax_sdr.plot([m.n_src + shift], [m.si_sdr], markers[k % len(markers)], ms=8, label=f"measured: {m.label} "
                    f"({m.si_sdr:.2f} dB)")
    ax_sdr.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax_sdr.set_xlabel("number of talkers C")
    ax_sdr.set_ylabel("SDR (dB)")
    ax_sdr.set_title(f"Upper bounds on SDR ({length_s:g} s signals, {segment_ms:g} ms segments)")
    ax_sdr.grid(True, alpha=0.3)
    ax_sdr.legend(fontsize=8, loc="upper right")
    return fig


# ------------------------------------------------------------------------------------------------------ spectrogram
def _log_spectrogram(wave, sample_rate: int) -> Tuple[np.ndarray, float]:
    """``(dB [F, K], hop seconds)``: a ~32 ms Hann window, 75 % overlap, magnitudes in dB re full scale 1."""
    import torch

    n_fft = 1 << max(6, round(math.log2(0.032 * sample_rate)))
    hop = n_fft // 4
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    # normalised by the window's sum so that a full-scale sinusoid reads about 0 dB
    db = 20 * torch.log10(spec / (0.5 * n_fft) + 1e-10)
    return db.numpy(), hop / sample_rate


def spectrogram_figure(rows: Sequence[Sequence[Tuple[str, object]]], sample_rate: int, floor_db: float = 80.0,
                       title: Optional[str] = None):
    """Spectrograms on a grid: ``rows`` is a list of rows, each a list of ``(title, wave [T])`` panels; a row with a
    single panel spans the full width. Every panel has time (s) and frequency (kHz) axes and shares one dB colour
    scale (``floor_db`` below the loudest bin of all panels), shown by one colour bar, so panels compare directly.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    rows = [list(r) for r in rows if len(r)]
    if not rows:
        raise ValueError("spectrogram_figure needs at least one panel")
    n_cols = max(len(r) for r in rows)
    specs = [[(name, *_log_spectrogram(w, sample_rate)) for name, w in r] for r in rows]
    top = max(float(s.max()) for r in specs for _, s, _ in r)
    fig = Figure(figsize=(6.2 * n_cols, 2.3 * len(rows) + (0.5 if title else 0.2)), layout="constrained")
    grid = fig.add_gridspec(len(rows), n_cols)
    image = None
    first = None
    for i, row in enumerate(specs):
        for j, (name, db, hop_s) in enumerate(row):
            where = grid[i, :] if len(row) == 1 else grid[i, j]
            ax = fig.add_subplot(where, sharey=first)
            first = first or ax
            extent = (0.0, db.shape[1] * hop_s, 0.0, sample_rate / 2000.0)
            image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=top - floor_db,
                              vmax=top, interpolation="nearest")
            ax.set_title(name, fontsize=10, loc="left")
            ax.set_ylabel("frequency (kHz)")
            ax.set_xlabel("time (s)" if i == len(specs) - 1 else "")
    bar = fig.colorbar(image, ax=fig.axes, shrink=0.6, pad=0.01)
    bar.set_label("level (dB re full scale)")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def demo_panels(mixture, references: Sequence, estimates: Sequence[Tuple[str, Sequence, Sequence[float]]]
                ) -> List[List[Tuple[str, object]]]:
    """Rows for the demo's figure: the mixture across the top, the references side by side, then one row per mode
    with each talker's estimate under its reference, its SI-SDRi in the panel's title."""
    rows: List[List[Tuple[str, object]]] = [[("Mixture (input)", mixture)]]
    rows.append([(f"Reference, talker {k + 1}", r) for k, r in enumerate(references)])
    for label, waves, gains in estimates:
        rows.append([(f"{label}: talker {k + 1}   SI-SDRi {g:+.2f} dB", w) for k, (w, g) in enumerate(zip(waves, gains))])
    return rows


# --------------------------------------------------------------------------------------------------------- roofline
def roofline_figure(report: dict):
    """Two bar panels from :func:`fastsep.roofline.roofline`'s report, one bar per stage in pipeline order: the
    stage's time (and its share of the total), and its achieved rate as a percentage of the attainable figure
    (FLOP/s stages against the GEMM yardstick, bytes/s stages against a copy of the same bytes), coloured by kind.
    Stages without a count (no FLOP counter for that model) show an empty bar marked "n/a"."""
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = list(report.get("stages") or [])
    if not rows:
        raise ValueError("roofline_figure: the report has no stages")
    names = [r["stage"] for r in rows]
    colours = {"flops": "tab:blue", "bytes": "tab:orange"}
    colour = [colours.get(r["kind"], "0.5") for r in rows]
    y = np.arange(len(rows))[::-1]  # first stage on top
    fig = Figure(figsize=(12, 0.45 * len(rows) + 2.2), layout="constrained")
    ax_t, ax_f = fig.subplots(1, 2, sharey=True)

    times = [1e3 * r["seconds"] for r in rows]
    ax_t.barh(y, times, color=colour)
    for yy, t, r in zip(y, times, rows):
        ax_t.text(t, yy, f" {t:.4g} ms ({100 * (r.get('share') or 0):.1f} %)", va="center", fontsize=8)
    ax_t.set_yticks(y, names)
    ax_t.set_xlabel("time (ms)")
    ax_t.set_xlim(0, max(times) * 1.45 if max(times) > 0 else 1)
    # Two lines: on one, the floor ran into the other panel's title.
    ax_t.set_title(f"time per stage: {report['seconds_audio']:g} s of audio x batch {report['batch']}\n"
                   f"total {report['total_s']:.3g} s, RTF {report['rtf']:.3g}"
                   + (f"; at the roof RTF {report['floor_rtf']:.3g}" if report.get("floor_rtf") is not None else ""),
                   fontsize=10, loc="left")

    # A logarithmic axis: stages span from a fraction of a percent to near the roof.
    known = [100 * r["fraction"] for r in rows if r.get("fraction")]
    low = 10 ** math.floor(math.log10(min(known + [100.0]) / 2))
    fractions = [100 * r["fraction"] if r.get("fraction") else low for r in rows]
    ax_f.barh(y, [f - low for f in fractions], color=colour, left=low)
    for yy, f, r in zip(y, fractions, rows):
        ax_f.text(f, yy, " n/a" if not r.get("fraction") else f" {f:.2g} %", va="center", fontsize=8)
    ax_f.set_xscale("log")
    ax_f.set_xlabel("achieved rate, % of attainable (log scale)")
    ax_f.set_xlim(low, max(200.0, max(fractions) * 2))
    ax_f.axvline(100, color="0.2", lw=1)
    ax_f.axvline(50, color="0.5", ls=":", lw=1)
    m = report["machine"]
    g16 = m.get("gemm_bfloat16")
    ax_f.set_title(f"float32 GEMM {m['gemm_float32']['flops_per_s'] / 1e9:.1f} GFLOP/s"
                   + (f", bf16 {g16['flops_per_s'] / 1e9:.1f}" if g16 else "")
                   + f"\ncopy {m['copy']['bytes_per_s'] / 1e9:.1f} GB/s ({m['threads']} threads)",
                   fontsize=10, loc="left")
    # below the fraction panel, where no bar or label can be hidden by it
    ax_f.legend(handles=[Patch(color=colours["flops"], label="FLOP/s vs the GEMM yardstick"),
                         Patch(color=colours["bytes"], label="bytes/s vs a copy of the same bytes")],
                fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    for ax in (ax_t, ax_f):
        ax.grid(True, axis="x", alpha=0.3)
    return fig


def throughput_figure(results: Sequence[dict], title: str = "directory separation"):
    """Bars of files/hour and CPU busy fraction per (mode, variant) from ``benchmarks/bench_directory.py``'s
    results (each a dict with ``mode``, ``variant``, ``files_per_hour``, ``cpu_busy``)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    results = list(results)
    if not results:
        raise ValueError("throughput_figure: no results")
    labels = [f"{r['mode']}\n{r['variant']}" for r in results]
    x = np.arange(len(results))
    colour = ["tab:blue" if r["variant"] == "sequential" else "tab:green" for r in results]
    fig = Figure(figsize=(max(6, 1.6 * len(results) + 2), 4), layout="constrained")
    ax_r, ax_b = fig.subplots(1, 2)
    ax_r.bar(x, [r["files_per_hour"] for r in results], color=colour)
    ax_r.set_xticks(x, labels, fontsize=8)
    ax_r.set_ylabel("files / hour")
    ax_b.bar(x, [100 * r["cpu_busy"] for r in results], color=colour)
    ax_b.set_xticks(x, labels, fontsize=8)
    ax_b.set_ylabel("CPU busy (% of wall x cores)")
    ax_b.axhline(90, color="0.5", ls=":", lw=1)
    ax_b.set_ylim(0, 105)
    for ax in (ax_r, ax_b):
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------ learning curves
def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Trailing mean over up to ``width`` points (the first points average what exists so far)."""
    if width <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - width)
    return (csum[idx] - csum[lo]) / (idx - lo)


def learning_curves_figure(logs: Sequence, smooth: int = 10, title: Optional[str] = None, x: str = "step"):
    """Three panels sharing the step axis (``x="cpu"``: the CPU minutes each run had used by then, for runs of
    models that cost differently per step), one colour per run (:class:`fastsep.train.logs.TrainingLog`): the training
    loss (raw records faint, a trailing mean over ``smooth`` records bold), the monitored validation metric with the
    best point ringed, and the learning rate (log scale). Restarts are marked as dotted lines on the loss panel,
    since a resumed run's data, schedule or monitor may have changed there."""
    require_matplotlib()
    from matplotlib.figure import Figure

    logs = list(logs)
    if not logs:
        raise ValueError("learning_curves_figure: no runs")
    if not any(log.train or log.valid for log in logs):
        raise ValueError("learning_curves_figure: the logs hold no training or validation records")
    if x not in ("step", "cpu"):
        raise ValueError(f"learning_curves_figure: x must be 'step' or 'cpu', got {x!r}")

    def where(log, steps):
        return log.cpu_minutes(steps) if x == "cpu" else np.asarray(steps, dtype=np.float64)

    fig = Figure(figsize=(10, 8.5), layout="constrained")
    ax_loss, ax_valid, ax_lr = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.3]})
    colours = [f"C{i % 10}" for i in range(len(logs))]
    monitors = sorted({log.monitor for log in logs if log.monitor})
    for log, colour in zip(logs, colours):
        if log.train:
            steps, loss = (np.asarray(v, dtype=np.float64) for v in zip(*log.train))
            steps = where(log, steps)
            ax_loss.plot(steps, loss, color=colour, alpha=0.25, lw=0.8)
            ax_loss.plot(steps, _moving_average(loss, smooth), color=colour, lw=1.8, label=log.name)
            for step in where(log, log.restarts[1:]):
                ax_loss.axvline(step, color=colour, ls=":", lw=0.8, alpha=0.7)
        if log.valid:
            steps, value = zip(*log.valid)
            ax_valid.plot(where(log, steps), value, "o-", color=colour, ms=3, lw=1.2, label=log.name)
            best = log.best_valid()
            best = (float(where(log, [best[0]])[0]), best[1])
            ax_valid.plot([best[0]], [best[1]], "o", ms=9, mfc="none", mec=colour, mew=1.5)
            ax_valid.annotate(f"{best[1]:.3g}", best, textcoords="offset points", xytext=(4, 6), fontsize=8,
                              color=colour)
        if log.lr:
            steps, lr = zip(*log.lr)
            ax_lr.step(where(log, steps), lr, where="post", color=colour, lw=1.2)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"training loss (faint: each log record; bold: trailing mean of {smooth})", fontsize=10,
                      loc="left")
    ax_valid.set_ylabel(", ".join(monitors) if monitors else "validation")
    ax_valid.set_title("validation (ringed: best)", fontsize=10, loc="left")
    if any(log.lr for log in logs):
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step" if x == "step" else "CPU minutes used (all threads of the training process)")
    for ax in (ax_loss, ax_valid, ax_lr):
        ax.grid(True, alpha=0.3)
    for ax in (ax_loss, ax_valid):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


class CheckpointScore(NamedTuple):
    """One model's score on one test set: ``step`` is the training step of a checkpoint, or None for a reference
    model (a bundle, an average) drawn as a level line across the steps."""
    name: str
    step: Optional[int]
    mean: float
    low: float
    high: float


def checkpoint_scores_figure(panels: Sequence[Tuple[str, Sequence[CheckpointScore]]], metric: str = "SI-SDRi (dB)",
                             title: Optional[str] = None):
    """One panel per test set: the checkpoints' scores against their step (mean with its 95 % interval as a band)
    and each reference model as a dashed level line with its label, so that a reader sees at once whether more
    training moved the score on unseen voices and where it stands against the shipped model."""
    require_matplotlib()
    from matplotlib.figure import Figure

    panels = [(label, list(scores)) for label, scores in panels]
    if not panels:
        raise ValueError("checkpoint_scores_figure: no test sets")
    fig = Figure(figsize=(8, 2.2 + 2.0 * len(panels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    for ax, (label, scores) in zip(axes, panels):
        steps = sorted((s for s in scores if s.step is not None), key=lambda s: s.step)
        if steps:
            x = [s.step for s in steps]
            ax.fill_between(x, [s.low for s in steps], [s.high for s in steps], color="C0", alpha=0.15, lw=0)
            ax.plot(x, [s.mean for s in steps], "o-", color="C0", ms=4, lw=1.5, label="checkpoints")
        for i, ref in enumerate(s for s in scores if s.step is None):
            colour = f"C{(i + 1) % 10}"
            ax.axhline(ref.mean, color=colour, ls="--", lw=1.2, label=f"{ref.name} {ref.mean:.2f}")
            ax.axhspan(ref.low, ref.high, color=colour, alpha=0.07, lw=0)
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("training step")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------------------ swaps
def swap_map_figure(margins: Sequence[Sequence[float]], labels: Sequence[str], segment_seconds: float,
                    title: Optional[str] = None, limit_db: float = 15.0):
    """Mixtures as rows, ``segment_seconds`` segments as columns, each cell the match margin of
    :func:`fastsep.metrics.segment_match_margins` (blue: the segment agrees with the whole mixture's match of
    estimates to talkers; red: its talkers are swapped against it). A row that turns from blue to red is a
    separator handing a talker from one output to the other partway through."""
    require_matplotlib()
    from matplotlib.figure import Figure

    rows = [np.asarray(m, dtype=np.float64) for m in margins]
    if not rows or len(rows) != len(labels):
        raise ValueError(f"swap_map_figure: {len(rows)} rows of margins for {len(labels)} labels")
    width = max(len(r) for r in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        grid[i, :len(r)] = r
    fig = Figure(figsize=(1.6 + 0.45 * width, 1.2 + 0.22 * len(rows)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-limit_db, vmax=limit_db, interpolation="nearest",
                      extent=(0.0, width * segment_seconds, len(rows) - 0.5, -0.5))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("time in the mixture (s)")
    fig.colorbar(image, ax=ax, label="match margin (dB): + as the whole mixture, - swapped")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
