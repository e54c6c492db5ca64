"""The roofline of ``fastsep bench``: FLOP counters against hand counts, the report's structure and fractions, the
chart, and the modes ``fastsep bench`` enumerates."""
import json

import pytest
import torch
from torch import nn

from fastsep import roofline as rl
from fastsep.commands.bench import available_modes, bench, small_random_separator
from fastsep.models.combiner import Combiner
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.diffwave import DiffWave


# ------------------------------------------------------------------------------------------------- FLOP counters
def test_conv_and_linear_counts_match_hand_counts():
    conv = nn.Conv1d(3, 8, 5)  # [2, 3, 100] -> [2, 8, 96]: each output 3 x 5 multiply-adds
    assert rl.conv_flops(conv, (2, 3, 100), (2, 8, 96)) == 2 * (2 * 8 * 96) * 3 * 5
    depthwise = nn.Conv1d(6, 6, 3, groups=6, padding=1)
    assert rl.conv_flops(depthwise, (1, 6, 10), (1, 6, 10)) == 2 * 60 * 1 * 3
    transposed = nn.ConvTranspose1d(4, 1, 16, stride=8)  # each input element feeds 1 x 16 outputs
    assert rl.conv_flops(transposed, (1, 4, 10), (1, 1, 88)) == 2 * 40 * 16
    assert rl.linear_flops(nn.Linear(7, 3), (2, 5, 7)) == 2 * 10 * 7 * 3
    lstm = nn.LSTM(5, 7, batch_first=True, bidirectional=True)  # 4 gates x 7 x (5 inputs + 7 recurrent)
    assert rl.rnn_flops(lstm, (2, 10, 5)) == 2 * 2 * 20 * 4 * 7 * (5 + 7)


def test_layer_counter_sums_the_layers_of_a_small_model():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8, 5))
    x = torch.randn(3, 2, 10)  # conv: [3, 4, 8], 2 x 3 multiply-adds each; linear: 3 rows of 32 x 5
    assert rl.layer_flops(model, x) == 2 * (3 * 4 * 8 * 2 * 3) + 2 * (3 * 32 * 5)


def test_transformer_layer_is_counted_once_whole():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    x = torch.randn(3, 5, 8)  # 15 tokens of width 8, sequences of 5, feed-forward 16
    hand = 2 * 15 * 8 * 24 + 2 * 15 * 8 * 8 + 2 * 2 * 3 * 5 * 5 * 8 + 2 * 2 * 15 * 8 * 16
    assert rl.layer_flops(layer, x) == hand


def test_convtasnet_closed_form_matches_hand_count_and_hooks():
    model = ConvTasNet(2, 8000, n_filters=4, kernel_size=4, bn_chan=3, hid_chan=5, skip_chan=2, conv_kernel_size=3,
                       n_blocks=2, n_repeats=1, stride=2).eval()
    # 10 samples -> 4 frames. Per frame: encoder 4x4, bottleneck 4x3, two blocks of 3x5 + 5x3 (depthwise) + 5x2
    # (skip), one residual 5x3, mask head 2x(2x4), decoder 2 sources x 4 x 4.
    per_frame = 16 + 12 + 2 * (15 + 15 + 10) + 15 + 16 + 32
    assert rl.convtasnet_flops(model, 1, 10) == 2 * 4 * per_frame
    assert rl.layer_flops(model, torch.randn(1, 10)) == 2 * 4 * per_frame
    # any length and batch: the closed form equals what the layers see
    assert rl.convtasnet_flops(model, 3, 123) == rl.layer_flops(model, torch.randn(3, 123))
    assert rl.model_flops(model, "backbone", 3, 123) == rl.convtasnet_flops(model, 3, 123)


def test_diffwave_closed_form_matches_hand_count_and_hooks():
    model = DiffWave(residual_layers=2, residual_channels=4, dilation_cycle_length=2, n_mels=3, sample_rate=8000,
                     hop_length=4).eval()
    # One network pass over 8 samples (2 mel frames): input projection 1->4; per layer dilated conv 4->8 (3 taps),
    # conditioner 3->8, output 4->8; skip 4->4, output 4->1; step embedding 128->512->512 and 512->4 per layer;
    # upsampler (strides 2, 2): 3 mels x 2 frames x kernel 3x4, then 3 x 4 x kernel 3x4.
    per_sample = 4 + 2 * (8 * 4 * 3 + 8 * 3 + 8 * 4) + 4 * 4 + 4
    embedding = 128 * 512 + 512 * 512 + 2 * 512 * 4
    upsampler = 3 * 2 * 12 + 3 * 4 * 12
    hand = 2 * (8 * per_sample + embedding + upsampler)
    assert rl.diffwave_flops(model, 1, 8, steps=1) == hand
    mel = torch.rand(1, 3, 2)
    assert rl.layer_flops(model, torch.randn(1, 8), torch.tensor([1]), mel) == hand
    # the sampler projects the conditioner once per call, not once per step
    per_step_cond = rl.diffwave_flops(model, 2, 16, steps=6, conditioner_per_step=True)
    once = rl.diffwave_flops(model, 2, 16, steps=6)
    assert per_step_cond - once == 2 * 2 * 5 * (2 * 8 * 3 * 16)


def test_combiner_closed_form_matches_hand_count_and_hooks():
    comb = Combiner(n_fft=8, hop_length=4, hidden=(2, 3)).eval()
    # per bin and head: 3x3 convs 2->2, 2->3, 3->2 and the 1x1 skip 2->3; 16 samples -> 5 bins x 5 frames
    per_bin = 2 * (2 * 2 * 9 + 2 * 3 * 9 + 3 * 2 * 9 + 2 * 3)
    items = 2
    assert rl.combiner_flops(comb, items, 16) == 2 * items * 25 * per_bin
    vd, vg = torch.randn(1, items, 16), torch.randn(1, items, 16)
    assert rl.layer_flops(comb, call=lambda: comb(vd, vg)) == 2 * items * 25 * per_bin


