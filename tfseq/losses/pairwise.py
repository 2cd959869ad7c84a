"""What the pairwise losses (``bpr``, ``hinge``, ``adaptive_hinge``) share: per-row sampled negatives, their
layout inside ``tfrs.tasks.Retrieval``, and the chunked Retrieval calls.

Every positive gets negatives of its own: ``num_negatives`` (``M``) independent
draws from the sampler per query, not a set shared by the batch. Layout handed
to ``Retrieval`` for ``T`` queries: the ``T`` positives, then ``T * M``
negatives, row ``t``'s at columns ``T + t*M .. T + t*M + M - 1``. A
:class:`PairwiseLoss` reads only each row's positive (its one-hot label) and
its own ``M`` negative columns; the in-batch columns ``< T`` are not negatives.
With ``remove_accidental_hits`` a negative equal to the row's positive (which
``Retrieval`` masks to about -3.4e36 given ``candidate_ids``) is left out; other
items of the user's history are not.

Cost: one ``Retrieval`` call would score a ``[T, T + T*M]`` matrix, of which a
pairwise loss uses ``T * (M + 1)`` entries; with causal models ``T`` is every
target of the batch (up to ``batch_size * max_seq_len``). The queries are
therefore scored in equal chunks of at most ``chunk_size`` rows, one Retrieval
call each (:func:`~tfseq.losses.base.sum_over_row_chunks`), at most
``T * chunk_size * (M + 1)`` scores in all. Every row's negatives are its own,
so the loss does not depend on ``chunk_size``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.losses.base import SampledNegativesLoss, sum_over_row_chunks

# Retrieval adds tfrs.layers.loss.MIN_FLOAT (float32 min / 100) to masked scores; a score below
# half of it can only be a masked one.
MASKED_BELOW = float(tfrs.layers.loss.MIN_FLOAT) / 2


class PairwiseLoss(tf.keras.losses.Loss):
    """A mean of terms over Retrieval's ``(y_true [T, C], y_pred [T, C])`` with per-row negative blocks.

    ``y_true`` is one-hot at each row's positive; columns ``>= T`` are the
    sampled negatives, ``M = (C - T) / T`` per row, row ``t``'s at
    ``T + t*M ..``. Masked scores (accidental hits) are left out.

    ``call`` returns the mean over the valid terms as a scalar (0 when there is
    none), so the reduction (``SUM`` of one value: Keras refuses
    ``SUM_OVER_BATCH_SIZE`` inside a ``tf.distribute`` strategy) leaves it
    unchanged and a row whose negatives were all hits does not dilute the mean.
    It does not take ``sample_weight``.
    Subclasses say what the terms are (:meth:`terms`).
    """

    def __init__(self, name: str) -> None:
        super().__init__(reduction=tf.keras.losses.Reduction.SUM, name=name)

    def terms(self, positive: tf.Tensor, negative: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The terms of the mean and where they are valid, from ``positive [T, 1]`` scores and the rows' own
        ``negative [T, M]`` scores, valid where ``valid [T, M]`` holds."""
        raise NotImplementedError

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        num_queries = tf.shape(y_pred)[0]
        tf.debugging.assert_equal(
            tf.shape(y_pred)[1] % tf.maximum(num_queries, 1), 0,
            message=f"{type(self).__name__} expects T + T*M columns for T queries",
        )
        positive = tf.reduce_sum(y_true * y_pred, axis=1, keepdims=True)  # [T, 1]
        blocks = tf.reshape(y_pred[:, num_queries:], [num_queries, num_queries, -1])  # [T, T, M]
        negative = tf.gather(blocks, tf.range(num_queries), axis=1, batch_dims=1)  # [T, M]: row t's own
        losses, valid = self.terms(positive, negative, negative > MASKED_BELOW)
        weights = tf.cast(valid, y_pred.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))


class PairwiseRetrievalLoss(SampledNegativesLoss):
    """Samples ``num_negatives`` per positive and averages a :class:`PairwiseLoss` over the chunks.

    The config has ``num_negatives``, ``sampler``, ``remove_accidental_hits`` and
    ``chunk_size`` (see :func:`check_pairwise_config`).

    Args:
      config: the loss's frozen config dataclass.
      pairwise: the mean the ``Retrieval`` task computes on each chunk.

    Attributes:
      sampler: the :class:`~tfseq.losses.samplers.ItemSampler` of the negatives.
      task: the ``tfrs.tasks.Retrieval`` computing the loss with ``pairwise``.
    """

    def __init__(self, config: Any, pairwise: PairwiseLoss, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.task = tfrs.tasks.Retrieval(loss=pairwise, remove_accidental_hits=config.remove_accidental_hits)

    def sample_negatives(self, positive_ids: tf.Tensor) -> tf.Tensor:
        """``[T * M]`` draws, row-major: row t's ``M`` first."""
        num_pairs = tf.shape(positive_ids, out_type=tf.int64)[0] * self.config.num_negatives
        negative_ids, _ = self.sampler.sample(num_pairs)
        return negative_ids

    def counted(self, kept: tf.Tensor) -> tf.Tensor:
        """Which terms the mean counts, from the pairs ``kept [T, M]`` (all, or all but accidental hits):
        every kept pair by default."""
        return kept

    def loss_given_negatives(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        negative_ids: tf.Tensor,
    ) -> tf.Tensor:
        """The loss with the negatives ``negative_ids [T * M]`` given instead of sampled.

        Args:
          query: ``[T, D]`` queries.
          positive_ids: ``[T]`` their true next items.
          candidates: ``[N, D]`` the candidate table.
          negative_ids: ``[T * M]`` negatives, row ``t``'s at ``t*M .. t*M + M - 1``
            (``M = num_negatives``).

        Returns:
          The scalar mean of the :class:`PairwiseLoss` terms over the batch's valid ones.
        """
        hits = self.config.remove_accidental_hits
        positive_ids = tf.cast(positive_ids, tf.int64)
        negatives = tf.reshape(tf.cast(negative_ids, tf.int64), [-1, self.config.num_negatives])  # [T, M]
        tf.debugging.assert_equal(
            tf.shape(negatives)[0], tf.shape(positive_ids)[0],
            message=f"{type(self).__name__} expects num_negatives={self.config.num_negatives} negatives per "
                    f"positive",
        )
        kept = tf.not_equal(negatives, positive_ids[:, tf.newaxis]) if hits else tf.ones_like(negatives, tf.bool)
        kept = self.counted(kept)  # [T, M] or [T, 1]

        def chunk_sum(query: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor, kept: tf.Tensor,
                      valid: tf.Tensor) -> tf.Tensor:
            """The chunk's sum of terms: Retrieval's mean x the number of terms it averaged."""
            ids = tf.concat([positives, tf.reshape(negatives, [-1])], axis=0)  # [c + c*M]
            mean = self.task(
                query,
                tf.gather(candidates, ids),  # [c + c*M, D]
                candidate_ids=ids if hits else None,
                score_mask=tf.broadcast_to(valid[:, tf.newaxis], [tf.shape(valid)[0], tf.shape(ids)[0]]),
                compute_metrics=False,
                compute_batch_metrics=False,
            )
            return mean * tf.reduce_sum(tf.cast(kept & valid[:, tf.newaxis], mean.dtype))

        total = sum_over_row_chunks(chunk_sum, (query, positive_ids, negatives, kept), self.config.chunk_size)
        return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(kept, total.dtype)))
