"""``pop``: most-popular baseline, the sanity floor of every report.

Every history gets the same ranking: items by training count. It fits the
retrieval interface as a 1-d query of ones against candidates ``log1p(count)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfseq.models import MODELS
from tfseq.models.base import SequentialRecommender


@dataclasses.dataclass(frozen=True)
class PopConfig:
    """Popularity has no hyperparameters."""


@MODELS.register("pop", PopConfig)
class Pop(SequentialRecommender):
    def __init__(self, config: PopConfig, num_items: int, **kwargs):
        super().__init__(config, num_items, **kwargs)
        self.counts = tf.Variable(tf.zeros([num_items], tf.float32), trainable=False, name="counts")

    def adapt(self, item_counts):
        counts = np.asarray(item_counts, dtype=np.float32)
        if counts.shape != (self.num_items,):
            raise ValueError(f"item_counts must have shape [{self.num_items}], got {counts.shape}")
        counts[0] = 0.0
        self.counts.assign(counts)

    def encode(self, item_ids, training=False):
        return tf.ones([tf.shape(item_ids)[0], 1], tf.float32)  # [B, 1]

    def candidate_embeddings(self, training=False):
        return tf.math.log1p(self.counts)[:, tf.newaxis]  # [N, 1]

    def compute_loss(self, features, training=False):
        return tf.constant(0.0)  # nothing to learn: the counts come from adapt()
