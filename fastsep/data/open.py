"""Open a data set by pointing at a folder: the layout (LibriMix, wsj0-mix, fastsep corpus) is detected."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .augment import Augmentation
from .channels import talker_channels
from .dynamic import DynamicMix
from .manifest import Utterance, find_manifest, utterances_by_speaker
from .mixtures import (AUDIO_EXTENSIONS, LibriMix, Wsj0Mix, find_librimix_csv, find_wsj0_split)
from .robust import check_n_src, check_rate
from .speech import SpeechFiles

__all__ = ["detect_layout", "open_mixture_dataset", "open_speech_dataset"]

EVAL_LENGTH = 3000  # mixtures in a fixed evaluation list (as many as wsj0-2mix's test set)
TRAIN_LENGTH = 20000  # dynamic-mixing epoch size (as wsj0-2mix's training set)


def detect_layout(root, split: str = "train", n_src: int = 2, sample_rate: int = 8000) -> str:
    """``"manifest"``, ``"librimix"``, ``"wsj0mix"`` (or raises FileNotFoundError listing what was looked for)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if find_manifest(root) is not None:
        return "manifest"
    if root.is_file() and root.suffix == ".csv":
        return "librimix"
    if find_librimix_csv(root, split, n_src, sample_rate) is not None:
        return "librimix"
    if find_wsj0_split(root, split, n_src, sample_rate) is not None:
        return "wsj0mix"
    try:
        LibriMix._from_folders(root, split, n_src, sample_rate, "mix_clean")
        return "librimix"
    except FileNotFoundError:
        pass
    raise FileNotFoundError(
        f"{root}: no known data set layout for split {split!r}: looked for a fastsep corpus (manifest.jsonl), "
        f"LibriMix metadata CSVs or mix_clean/s1..s{n_src} folders, and wsj0-mix {{tr,cv,tt}}/{{mix,s1..}} folders")


def _speaker_of(token: str, layout: str) -> str:
    # LibriSpeech ids are speaker-chapter-utterance; WSJ0 ids start with a 3-character speaker code.
    return token.split("-")[0] if layout == "librimix" else token[:3]


def _speakers_from_files(ds, layout: str) -> Dict[str, List[Utterance]]:
    """Group the sources of a pre-mixed corpus by the speakers named in the mixture file names."""
    groups: Dict[str, List[Utterance]] = {}
    for e in ds.entries:
        tokens = [t for t in Path(e.sources[0]).stem.split("_") if not re.fullmatch(r"-?[\d.]+(e-?\d+)?", t)]
        if len(tokens) != ds.n_src:
            raise ValueError(f"cannot infer {ds.n_src} speakers for dynamic mixing from the file name "
                             f"{Path(e.sources[0]).name!r}")
        for tok, path in zip(tokens, e.sources):
            spk = _speaker_of(tok, layout)
            groups.setdefault(spk, []).append(Utterance(path, spk))
    return groups


def _pooled_speakers(roots: Sequence, split: str, sample_rate: int, pair_by: str = "corpus",
                     corpus_weights: Optional[Sequence[float]] = None
                     ) -> Tuple[Dict[str, List[Utterance]], Dict[str, str], Optional[Dict[str, float]]]:
    """The speakers of ``split`` in several fastsep corpora, pooled (corpora without that split contribute none),
    the group each speaker belongs to: its corpus folder (``pair_by="corpus"``), or its corpus folder and
    recording channel within it (``"channel"``, :func:`fastsep.data.channels.talker_channels`), and, given
    ``corpus_weights`` (one per root), each speaker's weight factor (else None)."""
    groups: Dict[str, List[Utterance]] = {}
    corpus_of: Dict[str, str] = {}
    scale: Optional[Dict[str, float]] = {} if corpus_weights is not None else None
    for index, root in enumerate(roots):
        if find_manifest(root) is None:
            raise ValueError(f"{root}: several data folders can only be pooled when each is a fastsep corpus "
                             "(manifest.jsonl)")
        channels = talker_channels(root) if pair_by == "channel" else {}
        try:
            part = utterances_by_speaker(root, split, sample_rate)
        except ValueError:
            continue
        for spk, utts in part.items():
            if spk in groups:
                raise ValueError(f"speaker {spk!r} appears in more than one of the pooled corpora {list(roots)}")
            groups[spk] = utts
            channel = channels.get(spk, "")
            corpus_of[spk] = f"{root}|{channel}" if channel else str(root)
            if scale is not None:
                scale[spk] = float(corpus_weights[index])
    if not groups:
        raise ValueError(f"none of {[str(r) for r in roots]} has utterances in split {split!r}")
    return groups, corpus_of, scale


