"""``fastsep compare``: paired differences between two eval CSVs."""
import csv

import pytest

from fastsep.cli import main as cli_main
from fastsep.commands.compare import compare


def _write(path, scores, ids=None, bundle="b"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item", "id", "mode", "si_sdri", "si_sdr", "method", "bundle"])
        for mode, values in scores.items():
            for i, v in enumerate(values):
                w.writerow([i, (ids or [f"m{j}" for j in range(len(values))])[i], mode,
                            "" if v is None else v, 0, "separate_and_diffuse", bundle])
    return str(path)


def test_paired_mean_and_interval(tmp_path):
    old = _write(tmp_path / "old.csv", {"backbone": [1.0, 2.0, 3.0, 4.0], "full": [1.0, 1.0, 1.0, 1.0]})
    new = _write(tmp_path / "new.csv", {"backbone": [1.5, 2.5, 3.7, 4.3], "full": [1.0, 1.0, 1.0, 1.0]})
    rows = {r["mode"]: r for r in compare(old, new)}
    assert rows["backbone"]["n"] == 4 and rows["backbone"]["mean"] == pytest.approx(0.5)
    assert rows["backbone"]["low"] < 0.5 < rows["backbone"]["high"]
    assert rows["full"]["mean"] == 0.0 and rows["full"]["low"] == rows["full"]["high"] == 0.0


def test_a_mixture_unscorable_in_one_file_only_is_refused(tmp_path):
    old = _write(tmp_path / "old.csv", {"backbone": [1.0, None, 3.0]})
    new = _write(tmp_path / "new.csv", {"backbone": [2.0, 5.0, 4.0]})
    with pytest.raises(ValueError, match="other mixtures"):
        compare(old, new)


def test_other_mixtures_and_bad_files_are_refused(tmp_path, capsys):
    old = _write(tmp_path / "old.csv", {"backbone": [1.0, 2.0]}, ids=["a", "b"])
    new = _write(tmp_path / "new.csv", {"backbone": [1.0, 2.0]}, ids=["a", "c"])
    assert cli_main(["compare", old, new]) == 2
    assert "other mixtures" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert cli_main(["compare", old, str(tmp_path / "x.csv")]) == 2
    assert "not a fastsep eval CSV" in capsys.readouterr().err
    same = _write(tmp_path / "same.csv", {"backbone": [1.0, 3.0]}, ids=["a", "b"])
    assert cli_main(["compare", old, same]) == 0
    assert "backbone   +0.50" in capsys.readouterr().out


def _write_table(path, models):
    """One eval CSV of several models: ``models`` is {name: {mode: [scores]}}, all on mixtures m0, m1, ..."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item", "id", "mode", "si_sdri", "si_sdr", "method", "bundle"])
        n = len(next(iter(next(iter(models.values())).values())))
        for i in range(n):
            for name, modes in models.items():
                for mode, values in modes.items():
                    w.writerow([i, f"m{i}", mode, values[i], 0, "separate_and_diffuse", name])
    return str(path)


def test_one_table_of_several_models_is_compared_against_one(tmp_path, capsys):
    from fastsep.commands.compare import compare_within

    table = _write_table(tmp_path / "t.csv", {"default": {"backbone": [1.0, 2.0, 3.0]},
                                              "0006000": {"backbone": [1.5, 2.5, 3.5]},
                                              "0007000": {"backbone": [0.0, 2.0, 3.0], "full": [9.0, 9.0, 9.0]}})
    ref, found = compare_within(table)
    assert ref == "default"
    rows = {(r["bundle"], r["mode"]): r["mean"] for r in found}
    assert rows == pytest.approx({("0006000", "backbone"): 0.5, ("0007000", "backbone"): -1 / 3})  # no full in default
    ref, found = compare_within(table, against="0006000")
    rows = {(r["bundle"], r["mode"]): r["mean"] for r in found}
    assert ref == "0006000"
    assert rows[("default", "backbone")] == pytest.approx(-0.5)
    assert cli_main(["compare", table]) == 0
    out = capsys.readouterr().out
    assert "- default, paired" in out and "0006000: backbone   +0.50" in out
    assert cli_main(["compare", table, "--against", "nobody"]) == 2
    assert "scores default, 0006000, 0007000" in capsys.readouterr().err
    single = _write(tmp_path / "one.csv", {"backbone": [1.0, 2.0]})
    assert cli_main(["compare", single]) == 2
    assert "give a second CSV" in capsys.readouterr().err
    assert cli_main(["compare", single, single, "--against", "b"]) == 2
    assert "--against is for one CSV" in capsys.readouterr().err
