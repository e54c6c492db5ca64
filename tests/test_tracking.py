"""Talker tracking (fastsep.tracking), its embedding network and training task, and ``fastsep track``."""
import math

import pytest
import torch
from torch import nn

from fastsep.cli import main as cli_main
from fastsep.metrics import pit, si_sdr
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.io import load_model, save_model
from fastsep.models.talker_embedding import TalkerEmbedding
from fastsep.models.tracked import TrackedBackbone
from fastsep.tracking import activity_weights, apply_orders, choose_orders, track_talkers
from fastsep.train.tracker import TrackerTask, piece_labels

RATE = 8000
PIECE = 4000


def _voices(n_pieces=8, seed=0):
    """Two 'talkers': harmonic tones at 110 Hz and 260 Hz, each speaking in its own random pieces, always at least
    one of them."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_pieces * PIECE) / RATE
    a = sum(torch.sin(2 * math.pi * 110 * h * t) / h for h in range(1, 6))
    b = sum(torch.sin(2 * math.pi * 260 * h * t) / h for h in range(1, 6))
    on = torch.rand(2, n_pieces, generator=g) > 0.3
    on[:, 0] = True
    on[0, ~on.any(0)] = True
    gate = on.float().repeat_interleave(PIECE, dim=1)
    return 0.1 * torch.stack([a, b]) * gate


class _PitchEmbedding(nn.Module):
    """A hand-made 'talker embedding': the piece's normalised low-band spectrum (tells the two tones apart)."""

    min_samples = 64

    def forward(self, wave):
        spec = torch.fft.rfft(wave, n=800).abs()[:, 5:160]
        return nn.functional.normalize(spec, dim=-1)


def _swap(est, pieces):
    out = est.clone()
    for k in pieces:
        out[:, k * PIECE:(k + 1) * PIECE] = est.flip(0)[:, k * PIECE:(k + 1) * PIECE]
    return out


def test_choose_orders_finds_swapped_pieces():
    torch.manual_seed(0)
    centre = nn.functional.normalize(torch.randn(2, 16), dim=-1)
    emb = nn.functional.normalize(centre[:, None, :] + 0.2 * torch.randn(2, 10, 16), dim=-1)  # [C, K, D]
    swapped = [3, 4, 7]
    emb[:, swapped] = emb[:, swapped].flip(0)
    expect = torch.tensor([[1, 0] if k in swapped else [0, 1] for k in range(10)])
    assert torch.equal(choose_orders(emb, torch.ones(2, 10), max_changes=4), expect)
    # with two changes allowed, the best it can do is to undo the longer swap
    two = choose_orders(emb, torch.ones(2, 10))
    assert torch.equal(two[:7], expect[:7]) and (two != torch.tensor([0, 1])).any(-1).sum() <= 3


def test_choose_orders_three_talkers():
    torch.manual_seed(2)
    centre = nn.functional.normalize(torch.randn(3, 16), dim=-1)
    emb = nn.functional.normalize(centre[:, None, :] + 0.2 * torch.randn(3, 8, 16), dim=-1)
    emb[:, 5:] = emb[[2, 0, 1], 5:]  # from piece 5 on, output j holds what output j+1 should (a 3-cycle)
    orders = choose_orders(emb, torch.ones(3, 8))
    assert orders[:5].tolist() == [[0, 1, 2]] * 5 and orders[5:].tolist() == [[1, 2, 0]] * 3


def test_choose_orders_threshold_keeps_the_separators_order():
    torch.manual_seed(1)
    emb = nn.functional.normalize(torch.randn(2, 6, 8), dim=-1)
    assert torch.equal(choose_orders(emb, torch.ones(2, 6), threshold=1e6), torch.tensor([[0, 1]] * 6))


def test_apply_orders_swaps_pieces_and_keeps_the_sum():
    est = torch.randn(2, 4 * 100)
    bounds = [(k * 100, (k + 1) * 100) for k in range(4)]
    orders = torch.tensor([[0, 1], [1, 0], [1, 0], [0, 1]])
    hard = apply_orders(est, orders, bounds, fade=0)
    assert torch.equal(hard[:, 100:300], est.flip(0)[:, 100:300])
    assert torch.equal(hard[:, :100], est[:, :100]) and torch.equal(hard[:, 300:], est[:, 300:])
    soft = apply_orders(est, orders, bounds, fade=16)
    assert torch.allclose(soft.sum(0), est.sum(0), atol=1e-5)
    assert torch.equal(soft[:, 120:280], est.flip(0)[:, 120:280])


