"""``bpr``: -mean log σ(pos - neg) over each positive's own sampled negatives, hits left out (sampling and
chunks: test_pairwise.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.bpr import BPRConfig, PairwiseBPR

# D = 1: padding (never used) + items 1, 2, 3 with embeddings 1, 2, 0.
CANDIDATES = np.array([[7.0], [1.0], [2.0], [0.0]])
QUERY = np.array([[1.0], [2.0]])


def build(counts=np.array([0, 3, 0, 1]), **overrides):
    return LOSSES.build("bpr", dataclasses.replace(BPRConfig(), **overrides), item_counts=counts)


def given(loss, query, positives, candidates, negatives):
    return float(
        loss.loss_given_negatives(
            tf.constant(query, tf.float32), tf.constant(positives, tf.int64),
            tf.constant(candidates, tf.float32), tf.constant(negatives, tf.int64),
        )
    )


def oracle(query, positives, candidates, negatives, *, hits):
    """Mean of softplus(s_neg - s_pos) over pairs (t, t's m-th negative); hits dropped if asked."""
    query, candidates = np.asarray(query, np.float64), np.asarray(candidates, np.float64)
    negatives = np.asarray(negatives).reshape(len(positives), -1)  # [T, M]
    positive_scores = np.sum(query * candidates[positives], axis=1)  # [T]
    negative_scores = np.einsum("td,tmd->tm", query, candidates[negatives])  # [T, M]
    pairs = np.logaddexp(0.0, negative_scores - positive_scores[:, np.newaxis])
    keep = negatives != np.asarray(positives)[:, np.newaxis] if hits else np.ones_like(pairs, bool)
    return float(pairs[keep].mean())


def test_toy_case_by_hand():
    # row 0: query 1, positive item 1 (score 1), negative item 3 (score 0): -log σ(1) = 0.313262
    # row 1: query 2, positive item 2 (score 4), negative item 1 (score 2): -log σ(2) = 0.126928
    # mean = 0.220095
    expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-2.0))) / 2
    assert expected == pytest.approx(0.220095, abs=1e-6)
    assert given(build(), QUERY, [1, 2], CANDIDATES, [3, 1]) == pytest.approx(expected, rel=1e-6)


def test_accidental_hit_is_left_out_of_the_mean_by_hand():
    # row 0's negative is its own positive (item 1): dropped. row 1: scores 4 vs 0 -> -log σ(4).
    # Kept, the hit would add -log σ(0) = log 2 and halve the mean's weight of row 1.
    expected = np.log1p(np.exp(-4.0))
    assert given(build(), QUERY, [1, 2], CANDIDATES, [1, 3]) == pytest.approx(expected, rel=1e-6)
    kept = given(build(remove_accidental_hits=False), QUERY, [1, 2], CANDIDATES, [1, 3])
    assert kept == pytest.approx((np.log(2.0) + expected) / 2, rel=1e-6)


def test_all_negatives_hits_gives_zero_not_nan():
    assert given(build(), QUERY, [1, 2], CANDIDATES, [1, 2]) == 0.0


@pytest.mark.parametrize("hits", [True, False])
def test_matches_numpy_oracle_with_several_negatives_per_row(hits):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(9, 4))
    candidates = rng.normal(size=(6, 4))
    positives = rng.integers(1, 6, 9)
    negatives = rng.integers(1, 6, 9 * 3)  # M = 3 per row, several hits among 5 items
    assert np.any(negatives.reshape(9, 3) == positives[:, np.newaxis])
    expected = oracle(query, positives, candidates, negatives, hits=hits)
    loss = build(num_negatives=3, remove_accidental_hits=hits)
    assert given(loss, query, positives, candidates, negatives) == pytest.approx(expected, rel=1e-5)


def test_keras_loss_reads_only_each_rows_positive_and_own_negative_block():
    # T = 2, M = 2: columns [in-batch 0, in-batch 1, row 0's two negatives, row 1's two negatives].
    labels = tf.eye(2, 6)
    scores = np.array([[3.0, 50.0, 1.0, 2.0, 40.0, 40.0],
                       [60.0, 0.5, 30.0, 30.0, 0.0, 1.5]], np.float32)
    # row 0: softplus(1 - 3), softplus(2 - 3); row 1: softplus(0 - 0.5), softplus(1.5 - 0.5)
    pairs = np.logaddexp(0, [1 - 3, 2 - 3, 0 - 0.5, 1.5 - 0.5])
    value = PairwiseBPR()(labels, tf.constant(scores))
    assert float(value) == pytest.approx(pairs.mean(), rel=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="T \\+ T\\*M columns"):
        PairwiseBPR()(tf.eye(2, 5), tf.zeros([2, 5]))


def test_is_a_mean_over_pairs_not_a_sum():
    once = given(build(), QUERY, [1, 2], CANDIDATES, [3, 1])
    thrice = given(build(), np.tile(QUERY, (3, 1)), [1, 2] * 3, CANDIDATES, [3, 1] * 3)
    assert thrice == pytest.approx(once, rel=1e-6)


def test_trains_inside_tf_function_with_finite_gradients():
    rng = np.random.default_rng(2)
    loss = build(np.array([0, 9, 1, 1]), sampler="popularity", num_negatives=4)
    candidates = tf.Variable(rng.normal(size=(4, 3)), dtype=tf.float32)
    query = tf.Variable(rng.normal(size=(6, 3)), dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])  # T varies, one trace
    def step(positives):
        with tf.GradientTape() as tape:
            value = loss(query[: tf.shape(positives)[0]], positives, candidates, training=True)
        return value, tape.gradient(value, [query, candidates])

    for positives in ([1, 1, 1, 2, 3, 1], [2, 3, 1]):
        value, grads = step(tf.constant(positives, tf.int64))
        assert np.isfinite(float(value)) and float(value) > 0
        grads = [tf.convert_to_tensor(g).numpy() for g in grads]
        assert all(np.all(np.isfinite(g)) for g in grads)
        np.testing.assert_array_equal(grads[1][0], 0.0)  # padding is never positive or negative


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match=r"BPRConfig\.num_negatives must be >= 1, got 0"):
        BPRConfig(num_negatives=0)
    with pytest.raises(ConfigError, match=r"BPRConfig\.chunk_size must be >= 1, got 0"):
        BPRConfig(chunk_size=0)
    with pytest.raises(ConfigError, match="sampler must be one of uniform, popularity"):
        BPRConfig(sampler="zipf")
