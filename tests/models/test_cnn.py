"""``cnn``: stacked causal dilated convolutions against a NumPy oracle, its receptive field, causality for
every layer shape, the config's checks, and a SavedModel that answers like the model."""

from __future__ import annotations

import dataclasses

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
from tfseq.config import ConfigError, from_dict
from tfseq.models.cnn import CNNConfig

CONFIGS = [  # without item biases the query is the last layer's output (biases: test_spotlight.py)
    CNNConfig(item_bias=False),
    CNNConfig(embedding_size=8, kernel_width=2, num_layers=2, dilation=(1, 3), nonlinearity="tanh",
              residual=False, item_bias=False),
    CNNConfig(embedding_size=6, kernel_width=5, num_layers=1, dilation_multiplier=1, item_bias=False),
]


def numpy_forward(model, item_ids: np.ndarray) -> np.ndarray:
    """The query after every position ``[B, L, E]``, one multiply-add at a time.

    Layer l at position t: ``act(b + sum_j x[t - j*d] @ W[k-1-j])`` over taps j = 0..k-1 whose
    position is >= 0 (left zero padding), then ``+ x[t]`` with residuals.
    """
    config = model.config
    act = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}[config.nonlinearity]
    x = model.item_embedding.embeddings.numpy().astype(np.float64)[item_ids]  # [B, L, E]
    length = item_ids.shape[1]
    for layer, dilation in zip(model.convolutions, config.dilations):
        kernel, bias = (w.numpy().astype(np.float64) for w in layer.weights)  # [k, E, E], [E]
        k = kernel.shape[0]
        y = np.zeros_like(x)
        for t in range(length):
            total = bias.copy()
            for j in range(k):  # tap j looks j * dilation steps back; kernel row k-1 is the newest
                if t - j * dilation >= 0:
                    total = total + x[:, t - j * dilation] @ kernel[k - 1 - j]
            y[:, t] = act(total)
        x = x + y if config.residual else y
    return x


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "tanh_plain_dilated", "one_wide_layer"])
def test_encode_all_matches_the_numpy_oracle_and_encode_its_last_position(config):
    model = build("cnn", config)
    item_ids = random_histories(4, 9, seed=1)
    expected = numpy_forward(model, item_ids)
    every = model.encode_all(tf.constant(item_ids)).numpy()
    assert every.shape == (4, 9, config.embedding_size)
    np.testing.assert_allclose(every, expected, rtol=1e-4, atol=1e-5)
    last = (item_ids != 0).sum(axis=1) - 1
    query = model.encode(tf.constant(item_ids)).numpy()
    assert query.shape == (4, config.embedding_size)
    np.testing.assert_allclose(query, expected[np.arange(4), last], rtol=1e-4, atol=1e-5)
    assert model.candidate_embeddings().shape == (NUM_ITEMS, config.embedding_size)


def test_receptive_field_and_dilations():
    # 1 + (k - 1) * sum(dilations): default (3, [1, 2, 4]) -> 1 + 2 * 7 = 15
    assert (CNNConfig().dilations, CNNConfig().receptive_field) == ((1, 2, 4), 15)
    assert CNNConfig(num_layers=10).dilations == (1, 2, 4, 8, 16, 32, 64, 128, 1, 2)  # exponent i % 8
    assert CNNConfig(kernel_width=2, num_layers=2, dilation=(1, 3)).receptive_field == 5  # 1 + 1 * 4
    assert CNNConfig(dilation_multiplier=1, kernel_width=5, num_layers=2).receptive_field == 9  # 1 + 4 * 2


def reachable_lookbacks(config: CNNConfig) -> set[int]:
    """How far back the query can see: sums of one tap per layer, ``sum_l j_l * d_l`` with ``0 <= j_l < k``."""
    reach = {0}
    for dilation in config.dilations:
        reach = {r + j * dilation for r in reach for j in range(config.kernel_width)}
    return reach


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "tanh_plain_dilated", "one_wide_layer"])
def test_the_query_at_t_sees_only_the_items_its_taps_reach(config):
    # default: {0,1,2} + {0,2,4} + {0,4,8} = 0..14, all of its receptive field of 15;
    # kernel 2, dilations (1, 3): {0,1} + {0,3} = {0, 1, 3, 4}: 2 steps back is a gap in the field of 5.
    assert reachable_lookbacks(CNNConfig()) == set(range(15))
    assert reachable_lookbacks(CONFIGS[1]) == {0, 1, 3, 4}
    model = build("cnn", config)
    field = config.receptive_field
    assert max(reachable_lookbacks(config)) == field - 1
    length = field + 3
    item_ids = random_histories(3, length, seed=2, min_len=length)
    t = length - 1
    base = model.encode_all(tf.constant(item_ids)).numpy()[:, t]
    rng = np.random.default_rng(3)
    for position in range(length):
        changed = item_ids.copy()
        changed[:, position] = (changed[:, position] + rng.integers(1, NUM_ITEMS - 1, 3) - 1) % (NUM_ITEMS - 1) + 1
        assert np.all(changed[:, position] != item_ids[:, position])
        after = model.encode_all(tf.constant(changed)).numpy()[:, t]
        if t - position in reachable_lookbacks(config):
            assert np.abs(after - base).max() > 1e-4, position  # the smallest such change here is 1e-3
        else:  # nothing changes (up to a GPU kernel's rounding)
            np.testing.assert_allclose(after, base, atol=1e-6)
    # encode convolves only the last `field` items: a long history answers as its tail does
    np.testing.assert_allclose(
        model.encode(tf.constant(item_ids)).numpy(),
        model.encode(tf.constant(item_ids[:, -field:])).numpy(), atol=1e-6,
    )


@pytest.mark.parametrize("config", CONFIGS[1:], ids=["tanh_plain_dilated", "one_wide_layer"])
def test_causal_for_every_layer_shape(config):
    model = build("cnn", config)
    assert_causal(model, random_histories(4, 8, seed=4, min_len=8), seed=5, padded_row=1, atol=1e-6)


def test_saved_model_scores_like_the_model_at_any_length(tmp_path):
    model = build("cnn", CONFIGS[1])
    assert_saved_model_scores_like_the_model(model, str(tmp_path))


def test_config_checks_and_flag_strings():
    with pytest.raises(ConfigError, match=r"CNNConfig.dilation needs one value per layer \(3\), got \[1, 2\]"):
        CNNConfig(dilation=(1, 2))
    with pytest.raises(ConfigError, match="CNNConfig.dilation values must be >= 1"):
        CNNConfig(num_layers=2, dilation=(1, 0))
    with pytest.raises(ConfigError, match="CNNConfig.nonlinearity must be one of tanh, relu, got 'gelu'"):
        CNNConfig(nonlinearity="gelu")
    with pytest.raises(ConfigError, match="CNNConfig.kernel_width must be >= 1"):
        CNNConfig(kernel_width=0)
    with pytest.raises(ConfigError, match="CNNConfig.dropout_prob must be in"):
        CNNConfig(dropout_prob=1.0)
    # --dilation 1,3,9 and --residual false as the flag layer hands them over
    config = from_dict(CNNConfig, {"dilation": "1,3,9", "residual": "false", "num_layers": "3"})
    assert config == dataclasses.replace(CNNConfig(), dilation=(1, 3, 9), residual=False)
