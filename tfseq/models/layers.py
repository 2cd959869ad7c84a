"""Layers shared by the models: attention masks, the transformer block, masked pooling."""

from __future__ import annotations

import tensorflow as tf

from tfseq.data import schema


def normal_initializer(stddev: float) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.TruncatedNormal(stddev=stddev)


def padding_mask(item_ids: tf.Tensor) -> tf.Tensor:
    """``[B, L]`` bool: True at real items."""
    return tf.not_equal(item_ids, schema.PAD_ID)


def attention_mask(item_ids: tf.Tensor, causal: bool) -> tf.Tensor:
    """``[B, L, L]`` bool: query position i may attend to key j.

    Keys must be real items; with ``causal`` also ``j <= i``. Padding keys are
    masked so that right-padding never changes a real position's output.
    """
    keys = padding_mask(item_ids)[:, tf.newaxis, :]  # [B, 1, L]
    if not causal:
        return keys
    length = tf.shape(item_ids)[1]
    lower = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # [L, L]
    return tf.logical_and(keys, lower[tf.newaxis])


class TransformerBlock(tf.keras.layers.Layer):
    """Post-LN transformer layer as in SASRec/RecBole: attention and GELU feed-forward, each
    followed by dropout, a residual connection and LayerNorm."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        inner_size: int,
        hidden_dropout_prob: float,
        attn_dropout_prob: float,
        layer_norm_eps: float,
        initializer_range: float,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.attention = tf.keras.layers.MultiHeadAttention(
            num_heads=num_heads,
            key_dim=hidden_size // num_heads,
            dropout=attn_dropout_prob,
            kernel_initializer=normal_initializer(initializer_range),
        )
        self.attention_dropout = tf.keras.layers.Dropout(hidden_dropout_prob)
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps)
        self.inner = tf.keras.layers.Dense(
            inner_size, activation="gelu", kernel_initializer=normal_initializer(initializer_range)
        )
        self.outer = tf.keras.layers.Dense(
            hidden_size, kernel_initializer=normal_initializer(initializer_range)
        )
        self.output_dropout = tf.keras.layers.Dropout(hidden_dropout_prob)
        self.output_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps)

    def call(self, x: tf.Tensor, mask: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``x [B, L, H]``, ``mask [B, L|1, L]`` bool -> ``[B, L, H]``."""
        attended = self.attention(x, x, attention_mask=mask, training=training)
        x = self.attention_norm(x + self.attention_dropout(attended, training=training))
        hidden = self.outer(self.inner(x))
        return self.output_norm(x + self.output_dropout(hidden, training=training))


class TransformerEncoder(tf.keras.layers.Layer):
    """``num_layers`` TransformerBlocks over item + learned positional embeddings.

    Position 0 is the first item of the right-padded sequence, as in RecBole.
    """

    def __init__(self, config, causal: bool, **kwargs):
        super().__init__(**kwargs)
        self.causal = causal
        self.positions = tf.keras.layers.Embedding(
            config.max_seq_len, config.hidden_size,
            embeddings_initializer=normal_initializer(config.initializer_range),
        )
        self.norm = tf.keras.layers.LayerNormalization(epsilon=config.layer_norm_eps)
        self.dropout = tf.keras.layers.Dropout(config.hidden_dropout_prob)
        self.blocks = [
            TransformerBlock(
                config.hidden_size, config.num_heads, config.inner_size, config.hidden_dropout_prob,
                config.attn_dropout_prob, config.layer_norm_eps, config.initializer_range,
                name=f"block_{i}",
            )
            for i in range(config.num_layers)
        ]

    def call(self, embedded: tf.Tensor, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``embedded [B, L, H]`` item embeddings of ``item_ids [B, L]`` -> ``[B, L, H]``."""
        length = tf.shape(item_ids)[1]
        x = embedded + self.positions(tf.range(length))[tf.newaxis]
        x = self.dropout(self.norm(x), training=training)
        mask = attention_mask(item_ids, self.causal)
        for block in self.blocks:
            x = block(x, mask, training=training)
        return x


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax of ``logits [B, L]`` over positions where ``mask [B, L]`` is True."""
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), tf.constant(-1e9, logits.dtype)))
    return tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)


def validate_transformer(config, name: str) -> None:
    from tfseq.config import ConfigError

    if config.hidden_size % config.num_heads:
        raise ConfigError(
            f"{name}: hidden_size ({config.hidden_size}) must be divisible by num_heads ({config.num_heads})"
        )
    for field in ("hidden_size", "num_heads", "inner_size", "max_seq_len"):
        if getattr(config, field) < 1:
            raise ConfigError(f"{name}.{field} must be >= 1, got {getattr(config, field)}")
    for field in ("hidden_dropout_prob", "attn_dropout_prob"):
        if not 0 <= getattr(config, field) < 1:
            raise ConfigError(f"{name}.{field} must be in [0, 1), got {getattr(config, field)}")
