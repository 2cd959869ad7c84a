"""``pooling``: the running mean (over the whole history or its last ``window`` items) against NumPy, order
invariance, causality, the separate candidate table, learning co-occurrence with Spotlight's hinge losses,
and a SavedModel that answers like the model."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import (
    NUM_ITEMS,
    assert_saved_model_scores_like_the_model,
    build,
    causal_batch,
    random_histories,
    right_pad,
)
from tests.models.scores import raw_scores
from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.models import MODELS
from tfseq.models.pooling import PoolingConfig

# the whole history's mean, the query itself (the window: below; the item bias: test_spotlight.py)
CONFIG = PoolingConfig(embedding_size=8, item_bias=False, window=0)


def test_running_mean_matches_numpy_and_the_query_is_the_mean_of_the_history():
    model = build("pooling", CONFIG)
    item_ids = random_histories(5, 7, seed=1)
    table = model.item_embedding.embeddings.numpy().astype(np.float64)
    every = model.encode_all(tf.constant(item_ids)).numpy()
    query = model.encode(tf.constant(item_ids)).numpy()
    assert every.shape == (5, 7, 8) and query.shape == (5, 8)
    for row, ids in enumerate(item_ids):
        real = ids[ids != 0]
        for t in range(len(real)):  # mean of the first t + 1 items
            np.testing.assert_allclose(every[row, t], table[real[: t + 1]].mean(axis=0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(query[row], table[real].mean(axis=0), rtol=1e-5, atol=1e-7)


def test_order_inside_the_history_does_not_matter_and_empty_is_zero():
    model = build("pooling", CONFIG)
    query = model.encode(tf.constant(right_pad([[3, 9, 4, 4], [4, 3, 4, 9], [0, 0, 0, 0]]))).numpy()
    np.testing.assert_allclose(query[0], query[1], atol=1e-7)
    np.testing.assert_array_equal(query[2], np.zeros(8))
    # causal: the mean at t never sees a later item
    every = model.encode_all(tf.constant(right_pad([[3, 9, 4, 4], [3, 9, 17, 0]]))).numpy()
    np.testing.assert_allclose(every[0, :2], every[1, :2], atol=1e-7)


@pytest.mark.parametrize("window", [1, 3])
def test_windowed_mean_averages_the_last_window_items_at_every_position(window):
    config = PoolingConfig(embedding_size=8, item_bias=False, window=window)
    model = build("pooling", config)
    item_ids = random_histories(5, 7, seed=3)
    table = model.item_embedding.embeddings.numpy().astype(np.float64)
    every = model.encode_all(tf.constant(item_ids)).numpy()
    query = model.encode(tf.constant(item_ids)).numpy()
    for row, ids in enumerate(item_ids):
        real = ids[ids != 0]
        for t in range(len(real)):  # mean of items max(0, t - window + 1) .. t
            np.testing.assert_allclose(every[row, t], table[real[max(0, t - window + 1): t + 1]].mean(axis=0),
                                       rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(query[row], table[real[-window:]].mean(axis=0), rtol=1e-5, atol=1e-7)
    # the items before the window never reach the query; the order inside it does not matter
    a, b = right_pad([[5, 6, 3, 9, 4], [11, 3, 4, 9]]), right_pad([[7, 7, 7, 7, 3, 9, 4], [4, 9, 3]])
    if window == 3:
        np.testing.assert_allclose(model.encode(tf.constant(a)).numpy()[0], model.encode(tf.constant(b)).numpy()[0],
                                   atol=1e-7)
        np.testing.assert_allclose(model.encode(tf.constant(a)).numpy()[1], model.encode(tf.constant(b)).numpy()[1],
                                   atol=1e-7)


def test_untied_weights_score_the_mean_against_a_separate_candidate_table():
    model = build("pooling", PoolingConfig(embedding_size=8, item_bias=False, tie_weights=False, window=0))
    item_ids = tf.constant(random_histories(4, 6, seed=5))
    table = model.item_embedding.embeddings.numpy()
    candidates = model.candidate_embeddings().numpy()
    assert candidates.shape == table.shape and not np.allclose(candidates, table)
    lengths = (item_ids.numpy() != 0).sum(axis=1)
    means = np.stack([table[ids[:n]].mean(axis=0) for ids, n in zip(item_ids.numpy(), lengths)])
    np.testing.assert_allclose(raw_scores(model, item_ids).numpy(), means @ candidates.T, rtol=1e-5, atol=1e-7)
    # both tables train: a loss step moves the candidate rows as well as the averaged ones
    model.compile(optimizer=tf.keras.optimizers.SGD(1.0))
    model.fit(tf.data.Dataset.from_tensors(causal_batch([[1, 2, 3, 4], [5, 6, 7]])), epochs=1, verbose=0)
    assert not np.allclose(model.candidate_embeddings().numpy(), candidates)
    assert not np.allclose(model.item_embedding.embeddings.numpy(), table)


def grouped_sequences(num: int, groups: int, size: int, seed: int) -> list[list[int]]:
    """Each sequence: 6 distinct items of one group (items ``g*size + 1 .. (g+1)*size``), in random order."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        group = rng.integers(groups)
        out.append([int(i) for i in group * size + 1 + rng.permutation(size)[:6]])
    return out


@pytest.mark.parametrize("loss", ["adaptive_hinge", "hinge"])
def test_learns_which_items_go_together_with_spotlights_hinge_losses(loss):
    # 40 groups of 8 items: a mean of the history points at its group, whatever the order; the next
    # item is one of the group's 3 unseen items. Random scores rank it about 160th of 320.
    groups, size = 40, 8
    num_items = groups * size + 1
    sequences = grouped_sequences(400, groups, size, seed=0)
    counts = np.bincount([i for s in sequences for i in s], minlength=num_items)
    tf.keras.utils.set_random_seed(0)
    model = MODELS.build("pooling", CONFIG, num_items=num_items,
                         loss=LOSSES.build(loss, item_counts=counts))
    batch = {
        "item_ids": tf.constant(right_pad([s[:-1] for s in sequences])),
        "targets": tf.constant(right_pad([s[1:] for s in sequences])),
    }

    def target_rank() -> float:
        scores = raw_scores(model, tf.constant(right_pad([s[:-1] for s in sequences[:100]]))).numpy()[:, 1:]
        targets = np.array([s[-1] for s in sequences[:100]]) - 1
        return float((scores > scores[np.arange(100), targets][:, None]).sum(axis=1).mean())

    before = target_rank()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=1, epochs=60,
                        verbose=0).history["loss"]
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5]), history
    assert before > 100 and target_rank() < 12  # about 5: into its group of 8 (with the 5 history items)


def test_saved_model_scores_like_the_model_at_any_length(tmp_path):
    model = build("pooling", CONFIG)
    assert_saved_model_scores_like_the_model(model, str(tmp_path))
    assert model.candidate_embeddings().shape == (NUM_ITEMS, 8)


def test_config_checks():
    with pytest.raises(ConfigError, match="PoolingConfig.embedding_size must be >= 1, got 0"):
        PoolingConfig(embedding_size=0)
    with pytest.raises(ConfigError, match="PoolingConfig.dropout_prob must be in"):
        PoolingConfig(dropout_prob=1.5)
    with pytest.raises(ConfigError, match=r"PoolingConfig.window must be >= 0 \(0: the whole history\), got -1"):
        PoolingConfig(window=-1)
