"""CORE: cosine / temperature scores in the item space, checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import build, random_histories, right_pad
from tests.models.scores import raw_scores
from tfseq.config import ConfigError, from_dict
from tfseq.models.configs import COREAveConfig
from tfseq.models.core import COREConfig, CORETrmConfig

CORE_MODELS = ["core_ave", "core_trm"]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("name", CORE_MODELS)
def test_query_norm_is_one_over_temperature_and_candidates_are_unit_rows(name):
    model = build(name)
    temperature = model.config.temperature
    query = model.encode(tf.constant(random_histories(8, 6, seed=1))).numpy()
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0 / temperature, rtol=1e-5)
    candidates = model.candidate_embeddings().numpy()
    np.testing.assert_allclose(np.linalg.norm(candidates, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        candidates, unit(model.item_embedding.embeddings.numpy()), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", CORE_MODELS)
def test_item_dropout_changes_the_candidates_in_training_only(name):
    model = build(name)
    inference = model.candidate_embeddings(training=False).numpy()
    dropped = model.candidate_embeddings(training=True).numpy()
    table = model.item_embedding.embeddings.numpy()
    zeroed = dropped == 0  # item_dropout = 0.2 of the entries
    assert 0.1 < zeroed.mean() < 0.3
    # a dropped-out row is the normalised row of the table with those entries removed
    np.testing.assert_allclose(dropped, unit(np.where(zeroed, 0.0, table)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(dropped, inference)


@pytest.mark.parametrize("window", [0, 3])
def test_core_ave_scores_are_cosines_to_the_mean_item_embedding_over_temperature(window):
    model = build("core_ave", COREAveConfig(window=window))
    histories = [[3, 3, 7], [5], [1, 2, 4, 8, 16]]  # a repeated item counts twice
    table = model.item_embedding.embeddings.numpy().astype(np.float64)
    # the mean of the last `window` items (of all of them with window 0)
    session = unit(np.stack([table[h[-window:] if window else h].mean(axis=0) for h in histories]))
    temperature = model.config.temperature
    item_ids = tf.constant(right_pad(histories, width=7))
    np.testing.assert_allclose(model.encode(item_ids).numpy(), session / temperature, rtol=1e-5)
    scores = session @ unit(table).T / temperature  # cos / T
    np.testing.assert_allclose(raw_scores(model, item_ids).numpy(), scores, rtol=1e-4, atol=1e-4)
    # every position's query is its own window's mean: the last one is encode's
    every = model.encode_all(item_ids).numpy()
    np.testing.assert_allclose(every[[0, 1, 2], [2, 0, 4]], session / temperature, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"COREAveConfig.window must be >= 0 \(0: the whole history\), got -1"):
        COREAveConfig(window=-1)


def test_core_trm_query_is_an_attention_weighted_sum_of_the_sessions_own_items():
    model = build("core_trm")
    temperature = model.config.temperature
    table = model.item_embedding.embeddings.numpy().astype(np.float64)
    # one distinct item: whatever the weights, the session vector is that item's direction
    for history in ([4], [9, 9, 9]):
        query = model.encode(tf.constant([history], tf.int64)).numpy()[0]
        np.testing.assert_allclose(query, unit(table[4 if history == [4] else 9]) / temperature,
                                   rtol=1e-5)
    item_ids = tf.constant(right_pad([[1, 2, 3], [6, 5]], width=5))
    alpha = model.item_weights(item_ids, model.item_embedding(item_ids)).numpy()  # [2, 5]
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(alpha[item_ids.numpy() == 0], 0.0)
    assert np.all(alpha[item_ids.numpy() != 0] > 0)
    session = unit(np.einsum("bl,bld->bd", alpha, table[item_ids.numpy()]))
    np.testing.assert_allclose(model.encode(item_ids).numpy(), session / temperature, atol=1e-5)


def test_every_weight_starts_uniform_within_one_over_sqrt_embedding_size():
    model = build("core_trm", CORETrmConfig(embedding_size=16, inner_size=32))
    limit = 1.0 / np.sqrt(16)
    for weight in model.weights:  # LayerNorm scales included, as RecBole resets them
        values = weight.numpy()
        assert np.abs(values).max() <= limit, weight.name
        if values.size >= 8:
            assert values.std() > limit / 4, weight.name  # not constant
    pooled = np.concatenate([w.numpy().ravel() for w in model.weights])
    np.testing.assert_allclose(pooled.std(), limit / np.sqrt(3), rtol=0.05)  # U(-a, a): a/sqrt(3)


def test_core_ave_takes_no_transformer_keys_and_core_trm_checks_its_heads():
    with pytest.raises(ConfigError, match="unknown COREConfig key.*num_layers"):
        from_dict(COREConfig, {"num_layers": 2})
    with pytest.raises(ConfigError, match=r"CORETrmConfig.embedding_size \(10\) .* \(4\)"):
        CORETrmConfig(embedding_size=10, num_heads=4)
    with pytest.raises(ConfigError, match="COREConfig.temperature must be > 0"):
        COREConfig(temperature=0.0)
    with pytest.raises(ConfigError, match=r"CORETrmConfig.sess_dropout must be in \[0, 1\)"):
        CORETrmConfig(sess_dropout=1.0)
