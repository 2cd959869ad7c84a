"""ItemAttributes: item IDs -> one pooled embedding per side-feature field, inside the model.

The models that use item side features (``difsr``, ``sasrec_f``) hold the
:class:`~tfseq.data.item_features.ItemFeatures` table as non-trainable int32
weights and look it up with ``tf.gather``, so a saved model still takes item
indices only and the table travels with its weights (checkpoint and SavedModel
alike). Each field has its own embedding table (row 0 = padding); a
multi-valued field is pooled over its real values (RecBole's
``FeatureSeqEmbLayer`` pooling modes ``sum``, ``mean`` and ``max``). An item
with no value in a field (padding included) gets a zero vector.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.data.item_features import ItemFeatures
from tfseq.models.configs import POOLING_MODES
from tfseq.models.layers import Init


class ItemAttributes(tf.keras.layers.Layer):
    """Per field: the items' value indices (constant) and a trainable value embedding table.

    Args:
      features: the table aligned with the item vocabulary.
      embedding_size: width of every field's value embeddings.
      pooling_mode: how a multi-valued field becomes one vector: sum, mean or max.
      init: the embedding tables' initialiser.
    """

    def __init__(
        self, features: ItemFeatures, embedding_size: int, pooling_mode: str, init: Init, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if pooling_mode not in POOLING_MODES:
            raise ValueError(f"pooling_mode must be one of {POOLING_MODES}, got {pooling_mode!r}")
        self.fields = tuple(features.fields)
        self.pooling_mode = pooling_mode
        self.vocab_sizes = tuple(features.num_values(f) for f in self.fields)
        self.value_tables = [
            self.add_weight(
                f"values_{i}", shape=values.shape, dtype=tf.int32, trainable=False,
                initializer=tf.constant_initializer(values),
            )
            for i, values in enumerate(features.values)
        ]
        self.embeddings = [
            init.embedding(size, embedding_size, name=f"embedding_{i}")
            for i, size in enumerate(self.vocab_sizes)
        ]

    def value_ids(self, field: int, item_ids: tf.Tensor) -> tf.Tensor:
        """Value indices of field number ``field`` for ``item_ids [...]`` -> ``[..., max_values]`` (0 = none)."""
        return tf.gather(self.value_tables[field], item_ids)

    def call(self, item_ids: tf.Tensor) -> list[tf.Tensor]:
        """``item_ids [...]`` -> one pooled ``[..., embedding_size]`` per field."""
        return [self.pooled(i, item_ids) for i in range(len(self.fields))]

    def pooled(self, field: int, item_ids: tf.Tensor) -> tf.Tensor:
        """The pooled embedding of field number ``field`` for ``item_ids [...]`` -> ``[..., E]``."""
        values = self.value_ids(field, item_ids)  # [..., M]
        embedded = self.embeddings[field](values)  # [..., M, E]
        real = tf.not_equal(values, 0)[..., tf.newaxis]  # [..., M, 1]
        if self.pooling_mode == "max":
            lowest = tf.fill(tf.shape(embedded), embedded.dtype.min)
            pooled = tf.reduce_max(tf.where(real, embedded, lowest), axis=-2)
            return tf.where(tf.reduce_any(real, axis=-2), pooled, tf.zeros_like(pooled))
        weights = tf.cast(real, embedded.dtype)
        total = tf.reduce_sum(embedded * weights, axis=-2)  # [..., E]
        if self.pooling_mode == "sum":
            return total
        return total / tf.maximum(tf.reduce_sum(weights, axis=-2), 1.0)
