"""DiffSep and the prior-guided solver served like Separate-And-Diffuse: bundles that say their method, one Separator
for all, chunking with talker order kept, files, ``fastsep separate``/``eval`` with several bundles, clear errors.

Every model here is tiny and untrained (a few thousand parameters, 2-4 sampling steps, fractions of a second of
audio): the tests check the serving path, not separation quality."""
import csv
import json
import os
import wave as wavmod

import numpy as np
import pytest
import torch
from torch import nn

from fastsep import bundle as bundlemod
from fastsep import cli
from fastsep.bundle import load_method, read_manifest, write_diffsep_bundle, write_priors_bundle
from fastsep.methods.base import SeparationMethod
from fastsep.methods.diffsep import DiffSepMethod
from fastsep.methods.priors import PriorSeparation
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.io import save_model
from fastsep.models.ncsnpp import NCSNpp
from fastsep.models.tf_attention_unet import TFAttentionUNet
from fastsep.sampling.priors import GaussianPrior, NetworkPrior
from fastsep.separator import Separator
from helpers import write_wav

SR = 8000


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def tiny_score_net(n_src=2):
    return NCSNpp(n_src, SR, n_fft=30, hop_length=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,))


def tiny_prior_net():
    return TFAttentionUNet(sample_rate=SR, n_fft=62, hop_length=31, channels=(8, 16), depths=(1, 1), head_dim=4,
                           mlp_ratio=1.0, diffusion_steps=20)


# Solver options that keep the prior tests to 4 reverse steps (t = 3 .. 0) of a 20-step schedule.
FAST_SOLVER = dict(init_step=3, start_step=3)


