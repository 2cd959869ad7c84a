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

The layout handed to ``Retrieval`` is BPR's (:mod:`tfseq.losses.bpr`): for
``T`` queries and ``M = num_negatives``, the ``T`` positives, then row ``t``'s
own ``M`` negatives at columns ``T + t*M ..``; the queries are scored in
chunks of at most ``chunk_size`` rows, so the loss does not depend on
``chunk_size``.

Deviations from Spotlight: negatives are drawn from items ``1 .. N-1``
(Spotlight's sampler can draw the padding item), and with
``remove_accidental_hits`` a negative equal to the row's positive is left out
(of the pairs for ``hinge``, of the maximum for ``adaptive_hinge``; a row whose
negatives are all hits is left out of the mean). Spotlight keeps such pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss, sum_over_row_chunks
from tfseq.losses.bpr import MASKED_BELOW
from tfseq.losses.samplers import SAMPLERS, ItemSampler


@dataclasses.dataclass(frozen=True)
class HingeConfig:
    """Attributes:
    num_negatives: negatives drawn for each positive (Spotlight: 1).
    margin: the score gap below which a pair is penalised (Spotlight: 1).
    sampler: "uniform" (Spotlight's) or "popularity" (smoothed training counts).
    remove_accidental_hits: leave out sampled negatives equal to the row's positive.
    chunk_size: queries per Retrieval call (memory and speed only; the loss is the same).
    """

    num_negatives: int = 1
    margin: float = 1.0
    sampler: str = "uniform"
    remove_accidental_hits: bool = True
    chunk_size: int = 512

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.num_negatives < 1:
            raise ConfigError(f"{owner}.num_negatives must be >= 1, got {self.num_negatives}")
        if not self.margin > 0:
            raise ConfigError(f"{owner}.margin must be > 0, got {self.margin}")
        if self.chunk_size < 1:
            raise ConfigError(f"{owner}.chunk_size must be >= 1, got {self.chunk_size}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


@dataclasses.dataclass(frozen=True)
class AdaptiveHingeConfig(HingeConfig):
    """:class:`HingeConfig` with Spotlight's ``num_negative_samples`` default: 5 negatives per positive,
    of which the highest-scoring is used."""

    num_negatives: int = 5


class PairwiseHinge(tf.keras.losses.Loss):
    """Hinge on Retrieval's ``(y_true [T, C], y_pred [T, C])`` with per-row negative blocks.

    ``y_true`` is one-hot at each row's positive; columns ``>= T`` are the
    sampled negatives, ``M = (C - T) / T`` per row, row ``t``'s at
    ``T + t*M ..``. Masked scores (accidental hits) are left out.

    ``call`` returns a scalar mean (0 when nothing is left): over the valid
    pairs, or with ``adaptive`` over the rows with a valid negative, each
    paired with its highest-scoring one. It does not take ``sample_weight``.

    Args:
      margin: the hinge's margin.
      adaptive: pair each row with its highest-scoring negative only.
    """

    def __init__(self, margin: float = 1.0, adaptive: bool = False, name: str = "pairwise_hinge") -> None:
        super().__init__(reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE, name=name)
        self.margin = float(margin)
        self.adaptive = bool(adaptive)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        num_queries = tf.shape(y_pred)[0]
        tf.debugging.assert_equal(
            tf.shape(y_pred)[1] % tf.maximum(num_queries, 1), 0,
            message="PairwiseHinge expects T + T*M columns for T queries",
        )
        positive = tf.reduce_sum(y_true * y_pred, axis=1, keepdims=True)  # [T, 1]
        blocks = tf.reshape(y_pred[:, num_queries:], [num_queries, num_queries, -1])  # [T, T, M]
        negative = tf.gather(blocks, tf.range(num_queries), axis=1, batch_dims=1)  # [T, M]: row t's own
        valid = negative > MASKED_BELOW  # [T, M]
        if self.adaptive:
            # masked scores (about -3.4e36) never win the max of a row that has a valid negative
            negative = tf.reduce_max(negative, axis=1, keepdims=True)  # [T, 1]
            valid = tf.reduce_any(valid, axis=1, keepdims=True)
        losses = tf.nn.relu(self.margin - positive + tf.where(valid, negative, 0.0))
        weights = tf.cast(valid, y_pred.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))


class _HingeBase(RetrievalLoss):
    """Samples ``num_negatives`` per positive and averages :class:`PairwiseHinge` over the chunks.

    Attributes:
      sampler: the :class:`ItemSampler` of the negatives.
      task: the ``tfrs.tasks.Retrieval`` computing the loss with :class:`PairwiseHinge`.
    """

    adaptive = False

    def __init__(self, config: HingeConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.sampler = ItemSampler(self.item_counts, config.sampler)
        self.task = tfrs.tasks.Retrieval(
            loss=PairwiseHinge(config.margin, self.adaptive),
            remove_accidental_hits=config.remove_accidental_hits,
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
          The scalar mean hinge over the valid pairs (``hinge``) or over the rows
          with a valid negative (``adaptive_hinge``).
        """
        hits = self.config.remove_accidental_hits
        positive_ids = tf.cast(positive_ids, tf.int64)
        negatives = tf.reshape(tf.cast(negative_ids, tf.int64), [-1, self.config.num_negatives])  # [T, M]
        tf.debugging.assert_equal(
            tf.shape(negatives)[0], tf.shape(positive_ids)[0],
            message=f"hinge expects num_negatives={self.config.num_negatives} negatives per positive",
        )
        kept = tf.not_equal(negatives, positive_ids[:, tf.newaxis]) if hits else tf.ones_like(negatives, tf.bool)
        if self.adaptive:
            kept = tf.reduce_any(kept, axis=1, keepdims=True)  # [T, 1]: rows that take part

        def chunk_sum(query: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor, kept: tf.Tensor,
                      valid: tf.Tensor) -> tf.Tensor:
            """The chunk's sum of hinges: Retrieval's mean x the number of terms it averaged."""
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


@LOSSES.register("hinge", HingeConfig)
class HingeLoss(_HingeBase):
    """Spotlight's hinge: ``max(0, margin - s_pos + s_neg)``, mean over (positive, negative) pairs."""


@LOSSES.register("adaptive_hinge", AdaptiveHingeConfig)
class AdaptiveHingeLoss(_HingeBase):
    """Spotlight's adaptive hinge: each positive against its highest-scoring sampled negative."""

    adaptive = True
