"""BSARec: the causal low-pass filter against NumPy's FFT, the filter branch, the alpha mix, config checks.

Causality, padding invariance, every loss, save/reload and SavedModel parity are in test_models.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import build, random_histories
from tests.models.scores import raw_scores
from tfseq.config import ConfigError
from tfseq.models.bsarec import FrequencyFilter, causal_lowpass_matrix, lowpass_weights
from tfseq.models.configs import BSARecConfig
from tfseq.models.layers import normal_init


def fft_lowpass(x: np.ndarray, c: int) -> np.ndarray:
    """The authors' filter on ``x [L, H]``: rfft over the sequence, the ``c // 2 + 1`` lowest bins, irfft."""
    spectrum = np.fft.rfft(x, axis=0, norm="ortho")
    spectrum[c // 2 + 1:] = 0
    return np.fft.irfft(spectrum, n=len(x), axis=0, norm="ortho")


@pytest.mark.parametrize("window, c", [(50, 5), (8, 3), (7, 1), (6, 6), (4, 9)])
def test_the_causal_filter_is_the_fft_lowpass_at_the_end_of_every_window(window, c):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3 * window, 4))
    weights = lowpass_weights(window, c)
    for end in range(window - 1, 3 * window):  # the window x[end - window + 1 .. end]
        expected = fft_lowpass(x[end - window + 1 : end + 1], c)[-1]
        got = sum(weights[d] * x[end - d] for d in range(window))
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_the_matrix_weighs_only_the_past():
    matrix = causal_lowpass_matrix(6, 3)
    assert np.all(np.triu(matrix, 1) == 0)
    # at position t the filter reads x[0..t] with the weights of lags t..0: a history shorter
    # than the window is the window with zeros before it
    w = lowpass_weights(6, 3)
    for t in range(6):
        np.testing.assert_allclose(matrix[t, : t + 1], w[: t + 1][::-1], atol=1e-7)


def test_the_filter_branch_is_layernorm_of_x_plus_low_plus_beta_squared_high():
    tf.keras.utils.set_random_seed(0)
    layer = FrequencyFilter(8, 3, dropout=0.5, layer_norm_eps=1e-12, init=normal_init(0.02))
    x = np.random.default_rng(2).normal(size=(2, 8, 4)).astype(np.float32)
    out = layer(x, training=False).numpy()
    beta2 = layer.sqrt_beta.numpy() ** 2
    low = np.einsum("ts,bsh->bth", causal_lowpass_matrix(8, 3), x)
    mixed = x + low + beta2 * (x - low)
    expected = (mixed - mixed.mean(-1, keepdims=True)) / np.sqrt(mixed.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # one query position per row gives that position's row of the full output
    last = tf.constant([7, 3])
    np.testing.assert_allclose(layer(x, last).numpy()[:, 0], out[[0, 1], [7, 3]], atol=1e-5)


def small(**changes) -> BSARecConfig:
    return dataclasses.replace(
        BSARecConfig(embedding_size=16, num_layers=2, num_heads=2, inner_size=32, max_seq_len=8), **changes
    )


def branch_weights(model, name: str) -> list[tf.Variable]:
    return [v for v in model.trainable_variables if f"/{name}/" in v.name]


@pytest.mark.parametrize("alpha, unused", [(0.0, "frequency"), (1.0, "attention")])
def test_alpha_zero_is_attention_only_and_alpha_one_filter_only(alpha, unused):
    model = build("bsarec", small(alpha=alpha))
    histories = random_histories(5, 8, seed=3)
    before = raw_scores(model, histories)
    for variable in branch_weights(model, unused):
        variable.assign(variable + 1.0)
    np.testing.assert_allclose(raw_scores(model, histories), before, atol=1e-5)
    other = "attention" if unused == "frequency" else "frequency"
    for variable in branch_weights(model, other):
        variable.assign(variable + 1.0)
    assert np.abs(raw_scores(model, histories) - before).max() > 1e-3


@pytest.mark.parametrize("values, message", [
    ({"c": 0}, r"BSARecConfig.c must be >= 1, got 0"),
    ({"alpha": 1.5}, r"BSARecConfig.alpha must be in \[0, 1\], got 1.5"),
    ({"num_heads": 3}, r"BSARecConfig.embedding_size \(64\) .* num_heads \(3\)"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        BSARecConfig(**values)