@pytest.fixture(scope="module")
def diffsep_bundle(tmp_path_factory):
    """A DiffSep bundle written from a training run's layout: best/model.* + the run's diffsep.json."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("ds_run")
    save_model(tiny_score_net(), str(run / "best"))
    with open(run / "diffsep.json", "w") as fh:
        json.dump({"sde": {"n_src": 2, "gamma": 2.0, "sigma_min": 0.05, "sigma_max": 0.5}, "n_steps": 30,
                   "snr": 0.5, "corrector_steps": 1, "enhancement": False}, fh)
    out = tmp_path_factory.mktemp("ds_bundle")
    write_diffsep_bundle(out, run, n_steps=2)  # the run folder resolves to its best/; n_steps overridden
    return str(out)


@pytest.fixture(scope="module")
def priors_bundle(tmp_path_factory):
    """Two talkers of one prior, from the folder `fastsep train prior` writes (<run>/prior/model.*)."""
    torch.manual_seed(1)
    run = tmp_path_factory.mktemp("prior_run")
    save_model(tiny_prior_net(), str(run / "prior"))
    out = tmp_path_factory.mktemp("prior_bundle")
    write_priors_bundle(out, [str(run)], step="hybrid", **FAST_SOLVER)
    return str(out)


@pytest.fixture(scope="module")
def sad_bundle(tmp_path_factory):
    """A backbone-only Separate-And-Diffuse bundle (modes: backbone)."""
    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("sad_bundle")
    Separator(ConvTasNet.small(2, SR), sample_rate=SR).save_pretrained(out)
    return str(out)


def load(path, **kw):
    kw.setdefault("chunk_seconds", 1.0)
    return Separator.from_pretrained(path, **kw)


def mixture(batch=2, n=1200, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    tone = torch.sin(2 * torch.pi * 300 * t) * 0.1
    return tone + 0.05 * torch.randn(batch, n, generator=g)


# ---------------------------------------------------------------------------------------------------- bundles
def test_bundles_say_their_method_and_round_trip(diffsep_bundle, priors_bundle, sad_bundle, tmp_path):
    ds = read_manifest(diffsep_bundle)
    assert ds["method"] == "diffsep" and ds["components"] == {"score": "score"}
    assert ds["options"]["n_steps"] == 2 and ds["options"]["snr"] == 0.5  # override, and the run's settings
    pr = read_manifest(priors_bundle)
    assert pr["method"] == "priors" and pr["options"]["tracks"] == [0, 0] and pr["n_src"] == 2
    assert pr["options"]["solver"] == FAST_SOLVER and pr["options"]["step"] == "hybrid"
    assert read_manifest(sad_bundle)["method"] == "separate_and_diffuse"
    # weights are safetensors + JSON, never pickle
    for folder in (diffsep_bundle, priors_bundle):
        assert not [f for f in os.listdir(folder) if f.endswith((".pt", ".pth", ".pkl", ".bin"))]

    x = mixture()
    for path, cls in ((diffsep_bundle, DiffSepMethod), (priors_bundle, PriorSeparation)):
        sep = load(path)
        assert isinstance(sep.method, cls) and sep.sample_rate == SR and sep.n_src == 2
        # save_pretrained writes the same method back: same weights, options, fingerprint and output
        again_dir = tmp_path / os.path.basename(path)
        sep.save_pretrained(again_dir)
        again = load(again_dir)
        assert read_manifest(again_dir)["options"] == read_manifest(path)["options"]
        assert again.fingerprint() == sep.fingerprint()
        assert torch.equal(again.separate(x, seed=3), sep.separate(x, seed=3))


def test_old_bundles_without_method_are_separate_and_diffuse(sad_bundle, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(sad_bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    del manifest["method"]
    (old / "bundle.json").write_text(json.dumps(manifest))
    sep = load(old)
    assert sep.method_name == "separate_and_diffuse" and sep.modes == ("backbone",)
    x = mixture(1)
    assert torch.equal(sep.separate(x), load(sad_bundle).separate(x))


def _edit(src, dst, change):
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "bundle.json").read_text())
    change(manifest)
    (dst / "bundle.json").write_text(json.dumps(manifest))
    return dst


def test_bad_bundles_are_refused_with_clear_errors(diffsep_bundle, priors_bundle, sad_bundle, tmp_path):
    cases = [
        (diffsep_bundle, lambda m: m.update(method="wavesplit"), "unknown method 'wavesplit'"),
        (diffsep_bundle, lambda m: m.update(format=7), "format 7"),
        (diffsep_bundle, lambda m: m.update(components={"backbone": "score"}), "one component, 'score'"),
        (diffsep_bundle, lambda m: m.update(n_src=3), "its score network separates 2"),
        (diffsep_bundle, lambda m: m["options"].update(temperature=2), "unknown diffsep options"),
        (priors_bundle, lambda m: m["options"].update(tracks=[0, 5]), "options.tracks"),
        (priors_bundle, lambda m: m.update(n_src=3), "n_src is 3 but options.tracks names 2"),
        (priors_bundle, lambda m: m["options"].update(step="annealed"), "options.step must be one of"),
        (priors_bundle, lambda m: m["options"]["solver"].update(warp=1), "do not fit the prior solver"),
        (priors_bundle, lambda m: m["options"].update(priors=[{"gaussian": -1.0}]), "options.priors[0]"),
        (sad_bundle, lambda m: m.update(components={"vocoder": "vocoder"}), "including 'backbone'"),
    ]
    for i, (src, change, message) in enumerate(cases):
        bad = _edit(src, tmp_path / f"bad{i}", change)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
            Separator.from_pretrained(bad)
    # a prior component that holds something else than a prior
    wrong = _edit(priors_bundle, tmp_path / "wrong_class", lambda m: None)
    save_model(ConvTasNet.small(2, SR), str(wrong), "prior0")
    with pytest.raises(ValueError, match="not a source prior"):
        Separator.from_pretrained(wrong)
    # a DiffSep bundle's score network must be an NCSNpp
    swapped = _edit(diffsep_bundle, tmp_path / "swapped", lambda m: None)
    save_model(ConvTasNet.small(2, SR), str(swapped), "score")
    with pytest.raises(ValueError, match="not a DiffSep score network"):
        Separator.from_pretrained(swapped)
    # weights edited after saving are refused (SHA-256 in the JSON)
    tampered = _edit(diffsep_bundle, tmp_path / "tampered", lambda m: None)
    with open(tampered / "score.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ValueError, match="SHA-256"):
        Separator.from_pretrained(tampered)
    # the legacy loader says where to go for other methods
    with pytest.raises(ValueError, match="load_method"):
        bundlemod.load_bundle(diffsep_bundle)
    with pytest.raises(ValueError, match="vocoder_precision applies to Separate-And-Diffuse"):
        Separator.from_pretrained(diffsep_bundle, vocoder_precision="bfloat16")
    with pytest.raises(ValueError, match="combiner_precision applies to Separate-And-Diffuse"):
        Separator.from_pretrained(diffsep_bundle, combiner_precision="bfloat16")


# ---------------------------------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("which", ["diffsep", "priors"])
def test_every_mode_returns_b_k_t_deterministic_per_item(which, diffsep_bundle, priors_bundle):
    sep = load(diffsep_bundle if which == "diffsep" else priors_bundle)
    x = mixture(batch=2, n=800)
    expected_modes = ("diffsep",) if which == "diffsep" else ("prior", "prior-hybrid", "prior-dps", "prior-dsg")
    assert sep.modes == expected_modes and sep.default_mode == expected_modes[0]
    outs = {}
    for mode in sep.modes:
        outs[mode] = sep.separate(x, mode=mode, seed=5)
        assert outs[mode].shape == (2, 2, 800) and outs[mode].dtype == torch.float32
        assert bool(torch.isfinite(outs[mode]).all())
    out = outs[sep.default_mode]
    assert torch.equal(sep.separate(x, seed=5), out)  # seeded: the same again
    assert not torch.allclose(sep.separate(x, seed=6), out)  # another seed: other noise
    # an item's result depends only on its own mixture and seed, not on its batch-mates
    alone = sep.separate(x[1], seed=5)
    assert alone.shape == (2, 800)
    torch.testing.assert_close(alone, out[1], atol=1e-5, rtol=1e-4)
    if which == "priors":
        # the guidance steps are different solvers: the DPS step moves the sources otherwise than the hybrid one,
        # and "prior" is the bundle's (hybrid) step
        assert not torch.allclose(outs["prior-dps"], out)
        assert torch.equal(outs["prior-hybrid"], out)


@pytest.mark.parametrize("which", ["diffsep", "priors"])
def test_levels_numpy_and_resampling_are_shared(which, diffsep_bundle, priors_bundle):
    sep = load(diffsep_bundle if which == "diffsep" else priors_bundle)
    x = mixture(batch=1, n=800)[0]
    base = sep.separate(x, seed=1)
    # the mixture is brought to one level before the method and back after: the result scales with the input
    torch.testing.assert_close(sep.separate(x * 8.0, seed=1), base * 8.0, rtol=1e-3, atol=1e-5)
    # talkers are scaled by the one least-squares gain that makes their sum closest to the mixture
    total = base.sum(0)
    assert float((x * total).sum()) == pytest.approx(float((total * total).sum()), rel=1e-3)
    out = sep.separate(x.numpy(), seed=1)
    assert isinstance(out, np.ndarray) and out.shape == (2, 800)
    assert sep.separate(x.numpy(), seed=1, sample_rate=4000).shape == (2, 800)  # resampled in and out
    with pytest.raises(ValueError, match="shortest input"):
        sep.separate(x[:100], seed=1)


class SwappingMethod(SeparationMethod):
    """A method of the interface whose talkers are (x, x^2), named in the opposite order on every other call, as a
    sampler may per chunk: the Separator must put them back in one order across chunks."""

    name = "swapping"
    sample_rate = SR
    n_src = 2
    calls = 0

    @property
    def modes(self):
        return ("swap",)

    def modules(self):
        return {}

    def run(self, mixture, mode, seeds=None):
        self.check_mode(mode)
        out = torch.stack([mixture, mixture * mixture], dim=1)
        SwappingMethod.calls += 1
        return out.flip(1) if SwappingMethod.calls % 2 == 0 else out


def test_chunked_keeps_talker_order_for_any_method():
    raw = dict(input_rms=None, mixture_consistent=False)
    sep = Separator(SwappingMethod(), chunk_seconds=0.1, overlap_seconds=0.03, **raw)
    whole = Separator(SwappingMethod(), chunk_seconds=10.0, **raw)
    x = torch.randn(2, 4000) * 0.3
    SwappingMethod.calls = 0
    chunked = sep.separate(x)  # 6 chunks, every other one swapped
    assert SwappingMethod.calls > 4
    SwappingMethod.calls = 0
    torch.testing.assert_close(chunked, whole.separate(x), atol=1e-5, rtol=1e-5)


def test_chunked_priors_keep_talker_order_on_a_constructed_case():
    """Two Gaussian priors of very different variances: the exact posterior gives the loud prior's track almost
    all of the mixture. Separated in three chunks, each track must stay the same talker throughout."""
    sched = NetworkPrior(tiny_prior_net()).schedule
    loud, quiet = GaussianPrior(0.25, sched), GaussianPrior(0.0025, sched)
    method = PriorSeparation([quiet, loud], sample_rate=SR)  # all 20 steps: no network, cheap
    x = mixture(batch=1, n=3000, seed=4)
    whole = Separator(method, chunk_seconds=10.0).separate(x, seed=0)
    chunked_sep = Separator(method, chunk_seconds=0.15, overlap_seconds=0.05)
    chunked = chunked_sep.separate(x, seed=0)
    assert chunked.shape == whole.shape == (1, 2, 3000)

    # The loud prior's track (index 1) carries the mixture in every stretch, unchunked and chunked: a chunk whose
    # tracks were swapped would show the quiet track loud there. (Each stretch lies inside one chunk's share.)
    for out in (whole, chunked):
        for a in (0, 1000, 2000):
            quiet_part, loud_part = out[0, :, a:a + 1000].norm(dim=-1)
            assert loud_part > 3 * quiet_part


def test_long_input_chunked_shapes_for_every_method(diffsep_bundle, priors_bundle):
    for path in (diffsep_bundle, priors_bundle):
        sep = load(path, chunk_seconds=0.15, overlap_seconds=0.05)
        x = mixture(batch=1, n=2400)
        pieces = list(sep.iter_separate(x, seed=[0]))
        assert len(pieces) > 1 and sum(p.shape[-1] for _, p in pieces) == 2400
        assert all(p.shape[:2] == (1, 2) for _, p in pieces)
        joined = torch.cat([p for _, p in pieces], dim=-1)
        torch.testing.assert_close(joined, sep.separate(x, seed=[0]), atol=1e-6, rtol=1e-5)


def test_mode_errors_and_streaming_is_sad_only(diffsep_bundle, priors_bundle, sad_bundle):
    ds, pr, sad = load(diffsep_bundle), load(priors_bundle), load(sad_bundle)
    x = mixture(1)
    with pytest.raises(ValueError, match=r"mode 'full' is not offered by this diffsep model; its modes: diffsep"):
        ds.separate(x, mode="full")
    with pytest.raises(ValueError, match="its modes: prior, prior-hybrid"):
        pr.separate(x, mode="diffsep")
    with pytest.raises(ValueError, match="needs a vocoder"):
        sad.separate(x, mode="full")
    for sep in (ds, pr):
        with pytest.raises(ValueError, match="streaming serves Separate-And-Diffuse bundles only"):
            sep.stream()
        with pytest.raises(ValueError):
            sep._check_mode("backbone")
        assert sep.backbone is None and sep.vocoder is None  # SaD's parts, absent
        # what `fastsep bench` calls: every offered mode runs through _run
        for mode in sep.modes[:1]:
            sep._check_mode(mode)
            assert sep._run(x, mode, [0]).shape == (1, 2, x.shape[-1])
    with pytest.raises(ValueError, match="either a method or backbone"):
        Separator(ConvTasNet.small(2, SR), method=ds.method)


# ---------------------------------------------------------------------------------------------------- files, CLI
def test_separate_files_and_cli_for_other_methods(diffsep_bundle, priors_bundle, tmp_path, capsys):
    for k in range(2):
        write_wav(tmp_path / "in" / f"m{k}.wav", mixture(1, n=1000, seed=k)[0].numpy())
    sep = load(priors_bundle)
    result = sep.separate_files([tmp_path / "in" / "m0.wav", tmp_path / "in" / "m1.wav"], tmp_path / "out_pr",
                                progress=False)
    assert result.ok and len(result.written) == 2
    record = json.loads((tmp_path / "out_pr" / "m0.fastsep.json").read_text())
    assert record["settings"]["mode"] == "prior" and record["settings"]["model"] == sep.fingerprint()
    for k in range(2):
        for s in (1, 2):
            with wavmod.open(str(tmp_path / "out_pr" / f"m{k}_s{s}.wav")) as w:
                assert w.getnframes() == 1000 and w.getframerate() == SR
    again = sep.separate_files([tmp_path / "in" / "m0.wav"], tmp_path / "out_pr", progress=False)
    assert again.skipped == [str(tmp_path / "in" / "m0.wav")]  # resumable like any other bundle

    rc = cli.main(["separate", str(tmp_path / "in"), "-o", str(tmp_path / "out_ds"), "--model", diffsep_bundle,
                   "--mode", "diffsep", "--no-progress", "--seed", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "diffsep mode diffsep, sampling seed 2" in captured.err
    assert sorted(os.listdir(tmp_path / "out_ds")) == ["m0.fastsep.json", "m0_s1.wav", "m0_s2.wav",
                                                       "m1.fastsep.json", "m1_s1.wav", "m1_s2.wav"]
    # no --mode: the bundle's own default
    rc = cli.main(["separate", str(tmp_path / "in" / "m0.wav"), "-o", str(tmp_path / "out_def"), "--model",
                   diffsep_bundle, "--no-progress"])
    assert rc == 0 and os.path.isfile(tmp_path / "out_def" / "m0_s2.wav")
    capsys.readouterr()
    # a mode the bundle lacks: one line naming those it has, nothing written
    rc = cli.main(["separate", str(tmp_path / "in"), "-o", str(tmp_path / "out_bad"), "--model", diffsep_bundle,
                   "--mode", "full"])
    err = capsys.readouterr().err
    assert rc == 2 and "its modes: diffsep" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "out_bad")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Three 0.25 s two-talker mixtures in the wsj0-mix layout, from the bundled talkers."""
    from fastsep.commands.demo import make_mixture

    root = tmp_path_factory.mktemp("wsj")
    _, sources = make_mixture(SR)
    seg = SR // 4
    for k in range(3):
        s1, s2 = (s[k * seg:(k + 1) * seg].numpy() for s in sources)
        write_wav(root / "tt" / "s1" / f"m{k}.wav", s1)
        write_wav(root / "tt" / "s2" / f"m{k}.wav", s2)
        write_wav(root / "tt" / "mix" / f"m{k}.wav", s1 + s2)
    return str(root)


