"""tfseq.models.layers against NumPy oracles written position by position."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import random_histories, right_pad
from tfseq.config import ConfigError
from tfseq.models import layers

_erf = np.vectorize(math.erf)


def np_layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def np_encoder(encoder: layers.TransformerEncoder, embedded, item_ids, heads, eps, causal):
    """RecBole's encoder for one row at a time, with explicit loops over queries and keys."""

    def w(variable):
        return variable.numpy().astype(np.float64)

    out = []
    for emb, ids in zip(embedded.astype(np.float64), item_ids):
        length, hidden = emb.shape
        d = hidden // heads
        x = emb + w(encoder.positions.embeddings)[:length]
        x = np_layer_norm(x, w(encoder.norm.gamma), w(encoder.norm.beta), eps)
        for block in encoder.blocks:
            att = block.attention
            qkv = x @ w(att.qkv.kernel) + w(att.qkv.bias)
            q, k, v = qkv[:, :hidden], qkv[:, hidden:2 * hidden], qkv[:, 2 * hidden:]
            context = np.zeros_like(x)
            for i in range(length):
                keys = [j for j in range(length) if ids[j] != 0 and (j <= i or not causal)]
                for h in range(heads):
                    cols = slice(h * d, (h + 1) * d)
                    logits = np.array([q[i, cols] @ k[j, cols] / math.sqrt(d) for j in keys])
                    p = np.exp(logits - logits.max())
                    p /= p.sum()
                    context[i, cols] = sum(pj * v[j, cols] for pj, j in zip(p, keys))
            attended = context @ w(att.output_dense.kernel) + w(att.output_dense.bias)
            x = np_layer_norm(x + attended, w(block.attention_norm.gamma),
                              w(block.attention_norm.beta), eps)
            hidden_ff = np_gelu(x @ w(block.inner.kernel) + w(block.inner.bias))
            ff = hidden_ff @ w(block.outer.kernel) + w(block.outer.bias)
            x = np_layer_norm(x + ff, w(block.output_norm.gamma), w(block.output_norm.beta), eps)
        out.append(x)
    return np.stack(out)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_encoder_matches_numpy_oracle(causal):
    tf.keras.utils.set_random_seed(3)
    hidden, heads, eps = 8, 2, 1e-6
    encoder = layers.TransformerEncoder(
        hidden_size=hidden, num_layers=2, num_heads=heads, inner_size=16,
        hidden_dropout_prob=0.3, attn_dropout_prob=0.3, layer_norm_eps=eps, max_seq_len=7,
        causal=causal, init=layers.uniform_init(0.5),  # large weights: peaked attention
    )
    item_ids = random_histories(4, 6, seed=1)
    embedded = np.random.default_rng(2).normal(size=(4, 6, hidden)).astype(np.float32)
    got = encoder(tf.constant(embedded), tf.constant(item_ids), training=False).numpy()
    want = np_encoder(encoder, embedded, item_ids, heads, eps, causal)
    real = item_ids != 0  # padding positions' outputs are never used
    np.testing.assert_allclose(got[real], want[real], atol=2e-5)
    if causal:  # the last-position shortcut computes the same numbers
        last = got[np.arange(4), real.sum(1) - 1]
        only = encoder(tf.constant(embedded), tf.constant(item_ids), last_only=True).numpy()
        np.testing.assert_allclose(only, last, atol=1e-5)
    else:
        with pytest.raises(ValueError, match="causal"):
            encoder(tf.constant(embedded), tf.constant(item_ids), last_only=True)


def test_attention_mask_allows_real_keys_at_or_before_the_query():
    item_ids = right_pad([[5, 6, 7], [8]])
    causal = layers.attention_mask(tf.constant(item_ids), causal=True).numpy()
    # row 1 has one real item: every query may attend to key 0 only
    np.testing.assert_array_equal(causal[1], [[1, 0, 0]] * 3)
    np.testing.assert_array_equal(causal[0], np.tril(np.ones((3, 3))))
    both = layers.attention_mask(tf.constant(item_ids), causal=False).numpy()
    np.testing.assert_array_equal(both[:, 0], [[1, 1, 1], [1, 0, 0]])


