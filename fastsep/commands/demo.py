"""``fastsep demo``: mix the two bundled talkers, separate them with each mode, print SI-SDRi, write WAVs and a PNG.

Needs nothing beyond the installed package: the example utterances are in ``fastsep/assets`` and the spectrogram
image is written by a small PNG encoder here (zlib only), so matplotlib is not required.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import zlib
from typing import List, Sequence

import numpy as np
import torch

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
TALKERS = ("talker1.wav", "talker2.wav")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep demo``."""
    parser.add_argument("-o", "--out", default="fastsep-demo", help="folder for the WAVs and spectrogram.png")
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled default model)")
    parser.add_argument("--snr", type=float, default=0.0, help="level of talker 1 over talker 2 in dB")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="vocoder noise seed (xcorr and full modes; default 0)")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="vocoder sampling precision; bfloat16 is faster on CPUs with AVX512-BF16")


# ------------------------------------------------------------------------------------------------------------ PNG
def encode_png(gray: np.ndarray) -> bytes:
    """8-bit grayscale PNG bytes of ``gray [H, W]`` (uint8), with no dependency beyond zlib."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"encode_png: expected a non-empty [H, W] image, got shape {gray.shape}")
    height, width = gray.shape
    # Each scanline starts with filter type 0 (none).
    raw = np.concatenate([np.zeros((height, 1), np.uint8), gray], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit depth, colour type 0 (grayscale)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def spectrogram_image(waves: Sequence[torch.Tensor], n_fft: int = 256, hop: int = 64, floor_db: float = 80.0,
                      gap: int = 3) -> np.ndarray:
    """Log-magnitude spectrograms of ``waves`` stacked top to bottom (low frequencies at the bottom of each panel),
    dark = loud, scaled to the loudest panel with ``floor_db`` of range, panels separated by white gaps."""
    from ..dsp import StftConfig, stft

    cfg = StftConfig(n_fft=n_fft, hop_length=hop)
    mags = [stft(w.float().reshape(-1), cfg).abs() for w in waves]
    db = [20 * torch.log10(m + 1e-8) for m in mags]
    top = max(float(d.max()) for d in db)
    panels: List[np.ndarray] = []
    for d in db:
        level = ((d - (top - floor_db)) / floor_db).clamp(0, 1)
        img = (255 * (1 - level)).round().to(torch.uint8).flip(0).numpy()  # flip: low frequencies at the bottom
        panels.append(img)
        panels.append(np.full((gap, img.shape[1]), 255, np.uint8))
    width = max(p.shape[1] for p in panels)
    panels = [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=255) for p in panels[:-1]]
    return np.concatenate(panels, axis=0)


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
    from ..fileio import atomic_write_bytes
    from ..separator import MODES, Separator

    try:
        sep = Separator.from_pretrained(args.model, device=args.device, vocoder_precision=args.precision)
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
    panels = [mixture, *sources]
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
        panels += list(matched[0])
    png = os.path.join(args.out, "spectrogram.png")
    atomic_write_bytes(png, encode_png(spectrogram_image(panels)))
    print(f"wrote WAVs and {png} (rows: mixture, references, then each mode's estimates) to {args.out}")
    return 0
