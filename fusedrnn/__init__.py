"""fusedrnn: fused CPU (and CUDA) kernels for RNN, LSTM and GRU, with torch.nn semantics.

    import fusedrnn
    lstm = fusedrnn.LSTM(64, 128, num_layers=2)   # instead of torch.nn.LSTM
    model = fusedrnn.convert(model)               # or swap every recurrent module of a model
"""
import os

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _ops, functional  # noqa: F401
from ._ops import layer_backward, layer_forward
from .convert import convert
from .memory import cache_info, empty_cache
from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNNCellBase", "convert",
           "empty_cache", "cache_info", "functional", "layer_forward", "layer_backward"]

if os.environ.get("FUSEDRNN_EMULATE") == "1":  # the CUDA kernels, emulated on the CPU (fusedrnn.emulation)
    from . import emulation

    emulation.enable()
