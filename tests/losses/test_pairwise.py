"""What ``bpr``, ``hinge`` and ``adaptive_hinge`` share (``tfseq/losses/pairwise.py``): each positive's own
``num_negatives`` draws, chunks that change neither the value nor the gradients, and the check of the
negatives' count. Each loss's values against its NumPy oracle are in its own test module."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfseq.losses import LOSSES

PAIRWISE = ["bpr", "hinge", "adaptive_hinge"]


def build(name: str, counts=np.array([0, 3, 0, 1]), **overrides):
    config_cls = LOSSES.get(name).config_cls
    return LOSSES.build(name, dataclasses.replace(config_cls(), **overrides), item_counts=counts)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
@pytest.mark.parametrize("name", PAIRWISE)
def test_call_draws_num_negatives_per_positive(name, sampler):
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 50, 30)
    query = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    candidates = tf.constant(rng.normal(size=(30, 4)), tf.float32)
    positives = tf.constant(rng.integers(1, 30, 5))
    loss = build(name, counts, sampler=sampler, num_negatives=3)
    tf.random.set_seed(3)
    value = float(loss(query, positives, candidates, training=True))
    tf.random.set_seed(3)
    negatives, _ = loss.sampler.sample(15)  # 5 positives x 3
    assert value == pytest.approx(
        float(loss.loss_given_negatives(query, positives, candidates, negatives)), rel=1e-6
    )


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("chunk_size", [1, 2, 4, 9])
def test_chunks_change_neither_the_value_nor_the_gradients(name, chunk_size):
    # T = 9 queries, M = 3: chunks of 2 and 4 leave a padded last chunk; hits present.
    rng = np.random.default_rng(5)
    query = tf.constant(rng.normal(size=(9, 4)), tf.float32)
    candidates = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    positives = tf.constant(rng.integers(1, 6, 9))
    negatives = tf.constant(rng.integers(1, 6, 27))
    assert np.any(negatives.numpy().reshape(9, 3) == positives.numpy()[:, np.newaxis])

    def value_and_grads(loss):
        with tf.GradientTape() as tape:
            tape.watch([query, candidates])
            value = loss.loss_given_negatives(query, positives, candidates, negatives)
        return float(value), [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, [query, candidates])]

    value, grads = value_and_grads(build(name, num_negatives=3, chunk_size=chunk_size))
    whole_value, whole_grads = value_and_grads(build(name, num_negatives=3, chunk_size=64))  # one chunk
    assert whole_value > 0 and value == pytest.approx(whole_value, rel=1e-5)
    for chunked, whole in zip(grads, whole_grads):
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", PAIRWISE)
def test_wrong_number_of_negatives_is_an_error(name):
    loss = build(name, num_negatives=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_negatives=2 negatives per positive"):
        loss.loss_given_negatives(tf.ones([3, 1]), tf.constant([1, 2, 3], tf.int64), tf.ones([4, 1]),
                                  tf.constant([1, 2, 3, 1], tf.int64))
