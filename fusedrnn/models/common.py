"""What the model definitions share: picking the recurrent layer classes, and the task record the
trainer consumes."""
from dataclasses import dataclass, field
from typing import Callable

import torch

import fusedrnn


def rnn_classes(rnn):
    """The namespace a model takes its recurrent layers from: fusedrnn's or torch.nn's."""
    if rnn == "fusedrnn":
        return fusedrnn
    if rnn == "torch":
        return torch.nn
    raise ValueError(f"rnn must be 'fusedrnn' or 'torch', got {rnn!r}")


@dataclass
class Task:
    """A model with its data and training recipe, as the seed trains it.

    data(data_dir=None) -> (train_batches, valid_batches), lists of (inputs tuple, target), loaded first;
    build(rnn, device) -> model;
    loss(output, target) -> scalar; accuracy(output, target) -> (correct, total);
    the model may define reset() (called before training and before validation each epoch)."""
    name: str
    description: str
    build: Callable
    data: Callable
    loss: Callable
    accuracy: Callable
    epochs: int
    lr: float
    wd: float = 0.01  # fastai's default weight decay (decoupled, as in AdamW)
    clip: float = None
    extra: dict = field(default_factory=dict)
