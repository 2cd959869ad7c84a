"""``sasrec``: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018, in
RecBole's configuration (post-LN blocks, GELU feed-forward, learned positions,
scores against the input item table). Deviation: training uses every position
of a sequence in one pass (the paper's setup) rather than RecBole's one
example per prefix; the targets are the same.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.models import MODELS
from tfseq.models.base import SequentialRecommender
from tfseq.models.layers import TransformerEncoder, normal_initializer, validate_transformer


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """RecBole's defaults. ``hidden_size`` is also the item embedding size."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50

    def __post_init__(self) -> None:
        validate_transformer(self, "SASRecConfig")


@MODELS.register("sasrec", SASRecConfig)
class SASRec(SequentialRecommender):
    causal = True

    def __init__(self, config: SASRecConfig, num_items: int, **kwargs):
        super().__init__(config, num_items, **kwargs)
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, config.hidden_size,
            embeddings_initializer=normal_initializer(config.initializer_range), name="item_embedding",
        )
        self.encoder = TransformerEncoder(config, causal=True, name="encoder")

    def encode_all(self, item_ids, training=False):
        return self.encoder(self.item_embedding(item_ids), item_ids, training=training)  # [B, L, H]

    def candidate_embeddings(self, training=False):
        return self.item_embedding.embeddings  # [N, H]