def test_eval_with_two_bundles_writes_one_table_json_and_csv(sad_bundle, diffsep_bundle, tiny_set, tmp_path,
                                                             capsys):
    out_json, out_csv = tmp_path / "eval.json", tmp_path / "eval.csv"
    rc = cli.main(["eval", "--data", tiny_set, "--model", sad_bundle, diffsep_bundle, "--metrics", "si_sdr",
                   "--json", str(out_json), "--csv", str(out_csv), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    sad_name, ds_name = os.path.basename(sad_bundle), os.path.basename(diffsep_bundle)
    assert f"{sad_name}: B (backbone alone)" in text and f"{ds_name}: DiffSep" in text
    assert f"{ds_name}:diffsep - {sad_name}:backbone" in text  # DiffSep against the supervised backbone, paired

    data = json.loads(out_json.read_text())
    rows = {f"{sad_name}:backbone": ("separate_and_diffuse", "backbone", sad_name),
            f"{ds_name}:diffsep": ("diffsep", "diffsep", ds_name)}
    assert set(data["results"]) == set(rows)
    for key, (method, mode, name) in rows.items():
        res = data["results"][key]
        assert (res["method"], res["mode"], res["bundle"]) == (method, mode, name)
        assert res["n"] == 3 and isinstance(res["si_sdri"], float)
    assert [b["name"] for b in data["bundles"]] == [sad_name, ds_name]
    assert data["metrics"] == ["si_sdri", "si_sdr"]

    with open(out_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["item", "id", "mode", "si_sdri", "si_sdr", "method", "bundle"]
    assert len(table) == 3 * 2
    for key, (method, mode, name) in rows.items():
        mine = [r for r in table if r["bundle"] == name]
        assert len(mine) == 3 and all(r["method"] == method and r["mode"] == mode for r in mine)
        # the JSON summary is the mean of the CSV's column
        assert data["results"][key]["si_sdri"] == pytest.approx(np.mean([float(r["si_sdri"]) for r in mine]),
                                                                abs=1e-4)
    # the paired difference is per mixture
    pair = data["paired"][f"{ds_name}:diffsep-{sad_name}:backbone"]["si_sdri"]
    by = {(r["bundle"], r["item"]): float(r["si_sdri"]) for r in table}
    diffs = [by[(ds_name, str(i))] - by[(sad_name, str(i))] for i in range(3)]
    assert pair["mean"] == pytest.approx(np.mean(diffs), abs=1e-4) and pair["n"] == 3


def test_eval_mode_selection_errors(sad_bundle, diffsep_bundle, tiny_set, tmp_path, capsys):
    rc = cli.main(["eval", "--data", tiny_set, "--model", sad_bundle, "--model", diffsep_bundle, "--modes", "full",
                   "--json", str(tmp_path / "e.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "no bundle offers full" in err and "diffsep" in err
    rc = cli.main(["eval", "--data", tiny_set, "--model", sad_bundle, "--model", diffsep_bundle, "--modes",
                   "backbone", "--json", str(tmp_path / "e.json"), "--no-progress"])
    assert rc == 2 and "leaves nothing to score in bundle" in capsys.readouterr().err


def test_bundle_commands_write_servable_bundles(tmp_path, capsys):
    save_model(tiny_score_net(), str(tmp_path / "ds_run" / "best"))
    rc = cli.main(["bundle", "diffsep", str(tmp_path / "ds_run"), "-o", str(tmp_path / "ds"), "--steps", "3"])
    assert rc == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "ds")
    assert manifest["method"] == "diffsep" and manifest["options"]["n_steps"] == 3
    assert isinstance(load_method(tmp_path / "ds"), DiffSepMethod)

    save_model(tiny_prior_net(), str(tmp_path / "speech" / "prior"))
    rc = cli.main(["bundle", "priors", str(tmp_path / "speech"), "-o", str(tmp_path / "enh"), "--noise-variance",
                   "0.01", "--step", "dsg", "--init-step", "5", "--start-step", "5", "--dsg-scale", "0.09"])
    assert rc == 0, capsys.readouterr().err
    options = read_manifest(tmp_path / "enh")["options"]
    # speech + white noise: enhancement, one track each
    assert options["tracks"] == [0, 1] and options["priors"][1] == {"gaussian": pytest.approx(0.01)}
    assert options["step"] == "dsg"
    assert options["solver"] == {"init_step": 5, "start_step": 5, "dsg_scale": pytest.approx(0.09)}
    sep = Separator.from_pretrained(tmp_path / "enh")
    assert sep.n_src == 2 and sep.method.step_of("prior") == "dsg"
    # the option reaches the solver: DSG's radius is linear in its scale
    solver = sep.method.solver
    unscaled = type(solver)(sep.method.priors, step="dsg", init_step=5, start_step=5)
    torch.testing.assert_close(torch.as_tensor(solver.radius_per_sample),
                               0.09 * torch.as_tensor(unscaled.radius_per_sample))

    rc = cli.main(["bundle", "diffsep", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")])
    assert rc == 2 and "holds no trained model" in capsys.readouterr().err
