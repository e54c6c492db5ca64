"""The recording channel of each talker of a fastsep corpus: which talkers were recorded the same way.

A real two-talker recording puts both voices through one channel (room, microphone, codec, synthesiser). A training
mixture of two channels can be separated by the channel instead of the voice, so pairing talkers within one channel
(``open_mixture_dataset(within_corpus=, pair_by="channel")``) trains on what the tests and the users' recordings hold.

A corpus names its channels in ``corpus.json``: a talker's ``channel`` when its builder wrote one, else what its
entry says about where it came from -- the synthesiser (``engine``), the Debian package(s) of a recording
(``package``/``packages``), a dubbing named in the talker's name (``<source>_<dubbing>_<character>``, the corpus
listing its ``dubbings``) -- or the talker itself for a corpus whose every talker was recorded apart (KLettres: each
language by another volunteer). A talker without any of these shares the corpus's one channel (one studio cast: the
adventure game's, Beneath a Steel Sky's).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

__all__ = ["talker_channels"]

CORPUS_INFO = "corpus.json"
# corpus.json "source"s whose talkers were each recorded apart
_RECORDED_APART = ("klettres",)


def _channel_of(name: str, entry: dict, dubbings, apart: bool) -> str:
    if entry.get("channel"):
        return str(entry["channel"])
    if entry.get("engine"):
        return f"engine:{entry['engine']}"
    if entry.get("package"):
        return f"package:{entry['package']}"
    if entry.get("packages"):
        return "package:" + "+".join(sorted(entry["packages"]))
    for dubbing in dubbings:
        if f"_{dubbing}_" in name:
            return f"dubbing:{dubbing}"
    return f"talker:{name}" if apart else ""


def talker_channels(root) -> Dict[str, str]:
    """``{talker: channel}`` for the talkers ``corpus.json`` in ``root`` lists ("" for the corpus's one channel);
    empty when the corpus has no ``corpus.json`` (every talker then shares one channel)."""
    path = Path(root) / CORPUS_INFO
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    talkers = info.get("talkers", {})
    dubbings = info.get("dubbings", [])
    apart = info.get("source") in _RECORDED_APART
    if isinstance(talkers, list):  # the synthetic corpus: a list of talker entries
        return {str(t["name"]): _channel_of(str(t["name"]), t, dubbings, apart) for t in talkers if "name" in t}
    if isinstance(talkers, dict):
        return {str(name): _channel_of(str(name), entry if isinstance(entry, dict) else {}, dubbings, apart)
                for name, entry in talkers.items()}
    raise ValueError(f"{path}: 'talkers' is neither a list nor a mapping")
