"""``pooling``: Spotlight's pooling sequence model (running mean of the item embeddings).

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight), ``PoolNet``,
a'la the averaged watch history of Covington et al., "Deep Neural Networks for
YouTube Recommendations", RecSys 2016: the query after a history is the mean of
its items' embeddings, scored against the same item table (weight tying) plus
Spotlight's per-item bias (``item_bias``). Order inside the averaged items does
not matter; it is the baseline the order-aware ``cnn`` and ``lstm`` are meant to
beat (Spotlight's ML-1M experiment finds it far below both).

By default the mean covers the last ``window`` (3) items, not the whole
history (``--window 0``, Spotlight's): under leave-one-out a whole history's
mean ranks the history's own items first -- they are what the mean is made
of -- and each counts as a miss, which holds the whole-history mean, tied or
with a separate candidate table (``tie_weights``), near the popularity
baseline (``bench/spotlight_defaults.py``). Scores carry Spotlight's
per-item bias and training uses the Spotlight families' defaults (see
:mod:`tfseq.models.spotlight`).

Deviations from Spotlight:
  * the mean of the last ``window`` items (0: all of them, Spotlight's);
  * the mean divides by the number of items; Spotlight divides by that number
    plus one (as if an empty step were averaged in), which shrinks short
    histories' queries towards zero;
  * the query at position t includes item t (tfseq's ``encode_all``
    contract); Spotlight shifts one step and also trains the empty history;
  * embedding dropout (``dropout_prob``; 0 = Spotlight), 0.2 by default;
  * the N(0, 1/embedding_size) table is Spotlight's ``ScaledEmbedding`` but
    the padding row is an ordinary row; it is never averaged in (masked).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.models.base import Features, item_ids_of
from tfseq.models.configs import PoolingConfig
from tfseq.models.layers import padding_mask, windowed_mean
from tfseq.models.spotlight import SpotlightRecommender


class Pooling(SpotlightRecommender):
    """Causal: the query after the first t + 1 items is the mean of the last ``window`` of them (of all of them
    with ``window`` 0); ``encode`` averages only each history's last ``window`` items."""

    def __init__(self, config: PoolingConfig, num_items: int, **kwargs: Any) -> None:
        super().__init__(config, num_items, **kwargs)
        width = config.embedding_size
        self.output_embeddings = None if config.tie_weights else self.add_weight(
            name="output_embeddings", shape=(num_items, width),
            initializer=tf.keras.initializers.RandomNormal(stddev=1.0 / width),  # as the input table
        )

    def representations(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the mean of the items up to every position ``[B, L, embedding_size]``
        (of the last ``window`` of them when ``window`` is set).

        Padding is never averaged in; a position with no real item so far gives zeros.
        """
        item_ids = item_ids_of(features)
        return windowed_mean(self.embed(item_ids, training=training), padding_mask(item_ids), self.config.window)

    @property
    def history_window(self) -> int | None:
        return self.config.window or None

    def scored_items(self) -> tf.Tensor:
        """The averaged item table, or with ``tie_weights`` off the separate candidate table."""
        return self.item_embedding.embeddings if self.output_embeddings is None else self.output_embeddings
