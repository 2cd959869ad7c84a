"""``sasrec_f``: SASRec with item attribute embeddings fused into its input (RecBole's SASRecF).

The side-information baseline that DIF-SR (``difsr``) is measured against:
each history item's embedding is concatenated with one pooled embedding per
attribute field (each ``embedding_size`` wide), a linear layer maps the
concatenation back to ``embedding_size``, and the rest is SASRec (learned
positions added, LayerNorm, dropout, causal post-LN transformer blocks). As in
RecBole the candidates are the ID embeddings alone (the input item table), so
attributes shape the query but not the items it is scored against.

Defaults are RecBole's SASRecF (= its SASRec) with sum pooling.

Deviations from RecBole: those of ``sasrec`` (all positions trained in one
pass, last block run for the last position only in ``encode``); an item with no
value in a field gets a zero attribute vector (RecBole embeds the padding token
of a single-valued field, and max pooling gives it -1e9); duplicate values of
an item count once.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.data.item_features import ItemFeatures
from tfseq.models.attributes import ItemAttributes
from tfseq.models.configs import SASRecFConfig
from tfseq.models.sasrec import SASRec


class SASRecF(SASRec):
    """:class:`~tfseq.models.sasrec.SASRec` whose input embedding also reads the items' attributes; the
    candidates stay the ID embeddings alone. Causal. Needs ``item_features``."""

    uses_item_features = SASRecFConfig.uses_item_features  # declared with the config: flags read it without TF

    def __init__(self, config: SASRecFConfig, num_items: int, *, item_features: ItemFeatures | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, num_items, item_features=item_features, **kwargs)
        assert item_features is not None  # checked by the base class
        self.attributes = ItemAttributes(
            item_features, config.embedding_size, config.pooling_mode, self.init, name="attributes"
        )
        self.concat = self.init.dense(config.embedding_size, name="concat")  # (1 + fields) * H -> H

    def embed(self, item_ids: tf.Tensor) -> tf.Tensor:
        """``item_ids [B, L]`` -> ``concat([item, attribute_1, ...]) @ W + b`` ``[B, L, H]``."""
        return self.concat(tf.concat([self.item_embedding(item_ids), *self.attributes(item_ids)], axis=-1))
