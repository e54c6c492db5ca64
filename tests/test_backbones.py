"""The separation backbones (small presets): shapes, batch independence, gradients, a few training steps, configs,
bad input; plus the dual-path chunking helpers against a plain loop."""
import json
import math

import pytest
import torch

from fastsep.metrics import pit_si_sdr_loss
from fastsep.models import DPRNN, ConvTasNet, MulCat, SepFormer
from fastsep.models.blocks import chunk, overlap_add

MODELS = [ConvTasNet, DPRNN, MulCat, SepFormer]
ids = [m.__name__ for m in MODELS]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.mark.parametrize("cls", MODELS, ids=ids)
@pytest.mark.parametrize("n_src", [2, 3, 5])
@pytest.mark.parametrize("length", [801, 37])
def test_output_shape(cls, n_src, length):
    model = cls.small(n_src)
    out = model(torch.randn(2, length))
    assert out.shape == (2, n_src, length)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_examples_are_separated_independently(cls):
    # Each example of a batch must give what it gives alone: catches reshapes that mix up batch and chunk axes.
    model = cls.small(3).eval()
    mix = torch.randn(3, 413)
    with torch.no_grad():
        together = model(mix)
        alone = torch.cat([model(mix[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_gradient_reaches_every_parameter(cls):
    model = cls.small(2)
    mix = torch.randn(2, 400)
    refs = torch.randn(2, 2, 400)
    pit_si_sdr_loss(model(mix), refs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def _tiny_mixture(length=800, sr=8000):
    t = torch.arange(length) / sr
    s1 = torch.sin(2 * math.pi * 220 * t) * torch.linspace(0.2, 1.0, length)
    s2 = torch.sign(torch.sin(2 * math.pi * 1130 * t)) * 0.5  # square wave, very different spectrum
    refs = torch.stack([s1, s2]).unsqueeze(0)
    return refs.sum(1), refs


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_adam_steps_lower_pit_loss(cls):
    model = cls.small(2)
    mix, refs = _tiny_mixture()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = pit_si_sdr_loss(model(mix), refs)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = pit_si_sdr_loss(model(mix), refs).item()
    assert final < losses[0] - 1.0, f"loss went {losses[0]:.2f} -> {final:.2f}"


def test_mulcat_returns_every_block():
    model = MulCat.small(3).eval()
    mix = torch.randn(2, 301)
    with torch.no_grad():
        every = model(mix, return_all=True)
        last = model(mix)
    assert every.shape == (model.config["n_blocks"], 2, 3, 301)
    torch.testing.assert_close(every[-1], last)
    assert not torch.allclose(every[0], every[-1])


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_config_round_trip_through_json(cls):
    model = cls.small(4, sample_rate=16000)
    config = json.loads(json.dumps(model.config))
    assert config["n_src"] == 4 and config["sample_rate"] == 16000
    clone = cls.from_config(config)
    clone.load_state_dict(model.state_dict())  # same architecture: every key and shape matches
    mix = torch.randn(1, 200)
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(mix), model.eval()(mix))


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_small_preset_is_small(cls):
    n = sum(p.numel() for p in cls.small(2).parameters())
    assert 1_000 <= n <= 1_000_000


@pytest.mark.parametrize("cls, published_millions", [(ConvTasNet, 5.1), (SepFormer, 26.0)])
def test_default_sizes_match_published_parameter_counts(cls, published_millions):
    # Conv-TasNet: 5.1 M in Luo & Mesgarani (2019); SepFormer: 26 M in Subakan et al. (2021).
    n = sum(p.numel() for p in cls(2).parameters()) / 1e6
    assert abs(n - published_millions) / published_millions < 0.05, n


def test_default_hyperparameters():
    assert MulCat(2).config["chunk_size"] == int(math.sqrt(2 * 8000 * 4 / 4))  # svoice's rule: 126 at 8 kHz
    dprnn = DPRNN(2).config
    assert (dprnn["n_filters"], dprnn["kernel_size"], dprnn["chunk_size"], dprnn["hop_size"],
            dprnn["n_repeats"], dprnn["hid_size"]) == (64, 16, 100, 50, 6, 128)


@pytest.mark.parametrize("cls", MODELS, ids=ids)
def test_bad_input(cls):
    model = cls.small(2)
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        model(torch.randn(100))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        model(torch.randn(1, 2, 100))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(1, 100, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([0.0] * 100)
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.zeros(1, 0))
    for bad in (1, 0, 21):
        with pytest.raises(ValueError, match=r"n_src must be in \[2, 20\]"):
            cls.small(bad)
    with pytest.raises(TypeError, match="n_src"):
        cls.small(2.0)
    with pytest.raises(TypeError, match="from_config"):
        cls.from_config([("n_src", 2)])


def test_twenty_sources():
    out = ConvTasNet.small(20)(torch.randn(1, 99))
    assert out.shape == (1, 20, 99)


# ------------------------------------------------------------------------------------------------------ chunking
@pytest.mark.parametrize("length", [1, 19, 20, 57, 100])
@pytest.mark.parametrize("size, hop", [(20, 10), (8, 3), (5, 5)])
def test_chunk_and_overlap_add_against_loop(length, size, hop):
    x = torch.randn(2, 3, length)
    chunks = chunk(x, size, hop)
    left = size - hop
    n_chunks = chunks.shape[-1]
    # Every chunk k covers padded positions [k*hop, k*hop + size), i.e. original index k*hop - left + s.
    for k in range(n_chunks):
        for s in range(size):
            i = k * hop - left + s
            want = x[..., i] if 0 <= i < length else torch.zeros(2, 3)
            torch.testing.assert_close(chunks[..., s, k], want)
    # All original samples are covered, and overlap_add sums every chunk's copy back in place.
    assert (n_chunks - 1) * hop + size >= length + 2 * left
    counts = torch.zeros(length)
    for k in range(n_chunks):
        for s in range(size):
            i = k * hop - left + s
            if 0 <= i < length:
                counts[i] += 1
    torch.testing.assert_close(overlap_add(chunks, hop, length), x * counts)


# ----------------------------------------------------------------------- the shared gated mask head, old weights
class _OldDPRNN(DPRNN):
    """DPRNN as it was before the mask head moved to blocks.GatedMaskHead: its own three layers and gating."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bn, nf = self.bn_chan, self.n_filters
        del self.mask_head
        self.net_out = torch.nn.Sequential(torch.nn.Conv1d(bn, bn, 1), torch.nn.Tanh())
        self.net_gate = torch.nn.Sequential(torch.nn.Conv1d(bn, bn, 1), torch.nn.Sigmoid())
        self.mask_net = torch.nn.Conv1d(bn, nf, 1, bias=False)

    def _load_from_state_dict(self, *args, **kwargs):  # the old class had no key map
        torch.nn.Module._load_from_state_dict(self, *args, **kwargs)

    def mask_head(self, x):
        return torch.sigmoid(self.mask_net(self.net_out(x) * self.net_gate(x)))


class _OldSepFormer(SepFormer):
    """SepFormer before the shared head: out_value, out_gate, mask_proj and ReLU masks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n = self.n_filters
        del self.mask_head
        self.out_value = torch.nn.Sequential(torch.nn.Conv1d(n, n, 1), torch.nn.Tanh())
        self.out_gate = torch.nn.Sequential(torch.nn.Conv1d(n, n, 1), torch.nn.Sigmoid())
        self.mask_proj = torch.nn.Conv1d(n, n, 1, bias=False)

    def _load_from_state_dict(self, *args, **kwargs):
        torch.nn.Module._load_from_state_dict(self, *args, **kwargs)

    def mask_head(self, x):
        return torch.relu(self.mask_proj(self.out_value(x) * self.out_gate(x)))


@pytest.mark.parametrize("old_cls,new_cls,old_names", [
    (_OldDPRNN, DPRNN, {"net_out.0.weight", "net_out.0.bias", "net_gate.0.weight", "net_gate.0.bias",
                        "mask_net.weight"}),
    (_OldSepFormer, SepFormer, {"out_value.0.weight", "out_value.0.bias", "out_gate.0.weight", "out_gate.0.bias",
                                "mask_proj.weight"}),
], ids=["DPRNN", "SepFormer"])
def test_weights_in_the_old_mask_head_layout_still_load(old_cls, new_cls, old_names):
    # A state dict saved by the old classes (their own head layers) loads strictly into the new ones, and the
    # model computes exactly what the old one did.
    torch.manual_seed(1)
    old = old_cls(**new_cls.small(2).config).eval()
    with torch.no_grad():  # make the head's weights matter (and differ from a fresh init)
        for p in old.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = old.state_dict()
    assert old_names <= set(state) and not any(k.startswith("mask_head.") for k in state)
    new = new_cls(**new_cls.small(2).config).eval()
    new.load_state_dict(state, strict=True)
    assert not (old_names & set(new.state_dict()))
    mix = torch.randn(2, 400)
    with torch.no_grad():
        torch.testing.assert_close(new(mix), old(mix), rtol=0, atol=0)
    upgraded = new_cls.upgrade_state_dict(state)  # for loaders that check names before load_state_dict
    assert set(upgraded) == set(new.state_dict())
