"""Network F (fastsep.models.Combiner): architecture, initialisation, invariances, training signal, save/load."""
import math

import pytest
import torch
from torch import nn

from fastsep.dsp import StftConfig, istft, stft
from fastsep.models.combiner import Combiner

TINY = (4, 4, 8, 8, 8)


def si_sdr_db(est, ref):
    # Independent formula (eqs. 31-33): project ref onto est's direction, compare energies.
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    return 10 * torch.log10((proj ** 2).sum(-1) / ((est - proj) ** 2).sum(-1))


def test_architecture_matches_paper():
    comb = Combiner()
    for head in (comb.mag_head, comb.phase_head):
        convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) == 6
        assert [c.out_channels for c in convs] == [32, 32, 64, 64, 64, 2]
        assert convs[0].in_channels == 2


def test_initialisation_returns_backbone_estimate():
    comb = Combiner(n_fft=128, hop_length=32, hidden=TINY)
    vd, vg = torch.randn(2, 2, 3000), torch.randn(2, 2, 3000)
    d1, d2 = comb.coefficients(stft(vd, comb.stft_cfg), stft(vg, comb.stft_cfg))
    assert d1.shape == (2, 2, 2, 65, stft(vd, comb.stft_cfg).shape[-1]) and d2.shape == d1.shape
    assert torch.allclose(d1[:, :, 0], torch.ones(())) and torch.allclose(d1[:, :, 1], torch.zeros(()))
    assert torch.allclose(d2, torch.zeros(()))
    with torch.no_grad():
        out = comb(vd, vg)
    assert out.shape == vd.shape
    assert torch.allclose(out, vd, atol=1e-5)


def test_average_initialisation_is_mean():
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY, init="average")
    vd, vg = torch.randn(3, 1000), torch.randn(3, 1000)
    with torch.no_grad():
        out = comb(vd, vg)
    assert torch.allclose(out, (vd + vg) / 2, atol=1e-5)


def test_complex_weights_follow_eq_28():
    # With nonzero last layers, the output must equal iSTFT(D1_0 e^{-j D2_0} Vd + D1_1 e^{-j D2_1} Vg) built by hand.
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY)
    with torch.no_grad():
        for head in (comb.mag_head, comb.phase_head):
            head.out.weight.normal_(0, 0.1)
    vd, vg = torch.randn(2, 800), torch.randn(2, 800)
    cfg = comb.stft_cfg
    sd, sg = stft(vd, cfg), stft(vg, cfg)
    with torch.no_grad():
        d1, d2 = comb.coefficients(sd, sg)
        want = istft(d1[:, 0] * torch.exp(-1j * d2[:, 0]) * sd + d1[:, 1] * torch.exp(-1j * d2[:, 1]) * sg, 800, cfg)
        got = comb(vd, vg)
    assert torch.allclose(got, want, atol=1e-5)


def test_inputs_are_scale_normalised_before_log():
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY)
    with torch.no_grad():
        comb.mag_head.out.weight.normal_(0, 0.1)
    sd, sg = stft(torch.randn(2, 600)), stft(torch.randn(2, 600))
    with torch.no_grad():
        a = comb.coefficients(sd, sg)[0]
        b = comb.coefficients(sd * 37.0, sg * 37.0)[0]
    assert torch.allclose(a, b, atol=1e-4)


def test_training_improves_over_backbone():
    # vd and vg are the target plus independent noise: averaging them gains ~3 dB, which F must learn from alpha=1.
    torch.manual_seed(1)
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY)
    opt = torch.optim.Adam(comb.parameters(), lr=1e-2)
    s = torch.randn(2, 1500)
    vd, vg = s + 0.7 * torch.randn_like(s), s + 0.7 * torch.randn_like(s)
    start = si_sdr_db(comb(vd, vg), s).mean().item()
    for _ in range(25):
        loss = -si_sdr_db(comb(vd, vg), s).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = si_sdr_db(comb(vd, vg), s).mean().item()
    assert end > start + 1.0, (start, end)


