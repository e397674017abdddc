"""Swap torch.nn recurrent modules inside a model for fusedrnn's, or back."""
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import modules as F

_TO_FUSED = {nn.RNN: F.RNN, nn.LSTM: F.LSTM, nn.GRU: F.GRU,
             nn.RNNCell: F.RNNCell, nn.LSTMCell: F.LSTMCell, nn.GRUCell: F.GRUCell}
_TO_TORCH = {v: k for k, v in _TO_FUSED.items()}
_CELL_TYPES = (nn.RNNCellBase, F.RNNCellBase)
_CPU_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _has_cuda_kernels():
    return torch._C._dispatch_has_kernel_for_dispatch_key("fusedrnn::layer_forward", "CUDA")


def _why_not(module, mapping, to):
    """Why `module` cannot be swapped, or None when it can."""
    if parametrize.is_parametrized(module):
        return "it has parametrizations (such as weight_norm); convert the model before registering them"
    if type(module) not in mapping:
        base = next(cls for cls in (*_TO_FUSED, *_TO_TORCH) if isinstance(module, cls))
        return (f"{type(module).__name__} subclasses {base.__module__}.{base.__name__} and may change its "
                "behaviour; only the exact classes are swapped")
    if to == "fusedrnn":
        weight = next(module.parameters(), None)
        if weight is not None:
            if weight.device.type == "cpu" and weight.dtype not in _CPU_DTYPES:
                return f"fusedrnn's CPU kernels support float32, float64, float16 and bfloat16, not {weight.dtype}"
            if weight.device.type not in ("cpu", "meta") and not (weight.device.type == "cuda" and _has_cuda_kernels()):
                return f"this build of fusedrnn has no kernels for {weight.device.type} tensors"
    return None


def _swap(old, cls):
    """A `cls` module with old's configuration, sharing old's Parameter objects (so optimizers
    built before the swap keep working), in old's training mode."""
    if isinstance(old, _CELL_TYPES):
        kwargs = dict(input_size=old.input_size, hidden_size=old.hidden_size, bias=old.bias)
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    else:
        kwargs = dict(input_size=old.input_size, hidden_size=old.hidden_size, num_layers=old.num_layers,
                      bias=old.bias, batch_first=old.batch_first, dropout=old.dropout,
                      bidirectional=old.bidirectional)
        if old.mode == "LSTM":
            kwargs["proj_size"] = old.proj_size
        names = list(old._flat_weights_names)
    if hasattr(old, "nonlinearity"):
        kwargs["nonlinearity"] = old.nonlinearity
    weight = getattr(old, "weight_ih", None) if isinstance(old, _CELL_TYPES) else old._flat_weights[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropout/num_layers warning was given when `old` was built
        new = cls(**kwargs, device="meta", dtype=weight.dtype if weight is not None else None)
    for name in names:
        value = getattr(old, name)
        if value is not None and not isinstance(value, nn.Parameter):
            # A weight held as a plain tensor, as fastai's WeightDropout leaves weight_hh_l0 (it keeps
            # the Parameter itself as weight_hh_l0_raw and sets a dropped-out copy every forward):
            # the new module holds it the same way, not as a registered Parameter.
            del new._parameters[name]
        setattr(new, name, value)
    if hasattr(new, "_init_flat_weights"):
        new._init_flat_weights()
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
                  "_load_state_dict_pre_hooks"):
        if hasattr(old, hooks):
            getattr(new, hooks).update(getattr(old, hooks))
    new.train(old.training)
    return new


def convert(model, to="fusedrnn"):
    """Replace every torch.nn RNN, LSTM, GRU, RNNCell, LSTMCell and GRUCell inside `model`, in
    place, by its fusedrnn counterpart (to="torch": the reverse), and return the model.

    Parameters are shared, not copied: weights, device, dtype, requires_grad, tying and any
    optimizer holding them stay as they were; so does the training mode. A module that cannot be
    swapped (a subclass, a parametrized module, a dtype or device fusedrnn does not support) is
    left as it is, with a warning that says why. When `model` is itself a recurrent module, the
    swapped module is returned.
    """
    if to not in ("fusedrnn", "torch"):
        raise ValueError(f"convert: to must be 'fusedrnn' or 'torch', got {to!r}")
    mapping = _TO_FUSED if to == "fusedrnn" else _TO_TORCH
    sources = tuple(_TO_FUSED if to == "fusedrnn" else _TO_TORCH)

    def leave(module, path, reason):
        warnings.warn(f"fusedrnn.convert: left {path or 'the model'} ({type(module).__name__}) as it is: {reason}",
                      stacklevel=4)
        return module

    def visit(module, path):
        if isinstance(module, sources):  # parametrized modules are (generated) subclasses too
            reason = _why_not(module, mapping, to)
            if reason is not None:
                return leave(module, path, reason)
            try:
                return _swap(module, mapping[type(module)])
            except Exception as e:  # noqa: BLE001 - a module in a state convert does not know stays as it is
                return leave(module, path, f"it could not be rebuilt ({type(e).__name__}: {e})")
        for name, child in list(module.named_children()):
            new = visit(child, f"{path}.{name}" if path else name)
            if new is not child:
                setattr(module, name, new)
        return module

    return visit(model, "")
