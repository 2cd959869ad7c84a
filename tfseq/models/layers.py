"""Pieces shared by the models: initialisers, config checks, masks, pooling, the transformer.

Every function takes RIGHT-padded ``item_ids [B, L]`` (``PAD_ID`` = 0 after
the last real item) and works for any ``L >= 1``, so models trace once with
``TensorSpec([None, None])``. The transformer is RecBole's (and SASRec's):
learned positions added to the item embeddings, LayerNorm, dropout, then
post-LN blocks of multi-head self-attention and a GELU feed-forward layer.
``last_window`` (each history's last items) lives in :mod:`tfseq.models.base`,
beside ``gather_last``, and is importable from here too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence, TypeAlias

import tensorflow as tf

from tfseq.data import schema
from tfseq.models.base import last_window, sequence_lengths  # noqa: F401  (last_window: models import it here)
from tfseq.models.configs import check_config, check_heads, check_transformer_config  # noqa: F401  (re-exported)

Initializer: TypeAlias = tf.keras.initializers.Initializer


# -- initialisers ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Init:
    """How a model initialises its weights; each field makes a fresh initializer per weight.

    (A Keras initializer instance called twice without a seed returns the same
    values both times, so instances are never shared between weights.)
    """

    kernel: Callable[[], Initializer]  # Dense kernels and embedding tables
    bias: Callable[[], Initializer]
    norm_scale: Callable[[], Initializer]  # LayerNorm gamma
    norm_offset: Callable[[], Initializer]  # LayerNorm beta

    def dense(self, units: int, **kwargs: Any) -> tf.keras.layers.Dense:
        return tf.keras.layers.Dense(
            units, kernel_initializer=self.kernel(), bias_initializer=self.bias(), **kwargs
        )

    def layer_norm(self, epsilon: float, **kwargs: Any) -> tf.keras.layers.LayerNormalization:
        return tf.keras.layers.LayerNormalization(
            epsilon=epsilon, gamma_initializer=self.norm_scale(),
            beta_initializer=self.norm_offset(), **kwargs,
        )

    def embedding(self, rows: int, width: int, **kwargs: Any) -> tf.keras.layers.Embedding:
        return tf.keras.layers.Embedding(rows, width, embeddings_initializer=self.kernel(), **kwargs)


def normal_init(stddev: float) -> Init:
    """RecBole's transformer init: N(0, stddev) kernels and tables, zero biases, LayerNorm 1/0."""
    return Init(
        kernel=lambda: tf.keras.initializers.RandomNormal(stddev=stddev),
        bias=tf.keras.initializers.Zeros,
        norm_scale=tf.keras.initializers.Ones,
        norm_offset=tf.keras.initializers.Zeros,
    )


def uniform_init(limit: float) -> Init:
    """Every weight, LayerNorm's included, U(-limit, limit) (CORE's ``_reset_parameters``)."""

    def uniform() -> Initializer:
        return tf.keras.initializers.RandomUniform(-limit, limit)

    return Init(kernel=uniform, bias=uniform, norm_scale=uniform, norm_offset=uniform)


# -- masks, pooling ------------------------------------------------------------------
def padding_mask(item_ids: tf.Tensor) -> tf.Tensor:
    """``[B, L]`` bool: True at real items."""
    return tf.not_equal(item_ids, schema.PAD_ID)


def attention_mask(item_ids: tf.Tensor, causal: bool) -> tf.Tensor:
    """``[B, L, L]`` (causal) or ``[B, 1, L]`` bool: query position i may attend to key j.

    Keys must be real items, so right padding never changes a real position;
    with ``causal`` also ``j <= i`` (RecBole's ``get_attention_mask``).
    """
    keys = padding_mask(item_ids)[:, tf.newaxis, :]  # [B, 1, L]
    if not causal:
        return keys
    length = tf.shape(item_ids)[1]
    lower = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # [L, L]: j <= i
    return tf.logical_and(keys, lower[tf.newaxis])


def masked_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of ``x [B, L, D]`` over the positions where ``mask [B, L]`` holds -> ``[B, D]``.

    A row without a True position gives zeros.
    """
    weights = tf.cast(mask, x.dtype)[..., tf.newaxis]  # [B, L, 1]
    total = tf.reduce_sum(x * weights, axis=1)
    return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def running_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``[B, L, D]``: at position t, the mean of ``x`` over masked-in positions ``<= t``.

    The causal counterpart of :func:`masked_mean`: for right-padded rows its
    value at the last real position equals ``masked_mean``.
    """
    weights = tf.cast(mask, x.dtype)[..., tf.newaxis]  # [B, L, 1]
    totals = tf.cumsum(x * weights, axis=1)
    return totals / tf.maximum(tf.cumsum(weights, axis=1), 1.0)


