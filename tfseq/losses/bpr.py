"""``bpr``: pairwise BPR over sampled negatives, as a Keras loss inside ``tfrs.tasks.Retrieval``.

``-mean log σ(s_pos - s_neg)`` over (positive, sampled negative) pairs (Rendle
et al., UAI 2009). As in RecBole's BPR, every positive gets negatives of its
own: ``num_negatives`` (default 1) independent draws from the sampler per
query, not a set shared by the batch. The layout inside ``Retrieval``, the
chunks and the accidental hits are those of every pairwise loss
(:mod:`tfseq.losses.pairwise`).

Deviation from RecBole: its sampler re-draws negatives the user has interacted
with; here a negative equal to the row's positive (an accidental hit) is left
out of the mean, other history items are not.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.losses.configs import BPRConfig
from tfseq.losses.pairwise import PairwiseLoss, PairwiseRetrievalLoss


class PairwiseBPR(PairwiseLoss):
    """BPR on Retrieval's per-row negative blocks: the mean of ``-log σ(s_pos - s_neg)`` over the valid
    (positive, negative) pairs (:class:`~tfseq.losses.pairwise.PairwiseLoss`)."""

    def __init__(self, name: str = "pairwise_bpr") -> None:
        super().__init__(name=name)

    def terms(self, positive: tf.Tensor, negative: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.nn.softplus(tf.where(valid, negative - positive, 0.0)), valid  # -log σ(pos - neg)


class BPRLoss(PairwiseRetrievalLoss):
    """BPR with ``num_negatives`` sampled negatives per positive, mean over pairs.

    Attributes:
      sampler: the :class:`~tfseq.losses.samplers.ItemSampler` of the negatives.
      task: the ``tfrs.tasks.Retrieval`` computing the loss with :class:`PairwiseBPR`.
    """

    def __init__(self, config: BPRConfig, **kwargs: Any) -> None:
        super().__init__(config, PairwiseBPR(), **kwargs)
