"""fastsep's models. Each is importable from here; modules load lazily so ``import fastsep`` stays light."""
from __future__ import annotations

import importlib

_WHERE = {
    "DiffWave": "fastsep.models.diffwave",
    "HiFiGAN": "fastsep.models.hifigan",  # GM's deterministic (GAN) alternative: the paper's vocoder ablation
    "HiFiGANDiscriminator": "fastsep.models.hifigan_discriminators",  # its discriminators, for training
    "ConvTasNet": "fastsep.models.convtasnet",
    "DPRNN": "fastsep.models.dprnn",
    "MulCat": "fastsep.models.mulcat",
    "SepFormer": "fastsep.models.sepformer",
    "Combiner": "fastsep.models.combiner",
    "NCSNpp": "fastsep.models.ncsnpp",  # DiffSep's score network
    "TFAttentionUNet": "fastsep.models.tf_attention_unet",  # a source prior's noise predictor
    "BackboneEnsemble": "fastsep.models.ensemble",  # several separators, their estimates averaged
    "TalkerEmbedding": "fastsep.models.talker_embedding",  # who is speaking in a piece of an output (tracking)
    "TrackedBackbone": "fastsep.models.tracked",  # a separator whose outputs keep their talkers
    "GE2EVoiceEncoder": "fastsep.models.voice_encoder",  # a pretrained speaker encoder (who is speaking)
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'fastsep.models' has no attribute {name!r}")
