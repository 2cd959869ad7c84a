"""Negative samplers over the item catalogue: uniform or popularity, never the padding item.

A sampler draws item IDs from a fixed proposal ``q`` over items ``1 .. N-1``
and reports ``q`` of what it drew, which the logQ correction of
``sampled_softmax`` subtracts from the logits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.losses.configs import SAMPLERS, check_sampler  # noqa: F401  (SAMPLERS re-exported)


def validated_counts(item_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``item_counts`` as an int64 vector ``[num_items >= 2]`` of non-negative counts.

    Raises:
      ValueError: a shape other than ``[N >= 2]`` or a negative count.
    """
    counts = np.asarray(item_counts)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError(f"item_counts must be a vector [num_items >= 2], got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError(f"item_counts must be >= 0, got {counts.min()} at index {counts.argmin()}")
    return counts.astype(np.int64)


def smoothed_popularity(item_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``p(i) = (count(i) + 1) / sum_j (count(j) + 1)`` over items 1..N-1; ``p(0) = 0``.

    The add-one keeps items unseen in training possible (and their log finite).

    Returns:
      ``[N]`` float32 probabilities summing to 1.
    """
    counts = validated_counts(item_counts).astype(np.float64) + 1.0
    counts[schema.PAD_ID] = 0.0
    return (counts / counts.sum()).astype(np.float32)


def uniform_probabilities(num_items: int) -> np.ndarray:
    """``q(i) = 1 / (N - 1)`` over items 1..N-1; ``q(0) = 0``. Returns ``[N]`` float32."""
    probs = np.full(num_items, 1.0 / (num_items - 1), dtype=np.float32)
    probs[schema.PAD_ID] = 0.0
    return probs


class ItemSampler:
    """Draws item IDs from a fixed proposal ``q`` and reports ``q`` of each draw.

    Draws are independent, with replacement, from TensorFlow's stateful random
    ops, so they follow the global seed (``tf.keras.utils.set_random_seed``).

    Args:
      item_counts: ``[num_items]`` training counts (index 0 = padding).
      kind: ``"uniform"`` over items 1..N-1, or ``"popularity"``
        (:func:`smoothed_popularity`).

    Attributes:
      probabilities: ``[num_items]`` float32 ``q``; ``q(0) = 0``.
    """

    def __init__(self, item_counts: Sequence[int] | np.ndarray, kind: str = "uniform") -> None:
        check_sampler(kind)
        counts = validated_counts(item_counts)
        self.kind = kind
        self.num_items = len(counts)
        if kind == "uniform":
            probs = uniform_probabilities(self.num_items)
        else:
            probs = smoothed_popularity(counts)
        self.probabilities = tf.constant(probs)  # [N]
        with np.errstate(divide="ignore"):
            self._logits = tf.constant(np.log(probs)[np.newaxis, :])  # [1, N], -inf at padding

    def sample(self, num: int | tf.Tensor, seed: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``num`` draws: item IDs ``[num]`` (int64, never 0) and their ``q`` ``[num]``."""
        num = tf.cast(num, tf.int32)  # any integer scalar; Multinomial takes int32 only
        if self.kind == "uniform":
            ids = tf.random.uniform([num], 1, self.num_items, dtype=tf.int64, seed=seed)
        else:
            ids = tf.random.categorical(self._logits, num, dtype=tf.int64, seed=seed)[0]
        return ids, tf.gather(self.probabilities, ids)
