"""``lstm``: the hidden states against a NumPy LSTM, shapes, causality, the config's checks, and a
SavedModel that answers like the model."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import (
    NUM_ITEMS,
    assert_causal,
    assert_saved_model_scores_like_the_model,
    build,
    random_histories,
)
from tfseq.config import ConfigError
from tfseq.models.lstm import LSTMConfig

CONFIG = LSTMConfig(embedding_size=8, item_bias=False)  # the query is the hidden state itself (bias: test_spotlight.py)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(model, item_ids: np.ndarray) -> np.ndarray:
    """Hidden state after every position ``[B, L, H]`` from zero state, gates in Keras's order i, f, c, o:

    z = x W + h U + b;  c' = σ(z_f) c + σ(z_i) tanh(z_c);  h' = σ(z_o) tanh(c').
    """
    kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in model.lstm.weights)  # [E,4H] [H,4H] [4H]
    x = model.item_embedding.embeddings.numpy().astype(np.float64)[item_ids]  # [B, L, E]
    rows, length, _ = x.shape
    width = recurrent.shape[0]
    h = np.zeros((rows, width))
    c = np.zeros((rows, width))
    out = np.zeros((rows, length, width))
    for t in range(length):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


def test_hidden_states_match_a_numpy_lstm_and_the_query_is_the_last_real_one():
    model = build("lstm", CONFIG)
    item_ids = random_histories(5, 7, seed=1)
    expected = numpy_lstm(model, item_ids)
    every = model.encode_all(tf.constant(item_ids)).numpy()
    assert every.shape == (5, 7, 8)
    np.testing.assert_allclose(every, expected, rtol=1e-4, atol=1e-6)
    last = (item_ids != 0).sum(axis=1) - 1
    query = model.encode(tf.constant(item_ids)).numpy()
    assert query.shape == (5, 8)
    np.testing.assert_allclose(query, expected[np.arange(5), last], rtol=1e-4, atol=1e-6)
    assert model.candidate_embeddings().shape == (NUM_ITEMS, 8)


def test_the_state_at_t_ignores_later_items_and_every_earlier_item_reaches_it():
    model = build("lstm", CONFIG)
    item_ids = random_histories(4, 6, seed=2, min_len=6)
    before = assert_causal(model, item_ids, seed=3, padded_row=2, atol=1e-6)
    # the first item still moves the last state: nothing truncates the recurrence
    changed = item_ids.copy()
    changed[:, 0] = changed[:, 0] % (NUM_ITEMS - 1) + 1
    after = model.encode(tf.constant(changed)).numpy()
    assert np.all(np.abs(after - before[:, -1]).max(axis=1) > 1e-7)


def test_saved_model_scores_like_the_model_at_any_length(tmp_path):
    model = build("lstm", CONFIG)
    assert_saved_model_scores_like_the_model(model, str(tmp_path))


def test_config_checks():
    with pytest.raises(ConfigError, match="LSTMConfig.embedding_size must be >= 1, got 0"):
        LSTMConfig(embedding_size=0)
    with pytest.raises(ConfigError, match="LSTMConfig.dropout_prob must be in"):
        LSTMConfig(dropout_prob=-0.1)
