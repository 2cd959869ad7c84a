"""pop: every history ranks the items by training count."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import NUM_ITEMS, build, random_histories
from tests.models.scores import raw_scores


def test_every_history_ranks_items_by_count_and_padding_last():
    rng = np.random.default_rng(0)
    counts = rng.permutation(NUM_ITEMS) * 3  # distinct counts, so the order is unique
    counts[0] = 0
    model = build("pop", counts=counts)
    scores = raw_scores(model, tf.constant(random_histories(4, 5, seed=1))).numpy()  # [4, N]
    np.testing.assert_array_equal(scores, np.broadcast_to(scores[0], scores.shape))
    order = np.argsort(-scores[0], kind="stable")
    expected = [i for i in np.argsort(-counts, kind="stable") if i != 0] + [0]
    np.testing.assert_array_equal(order, expected)
    np.testing.assert_allclose(scores[0, 1:], np.log1p(counts[1:]), rtol=1e-6)
    assert scores[0, 0] < -1e6
    assert not model.trainable_variables


def test_adapt_rejects_counts_of_the_wrong_shape_or_sign():
    model = build("pop")
    with pytest.raises(ValueError, match=rf"shape \[{NUM_ITEMS}\]"):
        model.adapt(np.ones(NUM_ITEMS + 1))
    with pytest.raises(ValueError, match=">= 0"):
        model.adapt(-np.ones(NUM_ITEMS))
