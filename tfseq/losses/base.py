"""RetrievalLoss: the interface every loss implements (query + candidates -> scalar)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf


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
