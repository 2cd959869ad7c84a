"""Ranking metrics: a hand-computed rank table; RecBole's top-K-matrix definitions brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf

from tfseq.metrics.ranking import METRICS, UNCUT_METRICS, metric_sums, metrics_from_ranks, per_user_metrics

RANKS = [0, 3, 9, 25]
# By hand, means over the 4 users (1/log2(5) = 0.4306766, 1/log2(11) = 0.2890648,
# 1/log2(27) = 0.2103099):
#   K=5:  ranks 0, 3 hit.     ndcg (1 + .4306766) / 4; mrr (1 + 1/4) / 4; precision (2/5) / 4
#   K=10: ranks 0, 3, 9 hit.  ndcg (1 + .4306766 + .2890648) / 4; mrr (1 + 1/4 + 1/10) / 4
#   K=20: as K=10 but precision (3/20) / 4
#   K=30: all hit.            ndcg (... + .2103099) / 4; mrr (1.35 + 1/26) / 4; precision (4/30) / 4
HAND_TABLE = {
    5: {"hit": 0.5, "recall": 0.5, "ndcg": 0.3576691, "mrr": 0.3125, "map": 0.3125,
        "precision": 0.1},
    10: {"hit": 0.75, "recall": 0.75, "ndcg": 0.4299353, "mrr": 0.3375, "map": 0.3375,
         "precision": 0.075},
    20: {"hit": 0.75, "recall": 0.75, "ndcg": 0.4299353, "mrr": 0.3375, "map": 0.3375,
         "precision": 0.0375},
    30: {"hit": 1.0, "recall": 1.0, "ndcg": 0.4825128, "mrr": 0.3471154, "map": 0.3471154,
         "precision": 0.0333333},
}


def test_hand_computed_rank_table():
    metrics = metrics_from_ranks(np.array(RANKS), ks=(5, 10, 20, 30))
    assert set(metrics) == {f"{name}@{k}" for name in METRICS for k in (5, 10, 20, 30)} | {"mrr"}
    for k, row in HAND_TABLE.items():
        for name, value in row.items():
            assert metrics[f"{name}@{k}"] == pytest.approx(value, abs=1e-7), f"{name}@{k}"


def test_metric_names_and_default_ks():
    assert METRICS == ("recall", "hit", "ndcg", "mrr", "precision", "map")
    assert UNCUT_METRICS == ("mrr",)
    assert sorted(metrics_from_ranks([1, 2])) == sorted(
        [f"{name}@{k}" for name in METRICS for k in (5, 10, 20)] + ["mrr"]
    )


def test_accepts_numpy_tf_and_lists_alike():
    expected = metrics_from_ranks(np.array(RANKS))
    assert metrics_from_ranks(tf.constant(RANKS, tf.int32)) == expected
    assert metrics_from_ranks(tf.constant(RANKS, tf.int64)) == expected
    assert metrics_from_ranks(RANKS) == expected


def test_per_user_values_at_k_5():
    values = per_user_metrics(np.array(RANKS), 5)
    np.testing.assert_allclose(values["ndcg"], [1.0, 1 / np.log2(5), 0, 0])
    np.testing.assert_allclose(values["mrr"], [1.0, 0.25, 0, 0])
    np.testing.assert_allclose(values["precision"], [0.2, 0.2, 0, 0])


def test_sums_of_batches_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 40, 101)
    parts = [metric_sums(part, (3, 10)) for part in np.array_split(ranks, 4)]
    whole = metrics_from_ranks(ranks, (3, 10))
    for name, mean in whole.items():
        assert sum(part[name] for part in parts) / 101 == pytest.approx(mean, rel=1e-12)


def test_uncut_mrr_by_hand_and_against_a_plain_python_oracle():
    # RANKS 0, 3, 9, 25: (1/1 + 1/4 + 1/10 + 1/26) / 4 = 1.3884615 / 4 = 0.3471154 -- mrr@30, as every rank < 30
    assert metrics_from_ranks(RANKS, ks=(5,))["mrr"] == pytest.approx(0.3471154, abs=1e-7)
    # beyond every cut-off the uncut MRR still counts: rank 999 adds 1/1000, mrr@K adds 0
    metrics = metrics_from_ranks([0, 999], ks=(10,))
    assert (metrics["mrr"], metrics["mrr@10"]) == (pytest.approx((1 + 1 / 1000) / 2), 0.5)
    # Spotlight's definition from a full score row: 1 / (1 + number of items placed above the target)
    rng = random.Random(4)
    reciprocal, ranks = [], []
    for _ in range(50):
        scores = [rng.random() for _ in range(300)]
        target = rng.randrange(300)
        above = sum(1 for s in scores if s > scores[target])
        ranks.append(above)
        reciprocal.append(1 / (1 + above))
    assert metrics_from_ranks(ranks)["mrr"] == pytest.approx(sum(reciprocal) / 50, rel=1e-12)
    parts = [metric_sums(part)["mrr"] for part in np.array_split(np.array(ranks), 3)]
    assert sum(parts) == pytest.approx(sum(reciprocal), rel=1e-12)  # batch sums add up


def recbole_style(pos_index: np.ndarray, pos_len: np.ndarray) -> dict[str, np.ndarray]:
    """RecBole's definitions on a top-K hit matrix ``pos_index [U, K]`` -> per-user ``[U, K]``
    values at every cut-off 1..K (column k-1 = metric@k)."""
    users, max_k = pos_index.shape
    cut = np.arange(1, max_k + 1)
    hits_so_far = np.cumsum(pos_index, axis=1)
    mrr = np.zeros((users, max_k))
    for u in range(users):
        if pos_index[u].any():
            first = int(np.argmax(pos_index[u]))
            mrr[u, first:] = 1.0 / (first + 1)
    discount = 1.0 / np.log2(np.arange(max_k) + 2)
    dcg = np.cumsum(pos_index * discount, axis=1)
    ideal = np.array([[discount[: min(p, k)].sum() for k in cut] for p in pos_len])
    precision_at = hits_so_far / cut
    relevant = np.minimum(pos_len[:, None], cut)
    average_precision = np.cumsum(precision_at * pos_index, axis=1) / relevant
    return {
        "hit": (hits_so_far > 0).astype(float),
        "recall": hits_so_far / pos_len[:, None],
        "mrr": mrr,
        "ndcg": dcg / ideal,
        "precision": precision_at,
        "map": average_precision,
    }


def test_agrees_with_recbole_definitions_on_a_top_k_matrix_with_ties():
    rng = np.random.default_rng(1)
    users, items, max_k = 300, 40, 25
    scores = rng.integers(0, 6, size=(users, items)).astype(float)  # heavy ties
    targets = rng.integers(0, items, users)
    order = np.argsort(-scores, axis=1, kind="stable")  # ties broken by item index
    ranks = np.argmax(order == targets[:, None], axis=1)
    pos_index = order[:, :max_k] == targets[:, None]  # [U, K]: is the k-th item the target?
    expected = recbole_style(pos_index, np.ones(users, np.int64))
    ks = (1, 5, 10, 20, 25)
    metrics = metrics_from_ranks(ranks, ks)
    for k in ks:
        for name in METRICS:
            brute_force = expected[name][:, k - 1].mean()
            assert metrics[f"{name}@{k}"] == pytest.approx(brute_force, abs=1e-12)


@pytest.mark.parametrize(
    "ranks, ks, message",
    [
        ([], (5,), "no users"),
        ([1, -1], (5,), ">= 0"),
        ([[1, 2]], (5,), "vector"),
        ([1.0, np.nan], (5,), "finite"),
        ([1], (), "at least one"),
        ([1], (0,), "int >= 1"),
        ([1], (2.5,), "int >= 1"),
        ([1], (5, 5), "duplicates"),
    ],
)
def test_bad_input_raises(ranks, ks, message):
    with pytest.raises(ValueError, match=message):
        metrics_from_ranks(ranks, ks)
