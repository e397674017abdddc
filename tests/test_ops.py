"""The layer ops themselves: gradcheck in float64, torch.library.opcheck, argument errors."""
import pytest
import torch

import fusedrnn
from helpers import CELLS

G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
I, H = 3, 4


def op_args(cell, layout, reverse, bias=True, proj=0, dtype=torch.float64, requires_grad=True, train=True):
    """Arguments of fusedrnn::layer_forward for a small problem."""
    Hr = proj or H
    if layout == "packed":
        batch_sizes = torch.tensor([3, 3, 2, 1])
        x = torch.randn(int(batch_sizes.sum()), I, dtype=dtype)
        B = 3
    else:
        batch_sizes = None
        x = torch.randn(4, 2, I, dtype=dtype)
        B = 2
    t = lambda *s: (torch.randn(*s, dtype=dtype) * 0.5).requires_grad_(requires_grad)
    x.requires_grad_(requires_grad)
    return [
        cell, x, batch_sizes, t(B, Hr), t(B, H) if cell == "lstm" else None,
        t(G[cell] * H, I), t(G[cell] * H, Hr), t(G[cell] * H) if bias else None, t(G[cell] * H) if bias else None,
        t(Hr, H) if proj else None, reverse, train,
    ]


PARAMS = [(c, lay, rev) for c in CELLS for lay in ("dense", "packed") for rev in (False, True)]
IDS = [f"{c}-{lay}-{'reverse' if rev else 'forward'}" for c, lay, rev in PARAMS]


@pytest.mark.parametrize("cell,layout,reverse", PARAMS, ids=IDS)
def test_gradcheck(cell, layout, reverse):
    args = op_args(cell, layout, reverse)

    def f(*tensors):
        a = list(args)
        a[1], a[3], a[4], a[5], a[6], a[7], a[8] = tensors
        out, hy, cy, _ = fusedrnn.layer_forward(*a)
        return (out, hy, cy) if cell == "lstm" else (out, hy)

    inputs = (args[1], args[3], args[4], args[5], args[6], args[7], args[8])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", ["dense", "packed"])