def test_short_and_odd_lengths():
    comb = Combiner(n_fft=128, hop_length=32, hidden=TINY)
    for n in (1, 50, 129, 1001):
        x = torch.randn(2, n)
        with torch.no_grad():
            assert torch.allclose(comb(x, torch.randn(2, n)), x, atol=1e-5)


def test_bad_inputs():
    comb = Combiner(hidden=TINY)
    with pytest.raises(ValueError, match="one shape"):
        comb(torch.randn(2, 100), torch.randn(2, 101))
    with pytest.raises(TypeError):
        comb(torch.randn(2, 100).numpy(), torch.randn(2, 100))
    with pytest.raises(ValueError, match="T > 0"):
        comb(torch.randn(2, 0), torch.randn(2, 0))
    with pytest.raises(ValueError, match="init"):
        Combiner(init="random")
    with pytest.raises(ValueError, match="hop_length"):
        Combiner(n_fft=64, hop_length=128)


def test_inference_heads_fuse_prelu_and_residual_without_changing_them():
    # Under no_grad the heads call fastsep.ops.prelu_residual (kernel or reference); with grad, the modules.
    from fastsep.models.combiner import ResNetHead

    torch.manual_seed(1)
    head = ResNetHead(2, TINY, 2)
    x = torch.randn(2, 2, 17, 23)
    with torch.no_grad():
        fused = head(x)
    plain = head(x.requires_grad_())
    torch.testing.assert_close(fused, plain.detach(), rtol=1e-5, atol=1e-6)


def test_bfloat16_heads_stay_close_to_float32(monkeypatch):
    # precision="bfloat16" rounds the heads' conv inputs and weights: the output moves by bfloat16's relative step
    # (~0.4 %), not more; with no native bfloat16 products it warns and computes in float32 (the same output).
    from fastsep.roofline import cpu_bf16_support

    torch.manual_seed(0)
    comb = Combiner(n_fft=128, hop_length=32, hidden=TINY)
    with torch.no_grad():
        for p in comb.parameters():
            p.add_(0.1 * torch.randn_like(p))  # away from the identity start, so the heads matter
        vd, vg = torch.randn(2, 2, 4000), torch.randn(2, 2, 4000)
        want = comb(vd, vg)
        d1, d2 = comb.coefficients(stft(vd, comb.stft_cfg), stft(vg, comb.stft_cfg))
        if cpu_bf16_support()[0]:
            got = comb(vd, vg, precision="bfloat16")
            b1, b2 = comb.coefficients(stft(vd, comb.stft_cfg), stft(vg, comb.stft_cfg), precision="bfloat16")
            assert b1.dtype == b2.dtype == torch.float32
            rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
            assert 1e-5 < rel(b1, d1) < 2e-2 and 1e-5 < rel(b2, d2) < 2e-2  # rounded, and only by bfloat16's step
            assert rel(got, want) < 2e-2
        else:
            # the warning is once per process: an earlier test (test_cli's --precision) may have had it already
            monkeypatch.setattr("fastsep.models.combiner._BF16_WARNED", False)
            with pytest.warns(UserWarning, match="float32"):
                got = comb(vd, vg, precision="bfloat16")
            assert torch.equal(got, want)
    with pytest.raises(ValueError, match="precision"):
        comb(vd, vg, precision="float16")


def test_save_load_roundtrip(tmp_path):
    from fastsep.models.io import load_model, save_model

    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY)
    with torch.no_grad():
        comb.mag_head.out.weight.normal_(0, 0.1)
    save_model(comb, tmp_path, "combiner")
    again = load_model(tmp_path, "combiner")
    assert isinstance(again, Combiner) and again.config == comb.config
    x, y = torch.randn(2, 500), torch.randn(2, 500)
    with torch.no_grad():
        assert torch.allclose(again(x, y), comb(x, y))


