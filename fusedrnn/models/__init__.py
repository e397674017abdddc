"""The documented models (shared/MODELS.md), in plain PyTorch, trainable with `python -m fusedrnn.train`.

Every model takes `rnn="fusedrnn"` or `rnn="torch"` to pick the recurrent layers it is built with.
"""
from .classifiers import CLASSIFIER_MODELS
from .human_numbers import HUMAN_NUMBERS_MODELS

MODELS = {**HUMAN_NUMBERS_MODELS, **CLASSIFIER_MODELS}

__all__ = ["MODELS"]
