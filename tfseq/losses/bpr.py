"""``bpr``: pairwise BPR over sampled negatives, as a Keras loss inside ``tfrs.tasks.Retrieval``.

``-mean log σ(s_pos - s_neg)`` over (positive, sampled negative) pairs (Rendle
et al., UAI 2009). As in RecBole's BPR, every positive gets negatives of its
own: ``num_negatives`` (default 1) independent draws from the sampler per
query, not a set shared by the batch.

Layout handed to ``Retrieval`` for ``T`` queries and ``M = num_negatives``: the
``T`` positives, then ``T * M`` negatives, row ``t``'s at columns
``T + t*M .. T + t*M + M - 1``. :class:`PairwiseBPR` reads only each row's
positive (its one-hot label) and its own ``M`` negative columns; the in-batch
columns ``< T`` are not negatives for BPR. Deviation from RecBole: its sampler
re-draws negatives the user has interacted with; here a negative equal to the
row's positive (an accidental hit, which ``Retrieval`` masks to about -3.4e36
given ``candidate_ids``) is left out of the mean, other history items are not.

Cost: one ``Retrieval`` call would score a ``[T, T + T*M]`` matrix, of which
BPR uses ``T * (M + 1)`` entries; with causal models ``T`` is every target of
the batch (up to ``batch_size * max_seq_len``). The queries are therefore
scored in equal chunks of at most ``chunk_size`` rows, one Retrieval call each
(:func:`~tfseq.losses.base.sum_over_row_chunks`), at most ``T * chunk_size * (M + 1)``
scores in all. Every row's negatives are its own, so the loss does not depend
on ``chunk_size``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss, sum_over_row_chunks
from tfseq.losses.samplers import SAMPLERS, ItemSampler

# Retrieval adds tfrs.layers.loss.MIN_FLOAT (float32 min / 100) to masked scores; a score below
# half of it can only be a masked one.
MASKED_BELOW = float(tfrs.layers.loss.MIN_FLOAT) / 2


@dataclasses.dataclass(frozen=True)
class BPRConfig:
    """Attributes:
    num_negatives: negatives drawn for each positive (RecBole: 1).
    sampler: "uniform" or "popularity" (smoothed training counts).
    remove_accidental_hits: leave out sampled negatives equal to the row's positive.
    chunk_size: queries per Retrieval call (memory and speed only; the loss is the same).
    """

    num_negatives: int = 1
    sampler: str = "uniform"
    remove_accidental_hits: bool = True
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"bpr needs num_negatives >= 1, got {self.num_negatives}")
        if self.chunk_size < 1:
            raise ConfigError(f"bpr needs chunk_size >= 1, got {self.chunk_size}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


class PairwiseBPR(tf.keras.losses.Loss):
    """BPR on Retrieval's ``(y_true [T, C], y_pred [T, C])`` with per-row negative blocks.

    ``y_true`` is one-hot at each row's positive; columns ``>= T`` are the
    sampled negatives, ``M = (C - T) / T`` per row, row ``t``'s at
    ``T + t*M ..``. Masked scores (accidental hits) are left out.

    ``call`` returns the mean over the batch's valid pairs as a scalar (0 when
    there is none), so the reduction leaves it unchanged and a row whose
    negatives were all hits does not dilute the mean. It does not take
    ``sample_weight``.
    """

    def __init__(self, name: str = "pairwise_bpr") -> None:
        super().__init__(reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE, name=name)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        num_queries = tf.shape(y_pred)[0]
        tf.debugging.assert_equal(
            tf.shape(y_pred)[1] % tf.maximum(num_queries, 1), 0,
            message="PairwiseBPR expects T + T*M columns for T queries",
        )
        positive = tf.reduce_sum(y_true * y_pred, axis=1, keepdims=True)  # [T, 1]
        blocks = tf.reshape(y_pred[:, num_queries:], [num_queries, num_queries, -1])  # [T, T, M]
        # [T, M]: row t's own block blocks[t, t]
        negative = tf.gather(blocks, tf.range(num_queries), axis=1, batch_dims=1)
        valid = negative > MASKED_BELOW
        pair_losses = tf.nn.softplus(tf.where(valid, negative - positive, 0.0))  # -log σ(pos - neg)
        weights = tf.cast(valid, y_pred.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(pair_losses * weights), tf.reduce_sum(weights))


@LOSSES.register("bpr", BPRConfig)
class BPRLoss(RetrievalLoss):
    """BPR with ``num_negatives`` sampled negatives per positive, mean over pairs.

    Attributes:
      sampler: the :class:`ItemSampler` of the negatives.
      task: the ``tfrs.tasks.Retrieval`` computing the loss with :class:`PairwiseBPR`.
    """

    def __init__(self, config: BPRConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.sampler = ItemSampler(self.item_counts, config.sampler)
        self.task = tfrs.tasks.Retrieval(
            loss=PairwiseBPR(), remove_accidental_hits=config.remove_accidental_hits
        )

    def call(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        num_pairs = tf.shape(positive_ids, out_type=tf.int64)[0] * self.config.num_negatives
        negative_ids, _ = self.sampler.sample(num_pairs)  # [T * M], row-major: row t's M first
        return self.loss_given_negatives(query, positive_ids, candidates, negative_ids)

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
          The scalar mean of ``-log σ(s_pos - s_neg)`` over the valid pairs.
        """
        hits = self.config.remove_accidental_hits
        positive_ids = tf.cast(positive_ids, tf.int64)
        negatives = tf.reshape(tf.cast(negative_ids, tf.int64), [-1, self.config.num_negatives])  # [T, M]
        tf.debugging.assert_equal(
            tf.shape(negatives)[0], tf.shape(positive_ids)[0],
            message=f"bpr expects num_negatives={self.config.num_negatives} negatives per positive",
        )
        kept = tf.not_equal(negatives, positive_ids[:, tf.newaxis]) if hits else tf.ones_like(negatives, tf.bool)

        def chunk_sum(query: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor, kept: tf.Tensor,
                      valid: tf.Tensor) -> tf.Tensor:
            """Sum of the chunk's pair losses: Retrieval's mean over its valid pairs x their count."""
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
