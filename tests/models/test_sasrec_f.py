"""SASRecF: attribute pooling against NumPy, the fused input embedding, the query, ID-only candidates."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import NUM_ITEMS, build, cycle_sequences, item_counts, right_pad, toy_item_features
from tfseq.config import ConfigError
from tfseq.losses import LOSSES
from tfseq.models import MODELS, layers
from tfseq.models.attributes import ItemAttributes
from tfseq.models.sasrec_f import SASRecFConfig


def small(**changes) -> SASRecFConfig:
    values = dict(embedding_size=16, num_layers=2, num_heads=2, inner_size=32, max_seq_len=6)
    values.update(changes)
    return SASRecFConfig(**values)


def test_config_checks_pooling_and_sasrec_fields():
    with pytest.raises(ConfigError, match="SASRecFConfig.pooling_mode must be one of sum, mean, max, got 'avg'"):
        SASRecFConfig(pooling_mode="avg")
    with pytest.raises(ConfigError, match=r"SASRecFConfig.embedding_size \(10\) must be divisible by num_heads"):
        SASRecFConfig(embedding_size=10, num_heads=4)
    assert SASRecFConfig().embedding_size == 64  # RecBole's SASRecF defaults = its SASRec's


def test_needs_item_features():
    with pytest.raises(ValueError, match="SASRecF uses item side features"):
        MODELS.build("sasrec_f", small(), num_items=NUM_ITEMS,
                     loss=LOSSES.build("softmax", item_counts=item_counts(cycle_sequences())))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_attribute_pooling_matches_numpy_over_real_values_only(mode):
    tf.keras.utils.set_random_seed(0)
    features = toy_item_features()
    layer = ItemAttributes(features, 3, mode, layers.uniform_init(1.0))
    item_ids = np.array([[1, 2, 20], [0, 6, 7]])  # 20 has no features, 0 is padding
    got = [p.numpy() for p in layer(tf.constant(item_ids))]
    for field, pooled in enumerate(got):
        table = layer.embeddings[field].embeddings.numpy()
        want = np.zeros(item_ids.shape + (3,))
        for index, item in np.ndenumerate(item_ids):
            rows = table[[v for v in features.values[field][item] if v]]  # the item's real values
            if len(rows):
                want[index] = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0)}[mode]
        np.testing.assert_allclose(pooled, want, atol=1e-6)
    assert layer.value_ids(1, tf.constant([19])).numpy().tolist() == features.values[1][[19]].tolist()


def test_input_is_the_linear_map_of_item_and_attribute_embeddings_and_the_query_its_last_output():
    model = build("sasrec_f", small())
    item_ids = tf.constant(right_pad([[5, 6, 7], [20]]))
    item = model.item_embedding(item_ids).numpy()
    attributes = [a.numpy() for a in model.attributes(item_ids)]
    concat = np.concatenate([item, *attributes], axis=-1)  # [B, L, 3H]
    embedded = concat @ model.concat.kernel.numpy() + model.concat.bias.numpy()
    assert model.concat.kernel.shape == (3 * 16, 16)  # item + two fields
    np.testing.assert_allclose(model.embed(item_ids).numpy(), embedded, atol=1e-6)
    hidden = model.encoder(tf.constant(embedded), item_ids).numpy()  # [2, 3, H]
    np.testing.assert_allclose(model.encode(item_ids).numpy(), hidden[[0, 1], [2, 0]], atol=1e-5)
    table = model.candidate_embeddings().numpy()  # the ID table: attributes shape queries only
    np.testing.assert_array_equal(table, model.item_embedding.embeddings.numpy())
    assert table.shape == (NUM_ITEMS, 16)


def test_encode_all_refuses_sequences_longer_than_max_seq_len():
    model = build("sasrec_f", small(max_seq_len=4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_len=4"):
        model.encode_all(tf.constant([[1, 2, 3, 4, 5]], tf.int64))
