"""Models are called on the batch's feature dict: per-event columns are windowed with the items,
a model reads only the keys its ``side_inputs`` list, and an unknown side input is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import NUM_ITEMS, build, random_histories
from tests.models.hour_of_day import HourOfDay, HourOfDayConfig
from tests.models.scores import raw_scores
from tfseq.data import schema
from tfseq.models.base import last_window, window_features


def test_window_features_keeps_each_rows_last_items_and_their_columns():
    item_ids = np.array([[5, 6, 7, 8, 0], [3, 0, 0, 0, 0], [1, 2, 3, 4, 9]])
    hour_ids = item_ids * 10  # each event's column value beside its item
    users = np.array([1, 2, 3])
    got = window_features({schema.ITEM_IDS: tf.constant(item_ids), schema.HOUR_IDS: tf.constant(hour_ids),
                           schema.USER_IDS: tf.constant(users)}, width=2)
    # by hand: the last 2 items of each row, left-aligned, right-padded with 0
    want = np.array([[7, 8], [3, 0], [4, 9]])
    np.testing.assert_array_equal(got[schema.ITEM_IDS], want)
    np.testing.assert_array_equal(got[schema.ITEM_IDS], last_window(tf.constant(item_ids), 2))
    np.testing.assert_array_equal(got[schema.HOUR_IDS], want * 10)
    np.testing.assert_array_equal(got[schema.USER_IDS], users)  # per history: unchanged


@pytest.mark.parametrize("name", ["gru4rec", "sasrec", "hrm"])
def test_a_model_reads_only_its_side_inputs(name):
    model = build(name)
    item_ids = tf.constant(random_histories(4, 7, seed=3))
    own = {key: tf.constant([1, 2, 3, 4], tf.int64) for key in model.side_inputs}  # hrm: user_ids
    foreign = {key: tf.ones([4] if key == schema.USER_IDS else [4, 7], tf.int64)
               for key in schema.SIDE_INPUTS if key not in model.side_inputs}
    alone = model.encode({schema.ITEM_IDS: item_ids, **own}).numpy()
    np.testing.assert_array_equal(model.encode({schema.ITEM_IDS: item_ids, **own, **foreign}).numpy(), alone)
    assert raw_scores(model, {schema.ITEM_IDS: item_ids, **own, **foreign}).shape == (4, NUM_ITEMS)


def test_the_hour_model_reads_the_hour_of_each_position():
    tf.keras.utils.set_random_seed(0)
    model = HourOfDay(HourOfDayConfig(embedding_size=4), NUM_ITEMS)
    model.encode(tf.ones([1, 1], tf.int64))  # builds the item table
    items, hours = model.item_embedding.embeddings.numpy(), model.hour_embedding.embeddings.numpy()
    item_ids = np.array([[3, 4, 0], [5, 0, 0]])
    hour_ids = np.array([[1, 0, 0], [24, 0, 0]])  # 00:xx, unknown; 23:xx
    every = model.encode_all({schema.ITEM_IDS: tf.constant(item_ids), schema.HOUR_IDS: tf.constant(hour_ids)})
    # by hand: item vector + hour vector at each position (no hour vector for an unknown hour)
    np.testing.assert_allclose(every[0, 0], items[3] + hours[1], rtol=1e-6)
    np.testing.assert_allclose(every[0, 1], items[4], rtol=1e-6)
    last = model.encode({schema.ITEM_IDS: tf.constant(item_ids), schema.HOUR_IDS: tf.constant(hour_ids)})
    np.testing.assert_allclose(last, [items[4], items[5] + hours[24]], rtol=1e-6)
    np.testing.assert_allclose(model.encode(tf.constant(item_ids)), [items[4], items[5]], rtol=1e-6)


def test_an_unknown_side_input_is_refused_by_name():
    class Minutes(HourOfDay):
        side_inputs = ("minute_ids",)

    with pytest.raises(ValueError, match="Minutes.side_inputs: unknown side input 'minute_ids'; known: user_ids"):
        Minutes(HourOfDayConfig(), NUM_ITEMS)
