"""``sampled_softmax`` on tfrs Retrieval: numpy oracle, exact identities, logQ, hits, mean."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.sampled_softmax import SampledSoftmaxConfig

COUNTS = np.array([0, 3, 0, 1])  # padding + items 1..3
# Smoothed training frequency p (add one to items 1..3): [4, 1, 2] / 7.
P_BATCH = np.array([0, 4, 1, 2]) / 7
Q_UNIFORM = np.array([0, 1, 1, 1]) / 3


def build(counts=COUNTS, **overrides):
    config = dataclasses.replace(SampledSoftmaxConfig(), **overrides)
    return LOSSES.build("sampled_softmax", config, item_counts=counts)


def given(loss, query, positives, candidates, negatives):
    return float(
        loss.loss_given_negatives(
            tf.constant(query, tf.float32), tf.constant(positives, tf.int64),
            tf.constant(candidates, tf.float32), tf.constant(negatives, tf.int64),
        )
    )


def oracle(query, positives, candidates, negatives, *, p, q, logq, hits):
    """Columns = positives then negatives; logits - log(prob) when logq; hits masked; mean CE."""
    positives, negatives = np.asarray(positives), np.asarray(negatives)
    ids = np.concatenate([positives, negatives])
    logits = np.asarray(query, np.float64) @ np.asarray(candidates, np.float64)[ids].T  # [T, T+M]
    if logq:
        probs = np.concatenate([p[positives], q[negatives]])
        logits = logits - np.log(np.clip(probs, 1e-6, 1.0))
    num_queries = len(positives)
    if hits:
        own_column = np.eye(num_queries, len(ids), dtype=bool)
        same = (ids[np.newaxis, :] == positives[:, np.newaxis]) & ~own_column
        logits = np.where(same, -np.inf, logits)
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(num_queries), np.arange(num_queries)]))


# D = 1: items 1, 2, 3 have embeddings 1, 2, 0; the padding row (5) is never a column.
TOY_CANDIDATES = np.array([[5.0], [1.0], [2.0], [0.0]])


def test_toy_case_by_hand():
    # Two queries of 1.0, positives [1, 2], one negative [3]: every row's logits are [1, 2, 0].
    # row 0: log(e + e^2 + 1) - 1; row 1: log(e + e^2 + 1) - 2; mean = log(1 + e + e^2) - 1.5
    expected = np.log(1 + np.e + np.e**2) - 1.5
    assert expected == pytest.approx(0.907606, abs=1e-6)
    loss = build(logq_correction=False)
    value = given(loss, [[1.0], [1.0]], [1, 2], TOY_CANDIDATES, [3])
    assert value == pytest.approx(expected, rel=1e-6)


def test_accidental_hits_are_removed_by_hand():
    # positives [1, 1], negative [1]: every column holds item 1 (logit 1). With hit removal each
    # row keeps only its own column: loss 0. Without it: log(3 e) - 1 = log 3 per row.
    query, positives, negatives = [[1.0], [1.0]], [1, 1], [1]
    removed = given(build(logq_correction=False), query, positives, TOY_CANDIDATES, negatives)
    kept = given(
        build(logq_correction=False, remove_accidental_hits=False), query, positives,
        TOY_CANDIDATES, negatives,
    )
    assert removed == pytest.approx(0.0, abs=1e-7)
    assert kept == pytest.approx(np.log(3), rel=1e-6)


@pytest.mark.parametrize("sampler, q_negative", [("uniform", 1 / 3), ("popularity", 1 / 7)])
def test_logq_correction_shifts_each_logit_by_exactly_minus_log_q(sampler, q_negative):
    # One query, columns [positive 1, negative 2]: loss = softplus(l_neg - l_pos), so
    # log(expm1(loss)) recovers l_neg - l_pos. Correction subtracts log p(1) = log(4/7) from the
    # positive's logit and log q(2) from the negative's: the difference moves by log(4/7) - log q.
    candidates = np.array([[0.0], [0.5], [0.2], [0.0]])
    plain = given(build(sampler=sampler, logq_correction=False), [[1.0]], [1], candidates, [2])
    corrected = given(build(sampler=sampler, logq_correction=True), [[1.0]], [1], candidates, [2])
    difference = np.log(np.expm1(plain))
    assert difference == pytest.approx(0.2 - 0.5, abs=1e-5)
    assert np.log(np.expm1(corrected)) - difference == pytest.approx(
        np.log(4 / 7) - np.log(q_negative), abs=1e-5
    )


@pytest.mark.parametrize(
    "sampler, logq, hits",
    list(itertools.product(["uniform", "popularity"], [True, False], [True, False])),
)
def test_matches_numpy_oracle(sampler, logq, hits):
    rng = np.random.default_rng(1)
    counts = np.concatenate([[0], rng.integers(0, 30, 8)])  # padding + items 1..8
    query = rng.normal(size=(10, 4))
    candidates = rng.normal(size=(9, 4))
    positives = rng.integers(1, 9, 10)  # duplicates: in-batch accidental hits
    negatives = rng.integers(1, 9, 6)  # and sampled ones
    loss = build(counts, sampler=sampler, logq_correction=logq, remove_accidental_hits=hits)
    p = (counts + 1.0) * (np.arange(9) > 0)
    p /= p.sum()
    q = np.full(9, 1 / 8) * (np.arange(9) > 0) if sampler == "uniform" else p
    expected = oracle(query, positives, candidates, negatives, p=p, q=q, logq=logq, hits=hits)
    assert given(loss, query, positives, candidates, negatives) == pytest.approx(expected, rel=1e-5)


def test_equals_full_softmax_when_one_query_samples_the_whole_catalogue():
    # Columns [positive, 1 .. N-1]: the sampled copy of the positive is an accidental hit, so each
    # item is a column exactly once and the loss is the full softmax cross-entropy.
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 9, 12)
    candidates = rng.normal(size=(12, 5))
    full = LOSSES.build("softmax", item_counts=counts)
    loss = build(counts, logq_correction=False)
    for positive in (1, 6, 11):
        query = rng.normal(size=(1, 5))
        expected = full(tf.constant(query, tf.float32), tf.constant([positive]),
                        tf.constant(candidates, tf.float32))
        value = given(loss, query, [positive], candidates, np.arange(1, 12))
        assert value == pytest.approx(float(expected), rel=1e-5)


def test_equals_full_softmax_with_in_batch_negatives_covering_the_catalogue():
    # num_negatives = 0 and the T positives are a permutation of items 1..N-1: every row's columns
    # are the whole catalogue once. Goes through call(), the training path.
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 9, 12)
    candidates = tf.constant(rng.normal(size=(12, 5)), tf.float32)
    query = tf.constant(rng.normal(size=(11, 5)), tf.float32)
    positives = tf.constant(rng.permutation(np.arange(1, 12)))
    expected = LOSSES.build("softmax", item_counts=counts)(query, positives, candidates)
    loss = build(counts, num_negatives=0, logq_correction=False)
    assert float(loss(query, positives, candidates)) == pytest.approx(float(expected), rel=1e-5)


def test_is_the_mean_over_queries_where_tfrs_default_sums():
    rng = np.random.default_rng(4)
    query = rng.normal(size=(6, 3))
    candidates = rng.normal(size=(4, 3))
    positives, negatives = np.array([1, 2, 3, 3, 2, 1]), np.array([2, 3])
    loss = build()
    ours = given(loss, query, positives, candidates, negatives)
    expected_mean = oracle(query, positives, candidates, negatives, p=P_BATCH, q=Q_UNIFORM,
                           logq=True, hits=True)
    assert ours == pytest.approx(expected_mean, rel=1e-5)
    ids = tf.constant(np.concatenate([positives, negatives]))
    probs = tf.constant(np.concatenate([P_BATCH[positives], Q_UNIFORM[negatives]]), tf.float32)
    tfrs_default = tfrs.tasks.Retrieval(remove_accidental_hits=True)(
        tf.constant(query, tf.float32), tf.gather(tf.constant(candidates, tf.float32), ids),
        candidate_sampling_probability=probs, candidate_ids=ids, compute_metrics=False,
    )
    assert float(tfrs_default) == pytest.approx(6 * ours, rel=1e-5)  # the sum over 6 queries


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_call_draws_num_negatives_from_its_sampler(sampler):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 50, 40)
    query = tf.constant(rng.normal(size=(7, 4)), tf.float32)
    candidates = tf.constant(rng.normal(size=(40, 4)), tf.float32)
    positives = tf.constant(rng.integers(1, 40, 7))
    loss = build(counts, sampler=sampler, num_negatives=5)
    tf.random.set_seed(11)
    value = float(loss(query, positives, candidates))
    tf.random.set_seed(11)
    negatives, _ = loss.sampler.sample(5)
    assert value == pytest.approx(float(loss.loss_given_negatives(query, positives, candidates,
                                                                  negatives)), rel=1e-6)
    assert value != pytest.approx(float(loss.loss_given_negatives(
        query, positives, candidates, tf.zeros([0], tf.int64))), rel=1e-3)


def test_gradients_are_finite_with_hits_and_zero_on_the_padding_row():
    rng = np.random.default_rng(6)
    loss = build(np.array([0, 5, 1, 1]), sampler="popularity", num_negatives=64)
    candidates = tf.Variable(rng.normal(size=(4, 3)), dtype=tf.float32)
    query = tf.Variable(rng.normal(size=(8, 3)), dtype=tf.float32)
    positives = tf.constant([1, 1, 2, 3, 1, 2, 3, 1])  # 64 draws from 3 items: many hits
    with tf.GradientTape() as tape:
        value = loss(query, positives, candidates, training=True)
    grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, [query, candidates])]
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_array_equal(grads[1][0], 0.0)


@pytest.mark.parametrize("chunk_size, chunks", [(4, [4, 4, 3]), (5, [4, 4, 3]), (6, [6, 5]), (11, [11])])
def test_chunks_share_in_batch_negatives_within_each_chunk_only(chunk_size, chunks):
    # 11 queries in equal chunks of at most chunk_size: [4, 4, 3], [4, 4, 3], [6, 5], [11]. Each
    # chunk is the oracle on its own rows with the batch's sampled negatives; the loss is the mean
    # over all 11 queries, so the chunk's mean weighs by its size.
    rng = np.random.default_rng(7)
    counts = np.concatenate([[0], rng.integers(0, 30, 8)])
    query = rng.normal(size=(11, 4))
    candidates = rng.normal(size=(9, 4))
    positives = rng.integers(1, 9, 11)
    negatives = rng.integers(1, 9, 5)
    p = (counts + 1.0) * (np.arange(9) > 0)
    p /= p.sum()
    q = np.full(9, 1 / 8) * (np.arange(9) > 0)
    ends = np.cumsum(chunks)
    expected = sum(
        len(rows) * oracle(query[rows], positives[rows], candidates, negatives, p=p, q=q, logq=True, hits=True)
        for rows in np.split(np.arange(11), ends[:-1])
    ) / 11
    loss = build(counts, chunk_size=chunk_size)
    assert given(loss, query, positives, candidates, negatives) == pytest.approx(expected, rel=1e-5)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="num_negatives must be >= 0"):
        SampledSoftmaxConfig(num_negatives=-1)
    with pytest.raises(ConfigError, match="chunk_size must be >= 1"):
        SampledSoftmaxConfig(chunk_size=0)
    with pytest.raises(ConfigError, match="sampler must be one of uniform, popularity"):
        SampledSoftmaxConfig(sampler="zipf")


def test_the_auto_sampler_draws_by_popularity_on_large_catalogues_only():
    from tfseq.losses.configs import POPULARITY_SAMPLER_ITEMS, SampledSoftmaxConfig

    small = np.arange(POPULARITY_SAMPLER_ITEMS, dtype=np.int64)  # padding + one item too few
    large = np.arange(POPULARITY_SAMPLER_ITEMS + 1, dtype=np.int64)
    auto = SampledSoftmaxConfig()
    assert auto.sampler == "auto"
    assert LOSSES.build("sampled_softmax", auto, item_counts=small).sampler.kind == "uniform"
    big = LOSSES.build("sampled_softmax", auto, item_counts=large)
    assert big.sampler.kind == "popularity"
    # popularity draws follow the counts: the most frequent half of the catalogue gets most draws
    ids, q = big.sampler.sample(20000, seed=1)
    assert np.mean(ids.numpy() > len(large) // 2) > 0.7
    chosen = SampledSoftmaxConfig(sampler="uniform")
    assert LOSSES.build("sampled_softmax", chosen, item_counts=large).sampler.kind == "uniform"
