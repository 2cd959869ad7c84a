"""``gru4rec``: session-based recommendation with recurrent networks.

Hidasi et al., ICLR 2016, with Tan et al. (DLRS 2016)'s improvements as RecBole
sets them up: item embedding -> dropout -> stacked GRU -> dense projection to
the embedding space; the query is the last valid position and items are scored
against the input embedding table. Deviation: training uses every position of
a sequence in one pass (the GRU is causal), which trains the same targets as
RecBole's one example per prefix.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.models import MODELS
from tfseq.models.base import SequentialRecommender


@dataclasses.dataclass(frozen=True)
class GRU4RecConfig:
    """RecBole's defaults."""

    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout_prob: float = 0.3

    def __post_init__(self) -> None:
        for field in ("embedding_size", "hidden_size", "num_layers"):
            if getattr(self, field) < 1:
                raise ConfigError(f"GRU4RecConfig.{field} must be >= 1, got {getattr(self, field)}")
        if not 0 <= self.dropout_prob < 1:
            raise ConfigError(f"GRU4RecConfig.dropout_prob must be in [0, 1), got {self.dropout_prob}")


@MODELS.register("gru4rec", GRU4RecConfig)
class GRU4Rec(SequentialRecommender):
    causal = True

    def __init__(self, config: GRU4RecConfig, num_items: int, **kwargs):
        super().__init__(config, num_items, **kwargs)
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, config.embedding_size,
            embeddings_initializer=tf.keras.initializers.GlorotUniform(), name="item_embedding",
        )
        self.dropout = tf.keras.layers.Dropout(config.dropout_prob)
        self.grus = [
            tf.keras.layers.GRU(config.hidden_size, return_sequences=True, name=f"gru_{i}")
            for i in range(config.num_layers)
        ]
        self.projection = tf.keras.layers.Dense(config.embedding_size, name="projection")

    def encode_all(self, item_ids, training=False):
        x = self.dropout(self.item_embedding(item_ids), training=training)  # [B, L, E]
        for gru in self.grus:
            x = gru(x, training=training)  # [B, L, H]; causal, so padding after t never reaches t
        return self.projection(x)  # [B, L, E]

    def candidate_embeddings(self, training=False):
        return self.item_embedding.embeddings
