"""Conformance: fusedrnn's modules side by side with torch.nn's, parametrized over the class."""
import copy
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import assert_rel

PAIRS = [(nn.RNN, fusedrnn.RNN), (nn.LSTM, fusedrnn.LSTM), (nn.GRU, fusedrnn.GRU)]
CELL_PAIRS = [(nn.RNNCell, fusedrnn.RNNCell), (nn.LSTMCell, fusedrnn.LSTMCell), (nn.GRUCell, fusedrnn.GRUCell)]
IDS = ["RNN", "LSTM", "GRU"]
CELL_IDS = ["RNNCell", "LSTMCell", "GRUCell"]

CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, bias=False, batch_first=True),
    dict(num_layers=2, dropout=0.3),
]


def build_pair(torch_cls, fused_cls, *args, dtype=torch.float64, **kwargs):
    """torch.nn and fusedrnn modules built from the same seed."""
    seed = torch.randint(0, 2**31, ()).item()
    torch.manual_seed(seed)
    ref = torch_cls(*args, dtype=dtype, **kwargs)
    torch.manual_seed(seed)
    ours = fused_cls(*args, dtype=dtype, **kwargs)
    return ref, ours


def same_outcome(make_ref, make_ours):
    """Both calls raise the same exception type with the same message, or both succeed."""
    outcomes = []
    for fn in (make_ref, make_ours):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn()
            outcomes.append(("ok", [str(w.message) for w in caught if issubclass(w.category, UserWarning)
                                    and "oneDNN" not in str(w.message)]))
        except Exception as e:  # noqa: BLE001 - comparing whatever each raises
            outcomes.append((type(e).__name__, str(e)))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def flat(result):
    out, state = result
    out = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    return [out, *(state if isinstance(state, tuple) else (state,))]


# -- constructor, parameters, init ----------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_same_parameters_and_bit_identical_init(pair, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, ours = build_pair(*pair, 5, 7, dtype=torch.float32, **config)
    ref_params, our_params = list(ref.named_parameters()), list(ours.named_parameters())
    assert [n for n, _ in ref_params] == [n for n, _ in our_params]
    for (_, a), (_, b) in zip(ref_params, our_params):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    assert ref._flat_weights_names == ours._flat_weights_names
    assert ref._all_weights == ours._all_weights
    assert [[w.shape for w in ws] for ws in ref.all_weights] == [[w.shape for w in ws] for ws in ours.all_weights]
    assert list(ref.state_dict()) == list(ours.state_dict())
    assert repr(ref) == repr(ours)
    assert ours.dropout == ref.dropout and isinstance(ours.dropout, float)


def test_lstm_projection_parameters_and_init():
    ref, ours = build_pair(nn.LSTM, fusedrnn.LSTM, 4, 6, 2, bidirectional=True, proj_size=3)
    for (n1, a), (n2, b) in zip(ref.named_parameters(), ours.named_parameters()):
        assert n1 == n2 and torch.equal(a, b)
    assert "weight_hr_l1_reverse" in dict(ours.named_parameters())


