"""Toy sequences, batch builders and model builders shared by the model tests."""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import pytest
import tensorflow as tf

from tests.models.scores import raw_scores
from tfseq.data.item_features import ItemFeatures, RawItemTable, build_item_features
from tfseq.losses import LOSSES
from tfseq.models import MODELS

NUM_ITEMS = 21  # padding + items 1..20
NUM_USERS = 6  # the user vocabulary of models that use users: unknown (0) + users 1..5


def cycle_sequences(num: int = 48, seed: int = 0) -> list[list[int]]:
    """Item i is always followed by i + 1 around a cycle of 20; random start and length 4..9."""
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        start, length = rng.randrange(20), rng.randint(4, 9)
        out.append([(start + t) % 20 + 1 for t in range(length)])
    return out


def random_histories(rows: int, max_len: int, seed: int, min_len: int = 1) -> np.ndarray:
    """``[rows, max_len]`` int64 right-padded random histories of random length >= ``min_len``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, max_len), np.int64)
    for row in out:
        length = rng.integers(min_len, max_len + 1)
        row[:length] = rng.integers(1, NUM_ITEMS, length)
    return out


def right_pad(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    width = width or max(len(r) for r in rows)
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def causal_batch(sequences: Sequence[Sequence[int]]) -> dict[str, tf.Tensor]:
    """``item_ids = s[:-1]``, ``targets = s[1:]`` per sequence, right-padded."""
    return {
        "item_ids": tf.constant(right_pad([s[:-1] for s in sequences])),
        "targets": tf.constant(right_pad([s[1:] for s in sequences])),
    }


def prefix_batch(sequences: Sequence[Sequence[int]]) -> dict[str, tf.Tensor]:
    """One row per (prefix, next item) pair of every sequence."""
    histories = [s[:t] for s in sequences for t in range(1, len(s))]
    targets = [s[t] for s in sequences for t in range(1, len(s))]
    return {
        "item_ids": tf.constant(right_pad(histories)),
        "target": tf.constant(targets, tf.int64),
    }


def item_counts(sequences: Sequence[Sequence[int]]) -> np.ndarray:
    counts = np.bincount([i for s in sequences for i in s], minlength=NUM_ITEMS)
    counts[0] = 0
    return counts


def toy_item_features() -> ItemFeatures:
    """Side features of items 1..19 (item 20 has none): ``parity`` (one value), ``tags`` (one or two)."""
    items = {
        str(i): {"parity": (f"p{i % 2}",), "tags": tuple(sorted({f"t{i % 3}", f"t{i % 4}"}))}
        for i in range(1, NUM_ITEMS - 1)
    }
    table = RawItemTable("toy", ("parity", "tags"), items, {raw: 1 for raw in items})
    return build_item_features(table, ["", *(str(i) for i in range(1, NUM_ITEMS))])[0]


def build(
    name: str,
    config: Any = None,
    *,
    loss: str = "softmax",
    loss_config: Any = None,
    seed: int = 0,
    counts: np.ndarray | None = None,
):
    """A registry model with a registry loss, adapted to ``counts`` and with its variables built.

    Every model gets :func:`toy_item_features` (those that do not use side features ignore them).
    """
    tf.keras.utils.set_random_seed(seed)
    counts = item_counts(cycle_sequences()) if counts is None else counts
    model = MODELS.build(
        name, config, num_items=NUM_ITEMS, loss=LOSSES.build(loss, loss_config, item_counts=counts),
        item_features=toy_item_features(), user_vocab_size=NUM_USERS,
    )
    model.adapt(counts)
    model.encode(tf.ones([1, 1], tf.int64))
    model.candidate_embeddings()
    return model


def assert_causal(model, item_ids: np.ndarray, *, seed: int, padded_row: int, atol: float) -> np.ndarray:
    """For every position t of ``item_ids [B, L]``: the items after t replaced by random ones (and by padding
    in row ``padded_row``) leave ``encode_all`` at positions ``<= t`` as it was. Returns the original
    ``encode_all(item_ids)`` ``[B, L, D]``."""
    before = model.encode_all(tf.constant(item_ids)).numpy()
    rng = np.random.default_rng(seed)
    for t in range(item_ids.shape[1] - 1):
        changed = item_ids.copy()
        changed[:, t + 1:] = rng.integers(1, NUM_ITEMS, changed[:, t + 1:].shape)
        changed[padded_row, t + 1:] = 0
        after = model.encode_all(tf.constant(changed)).numpy()
        np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=atol)
    return before


def assert_saved_model_scores_like_the_model(model, path: str) -> None:
    """A SavedModel of the model's raw scores (histories of any batch size and length) answers as the
    model does on 2 histories of width 3 and 5 of width 11."""
    module = tf.Module()
    module.model = model
    module.score = tf.function(lambda item_ids: raw_scores(model, item_ids),
                               input_signature=[tf.TensorSpec([None, None], tf.int64)])
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    for rows, length, seed in ((2, 3, 6), (5, 11, 7)):
        item_ids = tf.constant(random_histories(rows, length, seed=seed))
        np.testing.assert_allclose(loaded.score(item_ids).numpy(), raw_scores(model, item_ids).numpy(), atol=1e-6)


@pytest.fixture(params=MODELS.names())
def model_name(request) -> str:
    return request.param


CAUSAL_MODELS = [name for name in MODELS.names() if MODELS.get(name).cls.causal]
