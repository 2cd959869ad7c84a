"""Per-event columns: the hour by hand, the record encoding, and the reader's batches carrying a
column position for position with ``item_ids`` only when a model's side inputs ask for it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.data import readers
from tests.data.test_reader import all_batches, random_sequences, write_transform_dir
from tfseq.data import reader, schema
from tfseq.data.formats import DataError

HOUR = schema.EVENT_COLUMNS[schema.HOUR_IDS]


def test_the_hour_of_a_timestamp_by_hand():
    # 1_600_000_000 s = 18518 days (1_599_955_200 s) + 44_800 s: 12:26:40 UTC
    assert schema.event_hour(1_600_000_000) == 12
    assert schema.event_hour(18518 * 86400 + 23 * 3600 + 3599.5) == 23
    assert schema.event_hour(-1) == 23  # one second before the epoch: 23:59:59 the day before
    assert schema.event_hour(math.nan) == -1
    # stored as hour + 1; 0 for unknown or out of range
    assert [HOUR.id_of(v) for v in (0, 13, 23, 24, -1)] == [1, 14, 24, 0, 0]
    assert HOUR.ids_of([0.0, 3600.0 * 13, math.inf]) == [1, 14, 0]


def test_records_with_and_without_event_columns():
    plain = schema.encode("u", [3, 4, 5], target=6)
    assert schema.encode("u", [3, 4, 5], target=6, events={}) == plain
    with_hours = schema.encode("u", [3, 4, 5], target=6, events={schema.HOUR_IDS: [1, 24, 0]})
    assert with_hours != plain
    assert schema.decode(with_hours) == schema.decode(plain) == ("u", [3, 4, 5], 6)
    assert schema.decode_events(with_hours) == {schema.HOUR_IDS: [1, 24, 0]}
    assert schema.decode_events(plain) == {}
    with pytest.raises(ValueError, match="2 values for 3 items"):
        schema.encode("u", [3, 4, 5], events={schema.HOUR_IDS: [1, 2]})
    with pytest.raises(ValueError, match="unknown event column 'minute_ids'"):
        schema.encode("u", [3], events={"minute_ids": [1]})
    with pytest.raises(ValueError, match="unknown side input 'hour'; known: user_ids, hour_ids"):
        schema.check_side_inputs(["hour"])


def hour_of(item_ids: np.ndarray) -> np.ndarray:
    """The column the fixture writes: each event's stored hour is a function of its item (0 at padding)."""
    return np.where(item_ids > 0, item_ids % 24 + 1, 0)


@pytest.fixture
def transform(tmp_path):
    """A Transform-like output whose records carry ``hour_ids`` (``hour_of`` each item)."""
    sequences = random_sequences(users=14, items=30, max_len=11, seed=4)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, num_items=30, shards=1)
    for split in schema.SPLITS:  # rewrite every record with its hour column
        path = next((Path(root) / split).glob("part-*"))
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                user, items, target = schema.decode(record)
                hours = hour_of(np.array(items)).tolist()
                writer.write(schema.encode(user, items, target, events={schema.HOUR_IDS: hours}))
    return root, metadata, sequences


@pytest.mark.parametrize("causal", [False, True])
def test_training_batches_carry_the_column_aligned_with_the_items(transform, causal):
    root, metadata, _ = transform
    settings = dict(causal=causal, max_seq_len=4, batch_size=5, seed=2)
    plain = all_batches(readers.training_dataset(root, metadata, **settings))
    hours = all_batches(readers.training_dataset(root, metadata, side_inputs=(schema.HOUR_IDS,), **settings))
    assert all(schema.HOUR_IDS not in b for b in plain)
    assert len(plain) == len(hours)
    for a, b in zip(plain, hours):  # the same shuffled windows, plus each item's hour in its place
        np.testing.assert_array_equal(a[schema.ITEM_IDS], b[schema.ITEM_IDS])
        np.testing.assert_array_equal(b[schema.HOUR_IDS], hour_of(b[schema.ITEM_IDS]))


def test_evaluation_batches_carry_the_column_of_the_last_items(transform):
    root, metadata, sequences = transform
    batches = all_batches(reader.evaluation_dataset(root, metadata, "test", max_seq_len=3, batch_size=4,
                                                    side_inputs=(schema.HOUR_IDS,)))
    got = np.concatenate([b[schema.HOUR_IDS][:, :1] for b in batches])[:, 0]
    users = readers.evaluation_users(root, metadata, "test")
    # the first kept item of each test history (its last 3 of items[:-1])
    want = hour_of(np.array([sequences[u][:-1][-3:][0] for u in users]))
    np.testing.assert_array_equal(got, want)
    for b in batches:
        np.testing.assert_array_equal(b[schema.HOUR_IDS], hour_of(b[schema.ITEM_IDS]))


def test_a_split_without_the_column_is_a_data_error(tmp_path):
    root, metadata = write_transform_dir(tmp_path / "t", random_sequences(users=5, items=9, max_len=6, seed=1),
                                         num_items=9)
    with pytest.raises(DataError, match="has 0 hour_ids for .* items; the Transform writes hour_ids when"):
        reader.evaluation_dataset(root, metadata, "valid", max_seq_len=3, batch_size=2,
                                  side_inputs=(schema.HOUR_IDS,))
    with pytest.raises(ValueError, match="unknown side input 'hours'"):
        reader.training_data(root, metadata, causal=True, max_seq_len=3, batch_size=2, seed=0,
                             side_inputs=("hours",))