@pytest.mark.parametrize("pair", PAIRS + CELL_PAIRS, ids=IDS + CELL_IDS)
def test_device_and_dtype_arguments(pair):
    ref, ours = build_pair(*pair, 3, 4, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    meta = pair[1](3, 4, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())


BAD_ARGS = [
    ((3, 5), dict(dropout=1.5)),
    ((3, 5), dict(dropout=-0.1)),
    ((3, 5), dict(dropout=True)),
    ((3, 5), dict(dropout="0.5")),
    ((3, 5), dict(bias=1)),
    ((3, 5), dict(batch_first=0)),
    ((3.0, 5), dict()),
    ((3, "5"), dict()),
    ((0, 5), dict()),
    ((3, 0), dict()),
    ((3, 5, 0), dict()),
    ((3, 5), dict(dropout=0.5)),  # warns: num_layers == 1
    ((3, 5, 2), dict(dropout=0.5)),
]


@pytest.mark.parametrize("args,kwargs", BAD_ARGS, ids=[str(a) + str(k) for a, k in BAD_ARGS])
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_constructor_validation_matches(pair, args, kwargs):
    same_outcome(lambda: pair[0](*args, **kwargs), lambda: pair[1](*args, **kwargs))


@pytest.mark.parametrize("kwargs", [dict(proj_size=-1), dict(proj_size=5), dict(proj_size=7), dict(proj_size=2)])
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_projection_args_check(pair, kwargs):
    outcome = same_outcome(lambda: pair[0](3, 5, **kwargs), lambda: pair[1](3, 5, **kwargs))
    if pair[0] is not nn.LSTM:
        assert "only supported for LSTM" in outcome[1]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
def test_rnn_nonlinearity_positional_and_keyword(nonlinearity):
    same_outcome(lambda: nn.RNN(3, 5, 1, nonlinearity), lambda: fusedrnn.RNN(3, 5, 1, nonlinearity))
    same_outcome(lambda: nn.RNN(3, 5, nonlinearity=nonlinearity), lambda: fusedrnn.RNN(3, 5, nonlinearity=nonlinearity))
    if nonlinearity != "sigmoid":
        assert fusedrnn.RNN(3, 5, 2, nonlinearity).mode == nn.RNN(3, 5, 2, nonlinearity).mode


# -- forward ---------------------------------------------------------------------------------------
def check_forward_backward(ref, ours, make_input, hx=None, tol=1e-10):
    results = []
    for m in (ref, ours):
        inp, h = make_input(), None
        if hx is not None:
            h = tuple(t.clone().requires_grad_() for t in hx) if isinstance(hx, tuple) else hx.clone().requires_grad_()
        res = m(inp, h)
        tensors = flat(res)
        loss = sum((t * torch.randn_like(t, generator=torch.Generator().manual_seed(i))).sum()
                   for i, t in enumerate(tensors))
        leaves = [p for p in m.parameters()] + ([*h] if isinstance(h, tuple) else [h] if h is not None else [])
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        results.append((res, tensors, grads))
    (r_res, r_t, r_g), (o_res, o_t, o_g) = results
    assert type(r_res[0]) is type(o_res[0])
    for a, b in zip(o_t, r_t):
        assert a.shape == b.shape
        assert_rel(a, b, tol)
    for a, b in zip(o_g, r_g):
        assert_rel(a, b, tol)
    return o_res


@pytest.mark.parametrize("config", CONFIGS[:3], ids=["default", "2L-bi", "3L-nobias-batch_first"])
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_forward_batched(pair, config):
    ref, ours = build_pair(*pair, 3, 5, **config)
    shape = (4, 6, 3) if config.get("batch_first") else (6, 4, 3)
    x = torch.randn(*shape, dtype=torch.float64)
    out, _ = check_forward_backward(ref, ours, lambda: x.clone().requires_grad_())
    if config.get("batch_first"):
        assert out.shape[:2] == (4, 6)
    D = 2 if config.get("bidirectional") else 1
    L = config.get("num_layers", 1)
    h = torch.randn(L * D, 4, 5, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if pair[0] is nn.LSTM else h
    check_forward_backward(ref, ours, lambda: x.clone().requires_grad_(), hx)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_forward_unbatched(pair, batch_first):
    ref, ours = build_pair(*pair, 3, 5, 2, batch_first=batch_first, bidirectional=True)
    x = torch.randn(6, 3, dtype=torch.float64)
    out, state = check_forward_backward(ref, ours, lambda: x.clone())
    assert out.shape == (6, 10)
    h = torch.randn(4, 5, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if pair[0] is nn.LSTM else h
    _, state = check_forward_backward(ref, ours, lambda: x.clone(), hx)
    assert (state[0] if isinstance(state, tuple) else state).shape == (4, 5)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_forward_packed(pair, enforce_sorted):
    ref, ours = build_pair(*pair, 3, 5, 2, bidirectional=True)
    lengths = torch.tensor([7, 5, 5, 2, 1]) if enforce_sorted else torch.tensor([2, 7, 1, 5, 5])
    x = torch.randn(7, 5, 3, dtype=torch.float64)
    make = lambda: pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    out, state = check_forward_backward(ref, ours, make)
    assert isinstance(out, nn.utils.rnn.PackedSequence)
    h = torch.randn(4, 5, 5, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if pair[0] is nn.LSTM else h
    check_forward_backward(ref, ours, make, hx)


def test_lstm_projections_forward():
    ref, ours = build_pair(nn.LSTM, fusedrnn.LSTM, 3, 6, 2, bidirectional=True, proj_size=4, batch_first=True)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    out, (h, c) = check_forward_backward(ref, ours, lambda: x.clone().requires_grad_())
    assert out.shape == (5, 7, 8) and h.shape == (4, 5, 4) and c.shape == (4, 5, 6)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_dropout_only_in_training_and_changeable(pair):
    """test_RNN_change_dropout: module.dropout changed after construction takes effect."""
    ref, ours = build_pair(*pair, 4, 6, 3, dropout=0.0)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    ours.train()
    base = ours(x)[0]
    ours.dropout = 0.9
    dropped = ours(x)[0]
    assert (dropped - base).abs().max() > 1e-3
    ours.dropout = 1.0  # the last layer then sees only zeros: output independent of x
    assert torch.equal(ours(x)[0], ours(torch.randn_like(x))[0])
    ours.eval()
    with torch.no_grad():
        assert_rel(ours(x)[0], ref.eval()(x)[0], 1e-10)
    ours.dropout = 0.0
    ours.train()
    assert torch.equal(ours(x)[0], base)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_batch_size_zero(pair):
    """test_RNN_input_size_zero: an empty batch runs, forward and backward."""
    ref, ours = build_pair(*pair, 3, 4)
    x = torch.zeros(5, 0, 3, dtype=torch.float64, requires_grad=True)
    out, _ = ours(x)
    ref_out, _ = ref(x)
    assert out.shape == ref_out.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_flatten_parameters_is_cheap_and_harmless():
    ref, ours = build_pair(nn.LSTM, fusedrnn.LSTM, 3, 4, 2)
    before = [p.data_ptr() for p in ours.parameters()]
    ours.flatten_parameters()
    assert [p.data_ptr() for p in ours.parameters()] == before
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())


# -- errors ----------------------------------------------------------------------------------------
def bad_inputs(torch_cls):
    f64 = torch.float64
    lstm = torch_cls is nn.LSTM

    def hx(*shape, c_shape=None):
        h = torch.zeros(*shape, dtype=f64)
        return (h, torch.zeros(*(c_shape or shape), dtype=f64)) if lstm else h

    return {
        "4-D input": (torch.zeros(2, 3, 4, 3, dtype=f64), None),
        "1-D input": (torch.zeros(3, dtype=f64), None),
        "wrong input size": (torch.zeros(5, 4, 7, dtype=f64), None),
        "2-D hx for 3-D input": (torch.zeros(5, 4, 3, dtype=f64), hx(2, 5)),
        "3-D hx for 2-D input": (torch.zeros(5, 3, dtype=f64), hx(2, 1, 5)),
        "wrong hx batch": (torch.zeros(5, 4, 3, dtype=f64), hx(2, 7, 5)),
        "wrong hx layers": (torch.zeros(5, 4, 3, dtype=f64), hx(3, 4, 5)),
        "wrong hx size": (torch.zeros(5, 4, 3, dtype=f64), hx(2, 4, 6)),
        "wrong cx size": (torch.zeros(5, 4, 3, dtype=f64), hx(2, 4, 5, c_shape=(2, 4, 6))),
        "dtype mismatch": (torch.zeros(5, 4, 3, dtype=torch.float32), None),
        "empty sequence": (torch.zeros(0, 4, 3, dtype=f64), None),
        "empty unbatched sequence": (torch.zeros(0, 3, dtype=f64), None),
        "device mismatch": (torch.zeros(5, 4, 3, dtype=f64, device="meta"), None),
    }


@pytest.mark.parametrize("case", list(bad_inputs(nn.RNN)))
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_forward_errors_match(pair, case):
    ref, ours = build_pair(*pair, 3, 5, 2)
    x, hx = bad_inputs(pair[0])[case]
    outcome = same_outcome(lambda: ref(x, hx), lambda: ours(x, hx))
    if case != "wrong cx size" or pair[0] is nn.LSTM:  # without a cell state, that input is fine
        assert outcome[0] != "ok"


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_packed_input_with_wrong_hx_is_a_clear_error(pair):
    """torch.nn's LSTM checks nothing here and fails inside ATen (or silently picks rows); fusedrnn
    names the problem."""
    _, ours = build_pair(*pair, 3, 5, 2)
    packed = pack_padded_sequence(torch.randn(6, 4, 3, dtype=torch.float64), torch.tensor([6, 3, 2, 1]),
                                  enforce_sorted=False)
    h = torch.zeros(2, 7, 5, dtype=torch.float64)
    hx = (h, torch.zeros(2, 4, 5, dtype=torch.float64)) if pair[0] is nn.LSTM else h
    expected = r"Expected hidden\[0\] size \(2, 4, 5\), got \[2, 7, 5\]" if pair[0] is nn.LSTM \
        else r"Expected hidden size \(2, 4, 5\), got \[2, 7, 5\]"
    with pytest.raises(RuntimeError, match=expected):
        ours(packed, hx)


@pytest.mark.parametrize("h_shape,c_shape", [((2, 4, 5), (2, 4, 5)), ((2, 4, 2), (2, 4, 2)), ((1, 4, 2), (2, 4, 5))])
def test_projections_lstm_args_check(h_shape, c_shape):
    """test_projections_lstm_args_check: h has proj_size features, c has hidden_size."""
    ref, ours = build_pair(nn.LSTM, fusedrnn.LSTM, 3, 5, 2, proj_size=2)
    x = torch.zeros(6, 4, 3, dtype=torch.float64)
    hx = (torch.zeros(h_shape, dtype=torch.float64), torch.zeros(c_shape, dtype=torch.float64))
    outcome = same_outcome(lambda: ref(x, hx), lambda: ours(x, hx))
    assert outcome[0] == "RuntimeError"


# -- state, serialization, reshaping ---------------------------------------------------------------
@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_state_dict_both_ways_strict(pair):
    kwargs = dict(num_layers=2, bidirectional=True, bias=True)
    if pair[0] is nn.LSTM:
        kwargs["proj_size"] = 3
    src_ref = pair[0](4, 6, **kwargs)
    ours = pair[1](4, 6, **kwargs)
    ours.load_state_dict(src_ref.state_dict(), strict=True)
    back = pair[0](4, 6, **kwargs)
    back.load_state_dict(ours.state_dict(), strict=True)
    for a, b in zip(src_ref.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        assert_rel(ours(x)[0], src_ref(x)[0], 1e-5)


@pytest.mark.parametrize("pair", PAIRS + CELL_PAIRS, ids=IDS + CELL_IDS)
def test_pickle_deepcopy_save_load(pair, tmp_path):
    kwargs = dict(bias=False) if pair in CELL_PAIRS else dict(num_layers=2, dropout=0.25, bidirectional=True)
    ours = pair[1](3, 4, **kwargs)
    x = torch.randn(2, 3) if pair in CELL_PAIRS else torch.randn(5, 2, 3)
    ours.eval()
    expected = ours(x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert type(clone) is type(ours)
        assert getattr(clone, "dropout", None) == getattr(ours, "dropout", None)  # test_RNN_dropout_state
        got = clone(x)
        assert torch.equal(got[0] if isinstance(got, tuple) else got, expected)
    path = tmp_path / "m.pt"
    torch.save(ours, path)
    loaded = torch.load(path, weights_only=False)
    got = loaded(x)
    assert torch.equal(got[0] if isinstance(got, tuple) else got, expected)
    torch.save(ours.state_dict(), path)
    fresh = pair[1](3, 4, **kwargs)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()
    got = fresh(x)
    assert torch.equal(got[0] if isinstance(got, tuple) else got, expected)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_to_dtype(pair):
    ref, ours = build_pair(*pair, 3, 4, 2, dtype=torch.float32)
    ours.to(torch.float64)
    ref.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in ours._flat_weights)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_functional_call(pair):
    ref, ours = build_pair(*pair, 3, 4, 2)
    params = {n: torch.randn_like(p) for n, p in ours.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    got = flat(torch.func.functional_call(ours, params, (x,)))
    expected = flat(torch.func.functional_call(ref, params, (x,)))
    for a, b in zip(got, expected):
        assert_rel(a, b, 1e-10)
    # ...and the module's own weights are back in use afterwards.
    with torch.no_grad():
        assert_rel(flat(ours(x))[0], flat(ref(x))[0], 1e-10)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_weight_norm_parametrization(pair):
    """test_RNN_cudnn_weight_norm, on the CPU."""
    ref, ours = build_pair(*pair, 3, 4, 2)
    for m in (ref, ours):
        nn.utils.parametrizations.weight_norm(m, name="weight_hh_l0")
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())
    for m in (ref, ours):
        nn.utils.parametrize.remove_parametrizations(m, "weight_hh_l0")
    check_forward_backward(ref, ours, lambda: x.clone())


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_weight_tying(pair):
    """test_cudnn_weight_tying: assigning one parameter to another."""
    ref, ours = build_pair(*pair, 3, 4, 1, bidirectional=True)
    for m in (ref, ours):
        m.bias_ih_l0_reverse = m.bias_ih_l0
    assert ours._flat_weights[ours._flat_weights_names.index("bias_ih_l0_reverse")] is ours.bias_ih_l0
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_weight_set_(pair):
    """test_cudnn_weight_format: weights replaced in place with set_ are used."""
    ref, ours = build_pair(*pair, 3, 4, 2)
    with torch.no_grad():
        for m in (ref, ours):
            m.weight_hh_l1.set_(m.weight_hh_l1.clone() * 2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())


def test_partial_flat_weights():
    """test_partial_flat_weights: a deleted weight leaves a hole; assigning it back restores it."""
    ref, ours = build_pair(nn.LSTM, fusedrnn.LSTM, 3, 4, 1)
    orig = ours.weight_hh_l0
    for m in (ref, ours):
        del m.weight_hh_l0
    assert not hasattr(ours, "weight_hh_l0")
    ours._apply(lambda t: t)
    assert ours._flat_weights[1] is None
    ours.weight_hh_l0 = orig
    ref.weight_hh_l0 = nn.Parameter(orig.detach().clone())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    check_forward_backward(ref, ours, lambda: x.clone())


# -- cells -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("pair", CELL_PAIRS, ids=CELL_IDS)
def test_cell_parameters_init_and_forward(pair, bias):
    ref, ours = build_pair(*pair, 3, 5, bias=bias)
    assert [(n, p.shape) for n, p in ref.named_parameters()] == [(n, p.shape) for n, p in ours.named_parameters()]
    for a, b in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(a, b)
    assert ours.bias_ih is None if not bias else ours.bias_ih is not None
    assert repr(ref) == repr(ours)
    lstm = pair[0] is nn.LSTMCell
    for shape, hshape in [((4, 3), (4, 5)), ((3,), (5,))]:
        x = torch.randn(*shape, dtype=torch.float64)
        for hx in (None, (torch.randn(*hshape, dtype=torch.float64),) * (2 if lstm else 1)):
            results = []
            for m in (ref, ours):
                xi = x.clone().requires_grad_()
                h = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
                out = m(xi, h if (lstm or h is None) else h[0])
                outs = list(out) if lstm else [out]
                loss = sum((o * (k + 1)).sin().sum() for k, o in enumerate(outs))
                leaves = [xi, *m.parameters(), *(h or ())]
                results.append((outs, torch.autograd.grad(loss, leaves)))
            for a, b in zip(results[1][0] + list(results[1][1]), results[0][0] + list(results[0][1])):
                assert a.shape == b.shape
                assert_rel(a, b, 1e-10)


def test_rnn_cell_relu():
    ref, ours = build_pair(nn.RNNCell, fusedrnn.RNNCell, 3, 5, nonlinearity="relu")
    x, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert_rel(ours(x, h), ref(x, h), 1e-10)
    assert repr(ours) == repr(ref)


def cell_bad_inputs(torch_cls):
    f64 = torch.float64
    lstm = torch_cls is nn.LSTMCell

    def hx(*shape, c=None):
        h = torch.zeros(*shape, dtype=f64)
        return (h, torch.zeros(*(c or shape), dtype=f64)) if lstm else h

    return {
        "3-D input": (torch.zeros(2, 4, 3, dtype=f64), None),
        "3-D hx": (torch.zeros(4, 3, dtype=f64), hx(1, 4, 5)),
        "wrong input size": (torch.zeros(4, 7, dtype=f64), None),
        "wrong hx batch": (torch.zeros(4, 3, dtype=f64), hx(2, 5)),
        "wrong hx size": (torch.zeros(4, 3, dtype=f64), hx(4, 6)),
        "wrong cx size": (torch.zeros(4, 3, dtype=f64), hx(4, 5, c=(4, 6))),
        "1-D input, 2-D hx": (torch.zeros(3, dtype=f64), hx(2, 5)),
        "dtype mismatch": (torch.zeros(4, 3, dtype=torch.float32), None),
        "device mismatch": (torch.zeros(4, 3, dtype=f64, device="meta"), None),
    }


@pytest.mark.parametrize("case", list(cell_bad_inputs(nn.RNNCell)))
@pytest.mark.parametrize("pair", CELL_PAIRS, ids=CELL_IDS)
def test_cell_errors_match(pair, case):
    ref, ours = build_pair(*pair, 3, 5)
    x, hx = cell_bad_inputs(pair[0])[case]
    same_outcome(lambda: ref(x, hx), lambda: ours(x, hx))
