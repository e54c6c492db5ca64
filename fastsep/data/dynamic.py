"""On-the-fly mixing of single-speaker utterances (dynamic mixing).

Level convention (the paper's "random SNR values between 0 - 5 dB", Sec. 5): each source crop is first scaled to
the same RMS (-25 dBFS, measured over the returned crop including its pauses). One source, the reference, keeps that
level; every other source k is attenuated by g_k ~ U[0, 5] dB, drawn independently. So the level of the reference
relative to each other source, 10 log10(P_ref / P_k), lies in [0, 5] dB; the sources are then put in random order.
If the mixture would exceed a peak of 0.9, mixture and sources are scaled down together (ratios unchanged).
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import Augmentation
from .manifest import Utterance
from .robust import (SILENCE_PEAK, SkipFile, SkipLog, check_n_src, check_rate, read_checked,
                     seconds_to_frames)

__all__ = ["DynamicMix", "REFERENCE_RMS"]

REFERENCE_RMS = 10 ** (-25 / 20)
PEAK_LIMIT = 0.9


def _as_utterance(item, speaker: str) -> Utterance:
    if isinstance(item, Utterance):
        return item
    if isinstance(item, (str, os.PathLike)):
        return Utterance(os.fspath(item), speaker)
    raise TypeError(f"utterances must be paths or fastsep.data.Utterance, got {type(item).__name__}")


class DynamicMix(SkipLog, Dataset):
    """Mixtures of ``n_src`` distinct speakers drawn on the fly from single-speaker utterances.

    Args:
        utterances_by_speaker: ``{speaker: [path or Utterance, ...]}``; at least ``n_src`` speakers.
        n_src: speakers per mixture (C).
        sample_rate: output rate (other rates are resampled, or skipped as ``wrong_rate`` if ``resample=False``).
        segment: crop length in seconds, each source cropped at its own random offset; None keeps whole
            utterances, all cut to the shortest one.
        length: number of items per epoch.
        seed: base seed.
        fixed: if True, item ``i`` is always the same mixture (evaluation sets: repeatable scores). If False,
            every call draws afresh (seeded from ``seed``, the index, torch's per-worker seed and a call counter).
        level_range_db: range of the attenuation of non-reference sources (see the module docstring).
        augment: an :class:`~fastsep.data.augment.Augmentation` (speed, reverberation, partial overlap, noise) for
            training; None (the default, and what evaluation sets use) mixes the sources as they are.
        speaker_weighting: ``"uniform"`` draws talkers with equal probability; ``"duration"`` in proportion to
            their audio (every second of speech equally likely), so that a few talkers with hours of recordings are
            not drowned by hundreds of synthetic talkers with minutes each when corpora are pooled.
        speaker_groups: ``{speaker: group}``, e.g. the corpus each talker comes from (its recording channel:
            studio, codec, synthesis engine). Needed by ``within_group``.
        within_group: probability that a mixture's talkers all come from one group. With 0 (the default) talkers
            are drawn from the whole pool, so when corpora are pooled most mixtures pair talkers of different
            recording channels, which a model can tell apart by the channel instead of the voice; a test mixture
            of two talkers of one recording has no such cue. With p > 0 a group is first chosen in proportion to
            its talkers' summed weight (so each talker is still drawn about as often as without grouping) and the
            talkers are drawn within it; groups with fewer than ``n_src`` talkers are never chosen.
        speaker_scale: ``{speaker: factor}`` multiplying a talker's draw weight (absent talkers: 1), e.g. to give
            a small corpus a larger share of the mixtures than its amount of speech would.
        join_short: seconds. 0 (the default) drops utterances shorter than ``segment``. With ``join_short > 0``
            an utterance of at least that length is kept, and one drawn shorter than the segment is followed by
            more of the same talker's utterances, each after a pause of 0.1-0.4 s, until the segment is filled: a
            longer training segment then draws on the same speech as a shorter one (synthetic corpora hold many
            sentences of 2-4 s) instead of only the long utterances.
        speaker_embeddings: ``{speaker: unit vector}`` (:func:`fastsep.data.voice_similarity.talker_embeddings`).
            Needed by ``similar_pairs``.
        similar_pairs: probability that a mixture's other talkers are drawn by how alike they sound to its first:
            each candidate's draw weight is multiplied by ``exp((cos - cos_max) / similarity_temperature)``, its
            cosine to the first talker capped at ``similarity_cap`` (near-identical voices, e.g. two variants of one
            synthetic voice, are not favoured beyond that). Test mixtures that pair similar voices are where a
            separator fails; random pairs are mostly easy ones. Talkers without an embedding count as cosine 0.
        similarity_temperature, similarity_cap: see ``similar_pairs``.
    """

    def __init__(self, utterances_by_speaker: Mapping[str, Sequence[Union[str, os.PathLike, Utterance]]],
                 n_src: int = 2, sample_rate: int = 8000, segment: Optional[float] = 4.0, length: int = 20000,
                 seed: int = 0, fixed: bool = False, level_range_db: Tuple[float, float] = (0.0, 5.0),
                 resample: bool = True, max_retries: int = 50, augment: Optional[Augmentation] = None,
                 speaker_weighting: str = "uniform", speaker_groups: Optional[Mapping[str, str]] = None,
                 within_group: float = 0.0, speaker_scale: Optional[Mapping[str, float]] = None,
                 join_short: float = 0.0, speaker_embeddings: Optional[Mapping[str, np.ndarray]] = None,
                 similar_pairs: float = 0.0, similarity_temperature: float = 0.1, similarity_cap: float = 0.9):
        self._init_skips()
        if augment is not None and not isinstance(augment, Augmentation):
            raise TypeError(f"augment must be a fastsep.data.augment.Augmentation or None, got {type(augment).__name__}")
        self.augment = augment
        if not isinstance(utterances_by_speaker, Mapping):
            raise TypeError("utterances_by_speaker must be a mapping {speaker: [utterances]}, got "
                            f"{type(utterances_by_speaker).__name__}")
        self.n_src = check_n_src(n_src)
        self.sample_rate = check_rate(sample_rate)
        self.segment = segment
        self.segment_frames = seconds_to_frames(segment, sample_rate)
        if not isinstance(join_short, (int, float)) or isinstance(join_short, bool) or not 0 <= join_short < 1e4:
            raise ValueError(f"join_short must be a number of seconds >= 0, got {join_short!r}")
        # utterances shorter than this are dropped; with joining, those shorter than the segment are completed on
        # reading (without it, none shorter than the segment is kept, so none needs completing)
        shortest = min(float(join_short), float(segment)) if segment is not None and join_short else segment
        self._min_frames = seconds_to_frames(shortest, sample_rate) or 0
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        lo, hi = level_range_db
        if not 0 <= lo <= hi:
            raise ValueError(f"level_range_db must be (low, high) with 0 <= low <= high, got {level_range_db!r}")
        self.length, self.seed, self.fixed = length, int(seed), bool(fixed)
        self.level_range_db = (float(lo), float(hi))
        self.resample, self.max_retries = bool(resample), int(max_retries)
        self._draws = 0
        pools: Dict[str, List[Utterance]] = {}
        for spk in sorted(utterances_by_speaker):
            utts = [_as_utterance(u, str(spk)) for u in utterances_by_speaker[spk]]
            if self.segment is not None:
                # Durations from a manifest drop too-short utterances without opening them.
                keep = [u for u in utts if u.duration is None or u.duration >= shortest]
                for u in utts:
                    if u.duration is not None and u.duration < shortest:
                        self._record_skip("too_short", u.path)
                utts = keep
            if utts:
                pools[str(spk)] = utts
        self.pools = pools
        self.speakers = sorted(pools)
        if speaker_weighting not in ("uniform", "duration"):
            raise ValueError(f"speaker_weighting must be 'uniform' or 'duration', got {speaker_weighting!r}")
        self.speaker_weighting = speaker_weighting
        self._weight = {s: (sum(u.duration or 1.0 for u in pools[s]) if speaker_weighting == "duration" else 1.0)
                        for s in self.speakers}
        for s, factor in (speaker_scale or {}).items():
            if not (isinstance(factor, (int, float)) and factor > 0 and np.isfinite(factor)):
                raise ValueError(f"speaker_scale[{s!r}] must be a positive number, got {factor!r}")
            if s in self._weight:
                self._weight[s] *= float(factor)
        if len(self.speakers) < n_src:
            raise ValueError(f"DynamicMix needs at least n_src={n_src} speakers with usable utterances, "
                             f"got {len(self.speakers)} (skipped: {dict(self.skipped)})")
        self.within_group, self.group_of = self._check_groups(speaker_groups, within_group)
        self.similar_pairs, self._embedding = self._check_similarity(speaker_embeddings, similar_pairs,
                                                                     similarity_temperature, similarity_cap)
        self.similarity_temperature, self.similarity_cap = float(similarity_temperature), float(similarity_cap)

    def _check_similarity(self, embeddings, p, temperature, cap) -> Tuple[float, Dict[str, np.ndarray]]:
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
            raise ValueError(f"similar_pairs must be a probability in [0, 1], got {p!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
            raise ValueError(f"similarity_temperature must be a positive number, got {temperature!r}")
        if not (isinstance(cap, (int, float)) and -1.0 <= cap <= 1.0):
            raise ValueError(f"similarity_cap must lie in [-1, 1], got {cap!r}")
        if p > 0 and not embeddings:
            raise ValueError("similar_pairs > 0 needs speaker_embeddings ({speaker: vector})")
        table: Dict[str, np.ndarray] = {}
        for spk, vec in (embeddings or {}).items():
            v = np.asarray(vec, dtype=np.float64).reshape(-1)
            norm = float(np.linalg.norm(v))
            if not np.isfinite(norm) or norm == 0.0:
                raise ValueError(f"speaker_embeddings[{spk!r}] must be a finite non-zero vector")
            table[str(spk)] = v / norm
        if p > 0 and not any(s in table for s in self.speakers):
            raise ValueError("similar_pairs > 0, but none of the speakers has an embedding")
        return float(p), table

    def _similar_draw(self, live: List[str], weights: np.ndarray, rng: np.random.Generator) -> List[str]:
        """The first talker by weight, the others by weight times how alike they sound to it."""
        first = int(rng.choice(len(live), p=weights / weights.sum()))
        anchor = self._embedding.get(live[first])
        if anchor is None:
            cos = np.zeros(len(live))
        else:
            cos = np.array([float(self._embedding[s] @ anchor) if s in self._embedding else 0.0 for s in live])
        cos = np.minimum(cos, self.similarity_cap)
        w = weights * np.exp((cos - cos.max()) / self.similarity_temperature)
        w[first] = 0.0
        if np.count_nonzero(w > 0) < self.n_src - 1:  # the others underflowed: fall back to the plain weights
            w = weights.copy()
            w[first] = 0.0
        rest = rng.choice(len(live), size=self.n_src - 1, replace=False, p=w / w.sum())
        return [live[first]] + [live[i] for i in rest]

    def _check_groups(self, speaker_groups, within_group) -> Tuple[float, Dict[str, str]]:
        try:
            p = float(within_group)
        except (TypeError, ValueError):
            raise TypeError(f"within_group must be a probability, got {within_group!r}") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"within_group must lie in [0, 1], got {within_group!r}")
        if speaker_groups is None:
            if p > 0:
                raise ValueError("within_group > 0 needs speaker_groups ({speaker: group})")
            return p, {}
        if not isinstance(speaker_groups, Mapping):
            raise TypeError(f"speaker_groups must be a mapping {{speaker: group}}, got {type(speaker_groups).__name__}")
        missing = [s for s in self.speakers if s not in speaker_groups]
        if missing:
            raise ValueError(f"speaker_groups has no group for {len(missing)} speaker(s), e.g. {missing[:3]}")
        group_of = {s: str(speaker_groups[s]) for s in self.speakers}
        sizes: Dict[str, int] = {}
        for g in group_of.values():
            sizes[g] = sizes.get(g, 0) + 1
        if p > 0 and max(sizes.values()) < self.n_src:
            raise ValueError(f"within_group > 0 needs a group with at least n_src={self.n_src} speakers; "
                             f"group sizes: {sizes}")
        return p, group_of

    def _choose_speakers(self, live: List[str], rng: np.random.Generator) -> List[str]:
        """``n_src`` distinct talkers of ``live``, in proportion to their weight; from one group when drawn so."""
        if self.within_group > 0 and (self.within_group >= 1.0 or rng.random() < self.within_group):
            members: Dict[str, List[str]] = {}
            for s in live:
                members.setdefault(self.group_of[s], []).append(s)
            usable = [g for g in sorted(members) if len(members[g]) >= self.n_src]
            if usable:
                gw = np.array([sum(self._weight[s] for s in members[g]) for g in usable], dtype=np.float64)
                live = members[usable[int(rng.choice(len(usable), p=gw / gw.sum()))]]
        w = np.array([self._weight[s] for s in live], dtype=np.float64)
        if self.similar_pairs > 0 and (self.similar_pairs >= 1.0 or rng.random() < self.similar_pairs):
            return self._similar_draw(live, w, rng)
        return [live[i] for i in rng.choice(len(live), size=self.n_src, replace=False, p=w / w.sum())]

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([self.seed, index])
        self._draws += 1
        return np.random.default_rng([self.seed, index, torch.initial_seed() % (2 ** 32), self._draws])

    def _crop(self, wave: torch.Tensor, rng: np.random.Generator, path: str) -> torch.Tensor:
        seg = self.segment_frames
        if seg is None:
            return wave
        for _ in range(5):  # a crop may land in a long pause: try a few offsets
            start = int(rng.integers(0, wave.shape[-1] - seg + 1))
            crop = wave[start:start + seg]
            if float(crop.abs().max()) >= SILENCE_PEAK:
                return crop
        raise SkipFile("silent_crop", path)

    def _read(self, utt: Utterance, rng: np.random.Generator, speaker: str) -> torch.Tensor:
        wave = read_checked(utt.path, self.sample_rate, self.resample, self._min_frames)
        if self.segment_frames and wave.shape[-1] < self.segment_frames:
            wave = self._join(wave, rng, speaker)
        aug = self.augment
        if aug is None:
            return self._crop(wave, rng, utt.path)
        perturbed = aug.source(wave.numpy().astype(np.float64), rng, self.sample_rate)
        if self.segment_frames is None or len(perturbed) >= self.segment_frames:  # sped up below a segment: keep
            wave = torch.from_numpy(perturbed).float()
        crop = self._crop(wave, rng, utt.path)
        return torch.from_numpy(aug.crop(crop.numpy().astype(np.float64), rng, self.sample_rate)).float()

    def _join(self, wave: torch.Tensor, rng: np.random.Generator, speaker: str) -> torch.Tensor:
        """``wave`` followed by more of ``speaker``'s utterances, each after a short pause, until a segment long."""
        pieces, total = [wave], wave.shape[-1]
        pool = self.pools[speaker]
        while total < self.segment_frames:
            pause = torch.zeros(int(rng.uniform(0.1, 0.4) * self.sample_rate))
            more = read_checked(pool[int(rng.integers(len(pool)))].path, self.sample_rate, self.resample,
                                self._min_frames)
            pieces += [pause, more]
            total += pause.shape[-1] + more.shape[-1]
        return torch.cat(pieces)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} mixtures")
        rng = self._rng(index)
        for _ in range(self.max_retries):
            live = [s for s in self.speakers if self.pools[s]]
            if len(live) < self.n_src:
                break
            chosen = self._choose_speakers(live, rng)
            picks = [self.pools[s][int(rng.integers(len(self.pools[s])))] for s in chosen]
            try:
                waves = [self._read(u, rng, s) for u, s in zip(picks, chosen)]
            except SkipFile as skip:
                self._record_skip(skip.reason, skip.path)
                if skip.reason != "silent_crop":  # the file itself is bad: never draw it again
                    for s in chosen:
                        self.pools[s] = [u for u in self.pools[s] if u.path != skip.path]
                continue
            return self._mix(waves, picks, rng)
        raise RuntimeError(f"DynamicMix: could not draw a usable mixture for index {index}; "
                           f"skipped so far: {dict(self.skipped)}")

    def _mix(self, waves: List[torch.Tensor], picks: List[Utterance], rng: np.random.Generator) -> dict:
        n = min(w.shape[-1] for w in waves)
        sources = torch.stack([w[:n] for w in waves]).to(torch.float64)
        if self.augment is not None:
            sources = torch.from_numpy(self.augment.overlap(sources.numpy(), rng))
        rms = sources.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
        atten_db = np.concatenate([[0.0], rng.uniform(*self.level_range_db, size=self.n_src - 1)])
        order = rng.permutation(self.n_src)
        gains = torch.from_numpy(REFERENCE_RMS * 10.0 ** (-atten_db[order] / 20.0)).unsqueeze(-1)
        sources = sources / rms * gains
        mixture = sources.sum(0)
        if self.augment is not None:
            mixture = self.augment.add_noise(mixture, rng, self.sample_rate)
        peak = float(mixture.abs().max())
        if peak > PEAK_LIMIT:
            sources, mixture = sources * (PEAK_LIMIT / peak), mixture * (PEAK_LIMIT / peak)
        ident = "_".join(f"{u.speaker}-{os.path.splitext(os.path.basename(u.path))[0]}" for u in picks)
        return {"mixture": mixture.float(), "sources": sources.float(), "id": ident}
