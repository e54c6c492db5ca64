"""``fastsep demo``: mix the two bundled talkers, separate them with each mode, print SI-SDRi, write WAVs and a PNG.

The example utterances are in ``fastsep/assets``. The spectrogram figure (fastsep.plots) needs matplotlib; without it
the demo still separates, scores and writes the WAVs, and says why there is no figure.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
TALKERS = ("talker1.wav", "talker2.wav")
#: How each mode is named in the figure's panel titles.
MODE_TITLES = {"backbone": "Backbone B", "xcorr": "xcorr ablation (B + GM averaged)", "full": "Full (B + GM + F)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep demo``."""
    parser.add_argument("-o", "--out", default="fastsep-demo",
                        help="folder for the WAVs and spectrogram.png (mixture, references, each mode's estimates)")
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--snr", type=float, default=0.0, help="level of talker 1 over talker 2 in dB")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="vocoder noise seed (xcorr and full modes; default 0)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="arithmetic of the vocoder's residual stack and F's convolutions (Separate-And-"
                             "Diffuse): auto (default) takes bfloat16 on CPUs with AMX (2-3x faster) and AMD CPUs "
                             "with AVX512-BF16 (1.5-1.9x), at the same quality, and float32 elsewhere")


# ------------------------------------------------------------------------------------------------------------ main
def make_mixture(sample_rate: int, snr_db: float = 0.0):
    """The two bundled talkers at ``sample_rate``, scaled to ``snr_db`` and summed: (mixture [T], sources [2, T])."""
    from ..audio import load

    waves = [load(os.path.join(ASSETS, name), sample_rate=sample_rate)[0] for name in TALKERS]
    length = min(w.shape[-1] for w in waves)
    s1, s2 = (w[:length] for w in waves)
    s1 = s1 / s1.norm().clamp_min(1e-8)
    s2 = s2 / s2.norm().clamp_min(1e-8) * 10 ** (-snr_db / 20)
    sources = torch.stack([s1, s2])
    mixture = sources.sum(0)
    peak = float(mixture.abs().max())
    scale = 0.5 / peak  # headroom for 16-bit files
    return mixture * scale, sources * scale


def main(args: argparse.Namespace) -> int:
    from ..audio import save
    from ..metrics import pit, si_sdr
    from ..plots import MatplotlibMissing, demo_panels, save_figure, spectrogram_figure
    from ..separator import MODES, Separator

    try:
        sep = Separator.from_pretrained(args.model, device=args.device, vocoder_precision=args.precision,
                                        combiner_precision=args.precision)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fastsep demo: {exc}", file=sys.stderr)
        return 2
    if sep.n_src != 2:
        print(f"fastsep demo: the demo mixes two talkers; this model separates {sep.n_src}", file=sys.stderr)
        return 2
    mixture, sources = make_mixture(sep.sample_rate, args.snr)
    os.makedirs(args.out, exist_ok=True)
    save(os.path.join(args.out, "mixture.wav"), mixture, sep.sample_rate)
    for i, s in enumerate(sources):
        save(os.path.join(args.out, f"reference_s{i + 1}.wav"), s, sep.sample_rate)
    base = si_sdr(mixture.expand_as(sources), sources)
    estimates = []  # (label, matched estimates, SI-SDRi per talker) for the figure
    print(f"two-talker mixture of {mixture.shape[-1] / sep.sample_rate:.1f} s at {sep.sample_rate} Hz "
          f"(input SI-SDR {float(base.mean()):.2f} dB)")
    print(f"vocoder noise seed {args.seed} (--seed); estimates at the mixture's level")
    print(f"{'mode':<10}{'SI-SDRi s1':>12}{'SI-SDRi s2':>12}{'mean':>8}")
    for mode in MODES:
        try:
            est = sep.separate(mixture, mode=mode, seed=args.seed).cpu()
        except ValueError as exc:  # e.g. a bundle without vocoder or combiner
            print(f"{mode:<10}  unavailable: {exc}")
            continue
        matched, _ = pit(est[None], sources[None])
        gain = si_sdr(matched[0], sources) - base
        print(f"{mode:<10}{float(gain[0]):>12.2f}{float(gain[1]):>12.2f}{float(gain.mean()):>8.2f}")
        peak = float(matched[0].abs().max())
        scale = 1.0 if peak <= 1.0 else 1.0 / peak  # one factor for both talkers, and only if one would clip
        if scale < 1.0:
            print(f"{'':<10}  (both talkers scaled by {scale:.3f} so that neither clips)")
        for i, e in enumerate(matched[0]):
            save(os.path.join(args.out, f"{mode}_s{i + 1}.wav"), e * scale, sep.sample_rate)
        estimates.append((MODE_TITLES.get(mode, mode), list(matched[0]), [float(g) for g in gain]))
    png = os.path.join(args.out, "spectrogram.png")
    try:
        fig = spectrogram_figure(demo_panels(mixture, list(sources), estimates), sep.sample_rate,
                                 title=f"fastsep demo: two talkers at {args.snr:g} dB, {sep.sample_rate} Hz, "
                                       f"vocoder seed {args.seed}")
        save_figure(fig, png)
    except MatplotlibMissing as exc:
        print(f"wrote WAVs to {args.out}; no spectrogram figure: {exc}")
        return 0
    print(f"wrote WAVs and {png} (rows: mixture, references, then each mode's estimates) to {args.out}")
    return 0
