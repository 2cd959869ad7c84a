"""``pop``: the most-popular baseline, the floor every model must clear.

Every history gets the same ranking: items by training-split count (RecBole's
``Pop``). It fits the retrieval interface as a one-dimensional query of ones
against candidates ``log1p(count)``, a monotone transform of the counts that
keeps any loss finite; the padding row scores ``PADDING_SCORE``. The counts
are a non-trainable weight set by ``adapt``, so they are saved and restored
with the other weights; the trainer takes no gradient step for this model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.models.base import Features, SequentialRecommender, item_ids_of
from tfseq.models.configs import PopConfig

PADDING_SCORE = -1e9  # below every log1p(count) >= 0, finite so losses stay finite


class Pop(SequentialRecommender):
    """Scores every item by its training count, whatever the history (trivially causal)."""

    causal = True

    def __init__(self, config: PopConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        self.counts = self.add_weight(
            name="counts", shape=[num_items], initializer="zeros", trainable=False
        )

    def adapt(self, item_counts: Sequence[int] | np.ndarray) -> None:
        """Stores ``item_counts [num_items]`` (training-split occurrences; index 0 is ignored)."""
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.shape != (self.num_items,):
            raise ValueError(
                f"item_counts must have shape [{self.num_items}] (num_items), got {counts.shape}"
            )
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise ValueError("item_counts must be finite and >= 0")
        self.counts.assign(counts.astype(np.float32))

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> ones ``[B, 1]``: the history does not matter."""
        item_ids = item_ids_of(features)
        return tf.ones([tf.shape(item_ids)[0], 1], tf.float32)

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> ones ``[B, L, 1]``."""
        item_ids = item_ids_of(features)
        return tf.ones([tf.shape(item_ids)[0], tf.shape(item_ids)[1], 1], tf.float32)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """``log1p(count)`` per item ``[num_items, 1]``; the padding row is ``PADDING_SCORE``."""
        scores = tf.math.log1p(self.counts)
        padding = tf.one_hot(schema.PAD_ID, self.num_items, on_value=True, off_value=False)
        return tf.where(padding, PADDING_SCORE, scores)[:, tf.newaxis]
