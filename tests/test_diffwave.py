"""DiffWave: compatibility with lmnt-com/diffwave's layout, sampling, fused == unfused, checkpoints, bad input."""
import os
import pickle
import sys
import types
from math import sqrt

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fastsep.models.diffwave as dw
import fastsep.sampling.diffwave as sampling
from fastsep import ops
from fastsep.models import DiffWave
from helpers import harmonic_items


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


# ------------------------------------------------------------------------------------------------------------------
# An independent re-statement of the reference model (lmnt-com/diffwave, src/diffwave/model.py), written from its
# description: same module tree, same arithmetic, params given as an attribute dict. Hop is 256 (two stride-16 convs).
class AttrDict(dict):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__ = self


class RefEmbedding(nn.Module):
    def __init__(self, max_steps):
        super().__init__()
        t = torch.arange(max_steps, dtype=torch.float32)[:, None] * 10.0 ** (torch.arange(64)[None, :] * 4.0 / 63.0)
        self.register_buffer("embedding", torch.cat([t.sin(), t.cos()], 1), persistent=False)
        self.projection1 = nn.Linear(128, 512)
        self.projection2 = nn.Linear(512, 512)

    def forward(self, step):
        if step.dtype in (torch.int32, torch.int64):
            e = self.embedding[step]
        else:
            lo, hi = torch.floor(step).long(), torch.ceil(step).long()
            e = self.embedding[lo] + (self.embedding[hi] - self.embedding[lo]) * (step - lo)[:, None]
        e = self.projection1(e)
        e = e * torch.sigmoid(e)
        e = self.projection2(e)
        return e * torch.sigmoid(e)


class RefUpsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(1, 1, [3, 32], stride=[1, 16], padding=[1, 8])
        self.conv2 = nn.ConvTranspose2d(1, 1, [3, 32], stride=[1, 16], padding=[1, 8])

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x[:, None]), 0.4)
        return F.leaky_relu(self.conv2(x), 0.4)[:, 0]


class RefBlock(nn.Module):
    def __init__(self, n_mels, channels, dilation, uncond):
        super().__init__()
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(512, channels)
        self.conditioner_projection = None if uncond else nn.Conv1d(n_mels, 2 * channels, 1)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x, step, cond):
        y = self.dilated_conv(x + self.diffusion_projection(step)[:, :, None])
        if self.conditioner_projection is not None:
            y = y + self.conditioner_projection(cond)
        c = x.shape[1]
        y = self.output_projection(torch.sigmoid(y[:, :c]) * torch.tanh(y[:, c:]))
        return (x + y[:, :c]) / sqrt(2.0), y[:, c:]


class RefDiffWave(nn.Module):
    def __init__(self, params):
        super().__init__()
        self.params = params
        self.input_projection = nn.Conv1d(1, params.residual_channels, 1)
        self.diffusion_embedding = RefEmbedding(len(params.noise_schedule))
        self.spectrogram_upsampler = None if params.unconditional else RefUpsampler()
        self.residual_layers = nn.ModuleList([
            RefBlock(params.n_mels, params.residual_channels, 2 ** (i % params.dilation_cycle_length),
                     params.unconditional) for i in range(params.residual_layers)])
        self.skip_projection = nn.Conv1d(params.residual_channels, params.residual_channels, 1)
        self.output_projection = nn.Conv1d(params.residual_channels, 1, 1)

    def forward(self, audio, diffusion_step, spectrogram=None):
        x = F.relu(self.input_projection(audio[:, None]))
        step = self.diffusion_embedding(diffusion_step)
        if self.spectrogram_upsampler is not None:
            spectrogram = self.spectrogram_upsampler(spectrogram)
        skips = []
        for layer in self.residual_layers:
            x, s = layer(x, step, spectrogram)
            skips.append(s)
        x = torch.stack(skips).sum(0) / sqrt(len(self.residual_layers))
        return self.output_projection(F.relu(self.skip_projection(x)))


def ref_params(**kw):
    p = AttrDict(residual_layers=4, residual_channels=8, dilation_cycle_length=2, n_mels=12, unconditional=False,
                 noise_schedule=np.linspace(1e-4, 0.05, 50).tolist(),
                 inference_noise_schedule=[0.0001, 0.001, 0.01, 0.05, 0.2, 0.5], sample_rate=22050, hop_samples=256)
    p.update(kw)
    return p


def ours_from(params):
    return DiffWave(residual_layers=params["residual_layers"], residual_channels=params["residual_channels"],
                    dilation_cycle_length=params["dilation_cycle_length"], n_mels=params["n_mels"],
                    noise_schedule=params["noise_schedule"], inference_noise_schedule=params["inference_noise_schedule"],
                    sample_rate=params["sample_rate"], hop_length=params["hop_samples"],
                    unconditional=params["unconditional"])


