"""CLI smoke tests: fastsep separate / eval / bench / demo on a tiny random bundle made here."""
import json
import os
import subprocess
import sys
import wave as wavmod

import numpy as np
import pytest
import torch

import fastsep
from fastsep import cli
from fastsep import separator as sepmod
from fastsep.commands.demo import make_mixture
from fastsep.commands.evaluate import evaluate
from fastsep.separator import Separator
from helpers import save_tiny_bundle, write_wav

SR = 8000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return save_tiny_bundle(tmp_path_factory.mktemp("bundle"), SR)


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


def test_module_entry_point_help():
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsep.__file__)))
    env = dict(os.environ, FASTSEP_NO_EXTENSION="1", PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-m", "fastsep", "separate", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0 and "--mode" in res.stdout and "--model" in res.stdout


def test_separate_command(bundle, tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "in" / "a.wav", rng.uniform(-0.3, 0.3, 4000))
    write_wav(tmp_path / "in" / "b.wav", rng.uniform(-0.3, 0.3, 6000))
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF....garbage")
    out = tmp_path / "out"
    rc = run_cli("separate", tmp_path / "in", "-o", out, "--model", bundle, "--mode", "full", "--no-progress")
    err = capsys.readouterr().err
    assert rc == 1 and "broken.wav" in err  # one failure makes the run fail, after the others were done
    assert sorted(f for f in os.listdir(out) if f.endswith(".wav")) == ["a_s1.wav", "a_s2.wav", "b_s1.wav",
                                                                         "b_s2.wav"]
    with wavmod.open(str(out / "b_s2.wav")) as w:
        assert w.getnframes() == 6000 and w.getframerate() == SR
    before = os.path.getmtime(out / "a_s1.wav")
    rc = run_cli("separate", tmp_path / "in" / "a.wav", "-o", out, "--model", bundle, "--mode", "full",
                 "--no-progress")
    assert rc == 0 and "1 skipped" in capsys.readouterr().out
    assert os.path.getmtime(out / "a_s1.wav") == before
    # another mode made by the same model is not what the files hold: redone
    rc = run_cli("separate", tmp_path / "in" / "a.wav", "-o", out, "--model", bundle, "--mode", "backbone",
                 "--no-progress")
    assert rc == 0 and "1 separated, 0 skipped" in capsys.readouterr().out


def test_separate_command_without_default_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sepmod, "DEFAULT_BUNDLE", str(tmp_path / "none"))
    write_wav(tmp_path / "a.wav", np.full(1000, 0.1))
    assert run_cli("separate", tmp_path / "a.wav", "-o", tmp_path / "o") == 2
    assert "train_default.sh" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_matches_direct_formula(bundle):
    # Independent check of the scores: SI-SDR written out here, best of the two orders chosen by hand. The random
    # bundle's estimates barely correlate with the mixture, so tied to its level they would be so quiet that the
    # metric's eps shows; the models' own level keeps this a check of the formula.
    sep = Separator.from_pretrained(bundle, mixture_consistent=False)
    g = torch.Generator().manual_seed(3)
    items = [{"sources": 0.1 * torch.randn(2, 3000, generator=g)} for _ in range(2)]
    for it in items:
        it["mixture"] = it["sources"].sum(0)

    def sisdr(e, r):
        e, r = e - e.mean(), r - r.mean()
        t = (e @ r) / (r @ r) * r
        return 10 * torch.log10((t @ t) / ((e - t) @ (e - t)))

    res = evaluate(sep, items, modes=("backbone", "full"), progress=False)
    for mode in ("backbone", "full"):
        want = 0.0
        for i, it in enumerate(items):
            est = sep.separate(it["mixture"], mode=mode, seed=i)  # evaluate seeds mixture i with seed + i
            s, m = it["sources"], it["mixture"]
            orders = [[0, 1], [1, 0]]
            best = max(orders, key=lambda o: float(sum(sisdr(est[o[i]], s[i]) for i in range(2))))
            want += float(sum(sisdr(est[best[i]], s[i]) - sisdr(m, s[i]) for i in range(2)) / 2)
        assert res[mode]["si_sdri"] == pytest.approx(want / len(items), abs=1e-3)
        assert res[mode]["n"] == 2


