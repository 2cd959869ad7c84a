"""SASRec: config validation, truncation to max_seq_len, the query is the last position's output."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import assert_saved_model_scores_like_the_model, build, prefix_batch, right_pad
from tests.models.scores import raw_scores
from tfseq.config import ConfigError, from_dict
from tfseq.models import MODELS
from tfseq.models.sasrec import SASRecConfig


@pytest.mark.parametrize("values, message", [
    ({"embedding_size": 10, "num_heads": 4}, r"SASRecConfig.embedding_size \(10\) .* num_heads \(4\)"),
    ({"attn_dropout_prob": 1.0}, r"SASRecConfig.attn_dropout_prob must be in \[0, 1\)"),
    ({"hidden_dropout_prob": -0.5}, r"SASRecConfig.hidden_dropout_prob"),
    ({"num_layers": 0}, "SASRecConfig.num_layers must be >= 1, got 0"),
    ({"max_seq_len": 0}, "SASRecConfig.max_seq_len must be >= 1"),
    ({"initializer_range": 0}, "SASRecConfig.initializer_range must be > 0"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        SASRecConfig(**values)


def test_config_from_a_flat_dict_coerces_and_rejects_unknown_keys():
    assert from_dict(SASRecConfig, {"embedding_size": "32", "num_heads": 4}).embedding_size == 32
    with pytest.raises(ConfigError, match="n_heads"):
        from_dict(SASRecConfig, {"n_heads": 4})


def small() -> SASRecConfig:
    return SASRecConfig(embedding_size=16, num_layers=2, num_heads=2, inner_size=32, max_seq_len=4)


def test_encode_all_refuses_sequences_longer_than_max_seq_len():
    model = build("sasrec", small())
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_len=4"):
        model.encode_all(tf.constant([[1, 2, 3, 4, 5]], tf.int64))


def test_query_is_the_encoder_output_at_the_last_item_and_candidates_are_the_input_table():
    model = build("sasrec", small())
    item_ids = tf.constant(right_pad([[5, 6, 7], [8]]))
    hidden = model.encoder(model.item_embedding(item_ids), item_ids).numpy()  # [2, 3, H]
    np.testing.assert_allclose(model.encode(item_ids).numpy(), hidden[[0, 1], [2, 0]], atol=1e-5)
    table = model.candidate_embeddings().numpy()
    np.testing.assert_array_equal(table[[5, 8]], model.item_embedding(tf.constant([5, 8])).numpy())
    scores = raw_scores(model, item_ids).numpy()
    np.testing.assert_allclose(scores, hidden[[0, 1], [2, 0]] @ table.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "bsarec"])
def test_positions_from_the_last_item_train_on_prefixes_and_answer_alike_for_any_padding(name, tmp_path):
    config = MODELS.get(name).config_cls(embedding_size=16, num_heads=2, inner_size=32, max_seq_len=6,
                                         position_origin="last")
    model = build(name, config)
    assert not model.causal and build(name, MODELS.get(name).config_cls(max_seq_len=6)).causal
    short, padded = right_pad([[5, 6, 7]]), right_pad([[5, 6, 7, 0, 0, 0]])
    np.testing.assert_allclose(model.encode(tf.constant(short)).numpy(), model.encode(tf.constant(padded)).numpy(),
                               atol=1e-6)
    # the most recent item always takes the last position: [6, 7] and [5, 6, 7] share it, and differ
    last = model.encoder.positions.embeddings.numpy()[-1]
    hidden = model.encoder.positions(tf.zeros([2, 3, 16]), tf.constant(right_pad([[6, 7], [5, 6, 7]]))).numpy()
    np.testing.assert_array_equal(hidden[0, 1], last)
    np.testing.assert_array_equal(hidden[1, 2], last)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    losses = model.fit(tf.data.Dataset.from_tensors(prefix_batch([[1, 2, 3, 4, 5], [6, 7, 8]])),
                       epochs=20, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses  # it learns from (prefix, next item) rows
    assert_saved_model_scores_like_the_model(model, str(tmp_path))


def test_position_origin_is_checked():
    with pytest.raises(ConfigError, match=r"SASRecConfig.position_origin must be one of first, last, got 'end'"):
        SASRecConfig(position_origin="end")
