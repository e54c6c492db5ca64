"""Real voices from a second talkie adventure game: the cast of Beneath a Steel Sky (CD), as a fastsep corpus.

Debian ships the freeware CD release of Beneath a Steel Sky (package beneath-a-steel-sky, in main; its data are free
to redistribute) as ScummVM data: ``sky.dnr`` (the directory of the game's files), ``sky.dsk`` (their data) and
``sky.cpt`` (ScummVM's dump of the game's "compacts", with their names). About 3500 spoken lines of a studio cast
are files of ``sky.dsk``. fastsep reads them directly. The format facts below come from ScummVM's source
(``engines/sky``), read for this purpose; the code is fastsep's own:

* ``sky.dnr`` (``disk.cpp``, ``Disk::Disk`` and ``loadFile``): uint32 LE entry count, then 8 bytes an entry: file
  number (uint16 LE); a 24-bit LE offset whose bit 23 says "offset counts 16-byte units" (8-byte in version 0.0331
  only); a 24-bit LE word whose low 22 bits are the stored size, bit 22 "the packed data excludes the file header"
  and bit 23 "stored uncompressed". The CD version 0.0372 has 5097 entries (``determineGameVersion``).
* every file starts with a 22-byte header, eleven uint16 LE (``struc.h``, ``DataFileHeader``); a file not marked
  uncompressed whose header ``flag`` has bit 7 set is RNC-packed after the header (``disk.cpp``), its unpacked size
  ``(flag & 0xFF00) << 8 | s_tot_size`` (header included unless bit 22). Decompression: :mod:`fastsep.data.rnc`.
* speech (``sound.cpp``, ``Sound::startSpeech``): text number ``t`` (section ``t >> 12``, line ``t & 0xFFF``) is
  file ``50000 + first[section] + line`` with ``first = 0, 600, 1100, 2430, 3380, 4530, 5080, 5230``; the samples
  follow the 22-byte header: 8-bit unsigned mono at 11025 Hz (``playRaw(..., 11025, FLAG_UNSIGNED)``; 22050 Hz only
  for two lines of version 0.0368, not this one).
* who speaks a line (``logic.cpp``): the game's scripts are files 60400 + module (``skydefs.h`` ``F_MODULE_0``), words
  of bytecode (``Logic::script``: push_variable, push_number, call_mcode with its argument count and function number
  times 4, ...), a module starting with a table of script offsets. A line is spoken by ``fn_speak_me``,
  ``fn_speak_me_dir``, ``fn_speak_wait`` or ``fn_speak_wait_dir`` (functions 35-38) with the speaker's compact id and
  the text number; ``fn_ask_this`` (70) puts a dialogue option on screen that the player then says. Script variable
  names come from ``debug.cpp``: 12 ``cur_id`` (the compact running the script), 21 ``player_id``, 120
  ``id_talking`` (set to the clicked character when a conversation starts, ``MEGA_ACTION``).

Who speaks (see :func:`attribute_lines`): the bytecode is scanned statically, keeping what each speech call pushed.

* a constant speaker id: that character (name from ``sky.cpt``). Reliable.
* ``player_id``, the dialogue options, and ``cur_id`` in scripts only the player runs (an object's action script, a
  script with a chooser or that waits for another character to speak, and the sub-scripts these start): Foster,
  the hero. ``cur_id`` in a script only one other character runs (its logic script and what it starts): that
  character. Reliable as far as that static reach goes; lines whose runner stays unknown are left out.
* ``id_talking``: the character Foster is talking to, known only at run time. Such lines are grouped by the
  conversation script they are in (``conv_<script>``): a conversation script talks with one character, but one
  character may have several conversation scripts, so such a pseudo-talker is one voice while one voice may be
  split over several pseudo-talkers. Approximate.
* a line attributed differently by different calls, or never spoken by a script (e.g. the intro), is left out.

On the CD 0.0372 data all 3491 speech files unpack (checksums verified); 3369 lines are attributed (56 to no known
runner, 42 to several speakers, 24 never spoken by a script), 3050 of them to the 28 talkers with at least 45 s
(1.9 h of utterances; Foster 1620 lines, 0.8 h; Joey, one guard, 25 conversation groups). A crude autocorrelation
F0 check: Foster's lines have a median of 124-128 Hz, but 5 % of 150 sampled lines sit above 180 Hz (raised voice,
estimator octave errors, or lines of another speaker reached through a script the player does not in fact run);
a few conversation groups have wide F0 spreads and may hold two voices.

**These labels are approximate.** Every talker is written as a training talker (1/16 of each one's utterances in a
``valid`` split, like ``adventure``): a mixture of two lines of one actor under two labels is still a valid, harder
separation example. For a model that never trained on it (the bundled default), the whole corpus is a source of
real voices it has never heard: ``fastsep eval --data STEELSKY --split train`` mixes lines of two labelled talkers
(the labels only choose which lines meet; SI-SDR does not use them), and a few mixtures may hold one actor twice.
Speaker labels must not be used for speaker-level claims (e.g. per-talker scores). Lines are trimmed,
resampled to 8 kHz and joined into ~8 s utterances per talker with the helpers of :mod:`fastsep.data.voices`;
talkers with under ``min_seconds`` of speech are left out.
"""
from __future__ import annotations

