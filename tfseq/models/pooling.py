"""``pooling``: Spotlight's pooling sequence model (running mean of the item embeddings).

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight), ``PoolNet``,
a'la the averaged watch history of Covington et al., "Deep Neural Networks for
YouTube Recommendations", RecSys 2016: the query after a history is the mean of
its items' embeddings, scored against the same item table (weight tying).
Order inside the history does not matter; it is the baseline the order-aware
``cnn`` and ``lstm`` are meant to beat (Spotlight's ML-1M experiment finds it
far below both).

Deviations from Spotlight:
  * the mean divides by the number of items; Spotlight divides by that number
    plus one (as if an empty step were averaged in), which shrinks short
    histories' queries towards zero;
  * scores are ``query . item`` only: Spotlight adds a learned per-item bias,
    which tfseq's candidate contract (one vector per item) has no place for;
  * the query at position t includes item t (tfseq's ``encode_all``
    contract); Spotlight shifts one step and also trains the empty history;
  * embedding dropout (``dropout_prob``; 0 = Spotlight), 0.2 by default;
  * the N(0, 1/embedding_size) table is Spotlight's ``ScaledEmbedding`` but
    the padding row is an ordinary row; it is never averaged in (masked).
"""

from __future__ import annotations

import tensorflow as tf

from tfseq.models.base import EmbeddingRecommender, Features, item_ids_of
from tfseq.models.configs import PoolingConfig  # noqa: F401  (the module's config, defined without TF)
from tfseq.models.layers import masked_mean, padding_mask, running_mean


class Pooling(EmbeddingRecommender):
    """Causal: the running mean at position t is the query after the first t + 1 items."""

    causal = True

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the mean of the items up to every position ``[B, L, embedding_size]``.

        Padding is never averaged in; a position with no real item so far gives zeros.
        """
        item_ids = item_ids_of(features)
        return running_mean(self.embed(item_ids, training=training), padding_mask(item_ids))

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the mean of each history's items ``[B, embedding_size]``
        (zeros for an empty history)."""
        item_ids = item_ids_of(features)
        return masked_mean(self.embed(item_ids, training=training), padding_mask(item_ids))
