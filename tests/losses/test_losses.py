"""Every registered loss: builds from its default config, a frozen config sharing no flat key with
TrainConfig, a finite mean-reduced scalar in eager and graph mode, padding never involved."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfseq.config import TrainConfig, field_names
from tfseq.losses import LOSSES
from tfseq.losses.base import RetrievalLoss, sum_over_row_chunks

COUNTS = np.array([0, 5, 3, 0, 8, 1, 1, 2, 9, 4])  # padding + items 1..9


@pytest.fixture(params=LOSSES.names())
def loss_name(request) -> str:
    return request.param


def test_registry_holds_the_five_losses():
    assert LOSSES.names() == ["adaptive_hinge", "bpr", "hinge", "sampled_softmax", "softmax"]


def test_config_is_frozen_and_shares_no_key_with_train_config(loss_name):
    config_cls = LOSSES.get(loss_name).config_cls
    assert config_cls.__dataclass_params__.frozen
    assert not set(field_names(config_cls)) & set(field_names(TrainConfig))
    fields = field_names(config_cls)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config_cls(), fields[0], 1)


def test_default_loss_is_finite_positive_scalar_in_eager_and_graph(loss_name):
    # Seeded: a hinge is 0 when every sampled pair keeps its margin, which unseeded draws of one negative
    # for 3 rows gave about 1 run in 5.
    tf.keras.utils.set_random_seed(0)
    loss = LOSSES.build(loss_name, item_counts=COUNTS)
    assert isinstance(loss, RetrievalLoss)
    rng = np.random.default_rng(0)
    candidates = tf.constant(rng.normal(size=(10, 4)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int64)])
    def graph_loss(query, positives):
        return loss(query, positives, candidates, training=True)

    for rows in (3, 17):
        query = tf.constant(rng.normal(size=(rows, 4)), tf.float32)
        positives = tf.constant(rng.integers(1, 10, rows))
        eager = loss(query, positives, candidates, training=True)
        for value in (eager, graph_loss(query, positives)):
            assert value.shape == () and np.isfinite(float(value)) and float(value) > 0
    assert graph_loss.experimental_get_tracing_count() == 1


def test_padding_row_changes_nothing(loss_name):
    loss = LOSSES.build(loss_name, item_counts=COUNTS)
    rng = np.random.default_rng(1)
    query = tf.constant(rng.normal(size=(12, 4)), tf.float32)
    positives = tf.constant(rng.integers(1, 10, 12))
    table = rng.normal(size=(10, 4))
    values = []
    for padding_row in ([0.0] * 4, [30.0, -30.0, 30.0, 30.0]):
        table[0] = padding_row
        candidates = tf.Variable(table, dtype=tf.float32)
        tf.random.set_seed(5)  # the same negatives for both
        with tf.GradientTape() as tape:
            value = loss(query, positives, candidates, training=True)
        values.append(float(value))
        gradient = tf.convert_to_tensor(tape.gradient(value, candidates))
        np.testing.assert_array_equal(gradient[0], 0.0)
    assert values[0] == pytest.approx(values[1], rel=1e-6)


@pytest.mark.parametrize("num_rows, max_chunk_size, sizes", [
    (0, 3, []), (1, 3, [1]), (7, 3, [3, 3, 3]), (7, 7, [7]), (7, 100, [7]), (8, 3, [3, 3, 3]), (9, 3, [3, 3, 3]),
])
def test_sum_over_row_chunks_covers_every_row_once_in_equal_padded_chunks(num_rows, max_chunk_size, sizes):
    rows = tf.reshape(tf.range(1, num_rows * 2 + 1, dtype=tf.float32), [num_rows, 2])
    seen = []

    def fn(chunk, valid):
        seen.append((chunk.numpy(), valid.numpy()))
        return tf.reduce_sum(chunk[:, 0] * tf.cast(valid, tf.float32))  # padding rows are zeros

    total = sum_over_row_chunks(fn, (rows,), max_chunk_size)
    assert float(total) == float(tf.reduce_sum(rows[:, 0]))
    assert [len(chunk) for chunk, _ in seen] == sizes
    flat_valid = np.concatenate([valid for _, valid in seen]) if seen else np.zeros(0, bool)
    assert flat_valid.sum() == num_rows and not flat_valid[num_rows:].any()  # padding only at the end
    kept = np.concatenate([chunk[valid] for chunk, valid in seen]) if seen else np.zeros((0, 2))
    np.testing.assert_array_equal(kept, rows.numpy())
    with pytest.raises(ValueError, match="max_chunk_size must be >= 1"):
        sum_over_row_chunks(fn, (rows,), 0)
