"""``core_ave`` and ``core_trm``: CORE, consistent representation space for session recommendation.

Hou et al., "CORE: Simple and Effective Session-based Recommendation within
Consistent Representation Space", SIGIR 2022. The session representation is a
weighted sum of the session's own (session-dropped-out) item embeddings, so it
lives in the item space: mean weights for ``core_ave``; for ``core_trm``,
weights from a softmax over a linear head on a bidirectional transformer. Query
and candidates are L2-normalised and scores are cosine / temperature: ``encode``
returns ``normalised_session / temperature``, so ``query @ candidates.T`` is the
paper's logit. Item dropout is applied to the candidate table in training.
Deviation: ``core_ave`` is causal (a running mean), so it trains on every
prefix of a sequence in one pass; the prefixes and targets are RecBole's.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.models import MODELS
from tfseq.models.base import SequentialRecommender
from tfseq.models.layers import (
    TransformerEncoder,
    masked_softmax,
    normal_initializer,
    padding_mask,
    validate_transformer,
)


@dataclasses.dataclass(frozen=True)
class COREConfig:
    """RecBole's defaults (``hidden_size`` is the embedding size; the transformer fields are
    used by ``core_trm`` only)."""

    hidden_size: int = 64
    temperature: float = 0.07
    sess_dropout: float = 0.2
    item_dropout: float = 0.2
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.2
    attn_dropout_prob: float = 0.2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50

    def __post_init__(self) -> None:
        validate_transformer(self, "COREConfig")
        if self.temperature <= 0:
            raise ConfigError(f"COREConfig.temperature must be > 0, got {self.temperature}")
        for field in ("sess_dropout", "item_dropout"):
            if not 0 <= getattr(self, field) < 1:
                raise ConfigError(f"COREConfig.{field} must be in [0, 1), got {getattr(self, field)}")


class CORE(SequentialRecommender):
    """Shared CORE machinery; subclasses choose the weights of the session's items."""

    def __init__(self, config: COREConfig, num_items: int, **kwargs):
        super().__init__(config, num_items, **kwargs)
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, config.hidden_size,
            embeddings_initializer=normal_initializer(config.initializer_range), name="item_embedding",
        )
        self.sess_dropout = tf.keras.layers.Dropout(config.sess_dropout)
        self.item_dropout = tf.keras.layers.Dropout(config.item_dropout)

    def session_embeddings(self, item_ids, training):
        return self.sess_dropout(self.item_embedding(item_ids), training=training)  # [B, L, H]

    def to_query(self, session):
        return tf.math.l2_normalize(session, axis=-1) / self.config.temperature

    def candidate_embeddings(self, training=False):
        table = self.item_dropout(self.item_embedding.embeddings, training=training)
        return tf.math.l2_normalize(table, axis=-1)  # [N, H]


@MODELS.register("core_ave", COREConfig)
class COREAve(CORE):
    """Mean weights: the running mean after every position is the query of that prefix."""

    causal = True

    def encode_all(self, item_ids, training=False):
        x = self.session_embeddings(item_ids, training)  # [B, L, H]
        valid = tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]  # [B, L, 1]
        running_sum = tf.cumsum(x * valid, axis=1)
        running_count = tf.maximum(tf.cumsum(valid, axis=1), 1.0)
        return self.to_query(running_sum / running_count)


@MODELS.register("core_trm", COREConfig)
class CORETrm(CORE):
    """Weights from a bidirectional transformer over the session (not causal: one query a prefix)."""

    def __init__(self, config: COREConfig, num_items: int, **kwargs):
        super().__init__(config, num_items, **kwargs)
        self.encoder = TransformerEncoder(config, causal=False, name="encoder")
        self.weight_head = tf.keras.layers.Dense(1, name="weight_head")

    def encode(self, item_ids, training=False):
        x = self.session_embeddings(item_ids, training)  # [B, L, H]
        mask = padding_mask(item_ids)
        hidden = self.encoder(x, item_ids, training=training)  # [B, L, H]
        alpha = masked_softmax(tf.squeeze(self.weight_head(hidden), -1), mask)  # [B, L]
        return self.to_query(tf.reduce_sum(alpha[..., tf.newaxis] * x, axis=1))  # [B, H]
