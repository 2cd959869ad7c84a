"""Test helper: every item's raw score for a history, as the models define it."""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from tfseq.data import schema


def raw_scores(model: Any, features: Any, training: bool = False) -> tf.Tensor:
    """``query @ candidates.T`` ``[B, num_items]`` for ``features`` (a feature dict, or bare
    ``item_ids [B, L]``): nothing masked, the padding column included."""
    if not isinstance(features, Mapping):
        features = {schema.ITEM_IDS: features}
    query = model.encode(features, training=training)
    return tf.linalg.matmul(query, model.candidate_embeddings(training=training), transpose_b=True)
