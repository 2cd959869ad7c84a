"""Scores to rank: the one place that turns a model's query into item scores for ranking.

Evaluation (:mod:`tfseq.evaluation`), the in-process recommender and the
SavedModel (:mod:`serving.export`) all rank with :func:`score_items`, so a model
is served exactly as it was measured: the padding item at -inf, and, with
``exclude_history`` (one name in training, evaluation and serving), every item
of the history at -inf too.

:class:`Recommender` is what they ask of a model: a query from the batch's
feature dict, the candidate table, and the names of the side inputs it reads.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Protocol, Sequence, TypeAlias

import numpy as np
import tensorflow as tf

from tfseq.data import schema

Features: TypeAlias = Mapping[str, tf.Tensor]  # {"item_ids": [B, L], plus side inputs such as "user_ids": [B]}


class Recommender(Protocol):
    """What ranking, evaluation and the export need of a model (every ``SequentialRecommender`` is one).

    Attributes:
      side_inputs: the batch keys beyond ``item_ids`` that ``encode`` reads
        (``tfseq.data.schema.SIDE_INPUTS`` names, e.g. ``user_ids``); callers
        supply them, and a model answers a batch that lacks one as it defines.
      num_items: item vocabulary size including padding (the candidate rows).
      user_vocab_size: user vocabulary size including index 0, or 0 when ``user_ids`` is not read.
    """

    side_inputs: ClassVar[tuple[str, ...]]
    num_items: int
    user_vocab_size: int

    @property
    def variables(self) -> Sequence[tf.Variable]: ...

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """The query ``[B, D]`` after each right-padded history ``features["item_ids"] [B, L]``."""
        ...

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The candidate table ``[N, D]``; row 0 is padding."""
        ...


def mask_history(scores: tf.Tensor, item_ids: tf.Tensor, first_item: tf.Tensor | int = 0) -> tf.Tensor:
    """``scores [B, C]`` of items ``first_item .. first_item + C - 1`` with every (non-padding)
    item of ``item_ids [B, L]`` in that range set to -inf (``first_item`` 0: the whole catalogue)."""
    item_ids = tf.cast(item_ids, tf.int32)
    columns = item_ids - tf.cast(first_item, tf.int32)
    rows = tf.broadcast_to(tf.range(tf.shape(item_ids)[0])[:, tf.newaxis], tf.shape(item_ids))
    valid = tf.not_equal(item_ids, schema.PAD_ID) & (columns >= 0) & (columns < tf.shape(scores)[1])
    indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(columns, valid)], axis=1)
    updates = tf.fill([tf.shape(indices)[0]], tf.constant(-np.inf, scores.dtype))
    return tf.tensor_scatter_nd_update(scores, indices, updates)


def chunk_scores(
    query: tf.Tensor,
    candidates: tf.Tensor,
    first_item: tf.Tensor | int = 0,
    *,
    history_ids: tf.Tensor | None = None,
) -> tf.Tensor:
    """Ranking scores ``[B, C]`` of the items ``first_item .. first_item + C - 1``.

    Args:
      query: ``[B, D]`` float32 queries.
      candidates: ``[C, D]`` float32 rows ``first_item ..`` of the candidate table.
      first_item: the item index of ``candidates[0]``.
      history_ids: ``[B, H]`` items to set to -inf (``exclude_history``), or None.

    Returns:
      ``query @ candidates.T``, with the padding item (when in range) at -inf and the
      ``history_ids`` too. Full-catalogue scoring is the chunk that starts at 0; evaluation
      walks the catalogue in chunks so that no ``[B, N]`` matrix is ever built.
    """
    scores = tf.linalg.matmul(query, candidates, transpose_b=True)  # [B, C]
    return masked_scores(scores, first_item, history_ids)


def masked_scores(
    scores: tf.Tensor, first_item: tf.Tensor | int = 0, history_ids: tf.Tensor | None = None
) -> tf.Tensor:
    """``scores [B, C]`` of items ``first_item ..`` with the padding item (when in range) and
    the ``history_ids [B, H]`` (when given) at -inf."""
    columns = tf.range(tf.shape(scores)[1]) + tf.cast(first_item, tf.int32)  # [C]
    scores = tf.where(tf.equal(columns, schema.PAD_ID)[tf.newaxis, :], -np.inf, scores)
    if history_ids is not None:
        scores = mask_history(scores, history_ids, first_item)
    return scores


def score_items(
    model: Recommender,
    features: Features,
    *,
    exclude_history: bool = False,
    candidates: tf.Tensor | None = None,
    fallback: tf.Tensor | None = None,
    history_ids: tf.Tensor | None = None,
) -> tf.Tensor:
    """Ranking scores ``[B, N]`` float32 for right-padded histories ``features["item_ids"] [B, L]``.

    Args:
      model: the model (``encode`` and ``candidate_embeddings``).
      features: ``item_ids [B, L]`` int vocabulary indices, right-padded with ``PAD_ID``,
        and the model's side inputs (e.g. ``user_ids [B]``, 0 = unknown); ``encode`` gets them all.
      exclude_history: set every item of the row's history to -inf.
      candidates: ``[N, D]`` the candidate table when the caller holds it already
        (evaluation fetches it once per pass); default: the model's.
      fallback: ``[N]`` scores for rows with no item at all (serving's popularity).
      history_ids: ``[B, H]`` the items to mask with ``exclude_history`` when they are more
        than the model reads (serving masks every known item of a request, also those
        before the last ``max_seq_len``); default ``item_ids``.

    Returns:
      ``query @ candidates.T`` with column ``PAD_ID`` at -inf (and the history,
      when ``exclude_history``).
    """
    item_ids = features[schema.ITEM_IDS]
    query = tf.cast(model.encode(features, training=False), tf.float32)  # [B, D]
    if candidates is None:
        candidates = tf.cast(model.candidate_embeddings(training=False), tf.float32)  # [N, D]
    masked = (item_ids if history_ids is None else history_ids) if exclude_history else None
    scores = tf.linalg.matmul(query, candidates, transpose_b=True)  # [B, N]
    if fallback is not None:
        empty = tf.reduce_all(tf.equal(item_ids, schema.PAD_ID), axis=1)  # [B]
        scores = tf.where(empty[:, tf.newaxis], tf.cast(fallback, tf.float32)[tf.newaxis, :], scores)
    return masked_scores(scores, 0, masked)
