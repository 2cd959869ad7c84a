"""``sasrec_f``: SASRec with item attribute embeddings fused into its input (RecBole's SASRecF).

The side-information baseline that DIF-SR (``difsr``) is measured against:
each history item's embedding is concatenated with one pooled embedding per
attribute field (each ``hidden_size`` wide), a linear layer maps the
concatenation back to ``hidden_size``, and the rest is SASRec (learned
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

import dataclasses
from typing import Any

import tensorflow as tf

from tfseq.data.item_features import ItemFeatures
from tfseq.models import MODELS
from tfseq.models.attributes import ItemAttributes, check_pooling_mode
from tfseq.models.base import SequentialRecommender
from tfseq.models.layers import TransformerEncoder, last_window, normal_init
from tfseq.models.sasrec import SASRecConfig


@dataclasses.dataclass(frozen=True)
class SASRecFConfig(SASRecConfig):
    """SASRec's hyperparameters (RecBole's defaults) and how multi-valued attributes are pooled.

    Attributes:
      pooling_mode: sum, mean or max over an item's values of one field.
    """

    pooling_mode: str = "sum"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pooling_mode(self)


@MODELS.register("sasrec_f", SASRecFConfig)
class SASRecF(SequentialRecommender):
    """Causal: ``encode_all`` gives the query after every position. Needs ``item_features``."""

    causal = True
    uses_item_features = True

    def __init__(self, config: SASRecFConfig, num_items: int, *, item_features: ItemFeatures | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, num_items, item_features=item_features, **kwargs)
        assert item_features is not None  # checked by the base class
        init = normal_init(config.initializer_range)
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, config.hidden_size, embeddings_initializer=init.kernel(), name="item_embedding"
        )
        self.attributes = ItemAttributes(
            item_features, config.hidden_size, config.pooling_mode, init, name="attributes"
        )
        self.concat = init.dense(config.hidden_size, name="concat")  # (1 + fields) * H -> H
        self.encoder = TransformerEncoder(
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            inner_size=config.inner_size,
            hidden_dropout_prob=config.hidden_dropout_prob,
            attn_dropout_prob=config.attn_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            max_seq_len=config.max_seq_len,
            causal=True,
            init=init,
            name="encoder",
        )

    def embed(self, item_ids: tf.Tensor) -> tf.Tensor:
        """``item_ids [B, L]`` -> ``concat([item, attribute_1, ...]) @ W + b`` ``[B, L, H]``."""
        return self.concat(tf.concat([self.item_embedding(item_ids), *self.attributes(item_ids)], axis=-1))

    def encode_all(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (L <= max_seq_len) -> the query after every position ``[B, L, H]``."""
        return self.encoder(self.embed(item_ids), item_ids, training=training)

    def encode(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (any ``L``) -> the query after each history ``[B, H]``."""
        window = last_window(item_ids, self.config.max_seq_len)  # [B, W]
        return self.encoder(self.embed(window), window, training=training, last_only=True)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The input item table (ID embeddings only) ``[num_items, hidden_size]``."""
        return self.item_embedding.embeddings
