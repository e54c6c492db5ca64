"""Reading training logs back (fastsep.train.logs) and `fastsep plot curves`."""
import json

import numpy as np
import pytest

from fastsep import cli
from fastsep.plots import _moving_average
from fastsep.train.logs import read_training_log


def write_log(path, records, broken_after=None):
    lines = [json.dumps(r) for r in records]
    if broken_after is not None:
        lines.insert(broken_after, '{"event": "train", "step": 9')  # a line cut by a kill
    path.write_text("\n".join(lines) + "\n")


def start(monitor="si_sdri", mode="max"):
    return {"event": "start", "config": {"monitor": monitor, "monitor_mode": mode}}


def test_reads_curves_resume_and_broken_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_log(run / "log.jsonl", [
        start(),
        {"event": "train", "step": 50, "loss": -1.0, "lr": 1e-3},
        {"event": "train", "step": 100, "loss": -2.0, "lr": 1e-3},
        {"event": "epoch", "step": 100, "si_sdri": 3.0, "train_loss": -1.5},
        {"event": "train", "step": 150, "loss": -2.5, "lr": 1e-3},
        # killed at 150 after the checkpoint of step 100: the resumed run logs step 150 again
        start(),
        {"event": "train", "step": 150, "loss": -2.2, "lr": 5e-4},
        {"event": "epoch", "step": 200, "si_sdri": 2.5},
        {"event": "stop", "reason": "max_steps"},
    ], broken_after=5)
    log = read_training_log(str(run))
    assert log.name == "run" and log.monitor == "si_sdri"
    assert log.train == [(50, -1.0), (100, -2.0), (150, -2.2)]  # the resumed record replaces the repeated step
    assert log.lr == [(50, 1e-3), (100, 1e-3), (150, 5e-4)]
    assert log.valid == [(100, 3.0), (200, 2.5)]
    assert log.restarts == [0, 150]
    assert log.skipped_lines == 1
    assert log.best_valid() == (100, 3.0)


def test_best_follows_monitor_mode(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, [start("mel_l1", "min"), {"event": "epoch", "step": 10, "mel_l1": 0.9},
                     {"event": "epoch", "step": 20, "mel_l1": 0.4}, {"event": "epoch", "step": 30, "mel_l1": 0.6}])
    log = read_training_log(str(path), name="gm")
    assert log.name == "gm" and log.best_valid() == (20, 0.4) and log.train == []


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training log"):
        read_training_log(str(tmp_path))