def test_track_talkers_undoes_swaps_with_a_discriminating_embedding():
    ref = _voices(seed=3)
    noisy = ref + 0.01 * torch.randn_like(ref)
    est = _swap(noisy, [2, 3, 4])
    before = si_sdr(pit(est[None], ref[None])[0], ref[None]).mean()
    unswapped = si_sdr(noisy[None], ref[None]).mean()
    tracked, orders = track_talkers(_PitchEmbedding(), est, RATE, PIECE / RATE, fade_seconds=0.0)
    after = si_sdr(pit(tracked[None], ref[None])[0], ref[None]).mean()
    assert after > before + 10.0
    assert after > unswapped - 0.05  # every swap undone
    batch, _ = track_talkers(_PitchEmbedding(), torch.stack([est, est]), RATE, PIECE / RATE, fade_seconds=0.0)
    assert torch.allclose(batch[0], tracked) and torch.allclose(batch[1], tracked)


def test_activity_weights_follow_each_outputs_loudness():
    est = torch.ones(2, 400)
    est[1, 200:] = 1e-4
    w = activity_weights(est, [(0, 200), (200, 400)])
    assert w[0].min() > 0.99 and w[1, 0] > 0.99 and w[1, 1] < 0.01


def test_piece_labels_name_the_talker_each_piece_holds():
    ref = _voices(n_pieces=6, seed=4)
    ref[1, 2 * PIECE:3 * PIECE] = 0.0  # talker 1 silent in piece 2
    est = _swap(ref + 0.001 * torch.randn_like(ref), [1, 4])
    out = piece_labels(est, ref, PIECE)
    on = (ref.reshape(2, 6, PIECE).abs().amax(-1) > 0)
    for k in range(6):
        if on[0, k] and on[1, k]:
            expect = [1, 0] if k in (1, 4) else [0, 1]
            assert out["labels"][:, k].tolist() == expect and out["mask"][:, k].tolist() == [1.0, 1.0]
    assert out["mask"][:, 2].sum() <= 1  # where one talker is silent, its output's label does not count


def test_talker_embedding_shapes_norm_and_errors():
    model = TalkerEmbedding(channels=16, n_layers=2, dim=8)
    out = model(torch.randn(3, 4000))
    assert out.shape == (3, 8)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="float audio"):
        model(torch.randn(4000))
    with pytest.raises(ValueError, match="at least"):
        model(torch.randn(1, 10))
    with pytest.raises(ValueError, match="positive int"):
        TalkerEmbedding(dim=0)
    with pytest.raises(ValueError, match="normalise"):
        TalkerEmbedding(normalise="global")


def test_talker_embedding_normalisations_differ_in_what_they_keep(tmp_path):
    """'piece' removes each band's mean over the piece; 'fixed' keeps the spectral envelope (a colouring changes the
    embedding), and saves and loads with its statistics."""
    torch.manual_seed(0)
    wave = torch.randn(2, 4000)
    tilted = torch.cat([wave[:, :1], wave[:, 1:] + 0.9 * wave[:, :-1]], dim=1)  # a low-pass colouring
    piece = TalkerEmbedding(channels=16, n_layers=2, dim=8).eval()
    fixed = TalkerEmbedding(channels=16, n_layers=2, dim=8, normalise="fixed").eval()
    assert torch.allclose(piece.features(wave).mean(-1), torch.zeros(2, 40), atol=1e-4)
    assert not torch.allclose(fixed(wave), fixed(tilted), atol=1e-3)
    save_model(fixed, tmp_path / "e")
    again = load_model(tmp_path / "e")
    assert again.config["normalise"] == "fixed" and torch.allclose(again.eval()(wave), fixed(wave), atol=1e-6)


