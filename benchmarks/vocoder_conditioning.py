"""Does a DiffWave vocoder use its mel? A diagnostic for GM, printed as JSON.

For each model folder: the noise-prediction loss (L1, the training loss, at fixed seeds) on a batch of training crops
with the true mel, with the batch's mels shuffled and with all-zero mels (a model that ignores its conditioner scores
the same on all three), and, on clean held-out utterances, the correlation of the vocoded speech's frame energy with
the original's (fast and full schedules) and the log-spectral distance::

    python benchmarks/vocoder_conditioning.py --data WORK/recorded --valid WORK/recorded MODEL_DIR [MODEL_DIR ...]

``--data`` gives the training crops (split train), ``--valid`` the held-out utterances (split test, the first
``--items``, at most 2 s each). The figures in README.md for the default's GM came from this script.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def conditioning_report(model, crops: torch.Tensor, utterances, seeds: int = 4) -> dict:
    from fastsep.commands.evaluate import log_spectral_distance
    from fastsep.dsp import mel_spectrogram
    from fastsep.train.vocoder import VocoderTask

    task = VocoderTask(model.config)
    audio, mel = task.features(crops)
    shuffled = mel[torch.roll(torch.arange(mel.shape[0]), 1)]
    out = {}
    with torch.no_grad():
        for name, m in (("true", mel), ("shuffled", shuffled), ("zeros", torch.zeros_like(mel))):
            losses = [float(task.noise_loss(model, audio, m, generator=torch.Generator().manual_seed(s)))
                      for s in range(seeds)]
            out[f"loss_{name}_mel"] = float(np.mean(losses))
        corr = {"fast": [], "full": []}
        lsd = []
        for k, x in enumerate(utterances):
            ref = mel_spectrogram(x[None], model.sample_rate, model.hop_length, model.n_mels)[0].mean(0)
            for schedule in corr:
                y = model.vocode(x, fast=schedule == "fast", seed=k).flatten()
                got = mel_spectrogram(y[None], model.sample_rate, model.hop_length, model.n_mels)[0].mean(0)
                corr[schedule].append(float(np.corrcoef(ref.numpy(), got.numpy())[0, 1]))
                if schedule == "fast":
                    lsd.append(log_spectral_distance(y, x))
    out["energy_corr_fast"] = float(np.mean(corr["fast"]))
    out["energy_corr_full"] = float(np.mean(corr["full"]))
    out["lsd_db_fast"] = float(np.mean(lsd))
    return out


def main() -> None:
    from fastsep.data import open_speech_dataset
    from fastsep.models.io import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="DiffWave folders (model.json) or bundles (vocoder.json)")
    parser.add_argument("--data", required=True, help="corpus whose train split gives the crops")
    parser.add_argument("--valid", required=True, help="corpus whose test split gives held-out utterances")
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {}
    for folder in args.models:
        import os
        name = "vocoder" if os.path.isfile(os.path.join(folder, "vocoder.json")) else "model"
        model = load_model(folder, name).eval()
        train = open_speech_dataset(args.data, model.sample_rate, segment=62 * model.hop_length / model.sample_rate,
                                    split="train")
        torch.manual_seed(0)
        crops = torch.stack([train[i]["audio"] for i in range(0, min(len(train), 64), 4)]).float()
        test = open_speech_dataset(args.valid, model.sample_rate, segment=None, split="test")
        idx = np.random.RandomState(0).choice(len(test), min(args.items, len(test)), replace=False)
        utts = []
        for i in idx:
            x = test[int(i)]["audio"].float()[:2 * model.sample_rate]
            utts.append(x * (0.057 / x.pow(2).mean().sqrt().clamp_min(1e-8)))  # the level B's estimates have
        report[folder] = conditioning_report(model, crops, utts)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