def randomise(model, std=0.3):
    # The output projection starts at zero (the predicted noise would be a constant); randomise every weight so
    # that all paths matter.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def tiny(**kw):
    args = dict(residual_layers=6, residual_channels=8, dilation_cycle_length=3, n_mels=10, hop_length=32,
                sample_rate=8000)
    args.update(kw)
    return randomise(DiffWave(**args), 0.25)


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uncond", [False, True])
def test_state_dict_strictly_compatible_and_same_output(uncond):
    params = ref_params(unconditional=uncond)
    ref = randomise(RefDiffWave(params))
    ours = ours_from(params)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    audio = torch.randn(2, 3 * 256)
    mel = None if uncond else torch.rand(2, 12, 3)
    for step in (torch.tensor([3, 17]), torch.tensor([4.3]), torch.tensor([0.0, 48.9])):
        with torch.no_grad():
            want = ref(audio, step, mel)
            got = ours(audio, step, mel)
        assert got.shape == (2, 1, 768)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_against_installed_reference_package():
    """The real lmnt-com/diffwave model (``pip install --no-deps diffwave``), when installed."""
    ref_model = pytest.importorskip("diffwave.model", reason="the reference diffwave package is not installed")
    import inspect

    params = ref_params(residual_layers=3, residual_channels=8, n_mels=80)
    ref = randomise(ref_model.DiffWave(params)).eval()
    ours = ours_from(params)
    ours.load_state_dict(ref.state_dict(), strict=True)
    audio, mel = torch.randn(2, 2 * 256), torch.rand(2, 80, 2)
    # PyPI 0.1.7 takes (audio, spectrogram, step); the GitHub head takes (audio, step, spectrogram)
    old_order = list(inspect.signature(ref.forward).parameters)[1] == "spectrogram"
    for step in (torch.tensor([5, 40]), torch.tensor([12.25])):
        with torch.no_grad():
            want = ref(audio, mel, step) if old_order else ref(audio, step, mel)
            torch.testing.assert_close(ours(audio, step, mel), want, atol=1e-5, rtol=1e-5)


def test_default_architecture_matches_reference_shapes():
    m = DiffWave()
    assert m.config["residual_layers"] == 30 and m.config["residual_channels"] == 64
    assert m.config["noise_schedule"] == np.linspace(1e-4, 0.05, 50).tolist()
    assert m.config["inference_noise_schedule"] == [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]
    sd = m.state_dict()
    assert sd["spectrogram_upsampler.conv1.weight"].shape == (1, 1, 3, 32)
    assert sd["residual_layers.29.dilated_conv.weight"].shape == (128, 64, 3)
    assert sd["residual_layers.0.conditioner_projection.weight"].shape == (128, 80, 1)
    assert sd["diffusion_embedding.projection1.weight"].shape == (512, 128)
    assert "diffusion_embedding.embedding" not in sd
    assert m.dilations[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1]
    assert torch.count_nonzero(m.output_projection.weight) == 0


@pytest.mark.parametrize("hop,strides", [(256, (16, 16)), (80, (8, 10)), (15, (3, 5)), (7, (1, 7)), (128, (8, 16))])
def test_upsampler_any_hop(hop, strides):
    assert dw.split_hop(hop) == strides
    up = dw.SpectrogramUpsampler(6, hop)
    assert up.conv1.stride == (1, strides[0]) and up.conv2.kernel_size == (3, 2 * strides[1])
    out = up(torch.rand(2, 6, 5))
    assert out.shape == (2, 6, 5 * hop)
    # One mel frame's influence stays local: each stage's kernel spans two of its input units, so an impulse at
    # frame 4 reaches only samples within [3·hop, 7·hop), and for even strides it covers its own frame.
    with torch.no_grad():
        for conv in (up.conv1, up.conv2):
            conv.weight.fill_(1.0)
            conv.bias.zero_()
    x = torch.zeros(1, 6, 9)
    x[0, 3, 4] = 1.0
    hit = torch.nonzero(up(x)[0, 3] > 0).squeeze(1)
    assert hit.min() >= 3 * hop and hit.max() < 7 * hop
    if strides[0] % 2 == 0 and strides[1] % 2 == 0:
        assert hit.min() <= 4 * hop and hit.max() >= 5 * hop - 1


def test_fractional_steps_by_hand():
    train = np.linspace(1e-4, 0.05, 50)
    infer = [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]
    got = dw.fractional_steps(train.tolist(), infer)
    # by hand: step 0 has the same cumulative alpha as training step 0 -> exactly 0
    assert got[0] == 0.0
    # step 1: g = 0.9999·0.999 lies between a_0 = 0.9999 and a_1 = 0.9999·(1 − (1e-4 + 0.0499/49)) -> t = 0
    a0, a1 = 0.9999, 0.9999 * (1 - (1e-4 + 0.0499 / 49))
    g1 = 0.9999 * 0.999
    assert got[1] == pytest.approx((sqrt(a0) - sqrt(g1)) / (sqrt(a0) - sqrt(a1)), abs=1e-6)
    # all six: invert the piecewise-linear map t -> sqrt(a_t) with np.interp
    root_a = np.sqrt(np.cumprod(1 - train))
    root_g = np.sqrt(np.cumprod(1 - np.array(infer)))
    want = np.interp(root_g, root_a[::-1], np.arange(50)[::-1].astype(float))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert dw.fractional_steps(train.tolist(), train.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="outside the training schedule"):
        dw.fractional_steps(train.tolist(), [0.0001, 0.9])


