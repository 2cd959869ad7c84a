"""Samplers: never the padding item, the distribution they claim (chi-square, fixed seed)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfseq.losses.samplers import ItemSampler, smoothed_popularity, uniform_probabilities

# Upper 0.1% point of the chi-square distribution with 5 degrees of freedom (6 items - 1).
CHI2_5DF_999 = 20.515
COUNTS = np.array([50, 0, 1, 3, 7, 20, 100])  # padding (its count is ignored) + items 1..6


def chi_square(ids: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's statistic of ``ids`` against ``probs`` over items 1..N-1."""
    observed = np.bincount(ids, minlength=len(probs))[1:]
    expected = probs[1:] * len(ids)
    return float(((observed - expected) ** 2 / expected).sum())


def test_smoothed_popularity_by_hand():
    # counts [pad, 0, 1, 3, 7, 20, 100] -> add one to items 1..6: [1, 2, 4, 8, 21, 101], sum 137.
    expected = np.array([0, 1, 2, 4, 8, 21, 101]) / 137
    np.testing.assert_allclose(smoothed_popularity(COUNTS), expected, rtol=1e-6)


def test_uniform_probabilities_by_hand():
    np.testing.assert_allclose(uniform_probabilities(5), [0, 0.25, 0.25, 0.25, 0.25])


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_draws_never_padding_and_follow_the_distribution(kind):
    sampler = ItemSampler(COUNTS, kind)
    expected = uniform_probabilities(7) if kind == "uniform" else smoothed_popularity(COUNTS)
    np.testing.assert_allclose(sampler.probabilities.numpy(), expected, rtol=1e-6)
    tf.random.set_seed(7)
    ids, probs = sampler.sample(60_000)
    ids = ids.numpy()
    assert ids.dtype == np.int64 and ids.shape == (60_000,)
    assert ids.min() >= 1 and ids.max() <= 6  # padding (count 50 here) is never drawn
    np.testing.assert_allclose(probs.numpy(), expected[ids], rtol=1e-6)  # reports q of each draw
    assert chi_square(ids, expected) < CHI2_5DF_999
    # and the test has power: the other distribution is rejected by a wide margin
    other = smoothed_popularity(COUNTS) if kind == "uniform" else uniform_probabilities(7)
    assert chi_square(ids, other) > 100 * CHI2_5DF_999


def test_popularity_of_an_unseen_item_is_small_but_possible():
    sampler = ItemSampler(np.array([0, 0, 10_000]), "popularity")
    tf.random.set_seed(0)
    ids = sampler.sample(200_000)[0].numpy()
    # p(1) = 1 / 10_002: about 20 of 200k draws
    assert 0 < (ids == 1).sum() < 60 and (ids == 0).sum() == 0


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_sample_size_may_be_a_tensor_inside_tf_function(kind):
    sampler = ItemSampler(COUNTS, kind)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
    def draw(n):
        return sampler.sample(n)[0]

    assert draw(tf.constant(3, tf.int64)).shape == (3,)
    assert draw(tf.constant(11, tf.int64)).shape == (11,)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="sampler must be one of uniform, popularity"):
        ItemSampler(COUNTS, "zipf")
    with pytest.raises(ValueError, match="num_items >= 2"):
        ItemSampler([3], "uniform")
    with pytest.raises(ValueError, match="num_items >= 2"):
        ItemSampler(np.ones((2, 3)), "uniform")
    with pytest.raises(ValueError, match=">= 0, got -1 at index 2"):
        smoothed_popularity([0, 1, -1])
