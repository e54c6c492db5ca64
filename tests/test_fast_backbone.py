"""The backbone's fast paths against what they replace: the fused Conv-TasNet block (fastsep.ops.tcn_block_) against
its reference and the module path, and the plain-PyTorch pieces (the decoder's overlap-add, gLN as an affine map,
gLN's written-out backward)."""
import pytest
import torch
from torch import nn

from conftest import require_compiled_kernels
from fastsep import ops, reference
from fastsep.models import ConvTasNet
from fastsep.models.blocks import Decoder, Encoder, GlobalLayerNorm
from fastsep.models.convtasnet import _TCNBlock

pytestmark = pytest.mark.usefixtures("one_thread")


def _needs_tcn_kernel():
    require_compiled_kernels("cpu", "compares the compiled tcn_block_ op with its reference", op="tcn_block_")


def _block_params(chan=6, hid=10, n_skip=5, k=3, residual=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return torch.randn(*shape, generator=g) * scale

    params = [r(hid, chan), r(hid), torch.tensor([0.2]), 1 + r(hid), r(hid), r(hid, k), r(hid), torch.tensor([-0.1]),
              1 + r(hid), r(hid)]
    rows = chan + n_skip if residual else n_skip  # [w_res; w_skip] stacked, or the skip conv alone
    return params, [r(rows, hid), r(rows)]


def _off_initial_values(model):
    # every norm and slope moved off its initial value, which would hide a mix-up
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GlobalLayerNorm):
                module.gamma.uniform_(0.5, 1.5)
                module.beta.normal_(0, 0.3)
            if isinstance(module, nn.PReLU):
                module.weight.uniform_(-0.3, 0.4)
    return model


def _state(batch, chan, n_skip, frames, seed=1):
    # a state with constants in offset as well, as the network hands it from block to block
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(batch, chan + n_skip, frames, generator=g) * 2 + 0.5
    offset = torch.randn(batch, chan + n_skip, generator=g)
    return state, offset


def _run(fn, state, offset, *args):
    state, offset = state.clone(), offset.clone()
    with torch.no_grad():
        fn(state, offset, *args)
    return state + offset[..., None]


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("batch,frames,k,dilation,residual", [
    (1, 300, 3, 1, True),
    (3, 257, 3, 16, True),
    (2, 40, 5, 8, False),   # the taps reach past both ends of most frames
    (1, 5, 3, 4, True),     # shorter than the reach: edges only
    (2, 1, 3, 1, True),     # one frame
    (2, 700, 3, 2, True),   # more frames than one block of the pass's sums
])
def test_tcn_block_matches_reference(batch, frames, k, dilation, residual):
    _needs_tcn_kernel()
    params, tail = _block_params(k=k, residual=residual)
    state, offset = _state(batch, 6, 5, frames)
    got = _run(ops.tcn_block_, state, offset, *params, *tail, dilation, 1e-8)
    want = _run(reference.tcn_block_, state, offset, *params, *tail, dilation, 1e-8)
    assert got.shape == want.shape == state.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    before = state + offset[..., None]
    # rows the block writes must have moved (a kernel that left them would pass the check above only if the reference
    # did too), and x's rows must be untouched where the block has no residual conv
    assert (got[:, 6:] - before[:, 6:]).abs().max() > 1e-2
    if residual:
        assert (got[:, :6] - before[:, :6]).abs().max() > 1e-2
    else:
        torch.testing.assert_close(got[:, :6], before[:, :6], rtol=1e-6, atol=1e-5)


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("batch", [4, 3])
def test_tcn_block_on_two_threads_matches_reference(batch):
    # batch 4 on 2 threads runs an item per thread (single-threaded GEMMs inside the parallel region), batch 3 one
    # item after the other with each GEMM and pass split across the threads
    _needs_tcn_kernel()
    torch.set_num_threads(2)  # conftest restores the count
    params, tail = _block_params()
    state, offset = _state(batch, 6, 5, 333)
    got = _run(ops.tcn_block_, state, offset, *params, *tail, 2, 1e-8)
    want = _run(reference.tcn_block_, state, offset, *params, *tail, 2, 1e-8)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("residual", [True, False])
