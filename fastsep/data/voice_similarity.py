"""How alike two talkers of a corpus sound: one speaker embedding per talker, for drawing hard pairs (issue 9).

A test mixture pairs two talkers of one recording, and the sets fastsep fails on pair similar voices (``recorded``'s
three women). Training draws its pairs at random within a corpus, so most are easy. With a talker embedding per
talker (the mean of a pretrained speaker encoder's embeddings of a few of its utterances, L2-normalised,
:class:`fastsep.models.voice_encoder.GE2EVoiceEncoder`), :class:`fastsep.data.DynamicMix` can draw a mixture's
other talkers in proportion to how alike they sound to the first (``similar_pairs``).

Embeddings are computed once per corpus, split and encoder and kept beside the manifest
(``talker_embeddings_<split>.safetensors``, with the encoder's weights' SHA-256 and config in its metadata, so a
changed encoder recomputes them).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict

import numpy as np
import torch

from .manifest import utterances_by_speaker
from .robust import SkipFile, read_checked

__all__ = ["talker_embeddings"]


def _encoder_digest(encoder) -> str:
    h = hashlib.sha256()
    for name, value in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def talker_embeddings(root, encoder, split: str = "train", utterances: int = 4, seconds: float = 3.0,
                      cache: bool = True) -> Dict[str, np.ndarray]:
    """``{speaker: unit vector}`` for the talkers of ``split`` in the fastsep corpus ``root``.

    Each talker's first ``utterances`` utterances (manifest order; each cut to ``seconds``) are embedded and the
    embeddings averaged and normalised. Cached beside the manifest unless ``cache=False``.
    """
    from safetensors.numpy import load_file, save_file

    rate = int(encoder.config["sample_rate"])
    path = os.path.join(os.fspath(root), f"talker_embeddings_{split}.safetensors")
    digest = _encoder_digest(encoder)
    # everything that changes an embedding: the weights, the encoder's config (rate, level, ...), its front end
    key = "|".join([digest, json.dumps(encoder.config, sort_keys=True), getattr(encoder, "FRONT_END", ""),
                    str(utterances), f"{seconds:g}"])
    if cache and os.path.exists(path):
        from safetensors import safe_open

        with safe_open(path, "np") as f:
            if (f.metadata() or {}).get("key") == key:
                return {k: v for k, v in load_file(path).items()}
    groups = utterances_by_speaker(root, split, rate)
    limit = int(round(seconds * rate))
    out: Dict[str, np.ndarray] = {}
    for spk in sorted(groups):
        waves = []
        for utt in groups[spk][:utterances]:
            try:
                w = read_checked(utt.path, rate, True, 0)
            except SkipFile:  # an unreadable file is skipped here as in training
                continue
            if w.shape[-1] >= encoder.min_samples:
                waves.append(w[:limit].float())
        if not waves:
            continue
        emb = torch.stack([encoder(w[None])[0] for w in waves]).mean(0)
        out[spk] = (emb / emb.norm().clamp_min(1e-8)).numpy().astype(np.float32)
    if cache and out:
        from ..fileio import atomic_output

        with atomic_output(path, ".safetensors") as tmp:
            save_file(out, tmp, metadata={"key": key})
    return out