class _RecordedNoise:
    """Stands in for the per-item generators: hands out a fixed list of tensors, for the reference loop to reuse."""
    pool = []

    def __init__(self, seeds, length, device, dtype):
        self.i = 0
        self.batch = len(seeds)

    def draw(self):
        t = _RecordedNoise.pool[self.i][: self.batch]
        self.i += 1
        return t


@pytest.mark.parametrize("fast", [True, False])
def test_generate_follows_reference_inference(monkeypatch, fast):
    params = ref_params()
    ref = randomise(RefDiffWave(params), 0.2)
    ours = ours_from(params)
    ours.load_state_dict(ref.state_dict())
    mel = torch.rand(2, 12, 2)
    length = 2 * 256
    steps = 6 if fast else 50
    _RecordedNoise.pool = [torch.randn(2, length) for _ in range(steps)]
    monkeypatch.setattr(sampling, "ItemNoise", _RecordedNoise)

    # The reference's inference.py loop, restated
    beta = np.array(params.inference_noise_schedule if fast else params.noise_schedule)
    talpha_cum = np.cumprod(1 - np.array(params.noise_schedule))
    alpha = 1 - beta
    alpha_cum = np.cumprod(alpha)
    T = np.interp(np.sqrt(alpha_cum), np.sqrt(talpha_cum)[::-1], np.arange(50)[::-1].astype(float)).astype(np.float32)
    audio = _RecordedNoise.pool[0]
    k = 1
    with torch.no_grad():
        for n in range(len(alpha) - 1, -1, -1):
            c1 = 1 / alpha[n] ** 0.5
            c2 = beta[n] / (1 - alpha_cum[n]) ** 0.5
            audio = c1 * (audio - c2 * ref(audio, torch.tensor([T[n]]), mel).squeeze(1))
            if n > 0:
                audio = audio + ((1.0 - alpha_cum[n - 1]) / (1.0 - alpha_cum[n]) * beta[n]) ** 0.5 * \
                    _RecordedNoise.pool[k]
                k += 1
            audio = torch.clamp(audio, -1.0, 1.0)
    for fused in (False, True):
        got = ours.generate(mel, fast=fast, seed=0, fused=fused)
        torch.testing.assert_close(got, audio, atol=1e-4, rtol=0)
    assert 0.0 < audio.abs().mean() < 1.0  # not all clamped, not all zero


@pytest.mark.parametrize("fast", [True, False])
def test_generate_equals_reference_package_predict(monkeypatch, tmp_path, fast):
    """Our sampling against lmnt-com/diffwave's own ``inference.predict`` (installed by CI), same weights, same noise."""
    pytest.importorskip("diffwave.model", reason="the reference diffwave package is not installed")
    try:
        import torchaudio  # noqa: F401
    except Exception:  # noqa: BLE001 - inference.py imports it for its CLI only; predict() never uses it
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
    from diffwave import inference
    from diffwave.params import params as package_params

    params = ref_params(residual_channels=8)  # 8 channels: the CPU kernel's blocked path
    for key, value in params.items():
        monkeypatch.setitem(package_params, key, value)  # predict() builds its model from these globals
    ours = randomise(ours_from(params), 0.2).eval()
    path = tmp_path / "weights.pt"
    torch.save({"model": ours.state_dict()}, path)
    mel = torch.rand(2, 12, 3)
    drawn = []  # predict() draws its noise from the global generator: record it for ours to replay
    real_randn, real_randn_like = torch.randn, torch.randn_like
    with monkeypatch.context() as m:
        m.setattr(torch, "randn", lambda *a, **k: drawn.append(real_randn(*a, **k)) or drawn[-1])
        m.setattr(torch, "randn_like", lambda *a, **k: drawn.append(real_randn_like(*a, **k)) or drawn[-1])
        want, rate = inference.predict(mel, model_dir=str(path), device=torch.device("cpu"), fast_sampling=fast)
    assert rate == params.sample_rate and len(drawn) == (6 if fast else 50)
    _RecordedNoise.pool = drawn
    monkeypatch.setattr(sampling, "ItemNoise", _RecordedNoise)
    for fused in (False, True):
        got = ours.generate(mel, fast=fast, seed=0, fused=fused)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert 0.0 < want.abs().mean() < 1.0  # not all clamped, not all zero


