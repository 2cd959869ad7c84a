"""Negative samplers over the item catalogue (never the padding item)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

SAMPLERS = ("uniform", "popularity")


def smoothed_popularity(item_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``p(i) ∝ count(i) + 1`` over items 1..N-1 (add-one keeps unseen items possible); p(0) = 0."""
    counts = np.asarray(item_counts, dtype=np.float64) + 1.0
    counts[0] = 0.0
    return (counts / counts.sum()).astype(np.float32)


class ItemSampler:
    """Draws item IDs from a fixed distribution and reports their probabilities.

    Args:
      item_counts: ``[num_items]`` training counts (index 0 = padding).
      kind: "uniform" over 1..num_items-1, or "popularity" (smoothed counts).
    """

    def __init__(self, item_counts: Sequence[int] | np.ndarray, kind: str = "uniform"):
        if kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")
        num_items = len(item_counts)
        if kind == "uniform":
            probs = np.full(num_items, 1.0 / (num_items - 1), dtype=np.float32)
            probs[0] = 0.0
        else:
            probs = smoothed_popularity(item_counts)
        self.kind = kind
        self.num_items = num_items
        self.probabilities = tf.constant(probs)  # [N]
        self._log_probs = tf.constant(np.where(probs > 0, np.log(np.maximum(probs, 1e-30)), -np.inf)
                                      .astype(np.float32))[None, :]  # [1, N]

    def sample(self, n: int | tf.Tensor, seed: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``n`` IDs ``[n]`` (int64, never 0) and their probabilities ``[n]``."""
        if self.kind == "uniform":
            ids = tf.random.uniform([n], 1, self.num_items, dtype=tf.int64, seed=seed)
        else:
            ids = tf.random.categorical(self._log_probs, n, dtype=tf.int64, seed=seed)[0]
        return ids, tf.gather(self.probabilities, ids)