def test_tracker_task_loss_falls_on_a_tiny_model():
    torch.manual_seed(0)
    refs = torch.stack([_voices(n_pieces=4, seed=s) for s in range(4)])
    est = torch.stack([_swap(r, [1]) for r in refs])
    labels = torch.stack([piece_labels(e, r, PIECE)["labels"] for e, r in zip(est, refs)])
    mask = torch.stack([piece_labels(e, r, PIECE)["mask"] for e, r in zip(est, refs)])
    batch = {"est": est, "labels": labels, "mask": mask}
    model = TalkerEmbedding(channels=16, n_layers=2, dim=8)
    task = TrackerTask(PIECE, RATE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(task.training_loss(model, batch))
    for _ in range(30):
        opt.zero_grad()
        loss = task.training_loss(model, batch)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(task.training_loss(model, batch)) < 0.5 * first


def _tiny_separator():
    torch.manual_seed(0)
    return ConvTasNet(n_src=2, n_filters=8, kernel_size=8, stride=4, bn_chan=8, hid_chan=8, skip_chan=8, n_blocks=2,
                      n_repeats=1, sample_rate=RATE).eval()


def test_tracked_backbone_saves_loads_and_tracks(tmp_path):
    sep, emb = _tiny_separator(), TalkerEmbedding(channels=16, n_layers=2, dim=8).eval()
    tracked = TrackedBackbone.from_models(sep, emb)
    mix = torch.randn(2, 3 * RATE)
    out = tracked(mix)
    expect, _ = track_talkers(emb, sep(mix), RATE)
    assert torch.allclose(out, expect, atol=1e-6)
    save_model(tracked, tmp_path / "t")
    again = load_model(tmp_path / "t")
    assert isinstance(again, TrackedBackbone) and torch.allclose(again(mix), out, atol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        TrackedBackbone(tracked.config["separator"], tracked.config["embedding"], threshold=-1)


def test_track_cli(tmp_path, capsys):
    save_model(_tiny_separator(), tmp_path / "sep")
    save_model(TalkerEmbedding(channels=16, n_layers=2, dim=8), tmp_path / "emb")
    assert cli_main(["track", str(tmp_path / "sep"), "--embedding", str(tmp_path / "emb"),
                     "--out", str(tmp_path / "t")]) == 0
    assert isinstance(load_model(tmp_path / "t"), TrackedBackbone)
    from fastsep.commands.bundle_sad import load_part

    assert isinstance(load_part(str(tmp_path / "t"), "backbone"), TrackedBackbone)  # bundles take it as B
    assert cli_main(["track", str(tmp_path / "sep"), "--embedding", str(tmp_path / "sep"),
                     "--out", str(tmp_path / "u")]) == 2
    assert "not a TalkerEmbedding" in capsys.readouterr().err


class _Oracle(nn.Module):
    """A 'separator' that returns the references it was built with (in the other order), plus a little noise."""

    def __init__(self, sources):
        super().__init__()
        self.sources = sources

    def forward(self, mix):
        return (self.sources.flip(0) + 1e-3 * torch.randn_like(self.sources))[None]


def test_separated_pieces_labels_follow_the_talkers_through_shuffled_outputs():
    from fastsep.train.tracker import SeparatedPieces

    torch.manual_seed(0)
    ref = _voices(n_pieces=6, seed=5)
    ref[:, :] = ref + 0.05 * torch.randn_like(ref)  # both talkers audible in every piece
    items = [{"mixture": ref.sum(0), "sources": ref}]
    plain = SeparatedPieces(items, _Oracle(ref), RATE, PIECE / RATE)[0]
    assert plain["labels"].tolist() == [[0] * 6, [1] * 6]  # matched over the whole mixture first
    shuffled = SeparatedPieces(items, _Oracle(ref), RATE, PIECE / RATE, shuffle_outputs=1.0)[0]
    assert shuffled["labels"].tolist() == [[1] * 6, [0] * 6]  # every piece swapped, and labelled so
    assert torch.allclose(shuffled["est"].flip(0), plain["est"], atol=1e-2)  # the same outputs, rolled


def _tone_corpus(root, seconds=1.5):
    """A tiny fastsep corpus: four harmonic 'talkers' (one pitch each), two utterances each in train and valid."""
    import json

    import numpy as np
    from scipy.io import wavfile

    (root / "wav").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    lines = []
    for i, f0 in enumerate((110, 160, 230, 310)):
        for split in ("train", "valid"):
            for u in range(2):
                rel = f"wav/t{i}_{split}{u}.wav"
                wave = sum(np.sin(2 * np.pi * f0 * h * t + u) / h for h in range(1, 5)) * 0.1
                wavfile.write(root / rel, RATE, wave.astype(np.float32))
                lines.append(json.dumps({"path": rel, "speaker": f"t{i}", "split": split, "sample_rate": RATE,
                                         "duration": seconds}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_train_tracker_cli_runs_resumes_and_tracks(tmp_path, capsys):
    import json

    data = _tone_corpus(tmp_path / "corpus")
    save_model(_tiny_separator(), tmp_path / "sep")
    def argv(epochs):
        return ["train", "tracker", "--separator", str(tmp_path / "sep"), "--data", str(data), "--out",
                str(tmp_path / "run"), "--segment", "1.0", "--piece", "0.25", "--train-items", "4",
                "--valid-items", "2", "--batch-size", "2", "--epochs", str(epochs), "--num-workers", "0",
                "--no-progress", "--device", "cpu",
                "--model-args", '{"channels": 16, "n_layers": 2, "dim": 8, "normalise": "fixed"}']

    assert cli_main(argv(1)) == 0
    assert "pair_accuracy" in capsys.readouterr().out
    assert cli_main(argv(2)) == 0  # two epochs now: resumes
    with open(tmp_path / "run" / "log.jsonl") as fh:
        events = [json.loads(line)["event"] for line in fh]
    assert events.count("resume") == 1 and events.count("epoch") == 2
    assert isinstance(load_model(tmp_path / "run" / "best"), TalkerEmbedding)
    assert cli_main(["train", "tracker", "--separator", str(tmp_path / "sep"), "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path / "r2")]) == 2


def test_a_tracked_backbone_serves_like_any_backbone():
    from fastsep.separator import Separator

    tracked = TrackedBackbone.from_models(_tiny_separator(), TalkerEmbedding(channels=16, n_layers=2, dim=8).eval())
    sep = Separator(tracked)
    mix = torch.randn(2 * RATE) * 0.1
    out = sep.separate(mix, mode="backbone")
    assert out.shape == (2, 2 * RATE) and torch.isfinite(out).all()
