"""``softmax``: RecBole's CE over the whole catalogue, padding left out, mean over targets."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfseq.losses import LOSSES
from tfseq.losses.softmax import chunk_rows, softmax_cross_entropy

# padding + items 1..3, D = 2; the padding row would win every softmax if it were scored.
CANDIDATES = np.array([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
QUERY = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
POSITIVES = np.array([1, 3])


def softmax_loss(counts_len: int = 4):
    return LOSSES.build("softmax", item_counts=np.arange(counts_len))


def numpy_cross_entropy(query, positives, candidates):
    """Oracle: mean_t [logsumexp(q_t · C[1:]) - q_t · C[pos_t]]."""
    logits = query.astype(np.float64) @ candidates[1:].astype(np.float64).T  # [T, N - 1]
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(positives)), positives - 1]))


def test_toy_case_by_hand():
    # row 0: logits of items 1..3 = [1, 0, 1], positive item 1 -> log(2e + 1) - 1 = 0.86199
    # row 1: logits = [0, 2, 2], positive item 3 -> log(1 + 2e^2) - 2 = 0.75862
    # mean = 0.81031 (the padding logits 9 and 18 are not in any normaliser)
    expected = ((np.log(2 * np.e + 1) - 1) + (np.log(1 + 2 * np.e**2) - 2)) / 2
    assert expected == pytest.approx(0.81031, abs=1e-5)
    value = softmax_loss()(tf.constant(QUERY), tf.constant(POSITIVES), tf.constant(CANDIDATES))
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_matches_numpy_oracle_on_random_data():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(33, 8)).astype(np.float32)
    candidates = rng.normal(size=(50, 8)).astype(np.float32)
    positives = rng.integers(1, 50, 33)
    loss = softmax_loss(50)(tf.constant(query), tf.constant(positives), tf.constant(candidates))
    assert float(loss) == pytest.approx(numpy_cross_entropy(query, positives, candidates), rel=1e-5)


def test_padding_row_never_contributes_value_or_gradient():
    loss = softmax_loss()
    candidates = tf.Variable(CANDIDATES)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(QUERY), tf.constant(POSITIVES), candidates)
    gradient = tf.convert_to_tensor(tape.gradient(value, candidates)).numpy()
    np.testing.assert_array_equal(gradient[0], 0.0)
    assert np.abs(gradient[1:]).sum() > 0
    moved = CANDIDATES.copy()
    moved[0] = [-50.0, 70.0]
    moved_value = loss(tf.constant(QUERY), tf.constant(POSITIVES), tf.constant(moved))
    assert float(moved_value) == float(value)


def test_is_a_mean_over_targets_not_a_sum():
    loss = softmax_loss()
    once = loss(tf.constant(QUERY), tf.constant(POSITIVES), tf.constant(CANDIDATES))
    thrice = loss(tf.constant(np.tile(QUERY, (3, 1))), tf.constant(np.tile(POSITIVES, 3)),
                  tf.constant(CANDIDATES))
    assert float(thrice) == pytest.approx(float(once), rel=1e-6)


def reference_value_and_gradients(query, candidates, labels):
    """TensorFlow's own op, differentiated by autodiff: what the chunked loss must reproduce."""
    query, candidates = tf.constant(query), tf.constant(candidates)
    with tf.GradientTape() as tape:
        tape.watch([query, candidates])
        logits = tf.linalg.matmul(query, candidates, transpose_b=True)
        value = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return float(value), [g.numpy() for g in tape.gradient(value, [query, candidates])]


@pytest.mark.parametrize("chunk_logits", [1, 40, 7 * 40, 10**9])  # 1 row, 1 row, 7 rows (ragged end), all
def test_chunked_cross_entropy_equals_tensorflows_op_in_value_and_gradient(chunk_logits):
    rng = np.random.default_rng(1)
    query = rng.normal(size=(23, 6)).astype(np.float32)
    candidates = rng.normal(size=(40, 6)).astype(np.float32)
    labels = rng.integers(0, 40, 23).astype(np.int32)
    expected, expected_grads = reference_value_and_gradients(query, candidates, labels)
    query_t, candidates_t = tf.constant(query), tf.constant(candidates)
    with tf.GradientTape() as tape:
        tape.watch([query_t, candidates_t])
        value = softmax_cross_entropy(query_t, candidates_t, labels, chunk_logits=chunk_logits)
    grads = tape.gradient(value, [query_t, candidates_t])
    assert float(value) == pytest.approx(expected, rel=1e-5)
    for got, want in zip(grads, expected_grads):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)


def test_chunk_rows_hold_about_the_budget_and_at_least_one_row():
    assert int(chunk_rows(tf.constant(40), 7 * 40)) == 7
    assert int(chunk_rows(tf.constant(12_100))) == (1 << 21) // 12_100
    assert int(chunk_rows(tf.constant(10**8))) == 1


def test_chunked_loss_in_tf_function_with_varying_targets_and_none():
    rng = np.random.default_rng(2)
    candidates = tf.Variable(rng.normal(size=(30, 4)).astype(np.float32))
    queries = rng.normal(size=(17, 4)).astype(np.float32)
    labels = rng.integers(0, 30, 17).astype(np.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def step(query, labels):
        with tf.GradientTape() as tape:
            value = softmax_cross_entropy(query, candidates, labels, chunk_logits=5 * 30)
        return value, tape.gradient(value, candidates)

    for size in (17, 4):
        value, grad = step(queries[:size], labels[:size])
        expected, expected_grads = reference_value_and_gradients(queries[:size], candidates.numpy(), labels[:size])
        assert float(value) == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(grad.numpy(), expected_grads[1], rtol=1e-4, atol=1e-6)
    value, grad = step(np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
    assert float(value) == 0.0 and not np.any(grad.numpy())


@pytest.mark.parametrize("chunk_logits", [1, 10**9])
def test_skipped_rows_are_left_out_like_a_slice_and_get_no_gradient(chunk_logits):
    rng = np.random.default_rng(3)
    query = rng.normal(size=(9, 5)).astype(np.float32)
    table = rng.normal(size=(31, 5)).astype(np.float32)
    labels = rng.integers(2, 31, 9).astype(np.int32)  # rows of the whole table
    expected, (d_query, d_rest) = reference_value_and_gradients(query, table[2:], labels - 2)
    query_t, table_t = tf.constant(query), tf.constant(table)
    with tf.GradientTape() as tape:
        tape.watch([query_t, table_t])
        value = softmax_cross_entropy(query_t, table_t, labels, chunk_logits=chunk_logits, skip_rows=2)
    got_query, got_table = tape.gradient(value, [query_t, table_t])
    assert float(value) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(got_query.numpy(), d_query, rtol=1e-4, atol=1e-6)
    assert got_table.shape == table.shape and not np.any(got_table.numpy()[:2])
    np.testing.assert_allclose(got_table.numpy()[2:], d_rest, rtol=1e-4, atol=1e-6)


def test_a_catalogue_above_max_items_is_refused_naming_sampled_softmax():
    from tfseq.config import ConfigError
    from tfseq.losses.configs import SoftmaxConfig

    counts = np.ones(1001, np.int64)  # padding + 1,000 items
    LOSSES.build("softmax", SoftmaxConfig(max_items=1000), item_counts=counts)  # exactly at the limit
    with pytest.raises(ConfigError, match="all 1,000 items.*max_items=999.*--loss sampled_softmax"):
        LOSSES.build("softmax", SoftmaxConfig(max_items=999), item_counts=counts)
    with pytest.raises(ConfigError, match="max_items must be >= 1"):
        SoftmaxConfig(max_items=0)