# ------------------------------------------------------------------------------------------- fastsep train combiner
class FlipBackbone(nn.Module):
    """Stand-in B that returns the true sources (stashed on it) in reversed order, plus a little noise."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.sources = None

    def forward(self, mix):
        return self.w * self.sources.flip(1) + 0.3 * torch.randn_like(self.sources)


class NoisyVocoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.sources = None

    def vocode(self, x):
        return x + 0.05 * torch.randn_like(x)


def test_task_matches_backbone_outputs_to_references():
    from fastsep.train.combiner import CombinerTask

    src = torch.randn(2, 2, 1000)
    bb = FlipBackbone()
    bb.sources = src
    vd, vg = CombinerTask(bb, NoisyVocoder()).estimates(src.sum(1), src)
    # after Hungarian matching v_d's source i is the noisy copy of reference i
    assert si_sdr_db(vd, src).min() > 5
    assert vg.shape == vd.shape and not vd.requires_grad


def test_training_on_shared_loop(tmp_path):
    from fastsep.train.combiner import CombinerTask
    from fastsep.train.loop import TrainConfig, train
    from fastsep.train.separator import pad_collate

    g = torch.Generator().manual_seed(0)
    items = [{"sources": torch.randn(2, 800, generator=g), "id": f"u{i}"} for i in range(4)]
    for it in items:
        it["mixture"] = it["sources"].sum(0)
    bb, voc = FlipBackbone(), NoisyVocoder()
    task = CombinerTask(bb, voc)

    class Feed:  # hands B the batch's references so the stand-in can "separate"
        def __init__(self, task):
            self.task = task

        def estimates(self, mixture, sources):
            bb.sources = sources
            return CombinerTask.estimates(self.task, mixture, sources)

    task.estimates = Feed(task).estimates
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY)
    # Before training F is the identity on v_d: its validation SI-SDRi equals the backbone's.
    loader = [pad_collate(items[2:])]
    with torch.no_grad():
        first = task.validate(comb, loader)
    assert first["si_sdri"] == pytest.approx(first["si_sdri_backbone"], abs=1e-3)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=3, batch_size=2, lr=1e-3, monitor="si_sdri",
                      monitor_mode="max", amp=False, device="cpu", progress=False, num_workers=0)
    result = train(comb, task, items[:2], items[2:], cfg, collate_fn=pad_collate)
    assert int(result["step"]) == 3
    assert comb.mag_head.out.weight.abs().sum() > 0  # F left its identity start: the steps did update it
    assert (tmp_path / "run" / "best" / "model.json").exists()
    assert all(not p.requires_grad for p in bb.parameters())


def test_cli_trains_f_and_writes_a_bundle(tmp_path, capsys):
    # End to end through `fastsep train combiner`: frozen tiny B and GM from folders, the shared loop's options,
    # the bundle that Separator.from_pretrained reads.
    from fastsep import Separator
    from fastsep.cli import main as cli_main
    from fastsep.models import ConvTasNet, DiffWave
    from fastsep.models.io import save_model
    from test_train_separator import _write_wsj0

    data = tmp_path / "wsj"
    _write_wsj0(str(data), "tr", [1200] * 4, seed=0)
    _write_wsj0(str(data), "cv", [1000, 1000], seed=1)
    save_model(ConvTasNet.small(2), tmp_path / "b")
    save_model(DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=20, sample_rate=8000,
                        hop_length=64), tmp_path / "gm")
    out, bundle = tmp_path / "run", tmp_path / "bundle"
    argv = ["train", "combiner", "--data", str(data), "--backbone", str(tmp_path / "b"), "--vocoder",
            str(tmp_path / "gm"), "--out", str(out), "--bundle-out", str(bundle), "--epochs", "1", "--batch-size", "2",
            "--segment", "0.125", "--valid-items", "2", "--num-workers", "0", "--device", "cpu", "--no-progress",
            "--n-fft", "128", "--hop-length", "32"]
    assert cli_main(argv) == 0
    assert "valid SI-SDRi" in capsys.readouterr().out
    assert (out / "log.jsonl").exists() and (out / "best").is_dir()
    sep = Separator.from_pretrained(str(bundle))
    tracks = sep.separate(torch.randn(1600), mode="full")
    assert tracks.shape == (2, 1600) and tracks.abs().max() > 0
    # The bundle carries the F the run kept, not a fresh one.
    from fastsep.models.io import load_model

    trained = load_model(out / "best").state_dict()
    for name, value in sep.combiner.state_dict().items():
        torch.testing.assert_close(value.cpu(), trained[name], rtol=0, atol=0, msg=name)

    # --init-from: F starts from a trained one (bundle or model folder), keeping its STFT settings
    from fastsep.train.combiner import load_combiner

    for folder in (bundle, out / "best"):
        start = load_combiner(folder)
        assert start.training and start.config["n_fft"] == 128
        for name, value in start.state_dict().items():
            torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="not a combiner"):
        load_combiner(tmp_path / "b")
    argv2 = [a if a != str(out) else str(tmp_path / "run2") for a in argv if a != str(bundle) and a != "--bundle-out"]
    argv2[argv2.index("--n-fft") + 1] = "256"
    assert cli_main(argv2 + ["--init-from", str(bundle)]) == 0
    assert load_model(tmp_path / "run2" / "last").config["n_fft"] == 128


# ------------------------------------------------------------------------------- full mode sees the vocoder
class _TwoSourceBackbone(nn.Module):
    """A fixed B: source 0 is the mixture low-passed, source 1 what is left (deterministic, no training)."""

    n_src = 2

    def forward(self, mix):
        smooth = nn.functional.avg_pool1d(mix.unsqueeze(1), 9, stride=1, padding=4, count_include_pad=False)[:, 0]
        return torch.stack([smooth, mix - smooth], dim=1)


class _Vocoder(nn.Module):
    """Stand-in GM with a chosen transfer: a delay and a gain, plus a tone so its output is not a copy of v_d."""

    sample_rate = 8000

    def __init__(self, delay, gain):
        super().__init__()
        self.delay, self.gain = delay, gain

    def vocode(self, x):
        tone = 0.05 * torch.sin(torch.arange(x.shape[-1], dtype=x.dtype) * 0.3)
        return self.gain * nn.functional.pad(x, (self.delay, 0))[..., : x.shape[-1]] + tone


def _vocoder_sensitive_combiner():
    # The default initialisation (alpha = 1, beta = 0) returns v_d exactly and would hide the vocoder; random last
    # layers on top of the "average" start give both weights frequency- and frame-dependent, non-zero values.
    torch.manual_seed(3)
    comb = Combiner(n_fft=64, hop_length=16, hidden=TINY, init="average")
    with torch.no_grad():
        for head in (comb.mag_head, comb.phase_head):
            head.out.weight.normal_(0, 0.1)
    return comb.eval()


def test_full_mode_uses_the_vocoder_through_f():
    from fastsep.separator import Separator

    comb = _vocoder_sensitive_combiner()
    mix = torch.randn(1, 1600)
    raw = dict(input_rms=None, mixture_consistent=False, chunk_seconds=10.0)
    backbone = _TwoSourceBackbone()
    with torch.no_grad():
        d1, _ = comb.coefficients(stft(mix, comb.stft_cfg), stft(mix, comb.stft_cfg))
        assert d1[:, 1].abs().min() > 1e-3  # beta != 0 everywhere: F's output depends on v_g
        outs = {}
        for name, voc in (("a", _Vocoder(3, 1.0)), ("b", _Vocoder(11, 0.4))):
            sep = Separator(backbone, voc, comb, sample_rate=8000, **raw)
            outs[name] = sep.separate(mix, mode="full")
            # The reference computation: F applied to B's estimates and the vocoder's re-synthesis of each of them.
            vd = backbone(mix)
            want = comb(vd, voc.vocode(vd.reshape(-1, vd.shape[-1])).reshape(vd.shape))
            torch.testing.assert_close(outs[name], want, rtol=1e-4, atol=1e-5)
        backbone_only = Separator(backbone, sample_rate=8000, **raw).separate(mix, mode="backbone")
    diff = (outs["a"] - outs["b"]).abs().max()
    assert diff > 1e-2 * outs["a"].abs().max()  # another vocoder, another full-mode result
    assert (outs["a"] - backbone_only).abs().max() > 1e-2 * backbone_only.abs().max()