def windowed_mean(x: tf.Tensor, mask: tf.Tensor, window: int) -> tf.Tensor:
    """``[B, L, D]``: at position t, the mean of ``x [B, L, D]`` over the masked-in positions among
    ``t - window + 1 .. t`` (``window`` 0: all of ``0 .. t``, :func:`running_mean`)."""
    if not window:
        return running_mean(x, mask)
    weights = tf.cast(mask, x.dtype)[..., tf.newaxis]  # [B, L, 1]
    totals = tf.cumsum(x * weights, axis=1)  # [B, L, D]: sums over 0..t
    counts = tf.cumsum(weights, axis=1)  # [B, L, 1]
    length = tf.shape(x)[1]

    def earlier(running: tf.Tensor) -> tf.Tensor:
        """``running`` at t - window (0 before the start)."""
        return tf.pad(running, [[0, 0], [window, 0], [0, 0]])[:, :length]

    return (totals - earlier(totals)) / tf.maximum(counts - earlier(counts), 1.0)


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax of ``logits [B, L]`` over the positions where ``mask [B, L]`` holds.

    Masked-out positions get weight 0; a row without a True position is all zeros.
    """
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), logits.dtype.min))
    return tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)


# -- transformer ------------------------------------------------------------------------
_MASKED = -1e9  # added to the logits of masked keys before the softmax


def check_length(length: tf.Tensor, max_seq_len: int) -> tf.Operation:
    """The assertion that a sequence of ``length`` positions has learned positions (``<= max_seq_len``)."""
    return tf.debugging.assert_less_equal(
        length, max_seq_len,
        message=f"sequence longer than max_seq_len={max_seq_len}; keep the last max_seq_len items of each history",
    )


class PositionalEmbedding(tf.keras.layers.Layer):
    """Adds a learned vector per position: position 0 is the first item (RecBole), or with ``from_last``
    position ``max_len - 1`` is each row's last real item (SASRec's and BSARec's left-padded windows).

    Args:
      max_len: number of positions (``max_seq_len``); longer inputs are an error.
      initializer: the table's initializer.
      from_last: count positions back from each row's last real item, so the most recent item always
        gets the same vector whatever the history's length; the query after position t then depends
        on how many items follow t, so a model using it trains on separate prefixes.
    """

    def __init__(self, max_len: int, initializer: Initializer, from_last: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_len = int(max_len)
        self.initializer = initializer
        self.from_last = bool(from_last)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.embeddings = self.add_weight(
            "embeddings", shape=[self.max_len, int(input_shape[-1])], initializer=self.initializer
        )
        super().build(input_shape)

    def call(self, x: tf.Tensor, item_ids: tf.Tensor | None = None) -> tf.Tensor:
        """``x [B, L, D]`` -> ``x + positions[:L]``, or with ``from_last`` the positions of right-padded
        ``item_ids [B, L]`` counted back from each row's last real item; raises if ``L > max_len``."""
        length = tf.shape(x)[1]
        with tf.control_dependencies([check_length(length, self.max_len)]):
            if not self.from_last:
                return x + self.embeddings[tf.newaxis, :length]
            if item_ids is None:
                raise ValueError("PositionalEmbedding(from_last=True) needs the item_ids")
            real = tf.reduce_sum(tf.cast(padding_mask(item_ids), tf.int32), axis=1, keepdims=True)  # [B, 1]
            positions = self.max_len - real + tf.range(length)[tf.newaxis, :]  # the last real item: max_len - 1
            return x + tf.gather(self.embeddings, tf.clip_by_value(positions, 0, self.max_len - 1))


def attend(
    logits: tf.Tensor,
    mask: tf.Tensor,
    values: tf.Tensor,
    dropout: tf.keras.layers.Layer,
    output_dense: tf.keras.layers.Layer,
    hidden_size: int,
    training: bool,
) -> tf.Tensor:
    """Multi-head attention after the scores: masked softmax over the keys, attention dropout, the values'
    weighted sum, heads merged, output projection.

    Args:
      logits: scaled scores ``[B, heads, Q, L]``.
      mask: ``[B, Q|1, L]`` bool, True where the query may attend to the key.
      values: ``[B, heads, L, hidden_size / heads]``.
      dropout: the attention dropout.
      output_dense: the output projection.
      hidden_size: the merged heads' width.
      training: applies attention dropout.

    Returns:
      ``output_dense`` of the ``[B, Q, hidden_size]`` context.
    """
    logits += (1.0 - tf.cast(mask[:, tf.newaxis], logits.dtype)) * _MASKED
    weights = dropout(tf.nn.softmax(logits, axis=-1), training=training)
    context = tf.transpose(tf.linalg.matmul(weights, values), [0, 2, 1, 3])  # [B, Q, heads, d]
    shape = tf.shape(context)
    return output_dense(tf.reshape(context, [shape[0], shape[1], hidden_size]))


