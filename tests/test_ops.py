"""The fused ops against their pure-PyTorch references, their contracts, autograd, compile and input checks."""
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsep import _ext, ops, reference
from conftest import require_compiled_kernels
from op_cases import devices, diffwave_inputs, float32_convolutions, spectra, weights

DEVICES = [pytest.param(d, marks=pytest.mark.cuda if d.type == "cuda" else ()) for d in devices()]
FAST = settings(max_examples=25, deadline=None)
shapes = st.tuples(
    st.lists(st.integers(1, 3), min_size=0, max_size=2),  # leading dims (batch, sources)
    st.integers(2, 40),  # F
    st.integers(0, 23),  # K, empty included
)


def test_extension_is_used_when_required():
    # CI builds the extension and sets FASTSEP_REQUIRE_EXTENSION=1, so the kernel path cannot silently fall back.
    if os.environ.get("FASTSEP_REQUIRE_EXTENSION") != "1":
        pytest.skip("FASTSEP_REQUIRE_EXTENSION is not set (running on the references is allowed here)")
    assert _ext.available(), "the compiled fastsep extension did not load"
    assert ops.uses_kernels("cpu")


# ---------------------------------------------------------------------------------------------- complex_combine
@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_complex_combine_matches_reference(device, shape, seed):
    lead, n_freq, frames = shape
    g = torch.Generator(device=device).manual_seed(seed)
    vd, vg = spectra(lead, n_freq, frames, device=device, generator=g)
    mag, phase = weights(lead, n_freq, frames, device=device, generator=g)
    got = ops.complex_combine(vd, vg, mag, phase)
    want = reference.complex_combine(vd, vg, mag, phase)
    assert got.shape == want.shape and got.dtype == torch.complex64
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5)


