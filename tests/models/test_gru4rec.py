"""GRU4Rec against a NumPy GRU; config validation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import build, random_histories
from tfseq.config import ConfigError
from tfseq.models.gru4rec import GRU4RecConfig


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_gru(x, kernel, recurrent):
    """PyTorch's bias-free GRU (gate columns z, r, n as Keras stores them), state starts at 0."""
    units = recurrent.shape[0]
    h = np.zeros(units)
    out = []
    for x_t in x:
        xz, xr, xn = np.split(x_t @ kernel, 3)
        hz, hr, hn = np.split(h @ recurrent, 3)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        n = np.tanh(xn + r * hn)
        h = z * h + (1.0 - z) * n
        out.append(h)
    return np.array(out)


def test_query_is_the_projected_gru_state_after_the_last_item():
    config = GRU4RecConfig(embedding_size=6, hidden_size=5, num_layers=2, dropout_prob=0.3)
    model = build("gru4rec", config)
    item_ids = random_histories(4, 5, seed=8)
    table = model.candidate_embeddings().numpy().astype(np.float64)
    want = []
    for row in item_ids:
        length = int((row != 0).sum())
        x = table[row[:length]]
        for gru in model.gru_layers:
            kernel, recurrent = (w.numpy().astype(np.float64) for w in gru.weights)
            x = np_gru(x, kernel, recurrent)
        projection = model.projection
        want.append(x[-1] @ projection.kernel.numpy() + projection.bias.numpy())
    np.testing.assert_allclose(model.encode(tf.constant(item_ids)).numpy(), want, atol=1e-5)
    assert len(model.trainable_variables) == 1 + 2 * 2 + 2  # table, 2 x GRU kernels, Dense


@pytest.mark.parametrize("values, message", [
    ({"num_layers": 0}, "GRU4RecConfig.num_layers must be >= 1, got 0"),
    ({"hidden_size": -1}, "GRU4RecConfig.hidden_size must be >= 1"),
    ({"dropout_prob": 1.0}, r"GRU4RecConfig.dropout_prob must be in \[0, 1\)"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        GRU4RecConfig(**values)