def test_gradcheck_lstm_projection_without_bias(layout, reverse):
    args = op_args("lstm", layout, reverse, bias=False, proj=2)

    def f(x, hx, cx, w_ih, w_hh, w_hr):
        out, hy, cy, _ = fusedrnn.layer_forward("lstm", x, args[2], hx, cx, w_ih, w_hh, None, None, w_hr, reverse, True)
        return out, hy, cy

    assert torch.autograd.gradcheck(f, (args[1], args[3], args[4], args[5], args[6], args[9]), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell,layout,reverse", PARAMS, ids=IDS)
def test_opcheck_layer_forward(cell, layout, reverse):
    torch.library.opcheck(torch.ops.fusedrnn.layer_forward.default, op_args(cell, layout, reverse))


@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_layer_forward_inference(cell):
    torch.library.opcheck(torch.ops.fusedrnn.layer_forward.default,
                          op_args(cell, "dense", False, requires_grad=False, train=False))


@pytest.mark.parametrize("cell,layout,reverse", PARAMS, ids=IDS)
def test_opcheck_layer_backward(cell, layout, reverse):
    args = op_args(cell, layout, reverse, requires_grad=False)
    out, hy, cy, reserve = fusedrnn.layer_forward(*args)
    bargs = args[:11] + [out, reserve, torch.randn_like(out), torch.randn_like(hy),
                         torch.randn_like(cy) if cell == "lstm" else None, True, True]
    torch.library.opcheck(torch.ops.fusedrnn.layer_backward.default, bargs)


@pytest.mark.parametrize("cell,layout,reverse,proj", [p + (0,) for p in PARAMS] + [
    ("lstm", lay, rev, 2) for lay in ("dense", "packed") for rev in (False, True)])
def test_backward_with_broadcast_grad_output(cell, layout, reverse, proj):
    """A grad_output broadcast over the rows (the gradient of out.sum(), or of (out * v).sum()) is read
    as one row: the same gradients as the materialized tensor."""
    args = op_args(cell, layout, reverse, proj=proj, requires_grad=False)
    out, hy, cy, reserve = fusedrnn.layer_forward(*args)
    for grad_out in (torch.tensor(0.7, dtype=out.dtype).expand_as(out),
                     torch.randn(out.shape[-1], dtype=out.dtype).expand_as(out),
                     torch.randn(out.shape[-1] * 2, dtype=out.dtype)[::2].expand_as(out)):
        assert grad_out.stride()[:-1] == (0,) * (out.dim() - 1)
        results = []
        for g in (grad_out, grad_out.contiguous()):
            bargs = args[:11] + [out, reserve, g, torch.randn_like(hy, generator=torch.Generator().manual_seed(1)),
                                 None, True, True]
            results.append(torch.ops.fusedrnn.layer_backward(*bargs))
        for a, e in zip(*results):
            assert torch.equal(a, e)
        assert results[0][0].abs().sum() > 0


def test_inference_forward_saves_nothing():
    out, hy, cy, reserve = fusedrnn.layer_forward(*op_args("lstm", "dense", False, requires_grad=False, train=False))
    assert reserve.numel() == 0
    _, _, _, reserve = fusedrnn.layer_forward(*op_args("lstm", "dense", False, requires_grad=False, train=True))
    assert reserve.shape == (8, 5 * H)


def test_backward_of_inference_forward_is_an_error():
    args = op_args("gru", "dense", False, train=False)
    out, _, _, _ = fusedrnn.layer_forward(*args)
    with pytest.raises(RuntimeError, match="train=False"):
        out.sum().backward()


def _expect_error(args, pattern, index, value):
    args = list(args)
    args[index] = value
    with pytest.raises(RuntimeError, match=pattern):
        fusedrnn.layer_forward(*args)


def test_argument_errors():
    args = op_args("lstm", "packed", False, requires_grad=False)
    _expect_error(args, "unknown cell 'lstmx'", 0, "lstmx")
    _expect_error(args, "non-increasing", 2, torch.tensor([2, 3, 3, 1]))
    _expect_error(args, "batch_sizes sum to 10", 2, torch.tensor([3, 3, 3, 1]))
    _expect_error(args, "must be positive", 2, torch.tensor([3, 3, 3, 0]))
    _expect_error(args, "1-D CPU int64", 2, torch.tensor([3.0, 3.0, 2.0, 1.0]))
    _expect_error(args, "hx must have shape", 3, torch.randn(3, H + 1, dtype=torch.float64))
    _expect_error(args, "cx must have shape", 4, torch.randn(2, H, dtype=torch.float64))
    _expect_error(args, "lstm needs cx", 4, None)
    _expect_error(args, "w_hh has dtype Float but input has dtype Double", 6, torch.randn(4 * H, H))
    _expect_error(args, "features but w_ih expects", 1, torch.randn(9, I + 2, dtype=torch.float64))
    small_batch = list(args)
    small_batch[4] = torch.randn(2, H, dtype=torch.float64)
    _expect_error(small_batch, "packed batch", 3, torch.randn(2, H, dtype=torch.float64))
    dense = op_args("gru", "dense", False, requires_grad=False)
    _expect_error(dense, "sequence length must be larger than 0", 1, torch.randn(0, 2, I, dtype=torch.float64))
    _expect_error(dense, "dense input must be 3-D", 1, torch.randn(2, I, dtype=torch.float64))
    _expect_error(dense, "projections .* only supported for lstm", 9, torch.randn(H, H, dtype=torch.float64))
    _expect_error(dense, "biases must have shape", 7, torch.randn(H, dtype=torch.float64))
    fp8 = [a.to(torch.float8_e4m3fn) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
           for a in op_args("gru", "dense", False, requires_grad=False)]
    with pytest.raises(RuntimeError, match="CPU kernels support float32, float64, float16 and bfloat16, "
                                           "got Float8_e4m3fn"):
        fusedrnn.layer_forward(*fp8)


def test_backward_needs_training_reserve():
    args = op_args("gru", "dense", False, requires_grad=False, train=False)
    out, hy, cy, reserve = fusedrnn.layer_forward(*args)
    with pytest.raises(RuntimeError, match="train=True"):
        fusedrnn.layer_backward(*args[:11], out, reserve, torch.ones_like(out), None, None, True, True)


# concat_directions: torch.cat(..., -1) of a bidirectional layer's two outputs, on the CPU into a
# buffer of the cache.
@pytest.mark.parametrize("shape", [(7, 3, 5), (11, 4), (6,)])
def test_concat_directions_is_cat(shape):
    a = torch.randn(shape, dtype=torch.float64)
    b = torch.randn((*shape[:-1], shape[-1] + 2), dtype=torch.float64)
    out = torch.ops.fusedrnn.concat_directions(a, b)
    assert out.is_contiguous() and torch.equal(out, torch.cat([a, b], -1))
    # Strided inputs are read as they are.
    at, bt = a.transpose(0, -1), b[..., :shape[-1]].transpose(0, -1)
    if len(shape) > 1:
        assert torch.equal(torch.ops.fusedrnn.concat_directions(at, bt), torch.cat([at, bt], -1))
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(torch.ops.fusedrnn.concat_directions, (a, b))
    torch.library.opcheck(torch.ops.fusedrnn.concat_directions.default, (a, b))


def test_concat_directions_gradient_reaches_only_asked_inputs():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 2)
    out = torch.ops.fusedrnn.concat_directions(a, b)
    (out * torch.arange(5.0)).sum().backward()
    assert torch.equal(a.grad, torch.arange(3.0).expand(4, 3))


@pytest.mark.parametrize("a, b, message", [
    ((4, 3), (4, 3, 1), "same number"),
    ((4, 3), (5, 3), "same sizes but in the last dimension"),
    ((), (), "same number"),
])
def test_concat_directions_errors(a, b, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.concat_directions(torch.randn(a), torch.randn(b))


def test_concat_directions_dtype_error():
    with pytest.raises(RuntimeError, match="one dtype and device"):
        torch.ops.fusedrnn.concat_directions(torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float64))
