"""Full-ranking evaluation: every item scored for every user, all metrics at all K from one pass.

RecBole's protocol for sequential models: no sampled negatives, the padding
item at -inf, history items *not* masked. ``exclude_history=True`` sets every item
of the history shown to the model to -inf, the target included when it is in
the history (a repeat purchase then ranks below every unseen item: with
``N`` items and ``s`` distinct seen ones, its rank is at least ``N - s``, i.e.
it misses every K < N - s), as the masked protocols in the literature do.

Ties are broken as a stable sort by descending score would: an item with the
same score as the target ranks above it when its index is lower, so
``rank = #(s > s_t) + #(s == s_t and index < t)``. This matters for ``pop``,
whose scores tie a lot.

Ranks are computed in TensorFlow inside one ``tf.function`` traced once (no
``[B, N]`` score matrix leaves the graph); only the ``[B]`` ranks come back,
and the metrics' sums are accumulated batch by batch.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.metrics.ranking import DEFAULT_KS, metric_sums, validated_ks
from tfseq.scoring import score_items

NUM_USERS = "num_users"

Batch = Mapping[str, Any]  # {"item_ids": [B, L] right-padded histories, "target": [B], optional "user_ids": [B]}


def rank_targets(scores: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """0-based rank of each target in a stable descending sort of its row.

    Args:
      scores: ``[B, N]`` float scores (may hold -inf).
      targets: ``[B]`` int column of each row's true item.

    Returns:
      ``[B]`` int32 ``#(s > s_t) + #(s == s_t and index < t)`` per row.
    """
    targets = tf.cast(targets, tf.int32)
    target_scores = tf.gather(scores, targets, axis=1, batch_dims=1)[:, tf.newaxis]  # [B, 1]
    columns = tf.range(tf.shape(scores)[1])[tf.newaxis, :]  # [1, N]
    before = columns < targets[:, tf.newaxis]  # [B, N]: wins a tie with the target
    above = tf.where(before, scores >= target_scores, scores > target_scores)  # [B, N]
    return tf.reduce_sum(tf.cast(above, tf.int32), axis=1)


class Evaluator:
    """Ranks the targets of a model's histories; build once per model, call every epoch.

    Args:
      model: a ``SequentialRecommender`` (anything with ``encode(item_ids [B, L],
        training) -> [B, D]`` and ``candidate_embeddings(training) -> [N, D]``).
      exclude_history: set history items to -inf before ranking.

    Batches with ``user_ids`` pass them to a model that uses users (others ignore them).
    """

    def __init__(self, model: Any, exclude_history: bool = False) -> None:
        self.model = model
        self.exclude_history = bool(exclude_history)
        spec = (
            tf.TensorSpec([None, None], tf.int64),  # item_ids
            tf.TensorSpec([None], tf.int64),  # targets
            tf.TensorSpec([None, None], tf.float32),  # candidates
        )
        self._ranks = tf.function(self._batch_ranks, input_signature=spec)
        self._user_ranks = tf.function(
            self._batch_ranks, input_signature=(*spec, tf.TensorSpec([None], tf.int64))  # + user_ids
        )
        self.uses_user = bool(getattr(model, "uses_user", False))

    def _batch_ranks(
        self, item_ids: tf.Tensor, targets: tf.Tensor, candidates: tf.Tensor, user_ids: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``[B]`` ranks, and whether every score was finite or -inf (a NaN would rank first)."""
        scores = score_items(
            self.model, item_ids, exclude_history=self.exclude_history, candidates=candidates,
            user_ids=user_ids,
        )  # [B, N]
        return rank_targets(scores, targets), tf.reduce_all(scores < np.inf)

    def _candidates(self) -> tf.Tensor:
        candidates = tf.cast(self.model.candidate_embeddings(training=False), tf.float32)  # [N, D]
        if not bool(tf.reduce_all(tf.math.is_finite(candidates))):
            raise FloatingPointError("candidate embeddings contain NaN or Inf; nothing to rank")
        return candidates

    def batch_ranks(self, batches: Iterable[Batch]) -> Iterable[np.ndarray]:
        """Yields the ``[B]`` ranks of each batch's targets, in order.

        Raises:
          KeyError: a batch without ``item_ids`` or ``target``.
          FloatingPointError: a non-finite query or candidate (it would rank first).
        """
        candidates = self._candidates()
        for batch in batches:
            item_ids = tf.cast(batch[schema.ITEM_IDS], tf.int64)
            targets = tf.cast(batch[schema.TARGET], tf.int64)
            if self.uses_user and schema.USER_IDS in batch:
                user_ids = tf.cast(batch[schema.USER_IDS], tf.int64)
                ranks, finite = self._user_ranks(item_ids, targets, candidates, user_ids)
            else:
                ranks, finite = self._ranks(item_ids, targets, candidates)
            if not bool(finite):
                raise FloatingPointError("the model's queries contain NaN or Inf")
            yield ranks.numpy()

    def ranks(self, batches: Iterable[Batch]) -> np.ndarray:
        """``[U]`` 0-based rank of every row's target, in the order of ``batches``."""
        out = list(self.batch_ranks(batches))
        return np.concatenate(out) if out else np.zeros(0, np.int32)

    def __call__(
        self, batches: Iterable[Batch], ks: Sequence[int] = DEFAULT_KS
    ) -> dict[str, float]:
        """``{"ndcg@10": mean, ..., "mrr": mean, "num_users": U}`` over every row of ``batches``.

        Raises:
          ValueError: bad ``ks``, or no rows.
        """
        ks = validated_ks(ks)
        sums: dict[str, float] = {}
        num_users = 0
        for ranks in self.batch_ranks(batches):
            for name, total in metric_sums(ranks, ks).items():
                sums[name] = sums.get(name, 0.0) + total
            num_users += len(ranks)
        if not num_users:
            raise ValueError("no users to evaluate: the dataset yielded no rows")
        metrics: dict[str, float] = {name: total / num_users for name, total in sums.items()}
        metrics[NUM_USERS] = num_users
        return metrics


def evaluate(
    model: Any,
    dataset: Iterable[Batch],
    ks: Sequence[int] = DEFAULT_KS,
    exclude_history: bool = False,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``dataset``.

    Args:
      model: a ``SequentialRecommender``.
      dataset: a ``tf.data.Dataset`` or any iterable of batches
        ``{"item_ids": [B, L] right-padded histories, "target": [B]}``.
      ks: cut-offs; every metric of :mod:`tfseq.metrics.ranking` at each.
      exclude_history: set history items to -inf (see the module docstring).

    Returns:
      ``{"recall@5": ..., "ndcg@10": ..., ..., "mrr": ..., "num_users": U}`` (means over users;
      ``mrr`` has no cut-off: the full catalogue).
    """
    return Evaluator(model, exclude_history)(dataset, ks)
