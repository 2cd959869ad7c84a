"""Losses: the LOSSES registry (keys are the CLI words) and the loss modules that fill it."""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfseq.registry import Registry

LOSSES: Registry = Registry("loss")

# Explicit imports register every loss; a new loss module is added here.
from tfseq.losses import bpr, full_softmax, hinge, sampled_softmax  # noqa: E402,F401

__all__ = ["LOSSES"]
