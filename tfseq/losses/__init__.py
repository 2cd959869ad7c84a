"""Losses: the LOSSES registry (keys are the CLI words): each loss's config and its class.

As :mod:`tfseq.models`: configs from :mod:`tfseq.losses.configs` (no
TensorFlow), classes as ``"module:Class"``, imported when first built. A new
loss is one more line here.
"""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfseq.losses import configs as c
from tfseq.registry import Registry

LOSSES: Registry = Registry("loss")
LOSSES.add("adaptive_hinge", c.AdaptiveHingeConfig, "tfseq.losses.hinge:AdaptiveHingeLoss")
LOSSES.add("bpr", c.BPRConfig, "tfseq.losses.bpr:BPRLoss")
LOSSES.add("hinge", c.HingeConfig, "tfseq.losses.hinge:HingeLoss")
LOSSES.add("sampled_softmax", c.SampledSoftmaxConfig, "tfseq.losses.sampled_softmax:SampledSoftmaxLoss")
LOSSES.add("softmax", c.SoftmaxConfig, "tfseq.losses.softmax:FullSoftmaxLoss")

__all__ = ["LOSSES"]
