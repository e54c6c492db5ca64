"""``fastsep import-encoder``: Resemblyzer's pretrained speaker encoder as a fastsep model folder (safetensors).

    fastsep import-encoder -o runs/voice_encoder                  # pip-downloads resemblyzer==0.1.4 (no deps)
    fastsep import-encoder -o runs/voice_encoder --wheel Resemblyzer-0.1.4-py3-none-any.whl

Resemblyzer (Apache-2.0) ships its GE2E encoder's weights inside its wheel as a PyTorch checkpoint. This reads that
one file once, with PyTorch's restricted ``weights_only`` loader (tensors and plain containers only: no code runs),
keeps the network's tensors (not the optimiser's or the GE2E loss's), checks every name and shape against
:class:`fastsep.models.voice_encoder.GE2EVoiceEncoder` and writes ``model.safetensors`` + ``model.json``, with the
wheel's licence and a note of where the weights came from beside them. fastsep never loads the checkpoint again.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

RESEMBLYZER = "resemblyzer==0.1.4"
WEIGHTS_IN_WHEEL = "resemblyzer/pretrained.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fastsep import-encoder``."""
    parser.add_argument("-o", "--out", required=True, help="folder to write the encoder to (model.safetensors/.json)")
    parser.add_argument("--wheel", default=None,
                        help=f"a Resemblyzer wheel already downloaded (default: pip download {RESEMBLYZER} --no-deps)")
    parser.add_argument("--sample-rate", type=int, default=8000,
                        help="rate of the audio the encoder will be handed (resampled to 16 kHz inside; default 8000)")


def download_wheel(folder: str) -> str:
    """``pip download`` Resemblyzer's wheel (no dependencies) into ``folder``; returns its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", folder, RESEMBLYZER]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = [f for f in os.listdir(folder) if f.lower().startswith("resemblyzer") and f.endswith(".whl")]
    if done.returncode != 0 or not wheels:
        raise RuntimeError(f"could not download {RESEMBLYZER}: {done.stderr.strip()[-400:]}")
    return os.path.join(folder, wheels[0])


def encoder_state(wheel: str):
    """The encoder's tensors from the wheel's checkpoint, and the wheel's licence text."""
    import torch

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if WEIGHTS_IN_WHEEL not in names:
            raise ValueError(f"{wheel} holds no {WEIGHTS_IN_WHEEL}: not a Resemblyzer wheel")
        raw = archive.read(WEIGHTS_IN_WHEEL)
        licence = next((archive.read(n).decode("utf-8", "replace") for n in names if n.endswith("/LICENSE")), "")
    checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{WEIGHTS_IN_WHEEL} in {wheel} has no model_state")
    # similarity_weight/bias belong to the GE2E training loss, not to the encoder
    kept = {k: v.float().contiguous() for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    return kept, licence, hashlib.sha256(raw).hexdigest()


def main(args: argparse.Namespace) -> int:
    from ..models.io import load_state_dict_checked, save_model
    from ..models.voice_encoder import GE2EVoiceEncoder

    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(tmp)
            state, licence, digest = encoder_state(wheel)
            encoder = GE2EVoiceEncoder(sample_rate=args.sample_rate)
            load_state_dict_checked(encoder, state, source=f"{os.path.basename(wheel)}:{WEIGHTS_IN_WHEEL}")
            wheel_name = os.path.basename(wheel)
    except (ValueError, RuntimeError, OSError, zipfile.BadZipFile) as exc:
        print(f"fastsep import-encoder: error: {exc}", file=sys.stderr)
        return 2
    save_model(encoder, args.out)
    from ..fileio import atomic_write_bytes, atomic_write_json

    atomic_write_bytes(os.path.join(args.out, "LICENSE.resemblyzer"), licence.encode("utf-8"))
    atomic_write_json(os.path.join(args.out, "SOURCE.json"),
                      {"package": RESEMBLYZER, "wheel": wheel_name, "file": WEIGHTS_IN_WHEEL, "checkpoint_sha256": digest,
                       "licence": "Apache-2.0", "what": "GE2E speaker encoder (Wan et al. 2018) as trained by Resemblyzer"})
    n = sum(v.numel() for v in encoder.state_dict().values())
    print(f"GE2E speaker encoder ({n / 1e6:.2f} M parameters, from {wheel_name}) written to {args.out}")
    return 0
