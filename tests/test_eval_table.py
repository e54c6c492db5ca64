"""fastsep eval's table, JSON and per-mixture CSV on a tiny wsj0-mix-layout set cut from the bundled talkers, and the
statistics behind them (intervals and paired differences) recomputed from the CSV."""
import csv
import json
import math
import sys

import pytest

from fastsep import cli
from fastsep.commands.demo import make_mixture
from fastsep.commands.evaluate import Evaluation, format_table
from fastsep.metrics import mean_confidence_interval
from helpers import save_tiny_bundle, write_wav

SR = 8000
N_MIX = 3


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A random tiny model (its F starts near the identity, so full stays close to the backbone)."""
    return save_tiny_bundle(tmp_path_factory.mktemp("bundle"), SR)


@pytest.fixture(scope="module")
def speech_set(tmp_path_factory):
    """Three 1 s two-talker mixtures (wsj0-mix layout) cut from the bundled talkers: real speech, so PESQ and ESTOI
    find utterances to score."""
    root = tmp_path_factory.mktemp("wsj")
    _, sources = make_mixture(SR)
    seg = SR
    assert sources.shape[-1] >= N_MIX * seg
    for k in range(N_MIX):
        s1, s2 = (s[k * seg:(k + 1) * seg].numpy() for s in sources)
        write_wav(root / "tt" / "s1" / f"m{k}.wav", s1)
        write_wav(root / "tt" / "s2" / f"m{k}.wav", s2)
        write_wav(root / "tt" / "mix" / f"m{k}.wav", s1 + s2)
    return str(root)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_writes_table_json_and_csv(bundle, speech_set, tmp_path, capsys):
    pytest.importorskip("pesq", reason="pesq not installed (optional)")
    pytest.importorskip("pystoi", reason="pystoi not installed (optional)")
    out_json, out_csv = tmp_path / "eval.json", tmp_path / "eval.csv"
    rc = cli.main(["eval", "--data", speech_set, "--model", bundle, "--metrics", "si_sdr,sdr,pesq,estoi",
                   "--json", str(out_json), "--csv", str(out_csv), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    # one row per mode, one column per metric
    for heading in ("SI-SDRi (dB)", "SI-SDR (dB)", "SDR (dB)", "SIR (dB)", "SAR (dB)", "PESQ-NB", "ESTOI"):
        assert heading in text
    for label in ("B (backbone alone)", "xcorr-aligned", "B + GM + F", "full - backbone", "xcorr - backbone"):
        assert label in text
    assert "PESQ-WB" not in text  # 8 kHz model: narrow-band only

    rows = _read_csv(out_csv)
    assert len(rows) == N_MIX * 3
    assert {r["mode"] for r in rows} == {"backbone", "xcorr", "full"}
    assert list(rows[0]) == ["item", "id", "mode", "si_sdri", "si_sdr", "sdr", "sir", "sar", "pesq_nb", "estoi",
                             "method", "bundle"]  # the method and bundle of each row come after the old columns

    data = json.loads(out_json.read_text())
    assert data["metrics"] == ["si_sdri", "si_sdr", "sdr", "sir", "sar", "pesq_nb", "estoi"]
    assert data["unavailable"] == {} and data["sample_rate"] == SR and data["n_src"] == 2
    for mode, res in data["results"].items():
        assert res["n"] == N_MIX
        for col in data["metrics"]:
            values = [float(r[col]) for r in rows if r["mode"] == mode]
            mean, low, high = mean_confidence_interval(values)
            # the summary is the CSV's column (CSV cells have 6 significant digits: a cell like -22.9343 is off by up
            # to 5e-5, and the t quantile of 3 mixtures (4.3) magnifies that in the interval's ends)
            assert res[col] == pytest.approx(mean, abs=1e-4)
            assert res[f"{col}_ci95"] == pytest.approx([low, high], abs=1e-3)
            assert res[f"{col}_n"] == N_MIX
        assert 1.0 <= res["pesq_nb"] <= 4.6 and 0.0 <= res["estoi"] <= 1.0
        assert res["rtf"] > 0  # the row's separation time per second of audio
    assert "separation time per second of audio" in text
    # the paired difference is the mean and t interval of the per-mixture differences
    for pair, (a, b) in (("full-backbone", ("full", "backbone")), ("xcorr-backbone", ("xcorr", "backbone"))):
        for col in data["metrics"]:
            by_item = {(r["item"], r["mode"]): float(r[col]) for r in rows}
            diffs = [by_item[(str(i), a)] - by_item[(str(i), b)] for i in range(N_MIX)]
            mean, low, high = mean_confidence_interval(diffs)
            got = data["paired"][pair][col]
            assert got["mean"] == pytest.approx(mean, abs=1e-4) and got["n"] == N_MIX
            assert got["ci95"] == pytest.approx([low, high], abs=1e-3)


def test_eval_recipe_call_keeps_old_keys_and_default_is_cheap(bundle, speech_set, tmp_path, capsys):
    # what recipes/train_default.sh runs; old readers look up results -> mode -> si_sdri / si_sdr / n
    out = tmp_path / "e.json"
    rc = cli.main(["eval", "--data", speech_set, "--model", bundle, "--segment", "4", "--max-items", "2", "--json",
                   str(out), "--no-progress"])
    assert rc == 0
    capsys.readouterr()
    data = json.loads(out.read_text())
    for res in data["results"].values():
        assert isinstance(res["si_sdri"], float) and isinstance(res["si_sdr"], float) and res["n"] == 2
    assert data["metrics"] == ["si_sdri", "si_sdr", "sdr", "sir", "sar"]  # no PESQ/ESTOI unless asked


def test_eval_reports_missing_packages_as_absent(bundle, speech_set, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pystoi", None)
    out_json, out_csv = tmp_path / "e.json", tmp_path / "e.csv"
    rc = cli.main(["eval", "--data", speech_set, "--model", bundle, "--modes", "backbone", "--metrics",
                   "pesq,estoi", "--json", str(out_json), "--csv", str(out_csv), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "PESQ-NB absent: the pesq package is not installed" in text and "ESTOI absent" in text
    res = json.loads(out_json.read_text())
    assert res["results"]["backbone"]["pesq_nb"] is None and res["results"]["backbone"]["estoi"] is None
    assert set(res["unavailable"]) == {"pesq_nb", "estoi"}
    rows = _read_csv(out_csv)
    assert all(r["pesq_nb"] == "" and r["estoi"] == "" for r in rows)  # empty, never 0
    assert all(r["si_sdri"] != "" for r in rows)


def test_eval_rejects_unknown_metric_before_loading(tmp_path, capsys):
    rc = cli.main(["eval", "--data", str(tmp_path), "--model", str(tmp_path / "none"), "--metrics", "si_sdr,mos"])
    assert rc == 2 and "unknown metric 'mos'" in capsys.readouterr().err


def test_paired_difference_and_table_from_known_scores():
    # full beats backbone by 1 dB on every mixture plus small noise: the paired interval is tight around +1 and
    # excludes 0 although the two modes' own intervals overlap heavily.
    base = [2.0, 8.0, 5.0, 11.0, 4.0]
    bump = [1.1, 0.9, 1.0, 1.05, 0.95]
    run = Evaluation(["backbone", "full"], ["si_sdri", "si_sdr"], ids=[f"m{i}" for i in range(5)],
                     scores={"backbone": {"si_sdri": base, "si_sdr": base},
                             "full": {"si_sdri": [b + d for b, d in zip(base, bump)],
                                      "si_sdr": [b + d for b, d in zip(base, bump)]}})
    paired = run.paired()
    assert set(paired) == {"full-backbone"}  # xcorr was not scored
    got = paired["full-backbone"]["si_sdri"]
    mean, low, high = mean_confidence_interval(bump)
    assert got["mean"] == pytest.approx(mean) and got["ci95"] == pytest.approx([low, high])
    assert got["significant"] and 0.8 < low < high < 1.2
    summary = run.summary()
    assert summary["full"]["si_sdri_ci95"][0] < summary["backbone"]["si_sdri_ci95"][1]  # unpaired: overlap
    table = format_table(summary, paired)
    assert f"+{mean:.2f} ± {(high - low) / 2:.2f}*" in table
    assert "5 mixtures" in table
    # no timing recorded: no real-time factor claimed
    assert summary["full"]["rtf"] is None and "time per second" not in table
    timed = Evaluation(["backbone"], ["si_sdri"], ids=["m0", "m1"], scores={"backbone": {"si_sdri": [1.0, 2.0]}},
                       seconds={"backbone": 2.0}, audio_seconds=8.0)
    assert timed.summary()["backbone"]["rtf"] == pytest.approx(0.25)
    assert "B (backbone alone) 0.25" in format_table(timed.summary())


def test_single_mixture_has_no_interval():
    run = Evaluation(["backbone"], ["si_sdri", "si_sdr"], ids=["m0"],
                     scores={"backbone": {"si_sdri": [3.0], "si_sdr": [2.5]}})
    res = run.summary()["backbone"]
    assert res["si_sdri"] == 3.0 and res["si_sdri_ci95"] is None
    assert "3.00" in format_table(run.summary()) and "±" not in format_table(run.summary()).splitlines()[2]


def test_cuda_evaluation_is_made_repeatable(monkeypatch):
    # What `fastsep eval --device cuda` sets before scoring: cuDNN's deterministic algorithms and the vocoder's own
    # kernel stack (on an H100 those made two runs agree bit for bit; the default "auto" differed by ~2e-4).
    import torch

    from fastsep import Separator
    from fastsep.commands.evaluate import repeatable_on_cuda

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    sep = Separator.from_pretrained()
    assert sep.method.vocoder.cuda_stack == "auto"
    repeatable_on_cuda([sep])
    assert torch.backends.cudnn.deterministic and sep.method.vocoder.cuda_stack == "kernel"


def test_eval_shards_are_the_rows_of_one_run(bundle, speech_set, tmp_path, capsys):
    # --first-item: each mixture keeps its index and seed, so two shards hold the rows of one whole run (full mode
    # samples the vocoder, so a seed off by one would show), and compare reads the shards as one table
    whole, first, second = (tmp_path / f"{n}.csv" for n in ("whole", "first", "second"))
    base = ["eval", "--data", speech_set, "--model", bundle, "--modes", "backbone,full", "--metrics", "si_sdr",
            "--no-progress"]
    assert cli.main([*base, "--csv", str(whole), "--json", str(tmp_path / "w.json")]) == 0
    assert cli.main([*base, "--max-items", "1", "--csv", str(first), "--json", str(tmp_path / "a.json")]) == 0
    assert cli.main([*base, "--first-item", "1", "--csv", str(second), "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["first_item"] == 1
    assert "from mixture 1" in capsys.readouterr().out
    shards = _read_csv(first) + _read_csv(second)
    assert [(r["item"], r["id"], r["mode"]) for r in shards] == [(r["item"], r["id"], r["mode"])
                                                                  for r in _read_csv(whole)]
    for a, b in zip(shards, _read_csv(whole)):
        assert float(a["si_sdri"]) == pytest.approx(float(b["si_sdri"]), abs=1e-4)
    assert cli.main(["compare", str(whole), f"{first},{second}"]) == 0
    assert "n = 3" in capsys.readouterr().out
    assert cli.main(["compare", str(whole), f"{first},{first}"]) == 2  # a mixture twice: overlapping shards
    assert "scored twice" in capsys.readouterr().err
    assert cli.main([*base, "--first-item", "3"]) == 2
    assert "--first-item" in capsys.readouterr().err
