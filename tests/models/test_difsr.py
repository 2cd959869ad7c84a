"""DIF-SR: the decoupled attention and the attribute loss against NumPy oracles, causality per fusion
type, side features inside saved models, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import (
    NUM_ITEMS,
    assert_causal,
    build,
    causal_batch,
    cycle_sequences,
    item_counts,
    random_histories,
    right_pad,
    toy_item_features,
)
from tests.models.scores import raw_scores
from tfseq.config import ConfigError, from_dict
from tfseq.data.item_features import ItemFeatures
from tfseq.experiment import ExperimentConfig
from tfseq.losses import LOSSES
from tfseq.models import MODELS, layers
from tfseq.models.difsr import DecoupledAttention, DIFSRConfig


def softmax():
    return LOSSES.build("softmax", item_counts=item_counts(cycle_sequences()))


def small(**changes) -> DIFSRConfig:
    values = dict(embedding_size=16, attribute_embedding_size=8, num_layers=2, num_heads=2, inner_size=16,
                  max_seq_len=8, hidden_dropout_prob=0.2, attn_dropout_prob=0.2)
    values.update(changes)
    return DIFSRConfig(**values)


# -- config ------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"fusion_type": "product"}, "DIFSRConfig.fusion_type must be one of sum, concat, gate, got 'product'"),
    ({"pooling_mode": "avg"}, "DIFSRConfig.pooling_mode must be one of sum, mean, max"),
    ({"attribute_predictor": "mlp"}, "DIFSRConfig.attribute_predictor must be one of linear, none"),
    ({"lambda_attr": -1.0}, "DIFSRConfig.lambda_attr must be >= 0"),
    ({"attribute_embedding_size": 6, "num_heads": 4},
     r"DIFSRConfig.attribute_embedding_size \(6\) must be divisible by num_heads \(4\)"),
    ({"attn_dropout_prob": 1.0}, r"DIFSRConfig.attn_dropout_prob must be in \[0, 1\)"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        DIFSRConfig(**values)


def test_defaults_are_the_authors_beauty_run_at_two_cpu_core_size_and_flat_dicts_coerce():
    config = DIFSRConfig()
    assert (config.num_layers, config.num_heads, config.embedding_size, config.inner_size) == (2, 2, 128, 256)
    assert (config.attribute_embedding_size, config.hidden_dropout_prob, config.attn_dropout_prob) == (128, 0.5, 0.3)
    assert (config.fusion_type, config.pooling_mode, config.attribute_predictor, config.lambda_attr) == (
        "gate", "sum", "linear", 10.0)
    assert from_dict(DIFSRConfig, {"lambda_attr": "5", "fusion_type": "sum"}).lambda_attr == 5.0
    # RecBole's (prefix, next item) training examples, as the authors train, unless the user says otherwise.
    train = ExperimentConfig.from_flat({"model": "difsr"}).train
    assert (train.all_positions, train.batch_size, train.lr_decay_patience) == (False, 128, 3)
    assert (train.valid_metric, train.epochs) == ("recall@20", 40)  # the authors' selection, an hour's cap
    assert ExperimentConfig.from_flat({"model": "difsr", "all_positions": True}).train.all_positions


def test_building_without_item_features_or_with_the_wrong_rows_is_a_clear_error():
    loss = softmax()
    with pytest.raises(ValueError, match="DIFSR uses item side features: build it with item_features="):
        MODELS.build("difsr", small(), num_items=NUM_ITEMS, loss=loss)
    with pytest.raises(ValueError, match="has 21 rows, expected num_items=30"):
        MODELS.build("difsr", small(), num_items=30, loss=loss, item_features=toy_item_features())


# -- the decoupled attention against NumPy ------------------------------------------------
def np_decoupled_attention(layer: DecoupledAttention, x, positions, attributes, item_ids):
    """DIF-SR's attention one row, query, head and stream at a time (float64).

    Streams in order: each attribute field, the items, the positions. Scores of keys a query may
    not see are 0 before fusion; sum adds the streams; concat maps the streams' zero-padded
    ``max_len`` rows, concatenated, through one linear layer; gate weights each stream by a softmax
    over ``w2 . relu(W1 row + b1) + b2``. Then / sqrt(head size), softmax over the visible keys, the
    items' values, the output projection.
    """

    def w(variable):
        return variable.numpy().astype(np.float64)

    heads, max_len = layer.num_heads, layer.max_seq_len
    out = []
    for b, ids in enumerate(item_ids):
        length = len(ids)
        item = x[b].astype(np.float64) @ w(layer.item_qkv.kernel) + w(layer.item_qkv.bias)
        hidden = item.shape[1] // 3
        pos = positions.astype(np.float64) @ w(layer.position_qk.kernel) + w(layer.position_qk.bias)
        # (query, key) per stream: [L, width] each
        streams = []
        for qk, a in zip(layer.attribute_qk, attributes):
            proj = a[b].astype(np.float64) @ w(qk.kernel) + w(qk.bias)
            half = proj.shape[1] // 2
            streams.append((proj[:, :half], proj[:, half:]))
        streams.append((item[:, :hidden], item[:, hidden:2 * hidden]))
        streams.append((pos[:, :hidden], pos[:, hidden:]))
        value = item[:, 2 * hidden:]
        d = hidden // heads
        context = np.zeros((length, hidden))
        for i in range(length):
            visible = [j for j in range(length) if ids[j] != 0 and j <= i]
            for h in range(heads):
                rows = np.zeros((len(streams), max_len))  # each stream's score row, zero-padded
                for s, (q, k) in enumerate(streams):
                    width = q.shape[1] // heads
                    cols = slice(h * width, (h + 1) * width)
                    for j in visible:
                        rows[s, j] = q[i, cols] @ k[j, cols]
                if layer.fusion_type == "sum":
                    fused = rows.sum(0)
                elif layer.fusion_type == "concat":
                    fused = rows.reshape(-1) @ w(layer.fusion.kernel) + w(layer.fusion.bias)
                else:
                    hid = np.maximum(rows @ w(layer.gate_hidden.kernel) + w(layer.gate_hidden.bias), 0)
                    energy = (hid @ w(layer.gate_energy.kernel) + w(layer.gate_energy.bias))[:, 0]
                    gate = np.exp(energy - energy.max())
                    gate /= gate.sum()
                    fused = gate @ rows
                logits = np.array([fused[j] / math.sqrt(d) for j in visible])
                p = np.exp(logits - logits.max())
                p /= p.sum()
                cols = slice(h * d, (h + 1) * d)
                context[i, cols] = sum(pj * value[j, cols] for pj, j in zip(p, visible))
        out.append(context @ w(layer.output_dense.kernel) + w(layer.output_dense.bias))
    return np.stack(out)


@pytest.mark.parametrize("fusion_type", ["sum", "concat", "gate"])
def test_decoupled_attention_matches_numpy_oracle(fusion_type):
    tf.keras.utils.set_random_seed(5)
    hidden, attribute, heads, max_len = 8, 4, 2, 6
    layer = DecoupledAttention(hidden, attribute, num_fields=2, num_heads=heads, max_seq_len=max_len,
                               fusion_type=fusion_type, dropout=0.3, init=layers.uniform_init(0.5))
    rng = np.random.default_rng(6)
    item_ids = random_histories(3, 5, seed=7)  # L = 5 < max_len: the fusion rows are zero-padded
    x = rng.normal(size=(3, 5, hidden)).astype(np.float32)
    positions = rng.normal(size=(5, hidden)).astype(np.float32)
    attributes = [rng.normal(size=(3, 5, attribute)).astype(np.float32) for _ in range(2)]
    mask = layers.attention_mask(tf.constant(item_ids), causal=True)
    got = layer(tf.constant(x), mask, positions=tf.constant(positions),
                attributes=[tf.constant(a) for a in attributes]).numpy()
    want = np_decoupled_attention(layer, x, positions, attributes, item_ids)
    real = item_ids != 0
    np.testing.assert_allclose(got[real], want[real], atol=2e-5)
    last = real.sum(1) - 1  # one query per row, as encode's last block: the same numbers
    keys = layers.padding_mask(tf.constant(item_ids))[:, tf.newaxis, :]
    only = layer(tf.constant(x), keys, tf.constant(last), positions=tf.constant(positions),
                 attributes=[tf.constant(a) for a in attributes]).numpy()
    np.testing.assert_allclose(only[:, 0], want[np.arange(3), last], atol=2e-5)
    assert not np.allclose(got, layer(tf.constant(x), mask, training=True, positions=tf.constant(positions),
                                      attributes=[tf.constant(a) for a in attributes]).numpy())


def test_each_stream_changes_the_attention():
    """Items, positions and every attribute field each move the output (values are the items' only)."""
    tf.keras.utils.set_random_seed(1)
    layer = DecoupledAttention(8, 4, num_fields=2, num_heads=2, max_seq_len=4, fusion_type="sum", dropout=0.0,
                               init=layers.uniform_init(0.5))
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(1, 4, 8)), tf.float32)
    positions = tf.constant(rng.normal(size=(4, 8)), tf.float32)
    attributes = [tf.constant(rng.normal(size=(1, 4, 4)), tf.float32) for _ in range(2)]
    mask = layers.attention_mask(tf.ones([1, 4], tf.int64), causal=True)
    base = layer(x, mask, positions=positions, attributes=attributes).numpy()
    np.testing.assert_allclose(base[:, 0], layer(x, mask, positions=positions * 2, attributes=[
        a * 3 for a in attributes]).numpy()[:, 0], atol=1e-5)  # one visible key: its value alone
    for changed in (dict(positions=positions * 2, attributes=attributes),
                    dict(positions=positions, attributes=[attributes[0] * 2, attributes[1]]),
                    dict(positions=positions, attributes=[attributes[0], attributes[1] * 2])):
        assert not np.allclose(layer(x, mask, **changed).numpy()[:, 1:], base[:, 1:], atol=1e-4)