def test_eval_command_on_wsj0mix_layout(bundle, tmp_path, capsys):
    rng = np.random.default_rng(1)
    root = tmp_path / "wsj"
    for name in ("m1.wav", "m2.wav"):
        s1, s2 = rng.uniform(-0.2, 0.2, 3000), rng.uniform(-0.2, 0.2, 3000)
        write_wav(root / "tt" / "s1" / name, s1)
        write_wav(root / "tt" / "s2" / name, s2)
        write_wav(root / "tt" / "mix" / name, s1 + s2)
    out = tmp_path / "eval.json"
    rc = run_cli("eval", "--data", root, "--model", bundle, "--json", out, "--no-progress")
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "SI-SDRi" in text and "B + GM + F" in text and "xcorr" in text
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"backbone", "xcorr", "full"}
    assert all(np.isfinite(r["si_sdri"]) and r["n"] == 2 for r in data["results"].values())
    assert "seeded with 0 + i" in text and data["seed"] == 0
    assert str(tmp_path) not in out.read_text()  # no machine paths in a file meant to be shared
    # a second run scores exactly the same (vocoder noise seeded per mixture); outside a terminal the progress
    # comes as plain lines on stderr
    again = tmp_path / "again.json"
    assert run_cli("eval", "--data", root, "--model", bundle, "--json", again) == 0
    captured = capsys.readouterr()
    def scores(results):  # each row's scores; its separation time (rtf) is a measurement that varies run to run
        return {mode: {k: v for k, v in row.items() if k != "rtf"} for mode, row in results.items()}

    assert scores(json.loads(again.read_text())["results"]) == scores(data["results"])
    assert all(r["rtf"] > 0 for r in data["results"].values())
    assert "eval: 2/2 mixtures" in captured.err



