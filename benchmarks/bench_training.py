"""Training throughput on CPU: what each option buys for one separator training step (same model, same batch).

    python -m pytest benchmarks/bench_training.py --benchmark-only -s

Group ``train_step``: a full step (forward, PIT SI-SDR loss, backward, clipped Adam update) of the default backbone's
architecture (the Conv-TasNet of recipes/train_default.sh) on a batch of 4 x 2 s at 8 kHz. Variants, each compared
with ``reference`` (float32 eager, Adam's default for-each kernels) in the same run:

* ``plain_gln``: the gLNs as autograd differentiates their plain formula (``GlobalLayerNorm.reference``), as every
  training before session 24 ran them; ``reference`` has their written-out backward;
* ``bf16``: bfloat16 autocast (what ``fastsep train --bf16`` turns on);
* ``fused_adam``: Adam with ``fused=True``;
* ``compiled``: ``torch.compile`` of the model (Inductor's CPU code generation), first call excluded.

Group ``prior_train_step``: one training step of the speech prior (``TFAttentionUNet.small``, the network of
recipes/train_prior.sh: noise-prediction loss at random diffusion steps, backward, clipped Adam) on the same batch
shape, ``reference`` (float32) against ``bf16`` autocast: its attention has 8-channel heads, where PyTorch's CPU
attention is much slower in bfloat16 than in float32.

Groups ``backbone_train_step`` and ``backbone_separate``: the four backbone architectures at the sizes
``recipes/compare_backbones.sh`` trains them (``recipes/compare_backbones.json``: ~0.4-0.6 M parameters, 2 ms encoder
hop), one training step on the batch above and one separation of a 4 s mixture (batch 1, inference mode), each
against the default's Conv-TasNet (``reference``) in the same run: what each costs per step and per second of audio,
the speed half of the quality/speed trade-off that recipe measures.

Group ``data``: one batch of on-the-fly augmented mixtures (``reference``: none; ``augmented``: speed, reverb,
overlap and noise), so the data loader's share of a step can be compared with the step itself.
``FASTSEP_BENCH_SECONDS`` shortens the audio (the smoke test runs every case once on tiny inputs).
"""
import os

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fastsep.metrics import pit_si_sdr_loss
from fastsep.models import ConvTasNet
from fastsep.models.blocks import GlobalLayerNorm

SECONDS = float(os.environ.get("FASTSEP_BENCH_SECONDS", "2.0"))
BATCH = 4
SR = 8000
#: the architecture recipes/train_default.sh trains (keep in step with it)
DEFAULT_BACKBONE = dict(n_filters=128, kernel_size=32, stride=16, bn_chan=64, hid_chan=128, skip_chan=64,
                        n_blocks=8, n_repeats=2)


def _training_step(model, opt, forward, loss_of, clip: float, variant: str):
    """One timed step: ``loss_of(forward())`` with the forward under bfloat16 autocast for the ``bf16`` variant,
    backward, gradient clipping at ``clip``, the optimizer's update. Run once here (compilation / first touch
    outside the timing)."""
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
            out = forward()
        loss = loss_of(out.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss

    step()
    return step


def _step_fn(variant: str):
    torch.manual_seed(0)
    model = ConvTasNet(2, SR, **DEFAULT_BACKBONE)
    if variant == "plain_gln":  # the norms as autograd differentiates their plain formula (before session 24)
        for module in model.modules():
            if isinstance(module, GlobalLayerNorm):
                module.forward = module.reference
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=variant == "fused_adam")
    net = torch.compile(model) if variant == "compiled" else model
    n = max(64, int(SECONDS * SR))
    mix, src = 0.1 * torch.randn(BATCH, n), 0.1 * torch.randn(BATCH, 2, n)
    return _training_step(model, opt, lambda: net(mix), lambda est: pit_si_sdr_loss(est, src), 5.0, variant)


@pytest.mark.parametrize("variant", ["reference", "plain_gln", "bf16", "fused_adam", "compiled"])
def test_train_step(benchmark, record, variant):
    if variant == "compiled" and SECONDS < 1.0:
        pytest.skip("torch.compile is timed only on full-size inputs (it costs minutes to compile)")
    step = _step_fn(variant)
    record(benchmark, "train_step", variant, step, rounds=3)