# -- the model --------------------------------------------------------------------------
@pytest.mark.parametrize("fusion_type", ["sum", "concat", "gate"])
def test_output_at_t_ignores_later_items_and_padding_for_every_fusion_type(fusion_type):
    model = build("difsr", small(fusion_type=fusion_type))
    item_ids = random_histories(5, 6, seed=2, min_len=6)
    before = assert_causal(model, item_ids, seed=3, padded_row=0, atol=1e-5)
    padded = np.pad(item_ids[:, :4], [(0, 0), (0, 3)])  # wider than the history, narrower than max_seq_len
    np.testing.assert_allclose(model.encode_all(tf.constant(padded)).numpy()[:, :4], before[:, :4], atol=1e-5)


def features_shifted() -> ItemFeatures:
    """The toy features with the ``tags`` rows of items 1..20 rotated by one item."""
    features = toy_item_features()
    tags = features.values[1].copy()
    tags[1:] = np.roll(tags[1:], 1, axis=0)
    return ItemFeatures(features.fields, (features.values[0], tags), features.vocabularies)


def test_side_features_reach_the_query():
    """Two models with the same weights and different feature tables give different queries."""
    model = build("difsr", small(initializer_range=0.3))  # the default 0.02 makes attribute scores ~1e-6
    other = MODELS.build("difsr", small(initializer_range=0.3), num_items=NUM_ITEMS, loss=softmax(),
                         item_features=features_shifted())
    other.encode(tf.ones([1, 1], tf.int64))
    for mine, theirs in zip(model.trainable_weights, other.trainable_weights):
        theirs.assign(mine)
    item_ids = tf.constant(random_histories(4, 5, seed=3, min_len=2))
    assert not np.allclose(model.encode(item_ids).numpy(), other.encode(item_ids).numpy(), atol=1e-4)


