"""Shared helpers for the test suite: torch.nn references and error measures."""
import torch
from torch import nn

# cell name -> (torch.nn class, constructor kwargs)
NN = {
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
CELLS = tuple(NN)


def make_nn(cell, input_size, hidden_size, dtype=torch.float64, **kwargs):
    cls, extra = NN[cell]
    return cls(input_size, hidden_size, dtype=dtype, **extra, **kwargs)


def rel_err(actual, expected):
    """Max-norm error relative to the reference's largest magnitude (at least 1)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.numel() == 0:
        return 0.0
    expected = expected.to(torch.float64)
    err = (actual.to(torch.float64) - expected).abs().max().item()
    return err / max(1.0, expected.abs().max().item())


def assert_rel(actual, expected, tol, what=""):
    e = rel_err(actual, expected)
    assert e <= tol, f"{what}: relative error {e:.3e} > {tol:.1e}"


def random_lengths(batch, max_len, gen=None):
    """Lengths in [1, max_len], always including 1 and max_len when batch >= 2."""
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    if batch >= 2:
        lengths[0] = 1
        lengths[-1] = max_len
    return lengths[torch.randperm(batch, generator=gen)]
