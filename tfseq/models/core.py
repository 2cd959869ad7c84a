"""``core_ave`` and ``core_trm``: CORE, sessions encoded in the item embedding space.

Hou et al., "CORE: Simple and Effective Session-based Recommendation within
Consistent Representation Space", SIGIR 2022, as RecBole implements it. The
session representation is a weighted sum of the session's own item
embeddings (after session dropout), so it lies in the items' space:
  * ``core_ave``: equal weights over the session's items;
  * ``core_trm``: weights = softmax over the items of a ``Dense(1)`` on a
    left-to-right transformer (learned positions, padding masked) run on the
    same embeddings. RecBole's ``TransNet.get_attention_mask`` defaults to
    ``bidirectional=False``, so position s sees only items <= s.
Robust distance measuring: the session vector and the candidate table are
L2-normalised and a score is cosine / ``temperature``; ``encode`` returns
``normalised_session / temperature``, so ``query @ candidates.T`` is CORE's
logit and every loss sees it. In training the candidate table gets item
dropout before normalisation. Every weight, LayerNorm's included, starts at
U(+-1/sqrt(embedding_size)) (RecBole's ``_reset_parameters``).

Deviations from RecBole:
  * ``core_ave`` averages the last ``window`` (3) items, not the whole history
    (``--window 0``, RecBole's): under leave-one-out without history masking a
    whole history's mean ranks the history's own items first, each a miss,
    which held it under the popularity baseline on ml-100k
    (``bench/defaults.py``);
  * both variants are causal, so one pass over a sequence trains all its
    prefixes, with one session-dropout draw per sequence instead of one per
    prefix (``TrainConfig.all_positions=False`` trains RecBole's separate
    prefixes). ``core_ave``: the query after position t is the running mean of
    the first t embeddings. ``core_trm``: with a left-to-right transformer,
    item s's weight logit does not depend on later items, so the query of
    prefix t is a softmax over the logits at positions <= t (a causal
    ``[L, L]`` weighting), exactly RecBole's query of that prefix;
  * ``core_trm``'s ``encode`` keeps a history's last ``max_seq_len`` items when
    it is longer, as the reader does.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfseq.models.base import Features, SequentialRecommender, item_ids_of
from tfseq.models.configs import COREConfig, CORETrmConfig
from tfseq.models.layers import (
    causal_encoder,
    last_window,
    masked_mean,
    masked_softmax,
    padding_mask,
    uniform_init,
    windowed_mean,
)


class CORE(SequentialRecommender):
    """What both CORE variants share: the table, both dropouts, normalisation and temperature.

    Subclasses weigh the session's items: ``session_vector`` (and, when causal,
    ``encode_all``) from ``embedded_session``.
    """

    def __init__(self, config: COREConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        self.init = uniform_init(1.0 / math.sqrt(config.embedding_size))
        self.item_embedding = self.init.embedding(num_items, config.embedding_size, name="item_embedding")
        self.sess_dropout = tf.keras.layers.Dropout(config.sess_dropout)
        self.item_dropout = tf.keras.layers.Dropout(config.item_dropout)

    def embedded_session(self, item_ids: tf.Tensor, training: bool) -> tf.Tensor:
        """The session's item embeddings after session dropout ``[B, L, E]``."""
        return self.sess_dropout(self.item_embedding(item_ids), training=training)

    def to_query(self, session: tf.Tensor) -> tf.Tensor:
        """``session [..., E]`` -> ``normalised / temperature``: its dot products are cos / T."""
        return tf.math.l2_normalize(session, axis=-1) * (1.0 / self.config.temperature)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The L2-normalised item table ``[num_items, E]``, after item dropout in training."""
        table = self.item_dropout(self.item_embedding.embeddings, training=training)
        return tf.math.l2_normalize(table, axis=-1)


class COREAve(CORE):
    """Equal weights: the session vector is the mean of its last ``window`` item embeddings (of all of
    them with ``window`` 0); causal."""

    causal = True

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the query after every position ``[B, L, E]`` (running means)."""
        item_ids = item_ids_of(features)
        x = self.embedded_session(item_ids, training)
        return self.to_query(windowed_mean(x, padding_mask(item_ids), self.config.window))

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the query of each history ``[B, E]``."""
        item_ids = item_ids_of(features)
        if self.config.window:
            item_ids = last_window(item_ids, self.config.window)
        x = self.embedded_session(item_ids, training)
        return self.to_query(masked_mean(x, padding_mask(item_ids)))


class CORETrm(CORE):
    """Weights from a left-to-right transformer (RecBole's TransNet); causal."""

    causal = True

    def __init__(self, config: CORETrmConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        self.encoder = causal_encoder(config, config.embedding_size, self.init)
        self.weight_head = self.init.dense(1, name="weight_head")

    def item_logits(self, item_ids: tf.Tensor, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Weight logits ``[B, L]``; position s's depends only on items <= s."""
        hidden = self.encoder(x, item_ids, training=training)  # [B, L, E]
        return tf.squeeze(self.weight_head(hidden), axis=-1)  # [B, L]

    def item_weights(self, item_ids: tf.Tensor, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Softmax weights ``[B, L]`` of the session's items (0 at padding)."""
        return masked_softmax(self.item_logits(item_ids, x, training=training), padding_mask(item_ids))

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (L <= max_seq_len) -> the query after every position ``[B, L, E]``."""
        item_ids = item_ids_of(features)
        x = self.embedded_session(item_ids, training)  # [B, L, E]
        logits = self.item_logits(item_ids, x, training=training)  # [B, L]
        length = tf.shape(item_ids)[1]
        earlier = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # [T, S]: s <= t
        keys = tf.logical_and(earlier[tf.newaxis], padding_mask(item_ids)[:, tf.newaxis, :])  # [B, T, S]
        scores = tf.where(keys, logits[:, tf.newaxis, :], logits.dtype.min)  # [B, T, S]
        alpha = tf.nn.softmax(scores, axis=-1) * tf.cast(keys, logits.dtype)  # [B, T, S]
        return self.to_query(tf.einsum("bts,bse->bte", alpha, x))

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (any ``L``) -> the query of each history ``[B, E]``."""
        item_ids = item_ids_of(features)
        window = last_window(item_ids, self.config.max_seq_len)  # [B, W]
        x = self.embedded_session(window, training)  # [B, W, E]
        alpha = self.item_weights(window, x, training=training)  # [B, W]
        return self.to_query(tf.reduce_sum(alpha[..., tf.newaxis] * x, axis=1))
