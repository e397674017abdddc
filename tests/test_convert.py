"""fusedrnn.convert: swapping torch.nn recurrent modules inside a model, and back."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusedrnn
from helpers import assert_rel


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.encoder = nn.LSTM(6, 8, 2, batch_first=True, bidirectional=True, proj_size=3)
        self.blocks = nn.ModuleList([nn.GRU(6, 6), nn.Sequential(nn.RNN(6, 5, nonlinearity="relu"))])
        self.cells = nn.ModuleDict({"rnn": nn.RNNCell(6, 4, bias=False), "lstm": nn.LSTMCell(6, 4),
                                    "gru": nn.GRUCell(6, 4)})

    def forward(self, tokens):
        x = self.emb(tokens)
        outs = [self.encoder(x)[0]]
        x_t = x.transpose(0, 1)
        outs.append(self.blocks[0](x_t)[0])
        outs.append(self.blocks[1](x_t)[0])
        step = x[:, 0]
        outs += [self.cells["rnn"](step), *self.cells["lstm"](step), self.cells["gru"](step)]
        return outs


def test_convert_swaps_everything_and_keeps_parameters():
    model = Model().double().eval()
    tokens = torch.randint(0, 20, (3, 7))
    expected = model(tokens)
    params_before = dict(model.named_parameters())
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    assert fusedrnn.convert(model) is model
    assert type(model.encoder) is fusedrnn.LSTM and model.encoder.proj_size == 3
    assert type(model.blocks[0]) is fusedrnn.GRU
    assert type(model.blocks[1][0]) is fusedrnn.RNN and model.blocks[1][0].nonlinearity == "relu"
    assert type(model.cells["rnn"]) is fusedrnn.RNNCell and model.cells["rnn"].bias is False
    assert type(model.cells["lstm"]) is fusedrnn.LSTMCell and type(model.cells["gru"]) is fusedrnn.GRUCell
    assert not model.training and not model.encoder.training
    # The very same Parameter objects: optimizers built before the swap keep working.
    for name, p in model.named_parameters():
        assert p is params_before[name]
    assert list(model.state_dict()) == list(state_before)
    for a, b in zip(model(tokens), expected):
        assert_rel(a, b, 1e-10)

    sum(o.sum() for o in model(tokens)).backward()
    optimizer.step()
    assert not torch.equal(model.encoder.weight_hh_l0, state_before["encoder.weight_hh_l0"])

    # ...and back to torch.nn.
    fusedrnn.convert(model, to="torch")
    assert type(model.encoder) is nn.LSTM and type(model.cells["gru"]) is nn.GRUCell
    for name, p in model.named_parameters():
        assert p is params_before[name]


def test_convert_keeps_training_mode_dtype_and_requires_grad():
    model = nn.Sequential(nn.GRU(3, 4, 2, dropout=0.5)).to(torch.float64)
    model.train()
    model[0].weight_ih_l0.requires_grad_(False)
    fusedrnn.convert(model)
    gru = model[0]
    assert gru.training and gru.dropout == 0.5
    assert gru.weight_ih_l0.dtype == torch.float64 and not gru.weight_ih_l0.requires_grad


def test_convert_a_bare_recurrent_module_returns_the_new_one():
    lstm = nn.LSTM(3, 4)
    new = fusedrnn.convert(lstm)
    assert type(new) is fusedrnn.LSTM
    assert new.weight_ih_l0 is lstm.weight_ih_l0


def test_convert_keeps_tied_weights():
    model = nn.Sequential(nn.LSTM(3, 4, bidirectional=True))
    model[0].bias_ih_l0_reverse = model[0].bias_ih_l0
    fusedrnn.convert(model)
    assert model[0].bias_ih_l0_reverse is model[0].bias_ih_l0
    assert model[0]._flat_weights[model[0]._flat_weights_names.index("bias_ih_l0_reverse")] is model[0].bias_ih_l0


def test_convert_leaves_subclasses_and_parametrized_modules_with_a_warning():
    class MyLSTM(nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    model = nn.ModuleDict({"mine": MyLSTM(3, 4), "normed": nn.GRU(3, 4), "plain": nn.RNN(3, 4)})
    nn.utils.parametrizations.weight_norm(model["normed"], name="weight_hh_l0")
    with pytest.warns(UserWarning) as record:
        fusedrnn.convert(model)
    messages = " | ".join(str(w.message) for w in record)
    assert "left mine (MyLSTM) as it is: MyLSTM subclasses torch.nn.modules.rnn.LSTM" in messages
    assert "left normed" in messages and "parametrizations" in messages
    assert type(model["mine"]) is MyLSTM
    assert type(model["plain"]) is fusedrnn.RNN


def test_convert_leaves_unsupported_dtypes_with_a_warning():
    model = nn.Sequential(nn.LSTM(3, 4).to(torch.float8_e4m3fn))
    with pytest.warns(UserWarning, match="support float32, float64, float16 and bfloat16, not torch.float8_e4m3fn"):
        fusedrnn.convert(model)
    assert type(model[0]) is nn.LSTM


def test_convert_rejects_unknown_target():
    with pytest.raises(ValueError, match="to must be 'fusedrnn' or 'torch'"):
        fusedrnn.convert(nn.LSTM(3, 4), to="cudnn")


def test_convert_without_recurrent_modules_is_silent():
    model = nn.Sequential(nn.Linear(3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fusedrnn.convert(model) is model


class WeightDropout(nn.Module):
    """fastai's WeightDropout (text/models/awdlstm.py), as it behaves: the wrapped module's
    weight_hh_l0 Parameter moves to weight_hh_l0_raw on the wrapper, and before every forward the
    module gets a plain tensor in its place, the raw weight with dropout in training, a copy in eval."""

    def __init__(self, module, weight_p, layer_names=("weight_hh_l0",)):
        super().__init__()
        self.module, self.weight_p, self.layer_names = module, weight_p, list(layer_names)
        for layer in self.layer_names:
            w = getattr(self.module, layer)
            delattr(self.module, layer)
            self.register_parameter(f"{layer}_raw", nn.Parameter(w.data))
            setattr(self.module, layer, w.clone())
            if isinstance(self.module, nn.RNNBase):
                self.module.flatten_parameters = lambda: None

    def _setweights(self):
        for layer in self.layer_names:
            raw = getattr(self, f"{layer}_raw")
            setattr(self.module, layer, F.dropout(raw, p=self.weight_p) if self.training else raw.clone())

    def forward(self, *args):
        self._setweights()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # the weights are not flattened
            return self.module(*args)


class AWDStack(nn.Module):
    """fastai's AWD_LSTM encoder's recurrent part: single-layer LSTMs, each in a WeightDropout."""

    def __init__(self, sizes, weight_p=0.5):
        super().__init__()
        self.rnns = nn.ModuleList([WeightDropout(nn.LSTM(a, b, 1, batch_first=True), weight_p)
                                   for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):
        for rnn in self.rnns:
            x, _ = rnn(x)
        return x


def test_convert_swaps_lstms_inside_fastai_weight_dropout():
    torch.manual_seed(0)
    ref = AWDStack([6, 9, 9, 5], weight_p=0.5).double()
    torch.manual_seed(0)
    ours = AWDStack([6, 9, 9, 5], weight_p=0.5).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no module left behind
        fusedrnn.convert(ours)
    assert all(type(r.module) is fusedrnn.LSTM for r in ours.rnns)
    raw = [r.weight_hh_l0_raw for r in ours.rnns]
    assert all(isinstance(p, nn.Parameter) for p in raw)
    assert "rnns.0.module.weight_hh_l0" not in dict(ours.named_parameters())  # as in the torch.nn model
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(4, 7, 6, dtype=torch.float64)
    for training in (True, False):
        ref.train(training), ours.train(training)
        for _ in range(2):  # a new dropout mask each call, the same on both sides (same seed)
            seed = torch.randint(0, 2**31, ()).item()
            outs, grads = [], []
            for model in (ref, ours):
                model.zero_grad()
                torch.manual_seed(seed)
                out = model(x)
                (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
                outs.append(out.detach())
                grads.append([p.grad.clone() for p in model.parameters()])
            assert_rel(outs[1], outs[0], 1e-10, f"output, training={training}")
            for name_grad, g_ours, g_ref in zip([n for n, _ in ref.named_parameters()], grads[1], grads[0]):
                assert_rel(g_ours, g_ref, 1e-10, name_grad)
    # The masks really differ between calls in training (the comparison above saw dropout at work).
    ours.train()
    torch.manual_seed(1)
    a = ours(x)
    torch.manual_seed(2)
    assert not torch.equal(a, ours(x))
    # And back to torch.nn, still inside the wrappers.
    fusedrnn.convert(ours, to="torch")
    assert all(type(r.module) is nn.LSTM for r in ours.rnns)
    ours.eval(), ref.eval()
    assert_rel(ours(x), ref(x), 1e-10)


def test_convert_leaves_a_module_it_cannot_rebuild_with_a_warning():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4)
            del self.rnn.weight_ih_l0  # a state no torch.nn module is left in by its own code

    model = Odd()
    with pytest.warns(UserWarning, match=r"left rnn \(GRU\) as it is: it could not be rebuilt"):
        fusedrnn.convert(model)
    assert type(model.rnn) is nn.GRU
