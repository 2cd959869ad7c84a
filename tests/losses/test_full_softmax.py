"""``softmax``: RecBole's CE over the whole catalogue, padding left out, mean over targets."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfseq.losses import LOSSES

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
