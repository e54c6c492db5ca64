"""Batch separation of files with reading and writing overlapped with the computation (fastsep.batch_files):
the same outputs, records, failures and order as one stage after another, resuming, and stopping cleanly."""
import json
import os

import numpy as np
import pytest
import torch

from fastsep import batch_files
from fastsep.audio import save
from fastsep.models.convtasnet import ConvTasNet
from fastsep.separator import Separator

SR = 8000


@pytest.fixture(scope="module")
def sep():
    torch.manual_seed(0)
    # 0.5 s chunks so that the 1.3 s file goes through the streamed (chunked) path
    return Separator(ConvTasNet.small(2, SR), sample_rate=SR, chunk_seconds=0.5, overlap_seconds=0.1)


def _tone(n, k, sr=SR):
    t = np.arange(n) / sr
    rng = np.random.default_rng(k)
    return (0.2 * np.sin(2 * np.pi * (200 + 50 * k) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture()
def inputs(tmp_path):
    """Short files, several of one length (batched together), one at 16 kHz, one long (chunked), and three bad
    ones: garbage, silent, too short."""
    folder = tmp_path / "in"
    for k in range(5):
        save(folder / f"same{k}.wav", _tone(2400, k), SR)
    save(folder / "odd.wav", _tone(3100, 7), SR)
    save(folder / "hi.wav", _tone(6000, 8, 16000), 16000)
    save(folder / "long.wav", _tone(10400, 9), SR)
    (folder / "garbage.wav").write_bytes(b"RIFF....not a wav file at all")
    save(folder / "silent.wav", np.zeros(2400, np.float32), SR)
    save(folder / "tiny.wav", _tone(300, 3), SR)
    return sorted(str(p) for p in folder.iterdir())


def _tree(folder):
    """Every output file's bytes (records without their times), by relative name."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def test_overlapped_run_equals_sequential_run(sep, inputs, tmp_path):
    seq = sep.separate_files(inputs, tmp_path / "seq", mode="backbone", batch_size=3, progress=False, overlap=False)
    ovl = sep.separate_files(inputs, tmp_path / "ovl", mode="backbone", batch_size=3, progress=False, overlap=True,
                             prefetch=1)
    assert list(ovl.written) == list(seq.written)  # same files, same order
    assert ovl.failed == seq.failed and ovl.scaled == seq.scaled and ovl.interrupted is None
    assert len(seq.written) == 8
    assert {os.path.basename(p) for p in seq.failed} == {"garbage.wav", "silent.wav", "tiny.wav"}
    assert "silent" in seq.failed[[p for p in inputs if p.endswith("silent.wav")][0]]
    assert _tree(tmp_path / "ovl") == _tree(tmp_path / "seq")  # every WAV and record byte for byte


def test_overlapped_full_mode_equals_sequential(inputs, tmp_path):
    from fastsep.commands.bench import small_random_separator

    torch.manual_seed(0)
    full = small_random_separator()
    few = [p for p in inputs if os.path.basename(p) in ("same0.wav", "same1.wav", "hi.wav", "garbage.wav")]
    seq = full.separate_files(few, tmp_path / "seq", mode="full", progress=False, overlap=False, seed=5)
    ovl = full.separate_files(few, tmp_path / "ovl", mode="full", progress=False, overlap=True, seed=5)
    assert list(seq.written) == list(ovl.written) and len(seq.written) == 3 and len(seq.failed) == 1
    assert _tree(tmp_path / "ovl") == _tree(tmp_path / "seq")


def test_resume_skips_what_is_done_and_redoes_what_changed(sep, inputs, tmp_path):
    out = tmp_path / "o"
    first = sep.separate_files(inputs, out, mode="backbone", progress=False)
    before = {p: os.path.getmtime(out / os.path.basename(p).replace(".wav", "_s1.wav")) for p in first.written}
    again = sep.separate_files(inputs, out, mode="backbone", progress=False)
    assert not again.written and sorted(again.skipped) == sorted(first.written)
    assert set(again.failed) == set(first.failed)  # bad files stay reported, never recorded as done
    changed = [p for p in inputs if p.endswith("odd.wav")][0]
    save(changed, _tone(3100, 11), SR)
    third = sep.separate_files(inputs, out, mode="backbone", progress=False)
    assert list(third.written) == [changed]
    for p, mtime in before.items():
        if p != changed:
            assert os.path.getmtime(out / os.path.basename(p).replace(".wav", "_s1.wav")) == mtime


def test_a_write_failure_is_that_files_alone(sep, inputs, tmp_path):
    out = tmp_path / "o"
    os.makedirs(out / "same1_s2.wav")  # a folder where an output file must go: replacing it fails
    res = sep.separate_files(inputs, out, mode="backbone", progress=False, overlap=True)
    bad = [p for p in inputs if p.endswith("same1.wav")][0]
    assert bad in res.failed and res.failed[bad].startswith("separation failed")
    assert len(res.written) == 7 and bad not in res.written
    assert not os.path.exists(out / "same1.fastsep.json")
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


@pytest.mark.parametrize("overlap", [False, True])
def test_interrupt_keeps_what_was_computed_and_leaves_no_temporaries(sep, inputs, tmp_path, monkeypatch, overlap):
    real = batch_files._compute_group
    calls = []

    def interrupted_at_third_group(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("SIGTERM")
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_files, "_compute_group", interrupted_at_third_group)
    out = tmp_path / "o"
    res = sep.separate_files(inputs, out, mode="backbone", batch_size=3, progress=False, overlap=overlap)
    assert res.interrupted == "SIGTERM"
    # groups in order: the 8 kHz files of 2400 samples (3 + 2, one of them silent), then the rest
    done = set(res.written) | set(res.failed)
    assert res.written and len(done) < len(inputs)
    for p in res.written:  # whatever was computed before the interrupt was written and recorded
        assert os.path.isfile(batch_files.record_path(p, out))
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]
    monkeypatch.setattr(batch_files, "_compute_group", real)
    rest = sep.separate_files(inputs, out, mode="backbone", batch_size=3, progress=False, overlap=overlap)
    assert set(rest.skipped) == set(res.written) and rest.interrupted is None
    assert set(rest.written) | set(rest.skipped) | set(rest.failed) == set(inputs)


def test_interrupt_inside_a_streamed_file_drops_its_partial_outputs(sep, inputs, tmp_path, monkeypatch):
    real = sep.iter_separate

    def stop_after_first_chunk(*args, **kwargs):
        for item in real(*args, **kwargs):
            yield item
            if args[0].shape[-1] > 8000:  # the long file: interrupted after its first chunk
                raise KeyboardInterrupt("SIGINT")

    monkeypatch.setattr(sep, "iter_separate", stop_after_first_chunk)
    out = tmp_path / "o"
    long = [p for p in inputs if p.endswith("long.wav")]
    res = sep.separate_files(long, out, mode="backbone", progress=False, overlap=True)
    assert res.interrupted == "SIGINT" and not res.written and not res.failed
    assert os.listdir(out) == []  # no output, no record, no temporary file


def test_a_crash_on_the_reading_thread_is_raised_not_hung(sep, inputs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(batch_files, "_load", broken)
    with pytest.raises(RuntimeError, match="reader bug"):
        sep.separate_files(inputs, tmp_path / "o", mode="backbone", progress=False, overlap=True)


def test_prefetch_is_checked(sep, inputs, tmp_path):
    with pytest.raises(ValueError, match="prefetch"):
        sep.separate_files(inputs, tmp_path / "o", mode="backbone", progress=False, prefetch=0)


def test_records_are_those_of_the_sequential_run(sep, inputs, tmp_path):
    res = sep.separate_files(inputs, tmp_path / "o", mode="backbone", progress=False, overlap=True)
    for p in res.written:
        with open(batch_files.record_path(p, tmp_path / "o"), encoding="utf-8") as fh:
            rec = json.load(fh)
        assert rec["settings"]["mode"] == "backbone" and rec["input"]["size"] == os.path.getsize(p)