class SelfAttention(tf.keras.layers.Layer):
    """Multi-head scaled dot-product self-attention with one fused Q/K/V projection.

    The same function as RecBole's ``MultiHeadAttention`` before its residual:
    separate Q, K, V projections (here one ``[H, 3H]`` kernel), softmax of
    ``q·k / sqrt(H / heads)`` over the allowed keys, attention dropout, output
    projection.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, init: Init, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.qkv = init.dense(3 * hidden_size, name="qkv")
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.output_dense = init.dense(hidden_size, name="output")

    def _heads(self, x: tf.Tensor) -> tf.Tensor:
        """``[B, T, H]`` -> ``[B, heads, T, H / heads]``."""
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(
        self,
        x: tf.Tensor,
        mask: tf.Tensor,
        query_positions: tf.Tensor | None = None,
        training: bool = False,
    ) -> tf.Tensor:
        """Attends from every position of ``x [B, L, H]``, or only from ``query_positions``.

        Args:
          x: the sequence ``[B, L, H]``.
          mask: ``[B, Q|1, L]`` bool, True where the query may attend to the key.
          query_positions: ``[B]`` int: one query per row (``Q = 1``); None: all ``Q = L``.
          training: applies attention dropout.

        Returns:
          ``[B, Q, H]``.
        """
        query, key, value = tf.split(self.qkv(x), 3, axis=-1)  # [B, L, H] each
        if query_positions is not None:
            query = tf.gather(query, query_positions[:, tf.newaxis], batch_dims=1)  # [B, 1, H]
        query, key, value = self._heads(query), self._heads(key), self._heads(value)
        logits = tf.linalg.matmul(query, key, transpose_b=True)  # [B, heads, Q, L]
        logits = logits * (1.0 / math.sqrt(self.head_size))
        return attend(logits, mask, value, self.dropout, self.output_dense, self.hidden_size, training)


class TransformerBlock(tf.keras.layers.Layer):
    """RecBole's ``TransformerLayer`` (post-LN): each sublayer is followed by dropout, a
    residual connection and LayerNorm; the feed-forward layer is ``Dense(inner, gelu)`` then
    ``Dense(hidden)``.

    ``attention`` replaces the :class:`SelfAttention` sublayer (DIF-SR's decoupled
    attention): it is called as ``attention(x, mask, query_positions, training=...,
    **attention_inputs)`` and returns ``[B, Q, H]``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        inner_size: int,
        hidden_dropout_prob: float,
        attn_dropout_prob: float,
        layer_norm_eps: float,
        init: Init,
        attention: tf.keras.layers.Layer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.attention = attention or SelfAttention(hidden_size, num_heads, attn_dropout_prob, init,
                                                    name="attention")
        self.attention_dropout = tf.keras.layers.Dropout(hidden_dropout_prob)
        self.attention_norm = init.layer_norm(layer_norm_eps, name="attention_norm")
        self.inner = init.dense(inner_size, activation=tf.nn.gelu, name="inner")  # exact erf GELU
        self.outer = init.dense(hidden_size, name="outer")
        self.output_dropout = tf.keras.layers.Dropout(hidden_dropout_prob)
        self.output_norm = init.layer_norm(layer_norm_eps, name="output_norm")

    def call(
        self,
        x: tf.Tensor,
        mask: tf.Tensor,
        query_positions: tf.Tensor | None = None,
        training: bool = False,
        **attention_inputs: Any,
    ) -> tf.Tensor:
        """``x [B, L, H]``, ``mask [B, Q|1, L]`` -> ``[B, Q, H]`` (see ``SelfAttention``)."""
        attended = self.attention_sublayer(x, mask, query_positions, training=training, **attention_inputs)
        return self.feed_forward(attended, training=training)

    def attention_sublayer(
        self,
        x: tf.Tensor,
        mask: tf.Tensor,
        query_positions: tf.Tensor | None = None,
        training: bool = False,
        **attention_inputs: Any,
    ) -> tf.Tensor:
        """The attention sublayer with its dropout, residual and LayerNorm: ``[B, L, H]`` -> ``[B, Q, H]``."""
        attended = self.attention(x, mask, query_positions, training=training, **attention_inputs)
        residual = x if query_positions is None else tf.gather(
            x, query_positions[:, tf.newaxis], batch_dims=1
        )
        return self.attention_norm(residual + self.attention_dropout(attended, training=training))

    def feed_forward(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The feed-forward sublayer with its dropout, residual and LayerNorm: ``[B, Q, H]`` -> ``[B, Q, H]``."""
        hidden = self.outer(self.inner(x))
        return self.output_norm(x + self.output_dropout(hidden, training=training))


def run_blocks(
    blocks: Sequence[tf.keras.layers.Layer],
    x: tf.Tensor,
    item_ids: tf.Tensor,
    *,
    causal: bool,
    training: bool = False,
    last_only: bool = False,
    **attention_inputs: Any,
) -> tf.Tensor:
    """Runs :class:`TransformerBlock` s over ``x [B, L, H]``, the input stream of ``item_ids [B, L]``.

    Args:
      blocks: the blocks, in order.
      causal: position i attends only to positions <= i (padding keys are always masked).
      last_only: (causal only) return just each row's last real position ``[B, H]``; the
        last block then computes that one position.
      **attention_inputs: passed to every block's attention (DIF-SR's streams).

    Returns:
      ``[B, L, H]``, or ``[B, H]`` with ``last_only``.
    """
    if last_only and not causal:
        raise ValueError("last_only needs a causal encoder")
    mask = attention_mask(item_ids, causal)
    for block in blocks[:-1] if last_only else blocks:
        x = block(x, mask, training=training, **attention_inputs)
    if not last_only:
        return x
    # The last real position attends to every real key: its causal row is the padding mask.
    last = tf.maximum(sequence_lengths(item_ids) - 1, 0)  # [B]
    keys = padding_mask(item_ids)[:, tf.newaxis, :]  # [B, 1, L]
    return blocks[-1](x, keys, query_positions=last, training=training, **attention_inputs)[:, 0]


class TransformerEncoder(tf.keras.layers.Layer):
    """Positions + LayerNorm + dropout + ``num_layers`` :class:`TransformerBlock` s.

    The encoders of RecBole's SASRec and CORE-trm. Attention is causal or
    bidirectional; padding keys are always masked, so a real position's output
    does not depend on how much right padding follows.

    Args:
      hidden_size: width of the items' embeddings and of every layer.
      num_layers, num_heads, inner_size: the blocks' shape.
      hidden_dropout_prob: dropout on the input and on each sublayer's output.
      attn_dropout_prob: dropout on the attention weights.
      layer_norm_eps: LayerNorm epsilon.
      max_seq_len: number of learned positions.
      causal: position i attends only to positions <= i.
      init: the weights' initialisers.
      block: builds block ``i`` from the same arguments as :class:`TransformerBlock` (a
        subclass of it, e.g. BSARec's); default :class:`TransformerBlock`.
      positions_from_last: :class:`PositionalEmbedding`'s ``from_last``.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        inner_size: int,
        hidden_dropout_prob: float,
        attn_dropout_prob: float,
        layer_norm_eps: float,
        max_seq_len: int,
        causal: bool,
        init: Init,
        block: Callable[..., TransformerBlock] = TransformerBlock,
        positions_from_last: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.causal = causal
        self.positions = PositionalEmbedding(max_seq_len, init.kernel(), from_last=positions_from_last,
                                             name="positions")
        self.norm = init.layer_norm(layer_norm_eps, name="norm")
        self.dropout = tf.keras.layers.Dropout(hidden_dropout_prob)
        self.blocks = [
            block(hidden_size, num_heads, inner_size, hidden_dropout_prob,
                  attn_dropout_prob, layer_norm_eps, init, name=f"block_{i}")
            for i in range(num_layers)
        ]

    def call(
        self,
        embedded: tf.Tensor,
        item_ids: tf.Tensor,
        training: bool = False,
        last_only: bool = False,
    ) -> tf.Tensor:
        """Encodes ``embedded [B, L, H]``, the embeddings of ``item_ids [B, L]``.

        Args:
          last_only: (causal only) return just each row's last real position
            ``[B, H]``; the last block then computes that one position.

        Returns:
          ``[B, L, H]``, or ``[B, H]`` with ``last_only``.
        """
        x = self.dropout(self.norm(self.positions(embedded, item_ids)), training=training)
        return run_blocks(self.blocks, x, item_ids, causal=self.causal, training=training, last_only=last_only)


def causal_encoder(
    config: Any, hidden_size: int, init: Init, block: Callable[..., TransformerBlock] = TransformerBlock,
    positions_from_last: bool = False,
) -> TransformerEncoder:
    """The causal :class:`TransformerEncoder` ``encoder`` of a config with RecBole's transformer fields:
    ``num_layers``, ``num_heads``, ``inner_size``, ``hidden_dropout_prob``, ``attn_dropout_prob``,
    ``layer_norm_eps`` and ``max_seq_len``."""
    return TransformerEncoder(
        hidden_size=hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        inner_size=config.inner_size,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attn_dropout_prob=config.attn_dropout_prob,
        layer_norm_eps=config.layer_norm_eps,
        max_seq_len=config.max_seq_len,
        causal=True,
        init=init,
        block=block,
        positions_from_last=positions_from_last,
        name="encoder",
    )