def _embeddings_of(root, split: str, voice_encoder) -> Dict[str, "object"]:
    """Every talker's embedding in the fastsep corpus or corpora ``root`` (for ``similar_pairs``)."""
    from .voice_similarity import talker_embeddings

    if voice_encoder is None:
        raise ValueError("similar_pairs > 0 needs a voice_encoder (a model folder of `fastsep import-encoder`)")
    if isinstance(voice_encoder, (str, Path)):
        from ..models.io import load_model

        voice_encoder = load_model(voice_encoder)
    if not hasattr(voice_encoder, "min_samples") or not isinstance(getattr(voice_encoder, "config", None), dict):
        raise ValueError(f"voice_encoder must be a speaker encoder model, got {type(voice_encoder).__name__}")
    table: Dict[str, object] = {}
    for r in (root if isinstance(root, (list, tuple)) else [root]):
        if find_manifest(r) is None:
            raise ValueError(f"{r}: similar_pairs needs fastsep corpora (manifest.jsonl)")
        table.update(talker_embeddings(r, voice_encoder.eval(), split))
    return table


def open_mixture_dataset(root, n_src: int, sample_rate: int, segment: Optional[float] = None,
                         split: str = "train", dynamic_mixing: Optional[bool] = None, seed: int = 0,
                         length: Optional[int] = None, resample: bool = True,
                         augment: Optional[Augmentation] = None, level_range_db=(0.0, 5.0),
                         fixed: Optional[bool] = None, within_corpus: float = 0.0, pair_by: str = "corpus",
                         corpus_weights: Optional[Sequence[float]] = None, join_short: float = 0.0,
                         similar_pairs: float = 0.0, voice_encoder=None, similarity_temperature: float = 0.1):
    """A mixture data set for ``root``, whatever its layout.

    ``root`` may also be a list of fastsep corpora (folders with ``manifest.jsonl``): their speakers in ``split`` are
    pooled and mixed on the fly across corpora (e.g. synthetic talkers with recorded ones), each talker drawn in
    proportion to its amount of speech (see ``DynamicMix(speaker_weighting=)``). ``augment`` and
    ``level_range_db`` reach :class:`DynamicMix` (on-the-fly mixing only). ``within_corpus`` is the probability
    that a pooled mixture's talkers all come from one of the corpora (``DynamicMix(within_group=)``): a test
    mixture's talkers share one recording, and pairs across corpora can be told apart by their channel.
    ``pair_by="channel"`` narrows "one corpus" to one recording channel inside a corpus (its synthesiser, package,
    dubbing; :mod:`fastsep.data.channels`), also for a single corpus. ``corpus_weights`` (one positive factor per
    pooled corpus) scales each corpus's talkers' draw weights: a corpus's share of the mixtures, relative to its
    share of the speech. ``join_short`` (seconds, on-the-fly mixing only) keeps utterances of at least that length
    that are shorter than ``segment``, completed with more of the talker's speech (``DynamicMix(join_short=)``).
    ``similar_pairs`` (a probability, fastsep corpora only) draws a mixture's other talkers by how alike they sound to
    its first (``DynamicMix(similar_pairs=)``), with ``voice_encoder`` (a model folder or a loaded
    :class:`~fastsep.models.voice_encoder.GE2EVoiceEncoder`) giving each talker's embedding
    (:func:`fastsep.data.voice_similarity.talker_embeddings`, cached beside each manifest).

    - fastsep corpus (``manifest.jsonl``): always mixed on the fly from the split's speakers; for ``train`` fresh
      mixtures each draw, for other splits a fixed seeded list (``length`` items, default 3000) so scores repeat.
      ``fixed`` overrides that choice (evaluation asks for a fixed list of the ``train`` split of a corpus no model
      it scores trained on).
    - LibriMix / wsj0-mix: the pre-made mixtures; with ``dynamic_mixing=True`` the split's sources are regrouped by
      speaker (from the file names) and remixed on the fly instead.

    Items are ``{"mixture": [T], "sources": [C, T], "id": str}``.
    """
    check_n_src(n_src)
    check_rate(sample_rate)
    if fixed is None:
        fixed = split != "train"
    if length is None:
        length = TRAIN_LENGTH if not fixed else EVAL_LENGTH
    mix_options = dict(length=length, seed=seed, fixed=fixed, resample=resample, augment=augment,
                       level_range_db=tuple(level_range_db), join_short=join_short)
    if similar_pairs:
        mix_options.update(similar_pairs=similar_pairs, similarity_temperature=similarity_temperature,
                           speaker_embeddings=_embeddings_of(root, split, voice_encoder))
    if pair_by not in ("corpus", "channel"):
        raise ValueError(f"pair_by must be 'corpus' or 'channel', got {pair_by!r}")
    if corpus_weights is not None and (not isinstance(root, (list, tuple)) or len(corpus_weights) != len(root)):
        n = len(root) if isinstance(root, (list, tuple)) else 1
        raise ValueError(f"corpus_weights needs one weight per corpus: {len(corpus_weights)} for {n} corpora")
    if isinstance(root, (list, tuple)):
        if len(root) == 1:
            root = root[0]
        else:
            pooled, corpus_of, scale = _pooled_speakers(root, split, sample_rate, pair_by, corpus_weights)
            return DynamicMix(pooled, n_src, sample_rate, segment, speaker_weighting="duration",
                              speaker_groups=corpus_of, within_group=within_corpus, speaker_scale=scale,
                              **mix_options)
    layout = detect_layout(root, split, n_src, sample_rate)
    if layout == "manifest":
        if dynamic_mixing is False:
            raise ValueError(f"{root} is a fastsep single-speaker corpus: it can only be mixed on the fly "
                             "(dynamic_mixing must be None or True)")
        groups = utterances_by_speaker(root, split, sample_rate)
        if pair_by == "channel" and within_corpus > 0:
            channels = talker_channels(root)
            return DynamicMix(groups, n_src, sample_rate, segment, within_group=within_corpus,
                              speaker_groups={spk: channels.get(spk, "") for spk in groups}, **mix_options)
        return DynamicMix(groups, n_src, sample_rate, segment, **mix_options)
    ds = (LibriMix if layout == "librimix" else Wsj0Mix)(root, split=split, n_src=n_src, sample_rate=sample_rate,
                                                          segment=segment, resample=resample)
    if join_short and not dynamic_mixing:
        raise ValueError("join_short applies to mixtures made on the fly (dynamic_mixing=True), not to the "
                         f"pre-made mixtures of {root}")
    if dynamic_mixing:
        return DynamicMix(_speakers_from_files(ds, layout), n_src, sample_rate, segment, **mix_options)
    return ds


