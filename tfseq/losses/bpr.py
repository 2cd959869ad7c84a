"""``bpr``: pairwise BPR over sampled negatives, as a Keras loss inside ``tfrs.tasks.Retrieval``.

``-mean log σ(s_pos - s_neg)`` over each query's sampled negatives (Rendle et al.,
UAI 2009; RecBole's BPR draws one uniform negative per positive). Retrieval lays
out the scores as ``[T, T + M]`` with the positives on the diagonal of the first
``T`` columns; only the ``M`` sampled columns are negatives here, and a sampled
negative equal to the row's positive (an accidental hit, masked by Retrieval to a
huge negative score) is left out of the mean.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss
from tfseq.losses.sampled_softmax import retrieval_candidates
from tfseq.losses.samplers import SAMPLERS, ItemSampler, smoothed_popularity

_MASKED = -1e30  # Retrieval masks accidental hits with float32.min / 100 (about -3.4e36)


@dataclasses.dataclass(frozen=True)
class BPRConfig:
    """Attributes:
    num_negatives: sampled negatives per batch, each compared with every query's positive.
    sampler: "uniform" or "popularity".
    remove_accidental_hits: leave out sampled negatives equal to the row's positive.
    """

    num_negatives: int = 1
    sampler: str = "uniform"
    remove_accidental_hits: bool = True

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"bpr needs num_negatives >= 1, got {self.num_negatives}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


class PairwiseBPR(tf.keras.losses.Loss):
    """Keras loss on Retrieval's ``(labels [T, C], scores [T, C])``; columns >= T are sampled."""

    def call(self, y_true, y_pred):
        num_queries = tf.shape(y_pred)[0]
        positive = tf.reduce_sum(y_true * y_pred, axis=1, keepdims=True)  # [T, 1]
        negative = y_pred[:, num_queries:]  # [T, M]
        valid = tf.cast(negative > _MASKED, y_pred.dtype)
        pair_losses = tf.nn.softplus(tf.where(valid > 0, negative - positive, 0.0)) * valid
        return tf.reduce_sum(pair_losses, axis=1) / tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)


@LOSSES.register("bpr", BPRConfig)
class BPRLoss(RetrievalLoss):
    def __init__(self, config: BPRConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.sampler = ItemSampler(self.item_counts, config.sampler)
        self.batch_probabilities = tf.constant(smoothed_popularity(self.item_counts))
        self.task = tfrs.tasks.Retrieval(
            loss=PairwiseBPR(reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE),
            remove_accidental_hits=config.remove_accidental_hits,
        )

    def call(self, query, positive_ids, candidates, training=False):
        embeddings, ids, _ = retrieval_candidates(
            self, self.sampler, self.config.num_negatives, positive_ids, candidates
        )
        return self.task(
            query,
            embeddings,
            candidate_ids=ids if self.config.remove_accidental_hits else None,
            compute_metrics=False,
            compute_batch_metrics=False,
        )