def test_last_window_keeps_each_rows_last_items_and_drops_all_padding_columns():
    item_ids = tf.constant(right_pad([[1, 2, 3, 4, 5], [6, 7], [9]], width=8))
    np.testing.assert_array_equal(
        layers.last_window(item_ids, 3).numpy(), [[3, 4, 5], [6, 7, 0], [9, 0, 0]]
    )
    np.testing.assert_array_equal(
        layers.last_window(item_ids).numpy(), right_pad([[1, 2, 3, 4, 5], [6, 7], [9]])
    )
    empty = layers.last_window(tf.zeros([2, 4], tf.int32), 3)  # one padding column remains
    np.testing.assert_array_equal(empty.numpy(), [[0], [0]])
    assert empty.dtype == tf.int32


def test_masked_and_running_means_average_only_real_positions():
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    # row 0: mean of x[0, :3]; row 1: x[1, 0]
    want = np.stack([x[0, :3].mean(0), x[1, 0]])
    np.testing.assert_allclose(layers.masked_mean(tf.constant(x), tf.constant(mask)), want)
    running = layers.running_mean(tf.constant(x), tf.constant(mask)).numpy()
    for t in range(3):
        np.testing.assert_allclose(running[0, t], x[0, : t + 1].mean(0), rtol=1e-6)
    np.testing.assert_allclose(running[1, 0], x[1, 0])
    zero = layers.masked_mean(tf.constant(x), tf.zeros([2, 4], tf.bool)).numpy()
    np.testing.assert_array_equal(zero, 0.0)


def test_masked_softmax_is_zero_off_the_mask():
    logits = np.array([[1.0, 2.0, 30.0], [0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 0], [0, 0, 0]], bool)
    got = layers.masked_softmax(tf.constant(logits), tf.constant(mask)).numpy()
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(got[0], [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(got[1], 0.0)


def test_positional_embedding_rejects_sequences_longer_than_max_seq_len():
    positions = layers.PositionalEmbedding(3, tf.keras.initializers.Ones())
    np.testing.assert_array_equal(positions(tf.zeros([1, 2, 4])).numpy(), 1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_len=3"):
        positions(tf.zeros([1, 4, 4]))


def test_initialisers_are_fresh_per_weight():
    tf.keras.utils.set_random_seed(0)
    init = layers.uniform_init(0.1)
    a, b = init.dense(4), init.dense(4)
    a.build([None, 4])
    b.build([None, 4])
    assert not np.array_equal(a.kernel.numpy(), b.kernel.numpy())
    assert np.abs(a.kernel.numpy()).max() <= 0.1 and np.abs(a.bias.numpy()).max() <= 0.1


@dataclasses.dataclass(frozen=True)
class _Toy:
    width: int = 8
    num_heads: int = 2
    rate: float = 0.1
    eps: float = 1e-6


@pytest.mark.parametrize("values, message", [
    ({"width": 0}, r"_Toy.width must be >= 1, got 0"),
    ({"eps": 0.0}, r"_Toy.eps must be > 0, got 0.0"),
    ({"rate": 1.0}, r"_Toy.rate must be in \[0, 1\), got 1.0"),
    ({"rate": -0.1}, r"_Toy.rate must be in \[0, 1\), got -0.1"),
    ({"width": 9, "num_heads": 2}, r"_Toy.width \(9\) must be divisible by num_heads \(2\)"),
])
def test_config_checks_name_the_field_and_the_value(values, message):
    config = _Toy(**values)
    with pytest.raises(ConfigError, match=message):
        check(config)
    check(_Toy())  # the defaults pass


def check(config: _Toy) -> None:
    layers.check_config(config, at_least_one=["width"], positive=["eps"], probabilities=["rate"])
    layers.check_heads(config, "width")


def test_positions_from_last_give_each_rows_last_real_item_the_last_position():
    table = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)  # position p's vector: (2p, 2p + 1)
    positions = layers.PositionalEmbedding(6, tf.keras.initializers.Constant(table), from_last=True)
    item_ids = right_pad([[5, 6], [7, 8, 9, 4], [3]])  # [3, 4]
    got = positions(tf.zeros([3, 4, 2]), tf.constant(item_ids)).numpy()
    for row, ids in enumerate(item_ids):
        n = int((ids != 0).sum())
        for j in range(n):  # item j of n sits at 6 - n + j: the last one at 5, whatever n is
            np.testing.assert_array_equal(got[row, j], table[6 - n + j])
    with pytest.raises(ValueError, match="needs the item_ids"):
        positions(tf.zeros([1, 2, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_len=6"):
        positions(tf.zeros([1, 7, 2]), tf.ones([1, 7], tf.int64))
