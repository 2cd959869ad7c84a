"""What Spotlight's sequence representations (``cnn``, ``lstm``, ``pooling``) share: an item table read by a
causal encoder, scores ``query . item`` plus Spotlight's learned per-item bias, and their training defaults.

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight),
``sequence/implicit.py``: every representation's score is the dot product of
the sequence's state with the target's embedding plus the target's bias
(``item_biases``, a zero-initialised embedding of width 1).

The bias travels inside tfseq's one-vector-per-item contract: the query gains
a last column of ones and the candidate table a last column holding the
biases, so ``query . candidate`` is ``query . item + bias`` for every loss, for
full ranking and in the SavedModel, with nothing model-specific downstream.
``item_bias`` (on by default) turns it off.

Training defaults (``train_defaults``, :data:`tfseq.models.configs.TARGET_BATCHES`):
one pass per sequence in steps of about 256 targets and the learning rate cut
after 2 flat epochs. With 256 whole sequences a step, a catalogue of a few
hundred users gets a handful of steps an epoch, too few for these models to
leave the popularity baseline (``bench/spotlight_defaults.py``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.models.base import EmbeddingRecommender, Features
from tfseq.models.configs import TARGET_BATCHES


class SpotlightRecommender(EmbeddingRecommender):
    """A causal encoder over the item table whose scores are ``query . item`` plus, with
    ``config.item_bias``, a learned per-item bias carried as one more column of each side.

    Subclasses implement :meth:`representations` (and may override :meth:`scored_items`).
    """

    causal = True
    train_defaults = TARGET_BATCHES

    def __init__(self, config: Any, num_items: int, **kwargs: Any) -> None:
        super().__init__(config, num_items, **kwargs)
        self.item_biases = (
            self.add_weight(name="item_biases", shape=(num_items,), initializer="zeros") if config.item_bias else None
        )

    def representations(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the sequence's representation after every position ``[B, L, embedding_size]``."""
        raise NotImplementedError

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the query after every position ``[B, L, D]`` (D = ``embedding_size``, + 1
        with ``item_bias``)."""
        return self.with_bias_column(self.representations(features, training=training))

    def with_bias_column(self, query: tf.Tensor) -> tf.Tensor:
        """``query [..., E]`` -> ``[..., E + 1]`` with a last column of ones when the model has item biases."""
        if self.item_biases is None:
            return query
        return tf.concat([query, tf.ones_like(query[..., :1])], axis=-1)

    def scored_items(self) -> tf.Tensor:
        """The item vectors the queries are scored against ``[num_items, embedding_size]``: the input table."""
        return self.item_embedding.embeddings

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """``[num_items, D]``: :meth:`scored_items`, with the item biases as a last column when the model has them."""
        items = self.scored_items()
        if self.item_biases is None:
            return items
        return tf.concat([items, tf.cast(self.item_biases, items.dtype)[:, tf.newaxis]], axis=1)