def test_tcn_block_reference_is_the_module(residual):
    # the reference against the block's own modules (x + res, skips + skip), with x and the skips split between
    # state and offset
    torch.manual_seed(0)
    block = _off_initial_values(_TCNBlock(6, 10, 5, 3, 4, "gLN", with_residual=residual).eval())
    with torch.no_grad():
        state, offset = _state(2, 6, 5, 90)
        full = state + offset[..., None]
        res, skip = block(full[:, :6])
        want = torch.cat([full[:, :6] + res if residual else full[:, :6], full[:, 6:] + skip], dim=1)
        conv_in, act_in, norm_in, conv_dw, act_dw, norm_dw = block.body
        convs = [block.res, block.skip] if residual else [block.skip]
        got = _run(reference.tcn_block_, state, offset, conv_in.weight[..., 0], conv_in.bias, act_in.weight,
                   norm_in.gamma, norm_in.beta, conv_dw.weight[:, 0], conv_dw.bias, act_dw.weight, norm_dw.gamma,
                   norm_dw.beta, torch.cat([c.weight[..., 0] for c in convs]), torch.cat([c.bias for c in convs]),
                   4, norm_in.eps)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.kernel_vs_reference
def test_tcn_block_long_rows_keep_the_norm_statistics():
    # 60 000 frames per row with a large offset: the variance E[v²] - E[v]² must survive the long sums
    _needs_tcn_kernel()
    params, tail = _block_params(chan=4, hid=6, n_skip=3)
    state = torch.cat([torch.randn(1, 4, 60000) + 20.0, torch.zeros(1, 3, 60000)], dim=1)
    offset = torch.zeros(1, 7)
    got = _run(ops.tcn_block_, state, offset, *params, *tail, 2, 1e-8)
    want = _run(reference.tcn_block_, state.double(), offset.double(), *[p.double() for p in params],
                *[t.double() for t in tail], 2, 1e-8)
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-3)


def test_tcn_block_bad_input():
    params, tail = _block_params()
    state, offset = _state(1, 6, 5, 20)
    with torch.no_grad():
        with pytest.raises(ValueError, match="dtype"):
            ops.tcn_block_(state.double(), offset, *params, *tail, 1)
        with pytest.raises(ValueError, match="offset"):
            ops.tcn_block_(state, torch.zeros(1, 10), *params, *tail, 1)
        with pytest.raises(ValueError, match="contiguous"):
            ops.tcn_block_(state.transpose(1, 2).contiguous().transpose(1, 2), offset, *params, *tail, 1)
        with pytest.raises(ValueError, match="w_in must be"):
            ops.tcn_block_(state, offset, torch.randn(10, 11), *params[1:], *tail, 1)
        with pytest.raises(ValueError, match="K odd"):
            ops.tcn_block_(state, offset, *params[:5], torch.randn(10, 4), *params[6:], *tail, 1)
        with pytest.raises(ValueError, match="a_in must have shape"):
            ops.tcn_block_(state, offset, *params[:2], torch.tensor([0.1, 0.2]), *params[3:], *tail, 1)
        with pytest.raises(ValueError, match="w_out must be"):
            ops.tcn_block_(state, offset, *params, torch.randn(3, 10), torch.randn(3), 1)
        with pytest.raises(ValueError, match="b_out must have shape"):
            ops.tcn_block_(state, offset, *params, tail[0], torch.randn(4), 1)
        with pytest.raises(ValueError, match="dilation"):
            ops.tcn_block_(state, offset, *params, *tail, 0)
        with pytest.raises(ValueError, match="at least one frame"):
            ops.tcn_block_(state[..., :0].contiguous(), offset, *params, *tail, 1)
    with pytest.raises(ValueError, match="no backward"):
        ops.tcn_block_(state, offset, *[p.clone().requires_grad_() for p in params], *tail, 1)


@pytest.mark.kernel_vs_reference
def test_tcn_block_opcheck():
    _needs_tcn_kernel()
    params, tail = _block_params()
    torch.library.opcheck(torch.ops.fastsep.tcn_block_.default, (*_state(2, 6, 5, 30), *params, *tail, 2, 1e-8))
    params, tail = _block_params(residual=False)
    torch.library.opcheck(torch.ops.fastsep.tcn_block_.default, (*_state(1, 6, 5, 30), *params, *tail, 2, 1e-8))


