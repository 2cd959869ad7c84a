"""RetrievalLoss: the interface every loss implements (query + candidates -> scalar), the sampled-negatives
variant and the chunked sum over query rows."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tfseq.losses.samplers import ItemSampler


class RetrievalLoss(tf.keras.layers.Layer):
    """Turns queries and the candidate table into a mean-reduced scalar loss.

    The model decides which candidate vectors exist (weight tying, CORE's
    normalisation and item dropout); the loss decides how queries and
    candidates become a scalar. Any model trains with any loss.

    Args:
      config: the loss's frozen config dataclass.
      item_counts: ``[num_items]`` occurrences of each item in the training
        split (index 0, padding, is 0); samplers and logQ correction use it.
    """

    def __init__(self, config: Any, *, item_counts: Sequence[int] | np.ndarray, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.item_counts = np.asarray(item_counts, dtype=np.int64)
        if self.item_counts.ndim != 1 or len(self.item_counts) < 2:
            raise ValueError(
                f"item_counts must be a vector [num_items >= 2], got shape {self.item_counts.shape}"
            )
        self.num_items = int(len(self.item_counts))

    def call(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """Loss for ``query [T, D]`` whose true next items are ``positive_ids [T]``.

        ``candidates [N, D]`` is the model's whole candidate table; row 0 is
        padding and is never a valid answer.
        """
        raise NotImplementedError


class SampledNegativesLoss(RetrievalLoss):
    """A loss over negatives drawn from ``config.sampler``; ``loss_given_negatives`` takes them as given.

    ``call`` draws the negatives (:meth:`sample_negatives`) and hands them to
    :meth:`loss_given_negatives`, which tests call with chosen negatives.

    Attributes:
      sampler: the :class:`~tfseq.losses.samplers.ItemSampler` of the negatives.
    """

    def __init__(self, config: Any, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.sampler = ItemSampler(self.item_counts, self.sampler_kind())

    def sampler_kind(self) -> str:
        """The proposal the negatives are drawn from (``config.sampler``)."""
        return str(self.config.sampler)

    def call(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        return self.loss_given_negatives(query, positive_ids, candidates, self.sample_negatives(positive_ids))

    def sample_negatives(self, positive_ids: tf.Tensor) -> tf.Tensor:
        """The negative item IDs (int64) drawn for the positives ``positive_ids [T]``."""
        raise NotImplementedError

    def loss_given_negatives(
        self,
        query: tf.Tensor,
        positive_ids: tf.Tensor,
        candidates: tf.Tensor,
        negative_ids: tf.Tensor,
    ) -> tf.Tensor:
        """The loss with the negatives ``negative_ids`` given instead of sampled (shapes as in ``call``)."""
        raise NotImplementedError


def sum_over_row_chunks(
    fn: Callable[..., tf.Tensor], rows: Sequence[tf.Tensor], max_chunk_size: int
) -> tf.Tensor:
    """``sum_g fn(*chunk_g, valid_g)`` over consecutive, equal chunks of at most ``max_chunk_size`` rows.

    Losses whose ``tfrs.tasks.Retrieval`` call scores a matrix that grows with
    the square of the number of queries ``T`` (in-batch negatives, per-row
    negative blocks) call Retrieval once per chunk instead, so the work is
    about ``T * max_chunk_size`` scores rather than ``T * T``; causal batches
    hold thousands of targets. ``T`` rows make ``G = ceil(T / max_chunk_size)``
    chunks of ``ceil(T / G)`` rows, so the last chunk pads fewer than ``G`` rows.

    Args:
      fn: ``fn(*chunk_rows, valid) -> scalar float32``; each ``chunk_rows[i]``
        is ``[c, ...]`` and ``valid [c]`` is False on the rows that pad the
        last chunk (zeros in every tensor of ``rows``).
      rows: tensors sharing their first dimension ``T``.
      max_chunk_size: the most rows in a chunk, >= 1.

    Returns:
      The scalar sum of ``fn`` over the chunks (0 when ``T = 0``).
    """
    if max_chunk_size < 1:
        raise ValueError(f"max_chunk_size must be >= 1, got {max_chunk_size}")
    num_rows = tf.shape(rows[0])[0]
    num_chunks = (num_rows + max_chunk_size - 1) // max_chunk_size
    chunk_size = (num_rows + num_chunks - 1) // tf.maximum(num_chunks, 1)
    padding = num_chunks * chunk_size - num_rows
    valid = tf.ones([num_rows], tf.bool)  # padded with False below

    def chunked(x: tf.Tensor) -> tf.Tensor:
        x = tf.pad(x, [[0, padding]] + [[0, 0]] * (len(x.shape) - 1))
        return tf.reshape(x, tf.concat([[num_chunks, chunk_size], tf.shape(x)[1:]], axis=0))

    elems = tuple(chunked(x) for x in (*rows, valid))
    per_chunk = tf.map_fn(
        lambda chunk: fn(*chunk), elems, fn_output_signature=tf.TensorSpec([], tf.float32)
    )
    return tf.reduce_sum(per_chunk)