def test_bf16_support_is_read_from_cpu_flags():
    assert rl.cpu_bf16_support({"avx2", "avx512_bf16"})[0]
    assert rl.cpu_bf16_support({"amx_bf16"})[0]
    supported, why = rl.cpu_bf16_support({"avx2", "fma"})
    assert not supported and "no" in why


# ------------------------------------------------------------------------------------------------------ the report
@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    sep = small_random_separator()
    ceilings = rl.machine_ceilings(gemm_n=384, copy_bytes=4 << 20, repeats=2)
    return rl.roofline(sep, seconds=0.5, batch=2, repeats=1, ceilings=ceilings, overlap_add_seconds=16.0)


def test_roofline_report_has_every_stage_with_fractions_in_range(report):
    assert [r["stage"] for r in report["stages"]] == list(rl.STAGES)
    assert sum(r["share"] for r in report["stages"]) == pytest.approx(1.0)
    assert report["total_s"] == pytest.approx(sum(r["seconds"] for r in report["stages"]))
    kinds = {r["stage"]: r["kind"] for r in report["stages"]}
    assert {s for s, k in kinds.items() if k == "flops"} == {"backbone", "vocoder", "F"}
    for r in report["stages"]:
        assert r["seconds"] > 0 and r["work"] > 0 and r["rate"] == pytest.approx(r["work"] / r["seconds"])
        # no upper bound: the yardstick is itself a timing, and a small GEMM timed on a loaded machine can come out
        # slower than a stage (a timing assertion would make this test flaky)
        assert r["fraction"] > 0, r
        assert r["fraction"] == pytest.approx(r["rate"] / r["ceiling"])
    machine = report["machine"]
    assert machine["gemm_float32"]["flops_per_s"] > 0 and machine["copy"]["bytes_per_s"] > 0
    assert (machine["gemm_bfloat16"] is None) == (not rl.cpu_bf16_support()[0])
    assert report["end_to_end_s"] > 0 and report["mode"] == "full"
    for r in report["stages"]:  # every stage of this separator is counted: its floor is work at the yardstick
        assert r["floor_s"] == pytest.approx(min(r["seconds"], r["work"] / r["ceiling"]))
    assert report["floor_s"] == pytest.approx(sum(r["floor_s"] for r in report["stages"]))
    assert 0 < report["floor_s"] <= report["total_s"]
    assert report["floor_rtf"] == pytest.approx(report["floor_s"] / (0.5 * 2))
    json.dumps(report)  # JSON-able as it is


def test_roof_floor_keeps_uncounted_stages_and_never_exceeds_the_measured_time():
    rows = [{"seconds": 2.0, "work": 100, "ceiling": 200.0},    # half a second at the roof
            {"seconds": 0.3, "work": None, "ceiling": None},     # not counted: as measured
            {"seconds": 0.1, "work": 100, "ceiling": 500.0}]     # measured faster than its yardstick: measured
    assert rl.roof_floor(rows) == pytest.approx(0.5 + 0.3 + 0.1)
    assert [r["floor_s"] for r in rows] == pytest.approx([0.5, 0.3, 0.1])


def test_roofline_chart_is_written(report, tmp_path):
    pytest.importorskip("matplotlib")
    from fastsep.plots import roofline_figure, save_figure

    path = tmp_path / "roofline.png"
    save_figure(roofline_figure(report), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vocoder" in rl.format_roofline(report)


def test_bench_command_writes_roofline_json_and_chart(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastsep import cli

    torch.manual_seed(0)
    bundle = tmp_path / "bundle"
    small_random_separator().save_pretrained(bundle)
    out, png = tmp_path / "bench.json", tmp_path / "roofline.png"
    assert cli.main(["bench", "--model", str(bundle), "--lengths", "0.25", "--batch-sizes", "1", "--repeats", "1",
                     "--json", str(out), "--plot", str(png)]) == 0
    data = json.loads(out.read_text())
    assert [r["stage"] for r in data["roofline"]["stages"]] == list(rl.STAGES)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "roofline" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------------------- modes
class _Listing:
    """A separator that lists its modes (as every method behind the serving interface does), around another."""

    def __init__(self, separator, modes):
        self._separator, self.modes = separator, modes

    def __getattr__(self, name):
        return getattr(self._separator, name)


def test_bench_times_the_modes_the_separator_lists():
    from fastsep.separator import Separator

    torch.manual_seed(0)
    sep = small_random_separator()
    # a Separate-And-Diffuse separator lists its three modes (its own order); bench times exactly those
    assert available_modes(sep) == list(sep.modes) and set(sep.modes) == {"backbone", "xcorr", "full"}
    rows = bench(_Listing(sep, ("backbone",)), [0.25], [1], repeats=1)
    assert {r["stage"] for r in rows if r["stage"].startswith("mode:")} == {"mode:backbone"}
    # full is listed but this separator has no vocoder or F: left out, not an error
    backbone_only = Separator(ConvTasNet.small(2, 8000), sample_rate=8000)
    assert available_modes(_Listing(backbone_only, ("backbone", "full"))) == ["backbone"]


def test_bench_falls_back_to_the_three_modes_for_a_separator_without_a_list():
    # A separator object from before the serving interface (no ``modes``) is timed in Separate-And-Diffuse's three
    # modes, less those it refuses.
    class Legacy:
        def _check_mode(self, mode):
            if mode == "full":
                raise ValueError("no combiner")

    assert available_modes(Legacy()) == [m for m in ("backbone", "xcorr", "full") if m != "full"]
