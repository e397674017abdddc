"""Drop-in replacements for torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell and GRUCell.

Same constructor arguments and validation, the same parameters (names, shapes, order,
initialisation: the same seed gives bit-identical weights), the same state_dict, forward
semantics and error messages as torch.nn (shared/CONTRACT.md); the computation runs in fusedrnn's
fused layer ops. The classes derive from nn.Module, not nn.RNNBase, so that torch.compile traces
them instead of breaking the graph at every recurrent module.
"""
import math
import numbers
import warnings
import weakref

import torch
from torch import Tensor, nn
from torch.nn import Parameter, init
from torch.nn.utils.rnn import PackedSequence

from . import functional as FR
from . import _ops


def _tracing():
    """True while torch.compile or torch.export traces the caller."""
    compiler = getattr(torch, "compiler", None)
    checks = [getattr(compiler, name, None) for name in ("is_compiling", "is_exporting")]
    return any(check is not None and check() for check in checks)

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_CELL = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _check_type(name, value, kind):
    if not isinstance(value, kind):
        raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")


def _check_device(input, weight):
    if input.device != weight.device:
        raise RuntimeError(
            "Input and parameter tensors are not at the same device, found input tensor at "
            f"{input.device} and parameter tensor at {weight.device}"
        )


class RNNBase(nn.Module):
    """Multi-layer recurrent network over fusedrnn's layer ops; `mode` is 'LSTM', 'GRU',
    'RNN_TANH' or 'RNN_RELU'. Use RNN, LSTM or GRU."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=2)
        _check_type("bias", bias, bool)
        _check_type("batch_first", batch_first, bool)
        _check_type("input_size", input_size, int)
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        _check_type("hidden_size", hidden_size, int)
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")

        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._flat_weight_refs = []

        factory = {"device": device, "dtype": dtype}
        gates = _GATES[mode] * hidden_size
        out_size = proj_size or hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
                in_size = input_size if layer == 0 else out_size * (2 if bidirectional else 1)
                shapes = {"weight_ih": (gates, in_size), "weight_hh": (gates, out_size)}
                if bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(torch.empty(shape, **factory)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self._init_flat_weights()
        self.reset_parameters()

    # -- weights -------------------------------------------------------------------------------
    # _flat_weights mirrors the weight attributes in torch.nn's order; __setattr__ keeps it in
    # sync (weight tying), and the weak references detect substitutions made behind its back
    # (torch.func.functional_call, parametrizations), as torch.nn does.
    def _init_flat_weights(self):
        self._flat_weights = [getattr(self, n) if hasattr(self, n) else None for n in self._flat_weights_names]
        self._flat_weight_refs = [weakref.ref(w) if w is not None else None for w in self._flat_weights]

    def __setattr__(self, attr, value):
        if hasattr(self, "_flat_weights_names") and attr in self._flat_weights_names:
            self._flat_weights[self._flat_weights_names.index(attr)] = value
        super().__setattr__(attr, value)

    def flatten_parameters(self):
        """A no-op kept for compatibility: fusedrnn reads the weights where they are."""

    def _weights_have_changed(self):
        for ref, name in zip(self._flat_weight_refs, self._flat_weights_names):
            weight = getattr(self, name) if hasattr(self, name) else None
            if weight is not None and ref is not None and ref() is not weight:
                return True
        return False

    def _update_flat_weights(self):
        if self._weights_have_changed():
            self._init_flat_weights()

    def _forward_weights(self):
        """The weights a forward call uses. While torch.compile or torch.export traces it, the
        parameters are stand-ins: read them without reassigning _flat_weights (an attribute set
        inside a traced forward is a side effect that export warns about)."""
        if _tracing():
            return [getattr(self, n) if hasattr(self, n) else None for n in self._flat_weights_names]
        self._update_flat_weights()
        return self._flat_weights

    def _apply(self, fn, recurse=True):
        self._flat_weight_refs = []
        result = super()._apply(fn, recurse)
        self._init_flat_weights()
        return result

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    @property
    def all_weights(self):
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def __getstate__(self):
        self._update_flat_weights()
        state = self.__dict__.copy()
        state.pop("_flat_weight_refs", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._flat_weight_refs = [weakref.ref(w) if w is not None else None for w in self._flat_weights]

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        replica._flat_weights = replica._flat_weights[:]
        replica._flat_weights_names = replica._flat_weights_names[:]
        return replica

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # -- forward -------------------------------------------------------------------------------
    def _expected_sizes(self, batch):
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return (layers, batch, self.proj_size or self.hidden_size), (layers, batch, self.hidden_size)

    def _check_input(self, input, packed):
        weight = self._flat_weights[0]
        if input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled() and packed and self.mode == "LSTM":
            # torch.nn.LSTM checks no dtype on packed input: its first product fails.
            names = {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half", torch.bfloat16: "BFloat16"}
            raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {names.get(input.dtype, input.dtype)} "
                               f"and {names.get(weight.dtype, weight.dtype)}")
        if input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
            )
        expected_dim = 2 if packed else 3
        if input.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}"
            )

    @staticmethod
    def _check_hidden(hx, expected, msg="Expected hidden size {}, got {}"):
        if tuple(hx.shape) != expected:
            raise RuntimeError(msg.format(expected, list(hx.size())))

    def forward(self, input, hx=None):
        weights = self._forward_weights()
        lstm = self.mode == "LSTM"
        name = {"LSTM": "LSTM", "GRU": "GRU"}.get(self.mode, "RNN")
        packed = isinstance(input, PackedSequence)
        is_batched = True
        if packed:
            # functional.rnn applies sorted_indices / unsorted_indices; only the rows and sizes are checked here.
            data, batch_sizes = input.data, input.batch_sizes
            if batch_sizes.device.type != "cpu" or batch_sizes.dtype != torch.int64 or batch_sizes.dim() != 1:
                raise ValueError("PackedSequence.batch_sizes must be a 1-D CPU int64 tensor, got "
                                 f"{batch_sizes.dtype} on {batch_sizes.device}")
            batch = FR.first_batch_size(batch_sizes) if batch_sizes.numel() else 0
        else:
            data = input
            if data.dim() not in (2, 3):
                tensor = " tensor" if name == "RNN" else ""
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {data.dim()}D{tensor} instead")
            is_batched = data.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                data = data.unsqueeze(batch_dim)
            if hx is not None:
                states = hx if lstm else (hx,)
                dims = tuple(s.dim() for s in states)
                want = 3 if is_batched else 2
                if any(d != want for d in dims):
                    kind = "batched 3-D" if is_batched else "unbatched 2-D"
                    if lstm:
                        raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                           f"({dims[0]}-D, {dims[1]}-D) tensors")
                    raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {dims[0]}-D tensor")
                if not is_batched:
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if lstm else hx.unsqueeze(1)
            batch = data.size(0) if self.batch_first else data.size(1)

        self._check_input(data, packed)
        h_size, c_size = self._expected_sizes(batch)
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("LSTM expects hx as a tuple (h_0, c_0)")
                self._check_hidden(hx[0], h_size, "Expected hidden[0] size {}, got {}")
                self._check_hidden(hx[1], c_size, "Expected hidden[1] size {}, got {}")
            else:
                self._check_hidden(hx, h_size)
        if not packed and data.size(1 if self.batch_first else 0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        for w in weights:
            _check_device(data, w)
        if hx is not None:
            for s in (hx if lstm else (hx,)):
                _check_device(s, weights[0])

        output, state = FR.rnn(
            _CELL[self.mode], input if packed else data, hx, weights, num_layers=self.num_layers,
            bias=self.bias, bidirectional=self.bidirectional, dropout=self.dropout, training=self.training,
            batch_first=self.batch_first,
        )
        if not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = (state[0].squeeze(1), state[1].squeeze(1)) if lstm else state.squeeze(1)
        return output, state


class RNN(RNNBase):
    """Drop-in for torch.nn.RNN: RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh',
    bias=True, batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)