def _prior_step_fn(variant: str):
    from fastsep.models import TFAttentionUNet
    from fastsep.sampling.priors import DDPMSchedule

    torch.manual_seed(0)
    net = TFAttentionUNet.small(SR)
    sched = DDPMSchedule.paper()
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    n = max(2 * net.n_fft, int(SECONDS * SR))
    x0 = 0.1 * torch.randn(BATCH, n)
    t = torch.randint(0, sched.steps, (BATCH,))
    noise = torch.randn(BATCH, n)
    x_t = sched.q_sample(x0, t, noise)
    return _training_step(net, opt, lambda: net(x_t, t), lambda eps: (eps - noise).square().mean(), 1.0, variant)


@pytest.mark.parametrize("variant", ["reference", "bf16"])
def test_prior_train_step(benchmark, record, variant):
    record(benchmark, "prior_train_step", variant, _prior_step_fn(variant), rounds=3)


ARCHITECTURES = os.path.join(os.path.dirname(__file__), "..", "recipes", "compare_backbones.json")


def _architecture(name: str):
    import json

    from fastsep.train.separator import BACKBONES
    import fastsep.models as models

    with open(ARCHITECTURES) as fh:
        kwargs = json.load(fh)[name]
    torch.manual_seed(0)
    return getattr(models, BACKBONES[name])(2, SR, **kwargs)


@pytest.mark.parametrize("arch", ["convtasnet", "dprnn", "sepformer", "mulcat"])
def test_backbone_train_step(benchmark, record, arch):
    model = _architecture(arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = max(1024, int(SECONDS * SR))
    mix, src = 0.1 * torch.randn(BATCH, n), 0.1 * torch.randn(BATCH, 2, n)
    step = _training_step(model, opt, lambda: model(mix), lambda est: pit_si_sdr_loss(est, src), 5.0, "reference")
    record(benchmark, "backbone_train_step", "reference" if arch == "convtasnet" else arch, step, rounds=3)


@pytest.mark.parametrize("arch", ["convtasnet", "dprnn", "sepformer", "mulcat"])
def test_backbone_separate(benchmark, record, arch):
    model = _architecture(arch).eval()
    mix = 0.1 * torch.randn(1, max(1024, int(2 * SECONDS * SR)))  # 4 s at the default SECONDS

    def separate():
        with torch.inference_mode():
            return model(mix)

    record(benchmark, "backbone_separate", "reference" if arch == "convtasnet" else arch, separate, rounds=5)


def test_compared_convtasnet_is_the_default_architecture():
    # the default's Conv-TasNet arguments live in three places: the comparison's JSON, this file, and the training
    # recipes' DEFAULT_B_ARGS; all three must be the shipped backbone's
    import json
    import re

    with open(ARCHITECTURES) as fh:
        assert json.load(fh)["convtasnet"] == DEFAULT_BACKBONE
    common = os.path.join(os.path.dirname(ARCHITECTURES), "common.sh")
    with open(common) as fh:
        recipe_args = json.loads(re.search(r"^DEFAULT_B_ARGS='(\{.*\})'$", fh.read(), re.M).group(1))
    assert recipe_args == DEFAULT_BACKBONE
    shipped = os.path.join(os.path.dirname(ARCHITECTURES), "..", "fastsep", "assets", "default", "backbone.json")
    with open(shipped) as fh:
        config = json.load(fh)["config"]
    for member in config.get("members", [{"config": config}]):  # an ensemble's members, or the one network
        assert {k: member["config"][k] for k in DEFAULT_BACKBONE} == DEFAULT_BACKBONE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import json

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = []
    for spk in ("a", "b", "c", "d"):
        for u in range(3):
            rel = f"{spk}_{u}.wav"
            wavfile.write(root / rel, SR, (0.2 * rng.standard_normal(int(max(SECONDS, 0.1) * 2.5 * SR))
                                           ).astype(np.float32))
            lines.append(json.dumps({"path": rel, "speaker": spk, "split": "train", "sample_rate": SR,
                                     "duration": max(SECONDS, 0.1) * 2.5}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("variant", ["reference", "augmented"])
def test_data_batch(benchmark, record, corpus, variant):
    from fastsep.data import open_mixture_dataset
    from fastsep.data.augment import Augmentation

    aug = Augmentation(noise_files=[]) if variant == "augmented" else None
    ds = open_mixture_dataset(corpus, 2, SR, segment=max(SECONDS, 0.1), augment=aug, length=10_000)
    counter = iter(range(10_000))

    def batch():
        return [ds[next(counter)] for _ in range(BATCH)]

    record(benchmark, "data", variant, batch, rounds=5)
