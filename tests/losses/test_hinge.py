"""``hinge`` / ``adaptive_hinge``: Spotlight's pairwise hinges over each positive's own sampled negatives,
against hand arithmetic and a NumPy oracle; hits left out. Sampling and chunks: test_pairwise.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.losses.hinge import AdaptiveHingeConfig, HingeConfig, PairwiseHinge

# D = 1: padding (never used) + items 1, 2, 3 with embeddings 1, 2, 0.
CANDIDATES = np.array([[7.0], [1.0], [2.0], [0.0]])
QUERY = np.array([[1.0], [2.0]])


def build(name: str, counts=np.array([0, 3, 0, 1]), **overrides):
    config_cls = LOSSES.get(name).config_cls
    return LOSSES.build(name, dataclasses.replace(config_cls(), **overrides), item_counts=counts)


def given(loss, query, positives, candidates, negatives) -> float:
    return float(
        loss.loss_given_negatives(
            tf.constant(query, tf.float32), tf.constant(positives, tf.int64),
            tf.constant(candidates, tf.float32), tf.constant(negatives, tf.int64),
        )
    )


def oracle(query, positives, candidates, negatives, *, adaptive, hits, margin=1.0) -> float:
    """Spotlight's hinge in NumPy: max(0, margin - s_pos + s_neg) per (row, negative), mean over kept pairs;
    adaptive: per row only the highest kept negative, mean over rows that have one."""
    query, candidates = np.asarray(query, np.float64), np.asarray(candidates, np.float64)
    positives = np.asarray(positives)
    negatives = np.asarray(negatives).reshape(len(positives), -1)  # [T, M]
    positive_scores = np.sum(query * candidates[positives], axis=1)  # [T]
    negative_scores = np.einsum("td,tmd->tm", query, candidates[negatives])  # [T, M]
    keep = negatives != positives[:, None] if hits else np.ones(negatives.shape, bool)
    if adaptive:
        rows = keep.any(axis=1)
        hardest = np.where(keep, negative_scores, -np.inf).max(axis=1)[rows]
        return float(np.maximum(0.0, margin - positive_scores[rows] + hardest).mean())
    pairs = np.maximum(0.0, margin - positive_scores[:, None] + negative_scores)
    return float(pairs[keep].mean())


def test_hinge_toy_case_by_hand():
    # row 0: query 1, positive item 1 (score 1), negative item 3 (score 0): max(0, 1 - 1 + 0) = 0
    # row 1: query 2, positive item 2 (score 4), negative item 1 (score 2): max(0, 1 - 4 + 2) = 0
    assert given(build("hinge"), QUERY, [1, 2], CANDIDATES, [3, 1]) == 0.0
    # row 0 now against item 2 (score 2): 1 - 1 + 2 = 2; row 1 against item 3 (score 0): 0 -> mean 1
    assert given(build("hinge"), QUERY, [1, 2], CANDIDATES, [2, 3]) == pytest.approx(1.0)
    # margin 3: row 0: 3 - 1 + 2 = 4; row 1: 3 - 4 + 0 = 0 -> mean 2
    assert given(build("hinge", margin=3.0), QUERY, [1, 2], CANDIDATES, [2, 3]) == pytest.approx(2.0)


def test_adaptive_hinge_takes_each_rows_highest_negative_by_hand():
    # M = 2. row 0 (query 1, s_pos 1): negatives item 3 (0) and item 2 (2) -> hardest 2: 1 - 1 + 2 = 2
    #        row 1 (query 2, s_pos 4): negatives item 1 (2) and item 3 (0) -> hardest 2: 1 - 4 + 2 = 0
    # mean over the 2 rows = 1. The plain hinge averages all 4 pairs: (0 + 2 + 0 + 0) / 4 = 0.5.
    negatives = [3, 2, 1, 3]
    assert given(build("adaptive_hinge", num_negatives=2), QUERY, [1, 2], CANDIDATES, negatives) == 1.0
    assert given(build("hinge", num_negatives=2), QUERY, [1, 2], CANDIDATES, negatives) == 0.5


def test_accidental_hits_are_left_out_by_hand():
    # M = 2. row 0's negatives: item 1 = its positive (a hit) and item 3 (0): only 1 - 1 + 0 = 0 counts.
    # Kept, the hit would be the hardest: 1 - 1 + 1 = 1.
    # row 1's negatives: item 2 = its positive, twice: the row has no negative left.
    adaptive = build("adaptive_hinge", num_negatives=2)
    assert given(adaptive, QUERY, [1, 2], CANDIDATES, [1, 3, 2, 2]) == 0.0
    kept = build("adaptive_hinge", num_negatives=2, remove_accidental_hits=False)
    # rows: max(0, 1 - 1 + max(1, 0)) = 1 and max(0, 1 - 4 + 4) = 1 -> mean 1
    assert given(kept, QUERY, [1, 2], CANDIDATES, [1, 3, 2, 2]) == pytest.approx(1.0)
    # plain hinge with hits kept: pairs 1, 0, 1, 1 -> 0.75; left out: only row 0's item 3 -> 0
    assert given(build("hinge", num_negatives=2, remove_accidental_hits=False), QUERY, [1, 2], CANDIDATES,
                 [1, 3, 2, 2]) == pytest.approx(0.75)
    assert given(build("hinge", num_negatives=2), QUERY, [1, 2], CANDIDATES, [1, 3, 2, 2]) == 0.0


def test_all_negatives_hits_gives_zero_not_nan():
    for name in ("hinge", "adaptive_hinge"):
        assert given(build(name, num_negatives=1), QUERY, [1, 2], CANDIDATES, [1, 2]) == 0.0


@pytest.mark.parametrize("name", ["hinge", "adaptive_hinge"])
@pytest.mark.parametrize("hits", [True, False])
def test_matches_numpy_oracle_with_several_negatives_per_row(name, hits):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(9, 4))
    candidates = rng.normal(size=(6, 4))
    positives = rng.integers(1, 6, 9)
    negatives = rng.integers(1, 6, 9 * 3)  # M = 3 per row, several hits among 5 items
    assert np.any(negatives.reshape(9, 3) == positives[:, None])
    expected = oracle(query, positives, candidates, negatives, adaptive=name == "adaptive_hinge", hits=hits,
                      margin=0.5)
    assert expected > 0
    loss = build(name, num_negatives=3, remove_accidental_hits=hits, margin=0.5)
    assert given(loss, query, positives, candidates, negatives) == pytest.approx(expected, rel=1e-5)


def test_keras_loss_reads_only_each_rows_positive_and_own_negative_block():
    # T = 2, M = 2: columns [in-batch 0, in-batch 1, row 0's two negatives, row 1's two negatives].
    labels = tf.eye(2, 6)
    scores = np.array([[3.0, 50.0, 1.0, 2.5, 40.0, 40.0],
                       [60.0, 0.5, 30.0, 30.0, 0.0, 1.5]], np.float32)
    # hinge pairs: row 0: max(0, 1-3+1) = 0, max(0, 1-3+2.5) = 0.5; row 1: 1-0.5+0 = 0.5, 1-0.5+1.5 = 2
    assert float(PairwiseHinge()(labels, tf.constant(scores))) == pytest.approx((0 + 0.5 + 0.5 + 2) / 4)
    # adaptive: row 0 against 2.5 -> 0.5; row 1 against 1.5 -> 2
    assert float(PairwiseHinge(adaptive=True)(labels, tf.constant(scores))) == pytest.approx((0.5 + 2) / 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="T \\+ T\\*M columns"):
        PairwiseHinge()(tf.eye(2, 5), tf.zeros([2, 5]))


@pytest.mark.parametrize("name", ["hinge", "adaptive_hinge"])
def test_is_a_mean_not_a_sum(name):
    loss = build(name, num_negatives=1)
    once = given(loss, QUERY, [1, 2], CANDIDATES, [2, 3])
    thrice = given(loss, np.tile(QUERY, (3, 1)), [1, 2] * 3, CANDIDATES, [2, 3] * 3)
    assert once == pytest.approx(1.0) and thrice == pytest.approx(once, rel=1e-6)


def test_adaptive_gradient_reaches_only_the_hardest_negative():
    # One row, query [1, 0], positive item 1 (score 0), negatives items 2 (score 0.5) and 3 (score 0.2):
    # loss = 1 - 0 + 0.5; d/d item 2 = query, d/d item 3 = 0, d/d item 1 = -query.
    loss = build("adaptive_hinge", counts=np.ones(4, np.int64), num_negatives=2)
    candidates = tf.Variable([[0.0, 0.0], [0.0, 1.0], [0.5, 1.0], [0.2, -1.0]])
    with tf.GradientTape() as tape:
        value = loss.loss_given_negatives(tf.constant([[1.0, 0.0]]), tf.constant([1], tf.int64), candidates,
                                          tf.constant([2, 3], tf.int64))
    assert float(value) == pytest.approx(1.5)
    gradient = tf.convert_to_tensor(tape.gradient(value, candidates)).numpy()
    np.testing.assert_allclose(gradient, [[0, 0], [-1, 0], [1, 0], [0, 0]])


def test_defaults_are_spotlights_and_bad_values_are_rejected():
    assert (HingeConfig().num_negatives, HingeConfig().margin) == (1, 1.0)
    assert (AdaptiveHingeConfig().num_negatives, AdaptiveHingeConfig().sampler) == (5, "uniform")
    with pytest.raises(ConfigError, match="AdaptiveHingeConfig.num_negatives must be >= 1"):
        AdaptiveHingeConfig(num_negatives=0)
    with pytest.raises(ConfigError, match="HingeConfig.margin must be > 0"):
        HingeConfig(margin=0.0)
    with pytest.raises(ConfigError, match="HingeConfig.chunk_size must be >= 1"):
        HingeConfig(chunk_size=0)
    with pytest.raises(ConfigError, match="sampler must be one of uniform, popularity"):
        HingeConfig(sampler="zipf")
