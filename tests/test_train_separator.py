"""``fastsep train separator``: its task (PIT SI-SDR loss, SI-SDRi validation), padding collate, the CLI."""
import itertools
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from fastsep import audio
from fastsep.cli import main as cli_main
from fastsep.models.io import load_model
from fastsep.train.separator import SeparationTask, pad_collate


def np_si_sdr(est, ref):
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def np_best_perm_sdr(est, ref):
    """Mean SI-SDR over sources under the best permutation, by brute force (est, ref: [C, T])."""
    n = ref.shape[0]
    return max(np.mean([np_si_sdr(est[p[i]], ref[i]) for i in range(n)]) for p in itertools.permutations(range(n)))


class PointwiseSplit(nn.Module):
    """Estimates a * mix + b * mix**2 per source: no learning needed, and the same on a cut or padded signal."""

    def __init__(self, n_src=2):
        super().__init__()
        self.a = nn.Parameter(torch.linspace(0.2, 0.9, n_src))
        self.b = nn.Parameter(torch.linspace(0.5, -0.3, n_src))

    def forward(self, mix, return_all=False):
        out = self.a[:, None] * mix[:, None] + self.b[:, None] * mix[:, None] ** 2
        return torch.stack([out, 0.5 * out.flip(1)]) if return_all else out


def item(n, seed, n_src=2):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(n_src, n, generator=g)
    return {"mixture": src.sum(0), "sources": src, "id": f"u{seed}"}


def test_pad_collate_pads_and_checks():
    batch = pad_collate([item(5, 1), item(8, 2)])
    assert batch["mixture"].shape == (2, 8) and batch["sources"].shape == (2, 2, 8)
    assert batch["lengths"].tolist() == [5, 8] and batch["id"] == ["u1", "u2"]
    assert torch.equal(batch["mixture"][0, 5:], torch.zeros(3))
    assert torch.equal(batch["sources"][0, :, :5], item(5, 1)["sources"])
    with pytest.raises(ValueError, match="same number of sources"):
        pad_collate([item(5, 1), item(5, 2, n_src=3)])
    with pytest.raises(ValueError, match="empty"):
        pad_collate([])


def test_validation_si_sdri_matches_brute_force():
    model = PointwiseSplit()
    items = [item(400, 3), item(250, 4)]
    expected_sdr, expected_sdri = [], []
    for it in items:
        est = model(it["mixture"][None])[0].detach().double().numpy()
        ref = it["sources"].double().numpy()
        mix = it["mixture"].double().numpy()
        best = np_best_perm_sdr(est, ref)
        expected_sdr.append(best)
        expected_sdri.append(best - np.mean([np_si_sdr(mix, r) for r in ref]))
    task = SeparationTask()
    with torch.no_grad():
        one_by_one = task.validate(model, [pad_collate([it]) for it in items])
        padded = task.validate(model, [pad_collate(items)])  # padded batch: each utterance scored on its own length
    for got in (one_by_one, padded):
        assert got["si_sdri"] == pytest.approx(np.mean(expected_sdri), abs=1e-3)
        assert got["si_sdr"] == pytest.approx(np.mean(expected_sdr), abs=1e-3)
        assert got["loss"] == pytest.approx(-got["si_sdr"])


def test_multi_block_loss_is_the_mean_over_blocks():
    model = PointwiseSplit()
    batch = pad_collate([item(300, 5), item(300, 6)])
    loss = SeparationTask(multi_block=True).training_loss(model, batch)
    outs = model(batch["mixture"], return_all=True).detach().double().numpy()
    ref = batch["sources"].double().numpy()
    per_block = [-np.mean([np_best_perm_sdr(o[b], ref[b]) for b in range(2)]) for o in outs]
    assert float(loss.detach()) == pytest.approx(np.mean(per_block), abs=1e-3)
    loss.backward()  # differentiable through every block
    assert model.a.grad is not None and torch.isfinite(model.a.grad).all()


def _write_wsj0(root, split, lengths, seed):
    rng = np.random.default_rng(seed)
    for k, n in enumerate(lengths):
        t = np.arange(n) / 8000.0
        s1 = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) * (1 + 0.2 * rng.standard_normal(n))
        s2 = 0.2 * np.sign(np.sin(2 * np.pi * rng.uniform(600, 900) * t))
        for sub, wave in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
            os.makedirs(os.path.join(root, split, sub), exist_ok=True)
            audio.save(os.path.join(root, split, sub, f"utt{k}.wav"), torch.tensor(wave, dtype=torch.float32), 8000)


def test_cli_trains_a_small_convtasnet(tmp_path, capsys):
    data, out = str(tmp_path / "wsj"), str(tmp_path / "run")
    _write_wsj0(data, "tr", [1200] * 4, seed=0)
    _write_wsj0(data, "cv", [800, 1000], seed=1)
    argv = ["train", "separator", "--model", "convtasnet", "--small", "--data", data, "--out", out,
            "--epochs", "2", "--batch-size", "2", "--segment", "0.125", "--num-workers", "0", "--no-progress",
            "--device", "cpu", "--lr", "3e-3"]
    assert cli_main(argv) == 0
    assert "SI-SDRi" in capsys.readouterr().out
    with open(os.path.join(out, "log.jsonl")) as fh:
        epochs = [r for r in map(json.loads, fh) if r["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(np.isfinite(e["si_sdri"]) for e in epochs)
    best = load_model(os.path.join(out, "best"))
    assert type(best).__name__ == "ConvTasNet" and best.config["n_src"] == 2
    with open(os.path.join(out, "best", "metrics.json")) as fh:
        assert json.load(fh)["si_sdri"] == pytest.approx(max(e["si_sdri"] for e in epochs))
    # a second call with more epochs resumes rather than restarting
    assert cli_main(argv[:10] + ["3"] + argv[11:]) == 0
    with open(os.path.join(out, "log.jsonl")) as fh:
        events = [json.loads(line)["event"] for line in fh]
    assert events.count("start") == 1 and events.count("resume") == 1 and events.count("epoch") == 3


def test_cli_reports_bad_data_clearly(tmp_path, capsys):
    code = cli_main(["train", "separator", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                     "--small", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastsep train separator: error: ") and "does not exist" in err


def test_cli_refuses_a_within_corpus_probability_outside_0_1(tmp_path, capsys):
    code = cli_main(["train", "separator", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--small",
                     "--mix-within-corpus", "1.5", "--no-progress"])
    assert code == 2
    assert "--mix-within-corpus must lie in [0, 1]" in capsys.readouterr().err


def test_combiner_cli_refuses_a_within_corpus_probability_outside_0_1(tmp_path, capsys):
    code = cli_main(["train", "combiner", "--data", str(tmp_path), "--backbone", str(tmp_path), "--vocoder",
                     str(tmp_path), "--out", str(tmp_path / "o"), "--mix-within-corpus", "-0.1", "--no-progress"])
    assert code == 2
    assert "--mix-within-corpus must lie in [0, 1]" in capsys.readouterr().err


def test_cli_refuses_data_weights_that_do_not_match_the_data(tmp_path, capsys):
    code = cli_main(["train", "separator", "--data", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o"),
                     "--small", "--data-weights", "1", "--no-progress"])
    assert code == 2
    assert "one weight per --data corpus: 1 for 2" in capsys.readouterr().err