def np_bce_attribute_loss(model, query, positive_ids, features: ItemFeatures, lambda_attr):
    """lambda * sum over fields of mean over (t, v >= 1) of BCE(z[t, v], y[t, v]), z = query W + b.

    BCE(z, y) = max(z, 0) - z * y + log(1 + exp(-|z|)); y[t] = the multi-hot values of positive t.
    """
    total = 0.0
    for field, predictor in enumerate(model.attribute_predictors):
        z = query.astype(np.float64) @ predictor.kernel.numpy() + predictor.bias.numpy()  # [T, V]
        y = np.zeros_like(z)
        for t, item in enumerate(positive_ids):
            for v in features.values[field][item]:
                y[t, v] = 1.0
        bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        total += bce[:, 1:].mean()
    return lambda_attr * total


def test_attribute_loss_matches_numpy_bce_and_is_added_to_every_retrieval_loss():
    features = toy_item_features()
    model = build("difsr", small(lambda_attr=2.5))
    for predictor in model.attribute_predictors:  # non-zero biases
        predictor.bias.assign(np.random.default_rng(1).normal(size=predictor.bias.shape))
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 16)).astype(np.float32)
    positive_ids = np.array([1, 2, 3, 20, 5, 19, 7])  # 20 has no features: all-zero labels
    got = float(model.auxiliary_loss(tf.constant(query), tf.constant(positive_ids)))
    want = np_bce_attribute_loss(model, query, positive_ids, features, 2.5)
    assert got == pytest.approx(want, rel=1e-5)
    for loss in LOSSES.names():
        model = build("difsr", small(lambda_attr=2.5), loss=loss)
        batch = causal_batch(cycle_sequences()[:6])
        valid = batch["targets"].numpy() != 0
        queries = tf.boolean_mask(model.encode_all(batch["item_ids"]), valid)
        positives = tf.boolean_mask(batch["targets"], valid)
        tf.keras.utils.set_random_seed(3)  # sampled losses draw the same negatives twice
        retrieval = float(model.loss_fn(queries, positives, model.candidate_embeddings()))
        aux = float(model.auxiliary_loss(queries, positives))
        tf.keras.utils.set_random_seed(3)
        total = float(model.compute_loss(batch))
        assert aux > 0 and total == pytest.approx(retrieval + aux, rel=1e-5), loss
    none = build("difsr", small(attribute_predictor="none"))
    assert not none.attribute_predictors and float(none.auxiliary_loss(tf.constant(query), positive_ids)) == 0.0