class LSTM(RNNBase):
    """Drop-in for torch.nn.LSTM, projections (proj_size) included."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Drop-in for torch.nn.GRU."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


class RNNCellBase(nn.Module):
    """One step of a recurrent cell; the step runs as a one-step fused layer op."""

    _name = "RNNCell"
    _cell = "rnn_tanh"

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(torch.empty((num_chunks * hidden_size, input_size), **factory))
        self.weight_hh = Parameter(torch.empty((num_chunks * hidden_size, hidden_size), **factory))
        if bias:
            self.bias_ih = Parameter(torch.empty(num_chunks * hidden_size, **factory))
            self.bias_hh = Parameter(torch.empty(num_chunks * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += f", bias={self.bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def _step(self, input, states):
        """Checks as torch.nn's cells do (same messages), then runs one fused step."""
        if input.dim() not in (1, 2):
            raise ValueError(f"{self._name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        lstm = len(states) == 2
        for idx, s in enumerate(states):
            if s is not None and s.dim() not in (1, 2):
                what = f"hx[{idx}]" if lstm else "hidden"
                raise ValueError(f"{self._name}: Expected {what} to be 1D or 2D, got {s.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if states[0] is None:
            zeros = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
            states = (zeros,) * len(states)
        elif not is_batched:
            states = tuple(s.unsqueeze(0) for s in states)
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected {self.input_size}")
        for idx, s in enumerate(states):
            if input.size(0) != s.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{idx} batch size {s.size(0)}")
            if s.size(1) != self.hidden_size:
                raise RuntimeError(f"hidden{idx} has inconsistent hidden_size: got {s.size(1)}, "
                                   f"expected {self.hidden_size}")
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        for w in [*states, *weights]:
            if w is not None and w.device != input.device:
                raise RuntimeError(f"Tensor on device {w.device} is not on the expected device {input.device}!")
        dtype = FR.autocast_dtype(self._cell, input.device.type, layer=False)
        if dtype is not None:  # as torch.nn's cell under autocast (see functional.autocast_dtype)
            input, states = input.to(dtype), tuple(s.to(dtype) for s in states)
            weights = [w.to(dtype) if w is not None else None for w in weights]
        if input.dtype != weights[0].dtype:
            raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {_scalar_name(input.dtype)} "
                               f"and {_scalar_name(weights[0].dtype)}")
        train = FR._needs_grad([input, *states, *weights])
        out, hy, cy, _ = _ops.layer_op(self._cell, input.unsqueeze(0), None, states[0],
                                       states[1] if lstm else None, *weights, None, False, train)
        result = (hy, cy) if lstm else hy
        if not is_batched:
            result = (hy.squeeze(0), cy.squeeze(0)) if lstm else hy.squeeze(0)
        return result


def _scalar_name(dtype):
    return {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half",
            torch.bfloat16: "BFloat16"}.get(dtype, str(dtype))


class RNNCell(RNNCellBase):
    """Drop-in for torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh')."""

    _name = "RNNCell"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    @property
    def _cell(self):
        return "rnn_" + self.nonlinearity

    def forward(self, input: Tensor, hx: Tensor = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return self._step(input, (hx,))


class LSTMCell(RNNCellBase):
    """Drop-in for torch.nn.LSTMCell(input_size, hidden_size, bias=True)."""

    _name = "LSTMCell"
    _cell = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._step(input, (None, None) if hx is None else tuple(hx))


class GRUCell(RNNCellBase):
    """Drop-in for torch.nn.GRUCell(input_size, hidden_size, bias=True)."""

    _name = "GRUCell"
    _cell = "gru"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._step(input, (hx,))
