"""``softmax``: cross-entropy over the whole catalogue (RecBole's ``CE``), mean over targets.

The logits ``[T, N]`` of a causal batch (thousands of targets against every
item) are the largest tensors of a training step. Written out whole, they and
their gradient travel through main memory several times; here the targets are
processed in chunks whose logits stay in cache (about ``_CHUNK_LOGITS`` scores
each), and each chunk's gradients with respect to the queries and the
candidate table are computed right after its loss (a ``tf.custom_gradient``),
so no ``[T, N]`` tensor is kept for the backward pass. The numbers are those of
``sparse_softmax_cross_entropy_with_logits`` (tests compare both), in less time
and memory than that op on catalogues of thousands of items (the figures are in
``bench/results/notes.json``, shown in RESULTS.md).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.losses.base import RetrievalLoss
from tfseq.losses.configs import SoftmaxConfig

_CHUNK_LOGITS = 1 << 21  # scores per chunk (8 MiB of float32)


def chunk_rows(num_candidates: tf.Tensor, chunk_logits: int = _CHUNK_LOGITS) -> tf.Tensor:
    """Targets per chunk: about ``chunk_logits`` scores, at least one row."""
    return tf.maximum(chunk_logits // tf.maximum(num_candidates, 1), 1)


def softmax_cross_entropy(
    query: tf.Tensor,
    candidates: tf.Tensor,
    labels: tf.Tensor,
    chunk_logits: int = _CHUNK_LOGITS,
    skip_rows: int = 0,
) -> tf.Tensor:
    """``mean_t -log softmax(query_t · candidates[skip_rows:]ᵀ)[labels_t - skip_rows]``, in chunks of targets.

    Args:
      query: ``[T, D]`` float queries.
      candidates: ``[N, D]`` the item table.
      labels: ``[T]`` int, each row's true row of ``candidates``, in ``skip_rows .. N - 1``.
      chunk_logits: about how many scores one chunk holds.
      skip_rows: the table's first rows (padding) are neither scored nor given a gradient.
        Skipping them here, rather than passing ``candidates[skip_rows:]``, spares the
        backward pass a slice gradient, a zero-filled copy of the table on every step.

    Returns:
      The scalar mean over the ``T`` targets (0 when ``T = 0``), differentiable
      with respect to ``query`` and ``candidates``.
    """
    labels = tf.cast(labels, tf.int32) - skip_rows

    @tf.custom_gradient
    def mean_cross_entropy(query: tf.Tensor, table: tf.Tensor):
        candidates = table[skip_rows:] if skip_rows else table  # not differentiated: the gradient is below
        num_targets = tf.shape(query)[0]
        rows = chunk_rows(tf.shape(candidates)[0], chunk_logits)
        num_chunks = (num_targets + rows - 1) // rows

        def chunk(index, total, d_candidates, d_query):
            start = index * rows
            q, y = query[start : start + rows], labels[start : start + rows]  # [c, D], [c]
            logits = tf.linalg.matmul(q, candidates, transpose_b=True)  # [c, N]
            # one exp per score serves both the normaliser and the softmax
            peak = tf.reduce_max(logits, axis=1, keepdims=True)  # [c, 1]
            shifted_exp = tf.exp(logits - peak)  # [c, N], each <= 1
            norm = tf.reduce_sum(shifted_exp, axis=1, keepdims=True)  # [c, 1], >= 1
            log_norm = tf.squeeze(peak + tf.math.log(norm), axis=1)  # [c] logsumexp
            own = tf.stack([tf.range(tf.shape(y)[0]), y], axis=1)  # [c, 2]
            total += tf.reduce_sum(log_norm - tf.gather_nd(logits, own))
            # d loss_t / d logits_t = softmax_t - onehot(y_t)
            d_logits = tf.tensor_scatter_nd_sub(shifted_exp * (1.0 / norm), own, tf.ones_like(log_norm))
            d_query = d_query.write(index, tf.linalg.matmul(d_logits, candidates))  # [c, D]
            d_candidates += tf.linalg.matmul(d_logits, q, transpose_a=True)  # [N, D]
            return index + 1, total, d_candidates, d_query

        _, total, d_candidates, d_query = tf.while_loop(
            lambda index, *_: index < num_chunks,
            chunk,
            (
                tf.constant(0),
                tf.zeros([], query.dtype),
                tf.zeros_like(candidates),
                tf.TensorArray(query.dtype, size=num_chunks, infer_shape=False,
                               element_shape=tf.TensorShape([None, query.shape[-1]])),
            ),
        )
        count = tf.cast(num_targets, query.dtype)
        scale = tf.math.divide_no_nan(tf.ones([], query.dtype), count)
        d_query = d_query.concat() * scale
        d_candidates = d_candidates * scale
        if skip_rows:
            d_candidates = tf.pad(d_candidates, [[skip_rows, 0], [0, 0]])

        def gradient(upstream: tf.Tensor):
            return upstream * d_query, upstream * d_candidates

        return total * scale, gradient

    return mean_cross_entropy(query, candidates)


class FullSoftmaxLoss(RetrievalLoss):
    """``mean_t -log softmax(q_t · C[1:]ᵀ)[pos_t - 1]``: real items are negatives, padding never.

    Scoring against ``candidates[1:]`` (``skip_rows=1``) leaves the padding row
    out of the normaliser, exactly as a -inf logit would, without building a
    masked ``[T, N]`` copy or one-hot labels.
    """

    def __init__(self, config: SoftmaxConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        items = self.num_items - 1
        if items > config.max_items:
            raise ConfigError(
                f"--loss softmax scores all {items:,} items for every target, more than its "
                f"max_items={config.max_items:,}: use --loss sampled_softmax (popularity negatives "
                f"with logQ correction), or raise --max_items"
            )

    def call(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """Mean over ``query [T, D]`` of the cross-entropy of ``positive_ids [T]`` (never 0)."""
        return softmax_cross_entropy(query, candidates, positive_ids, skip_rows=1)
