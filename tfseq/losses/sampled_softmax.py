"""``sampled_softmax``: in-batch + sampled negatives on ``tfrs.tasks.Retrieval``, logQ-corrected.

For ``T`` queries the candidate columns are the ``T`` positives of the batch
(column ``t`` is row ``t``'s positive and every other row's in-batch negative)
followed by ``num_negatives`` items drawn once for the whole batch from the
sampler (:mod:`tfseq.losses.samplers`). The scores ``[T, T + M]`` go through
TFRS's ``Retrieval`` task:

* **logQ correction** (``candidate_sampling_probability``): every column's
  logit is reduced by ``log`` of the probability of the proposal that put it
  there: an in-batch column by the item's smoothed training frequency ``p(i)``
  (the positives of a batch are drawn from the training targets, whose
  distribution the training-split item counts approximate), a sampled column
  by the sampler's ``q(i)``. This is importance sampling per set: each set's
  ``sum exp(logit) / prob`` estimates its size times the full softmax's
  normaliser. It is an approximation: the positives of a batch are not
  independent draws from ``p`` (one sequence contributes several), the counts
  include each sequence's first item, which is never a target, and an item in
  both sets is corrected by two different probabilities (Yi et al., RecSys 2019,
  correct in-batch negatives the same way). TFRS clips probabilities to
  ``[1e-6, 1]`` before the log.
* **accidental hits** (``candidate_ids``): a column other than ``t`` that holds
  row ``t``'s own positive item is masked (its logit pushed to about -3.4e36).
* **mean reduction**: TFRS's default loss *sums* over the batch; here the
  ``CategoricalCrossentropy`` sums each chunk (``Reduction.SUM``: Keras refuses
  ``SUM_OVER_BATCH_SIZE`` inside a ``tf.distribute`` strategy) and the total is
  divided by ``T``: the mean over the ``T`` queries, as RecBole's losses are, so
  learning rates carry over.

* **chunks**: a causal batch holds thousands of targets, and a ``[T, T + M]``
  score matrix grows with their square. The queries are taken in consecutive
  equal chunks of at most ``chunk_size`` (one Retrieval call each,
  :func:`~tfseq.losses.base.sum_over_row_chunks`): a query's in-batch
  negatives are the positives of the other queries of its chunk, the sampled
  negatives are the batch's. A batch of at most ``chunk_size`` targets (every
  prefix batch, and Beauty's causal batches) is one chunk, the plain setup above.

With ``logq_correction=False``, ``remove_accidental_hits=True`` and one query
whose sampled set is the whole catalogue, this is exactly full softmax.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.losses.base import SampledNegativesLoss, sum_over_row_chunks
from tfseq.losses.configs import SampledSoftmaxConfig
from tfseq.losses.samplers import smoothed_popularity


def summed_cross_entropy() -> tf.keras.losses.Loss:
    """Softmax cross-entropy on ``(one-hot [T, C], logits [T, C])``, summed over the ``T`` rows (weighted by
    ``sample_weight``). A sum, not Keras' ``SUM_OVER_BATCH_SIZE`` mean, which it refuses in a strategy's replicas."""
    return tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM)


class SampledSoftmaxLoss(SampledNegativesLoss):
    """In-batch + ``num_negatives`` sampled negatives, softmax cross-entropy, mean over queries.

    Attributes:
      sampler: the :class:`ItemSampler` of the extra negatives.
      batch_probabilities: ``[N]`` proposal of the in-batch columns, ``p(i)``.
      task: the ``tfrs.tasks.Retrieval`` computing the loss.
    """

    def __init__(self, config: SampledSoftmaxConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.batch_probabilities = tf.constant(smoothed_popularity(self.item_counts))  # [N]
        self.task = tfrs.tasks.Retrieval(
            loss=summed_cross_entropy(), remove_accidental_hits=config.remove_accidental_hits
        )

    def sampler_kind(self) -> str:
        """``config.sampler``, with ``"auto"`` resolved by the catalogue's size."""
        return self.config.sampler_for(self.num_items)

    def sample_negatives(self, positive_ids: tf.Tensor) -> tf.Tensor:
        """``[M]`` draws shared by the whole batch (none when ``num_negatives`` is 0)."""
        if self.config.num_negatives:
            negative_ids, _ = self.sampler.sample(self.config.num_negatives)  # [M]
            return negative_ids
        return tf.zeros([0], tf.int64)

    def loss_given_negatives(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        negative_ids: tf.Tensor,
    ) -> tf.Tensor:
        """The loss with the extra negatives ``negative_ids [M]`` given instead of sampled.

        Args:
          query: ``[T, D]`` queries.
          positive_ids: ``[T]`` their true next items (never padding).
          candidates: ``[N, D]`` the candidate table.
          negative_ids: ``[M]`` extra negatives (``M`` may be 0), corrected by the
            sampler's ``q`` when ``logq_correction`` is on.

        Returns:
          The scalar mean over the ``T`` queries.
        """
        negative_ids = tf.cast(negative_ids, tf.int64)
        negative_probabilities = tf.gather(self.sampler.probabilities, negative_ids)  # [M]

        def chunk_sum(query: tf.Tensor, positives: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
            """The chunk's summed cross-entropy; padding rows weigh 0 and are no one's negative."""
            size = tf.shape(positives)[0]
            ids = tf.concat([positives, negative_ids], axis=0)  # [c + M]
            probabilities = tf.concat(
                [tf.gather(self.batch_probabilities, positives), negative_probabilities], axis=0
            )  # [c + M]
            score_mask = tf.concat(
                [tf.broadcast_to(valid[tf.newaxis, :], [size, size]),
                 tf.ones([size, tf.shape(negative_ids)[0]], tf.bool)],
                axis=1,
            )  # [c, c + M]: padding columns masked, sampled columns kept
            return self.task(  # the sum over the chunk's rows (Reduction.SUM); padding rows weigh 0
                query,
                tf.gather(candidates, ids),  # [c + M, D]
                sample_weight=tf.cast(valid, query.dtype),
                candidate_sampling_probability=probabilities if self.config.logq_correction else None,
                candidate_ids=ids if self.config.remove_accidental_hits else None,
                score_mask=score_mask,
                compute_metrics=False,
                compute_batch_metrics=False,
            )

        positive_ids = tf.cast(positive_ids, tf.int64)
        total = sum_over_row_chunks(chunk_sum, (query, positive_ids), self.config.chunk_size)
        return tf.math.divide_no_nan(total, tf.cast(tf.shape(positive_ids)[0], total.dtype))