def open_speech_dataset(root, sample_rate: int, segment: Optional[float] = None, split: str = "train",
                        resample: bool = True) -> SpeechFiles:
    """Single-speaker audio ``{"audio": [T], "id"}`` for vocoder training.

    Sources from a fastsep corpus (the split's utterances), LibriMix or wsj0-mix (the split's ``s1..sC`` files,
    each once), or else every audio file under ``root/split`` (or ``root`` when there is no such folder).
    """
    check_rate(sample_rate)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    paths: List[str] = []
    if find_manifest(root) is not None:
        groups = utterances_by_speaker(root, split, sample_rate)
        paths = [u.path for spk in sorted(groups) for u in groups[spk]]
    else:
        for n_src in (2, 3, 4, 5):
            try:
                layout = detect_layout(root, split, n_src, sample_rate)
            except FileNotFoundError:
                continue
            ds = (LibriMix if layout == "librimix" else Wsj0Mix)(root, split=split, n_src=n_src,
                                                                  sample_rate=sample_rate)
            paths = sorted({p for e in ds.entries for p in e.sources})
            break
        else:
            base = root / split if (root / split).is_dir() else root
            paths = sorted(str(p) for p in base.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no audio files found for split {split!r} under {root}")
    return SpeechFiles(paths, sample_rate, segment, resample=resample)
