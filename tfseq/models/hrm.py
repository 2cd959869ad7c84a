"""``hrm``: HRM, the hierarchical representation model (a user vector and the recent items, pooled twice).

Wang et al., "Learning Hierarchical Representation Model for Next Basket
Recommendation", SIGIR 2015, as MetaSpore's sequential benchmark and RecBole
run it on item sequences: the query after a history is built in two layers of
pooling,

1. the embeddings of the last ``window`` items (the paper's last transaction;
   RecBole's ``high_order``, MetaSpore's recent-behaviour sequence) pooled into
   one vector ``s``;
2. ``[u, s]``, the user's embedding and that vector, pooled into the query,

where each pooling is ``aggregation``: ``"average"`` (the paper's
HRM_AvgAvg) or ``"max"`` (element-wise, HRM_MaxMax, the paper's best). Items
are scored by ``query . item`` against a candidate table of their own
(MetaSpore's item tower); ``tie_weights=True`` scores against the input item
table instead, as RecBole does. A tied table makes ``score(i -> j)`` equal
``score(j -> i)`` when the window holds one item, so it cannot learn which
of two items comes first (on a toy cycle the untied model ranks the true next
item first, the tied one about 1.5th).

The user vector is constant along a sequence and layer 1 looks back a fixed
number of items, so the query at position t reads only items ``<= t``: the
model is causal and trains every position of a sequence in one pass.

Users: the model's one side input, ``features["user_ids"] [B]``, holds user
vocabulary indices (``user_vocab.txt``), 0 = unknown. A row whose user is
unknown (0, or outside the table) or a batch without ``user_ids`` takes the
sequence-only path: layer 2 pools the item
vector alone, so the query is ``s``. This is the model's own answer without a
user, not a learned "unknown user" vector: under ``average`` it ranks exactly
as ``(u + s) / 2`` would with ``u = 0``; under ``max`` it ranks by the recent
items alone. Users absent from the training split are unknown to the reader
and to the SavedModel (their rows of the table were never trained).

Deviations:
  * MetaSpore's two-tower model L2-normalises the query and the items and
    scores ``sigmoid(dot / tau)``, trained by FTRL; here scores are plain dot
    products (as in the paper and RecBole) and the loss is any registry loss;
  * one ``aggregation`` for both layers (the paper also mixes them);
  * dropout (``dropout_prob``, RecBole's 0.2) acts once on ``[u, s]`` before
    layer 2; RecBole drops the user vector twice (alone, then in ``[u, s]``);
  * with fewer than ``window`` items so far, ``average`` divides by the
    number of real items (RecBole divides the whole history's sum by
    ``min(length, high_order)``) and ``max`` ignores the missing ones;
  * a history without any item gives ``s = 0`` (serving answers such
    histories with popularity before the model is asked).
Initialisation is RecBole's: Glorot-normal tables.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfseq.data import schema
from tfseq.models.base import Features, SequentialRecommender, as_features
from tfseq.models.configs import AGGREGATIONS, HRMConfig  # noqa: F401
from tfseq.models.layers import last_window, padding_mask


def _glorot_normal(rows: int, width: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (rows + width)))  # xavier_normal_


def window_pool(x: tf.Tensor, mask: tf.Tensor, width: int, aggregation: str) -> tf.Tensor:
    """``[B, L, D]``: at position t, ``x [B, L, D]`` pooled over the masked-in positions ``t-width+1 .. t``.

    ``mask [B, L]`` marks the real items. A position whose window holds no real
    item gives zeros.
    """
    weights = tf.cast(mask, x.dtype)[..., tf.newaxis]  # [B, L, 1]
    pad = [[0, 0], [width - 1, 0], [0, 0]]  # positions before the start count as padding
    # the window's number of real items: avg_pool's mean of the 0/1 weights times the width
    counts = tf.nn.avg_pool1d(tf.pad(weights, pad), ksize=width, strides=1, padding="VALID") * width
    if aggregation == "max":
        floor = tf.constant(x.dtype.min, x.dtype)
        masked = tf.where(mask[..., tf.newaxis], x, floor)
        pooled = tf.nn.max_pool1d(tf.pad(masked, pad, constant_values=x.dtype.min), ksize=width, strides=1,
                                  padding="VALID")
    else:
        sums = tf.nn.avg_pool1d(tf.pad(x * weights, pad), ksize=width, strides=1, padding="VALID") * width
        pooled = sums / tf.maximum(counts, 1.0)
    return tf.where(counts > 0.5, pooled, tf.zeros_like(pooled))


def masked_pool(x: tf.Tensor, mask: tf.Tensor, aggregation: str) -> tf.Tensor:
    """``x [B, W, D]`` pooled over the positions where ``mask [B, W]`` holds -> ``[B, D]`` (zeros if none)."""
    weights = tf.cast(mask, x.dtype)[..., tf.newaxis]  # [B, W, 1]
    counts = tf.reduce_sum(weights, axis=1)  # [B, 1]
    if aggregation == "max":
        pooled = tf.reduce_max(tf.where(mask[..., tf.newaxis], x, tf.constant(x.dtype.min, x.dtype)), axis=1)
    else:
        pooled = tf.reduce_sum(x * weights, axis=1) / tf.maximum(counts, 1.0)
    return tf.where(counts > 0.5, pooled, tf.zeros_like(pooled))


class HRM(SequentialRecommender):
    """Causal: ``encode_all`` gives the query after every position; reads ``user_ids`` when given."""

    causal = True
    side_inputs = (schema.USER_IDS,)

    def __init__(self, config: HRMConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        width = config.embedding_size
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, width, name="item_embedding", embeddings_initializer=_glorot_normal(num_items, width),
        )
        self.user_embedding = tf.keras.layers.Embedding(
            self.user_vocab_size, width, name="user_embedding",
            embeddings_initializer=_glorot_normal(self.user_vocab_size, width),
        )
        self.user_embedding(tf.zeros([0], tf.int64))  # the table exists before any call that reads a user
        self.candidate_embedding = None
        if not config.tie_weights:
            self.candidate_embedding = tf.keras.layers.Embedding(
                num_items, width, name="candidate_embedding",
                embeddings_initializer=_glorot_normal(num_items, width),
            )
            self.candidate_embedding(tf.zeros([0], tf.int64))
        self.dropout = tf.keras.layers.Dropout(config.dropout_prob)

    def _user_vectors(self, user_ids: tf.Tensor | None, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``([B, D] user vectors, [B] bool known)``; unknown rows (0, out of range, or no ``user_ids``) get zeros."""
        if user_ids is None:
            user_ids = tf.zeros([batch], tf.int64)
        user_ids = tf.cast(user_ids, tf.int64)
        known = (user_ids > 0) & (user_ids < self.user_vocab_size)  # [B]
        vectors = self.user_embedding(tf.where(known, user_ids, tf.zeros_like(user_ids)))  # [B, D]
        return tf.where(known[:, tf.newaxis], vectors, tf.zeros_like(vectors)), known

    def _layer2(self, items: tf.Tensor, user_ids: tf.Tensor | None, training: bool) -> tf.Tensor:
        """Layer 2: ``items [B, D]`` or ``[B, L, D]`` (layer 1's output) pooled with the user vector."""
        users, known = self._user_vectors(user_ids, tf.shape(items)[0])  # [B, D], [B]
        for _ in range(items.shape.rank - 2):  # [B, L, D]: one user vector for every position
            users, known = users[:, tf.newaxis], known[:, tf.newaxis]
        users = tf.broadcast_to(tf.cast(users, items.dtype), tf.shape(items))
        stacked = self.dropout(tf.stack([users, items], axis=-2), training=training)  # [..., 2, D]
        users, items = stacked[..., 0, :], stacked[..., 1, :]
        if self.config.aggregation == "max":
            both = tf.maximum(users, items)
        else:
            both = (users + items) / 2.0
        return tf.where(known[..., tf.newaxis], both, items)  # unknown user: the items alone

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (and ``user_ids [B]``) -> the query after every position ``[B, L, embedding_size]``."""
        features = as_features(features)
        item_ids = features[schema.ITEM_IDS]
        mask = padding_mask(item_ids)
        items = window_pool(self.item_embedding(item_ids), mask, self.config.window, self.config.aggregation)
        return self._layer2(items, features.get(schema.USER_IDS), training)

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (and ``user_ids [B]``) -> the query after each history ``[B, embedding_size]``.

        Only each row's last ``window`` items are read (the query at its last
        position of :meth:`encode_all`).
        """
        features = as_features(features)
        recent = last_window(features[schema.ITEM_IDS], self.config.window)  # [B, W]
        items = masked_pool(self.item_embedding(recent), padding_mask(recent), self.config.aggregation)
        return self._layer2(items, features.get(schema.USER_IDS), training)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The candidate table ``[num_items, embedding_size]``: the input item table when ``tie_weights``."""
        table = self.item_embedding if self.candidate_embedding is None else self.candidate_embedding
        return table.embeddings


__all__ = ["HRM", "HRMConfig", "masked_pool", "window_pool"]