def test_bench_command(bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run_cli("bench", "--model", bundle, "--lengths", "0.25", "--batch-sizes", "1,2", "--repeats", "1",
                   "--json", out) == 0
    rows = json.loads(out.read_text())["rows"]
    stages = {r["stage"] for r in rows}
    assert {"backbone", "vocoder", "combiner", "xcorr", "mode:full", "mode:xcorr", "mode:backbone"} <= stages
    for r in rows:
        assert r["latency_s"] > 0 and r["rtf"] == pytest.approx(r["latency_s"] / (r["seconds_audio"] * r["batch"]))
    assert run_cli("bench", "--model", bundle, "--lengths", "-1") == 2


def test_precision_option_reaches_the_vocoder(bundle, monkeypatch):
    # --precision sets the vocoder's sampling precision and F's through Separator(vocoder_precision=...,
    # combiner_precision=...)
    from fastsep import Separator

    seen = []
    real_init = Separator.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        seen.append((self.vocoder_precision, self.combiner_precision))
        assert self.vocoder.sampling_precision == "float32"  # passed per call, the vocoder left as it was

    monkeypatch.setattr(Separator, "__init__", spy)
    assert run_cli("bench", "--model", bundle, "--lengths", "0.25", "--batch-sizes", "1", "--repeats", "1",
                   "--precision", "bfloat16") == 0
    assert seen == [("bfloat16", "bfloat16")]
    with pytest.raises(ValueError, match="vocoder_precision"):
        Separator.from_pretrained(bundle, vocoder_precision="half")
    with pytest.raises(ValueError, match="combiner_precision"):
        Separator.from_pretrained(bundle, combiner_precision="half")


def test_demo_command(bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--model", bundle, "-o", out) == 0
    text = capsys.readouterr().out
    for mode in ("full", "xcorr", "backbone"):
        assert mode in text
        assert (out / f"{mode}_s1.wav").exists() and (out / f"{mode}_s2.wav").exists()
    assert (out / "mixture.wav").exists() and (out / "reference_s2.wav").exists()
    assert "vocoder noise seed 0" in text
    first = (out / "full_s1.wav").read_bytes()
    assert run_cli("demo", "--model", bundle, "-o", out) == 0 and (out / "full_s1.wav").read_bytes() == first
    text = capsys.readouterr().out
    try:
        from matplotlib import image as mpimg
    except ImportError:
        assert "no spectrogram figure" in text and "pip install matplotlib" in text
        return
    png = out / "spectrogram.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(str(png))
    # five rows of panels (mixture, references, three modes) at a readable size, in colour
    assert img.shape[0] > 5 * 150 and img.shape[1] > 800 and img.shape[2] in (3, 4)
    assert float(img[..., :3].std(axis=-1).mean()) > 0.01  # not grey: a colour scale


def test_demo_figure_titles_name_every_panel():
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from fastsep.plots import demo_panels, spectrogram_figure

    mix, src = make_mixture(SR)
    rows = demo_panels(mix, list(src), [("Full (B + GM + F)", list(src), [9.44, -1.5])])
    fig = spectrogram_figure(rows, SR)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert titles == ["Mixture (input)", "Reference, talker 1", "Reference, talker 2",
                      "Full (B + GM + F): talker 1   SI-SDRi +9.44 dB", "Full (B + GM + F): talker 2   SI-SDRi -1.50 dB"]
    image_axes = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert all(ax.get_ylabel() == "frequency (kHz)" for ax in image_axes)
    assert image_axes[-1].get_xlabel() == "time (s)"
    assert image_axes[0].get_ylim() == (0.0, SR / 2000)  # frequency axis up to Nyquist, in kHz
    # one colour scale for all panels: the same limits everywhere, 80 dB deep
    limits = {ax.images[0].get_clim() for ax in image_axes}
    assert len(limits) == 1
    low, high = limits.pop()
    assert high - low == pytest.approx(80.0)
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1 and "dB" in colorbars[0].get_ylabel()


def test_demo_mixture_is_sum_of_distinct_talkers():
    mix, src = make_mixture(SR)
    assert src.shape[0] == 2 and torch.allclose(mix, src.sum(0))
    assert src[0].norm() == pytest.approx(float(src[1].norm()), rel=1e-4)  # 0 dB
    corr = float((src[0] @ src[1]) / (src[0].norm() * src[1].norm()))
    assert abs(corr) < 0.2


def test_commands_apply_the_thread_setting(monkeypatch, tmp_path, capsys):
    # FASTSEP_NUM_THREADS reaches every command (training and eval included), not only those with --threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FASTSEP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert run_cli("compare", tmp_path / "missing_a.csv", tmp_path / "missing_b.csv") == 2
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("FASTSEP_NUM_THREADS", "zero")
        assert run_cli("compare", tmp_path / "missing_a.csv", tmp_path / "missing_b.csv") == 2
        assert "FASTSEP_NUM_THREADS must be a positive integer" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_eval_never_writes_into_the_installed_default(bundle, tmp_path, monkeypatch):
    import fastsep.separator as sepmod

    rng = np.random.default_rng(2)
    root = tmp_path / "wsj"
    s1, s2 = rng.uniform(-0.2, 0.2, 3000), rng.uniform(-0.2, 0.2, 3000)
    write_wav(root / "tt" / "s1" / "m1.wav", s1)
    write_wav(root / "tt" / "s2" / "m1.wav", s2)
    write_wav(root / "tt" / "mix" / "m1.wav", s1 + s2)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # another bundle gets its eval.json beside it; the installed default (the package's files) never does
    assert run_cli("eval", "--data", root, "--model", bundle, "--modes", "backbone", "--no-progress") == 0
    assert os.path.isfile(os.path.join(bundle, "eval.json")) and not (work / "eval.json").exists()
    os.remove(os.path.join(bundle, "eval.json"))
    monkeypatch.setattr(sepmod, "DEFAULT_BUNDLE", str(bundle))
    assert run_cli("eval", "--data", root, "--model", bundle, "--modes", "backbone", "--no-progress") == 0
    assert not os.path.exists(os.path.join(bundle, "eval.json")) and (work / "eval.json").is_file()


def test_plot_swaps_draws_the_mixtures_worst_first(bundle, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from matplotlib import image as mpimg

    rng = np.random.default_rng(3)
    root = tmp_path / "wsj"
    for name in ("m1.wav", "m2.wav", "m3.wav"):
        s1, s2 = rng.uniform(-0.2, 0.2, 12000), rng.uniform(-0.2, 0.2, 12000)
        write_wav(root / "tt" / "s1" / name, s1)
        write_wav(root / "tt" / "s2" / name, s2)
        write_wav(root / "tt" / "mix" / name, s1 + s2)
    out = tmp_path / "swaps.png"
    rc = run_cli("plot", "swaps", "--data", root, "--model", bundle, "--segment", 0, "--rows", 2, "-o", out)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "3 mixtures: swaps cost" in text and "undoing only the clear swaps" in text
    assert mpimg.imread(str(out)).shape[0] > 100
    assert run_cli("plot", "swaps", "--data", root, "--model", bundle, "--mode", "nonesuch", "-o", out) == 2
    assert "--mode 'nonesuch'" in capsys.readouterr().err