@pytest.mark.parametrize("fast", [True, False])
def test_fused_equals_unfused(fast):
    model = tiny()
    mel = torch.rand(3, 10, 7)
    a = model.generate(mel, fast=fast, seed=11, fused=True)
    b = model.generate(mel, fast=fast, seed=11, fused=False)
    assert a.shape == (3, 7 * 32)
    assert (a - b).abs().max() <= 1e-4
    assert a.abs().mean() > 1e-3


def test_fused_unconditional_equals_unfused():
    model = tiny(unconditional=True)
    a = model.generate(None, seed=5, num_samples=300, batch_size=2, fused=True)
    b = model.generate(None, seed=5, num_samples=300, batch_size=2, fused=False)
    assert a.shape == (2, 300) and (a - b).abs().max() <= 1e-4


def test_seed_determinism_and_chunking(monkeypatch):
    model = tiny()
    mel = torch.rand(4, 10, 5)
    a = model.generate(mel, seed=3)
    assert torch.equal(a, model.generate(mel, seed=3))
    assert not torch.allclose(a, model.generate(mel, seed=4))
    torch.manual_seed(9)
    c = model.generate(mel)
    torch.manual_seed(9)
    assert torch.equal(c, model.generate(mel))
    # A tiny memory bound forces one item per chunk; each item's noise is its own, so nothing changes.
    calls = []
    monkeypatch.setattr(model.spectrogram_upsampler, "forward",
                        lambda x, f=model.spectrogram_upsampler.forward: calls.append(x.shape[0]) or f(x))
    model.sampler().cond_memory_limit = 6 * 2 * 8 * 5 * 32 * 4 * 2  # two items' worth
    d = model.generate(mel, seed=3)
    assert calls == [2, 2]
    torch.testing.assert_close(d, a, atol=1e-6, rtol=0)


def test_conditioner_runs_once_per_call(monkeypatch):
    model = tiny()
    counts = {"up": 0, "cond": 0, "stack": 0}
    model.spectrogram_upsampler.register_forward_hook(lambda *a: counts.__setitem__("up", counts["up"] + 1))
    for layer in model.residual_layers:
        layer.conditioner_projection.register_forward_hook(lambda *a: counts.__setitem__("cond", counts["cond"] + 1))
    real_stack = ops.diffwave_stack

    def counting_stack(*args, **kwargs):
        counts["stack"] += 1
        return real_stack(*args, **kwargs)

    monkeypatch.setattr(ops, "diffwave_stack", counting_stack)
    model.generate(torch.rand(2, 10, 4), fast=True, seed=0)
    assert counts == {"up": 1, "cond": 0, "stack": 6}
    model.generate(torch.rand(1, 10, 4), fast=False, seed=0)
    assert counts == {"up": 2, "cond": 0, "stack": 56}


def test_mels_of_different_lengths():
    model = tiny()
    short, long = torch.rand(10, 3), torch.rand(10, 6)
    out = model.generate([short, long], seed=1)
    assert out.shape == (2, 6 * 32)
    assert torch.all(out[0, 3 * 32:] == 0) and out[0, :3 * 32].abs().sum() > 0
    padded = torch.stack([F.pad(short, (0, 3)), long])
    torch.testing.assert_close(model.generate(padded, seed=1, lengths=[3, 6]), out)
    with pytest.raises(ValueError, match="lengths"):
        model.generate(padded, lengths=[0, 6])


