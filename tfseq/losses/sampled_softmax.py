"""``sampled_softmax``: in-batch + sampled negatives on ``tfrs.tasks.Retrieval``, logQ-corrected.

For ``T`` queries the candidates are the ``T`` positives of the batch (each
query's positive is every other query's in-batch negative) followed by
``num_negatives`` items drawn from the sampler. With ``logq_correction`` each
column's logit is reduced by ``log q``: an in-batch column by the item's
(smoothed) training frequency, the probability with which it enters a batch as
a positive, a sampled column by the sampler's probability. Mixing the two
proposals this way is the usual approximation (Yi et al., RecSys 2019; Merlin).
``candidate_ids`` lets TFRS mask accidental hits: another column holding the
row's own positive item. TFRS's default loss sums over the batch; this one is
the mean, as RecBole's losses are.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss
from tfseq.losses.samplers import SAMPLERS, ItemSampler, smoothed_popularity


@dataclasses.dataclass(frozen=True)
class SampledSoftmaxConfig:
    """Attributes:
    num_negatives: sampled negatives shared by the whole batch, besides the in-batch ones.
    sampler: "uniform" or "popularity".
    logq_correction: subtract log q from each candidate's logit.
    remove_accidental_hits: mask candidates equal to the row's positive item.
    """

    num_negatives: int = 256
    sampler: str = "uniform"
    logq_correction: bool = True
    remove_accidental_hits: bool = True

    def __post_init__(self) -> None:
        if self.num_negatives < 0:
            raise ConfigError(f"num_negatives must be >= 0, got {self.num_negatives}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


def retrieval_candidates(
    loss: RetrievalLoss, sampler: ItemSampler, num_negatives: int, positive_ids: tf.Tensor,
    candidates: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """In-batch positives then sampled negatives: embeddings ``[T+M, D]``, IDs and proposal probs."""
    positive_ids = tf.cast(positive_ids, tf.int64)
    batch_probs = tf.gather(loss.batch_probabilities, positive_ids)  # [T]
    if num_negatives:
        negative_ids, negative_probs = sampler.sample(num_negatives)  # [M], [M]
        ids = tf.concat([positive_ids, negative_ids], axis=0)
        probs = tf.concat([batch_probs, negative_probs], axis=0)
    else:
        ids, probs = positive_ids, batch_probs
    return tf.gather(candidates, ids), ids, probs


@LOSSES.register("sampled_softmax", SampledSoftmaxConfig)
class SampledSoftmaxLoss(RetrievalLoss):
    def __init__(self, config: SampledSoftmaxConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.sampler = ItemSampler(self.item_counts, config.sampler)
        self.batch_probabilities = tf.constant(smoothed_popularity(self.item_counts))
        cross_entropy = tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE
        )
        self.task = tfrs.tasks.Retrieval(
            loss=cross_entropy, remove_accidental_hits=config.remove_accidental_hits
        )

    def call(self, query, positive_ids, candidates, training=False):
        embeddings, ids, probs = retrieval_candidates(
            self, self.sampler, self.config.num_negatives, positive_ids, candidates
        )
        return self.task(
            query,
            embeddings,
            candidate_sampling_probability=probs if self.config.logq_correction else None,
            candidate_ids=ids if self.config.remove_accidental_hits else None,
            compute_metrics=False,
            compute_batch_metrics=False,
        )