def test_complex_combine_formula_by_hand():
    vd = torch.tensor([[1 + 2j]], dtype=torch.complex64)
    vg = torch.tensor([[-3 + 0.5j]], dtype=torch.complex64)
    mag = torch.tensor([[[2.0]], [[0.5]]])
    phase = torch.tensor([[[torch.pi / 2]], [[torch.pi]]])
    # 2·e^{-jπ/2}·(1+2j) = -2j·(1+2j) = 4 - 2j;  0.5·e^{-jπ}·(-3+0.5j) = 1.5 - 0.25j
    out = ops.complex_combine(vd, vg, mag, phase)
    torch.testing.assert_close(out, torch.tensor([[5.5 - 2.25j]], dtype=torch.complex64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_complex_combine_gradcheck_double(device):
    vd, vg = spectra((2,), 5, 4, dtype=torch.complex128, device=device)
    mag, phase = weights((2,), 5, 4, dtype=torch.float64, device=device)
    inputs = [t.requires_grad_() for t in (vd, vg, mag, phase)]
    assert torch.autograd.gradcheck(ops.complex_combine, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_complex_combine_backward_matches_reference_float(device):
    vd, vg = spectra((2, 3), 17, 9, device=device)
    mag, phase = weights((2, 3), 17, 9, device=device)
    grad = torch.randn_like(vd)
    leaves = [t.clone().requires_grad_() for t in (vd, vg, mag, phase)]
    got = torch.autograd.grad(ops.complex_combine(*leaves), leaves, grad)
    want = reference.complex_combine_backward(grad, vd, vg, mag, phase)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)


# --------------------------------------------------------------------------------------------- combine_features
@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_combine_features_matches_reference(device, shape, seed):
    lead, n_freq, frames = shape
    g = torch.Generator(device=device).manual_seed(seed)
    vd, vg = spectra(lead, n_freq, frames, device=device, generator=g)
    mag, phase = ops.combine_features(vd, vg)
    want_mag, want_phase = reference.combine_features(vd, vg)
    assert mag.shape == tuple(lead) + (2, n_freq, frames)
    torch.testing.assert_close(mag, want_mag, rtol=1e-6, atol=1e-6)
    # angles near ±π may land on either side: compare on the circle
    torch.testing.assert_close(torch.polar(torch.ones_like(phase), phase),
                               torch.polar(torch.ones_like(want_phase), want_phase), rtol=0, atol=1e-5)


def test_combine_features_by_hand():
    vd = torch.tensor([[3 + 4j]], dtype=torch.complex64)
    vg = torch.tensor([[0 + 2j]], dtype=torch.complex64)
    mag, phase = ops.combine_features(vd, vg)
    torch.testing.assert_close(mag[0, 0, 0], torch.tensor(5.0))
    torch.testing.assert_close(mag[1, 0, 0], torch.tensor(2.0))
    torch.testing.assert_close(phase[0, 0, 0], torch.atan2(torch.tensor(4.0), torch.tensor(3.0)))
    torch.testing.assert_close(phase[1, 0, 0], torch.pi / 2 - torch.atan2(torch.tensor(4.0), torch.tensor(3.0)))


# ------------------------------------------------------------------------------------------------- xcorr_align
def _frames_with_delay(lead, n_fft, frames, delays, device, dtype=torch.float32):
    """Frames x and the same frames circularly delayed by delays[k] samples; returns their one-sided spectra."""
    x = torch.randn(*lead, frames, n_fft, dtype=dtype, device=device)
    y = torch.stack([torch.roll(x[..., k, :], int(d), dims=-1) for k, d in enumerate(delays)], dim=-2)
    return torch.fft.rfft(x, dim=-1).transpose(-1, -2), torch.fft.rfft(y, dim=-1).transpose(-1, -2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_fft", [8, 64, 512])
def test_xcorr_align_recovers_circular_delay(device, n_fft):
    delays = [0, 1, -1, 3, n_fft // 2 - 1, -(n_fft // 2 - 1), 5 % (n_fft // 2), -2]
    vd, vg = _frames_with_delay((2,), n_fft, len(delays), delays, device)
    aligned, lag = ops.xcorr_align(vd, vg)
    assert lag.dtype == torch.int64 and lag.device == vd.device and lag.shape == (2, len(delays))
    assert lag.cpu().tolist() == [delays, delays]
    torch.testing.assert_close(aligned, vd, rtol=0, atol=2e-4 * vd.abs().max().item())


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(lead=st.lists(st.integers(1, 3), max_size=2), log_n=st.integers(2, 9), frames=st.integers(0, 19),
       seed=st.integers(0, 2**16))
def test_xcorr_align_matches_reference(device, lead, log_n, frames, seed):
    n_fft = 2**log_n
    g = torch.Generator(device=device).manual_seed(seed)
    vd, vg = spectra(lead, n_fft // 2 + 1, frames, device=device, generator=g)
    aligned, lag = ops.xcorr_align(vd, vg)
    want_aligned, want_lag = reference.xcorr_align(vd, vg)
    assert aligned.shape == vd.shape and lag.shape == vd.shape[:-2] + vd.shape[-1:]
    if vd.numel() == 0:
        return
    # A near-tie of two correlation peaks may break differently under different float rounding: check the lags
    # only where the reference's best peak beats its runner-up clearly, and the alignment wherever the lags agree.
    r = torch.fft.irfft(vd * vg.conj(), n=n_fft, dim=-2)
    top2 = r.topk(2, dim=-2).values if n_fft >= 2 else r
    clear = (top2[..., 0, :] - top2[..., 1, :]) > 1e-3 * r.abs().amax(dim=-2).clamp_min(1e-12)
    assert torch.equal(lag[clear], want_lag[clear])
    same = (lag == want_lag).unsqueeze(-2).expand_as(aligned)
    torch.testing.assert_close(aligned[same], want_aligned[same], rtol=1e-5, atol=1e-4)


def test_xcorr_align_odd_n_fft_recovers_circular_delay():
    # Odd frame lengths take the reference path (the kernels' FFT is radix 2) in every build: checked against known
    # delays rather than against the reference itself, which would be the same function.
    delays = [0, 3, -5, 8, -8]
    vd, vg = _frames_with_delay((2,), 17, len(delays), delays, "cpu")
    assert vd.shape[-2] == 9
    aligned, lag = ops.xcorr_align(vd, vg, n_fft=17)
    assert lag.tolist() == [delays, delays]
    torch.testing.assert_close(aligned, vd, rtol=0, atol=2e-4 * vd.abs().max().item())


def test_xcorr_align_double():
    vd, vg = _frames_with_delay((1,), 64, 3, [4, -9, 0], "cpu", dtype=torch.float64)
    aligned, lag = ops.xcorr_align(vd, vg)
    assert lag.tolist() == [[4, -9, 0]] and aligned.dtype == torch.complex128
    torch.testing.assert_close(aligned, vd, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------------- DiffWave
@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(batch=st.integers(1, 3), channels=st.integers(1, 9), length=st.integers(1, 70), layers=st.integers(1, 4),
       conditioned=st.booleans(), seed=st.integers(0, 2**16))
def test_diffwave_stack_matches_reference(device, batch, channels, length, layers, conditioned, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    args = diffwave_inputs(batch, channels, length, layers, conditioned, device=device, generator=g)
    dilations = [2 ** (i % 4) for i in range(layers)]
    with torch.no_grad(), float32_convolutions():
        got = ops.diffwave_stack(*args, dilations)
        want = reference.diffwave_stack(*args, dilations)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [3, 8, 64])  # 3: the CPU's unblocked path; 8, 64: its register-blocked kernel
@pytest.mark.parametrize("length", [1, 47, 48, 49, 301])  # around the CPU kernel's 48-sample block (AVX-512)
@pytest.mark.parametrize("conditioned", [True, False])
def test_diffwave_stack_block_edges(device, channels, length, conditioned):
    # Dilations up to 512 (a 64x30 model's), most of them longer than the signal: taps past either end read zeros.
    dilations = [1, 2, 512, 64, 7]
    g = torch.Generator(device=device).manual_seed(channels * 1000 + length)
    args = diffwave_inputs(2, channels, length, len(dilations), conditioned, device=device, generator=g)
    with torch.no_grad(), float32_convolutions():
        got = ops.diffwave_stack(*args, dilations)
        want = reference.diffwave_stack(*args, dilations)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _check_stack_and_layer(args, dilations, conditioned):
    """The op's stack and its single layer (dilation 5, x_next and skip) against the reference on ``args``."""
    with torch.no_grad():
        got = ops.diffwave_stack(*args, dilations)
        want = reference.diffwave_stack(*args, dilations)
        layer_args = (args[0], args[1][0], args[2][0] if conditioned else None, args[3][0], args[4][0], args[5][0],
                      args[6][0], 5)
        got_layer = ops.diffwave_layer(*layer_args)
        want_layer = reference.diffwave_layer(*layer_args)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for a, b in zip(got_layer, want_layer):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("tile", ["48", "96", "200", "0"])  # 0: tiling off (the whole signal, layer by layer)
@pytest.mark.parametrize("channels", [8, 64])
@pytest.mark.parametrize("conditioned", [True, False])
def test_diffwave_stack_time_tiles(monkeypatch, tile, channels, conditioned):
    # The CPU kernel takes long signals through all layers a time tile at a time, each layer's outputs computed on the
    # tile widened by the later layers' dilations. FASTSEP_DIFFWAVE_TILE forces the tile length: tiles shorter than
    # the widening (sum of dilations 1+2+4+8+16+33 = 64 each side) and than the kernel's 48-sample block, a signal
    # that does not divide into tiles, taps past both ends of the signal. The tiles must join without a seam.
    require_compiled_kernels("cpu", "the time tiles are the compiled CPU kernel's")
    monkeypatch.setenv("FASTSEP_DIFFWAVE_TILE", tile)
    dilations = [1, 2, 4, 8, 16, 33]
    g = torch.Generator().manual_seed(channels + 7 * int(tile))
    args = diffwave_inputs(2, channels, 531, len(dilations), conditioned, generator=g)
    _check_stack_and_layer(args, dilations, conditioned)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("chunk", ["1", "48", "100", "5000", ""])  # "": the driver's own choice (by the L2's size)
@pytest.mark.parametrize("batch,length,threads", [(1, 2531, 2), (2, 1531, 1), (3, 700, 2), (1, 40000, 1)])
@pytest.mark.parametrize("conditioned", [True, False])
def test_diffwave_stack_wavefront(monkeypatch, chunk, batch, length, threads, conditioned):
    # The float32 CPU stack runs long signals as a wavefront: layer l on the next chunk of samples as soon as layer
    # l - 1 has produced its inputs, one buffer per layer's input, x and the skips in place; an item is cut into
    # segments (edges computed with their receptive field) when threads outnumber the items. FASTSEP_DIFFWAVE_WAVE
    # forces the chunk (rounded to whole blocks): chunks shorter than a block and than the dilations, one chunk for
    # the whole signal, one and two threads, segments whose edges reach past both ends of the signal, a signal longer
    # than the longest segment (32768 samples), and the x_next of diffwave_layer. The wavefront must give the
    # reference's result.
    require_compiled_kernels("cpu", "the wavefront is the compiled CPU kernel's")
    monkeypatch.setenv("FASTSEP_DIFFWAVE_WAVE", chunk)
    monkeypatch.delenv("FASTSEP_DIFFWAVE_TILE", raising=False)
    torch.set_num_threads(threads)  # conftest restores the count
    dilations = [1, 2, 4, 8, 16, 33, 3]
    channels = 32 if conditioned else 8
    g = torch.Generator().manual_seed(batch * 100 + length)
    args = diffwave_inputs(batch, channels, length, len(dilations), conditioned, generator=g)
    _check_stack_and_layer(args, dilations, conditioned)


@pytest.mark.kernel_vs_reference
def test_diffwave_stack_wavefront_beyond_the_kept_buffer(monkeypatch):
    # A thread keeps its wavefront buffer between calls up to 64 MiB; a segment that needs more (here 10 buffers of
    # 64 x ~32300 floats, ~83 MB) gets one made for the call. Both must give the reference's result, one after the
    # other on the same thread. The chunk is forced: on a core with 1 MiB of L2 or more the driver picks the tiles.
    require_compiled_kernels("cpu", "the wavefront is the compiled CPU kernel's")
    monkeypatch.setenv("FASTSEP_DIFFWAVE_WAVE", "256")
    monkeypatch.delenv("FASTSEP_DIFFWAVE_TILE", raising=False)
    torch.set_num_threads(1)  # conftest restores the count
    dilations = [1, 2, 4, 8, 16, 32, 1, 2]
    g = torch.Generator().manual_seed(11)
    for channels, length in ((64, 32000), (8, 3000)):
        args = diffwave_inputs(1, channels, length, len(dilations), False, generator=g)
        _check_stack_and_layer(args, dilations, False)


def _needs_bf16():
    if not _ext.diffwave_bf16_available():
        pytest.skip("no bfloat16 DiffWave kernel here (needs the extension and a CPU with AVX512-BF16)")


def _assert_bf16_close(got, want):
    # The kernel rounds exactly what reference.diffwave_stack_bf16 rounds, so nearly every output matches it to
    # float32 summation order; where a sum lands next to a bfloat16 rounding boundary the two round apart and the
    # difference carries through the later layers (a few such outputs per case, ~1e-3).
    err = (got - want).abs()
    assert err.median() <= 1e-5 and err.max() <= 1e-2


def _bf16_setting(monkeypatch, isa, tile):
    # The bfloat16 product unit ("" widest: AMX where present; "avx512bf16" forces vdpbf16ps; read per call) and the
    # time tiles ("" automatic, "0" none, else forced samples).
    monkeypatch.setenv("FASTSEP_CPU_ISA", isa)
    monkeypatch.setenv("FASTSEP_DIFFWAVE_TILE", tile)
    if isa:
        assert _ext.diffwave_bf16_variant() == "avx512bf16"


def _check_bf16_stack(channels, length, conditioned, dilations=(1, 2, 512, 64, 7)):
    dilations = list(dilations)
    g = torch.Generator().manual_seed(channels * 1000 + length)
    args = diffwave_inputs(2, channels, length, len(dilations), conditioned, generator=g)
    with torch.no_grad():
        got = ops.diffwave_stack(*args, dilations, precision="bfloat16")
        want = reference.diffwave_stack_bf16(*args, dilations)
        exact = reference.diffwave_stack(*args, dilations)
    _assert_bf16_close(got, want)
    assert (want - exact).abs().max() > 1e-4  # the rounding is real: float32 results would fail the median check


# 32 and 64 channels take the AMX tiles where the CPU has them (multiples of 32), 4 and 8 the vdpbf16ps path.
@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("channels", [4, 8, 32, 64])
@pytest.mark.parametrize("length", [1, 47, 48, 49, 301])
@pytest.mark.parametrize("conditioned", [True, False])
def test_diffwave_stack_bf16_matches_its_reference(channels, length, conditioned):
    _needs_bf16()
    _check_bf16_stack(channels, length, conditioned)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("isa", ["", "avx512bf16"])
def test_diffwave_stack_bf16_gate_saturates_like_the_reference(monkeypatch, isa):
    # The bfloat16 stack's own gate (a shorter exp, a reciprocal instead of a division) clamps its arguments as the
    # float32 gate does: with weights 60x larger most gate and filter sums lie far past +-40 and +-15, where sigmoid
    # and tanh are 0 or 1 and nothing may overflow to inf or nan.
    _needs_bf16()
    _bf16_setting(monkeypatch, isa, "")
    dilations = [1, 2, 4]
    g = torch.Generator().manual_seed(11)
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 32, 301, len(dilations), True, generator=g)
    args = (x, dstep, cond * 60, w_dil * 60, b_dil, w_out, b_out)
    with torch.no_grad():
        pre = torch.nn.functional.conv1d(x + dstep[0].unsqueeze(-1), w_dil[0] * 60, padding=1) + cond[0] * 60
        assert (pre.abs() > 40).float().mean() > 0.3  # the case is the saturated one
        got = ops.diffwave_stack(*args, dilations, precision="bfloat16")
        want = reference.diffwave_stack_bf16(*args, dilations)
    assert torch.isfinite(got).all()
    _assert_bf16_close(got, want)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("isa", ["", "avx512bf16"])
@pytest.mark.parametrize("tile", ["40", "96", "0"])
@pytest.mark.parametrize("channels", [8, 32])
def test_diffwave_stack_bf16_time_tiles_and_variants(monkeypatch, isa, tile, channels):
    # Time tiles shorter than the receptive field (sum of dilations 80), than the 48-sample block, and none; with the
    # widest products (AMX where present) and with vdpbf16ps forced (the bfloat16 variant is read per call).
    _needs_bf16()
    _bf16_setting(monkeypatch, isa, tile)
    for conditioned in (True, False):
        _check_bf16_stack(channels, 301, conditioned, dilations=(1, 2, 4, 64, 9))


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("channels", [8, 32])
def test_diffwave_stack_bf16_takes_a_bfloat16_conditioner(monkeypatch, channels):
    # A bfloat16 cond is what the kernel adds (widened exactly); float32 cond and the float32 stack refuse nothing
    # they did before, and the float32 stack refuses a bfloat16 cond (it would silently round the input).
    _needs_bf16()
    dilations = [1, 2, 64, 9]
    g = torch.Generator().manual_seed(channels)
    x, dstep, cond, *rest = diffwave_inputs(2, channels, 301, len(dilations), generator=g)
    cond16 = cond.to(torch.bfloat16)
    for tile in ("", "96"):
        monkeypatch.setenv("FASTSEP_DIFFWAVE_TILE", tile)
        with torch.no_grad():
            got = ops.diffwave_stack(x, dstep, cond16, *rest, dilations, precision="bfloat16")
            want = reference.diffwave_stack_bf16(x, dstep, cond16.float(), *rest, dilations)
            unrounded = reference.diffwave_stack_bf16(x, dstep, cond, *rest, dilations)
        _assert_bf16_close(got, want)
        assert (want - unrounded).abs().median() > 1e-5  # the conditioner's rounding shows: it was read as given
    with pytest.raises(ValueError, match="cond"), torch.no_grad():
        ops.diffwave_stack(x, dstep, cond16, *rest, dilations)
    with pytest.raises(RuntimeError, match="cond"), torch.no_grad():
        torch.ops.fastsep.diffwave_stack(x, dstep, cond16, *rest, dilations)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("isa", ["", "avx512bf16"])
@pytest.mark.parametrize("tile", ["", "96", "0"])
@pytest.mark.parametrize("channels", [8, 32])
def test_diffwave_stack_bf16_computes_the_conditioner_from_the_mel(monkeypatch, isa, tile, channels):
    # (mel, w_cond) instead of cond: the kernel's conditioner is w_cond[l] @ mel with bfloat16 products, whatever
    # the tiles and the product unit; 40 mel channels pad to 64 on AMX (zeros past 40 must not leak in).
    _needs_bf16()
    _bf16_setting(monkeypatch, isa, tile)
    dilations = [1, 2, 64, 9]
    g = torch.Generator().manual_seed(channels + 7)
    x, dstep, _, w_dil, b_dil, w_out, b_out = diffwave_inputs(2, channels, 2001, len(dilations), generator=g)
    mel = torch.randn(2, 40, 2001, generator=g)
    w_cond = torch.randn(len(dilations), 2 * channels, 40, generator=g) * 0.2
    args = (x, dstep, None, w_dil, b_dil, w_out, b_out, dilations)
    with torch.no_grad():
        got = ops.diffwave_stack(*args, precision="bfloat16", mel=mel, w_cond=w_cond)
        want = reference.diffwave_stack_bf16(*args, mel=mel, w_cond=w_cond)
        given = ops.diffwave_stack(x, dstep, reference.bf16_conditioner(mel, w_cond), *args[3:],
                                   precision="bfloat16")
    _assert_bf16_close(got, want)
    assert (got - given).abs().median() <= 1e-5  # the same as handing the kernel that conditioner


def test_diffwave_stack_mel_input_checks():
    dilations = [1, 2]
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 8, 50, 2)
    mel, w_cond = torch.randn(1, 40, 50), torch.randn(2, 16, 40)
    rest = (w_dil, b_dil, w_out, b_out, dilations)
    with torch.no_grad():
        with pytest.raises(ValueError, match="precision='bfloat16'"):
            ops.diffwave_stack(x, dstep, None, *rest, mel=mel, w_cond=w_cond)
        with pytest.raises(ValueError, match="come together"):
            ops.diffwave_stack(x, dstep, None, *rest, precision="bfloat16", mel=mel)
        with pytest.raises(ValueError, match="not both"):
            ops.diffwave_stack(x, dstep, cond, *rest, precision="bfloat16", mel=mel, w_cond=w_cond)
        with pytest.raises(ValueError, match="mel must be"):
            ops.diffwave_stack(x, dstep, None, *rest, precision="bfloat16", mel=mel[..., :49], w_cond=w_cond)
        with pytest.raises(ValueError, match="w_cond must be"):
            ops.diffwave_stack(x, dstep, None, *rest, precision="bfloat16", mel=mel, w_cond=w_cond[:, :8])
    if _ext.diffwave_bf16_available():  # the kernel's own checks, for direct callers
        with pytest.raises(RuntimeError, match="not both"):
            torch.ops.fastsep.diffwave_stack_bf16(x, dstep, cond, *rest, mel, w_cond)
        with pytest.raises(RuntimeError, match="w_cond must be"):
            torch.ops.fastsep.diffwave_stack_bf16(x, dstep, x.new_empty(0), *rest, mel, w_cond[:, :8].contiguous())


def test_diffwave_bf16_variant_is_reported():
    _needs_bf16()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    variant = _ext.diffwave_bf16_variant()
    assert variant in ("amx", "avx512bf16")
    if "amx_bf16" not in flags:
        assert variant == "avx512bf16"


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_diffwave_stack_saturated_gates(precision):
    # Pre-activations in the hundreds: the gate's exponentials saturate (the one-division form must not overflow to
    # a closed gate where sigmoid(g)·tanh(f) is -sigmoid(g)).
    if precision == "bfloat16":
        _needs_bf16()
    dilations = [1, 3]
    g = torch.Generator().manual_seed(5)
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 32, 200, 2, generator=g)
    cond = cond * 100.0  # the conditioner pushes every gate and filter far into saturation, both signs
    with torch.no_grad():
        got = ops.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, precision=precision)
        ref = reference.diffwave_stack_bf16 if precision == "bfloat16" else reference.diffwave_stack
        want = ref(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


def test_diffwave_stack_bf16_falls_back_to_float32_with_a_warning(monkeypatch):
    args = diffwave_inputs(1, 3, 20, 2)  # 3 channels: no bfloat16 kernel
    monkeypatch.setattr(ops, "_BF16_WARNED", False)
    with pytest.warns(UserWarning, match="computing in float32"), torch.no_grad():
        got = ops.diffwave_stack(*args, [1, 2], precision="bfloat16")
    torch.testing.assert_close(got, reference.diffwave_stack(*args, [1, 2]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        ops.diffwave_stack(*args, [1, 2], precision="float16")


_VARIANT_CHECK = """
import os
import torch
from fastsep import _ext, ops, reference
from op_cases import diffwave_inputs
assert ops.uses_kernels("cpu")
print(_ext.diffwave_cpu_variant())
dilations = [1, 2, 512, 64, 7]
for channels in (3, 8, 64):
    for length in (1, 11, 12, 13, 23, 24, 25, 301):
        for conditioned in (True, False):
            args = diffwave_inputs(2, channels, length, len(dilations), conditioned)
            with torch.no_grad():
                torch.testing.assert_close(ops.diffwave_stack(*args, dilations),
                                           reference.diffwave_stack(*args, dilations), rtol=1e-4, atol=1e-4)
os.environ["FASTSEP_DIFFWAVE_TILE"] = "40"  # time tiles, with this variant's block width
for conditioned in (True, False):
    args = diffwave_inputs(2, 8, 301, 4, conditioned)
    with torch.no_grad():
        torch.testing.assert_close(ops.diffwave_stack(*args, [1, 2, 4, 9]),
                                   reference.diffwave_stack(*args, [1, 2, 4, 9]), rtol=1e-4, atol=1e-4)
print("ok")
"""


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_diffwave_stack_narrower_cpu_variants(isa):
    # The CPU kernel picks its widest variant once per process; FASTSEP_CPU_ISA caps it, so each narrower variant
    # (block widths 24 and 12) is checked in its own process. On a CPU without the ISA the cap changes nothing.
    _needs_kernels()
    env = dict(os.environ, FASTSEP_CPU_ISA=isa, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _VARIANT_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    variant, result = done.stdout.split()
    assert result == "ok"
    assert variant == isa or (isa == "avx2" and variant == "baseline")  # the latter on a CPU without AVX2


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dilation", [1, 7, 200])
def test_diffwave_layer_matches_reference(device, dilation):
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(3, 16, 97, 1, device=device)
    args = (x, dstep[0], cond[0], w_dil[0], b_dil[0], w_out[0], b_out[0], dilation)
    with torch.no_grad():
        got = ops.diffwave_layer(*args)
        want = reference.diffwave_layer(*args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.kernel_vs_reference
def test_diffwave_layer_accepts_conv_shaped_output_weight():
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 4, 10, 1)
    with torch.no_grad():
        a = ops.diffwave_layer(x, dstep[0], cond[0], w_dil[0], b_dil[0], w_out[0].unsqueeze(-1), b_out[0], 2)
        b = reference.diffwave_layer(x, dstep[0], cond[0], w_dil[0], b_dil[0], w_out[0], b_out[0], 2)
    torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- opcheck and torch.compile
def _needs_kernels():
    require_compiled_kernels("cpu", "opcheck, compile and direct-call checks exercise the compiled operators")


def test_opcheck_all_ops():
    _needs_kernels()
    vd, vg = spectra((2,), 9, 5)
    mag, phase = weights((2,), 9, 5)
    torch.library.opcheck(torch.ops.fastsep.complex_combine.default, (vd, vg, mag, phase))
    torch.library.opcheck(torch.ops.fastsep.complex_combine.default,
                          (vd.requires_grad_(), vg, mag.requires_grad_(), phase.requires_grad_()))
    torch.library.opcheck(torch.ops.fastsep.complex_combine_backward.default, (torch.randn_like(vd), vd.detach(), vg,
                                                                               mag.detach(), phase.detach()))
    torch.library.opcheck(torch.ops.fastsep.combine_features.default, (vd.detach(), vg))
    wd, wg = spectra((2,), 17, 5)
    torch.library.opcheck(torch.ops.fastsep.xcorr_align.default, (wd, wg, 32))
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(2, 4, 12, 2)
    torch.library.opcheck(torch.ops.fastsep.diffwave_layer.default,
                          (x, dstep[0], cond[0], w_dil[0], b_dil[0], w_out[0], b_out[0], 2))
    torch.library.opcheck(torch.ops.fastsep.diffwave_stack.default,
                          (x, dstep, cond, w_dil, b_dil, w_out, b_out, [1, 2]))
    torch.library.opcheck(torch.ops.fastsep.diffwave_stack.default,
                          (x, dstep, x.new_empty(0), w_dil, b_dil, w_out, b_out, [1, 2]))
    if _ext.diffwave_bf16_available():
        torch.library.opcheck(torch.ops.fastsep.diffwave_stack_bf16.default,
                              (x, dstep, cond, w_dil, b_dil, w_out, b_out, [1, 2]))
        torch.library.opcheck(torch.ops.fastsep.diffwave_stack_bf16.default,
                              (x, dstep, x.new_empty(0), w_dil, b_dil, w_out, b_out, [1, 2],
                               torch.randn(x.shape[0], 5, x.shape[2]), torch.randn(2, 2 * x.shape[1], 5)))
    y = torch.randn(2, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.fastsep.prelu_residual.default, (y, torch.tensor([0.3]), torch.randn_like(y)))


# ------------------------------------------------------------------------------------------------- prelu_residual
@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "mixed"])
def test_prelu_residual_matches_reference(dtype, layout):
    _needs_kernels()
    g = torch.Generator().manual_seed(3)
    y = torch.randn(2, 16, 33, 70000 // (16 * 33) + 1, generator=g).to(dtype)  # > one parallel grain
    res = torch.randn(y.shape, generator=g).to(dtype)
    if layout != "contiguous":
        y = y.contiguous(memory_format=torch.channels_last)
    if layout == "channels_last":
        res = res.contiguous(memory_format=torch.channels_last)
    w = torch.tensor([0.2])
    with torch.no_grad():
        got = ops.prelu_residual(y, w, res)
        want = reference.prelu_residual(y, w, res)
    assert got.dtype == dtype and got.shape == y.shape
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)  # the layout the heads' convolutions want
    # float32: exact; bfloat16: ATen rounds PReLU's output before the add, the kernel only the sum (one bf16 step)
    tol = 0 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)
    if dtype == torch.bfloat16:  # and mostly bit-equal
        assert (got == want).float().mean() > 0.9


def test_prelu_residual_bad_input():
    y = torch.randn(2, 3, 4)
    w = torch.tensor([0.1])
    with pytest.raises(ValueError, match="residual must match"):
        ops.prelu_residual(y, w, y.bfloat16())
    with pytest.raises(ValueError, match="residual must have dtype"):
        ops.prelu_residual(y, w, y.double())
    with pytest.raises(ValueError, match="residual must match"):
        ops.prelu_residual(y, w, torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="one slope"):
        ops.prelu_residual(y, torch.tensor([0.1, 0.2]), y)
    with pytest.raises(ValueError, match="dtype"):
        ops.prelu_residual(y.long(), w, y.long())
    with pytest.raises(ValueError, match="no backward"):
        ops.prelu_residual(y.requires_grad_(), w, torch.randn(2, 3, 4))


def test_compile_fullgraph_over_ops():
    _needs_kernels()

    def pipeline(vd, vg, mag, phase):
        feats_mag, feats_phase = ops.combine_features(vd, vg)
        aligned, lag = ops.xcorr_align(vd, vg)
        out = ops.complex_combine(vd, aligned, mag * feats_mag.tanh(), phase + feats_phase)
        return out, lag

    vd, vg = spectra((2,), 33, 6)
    mag, phase = weights((2,), 33, 6)
    compiled = torch.compile(pipeline, fullgraph=True, backend="aot_eager")
    got, lag = compiled(vd, vg, mag, phase)
    want, want_lag = pipeline(vd, vg, mag, phase)
    torch.testing.assert_close(got, want)
    assert torch.equal(lag, want_lag)


# --------------------------------------------------------------------------------------------------- bad input
def test_bad_dtype_is_rejected_before_the_kernel():
    vd, vg = spectra((1,), 5, 3)
    mag, phase = weights((1,), 5, 3)
    with pytest.raises(ValueError, match="vd must have dtype complex64"):
        ops.complex_combine(vd.real, vg, mag, phase)
    with pytest.raises(ValueError, match="mag must have dtype float32"):
        ops.complex_combine(vd, vg, mag.double(), phase)
    with pytest.raises(ValueError, match="share a dtype"):
        ops.combine_features(vd, vg.to(torch.complex128))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        ops.xcorr_align(vd.numpy(), vg)
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 4, 8, 1)
    with pytest.raises(ValueError, match="x must have dtype float32"), torch.no_grad():
        ops.diffwave_stack(x.double(), dstep, cond, w_dil, b_dil, w_out, b_out, [1])


def test_mismatched_shapes_are_rejected():
    vd, vg = spectra((2,), 5, 3)
    mag, phase = weights((2,), 5, 3)
    with pytest.raises(ValueError, match="same shape"):
        ops.complex_combine(vd, vg[..., :2], mag, phase)
    with pytest.raises(ValueError, match=r"mag must have shape \(2, 2, 5, 3\)"):
        ops.complex_combine(vd, vg, mag[:, :1], phase)
    with pytest.raises(ValueError, match="n_fft must be"):
        ops.xcorr_align(vd, vg, n_fft=64)
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(2, 4, 8, 2)
    with torch.no_grad():
        with pytest.raises(ValueError, match="cond must have shape"):
            ops.diffwave_stack(x, dstep, cond[..., :7], w_dil, b_dil, w_out, b_out, [1, 2])
        with pytest.raises(ValueError, match="dstep must have shape"):
            ops.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, [1, 2, 4])
        with pytest.raises(ValueError, match="dilations"):
            ops.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, [1, 0])


