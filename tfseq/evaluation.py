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

Ranks are computed in TensorFlow inside one ``tf.function`` per set of batch keys:
the catalogue is walked in chunks of ``chunk_items`` candidates, each chunk's
``[B, chunk_items]`` scores only counted against the target's score, so memory is
bounded by the chunk whatever the number of items, and users stream batch by
batch, so it does not grow with them either. Only the ``[B]`` ranks come back,
and the metrics' sums are accumulated batch by batch. The target's score is the
query's dot product with the target's candidate row, and the target's own column
is never counted, so every chunk size gives the same ranks.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.metrics.ranking import DEFAULT_KS, metric_sums, validated_ks
from tfseq.scoring import Recommender, chunk_scores

NUM_USERS = "num_users"

# {"item_ids": [B, L] right-padded histories, "target": [B], and side inputs such as "user_ids": [B]}
Batch = Mapping[str, Any]


DEFAULT_CHUNK_ITEMS = 65536  # candidates scored at once: [B, 65536] float32 is 256 MiB at B = 1024


def rank_targets(scores: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """0-based rank of each target in a stable descending sort of its row.

    Args:
      scores: ``[B, N]`` float scores (may hold -inf).
      targets: ``[B]`` int column of each row's true item.

    Returns:
      ``[B]`` int32 ``#(s > s_t) + #(s == s_t and index < t)`` per row.
    """
    targets = tf.cast(targets, tf.int32)
    target_scores = tf.gather(scores, targets, axis=1, batch_dims=1)  # [B]
    return _count_above(scores, 0, targets, target_scores)


def _count_above(
    scores: tf.Tensor, first_item: tf.Tensor | int, targets: tf.Tensor, target_scores: tf.Tensor
) -> tf.Tensor:
    """``[B]`` how many of the items ``first_item ..`` of ``scores [B, C]`` rank above each
    row's target (``targets [B]`` int32, scoring ``target_scores [B]``): higher, or equal with
    a lower index; the target's own column never counts."""
    columns = tf.range(tf.shape(scores)[1])[tf.newaxis, :] + tf.cast(first_item, tf.int32)  # [1, C]
    targets = targets[:, tf.newaxis]  # [B, 1]
    target_scores = target_scores[:, tf.newaxis]  # [B, 1]
    above = tf.where(columns < targets, scores >= target_scores, scores > target_scores)  # [B, C]
    above &= tf.not_equal(columns, targets)
    return tf.reduce_sum(tf.cast(above, tf.int32), axis=1)


class Evaluator:
    """Ranks the targets of a model's histories; build once per model, call every epoch.

    Args:
      model: the model (``encode(features) -> [B, D]``, ``candidate_embeddings() -> [N, D]``).
      exclude_history: set history items to -inf before ranking.
      chunk_items: candidates scored at once (see the module docstring); any value gives
        the same ranks.

    The model gets each batch's ``item_ids`` and those of its ``side_inputs`` the
    batch holds (a model answers a missing one as it defines: ``hrm`` without
    ``user_ids`` ranks by the sequence alone). Each set of keys is traced once.
    """

    def __init__(
        self, model: Recommender, exclude_history: bool = False, chunk_items: int = DEFAULT_CHUNK_ITEMS
    ) -> None:
        if chunk_items < 1:
            raise ValueError(f"chunk_items must be >= 1, got {chunk_items}")
        self.model = model
        self.exclude_history = bool(exclude_history)
        self.chunk_items = int(chunk_items)
        self._ranks: dict[tuple[str, ...], Callable[..., tuple[tf.Tensor, tf.Tensor]]] = {}

    def _ranks_for(self, keys: tuple[str, ...]) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """The traced ranking of batches with ``item_ids`` and the side inputs ``keys``."""
        if keys not in self._ranks:
            spec = (
                {schema.ITEM_IDS: tf.TensorSpec([None, None], tf.int64),
                 **{key: schema.side_input_spec(key) for key in keys}},
                tf.TensorSpec([None], tf.int64),  # targets
                tf.TensorSpec([None, None], tf.float32),  # candidates
            )
            self._ranks[keys] = tf.function(self._batch_ranks, input_signature=spec)
        return self._ranks[keys]

    def _batch_ranks(
        self, features: Mapping[str, tf.Tensor], targets: tf.Tensor, candidates: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``[B]`` ranks, and whether every score was finite or -inf (a NaN would rank first)."""
        item_ids = features[schema.ITEM_IDS]
        history = item_ids if self.exclude_history else None
        query = tf.cast(self.model.encode(features, training=False), tf.float32)  # [B, D]
        targets = tf.cast(targets, tf.int32)
        target_rows = tf.gather(candidates, targets)  # [B, D]
        target_scores = tf.reduce_sum(query * target_rows, axis=1)  # [B]
        hidden = tf.equal(targets, schema.PAD_ID)  # [B]: the padding item ranks as -inf
        if history is not None:
            hidden |= tf.reduce_any(
                tf.equal(tf.cast(history, tf.int32), targets[:, tf.newaxis]), axis=1
            )
        target_scores = tf.where(hidden, -np.inf, target_scores)
        num_items = tf.shape(candidates)[0]
        chunk = tf.constant(self.chunk_items, tf.int32)

        def step(first: tf.Tensor, ranks: tf.Tensor, finite: tf.Tensor) -> tuple[tf.Tensor, ...]:
            scores = chunk_scores(query, candidates[first : first + chunk], first, history_ids=history)
            return (
                first + chunk,
                ranks + _count_above(scores, first, targets, target_scores),
                finite & tf.reduce_all(scores < np.inf),
            )

        _, ranks, finite = tf.while_loop(
            lambda first, ranks, finite: first < num_items,
            step,
            (tf.constant(0), tf.zeros_like(targets), tf.reduce_all(tf.math.is_finite(query))),
        )
        return ranks, finite

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
            keys = tuple(key for key in self.model.side_inputs if key in batch)
            features = {key: tf.cast(batch[key], tf.int64) for key in (schema.ITEM_IDS, *keys)}
            targets = tf.cast(batch[schema.TARGET], tf.int64)
            ranks, finite = self._ranks_for(keys)(features, targets, candidates)
            if not bool(finite):
                raise FloatingPointError("the model's queries contain NaN or Inf")
            yield ranks.numpy()

    def __call__(
        self,
        batches: Iterable[Batch],
        ks: Sequence[int] = DEFAULT_KS,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """``{"ndcg@10": mean, ..., "mrr": mean, "num_users": U}`` over every row of ``batches``;
        ``progress`` is called with the number of rows ranked so far after each batch.

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
            if progress is not None:
                progress(num_users)
        if not num_users:
            raise ValueError("no users to evaluate: the dataset yielded no rows")
        metrics: dict[str, float] = {name: total / num_users for name, total in sums.items()}
        metrics[NUM_USERS] = num_users
        return metrics


def evaluate(
    model: Recommender,
    dataset: Iterable[Batch],
    ks: Sequence[int] = DEFAULT_KS,
    exclude_history: bool = False,
    chunk_items: int = DEFAULT_CHUNK_ITEMS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``dataset``.

    Args:
      model: the model (a ``SequentialRecommender``).
      dataset: a ``tf.data.Dataset`` or any iterable of batches
        ``{"item_ids": [B, L] right-padded histories, "target": [B]}`` plus the
        model's side inputs (``tfseq.data.reader.evaluation_dataset(..., side_inputs=model.side_inputs)``).
      ks: cut-offs; every metric of :mod:`tfseq.metrics.ranking` at each.
      exclude_history: set history items to -inf (see the module docstring).
      chunk_items: candidates scored at once; bounds memory, never changes the result.
      progress: called with the rows ranked so far after each batch.

    Returns:
      ``{"recall@5": ..., "ndcg@10": ..., ..., "mrr": ..., "num_users": U}`` (means over users;
      ``mrr`` has no cut-off: the full catalogue).
    """
    return Evaluator(model, exclude_history, chunk_items)(dataset, ks, progress)
