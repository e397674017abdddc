"""fusedrnn: fused CPU (and CUDA) kernels for RNN, LSTM and GRU, with torch.nn semantics."""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _ops, functional  # noqa: F401
from ._ops import layer_backward, layer_forward

__version__ = "0.1.0"
__all__ = ["functional", "layer_forward", "layer_backward"]
