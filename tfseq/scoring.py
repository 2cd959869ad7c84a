"""Scores to rank: the one place that turns a model's query into item scores for ranking.

Evaluation (:mod:`tfseq.evaluation`), the in-process recommender and the
SavedModel (:mod:`serving.export`) all rank with :func:`score_items`, so a model
is served exactly as it was measured: the padding item at -inf, and, with
``exclude_history`` (one name in training, evaluation and serving), every item
of the history at -inf too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfseq.data import schema


def mask_history(scores: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    """``scores [B, N]`` with every (non-padding) item of ``item_ids [B, L]`` set to -inf."""
    item_ids = tf.cast(item_ids, tf.int32)
    rows = tf.broadcast_to(tf.range(tf.shape(item_ids)[0])[:, tf.newaxis], tf.shape(item_ids))
    valid = tf.not_equal(item_ids, schema.PAD_ID)
    indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(item_ids, valid)], axis=1)
    updates = tf.fill([tf.shape(indices)[0]], tf.constant(-np.inf, scores.dtype))
    return tf.tensor_scatter_nd_update(scores, indices, updates)


def score_items(
    model: Any,
    item_ids: tf.Tensor,
    *,
    exclude_history: bool = False,
    candidates: tf.Tensor | None = None,
    fallback: tf.Tensor | None = None,
    user_ids: tf.Tensor | None = None,
    history_ids: tf.Tensor | None = None,
) -> tf.Tensor:
    """Ranking scores ``[B, N]`` float32 for right-padded histories ``item_ids [B, L]``.

    Args:
      model: a ``SequentialRecommender`` (``encode`` and ``candidate_embeddings``).
      item_ids: ``[B, L]`` int vocabulary indices, right-padded with ``PAD_ID``.
      exclude_history: set every item of the row's history to -inf.
      candidates: ``[N, D]`` the candidate table when the caller holds it already
        (evaluation fetches it once per pass); default: the model's.
      fallback: ``[N]`` scores for rows with no item at all (serving's popularity).
      user_ids: ``[B]`` int user vocabulary indices (0 = unknown) for a model that
        uses users (``uses_user``); ``None`` = no user. Other models ignore them.
      history_ids: ``[B, H]`` the items to mask with ``exclude_history`` when they are more
        than the model reads (serving masks every known item of a request, also those
        before the last ``max_seq_len``); default ``item_ids``.

    Returns:
      ``query @ candidates.T`` with column ``PAD_ID`` at -inf (and the history,
      when ``exclude_history``).
    """
    users = {schema.USER_IDS: user_ids} if user_ids is not None and getattr(model, "uses_user", False) else {}
    query = tf.cast(model.encode(item_ids, training=False, **users), tf.float32)  # [B, D]
    if candidates is None:
        candidates = tf.cast(model.candidate_embeddings(training=False), tf.float32)  # [N, D]
    scores = tf.linalg.matmul(query, candidates, transpose_b=True)  # [B, N]
    if fallback is not None:
        empty = tf.reduce_all(tf.equal(item_ids, schema.PAD_ID), axis=1)  # [B]
        scores = tf.where(empty[:, tf.newaxis], tf.cast(fallback, tf.float32)[tf.newaxis, :], scores)
    padding = tf.one_hot(schema.PAD_ID, tf.shape(scores)[1], on_value=-np.inf, off_value=0.0)
    scores = scores + padding[tf.newaxis, :]
    if exclude_history:
        scores = mask_history(scores, item_ids if history_ids is None else history_ids)
    return scores
