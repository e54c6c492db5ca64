"""``fastsep eval --data DIR [--model BUNDLE ...]``: the paper's Table 1 on a test set -- each (bundle, mode) scored by
SI-SDR(i) and, on request, BSS Eval SDR/SIR/SAR, PESQ and ESTOI, with 95 % confidence intervals over mixtures, the
paired difference of each mode from the backbone, a JSON summary and a per-mixture CSV.

Several ``--model`` bundles of any method (Separate-And-Diffuse, DiffSep, priors) are scored on the same mixtures
with the same seeds and shown in one table, a row per (bundle, mode); the data are read at the first bundle's rate
and the other bundles resample in and out (:meth:`fastsep.separator.Separator.separate`), so every row is scored on
the same references."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

MODE_LABELS = {"backbone": "B (backbone alone)", "xcorr": "B + GM, xcorr-aligned average (ablation)",
               "full": "B + GM + F (Separate-And-Diffuse)", "diffsep": "DiffSep (score-based SDE)",
               "prior": "diffusion priors, guided solver", "prior-hybrid": "diffusion priors, hybrid step",
               "prior-dsg": "diffusion priors, DSG step", "prior-dps": "diffusion priors, DPS step"}
#: Table headings, in column order (fastsep.metrics.METRIC_COLUMNS).
COLUMN_LABELS = {"si_sdri": "SI-SDRi (dB)", "si_sdr": "SI-SDR (dB)", "sdr": "SDR (dB)", "sir": "SIR (dB)",
                 "sar": "SAR (dB)", "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "estoi": "ESTOI",
                 "si_sdri_seg": "SI-SDRi, talkers matched per 0.5 s (dB)",
                 "speaker_sim": "speaker cosine", "speaker_id": "right talker (share)"}
#: Paired comparisons reported when both modes were scored: does the diffusion stage gain over the backbone?
PAIRS = (("full", "backbone"), ("xcorr", "backbone"))
CI_LEVEL = 0.95
#: What runs without --metrics: SI-SDR(i) and BSS Eval, a fraction of a second per mixture next to the seconds the
#: full mode takes. PESQ (~0.1 s per source) and ESTOI (~0.25 s per source) are opt-in.
DEFAULT_METRICS = "si_sdr,sdr"
#: Paired differences smaller than this (dB, MOS or ESTOI units) are rounding, never called significant.
NEGLIGIBLE = 1e-4


def repeatable_on_cuda(separators) -> None:
    """Make a CUDA evaluation repeat bit for bit, as the CPU's does: cuDNN's deterministic convolution algorithms,
    and fastsep's own kernel for the vocoder's residual stack (the "auto" choice may take cuBLAS/cuDNN, whose TF32
    sums vary from run to run). On an H100, two runs under one seed then agreed exactly in every mode (they differed
    by up to ~2e-4 without). The price: the kernel stack runs where "auto" would have timed the library's as faster."""
    torch.backends.cudnn.deterministic = True
    for sep in separators:
        vocoder = getattr(sep.method, "vocoder", None)
        if vocoder is not None and hasattr(vocoder, "cuda_stack"):
            vocoder.cuda_stack = "kernel"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep eval``."""
    parser.add_argument("--data", required=True, help="wsj0-mix, LibriMix or fastsep-corpus folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--segment", type=float, default=4.0,
                        help="seconds per mixture when mixing a single-talker corpus (default 4, fixed crops); "
                             "0 keeps whole utterances cut to the shorter one; pre-mixed sets are used as they are")
    parser.add_argument("--model", action="extend", nargs="+", default=None, metavar="BUNDLE",
                        help="bundle folder(s) of any method, scored into one table (--model A B or --model A "
                             "--model B; default: the bundled default model); a separator training checkpoint "
                             "(OUT/last, OUT/best) is scored in backbone mode")
    parser.add_argument("--modes", default=None,
                        help="comma-separated modes to score, each in the bundles that offer it, or 'all' "
                             "(default: each bundle's own: backbone,xcorr,full for Separate-And-Diffuse, diffsep, "
                             "prior)")
    parser.add_argument("--max-items", type=int, default=200,
                        help="score the first N mixtures (default 200; 0 scores them all)")
    parser.add_argument("--first-item", type=int, default=0,
                        help="start at this mixture of the fixed list (default 0): a slow method's evaluation split "
                             "into shards that run side by side, each mixture keeping its own index and seed, so "
                             "the shards' CSVs are the rows one run would write")
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling noise seed (vocoder, DiffSep, prior solver): mixture i is separated with "
                             "seed + i (default 0), so runs and bundles agree")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help="comma-separated: si_sdr (SI-SDR and SI-SDRi, always scored), sdr (BSS Eval v4 SDR, "
                             "SIR, SAR), pesq (wide-band at 16 kHz, narrow-band at 8 kHz; pesq_wb / pesq_nb to "
                             "choose), estoi, swaps (SI-SDRi with the talkers matched afresh every 0.5 s: an oracle "
                             "diagnostic whose gap to SI-SDRi is what talker swaps cost), speaker (speaker_sim: "
                             "the cosine between a speaker encoder's embeddings of each output and of its talker; "
                             "speaker_id: the share of outputs that sound more like their own talker than the "
                             "other; needs --speaker-encoder), or all (default: %(default)s). Metrics that cannot "
                             "be computed here are reported absent")
    parser.add_argument("--speaker-encoder", default=None, metavar="DIR",
                        help="speaker encoder for --metrics speaker (a folder of `fastsep import-encoder`)")
    parser.add_argument("--json", default=None,
                        help="write the results here (default: <model>/eval.json for one bundle other than the "
                             "installed default, else ./eval.json)")
    parser.add_argument("--csv", default=None, help="also write one row per mixture and mode here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "auto"], default="float32",
                        help="arithmetic of the vocoder's residual stack and F's convolutions (Separate-And-"
                             "Diffuse): float32 (default: the arithmetic of the README's figures), bfloat16, or "
                             "auto (bfloat16 on CPUs with AMX or AMD's AVX512-BF16, as fastsep separate does)")
    parser.add_argument("--vocoder-quality", action="store_true",
                        help="also score GM's re-synthesis of the clean sources (SI-SDR, log-spectral distance)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (default: a bar on a terminal, else a line on stderr every 10%%)")


class _Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI, nohup) a plain line on stderr every 10 % of the items."""

    def __init__(self, total: int, enabled: Optional[bool]):
        from tqdm.auto import tqdm

        self.total, self.done = total, 0
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc="eval", unit="mix", file=sys.stderr) if enabled is not False and tty \
            else None
        self.lines = enabled is not False and not tty
        self.step = max(1, total // 10)
        self.start = time.monotonic()

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.lines and (self.done % self.step == 0 or self.done == self.total):
            took = time.monotonic() - self.start
            print(f"eval: {self.done}/{self.total} mixtures, {took:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Evaluation:
    """Per-mixture scores of every row: ``scores[row][column][i]`` is mixture i's score (the mean over its sources;
    NaN when no source could be scored). A row is a mode of one bundle: with one bundle its key is the mode (the
    layout eval.json always had), with several ``<bundle>:<mode>``; ``rows_info[row]`` says its ``bundle``,
    ``method`` and ``mode`` (a row without an entry is the mode of that name). ``modes`` lists the rows in table
    order. ``unavailable`` maps columns that cannot be computed here (package missing, rate unsupported) to the
    reason; they have no scores at all and are reported absent. ``pairs``: the paired differences to report (default
    :data:`PAIRS`, those whose two rows were scored)."""

    modes: List[str]
    columns: List[str]
    ids: List[str] = field(default_factory=list)
    scores: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    unavailable: Dict[str, str] = field(default_factory=dict)
    level: float = CI_LEVEL
    rows_info: Dict[str, Dict[str, str]] = field(default_factory=dict)
    pairs: Optional[List[Tuple[str, str]]] = None
    #: wall-clock seconds each row spent separating (scoring excluded), and the seconds of audio it separated: their
    #: ratio is the row's real-time factor on this machine, under whatever else it was running
    seconds: Dict[str, float] = field(default_factory=dict)
    audio_seconds: float = 0.0
    #: the data set's index of the first scored mixture (``--first-item``): mixture i of the run is item first + i
    first_item: int = 0

    @property
    def n(self) -> int:
        return len(self.ids)

    def info(self, row: str) -> Dict[str, str]:
        """``{"bundle", "method", "mode"}`` of a row (bundle and method empty when unknown)."""
        return {"bundle": "", "method": "", "mode": row, **self.rows_info.get(row, {})}

    def labels(self) -> Dict[str, str]:
        """Each row's label in the table: the mode's description, prefixed by the bundle when there are several."""
        bundles = {self.info(r)["bundle"] for r in self.modes}
        out = {}
        for row in self.modes:
            info = self.info(row)
            text = MODE_LABELS.get(info["mode"], info["mode"])
            out[row] = f"{info['bundle']}: {text}" if len(bundles) > 1 else text
        return out

    def summary(self) -> Dict[str, dict]:
        """``{row: {column: mean, column_ci95: [low, high], column_n: scored mixtures, "n": mixtures, "bundle",
        "method", "mode"}}``; an absent column has None for its mean and interval (the interval is also None with a
        single mixture)."""
        from ..metrics import mean_confidence_interval

        out: Dict[str, dict] = {}
        for mode in self.modes:
            row: Dict[str, object] = {}
            for col in self.columns:
                values = self.scores[mode].get(col)
                mean, low, high = mean_confidence_interval(values) if values is not None else (None, None, None)
                row[col] = mean
                row[f"{col}_ci95"] = None if low is None else [low, high]
                row[f"{col}_n"] = 0 if values is None else int(sum(1 for v in values if not math.isnan(v)))
            row["n"] = self.n
            row["rtf"] = self.seconds[mode] / self.audio_seconds if self.audio_seconds and mode in self.seconds \
                else None
            if mode in self.rows_info:
                row.update(self.info(mode))
            out[mode] = row
        return out

    def _pairs(self) -> List[Tuple[str, str]]:
        return [(a, b) for a, b in (PAIRS if self.pairs is None else self.pairs)
                if a in self.scores and b in self.scores]

    def pair_labels(self) -> Dict[str, str]:
        """``{"a-b": "label of a - label of b"}`` for the table (bundle names may hold dashes)."""
        if len({self.info(r)["bundle"] for r in self.modes}) > 1:
            return {f"{a}-{b}": f"{a} - {b}" for a, b in self._pairs()}
        return {f"{a}-{b}": f"{self.info(a)['mode']} - {self.info(b)['mode']}" for a, b in self._pairs()}

    def paired(self, pairs: Optional[Sequence[Tuple[str, str]]] = None) -> Dict[str, dict]:
        """Per-mixture differences ``a - b`` (e.g. full - backbone) with their t interval, for each pair whose two
        rows were scored (default: :attr:`pairs`): ``{"a-b": {column: {"mean", "ci95": [low, high] or None, "n",
        "significant"}}}``.

        Pairing matters: mixtures differ in difficulty far more than modes do, so the interval of the difference is
        much narrower than the two modes' own intervals suggest; ``significant`` says whether it excludes zero.
        """
        from ..metrics import mean_confidence_interval

        out: Dict[str, dict] = {}
        for a, b in (self._pairs() if pairs is None else pairs):
            if a not in self.scores or b not in self.scores:
                continue
            cols: Dict[str, dict] = {}
            for col in self.columns:
                if col in self.unavailable:
                    cols[col] = {"mean": None, "ci95": None, "n": 0, "significant": None}
                    continue
                diffs = [x - y for x, y in zip(self.scores[a][col], self.scores[b][col])
                         if not (math.isnan(x) or math.isnan(y))]
                mean, low, high = mean_confidence_interval(diffs, self.level)
                significant = None
                if low is not None:
                    # Modes that share a stage (full with an untrained F is the backbone) differ by float32
                    # rounding, ~1e-7 dB with no spread: an interval excluding 0 there is no effect.
                    significant = bool((low > 0 or high < 0) and abs(mean) > NEGLIGIBLE)
                cols[col] = {"mean": mean, "ci95": None if low is None else [low, high], "n": len(diffs),
                             "significant": significant}
            out[f"{a}-{b}"] = cols
        return out

    def csv_rows(self) -> Iterable[List[str]]:
        """Header, then one row per mixture and (bundle, mode); absent or unscorable cells are empty, never 0. The
        columns of old files come first (item, id, mode, the metrics), then the method and the bundle."""
        yield ["item", "id", "mode", *self.columns, "method", "bundle"]
        for i, item_id in enumerate(self.ids):
            for mode in self.modes:
                cells = []
                for col in self.columns:
                    values = self.scores[mode].get(col)
                    v = math.nan if values is None else values[i]
                    cells.append("" if math.isnan(v) else f"{v:.6g}")
                info = self.info(mode)
                yield [str(self.first_item + i), item_id, info["mode"], *cells, info["method"], info["bundle"]]


#: One bundle's part in an evaluation: (name, separator, modes to score).
Entry = Tuple[str, object, Sequence[str]]


def default_pairs(entries: Sequence[Entry], key) -> List[Tuple[str, str]]:
    """The paired differences worth reporting: within each Separate-And-Diffuse bundle full - backbone and xcorr -
    backbone; and every row of another method minus the backbone of the first Separate-And-Diffuse bundle that
    scored one (DiffSep or the priors against the supervised backbone, as issues 10 and 11 ask)."""
    pairs: List[Tuple[str, str]] = []
    reference = None
    for name, sep, modes in entries:
        if getattr(sep, "method_name", "separate_and_diffuse") == "separate_and_diffuse":
            pairs += [(key(name, a), key(name, b)) for a, b in PAIRS if a in modes and b in modes]
            if reference is None and "backbone" in modes:
                reference = key(name, "backbone")
    if reference is not None:
        for name, sep, modes in entries:
            if getattr(sep, "method_name", "separate_and_diffuse") != "separate_and_diffuse":
                pairs += [(key(name, m), reference) for m in modes]
    return pairs


def item_range(size: int, max_items: Optional[int] = None, first_item: int = 0) -> range:
    """The items an evaluation scores: ``max_items`` (None or 0: all that are left) from ``first_item`` of a set of
    ``size``."""
    first_item = int(first_item)
    if size == 0:
        raise ValueError("the evaluation set is empty")
    if not 0 <= first_item < size:
        raise ValueError(f"the first item (--first-item) must be in [0, {size}) for this set, got {first_item}")
    left = size - first_item
    return range(first_item, first_item + (left if not max_items else min(left, int(max_items))))


def run_evaluations(entries: Sequence[Entry], dataset, max_items: Optional[int] = None,
                    progress: Optional[bool] = None, seed: int = 0, metrics: Sequence[str] = ("si_sdr",),
                    sample_rate: Optional[int] = None, first_item: int = 0) -> Evaluation:
    """Score each (bundle, mode) of ``entries`` on the first ``max_items`` items ``{"mixture": [T], "sources":
    [C, T]}`` of ``dataset``, at ``sample_rate`` (default: the first separator's; a separator at another rate
    resamples in and out).

    ``metrics`` are names for :func:`fastsep.metrics.expand_metrics` (SI-SDR and SI-SDRi are always scored: old
    readers of eval.json expect them). Each row's estimates are matched to the references once, by the permutation
    maximising SI-SDR, and every metric uses that matching. Mixture i is separated with seed ``seed + i`` in every
    row, so two runs give the same scores. ``max_items``: None or 0 scores every item. ``first_item`` starts at
    that item (a shard of a longer run: item i keeps seed ``seed + i``). Rows are keyed by mode with one entry, by
    ``<name>:<mode>`` with several.
    """
    from ..metrics import expand_metrics, metric_unavailable_reason, separation_scores

    if not entries:
        raise ValueError("nothing to evaluate: give at least one bundle")
    names = [name for name, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"bundle names must be distinct, got {names}")
    rate = int(sample_rate or entries[0][1].sample_rate)
    n_src = {sep.n_src for _, sep, _ in entries}
    if len(n_src) > 1:
        raise ValueError(f"the bundles separate different numbers of talkers ({sorted(n_src)}); one table compares "
                         f"bundles on the same mixtures")
    single = len(entries) == 1

    def key(name: str, mode: str) -> str:
        return mode if single else f"{name}:{mode}"

    columns = expand_metrics(["si_sdr", *metrics], rate)
    items = item_range(len(dataset), max_items, first_item)
    unavailable = {c: r for c in columns if (r := metric_unavailable_reason(c, rate))}
    rows = [key(name, m) for name, _, modes in entries for m in modes]
    info = {key(name, m): {"bundle": name, "method": getattr(sep, "method_name", "separate_and_diffuse"), "mode": m}
            for name, sep, modes in entries for m in modes}
    run = Evaluation(rows, columns, unavailable=unavailable, rows_info=info,
                     pairs=default_pairs(entries, key),
                     scores={r: {c: [] for c in columns if c not in unavailable} for r in rows},
                     first_item=items.start)
    bar = _Progress(len(items), progress)
    for i in items:
        item = dataset[i]
        mix, ref = item["mixture"].float(), item["sources"].float()
        run.ids.append(str(item.get("id", i)))
        for name, separator, modes in entries:
            if ref.shape[0] != separator.n_src:
                raise ValueError(f"item {item.get('id', i)} has {ref.shape[0]} sources; the model separates "
                                 f"{separator.n_src}")
            for mode in modes:
                row = key(name, mode)
                start = time.perf_counter()
                est = separator.separate(mix, mode=mode, seed=seed + i, sample_rate=rate).cpu()
                run.seconds[row] = run.seconds.get(row, 0.0) + time.perf_counter() - start
                scores = separation_scores(est, ref, mix, rate, columns)
                for col, per_source in scores.items():
                    if per_source is None:
                        continue
                    finite = per_source[~torch.isnan(per_source)]
                    # A source P.862 or ESTOI cannot score is left out of its mixture's mean, not counted as zero.
                    run.scores[row][col].append(float(finite.mean()) if finite.numel() else math.nan)
        run.audio_seconds += mix.shape[-1] / rate
        bar.update()
    bar.close()
    return run


def run_evaluation(separator, dataset, modes: Sequence[str] = ("backbone", "xcorr", "full"),
                   max_items: Optional[int] = None, progress: Optional[bool] = None, seed: int = 0,
                   metrics: Sequence[str] = ("si_sdr",)) -> Evaluation:
    """One separator's modes (rows keyed by mode): :func:`run_evaluations` with one entry."""
    name = getattr(separator, "_bundle_dir", None)
    name = os.path.basename(os.path.normpath(name)) if name else "model"
    return run_evaluations([(name, separator, list(modes))], dataset, max_items, progress, seed, metrics)


def evaluate(separator, dataset, modes: Sequence[str] = ("backbone", "xcorr", "full"),
             max_items: Optional[int] = None, progress: Optional[bool] = None, seed: int = 0,
             metrics: Sequence[str] = ("si_sdr",)) -> Dict[str, dict]:
    """Mean scores per mode (``{mode: {"si_sdri", "si_sdr", "n", ...}}``): :meth:`Evaluation.summary` of
    :func:`run_evaluation`, kept for callers that only want the means."""
    return run_evaluation(separator, dataset, modes, max_items, progress, seed, metrics).summary()


def log_spectral_distance(estimate, reference, n_fft: int = 256, hop: int = 64, floor: float = 1e-8) -> float:
    """Log-spectral distance in dB: per frame, the RMS over frequency of the difference of the two log power spectra
    (10 log10), averaged over the reference's frames that are within 60 dB of its loudest (pauses excluded)."""
    window = torch.hann_window(n_fft)
    spec = [torch.stft(x.float(), n_fft, hop, window=window, return_complex=True).abs().pow(2)
            for x in (estimate, reference)]
    est_db, ref_db = (10 * torch.log10(p + floor) for p in spec)
    frame_db = 10 * torch.log10(spec[1].sum(-2) + floor)
    active = frame_db > frame_db.max() - 60
    per_frame = (est_db - ref_db).pow(2).mean(-2).sqrt()
    return float(per_frame[active].mean())


def vocoder_quality(separator, dataset, max_items: Optional[int] = None, seed: int = 0,
                    first_item: int = 0) -> Dict[str, float]:
    """How well GM re-synthesises clean speech: mean SI-SDR (dB) and log-spectral distance (dB) of
    ``vocoder.vocode(source)`` against each clean source of ``max_items`` items from ``first_item`` (at the level
    the separator feeds its models, seeded per source)."""
    from ..metrics import si_sdr

    if separator.vocoder is None:
        raise ValueError("this bundle has no vocoder")
    sdr, lsd, count = 0.0, 0.0, 0
    for i in item_range(len(dataset), max_items, first_item):
        for k, src in enumerate(dataset[i]["sources"].float()):
            level = src.pow(2).mean().sqrt().clamp_min(1e-8)
            x = src * (0.08 / level)
            with torch.no_grad():
                y = separator.vocoder.vocode(x, seed=seed + 1000 * i + k)
            sdr += float(si_sdr(y, x))
            lsd += log_spectral_distance(y, x)
            count += 1
    return {"si_sdr": sdr / count, "lsd_db": lsd / count, "n_sources": count}


def _cell(col: str, mean: Optional[float], ci: Optional[Sequence[float]], signed: bool = False) -> str:
    if mean is None:
        return "absent"
    digits = 3 if col == "estoi" else 2
    sign = "+" if signed else ""
    text = f"{mean:{sign}.{digits}f}"
    if ci is not None:
        text += f" ± {(ci[1] - ci[0]) / 2:.{digits}f}"
    return text


def format_table(results: Dict[str, dict], paired: Optional[Dict[str, dict]] = None,
                 unavailable: Optional[Dict[str, str]] = None, labels: Optional[Dict[str, str]] = None,
                 pair_labels: Optional[Dict[str, str]] = None) -> str:
    """A plain-text table like the paper's Table 1: one row per (bundle,) mode, one column per metric, each cell the
    mean ± the half-width of its 95 % t interval over mixtures; then the paired differences (``*``: the interval
    excludes 0), and why absent columns are absent. ``labels``/``pair_labels``: row texts (default: the mode's
    description, "a - b"; :meth:`Evaluation.labels` and :meth:`Evaluation.pair_labels` give them for several
    bundles)."""
    columns = [c for c in COLUMN_LABELS if c in next(iter(results.values()))]
    labels = {m: (labels or {}).get(m, MODE_LABELS.get(m, m)) for m in results}
    pair_labels = {k: (pair_labels or {}).get(k) or "{} - {}".format(*k.split("-", 1)) for k in (paired or {})}
    width = max(len(x) for x in ["Method", *labels.values(), *pair_labels.values()])
    body = {m: [_cell(c, r[c], r.get(f"{c}_ci95")) for c in columns] for m, r in results.items()}
    for key, cols in (paired or {}).items():
        body[key] = [_cell(c, cols[c]["mean"], cols[c]["ci95"], signed=True) + ("*" if cols[c]["significant"]
                                                                                else "") for c in columns]
    widths = [max(len(COLUMN_LABELS[c]), *(len(cells[j]) for cells in body.values())) for j, c in enumerate(columns)]

    def line(label: str, cells: Sequence[str]) -> str:
        return (f"{label:<{width}}" + "".join(f"  {cell:>{w}}" for cell, w in zip(cells, widths))).rstrip()

    rule = "-" * (width + sum(w + 2 for w in widths))
    lines = [line("Method", [COLUMN_LABELS[c] for c in columns]), rule]
    lines += [line(labels[m], body[m]) for m in results]
    n = next(iter(results.values()))["n"]
    lines.append(f"(mean ± half-width of the 95% t interval over {n} mixtures)")
    if paired:
        lines += ["", "Paired difference", rule]
        lines += [line(pair_labels[k], body[k]) for k in paired]
        lines.append("(per-mixture difference, mean ± 95% t interval; * the interval excludes 0)")
    for col, reason in (unavailable or {}).items():
        lines.append(f"{COLUMN_LABELS[col]} absent: {reason}")
    rtf = [f"{labels[m]} {r['rtf']:.3g}" for m, r in results.items() if r.get("rtf") is not None]
    if rtf:
        lines.append("separation time per second of audio (this machine, as loaded while scoring): " + ", ".join(rtf))
    return "\n".join(lines)


def bundle_names(paths: Sequence[Optional[str]]) -> List[str]:
    """A short, distinct name per bundle for the table, the JSON and the CSV: the folder's name ("default" for the
    bundled model), with "-2", "-3", ... for repeats. Names only: absolute paths would record this machine's
    layout in files meant to be shared."""
    names: List[str] = []
    for path in paths:
        base = "default" if path is None else os.path.basename(os.path.normpath(path)) or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def select_modes(entries: Sequence[Tuple[str, object]], spec: Optional[str]) -> List[List[str]]:
    """The modes to score per bundle: its default modes (``spec`` None), all it offers (``"all"``), or those of the
    comma-separated ``spec`` that it offers. ValueError when a listed mode is offered by no bundle, or a bundle is
    left with nothing to score."""
    if spec is None:
        return [list(sep.method.default_modes) for _, sep in entries]
    wanted = [m.strip() for m in spec.split(",") if m.strip()]
    if wanted == ["all"]:
        return [list(sep.method.default_modes) + [m for m in sep.modes if m not in sep.method.default_modes]
                for _, sep in entries]
    offered = ", ".join(f"{name}: {','.join(sep.modes)}" for name, sep in entries)
    if not wanted:
        raise ValueError(f"--modes must list modes (or 'all'); offered: {offered}")
    unknown = [m for m in wanted if not any(m in sep.modes for _, sep in entries)]
    if unknown:
        raise ValueError(f"--modes: no bundle offers {', '.join(unknown)} (offered: {offered})")
    out = [[m for m in wanted if m in sep.modes] for _, sep in entries]
    for (name, sep), modes in zip(entries, out):
        if not modes:
            raise ValueError(f"--modes {spec!r} leaves nothing to score in bundle {name} (it offers "
                             f"{', '.join(sep.modes)})")
    return out


def main(args: argparse.Namespace) -> int:
    from ..metrics import use_speaker_encoder

    try:
        return _main(args)
    finally:
        use_speaker_encoder(None)  # --speaker-encoder holds for this run only (the CLI's main is also a library call)


def _main(args: argparse.Namespace) -> int:
    import csv
    import io

    from ..bundle import bundle_method, is_bundle
    from ..data import open_mixture_dataset
    from ..data.manifest import find_manifest
    from ..fileio import atomic_write_bytes, atomic_write_json
    from ..metrics import expand_metrics
    from ..separator import Separator

    metric_names = [m for m in (args.metrics or "").split(",") if m.strip()]
    try:
        expand_metrics(metric_names, 16000)  # names checked before the model loads
    except ValueError as exc:
        print(f"fastsep eval: --metrics: {exc}", file=sys.stderr)
        return 2
    if args.speaker_encoder:
        from ..metrics import use_speaker_encoder
        from ..models.io import load_model

        try:
            use_speaker_encoder(load_model(args.speaker_encoder))
        except (FileNotFoundError, ValueError) as exc:
            print(f"fastsep eval: --speaker-encoder: {exc}", file=sys.stderr)
            return 2
    paths: List[Optional[str]] = list(args.model) if args.model else [None]
    names = bundle_names(paths)
    try:
        entries = []
        for name, path in zip(names, paths):
            sad = path is None or not is_bundle(path) or bundle_method(path) == "separate_and_diffuse"
            # --precision is the vocoder's and F's: it applies to Separate-And-Diffuse bundles only
            precision = {"vocoder_precision": args.precision, "combiner_precision": args.precision} if sad else {}
            entries.append((name, Separator.from_pretrained(path, device=args.device, **precision)))
        if torch.device(args.device).type == "cuda":
            repeatable_on_cuda(sep for _, sep in entries)
        modes = select_modes(entries, args.modes)
        first = entries[0][1]
        if args.segment < 0:
            raise ValueError(f"--segment must be >= 0 seconds, got {args.segment}")
        segment = args.segment or None
        if find_manifest(args.data) is None:
            segment = None  # LibriMix / wsj0-mix: the published mixtures, whole
        data = open_mixture_dataset(args.data, n_src=first.n_src, sample_rate=first.sample_rate, segment=segment,
                                    split=args.split, fixed=True)  # the same mixtures for every model and run
        if args.max_items < 0:
            raise ValueError(f"--max-items must be >= 0, got {args.max_items}")
        total = len(data)
        run = run_evaluations([(name, sep, m) for (name, sep), m in zip(entries, modes)], data, args.max_items,
                              progress=False if args.no_progress else None, seed=args.seed, metrics=metric_names,
                              sample_rate=first.sample_rate, first_item=args.first_item)
        vocoder = {}
        if args.vocoder_quality:
            with_gm = [(name, sep) for name, sep in entries if sep.vocoder is not None]
            if not with_gm:
                raise ValueError("--vocoder-quality: no bundle has a vocoder")
            vocoder = {name: vocoder_quality(sep, data, args.max_items, args.seed, args.first_item)
                       for name, sep in with_gm}
    except (FileNotFoundError, ValueError) as exc:
        print(f"fastsep eval: {exc}", file=sys.stderr)
        return 2
    results, paired = run.summary(), run.paired()
    print(format_table(results, paired, run.unavailable, run.labels(), run.pair_labels()))
    for name, quality in vocoder.items():
        whose = f" ({name})" if len(entries) > 1 else ""
        print(f"vocoder re-synthesis of the clean sources{whose}: SI-SDR {quality['si_sdr']:.2f} dB, log-spectral "
              f"distance {quality['lsd_db']:.2f} dB ({quality['n_sources']} sources)")
    shard = f" from mixture {run.first_item}" if run.first_item else ""
    print(f"sampling noise: mixture i seeded with {args.seed} + i; scored {run.n} of {total} mixtures{shard}"
          + (" (--max-items 0 scores all)" if run.n < total else ""))
    from ..bundle import is_bundle

    # beside a single bundle; never inside a training checkpoint (its folder is training state) nor inside the
    # package's installed default (shipped files, maybe read-only)
    from ..separator import DEFAULT_BUNDLE

    single = len(entries) == 1
    beside = (single and args.model and is_bundle(args.model[0])
              and os.path.realpath(args.model[0]) != os.path.realpath(DEFAULT_BUNDLE))
    out = args.json or os.path.join(args.model[0] if beside else ".", "eval.json")
    summary = {"data": os.path.basename(os.path.normpath(args.data)), "split": args.split, "segment": segment,
               "seed": args.seed, "items": run.n, "first_item": run.first_item, "items_available": total,
               "sample_rate": first.sample_rate,
               "n_src": first.n_src, "metrics": run.columns, "ci_level": run.level,
               "bundles": [{"name": name, "method": sep.method_name, "sample_rate": sep.sample_rate,
                            "modes": list(m)} for (name, sep), m in zip(entries, modes)],
               "results": results, "paired": paired, "unavailable": run.unavailable}
    if vocoder:
        # one bundle: the figures themselves, as before; several: by bundle name
        summary["vocoder_resynthesis"] = next(iter(vocoder.values())) if single else vocoder
    atomic_write_json(out, summary)
    print(f"results written to {out}")
    if args.csv:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(run.csv_rows())
        atomic_write_bytes(args.csv, buf.getvalue().encode())
        print(f"per-mixture scores written to {args.csv}")
    return 0
