"""``softmax``: cross-entropy over the whole catalogue (RecBole's ``CE``), mean over targets."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss


@dataclasses.dataclass(frozen=True)
class SoftmaxConfig:
    """Full softmax has no knobs."""


@LOSSES.register("softmax", SoftmaxConfig)
class FullSoftmaxLoss(RetrievalLoss):
    """``mean_t -log softmax(q_t · C[1:]ᵀ)[pos_t - 1]``: real items are negatives, padding never.

    Scoring against ``candidates[1:]`` (and shifting labels by one) leaves the
    padding row out of the normaliser, exactly as a -inf logit would, without
    building a masked ``[T, N]`` copy; the sparse cross-entropy never builds
    one-hot labels either.
    """

    def call(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """Mean over ``query [T, D]`` of the cross-entropy of ``positive_ids [T]`` (never 0)."""
        logits = tf.linalg.matmul(query, candidates[1:], transpose_b=True)  # [T, N - 1]: no row 0
        labels = tf.cast(positive_ids, tf.int32) - 1  # [T]
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)  # [T]
        return tf.reduce_mean(losses)