def test_generate_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="n_mels = 10"):
        model.generate(torch.rand(1, 80, 4))
    with pytest.raises(TypeError, match="float"):
        model.generate(torch.ones(1, 10, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.rand(1, 10, 0))
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.rand(0, 10, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.generate(np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"\[n_mels, F\]"):
        model.generate(torch.rand(1, 1, 10, 4))
    with pytest.raises(ValueError, match="needs a mel"):
        model.generate(None)
    with pytest.raises(ValueError, match="unconditional"):
        tiny(unconditional=True).generate(torch.rand(1, 10, 4))
    with pytest.raises(ValueError, match="frames·hop"):
        model(torch.randn(1, 100), torch.tensor([1]), torch.rand(1, 10, 4))
    with pytest.raises(ValueError, match="residual_layers"):
        DiffWave(residual_layers=0)
    with pytest.raises(ValueError, match="betas"):
        DiffWave(noise_schedule=[0.1, 1.5])


def test_vocode_shape_and_determinism():
    model = tiny()
    audio = 0.3 * torch.sin(torch.arange(2, 1001).float()[None].repeat(2, 1) * 0.05)
    out = model.vocode(audio, seed=2)
    assert out.shape == audio.shape and out.dtype == audio.dtype
    assert torch.equal(out, model.vocode(audio, seed=2))
    assert out.abs().max() <= 1.0
    assert model.vocode(audio[0], seed=2).shape == audio[0].shape
    with pytest.raises(ValueError, match="audio"):
        model.vocode(torch.zeros(1, 2, 3, 400))


def test_save_load_round_trip(tmp_path):
    model = tiny(hop_length=40, inference_noise_schedule=[0.0001, 0.01, 0.3])
    model.save(tmp_path / "gm")
    assert {"model.safetensors", "model.json"} <= set(os.listdir(tmp_path / "gm"))
    back = DiffWave.load(tmp_path / "gm")
    assert back.config == model.config
    mel = torch.rand(1, 10, 3)
    torch.testing.assert_close(back.generate(mel, seed=0), model.generate(mel, seed=0))


# ---------------------------------------------------------------------------------------------- reference files
@pytest.fixture
def fake_diffwave_package(monkeypatch):
    """Make ``diffwave.params.AttrDict`` importable while a checkpoint is written, so that the pickle names the
    reference's class exactly as a real weights.pt does; removed again before loading."""
    pkg, mod = types.ModuleType("diffwave"), types.ModuleType("diffwave.params")
    cls = type("AttrDict", (AttrDict,), {"__module__": "diffwave.params"})
    mod.AttrDict = cls
    monkeypatch.setitem(sys.modules, "diffwave", pkg)
    monkeypatch.setitem(sys.modules, "diffwave.params", mod)
    return cls


def _write_reference_checkpoint(path, ref, params_obj):
    torch.save({"step": 10, "model": ref.state_dict(), "params": params_obj,
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
                "scaler": {"scale": 65536.0}}, path)


def test_from_reference_checkpoint(tmp_path, fake_diffwave_package):
    params = ref_params(residual_layers=3, n_mels=14)
    ref = randomise(RefDiffWave(params))
    path = tmp_path / "weights.pt"
    _write_reference_checkpoint(path, ref, fake_diffwave_package(params))
    del sys.modules["diffwave.params"].AttrDict  # the loader must not need (or import) the class
    model = DiffWave.from_reference_checkpoint(path)
    assert model.config["residual_layers"] == 3 and model.config["n_mels"] == 14 and model.hop_length == 256
    audio, mel, step = torch.randn(1, 512), torch.rand(1, 14, 2), torch.tensor([7])
    with torch.no_grad():
        torch.testing.assert_close(model(audio, step, mel), ref(audio, step, mel), atol=1e-5, rtol=1e-5)


def test_from_reference_checkpoint_plain_dict_params(tmp_path):
    params = ref_params(residual_layers=2, unconditional=True)
    ref = randomise(RefDiffWave(params))
    path = tmp_path / "weights-10.pt"
    _write_reference_checkpoint(path, ref, dict(params))  # newer learners store dict(params)
    model = DiffWave.from_reference_checkpoint(path)
    assert model.unconditional and model.spectrogram_upsampler is None
    audio = torch.randn(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(model(audio, torch.tensor([1, 2])), ref(audio, torch.tensor([1, 2])))


class _Malicious:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ref = RefDiffWave(ref_params(residual_layers=1))
    path = tmp_path / "evil.pt"
    _write_reference_checkpoint(path, ref, {"residual_layers": 1, "payload": _Malicious(marker)})
    with pytest.raises(ValueError, match="refusing"):
        DiffWave.from_reference_checkpoint(path)
    assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        DiffWave.from_reference_checkpoint(garbage)


def test_reference_checkpoint_that_does_not_fit(tmp_path):
    ref = randomise(RefDiffWave(ref_params(residual_layers=2)))
    path = tmp_path / "w.pt"
    _write_reference_checkpoint(path, ref, dict(ref_params(residual_layers=3)))
    with pytest.raises(ValueError, match="missing residual_layers.2"):
        DiffWave.from_reference_checkpoint(path)


# ----------------------------------------------------------------------------------------------------- training
def test_training_loss_is_the_reference_objective(monkeypatch):
    from fastsep.train.vocoder import VocoderTask

    model = tiny()
    task = VocoderTask(model.config)
    audio = 0.5 * torch.sin(torch.arange(2 * 200).float().reshape(2, 200) * 0.3)
    torch.manual_seed(1)
    got = task.training_loss(model, {"audio": audio})
    # restated: the same draws in the same order (t, then noise), a_t = prod(1 - beta)
    torch.manual_seed(1)
    t = torch.randint(0, 50, (2,))
    noise = torch.randn(2, 192)
    a = torch.tensor(np.cumprod(1 - np.linspace(1e-4, 0.05, 50)), dtype=torch.float32)[t][:, None]
    x = audio[:, :192]
    from fastsep.dsp import mel_spectrogram
    mel = mel_spectrogram(audio, 8000, 32, 10)[..., :6]
    want = (model(a.sqrt() * x + (1 - a).sqrt() * noise, t, mel).squeeze(1) - noise).abs().mean()
    torch.testing.assert_close(got, want)


def test_training_loss_falls():
    from fastsep.train.vocoder import VocoderTask, audio_collate

    model = DiffWave(residual_layers=4, residual_channels=16, dilation_cycle_length=2, n_mels=10, hop_length=32,
                     sample_rate=8000)
    task = VocoderTask(model.config)
    batch = audio_collate(harmonic_items(8, 32 * 8))

    def held_out_loss():
        with torch.no_grad():
            torch.manual_seed(123)
            return float(sum(task.training_loss(model, batch) for _ in range(4)) / 4)

    before = held_out_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        task.training_loss(model, batch).backward()
        opt.step()
    after = held_out_loss()
    assert after < 0.8 * before, (before, after)


def test_validation_metrics():
    from fastsep.train.vocoder import VocoderTask, audio_collate

    model = tiny()
    task = VocoderTask(model.config, valid_seconds=0.05)
    loader = [audio_collate(harmonic_items(2, 300)), audio_collate(harmonic_items(1, 500, seed=1))]
    metrics = task.validate(model, loader)
    assert set(metrics) == {"mel_l1", "noise_l1", "loss"} and metrics["loss"] == metrics["mel_l1"]
    assert 0 < metrics["mel_l1"] < 1 and metrics["noise_l1"] > 0
    assert task.validate(model, loader) == metrics  # fixed seeds: epochs compare like with like
    # a perfect vocoder scores 0: pretend vocode returns its input
    model.vocode = lambda wave, **kw: wave
    assert task.validate(model, loader)["mel_l1"] == 0.0
    with pytest.raises(TypeError, match="audio"):
        audio_collate([{"wave": torch.zeros(3)}])


def test_cli_trains_on_a_folder_of_wavs(tmp_path):
    from fastsep import audio as fsaudio
    from fastsep.cli import main

    for split, n in (("train", 3), ("valid", 1)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i, item in enumerate(harmonic_items(n, 1200, seed=len(split))):
            fsaudio.save(tmp_path / "data" / split / f"{i}.wav", item["audio"], 8000)
    out = tmp_path / "run"
    code = main(["train", "vocoder", "--data", str(tmp_path / "data"), "--out", str(out), "--sample-rate", "8000",
                 "--hop-length", "32", "--n-mels", "10", "--residual-layers", "2", "--residual-channels", "4",
                 "--crop-frames", "8", "--batch-size", "2", "--epochs", "1", "--num-workers", "0", "--no-progress",
                 "--device", "cpu", "--valid-seconds", "0.1"])
    assert code == 0
    best = DiffWave.load(out / "best")
    assert best.config["residual_layers"] == 2 and best.hop_length == 32
    code = main(["train", "vocoder", "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    assert code == 2


def test_fastest_runner_choice():
    # The CUDA "auto" stack choice keeps whichever captured step timed fastest (the timer is CUDA events there).
    timings = {"kernel": 2.0, "library": 1.0}
    runners = {name: name for name in timings}
    assert sampling.fastest(runners, lambda fn: timings[fn]) == "library"
    timings["kernel"] = 0.5
    assert sampling.fastest(runners, lambda fn: timings[fn]) == "kernel"
    assert sampling.fastest({"a": "a", "b": "b"}, lambda fn: 1.0) == "a"  # ties: the first


@pytest.mark.cuda
@pytest.mark.parametrize("stack", ["kernel", "library", "auto"])
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_cuda_generate_equals_unfused(monkeypatch, stack, cuda_graph):
    # Both stack implementations, replayed from a CUDA graph or run eagerly, against the plain modules on the same
    # GPU. TF32 is switched off so that every path computes in float32 and the CPU test's tolerance applies.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = tiny(residual_channels=8).cuda()
    model.cuda_stack = stack
    mel = torch.rand(3, 10, 7, device="cuda")
    a = model.generate(mel, fast=True, seed=11, cuda_graph=cuda_graph)
    b = model.generate(mel, fast=True, seed=11, fused=False)
    assert a.shape == (3, 7 * 32) and a.device.type == "cuda"
    assert (a - b).abs().max() <= 1e-4
    assert a.abs().mean() > 1e-3


def test_bad_cuda_stack_setting_is_reported_on_any_device():
    model = tiny()
    model.cuda_stack = "cudnn"
    with pytest.raises(ValueError, match="cuda_stack"):
        model.generate(torch.rand(1, 10, 3), seed=0)


def test_bfloat16_sampling_is_close_to_float32():
    # The CPU kernel's bfloat16 products: the same sampling within a tolerance fitting 8-bit mantissas (float32 gives
    # <= 1e-4, see test_fused_equals_unfused); the model default comes from sampling_precision.
    if not __import__("fastsep")._ext.diffwave_bf16_available():
        pytest.skip("no bfloat16 DiffWave kernel here (needs the extension and a CPU with AVX512-BF16)")
    model = tiny(residual_channels=8)
    mel = torch.rand(2, 10, 7)
    exact = model.generate(mel, seed=3)
    low = model.generate(mel, seed=3, precision="bfloat16")
    assert 1e-6 < (low - exact).abs().max() < 0.05
    model.sampling_precision = "bfloat16"
    assert torch.equal(model.generate(mel, seed=3), low)
    with pytest.raises(ValueError, match="precision"):
        model.generate(mel, seed=3, precision="int8")


# ------------------------------------------------------------------------------------------ the sampler object
def test_sampler_repacks_weights_changed_in_place():
    # The sampler caches the stacked layer weights; an in-place update (a training step, load_state_dict) must be
    # seen by the next generate. A stale pack would keep sampling with the old weights.
    model = tiny(residual_channels=8)
    mel = torch.rand(2, 10, 5)
    before = model.generate(mel, seed=2)
    with torch.no_grad():
        model.residual_layers[0].dilated_conv.weight.mul_(-1.5)
        model.residual_layers[1].output_projection.bias.add_(0.3)
    fused = model.generate(mel, seed=2)
    unfused = model.generate(mel, seed=2, fused=False)
    assert (fused - unfused).abs().max() <= 1e-4
    assert (fused - before).abs().max() > 1e-3


def test_sampler_settings_are_per_model_and_not_copied():
    a, b = tiny(), tiny()
    a.sampling_precision = "bfloat16"
    a.cuda_stack = "kernel"
    assert (b.sampling_precision, b.cuda_stack) == ("float32", "auto")  # not class-wide globals
    assert a.sampler() is a.sampler() and a.sampler().precision == "bfloat16"
    a.generate(torch.rand(1, 10, 3), seed=0, precision="float32")
    import copy

    c = copy.deepcopy(a)  # the sampler (caches, CUDA graphs) never travels with a copy or a pickle; its settings do
    assert "_sampler" not in c.__dict__ and c.sampler() is not a.sampler() and c.sampler().model is c
    assert (c.sampling_precision, c.cuda_stack) == ("bfloat16", "kernel")
    assert c.sampler()._packed is None and a.sampler()._packed is not None
    d = pickle.loads(pickle.dumps(a))
    assert (d.sampling_precision, d.cuda_stack) == ("bfloat16", "kernel") and d.sampler() is not a.sampler()
    torch.testing.assert_close(c.generate(torch.ones(1, 10, 3), seed=1), a.generate(torch.ones(1, 10, 3), seed=1))


def test_stack_choice_key_separates_graph_and_eager():
    # An "auto" choice timed on graph replays says nothing about eager runs (launch overhead is what graphs remove).
    s = tiny().sampler()
    with_graph = s.stack_choice_key("cuda:0", (2, 64), (2, 8), True)
    eager = s.stack_choice_key("cuda:0", (2, 64), (2, 8), False)
    assert with_graph != eager and with_graph[:4] == eager[:4]


@pytest.mark.cuda
def test_failed_capture_is_abandoned_and_warned():
    # A network that fails during capture (here: a host sync, illegal while capturing) must end the capture, give
    # the caller's stream back, and fall back to the eager path with a warning; the stream stays usable.
    model = tiny(residual_channels=8).cuda()
    caller = torch.cuda.current_stream()

    def network(audio, dstep):
        out = audio * 2
        if torch.cuda.is_current_stream_capturing():
            out.sum().item()
        return out

    with pytest.raises(sampling.GraphCaptureError):
        sampling.capture_cuda_graph(network, (2, 16), torch.zeros(2, 8, device="cuda"), torch.device("cuda"))
    assert torch.cuda.current_stream() == caller and not torch.cuda.is_current_stream_capturing()
    x = torch.ones(4, device="cuda")
    assert (x + 1).sum().item() == 8.0
    assert torch.rand(2, device="cuda").shape == (2,)  # the CUDA generator left the failed capture too
    s = model.sampler()
    with pytest.warns(RuntimeWarning, match="graph capture failed"):
        assert s._capture(network, (2, 16), torch.zeros(2, 8, device="cuda"), torch.device("cuda")) is None


def test_graph_replay_copies_inputs_and_close_frees_the_graph():
    # The replay object on a stand-in graph (CPU tensors): inputs land in the static buffers before each replay,
    # close() resets the graph once and drops every buffer, and a closed replay refuses to run.
    class Graph:
        def __init__(self):
            self.replays, self.resets = 0, 0

        def replay(self):
            self.replays += 1
            out.copy_(audio_buf * 2 + dstep_buf.sum())

        def reset(self):
            self.resets += 1

    graph, audio_buf, dstep_buf, out = Graph(), torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 4)
    replay = sampling.GraphReplay(graph, audio_buf, dstep_buf, out)
    got = replay(torch.ones(2, 4), torch.ones(2, 3))
    assert graph.replays == 1 and torch.equal(got, torch.full((2, 4), 8.0))
    sampling.release(replay)
    sampling.release(replay)  # a second close is harmless
    assert graph.resets == 1 and replay._out is None
    with pytest.raises(RuntimeError, match="closed"):
        replay(torch.ones(2, 4), torch.ones(2, 3))
    sampling.release(lambda audio, n: audio)  # eager step functions hold nothing to free


@pytest.mark.cuda
@pytest.mark.parametrize("stack", ["kernel", "auto"])
def test_repeated_cuda_sampling_does_not_hold_graph_memory(stack):
    # Each call captures its graphs and must free them when it returns: memory after the 2nd and the 6th call match.
    model = tiny(residual_channels=8).cuda()
    model.cuda_stack = stack
    mel = torch.rand(2, 10, 20, device="cuda")
    held = []
    for _ in range(6):
        model.generate(mel, fast=True, seed=0, cuda_graph=True)
        torch.cuda.synchronize()
        held.append(torch.cuda.memory_allocated())
    assert held[5] <= held[1], held


def test_vocoder_training_pools_several_sources(tmp_path):
    # `--data A B` pools every root's training utterances; the first root with a 'valid' split validates (here the
    # second: the first, like a recorded-voice corpus, has none).
    from fastsep import audio as fsaudio
    from fastsep.train.vocoder import _first_valid_split, _pooled_speech

    for root, splits in (("a", (("train", 2),)), ("b", (("train", 3), ("valid", 1)))):
        for split, n in splits:
            (tmp_path / root / split).mkdir(parents=True)
            for i, item in enumerate(harmonic_items(n, 1200, seed=n)):
                fsaudio.save(tmp_path / root / split / f"{i}.wav", item["audio"], 8000)
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    pooled = _pooled_speech(roots, 8000, 0.05)
    assert len(pooled) == 5 and {os.path.basename(os.path.dirname(p)) for p in pooled.paths} == {"train"}
    assert {p.split(os.sep)[-3] for p in pooled.paths} == {"a", "b"}
    valid = _first_valid_split(roots, 8000, pooled.paths)  # a's fallback would be its own training files
    assert len(valid) == 1 and valid.paths[0].startswith(str(tmp_path / "b" / "valid"))
    alone = _first_valid_split(roots[:1], 8000, pooled.paths)  # nothing better: the single folder, as before
    assert sorted(alone.paths) == sorted(p for p in pooled.paths if p.startswith(roots[0]))


@pytest.mark.parametrize("hop", [128, 256, 80, 15, 7])
def test_upsampler_equals_transposed_convolutions(hop):
    # The polyphase product against ATen's conv_transpose2d with the layers' own (random) weights, values and
    # gradients: the weight layout and format are those of lmnt-com/diffwave's upsampler.
    torch.manual_seed(hop)
    up = dw.SpectrogramUpsampler(6, hop)
    with torch.no_grad():
        for conv in (up.conv1, up.conv2):
            conv.weight.copy_(torch.randn_like(conv.weight))
            conv.bias.fill_(0.3)
    mel = torch.rand(2, 6, 9, requires_grad=True)

    def reference(x):
        y, frames = x.unsqueeze(1), x.shape[-1]
        for conv, stride in ((up.conv1, up.strides[0]), (up.conv2, up.strides[1])):
            frames *= stride
            y = torch.nn.functional.leaky_relu(conv(y), 0.4)[..., :frames]
        return y.squeeze(1)

    ref, got = reference(mel), up(mel)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), up.conv1.weight)
    (g_got,) = torch.autograd.grad(got.square().sum(), up.conv1.weight)
    torch.testing.assert_close(g_got, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hop", [128, 256, 75])
def test_upsampler_starts_as_linear_interpolation_of_the_mel(hop):
    # A freshly built upsampler passes the mel through (interpolated in time), so that an untrained DiffWave's
    # conditioner carries the mel at full strength (the default init shrank it ~1000x and training ignored it).
    from fastsep.models.diffwave import SpectrogramUpsampler

    up = SpectrogramUpsampler(6, hop)
    with torch.no_grad():
        flat = up(torch.full((1, 6, 8), 0.7))
        mel = torch.rand(2, 6, 12)
        out = up(mel)
    assert torch.allclose(flat[..., 2 * hop:-2 * hop], torch.tensor(0.7), atol=1e-6)
    assert out.shape == (2, 6, 12 * hop)
    # the samples of frame k's hop interpolate between its neighbours' values, and come close to frame k's own
    for k in range(1, 11):
        seg = out[..., k * hop:(k + 1) * hop]
        lo = mel[..., k - 1:k + 2].min(-1, keepdim=True).values
        hi = mel[..., k - 1:k + 2].max(-1, keepdim=True).values
        assert bool(((seg >= lo - 1e-5) & (seg <= hi + 1e-5)).all())
        assert float((seg - mel[..., k:k + 1]).abs().min(-1).values.max()) < 0.5 * float((hi - lo).max()) + 1e-5
    assert float(out.std()) > 0.5 * float(mel.std())
