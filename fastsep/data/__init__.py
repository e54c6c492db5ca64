"""fastsep's data: LibriMix / wsj0-mix readers, on-the-fly mixing, single-speaker sets, the synthetic corpus.

Open any supported folder with :func:`open_mixture_dataset` (separation) or :func:`open_speech_dataset` (vocoder).
Bad files never stop a run: they are skipped and counted in each data set's ``skipped`` counter.
"""
from .dynamic import DynamicMix
from .manifest import Utterance, read_manifest, utterances_by_speaker
from .mixtures import FileMixtures, LibriMix, MixtureEntry, Wsj0Mix
from .open import detect_layout, open_mixture_dataset, open_speech_dataset
from .speech import SpeechFiles

__all__ = ["LibriMix", "Wsj0Mix", "DynamicMix", "SpeechFiles", "FileMixtures", "MixtureEntry", "Utterance",
           "read_manifest", "utterances_by_speaker", "detect_layout", "open_mixture_dataset", "open_speech_dataset"]