def test_moving_average_is_trailing_mean():
    x = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(_moving_average(x, 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(_moving_average(x, 1), x)


def test_plot_curves_command(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from matplotlib import image as mpimg

    runs = []
    for i, name in enumerate(("a", "b")):
        run = tmp_path / name
        run.mkdir()
        write_log(run / "log.jsonl", [start()] + [
            {"event": "train", "step": s, "loss": -s / 100 - i, "lr": 1e-3} for s in range(50, 550, 50)] + [
            {"event": "epoch", "step": 500, "si_sdri": 4.0 + i}])
        runs.append(run)
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "curves", str(runs[0]), str(runs[1]), "-o", str(out), "--labels", "x,y"]) == 0
    image = mpimg.imread(str(out))
    assert image.shape[0] > 400 and image.shape[1] > 400 and image[..., :3].std() > 0.05
    text = capsys.readouterr().out
    assert "x: last step 500, best si_sdri 4 at step 500" in text and "y: last step 500, best si_sdri 5" in text

    assert cli.main(["plot", "curves", str(runs[0]), "-o", str(out), "--labels", "x,y"]) == 2
    assert cli.main(["plot", "curves", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert "no training log" in capsys.readouterr().err


def test_cpu_minutes_follow_the_logged_cpu_time(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, [start(), {"event": "train", "step": 50, "loss": -1.0, "lr": 1e-3, "cpu_s": 60.0},
                     {"event": "train", "step": 100, "loss": -2.0, "lr": 1e-3, "cpu_s": 180.0},
                     {"event": "epoch", "step": 100, "si_sdri": 3.0}])
    log = read_training_log(str(path))
    assert log.cpu == [(50, 60.0), (100, 180.0)]
    # from zero at step 0, linear between records, the last value held beyond them
    np.testing.assert_allclose(log.cpu_minutes([0, 25, 75, 100, 120]), [0.0, 0.5, 2.0, 3.0, 3.0])
    old = tmp_path / "old.jsonl"
    write_log(old, [start(), {"event": "train", "step": 50, "loss": -1.0, "lr": 1e-3}])
    with pytest.raises(ValueError, match="logged no CPU time"):
        read_training_log(str(old)).cpu_minutes([50])


def test_plot_curves_against_cpu_time(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from fastsep.plots import learning_curves_figure

    run = tmp_path / "cheap"
    run.mkdir()
    write_log(run / "log.jsonl", [start()] + [
        {"event": "train", "step": s, "loss": -s / 100, "lr": 1e-3, "cpu_s": 3.0 * s} for s in range(50, 550, 50)] + [
        {"event": "epoch", "step": 500, "si_sdri": 4.0}])
    fig = learning_curves_figure([read_training_log(str(run))], x="cpu")
    valid_line = fig.axes[1].lines[0]
    np.testing.assert_allclose(valid_line.get_xdata(), [25.0])  # step 500 at 1500 CPU seconds
    assert "CPU minutes" in fig.axes[2].get_xlabel()
    with pytest.raises(ValueError, match="x must be"):
        learning_curves_figure([read_training_log(str(run))], x="wall")
    out = tmp_path / "cpu.png"
    assert cli.main(["plot", "curves", str(run), "-o", str(out), "--x", "cpu"]) == 0 and out.stat().st_size > 0
    old = tmp_path / "old"
    old.mkdir()
    write_log(old / "log.jsonl", [start(), {"event": "train", "step": 50, "loss": -1.0, "lr": 1e-3}])
    assert cli.main(["plot", "curves", str(old), "-o", str(out), "--x", "cpu"]) == 2
    assert "logged no CPU time" in capsys.readouterr().err


def _eval_json(path, rows, data="recorded", items=100):
    results = {f"{name}:{mode}": {"bundle": name, "mode": mode, "si_sdri": v, "si_sdri_ci95": [v - 1, v + 1]}
               for name, mode, v in rows}
    path.write_text(json.dumps({"data": data, "split": "test", "items": items, "seed": 0, "segment": 4.0,
                                "results": results}))
    return path


def test_tables_of_one_set_share_a_panel(tmp_path):
    from fastsep.commands.plot_checkpoints import panels_from_evals

    early = _eval_json(tmp_path / "early.json", [("0005000", "backbone", 1.0), ("default", "backbone", 1.2)])
    late = _eval_json(tmp_path / "late.json", [("0006000", "backbone", 1.5), ("default", "backbone", 9.9)])
    other = _eval_json(tmp_path / "f.json", [("0006000", "backbone", 4.0)], "festival")
    panels = dict(panels_from_evals([str(early), str(other), str(late)], "backbone", "si_sdri"))
    assert list(panels) == ["recorded (test, 100 mixtures)", "festival (test, 100 mixtures)"]
    rec = {s.name: s.mean for s in panels["recorded (test, 100 mixtures)"]}
    assert rec == {"0005000": 1.0, "default": 1.2, "0006000": 1.5}  # a model scored twice keeps its first score
    fewer = _eval_json(tmp_path / "fewer.json", [("0007000", "backbone", 2.0)], items=50)
    panels = panels_from_evals([str(fewer)], "backbone", "si_sdri")  # alone it is a panel of its own
    assert panels[0][0] == "recorded (test, 50 mixtures)"
    fewer.write_text(early.read_text().replace('"seed": 0', '"seed": 7'))
    with pytest.raises(ValueError, match="other mixtures"):
        panels_from_evals([str(early), str(fewer)], "backbone", "si_sdri")


def test_checkpoint_scores_read_steps_and_references(tmp_path):
    from fastsep.commands.plot_checkpoints import scores_from_eval

    path = _eval_json(tmp_path / "e.json", [("0006000", "backbone", 1.5), ("default", "backbone", 1.2),
                                            ("0006000", "full", 1.9), ("average", "backbone", 1.4)])
    label, scores = scores_from_eval(str(path), "backbone", "si_sdri")
    assert label == "recorded (test, 100 mixtures)"
    by_name = {s.name: s for s in scores}
    assert set(by_name) == {"0006000", "default", "average"}  # the full-mode row is another mode's
    assert by_name["0006000"].step == 6000 and by_name["0006000"].mean == 1.5
    assert by_name["default"].step is None
    assert (by_name["default"].low, by_name["default"].high) == pytest.approx((0.2, 2.2))
    with pytest.raises(ValueError, match="no 'xcorr' scores"):
        scores_from_eval(str(path), "xcorr", "si_sdri")


def test_plot_checkpoints_command(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from matplotlib import image as mpimg

    a = _eval_json(tmp_path / "a.json", [("0005000", "backbone", 1.0), ("0006000", "backbone", 1.6),
                                         ("default", "backbone", 1.2)])
    b = _eval_json(tmp_path / "b.json", [("0005000", "backbone", 4.0), ("0006000", "backbone", 3.8)], "festival")
    out = tmp_path / "ck.png"
    assert cli.main(["plot", "checkpoints", str(a), str(b), "-o", str(out)]) == 0
    image = mpimg.imread(str(out))
    assert image.shape[0] > 400 and image[..., :3].std() > 0.05
    text = capsys.readouterr().out
    assert "recorded (test, 100 mixtures): 3 model(s), highest 0006000 1.60" in text
    assert "festival (test, 100 mixtures): 2 model(s), highest 0005000 4.00" in text
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert cli.main(["plot", "checkpoints", str(tmp_path / "bad.json"), "-o", str(out)]) == 2
    assert "not a fastsep eval JSON" in capsys.readouterr().err