import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .rnc import is_rnc, rnc_unpack

__all__ = ["DATA_DIR", "PACKAGES", "SkyDisk", "read_compacts", "speech_file", "text_number", "scan_module",
           "attribute_lines", "build_steelsky"]

DATA_DIR = Path("/usr/share/scummvm/beneath-a-steel-sky")
PACKAGES = ("beneath-a-steel-sky",)
HEADER_SIZE = 22  # DataFileHeader: 11 x uint16
SPEECH_BASE = 50000
SPEECH_RATE = 11025
SECTION_FIRST = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)  # Sound::_speechConvertTable
MODULE_BASE = 60400  # F_MODULE_0
PLAYER = 3  # the compact id of Foster (ID_FOSTER)
# script functions (Logic::setupMcodeTable order)
FN_START_SUB, FN_THEY_START_SUB, FN_ASSIGN_BASE = 7, 8, 9
FN_SPEAK = {35: "speak_me", 36: "speak_me_dir", 37: "speak_wait", 38: "speak_wait_dir"}
FN_CHOOSER, FN_ASK_THIS = 39, 70
# script variables (debug.cpp's names), as the bytecode holds them: index * 4
VAR_CUR_ID, VAR_PLAYER_ID, VAR_ID_TALKING = 12 * 4, 21 * 4, 120 * 4
# words an opcode takes, its own included (switch: variable)
_OP_WORDS = {0: 2, 1: 1, 2: 2, 3: 1, 4: 1, 5: 2, 6: 2, 7: 1, 8: 1, 9: 2, 10: 1, 11: 3, 12: 1, 13: 1, 15: 2, 16: 2,
             17: 1, 18: 2, 19: 1, 20: 1}
_BINARY_OPS = (1, 3, 4, 7, 8, 10, 12, 17)


