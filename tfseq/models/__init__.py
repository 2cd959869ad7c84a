"""Models: the MODELS registry (keys are the CLI words) and the model modules that fill it."""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfseq.registry import Registry

MODELS: Registry = Registry("model")

# Explicit imports register every model; a new model module is added here.
from tfseq.models import cnn, core, difsr, gru4rec, hrm, lstm, pooling, pop, sasrec, sasrec_f  # noqa: E402,F401

__all__ = ["MODELS"]