def test_mixed_devices_are_rejected():
    vd, vg = spectra((1,), 5, 3)
    mag, phase = weights((1,), 5, 3)
    with pytest.raises(ValueError, match="one device"):
        ops.complex_combine(vd, vg, mag.to("meta"), phase)
    with pytest.raises(ValueError, match="one device"):
        ops.combine_features(vd, vg.to("meta"))


def test_diffwave_ops_refuse_autograd():
    x, dstep, cond, w_dil, b_dil, w_out, b_out = diffwave_inputs(1, 4, 8, 1)
    with pytest.raises(ValueError, match="no_grad"):
        ops.diffwave_stack(x, dstep, cond, w_dil.requires_grad_(), b_dil, w_out, b_out, [1])


@pytest.mark.kernel_vs_reference
def test_non_contiguous_inputs_give_correct_results():
    vd, vg = spectra((3,), 6, 5)
    mag, phase = weights((3,), 6, 5)
    t = lambda z: z.transpose(0, -1).contiguous().transpose(0, -1)  # noqa: E731 - same values, other strides
    assert not t(vd).is_contiguous()
    torch.testing.assert_close(ops.complex_combine(t(vd), t(vg), mag.transpose(-1, -2).contiguous().transpose(-1, -2),
                                                   phase), reference.complex_combine(vd, vg, mag, phase))


