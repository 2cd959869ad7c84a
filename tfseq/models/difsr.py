"""``difsr``: DIF-SR, side information fused into the attention scores instead of the input.

Xie, Zhou et al., "Decoupled Side Information Fusion for Sequential
Recommendation", SIGIR 2022 (the authors' RecBole model ``SASRecD``). A causal
transformer like SASRec, except for where side information and positions
enter:

* the input of the first block is the item embedding alone (LayerNorm, dropout);
* every block's attention computes separate score matrices: items
  (``Q_I K_I^T`` from the block's input), positions (``Q_P K_P^T`` from the
  learned position table, the same table in every block) and, per attribute
  field, ``Q_A K_A^T`` from the item's pooled attribute embedding (width
  ``attribute_embedding_size``, the same embeddings in every block). Each stream
  has its own query/key projections in each block;
* the score matrices are fused (``fusion_type``): ``sum``; ``concat`` (a linear
  map of the streams' score rows, concatenated, to one row); ``gate`` (per
  query row, a small MLP gives each stream a weight, softmax over streams, and
  the weighted sum of the streams' rows), then divided by ``sqrt(embedding_size /
  num_heads)``, masked, softmax-ed;
* the values are the items' only, so the output stays in the item space and
  is scored against the item table (weight tying);
* an auxiliary loss: per field a linear ``attribute_predictor`` on the query
  predicts the positive item's attribute values (multi-hot, padding value left
  out), binary cross-entropy averaged over queries and values, times
  ``lambda_attr`` (the paper's and code's ``lamdas``), added to the retrieval
  loss of whichever loss the model trains with.

Defaults are sized to train on Amazon Beauty within an hour on two CPU cores
(``bench/side_features.py``): 2 layers, 2 heads, hidden 128, inner 256,
attribute width 128 (64 per head, the authors' per-head widths), and the
authors' hidden dropout 0.5, attention dropout 0.3, ``gate`` fusion, sum
pooling, linear predictor and lambda 10. The model trains on RecBole's
separate (prefix, next item) examples in batches of 128, as the authors'
RecBole runs do, keeps the epoch of the best validation Recall@20 (the
``valid_metric`` of the authors' config file; their logged run used
Recall@10), and its learning rate is cut to 0.3 times after
each 3 epochs without a better one, for at most 40 epochs (its
``train_defaults``: ``all_positions`` off, ``lr_decay_patience`` 3,
``valid_metric`` recall@20, ``epochs`` 40). The authors' Beauty shape is
``--num_layers 4 --num_heads 4 --embedding_size 256`` (their config file; their
logged run used ``attribute_embedding_size`` 256 and at most 7 items per
history), with batches of 2,048 at learning rate 1e-4
for up to 200 epochs, which does not fit that budget (RESULTS.md).

Deviations from the authors' code:
  * before ``concat`` and ``gate`` fusion the scores of keys a query may not see
    (later items, padding) are set to 0; the authors' fusion layers read the
    whole score row, future items included, and mask only afterwards, which
    lets the fused scores of training positions depend on later items. The
    fusion layers still span ``max_seq_len`` keys (shorter rows are
    zero-padded), so the learned weights are per absolute key position as in
    the original;
  * one ``attribute_embedding_size`` and one ``lambda_attr`` for every field (the
    code takes a list per field);
  * duplicate values of an item are counted once (the code's one-hot sum
    labels a duplicate 2), and an item without a value gets a zero attribute
    vector (max pooling in the code gives it -1e9);
  * training scores every position of a sequence in one pass (causal), as
    tfseq's ``sasrec`` does; ``TrainConfig.all_positions=False`` trains RecBole's
    separate prefixes;
  * ``encode`` runs the last block for each history's last item only (the same
    numbers, less work) and keeps a history's last ``max_seq_len`` items.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import tensorflow as tf

from tfseq.data.item_features import ItemFeatures
from tfseq.models.attributes import ItemAttributes
from tfseq.models.base import Features, SequentialRecommender, item_ids_of
from tfseq.models.configs import ATTRIBUTE_PREDICTORS, FUSION_TYPES, DIFSRConfig  # noqa: F401
from tfseq.models.layers import (
    Init,
    TransformerBlock,
    attend,
    check_length,
    last_window,
    normal_init,
    run_blocks,
)


class DecoupledAttention(tf.keras.layers.Layer):
    """DIF-SR's multi-head attention: per-stream scores, fused, over the items' values.

    Streams, in the authors' order: each attribute field, the items, the positions.

    Args:
      hidden_size: the items' width; the value and output width.
      attribute_size: each field's attribute width.
      num_fields: number of attribute fields.
      num_heads: attention heads (every stream is split into the same number of heads).
      max_seq_len: the key span of the ``concat`` and ``gate`` fusion layers.
      fusion_type: sum, concat or gate.
      dropout: dropout on the attention weights.
      init: the weights' initialisers.
    """

    def __init__(
        self,
        hidden_size: int,
        attribute_size: int,
        num_fields: int,
        num_heads: int,
        max_seq_len: int,
        fusion_type: str,
        dropout: float,
        init: Init,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"fusion_type must be one of {FUSION_TYPES}, got {fusion_type!r}")
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_size = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.fusion_type = fusion_type
        self.item_qkv = init.dense(3 * hidden_size, name="item_qkv")
        self.position_qk = init.dense(2 * hidden_size, name="position_qk")
        self.attribute_qk = [init.dense(2 * attribute_size, name=f"attribute_qk_{i}") for i in range(num_fields)]
        if fusion_type == "concat":
            self.fusion = init.dense(max_seq_len, name="fusion")  # (fields + 2) * max_seq_len -> max_seq_len
        elif fusion_type == "gate":
            self.gate_hidden = init.dense(max_seq_len, activation=tf.nn.relu, name="gate_hidden")
            self.gate_energy = init.dense(1, name="gate_energy")
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.output_dense = init.dense(hidden_size, name="output")

    def _heads(self, x: tf.Tensor) -> tf.Tensor:
        """``[..., T, W]`` -> ``[..., heads, T, W / heads]``."""
        shape = tf.shape(x)
        rank = len(x.shape)
        x = tf.reshape(x, tf.concat([shape[:-1], [self.num_heads, shape[-1] // self.num_heads]], axis=0))
        perm = [*range(rank - 2), rank - 1, rank - 2, rank]
        return tf.transpose(x, perm)

    def _query_key(self, projection: tf.keras.layers.Layer, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One stream's per-head queries and keys: ``x [B|1, L, W]`` -> two ``[B|1, heads, L, W / heads]``."""
        query, key = tf.split(projection(x), 2, axis=-1)
        return self._heads(query), self._heads(key)

    def stream_scores(
        self,
        x: tf.Tensor,
        positions: tf.Tensor,
        attributes: Sequence[tf.Tensor],
        query_positions: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The unscaled scores of every stream and the items' values.

        Returns:
          ``scores [B, heads, Q, S, L]`` with ``S = fields + 2`` (fields, items, positions) and
          ``Q = L``, or ``Q = 1`` for ``query_positions [B]``; ``values [B, heads, L, H / heads]``.
        """
        item_query, item_key, item_value = tf.split(self.item_qkv(x), 3, axis=-1)
        pairs = [self._query_key(qk, a) for qk, a in zip(self.attribute_qk, attributes)]
        pairs.append((self._heads(item_query), self._heads(item_key)))
        position_query, position_key = self._query_key(self.position_qk, positions[tf.newaxis])  # [1, heads, L, d]
        batch = tf.shape(x)[0]
        if query_positions is not None:  # one query row per sequence
            index = query_positions[:, tf.newaxis]  # [B, 1]
            pairs = [(tf.gather(q, index, axis=2, batch_dims=1), k) for q, k in pairs]
            position_query = tf.transpose(tf.gather(position_query[0], index, axis=1), [1, 0, 2, 3])
        else:
            position_query = tf.repeat(position_query, batch, axis=0)
        pairs.append((position_query, position_key))
        streams = [tf.linalg.matmul(q, k, transpose_b=True) for q, k in pairs]  # [B|1, heads, Q, L] each
        shape = tf.shape(streams[0])
        return tf.stack([tf.broadcast_to(s, shape) for s in streams], axis=-2), self._heads(item_value)

    def fuse(self, scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """``scores [B, heads, Q, S, L]`` -> fused ``[B, heads, Q, L]``; keys outside ``mask [B, Q|1, L]`` read 0."""
        allowed = mask[:, tf.newaxis, :, tf.newaxis, :]  # [B, 1, Q|1, 1, L]
        scores = tf.where(allowed, scores, tf.zeros_like(scores))
        if self.fusion_type == "sum":
            return tf.reduce_sum(scores, axis=-2)
        length = tf.shape(scores)[-1]
        check = tf.debugging.assert_less_equal(
            length, self.max_seq_len, message=f"sequence longer than max_seq_len={self.max_seq_len}")
        with tf.control_dependencies([check]):
            padded = tf.pad(scores, [[0, 0]] * 4 + [[0, self.max_seq_len - length]])  # [B, heads, Q, S, max_len]
        if self.fusion_type == "concat":
            shape = tf.shape(padded)
            rows = tf.reshape(padded, tf.concat([shape[:3], [-1]], axis=0))  # [B, heads, Q, S * max_len]
            rows.set_shape([None, None, None, scores.shape[-2] * self.max_seq_len])
            return self.fusion(rows)[..., :length]
        padded.set_shape([None, None, None, scores.shape[-2], self.max_seq_len])
        energy = self.gate_energy(self.gate_hidden(padded))  # [B, heads, Q, S, 1]
        weights = tf.nn.softmax(energy, axis=-2)
        return tf.reduce_sum(weights * scores, axis=-2)

    def call(
        self,
        x: tf.Tensor,
        mask: tf.Tensor,
        query_positions: tf.Tensor | None = None,
        training: bool = False,
        *,
        positions: tf.Tensor,
        attributes: Sequence[tf.Tensor],
    ) -> tf.Tensor:
        """Attends from every position of ``x``.

        Args:
          x: the items' stream ``[B, L, H]``.
          mask: ``[B, Q|1, L]`` bool, True where query i may attend to key j.
          query_positions: ``[B]`` int: one query per row (``Q = 1``); None: all ``Q = L``.
          training: applies attention dropout.
          positions: the position table's first L rows ``[L, H]``.
          attributes: per field the pooled attribute embeddings ``[B, L, A]``.

        Returns:
          ``[B, Q, H]``.
        """
        scores, values = self.stream_scores(x, positions, attributes, query_positions)
        logits = self.fuse(scores, mask) * (1.0 / math.sqrt(self.head_size))
        return attend(logits, mask, values, self.dropout, self.output_dense, self.hidden_size, training)


class DIFSR(SequentialRecommender):
    """Causal: ``encode_all`` gives the query after every position. Needs ``item_features``."""

    causal = True
    uses_item_features = DIFSRConfig.uses_item_features  # declared with the config: flags read it without TF
    train_defaults = DIFSRConfig.train_defaults

    def __init__(self, config: DIFSRConfig, num_items: int, *, item_features: ItemFeatures | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, num_items, item_features=item_features, **kwargs)
        assert item_features is not None  # checked by the base class
        init = normal_init(config.initializer_range)
        self.item_embedding = init.embedding(num_items, config.embedding_size, name="item_embedding")
        self.attributes = ItemAttributes(
            item_features, config.attribute_embedding_size, config.pooling_mode, init, name="attributes"
        )
        self.positions = self.add_weight(
            "positions", shape=[config.max_seq_len, config.embedding_size], initializer=init.kernel()
        )
        self.norm = init.layer_norm(config.layer_norm_eps, name="norm")
        self.dropout = tf.keras.layers.Dropout(config.hidden_dropout_prob)
        num_fields = len(item_features.fields)
        self.blocks = [
            TransformerBlock(
                config.embedding_size, config.num_heads, config.inner_size, config.hidden_dropout_prob,
                config.attn_dropout_prob, config.layer_norm_eps, init,
                attention=DecoupledAttention(
                    config.embedding_size, config.attribute_embedding_size, num_fields, config.num_heads,
                    config.max_seq_len, config.fusion_type, config.attn_dropout_prob, init, name="attention",
                ),
                name=f"block_{i}",
            )
            for i in range(config.num_layers)
        ]
        self.attribute_predictors = [
            init.dense(size, name=f"attribute_predictor_{i}")
            for i, size in enumerate(self.attributes.vocab_sizes)
        ] if config.attribute_predictor == "linear" else []
        for predictor in self.attribute_predictors:  # every variable exists before training
            predictor.build(tf.TensorShape([None, config.embedding_size]))

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (L <= max_seq_len) -> the query after every position ``[B, L, H]``.

        Longer inputs raise: they have no learned positions.
        """
        item_ids = item_ids_of(features)
        return self._encode(item_ids, training=training)

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (any ``L``) -> the query after each history ``[B, H]``.

        The last block computes only each row's last real position.
        """
        item_ids = item_ids_of(features)
        window = last_window(item_ids, self.config.max_seq_len)  # [B, W]
        return self._encode(window, training=training, last_only=True)

    def _encode(self, item_ids: tf.Tensor, training: bool = False, last_only: bool = False) -> tf.Tensor:
        """``[B, L, H]``, or ``[B, H]`` at each row's last real position with ``last_only``."""
        length = tf.shape(item_ids)[1]
        with tf.control_dependencies([check_length(length, self.config.max_seq_len)]):
            positions = self.positions[:length]  # [L, H]
        x = self.dropout(self.norm(self.item_embedding(item_ids)), training=training)
        attributes = self.attributes(item_ids)  # per field [B, L, A]
        return run_blocks(self.blocks, x, item_ids, causal=True, training=training, last_only=last_only,
                          positions=positions, attributes=attributes)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The input item table ``[num_items, embedding_size]``."""
        return self.item_embedding.embeddings

    def attribute_losses(self, query: tf.Tensor, positive_ids: tf.Tensor) -> list[tf.Tensor]:
        """Per field, the mean binary cross-entropy of predicting the positives' values from the queries.

        ``mean over t and v >= 1 of softplus(z[t, v]) - y[t, v] * z[t, v]`` with
        ``z = predictor(query) [T, V]`` and ``y`` the multi-hot values of ``positive_ids [T]``
        (the padding value 0 left out). The ``y * z`` sum is gathered at the positives' values
        (each item's values are distinct), so no ``[T, V]`` label matrix is built.
        """
        losses = []
        count = tf.cast(tf.shape(query)[0], query.dtype)
        for field, predictor in enumerate(self.attribute_predictors):
            size = self.attributes.vocab_sizes[field]
            if size < 2:  # a field without values: nothing to predict
                continue
            logits = predictor(query)  # [T, V]
            values = self.attributes.value_ids(field, positive_ids)  # [T, M]
            picked = tf.gather(logits, values, batch_dims=1)  # [T, M]
            positive = tf.reduce_sum(picked * tf.cast(values > 0, logits.dtype))
            total = tf.reduce_sum(tf.nn.softplus(logits[:, 1:])) - positive
            losses.append(total / tf.maximum(count * (size - 1), 1.0))
        return losses

    def auxiliary_loss(self, query: tf.Tensor, positive_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``lambda_attr`` times the sum over fields of :meth:`attribute_losses`."""
        losses = self.attribute_losses(query, positive_ids)
        if not losses or self.config.lambda_attr == 0:
            return tf.constant(0.0)
        return self.config.lambda_attr * tf.add_n(losses)
