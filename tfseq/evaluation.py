"""Full-ranking evaluation: every item scored for every user, all K from one pass.

RecBole's protocol for sequential models: no sampled negatives, the padding
item at -inf, history items not masked (``exclude_seen=True`` masks every item
of the history shown to the model, the target included when it is there, as
the masked protocols in the literature do). Ties are broken as a stable sort by
descending score would: an item above the target in index order wins a tie,
which matters for ``pop``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.metrics.ranking import DEFAULT_KS, metrics_from_ranks


def rank_targets(scores: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """0-based rank of ``targets [B]`` in ``scores [B, N]``: #higher + #equal at a lower index."""
    targets = tf.cast(targets, tf.int32)
    target_scores = tf.gather(scores, targets, axis=1, batch_dims=1)[:, tf.newaxis]  # [B, 1]
    higher = tf.reduce_sum(tf.cast(scores > target_scores, tf.int32), axis=1)
    columns = tf.range(tf.shape(scores)[1])[tf.newaxis, :]
    tied_before = tf.logical_and(tf.equal(scores, target_scores), columns < targets[:, tf.newaxis])
    return higher + tf.reduce_sum(tf.cast(tied_before, tf.int32), axis=1)


def mask_history(scores: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    """``scores [B, N]`` with every item of ``item_ids [B, L]`` set to -inf."""
    item_ids = tf.cast(item_ids, tf.int32)
    rows = tf.broadcast_to(tf.range(tf.shape(item_ids)[0])[:, tf.newaxis], tf.shape(item_ids))
    valid = tf.not_equal(item_ids, schema.PAD_ID)
    indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(item_ids, valid)], axis=1)
    updates = tf.fill([tf.shape(indices)[0]], tf.constant(-np.inf, scores.dtype))
    return tf.tensor_scatter_nd_update(scores, indices, updates)


class Evaluator:
    """Ranks the targets of a model's histories; build once per model, call every epoch."""

    def __init__(self, model, exclude_seen: bool = False):
        self.model = model
        self.exclude_seen = exclude_seen
        spec = (tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None, None], tf.float32))
        self._ranks = tf.function(self._batch_ranks, input_signature=spec)

    def _batch_ranks(self, item_ids, targets, candidates):
        query = self.model.encode(item_ids, training=False)  # [B, D]
        scores = tf.linalg.matmul(query, candidates, transpose_b=True)  # [B, N]
        padding = tf.one_hot(schema.PAD_ID, tf.shape(scores)[1], on_value=-np.inf, off_value=0.0)
        scores = scores + padding[tf.newaxis, :]
        if self.exclude_seen:
            scores = mask_history(scores, item_ids)
        return rank_targets(scores, targets)

    def ranks(self, batches: Iterable[dict[str, tf.Tensor]]) -> np.ndarray:
        candidates = tf.cast(self.model.candidate_embeddings(training=False), tf.float32)
        out = [
            self._ranks(tf.cast(b[schema.ITEM_IDS], tf.int64), tf.cast(b[schema.TARGET], tf.int64), candidates)
            .numpy()
            for b in batches
        ]
        return np.concatenate(out) if out else np.zeros(0, np.int32)

    def __call__(self, batches: Iterable[dict[str, tf.Tensor]], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
        ranks = self.ranks(batches)
        metrics = metrics_from_ranks(ranks, ks)
        metrics["num_users"] = int(len(ranks))
        return metrics


def evaluate(
    model, dataset: Iterable[dict[str, tf.Tensor]], ks: Sequence[int] = DEFAULT_KS, exclude_seen: bool = False
) -> dict[str, float]:
    """Metrics (``{"ndcg@10": ..., "num_users": U}``) of ``model`` on batches of histories + targets."""
    return Evaluator(model, exclude_seen)(dataset, ks)