class SkyDisk:
    """The files of a ``sky.dnr``/``sky.dsk`` pair; ``ValueError`` with the reason for a malformed one."""

    def __init__(self, dnr: Path, dsk: Path):
        self.dnr, self.dsk = Path(dnr), Path(dsk)
        table = self.dnr.read_bytes()
        if len(table) < 4:
            raise ValueError(f"{self.dnr}: too short for a sky.dnr directory")
        (count,) = struct.unpack("<I", table[:4])
        if count == 0 or len(table) < 4 + 8 * count:
            raise ValueError(f"{self.dnr}: directory truncated ({count} entries stated, "
                             f"{(len(table) - 4) // 8} present)")
        self.dsk_size = self.dsk.stat().st_size
        self.entries: Dict[int, Tuple[int, int, int]] = {}  # number -> (offset, stored size, flags bits 22-23)
        for i in range(count):
            e = table[4 + 8 * i: 12 + 8 * i]
            number = e[0] | e[1] << 8
            offset = int.from_bytes(e[2:5], "little")
            word = int.from_bytes(e[5:8], "little")
            if offset >> 23:  # offset in 16-byte units (8-byte units only in floppy version 0.0331)
                offset = (offset & 0x7FFFFF) << 4
            size = word & 0x3FFFFF
            if offset + size > self.dsk_size:
                raise ValueError(f"{self.dsk}: file {number} runs past the end of the data "
                                 f"({offset} + {size} > {self.dsk_size} bytes)")
            self.entries[number] = (offset, size, word >> 22)

    def __contains__(self, number: int) -> bool:
        return number in self.entries

    def read(self, number: int) -> bytes:
        """File ``number`` as the game loads it: header then (unpacked) data."""
        if number not in self.entries:
            raise KeyError(f"{self.dnr}: no file {number}")
        offset, size, flags = self.entries[number]
        with open(self.dsk, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{self.dsk}: file {number} truncated")
        uncompressed, no_header = flags >> 1 & 1, flags & 1
        if uncompressed or size < HEADER_SIZE or not data[0] & 0x80:
            return data
        if not is_rnc(data[HEADER_SIZE:]):
            return data  # flagged but not packed: ScummVM then uses the file as stored
        flag, total = struct.unpack_from("<H", data, 0)[0], struct.unpack_from("<H", data, 12)[0]
        try:
            body = rnc_unpack(data[HEADER_SIZE:])
        except ValueError as exc:
            raise ValueError(f"{self.dsk}: file {number}: {exc}") from None
        out = body if no_header else data[:HEADER_SIZE] + body
        if len(out) != ((flag & 0xFF00) << 8 | total):
            raise ValueError(f"{self.dsk}: file {number}: unpacked to {len(out)} bytes, its header states "
                             f"{(flag & 0xFF00) << 8 | total}")
        return out

    def speech_numbers(self) -> List[int]:
        """The speech line numbers (file number - 50000) present, in order."""
        last = SECTION_FIRST[-1] + 0x1000
        return sorted(n - SPEECH_BASE for n in self.entries if SPEECH_BASE <= n < SPEECH_BASE + last)

    def speech(self, line: int) -> np.ndarray:
        """Speech line ``line`` (file 50000 + line): float samples in [-1, 1) at 11025 Hz."""
        data = self.read(SPEECH_BASE + line)
        if len(data) < HEADER_SIZE:
            raise ValueError(f"{self.dsk}: speech file {SPEECH_BASE + line} is shorter than its header")
        return (np.frombuffer(data, dtype=np.uint8, offset=HEADER_SIZE).astype(np.float64) - 128.0) / 128.0


def speech_file(text: int) -> Optional[int]:
    """The speech line number (file - 50000) of text number ``text``; None for a section without speech."""
    section = text >> 12
    return SECTION_FIRST[section] + (text & 0xFFF) if section < len(SECTION_FIRST) else None


def text_number(line: int) -> int:
    """Inverse of :func:`speech_file`: the text number a speech line voices."""
    section = max(s for s, first in enumerate(SECTION_FIRST) if first <= line)
    return section << 12 | (line - SECTION_FIRST[section])


def read_compacts(path: Path) -> Tuple[Dict[int, str], Dict[int, Tuple[int, int]]]:
    """``({compact id: name}, {compact id: (action script, base script)})`` from ScummVM's ``sky.cpt``.

    Layout (``SkyCompact::SkyCompact``, compact.cpp): uint16 version 0, the number of data lists, each list's length,
    the sizes of the raw and of the source data (uint32, in words), the source data (per entry: its size in words,
    then, when not 0, its type and its words), then the entries' NUL-terminated names in the same order. The scripts
    are words 17 (``actionScript``) and 27 (``baseSub``) of the entries of type 1, the ``Compact`` struct (struc.h).
    """
    data = Path(path).read_bytes()
    try:
        version, lists = struct.unpack_from("<HH", data, 0)
        if version != 0:
            raise ValueError(f"unknown version {version}")
        lengths = struct.unpack_from(f"<{lists}H", data, 4)
        pos = 4 + 2 * lists + 4  # (the raw size is not needed)
        (src_words,) = struct.unpack_from("<I", data, pos)
        src = data[pos + 4: pos + 4 + 2 * src_words]
        pos += 4 + 2 * src_words
        (ascii_size,) = struct.unpack_from("<I", data, pos)
        blob = data[pos + 4: pos + 4 + ascii_size]
        if len(src) != 2 * src_words or len(blob) != ascii_size:
            raise ValueError("truncated")
        names, scripts, s, a = {}, {}, 0, 0
        for lst in range(lists):
            for e in range(lengths[lst]):
                (size,) = struct.unpack_from("<H", src, s)
                s += 2
                if not size:
                    continue
                cid, (kind,) = lst << 12 | e, struct.unpack_from("<H", src, s)
                end = blob.index(b"\0", a)
                names[cid] = blob[a:end].decode("ascii", "replace")
                a = end + 1
                if kind == 1 and size > 27:
                    words = struct.unpack_from("<28H", src, s + 2)
                    scripts[cid] = (words[17], words[27])
                s += 2 + 2 * size
        return names, scripts
    except (struct.error, ValueError) as exc:
        raise ValueError(f"{path}: not a readable sky.cpt ({exc})") from None


class ScriptFacts:
    """What the static scan of one script found."""

    __slots__ = ("speech", "player_evidence", "starts", "they_start", "assigns")

    def __init__(self):
        self.speech: List[Tuple[str, Optional[int], int]] = []  # (who: id/cur/player/talk/option, id, text)
        self.player_evidence = False  # a chooser, a dialogue option or a wait for another speaker: the player runs it
        self.starts: List[int] = []  # fn_start_sub(script): runs on the same compact
        self.they_start: List[Tuple[int, int]] = []  # fn_they_start_sub(compact, script)
        self.assigns: List[Tuple[int, int]] = []  # fn_assign_base(compact, script)


def scan_module(module: int, data: bytes) -> Dict[int, ScriptFacts]:
    """``{script number: facts}`` of one script module (file 60400 + ``module``): each script decoded linearly from
    its start to the next script's start, with a symbolic stack of what was pushed (a constant, a variable, or
    unknown); ``ValueError`` for data that is not a module."""
    n = len(data) // 2
    words = struct.unpack(f"<{n}H", data[: 2 * n])
    if not n or not 1 < words[0] <= n:
        raise ValueError(f"script module {module}: not a script table (first word {words[0] if n else None})")
    starts = {s: words[s] for s in range(1, words[0]) if words[0] <= words[s] < n}
    bounds = sorted(set(starts.values())) + [n]
    following = {a: b for a, b in zip(bounds, bounds[1:])}
    scripts: Dict[int, ScriptFacts] = {}
    for number, start in starts.items():
        facts, stack, talking = ScriptFacts(), [], None
        i, end = start, following[start]
        while i < end:
            op = words[i]
            if op == 14:  # switch: count, (value, offset) pairs, default offset
                stack[-1:] = []
                i += 3 + 2 * words[i + 1] if i + 1 < end else 1
                continue
            if op not in _OP_WORDS or i + _OP_WORDS[op] > n:
                break  # not code (data between scripts): stop this script here
            arg = words[i + 1] if _OP_WORDS[op] > 1 else None
            if op == 2:
                stack.append(("n", arg))
            elif op in (0, 15):
                stack.append(("v", arg) if op == 0 else (None, None))
            elif op in _BINARY_OPS:
                stack[-2:] = [(None, None)]
            elif op == 6:  # pop_var: track id_talking set to a constant in this script
                if arg == VAR_ID_TALKING:
                    talking = stack[-1][1] if stack and stack[-1][0] == "n" else None
                stack[-1:] = []
            elif op in (5, 16, 18):
                stack[-1:] = []
            elif op == 11:
                count, function = arg, words[i + 2] // 4
                args = stack[len(stack) - count:] if count else []
                args = [(None, None)] * (count - len(args)) + args
                del stack[len(stack) - count:]
                _record_call(facts, function, args, talking)
            i += _OP_WORDS[op]
        scripts[module << 12 | number] = facts
    return scripts


def _record_call(facts: ScriptFacts, function: int, args: list, talking: Optional[int]) -> None:
    const = [a[1] if a[0] == "n" else None for a in args]
    if function in FN_SPEAK and len(args) == 3 and const[1] is not None:
        who, text = args[0], const[1]
        if who[0] == "n":
            facts.speech.append(("id", who[1], text))
        elif who == ("v", VAR_CUR_ID):
            facts.speech.append(("cur", None, text))
        elif who == ("v", VAR_PLAYER_ID):
            facts.speech.append(("player", None, text))
        elif who == ("v", VAR_ID_TALKING):
            facts.speech.append(("id", talking, text) if talking is not None else ("talk", None, text))
        if function in (37, 38) and who != ("v", VAR_CUR_ID):
            facts.player_evidence = True  # "player waits for it to finish": the player runs this script
    elif function == FN_ASK_THIS and args and const[0] is not None:
        facts.speech.append(("option", None, const[0]))
        facts.player_evidence = True
    elif function == FN_CHOOSER:
        facts.player_evidence = True
    elif function == FN_START_SUB and const and const[0] is not None:
        facts.starts.append(const[0])
    elif function == FN_THEY_START_SUB and len(const) >= 2 and None not in const[:2]:
        facts.they_start.append((const[0], const[1]))
    elif function == FN_ASSIGN_BASE and len(const) >= 2 and None not in const[:2]:
        facts.assigns.append((const[0], const[1]))


def _runners(scripts: Dict[int, ScriptFacts], compacts: Dict[int, Tuple[int, int]]) -> Dict[int, set]:
    """Which compacts may run each script, as far as the static reach goes (see the module docstring)."""
    runners: Dict[int, set] = defaultdict(set)
    for cid, (action, base) in compacts.items():
        if action:
            runners[action].add(PLAYER)  # fn_interact: the player runs the clicked thing's action script
        if base:
            runners[base].add(cid)
    for sid, facts in scripts.items():
        if facts.player_evidence:
            runners[sid].add(PLAYER)
        for cid, target in facts.they_start + facts.assigns:
            runners[target].add(cid)
    changed = True
    while changed:  # what a script starts runs on the same compact
        changed = False
        for sid, facts in scripts.items():
            for target in facts.starts:
                if not runners[sid] <= runners[target]:
                    runners[target] |= runners[sid]
                    changed = True
    return runners


def attribute_lines(scripts: Dict[int, ScriptFacts], compacts: Dict[int, Tuple[int, int]], names: Dict[int, str],
                    lines: Iterable[int]) -> Tuple[Dict[str, List[int]], Dict[str, int]]:
    """``({talker: [speech line numbers]}, counts of lines left out by reason)`` for the speech ``lines`` present."""
    runners = _runners(scripts, compacts)
    votes: Dict[int, set] = defaultdict(set)
    for sid, facts in scripts.items():
        for who, cid, text in facts.speech:
            if who == "cur":
                run = runners.get(sid, set())
                cid = next(iter(run)) if len(run) == 1 else None
                if cid is None:
                    votes[text].add(None)
                    continue
            if who in ("player", "option"):
                cid = PLAYER
            if who == "talk":
                votes[text].add(f"conv_{sid:04x}")
            else:
                votes[text].add(names.get(cid, f"id_{cid:04x}"))
    talkers: Dict[str, List[int]] = defaultdict(list)
    left_out: Counter = Counter()
    for line in lines:
        who = votes.get(text_number(line))
        if not who:
            left_out["no script speaks it"] += 1
        elif None in who:
            left_out["speaker unknown"] += 1
        elif len(who) > 1:
            left_out["several speakers"] += 1
        else:
            talkers[next(iter(who))].append(line)
    return dict(talkers), dict(left_out)


def _paths(data_dir: Path) -> Tuple[Path, Path, Path]:
    data_dir = Path(data_dir)
    return data_dir / "sky.dnr", data_dir / "sky.dsk", data_dir / "sky.cpt"


def read_game(data_dir: Path = DATA_DIR) -> Tuple[SkyDisk, Dict[str, List[int]], Dict[str, int]]:
    """The game's disk, its speech lines by talker, and the counts of lines left out."""
    dnr, dsk, cpt = _paths(data_dir)
    if not all(p.is_file() for p in (dnr, dsk, cpt)):
        raise RuntimeError(f"steelsky voices need {' '.join(PACKAGES)} (apt-get install -y {' '.join(PACKAGES)}); "
                           f"no sky.dnr/sky.dsk/sky.cpt in {data_dir}")
    disk = SkyDisk(dnr, dsk)
    modules = [m for m in range(16) if MODULE_BASE + m in disk]
    if not modules:
        raise ValueError(f"{dnr}: no script modules (files {MODULE_BASE}...)")
    scripts: Dict[int, ScriptFacts] = {}
    for m in modules:
        scripts.update(scan_module(m, disk.read(MODULE_BASE + m)))
    names, compacts = read_compacts(cpt)
    talkers, left_out = attribute_lines(scripts, compacts, names, disk.speech_numbers())
    return disk, talkers, left_out


def build_steelsky(out, sample_rates: Sequence[int] = (8000,), seed: int = 0, utterance_s: float = 8.0,
                   data_dir: Path = DATA_DIR, min_seconds: float = 45.0, valid_every: int = 16,
                   progress: bool = False) -> Path:
    """The ``steelsky`` source in ``out`` (see the module docstring); returns the manifest path."""
    from .corpus import trim_silence
    from .voices import _finish, _resampled, _write_cast_member

    disk, talkers, left_out = read_game(data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    kept, dropped, bad = {}, {}, {}
    rate = 8000  # lines go to 8 kHz once; _write_utterances resamples to every other rate asked for
    for t_index, talker in enumerate(sorted(talkers)):
        rng = np.random.default_rng([seed, 29, t_index])
        name = f"bass_{talker}"
        lines, failed = [], 0
        for line in talkers[talker]:
            try:
                x = disk.speech(line)
            except ValueError as exc:
                failed += 1
                bad[SPEECH_BASE + line] = str(exc)[-120:]
                continue
            x = trim_silence(_resampled(x - x.mean(), SPEECH_RATE, rate), rate)
            if len(x) >= rate // 4:
                lines.append(x)
        records += _write_cast_member(out, name, lines, rate, rng, sample_rates=sample_rates, utterance_s=utterance_s,
                                      valid_every=valid_every, min_seconds=min_seconds, source="steelsky",
                                      failed=failed, kept=kept, dropped=dropped, progress=progress)
    if len(kept) < 2:
        raise RuntimeError(f"{data_dir}: fewer than two talkers with {min_seconds:.0f} s of speech")
    info = {"source": "steelsky", "game": "Beneath a Steel Sky, CD 0.0372 (Debian beneath-a-steel-sky)",
            "seed": seed, "sample_rates": list(sample_rates), "talkers": kept, "left_out": dropped,
            "lines_not_attributed": left_out, "undecodable_files": bad,
            "labels": "approximate (conv_* talkers: one conversation script each); for training only",
            "split": f"train (every {valid_every}th utterance valid)" if valid_every else "train"}
    return _finish(out, records, info)
