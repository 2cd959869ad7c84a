"""Test helpers over the reader's public functions: training batches and the order of evaluation rows."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.data import reader
from tfseq.data.vocab import DatasetMetadata


def training_dataset(transform_dir: str, metadata: DatasetMetadata, **settings: Any) -> tf.data.Dataset:
    """One pass of :func:`reader.training_data`'s batches (``settings``: its keyword arguments)."""
    settings.setdefault("seed", 0)
    return reader.training_data(transform_dir, metadata, **settings).dataset()


def evaluation_users(transform_dir: str, metadata: DatasetMetadata, split: str) -> list[str]:
    """Raw user IDs in the order :func:`reader.evaluation_dataset` yields their rows."""
    sequences = reader.load_split(transform_dir, metadata, split)
    return list(sequences.users[reader.evaluation_order(sequences)])