def _random_convtasnet(norm="gLN", seed=0):
    torch.manual_seed(seed)
    return _off_initial_values(ConvTasNet(2, n_filters=32, kernel_size=16, stride=8, bn_chan=16, hid_chan=24,
                                          skip_chan=12, n_blocks=3, n_repeats=2, norm=norm).eval())


@pytest.mark.kernel_vs_reference
@pytest.mark.parametrize("batch,length,threads", [(1, 4000, 1), (3, 1237, 1), (2, 20000, 2)])
def test_convtasnet_fused_inference_matches_module_path(batch, length, threads):
    _needs_tcn_kernel()
    torch.set_num_threads(threads)  # the rows of each pass split across threads (conftest restores the count)
    model = _random_convtasnet()
    mix = torch.randn(batch, length)
    with torch.no_grad():
        assert model.uses_fused_blocks(mix)
        fused = model(mix)
        model.fused_inference = False
        assert not model.uses_fused_blocks(mix)
        plain = model(mix)
    assert fused.shape == plain.shape == (batch, 2, length)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())


def test_convtasnet_fused_blocks_only_where_they_apply():
    mix = torch.randn(1, 800)
    model = _random_convtasnet()
    assert not model.uses_fused_blocks(mix)  # grad enabled: training takes the module path
    with torch.no_grad():
        assert not _random_convtasnet(norm="cLN").uses_fused_blocks(mix)
        assert not model.uses_fused_blocks(mix.double())
        assert model.uses_fused_blocks(mix) == ops.uses_kernels("cpu", "tcn_block_")


def _assert_same_function(got, want, inputs):
    # equal outputs, and equal gradients with respect to inputs for one random output gradient
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, inputs, grad), torch.autograd.grad(want, inputs, grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,relu", [(32, 16, False), (16, 8, True), (12, 5, True), (8, 8, False)])
def test_encoder_gemm_matches_strided_conv(kernel, stride, relu):
    torch.manual_seed(0)
    enc = Encoder(20, kernel, stride, relu)
    wave = torch.randn(3, 203, requires_grad=True)
    got = enc(wave)
    want = enc.conv(wave.unsqueeze(1))
    want = torch.relu(want) if relu else want
    assert got.shape == want.shape == (3, 20, (203 - kernel) // stride + 1) and got.is_contiguous()
    _assert_same_function(got, want, (wave, enc.conv.weight))


def test_decoder_overlap_add_matches_transposed_conv():
    for kernel, stride in ((16, 8), (32, 16), (12, 3), (8, 8)):
        dec = Decoder(20, kernel, stride)
        feats = torch.randn(2, 3, 20, 17, requires_grad=True)
        got = dec(feats)
        want = dec.conv(feats.reshape(-1, 20, 17)).reshape(2, 3, -1)
        assert got.shape == want.shape
        _assert_same_function(got, want, (feats, dec.conv.weight))
    odd = Decoder(20, 10, 4)  # the kernel not a whole number of strides: the transposed convolution itself
    feats = torch.randn(1, 20, 9)
    torch.testing.assert_close(odd(feats), odd.conv(feats)[:, 0])


def test_global_layer_norm_as_affine_map():
    norm = GlobalLayerNorm(7)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
        norm.beta.normal_()
        x = torch.randn(3, 7, 500) * 4 + 10
        scale, shift = norm.affine_of(x)
        assert scale.shape == shift.shape == (3, 7)
        torch.testing.assert_close(scale.unsqueeze(-1) * x + shift.unsqueeze(-1), norm(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 5, 3, 4)])
def test_global_layer_norm_backward_matches_its_formula(shape):
    norm = GlobalLayerNorm(5).double()
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
        norm.beta.normal_()
    x = (torch.randn(*shape, dtype=torch.double) * 3 + 2).requires_grad_()
    assert torch.autograd.gradcheck(norm, (x,))
    y, want = norm(x), norm.reference(x)
    torch.testing.assert_close(y, want)
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (x, norm.gamma, norm.beta), grad),
                    torch.autograd.grad(want, (x, norm.gamma, norm.beta), grad)):
        torch.testing.assert_close(a, b)


def test_global_layer_norm_keeps_float32_statistics_under_autocast():
    norm = GlobalLayerNorm(8)
    x = (torch.randn(2, 8, 300) * 5 + 3).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, norm.reference(x.detach().float()), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and norm.gamma.grad.dtype == torch.float32
