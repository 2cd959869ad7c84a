"""``hinge`` and ``adaptive_hinge``: Spotlight's pairwise hinge losses over sampled negatives, inside
``tfrs.tasks.Retrieval``.

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight), ``hinge_loss``
and ``adaptive_hinge_loss``:

* ``hinge``: ``mean max(0, margin - s_pos + s_neg)`` over (positive, sampled
  negative) pairs;
* ``adaptive_hinge``: each positive is paired with the *highest-scoring* of its
  ``num_negatives`` sampled negatives only -- the one closest to breaking the
  ranking -- and the hinge of that pair is averaged over positives. It
  approximates WARP (Weston et al., "WSABIE: Scaling Up To Large Vocabulary
  Image Annotation", IJCAI 2011) with a fixed number of draws.

Defaults are Spotlight's: margin 1, one uniform negative per positive for
``hinge``, five for ``adaptive_hinge`` (its ``num_negative_samples``).

The layout inside ``Retrieval``, the chunks (the loss does not depend on
``chunk_size``) and the accidental hits are those of every pairwise loss
(:mod:`tfseq.losses.pairwise`).

Deviations from Spotlight: negatives are drawn from items ``1 .. N-1``
(Spotlight's sampler can draw the padding item), and with
``remove_accidental_hits`` a negative equal to the row's positive is left out
(of the pairs for ``hinge``, of the maximum for ``adaptive_hinge``; a row whose
negatives are all hits is left out of the mean). Spotlight keeps such pairs.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.losses.configs import AdaptiveHingeConfig, HingeConfig  # noqa: F401
from tfseq.losses.pairwise import PairwiseLoss, PairwiseRetrievalLoss


class PairwiseHinge(PairwiseLoss):
    """Hinge on Retrieval's per-row negative blocks (:class:`~tfseq.losses.pairwise.PairwiseLoss`).

    The mean of ``max(0, margin - s_pos + s_neg)`` over the valid pairs, or with
    ``adaptive`` over the rows with a valid negative, each paired with its
    highest-scoring one.

    Args:
      margin: the hinge's margin.
      adaptive: pair each row with its highest-scoring negative only.
    """

    def __init__(self, margin: float = 1.0, adaptive: bool = False, name: str = "pairwise_hinge") -> None:
        super().__init__(name=name)
        self.margin = float(margin)
        self.adaptive = bool(adaptive)

    def terms(self, positive: tf.Tensor, negative: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.adaptive:
            # masked scores (about -3.4e36) never win the max of a row that has a valid negative
            negative = tf.reduce_max(negative, axis=1, keepdims=True)  # [T, 1]
            valid = tf.reduce_any(valid, axis=1, keepdims=True)
        return tf.nn.relu(self.margin - positive + tf.where(valid, negative, 0.0)), valid


class _HingeBase(PairwiseRetrievalLoss):
    """Samples ``num_negatives`` per positive and averages :class:`PairwiseHinge` over the chunks.

    Attributes:
      sampler: the :class:`~tfseq.losses.samplers.ItemSampler` of the negatives.
      task: the ``tfrs.tasks.Retrieval`` computing the loss with :class:`PairwiseHinge`.
    """

    adaptive = False

    def __init__(self, config: HingeConfig, **kwargs: Any) -> None:
        super().__init__(config, PairwiseHinge(config.margin, self.adaptive), **kwargs)

    def counted(self, kept: tf.Tensor) -> tf.Tensor:
        """The kept pairs (``hinge``), or with ``adaptive`` the rows with a kept pair ``[T, 1]``."""
        return tf.reduce_any(kept, axis=1, keepdims=True) if self.adaptive else kept


class HingeLoss(_HingeBase):
    """Spotlight's hinge: ``max(0, margin - s_pos + s_neg)``, mean over (positive, negative) pairs."""


class AdaptiveHingeLoss(_HingeBase):
    """Spotlight's adaptive hinge: each positive against its highest-scoring sampled negative."""

    adaptive = True