def test_saved_model_of_score_carries_the_feature_table(tmp_path):
    model = build("difsr", small(fusion_type="concat"))
    module = tf.Module()
    module.model = model
    module.score = tf.function(lambda item_ids: raw_scores(model, item_ids),
                               input_signature=[tf.TensorSpec([None, None], tf.int64)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.score})
    del module
    serve = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    for item_ids in (random_histories(4, 6, seed=11), right_pad([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])):
        (answer,) = serve(tf.constant(item_ids)).values()
        np.testing.assert_allclose(answer.numpy(), raw_scores(model, tf.constant(item_ids)).numpy(), atol=1e-5)


def test_the_feature_table_is_a_non_trainable_weight_restored_with_the_others(tmp_path):
    """The table is part of the weights: a checkpoint restores it over a model built with another."""
    model = build("difsr", small())
    tables = [w for w in model.non_trainable_weights if w.dtype == tf.int32]
    assert len(tables) == 2
    for table, values in zip(tables, toy_item_features().values):
        np.testing.assert_array_equal(table.numpy(), values)
    assert not any(w.dtype == tf.int32 for w in model.trainable_weights)
    model.save_weights(str(tmp_path / "weights"))
    other = features_shifted()
    fresh = MODELS.build("difsr", small(), num_items=NUM_ITEMS, loss=softmax(), item_features=other)
    fresh.encode(tf.ones([1, 1], tf.int64))
    fresh.load_weights(str(tmp_path / "weights")).assert_existing_objects_matched()
    for restored, saved in zip(fresh.attributes.value_tables, model.attributes.value_tables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