def test_direct_kernel_call_with_bad_input_raises_not_crashes():
    _needs_kernels()
    vd, vg = spectra((2,), 5, 3)
    mag, phase = weights((2,), 5, 3)
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.fastsep.complex_combine(vd.transpose(-1, -2), vg.transpose(-1, -2), mag, phase)
    with pytest.raises(RuntimeError, match="mag must"):
        torch.ops.fastsep.complex_combine(vd, vg, mag[:, :1], phase)
    with pytest.raises(RuntimeError, match="n_fft"):
        torch.ops.fastsep.xcorr_align(vd, vg, 7)


# ----------------------------------------------------------------------------------- the tests' own guard rails
def test_kernel_vs_reference_tests_never_pass_on_the_references():
    # With the extension switched off, a kernel-vs-reference test compares the reference with itself: it must be
    # reported as skipped (with its reason), and as a failure under FASTSEP_REQUIRE_EXTENSION=1, never as a pass.
    test = os.path.join(os.path.dirname(__file__), "test_ops.py") + "::test_diffwave_layer_accepts_conv_shaped_output_weight"
    base = {k: v for k, v in os.environ.items() if k != "FASTSEP_REQUIRE_EXTENSION"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test]
    done = subprocess.run(cmd, env=dict(base, FASTSEP_NO_EXTENSION="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 skipped" in done.stdout and "passed" not in done.stdout, done.stdout[-2000:]
    assert "compare the reference with itself" in done.stdout
    done = subprocess.run(cmd, env=dict(base, FASTSEP_NO_EXTENSION="1", FASTSEP_REQUIRE_EXTENSION="1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "passed" not in done.stdout, done.stdout[-2000:]


def test_cuda_limits_come_from_the_library():
    # The kernels' limits are stated once, in csrc/cuda/*.cu; Python reads them through fastsep::cuda_limit.
    _needs_kernels()
    if not _ext.has_cuda_kernels():
        assert _ext.cuda_limits() == {}
        with pytest.raises(RuntimeError, match="built without the CUDA kernels"):
            torch.ops.fastsep.cuda_limit("diffwave_max_channels")
        return
    limits = _ext.cuda_limits()
    assert set(limits) == set(_ext.CUDA_LIMIT_NAMES)
    # float32 pairs take half the shared memory of float64 ones, so twice the frame length fits.
    assert limits["xcorr_max_n_fft_float32"] == 2 * limits["xcorr_max_n_fft_float64"] >= 512
    with pytest.raises(RuntimeError, match="unknown limit"):
        torch.ops.fastsep.cuda_limit("no_such_limit")


@pytest.mark.cuda
def test_cuda_xcorr_beyond_the_kernel_limit_goes_to_the_reference():
    require_compiled_kernels("cuda")
    n_fft = 2 * _ext.cuda_limits()["xcorr_max_n_fft_float32"]
    delays = [0, 7, -300]
    vd, vg = _frames_with_delay((1,), n_fft, len(delays), delays, "cuda")
    aligned, lag = ops.xcorr_align(vd, vg)
    assert lag.cpu().tolist() == [delays]
    torch.testing.assert_close(aligned, vd, rtol=0, atol=2e-4 * vd.abs().max().item())
    with pytest.raises(RuntimeError, match="n_fft"):  # the kernel itself refuses it with the limit in the message
        torch.ops.fastsep.xcorr_align(vd.contiguous(), vg.contiguous(), n_fft)
