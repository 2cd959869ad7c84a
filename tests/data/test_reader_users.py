"""tfseq.data.reader's user side input: ``user_ids`` only when a model's side_inputs ask for it,
vocabulary indices, 0 for users the training split never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.data import readers
from tests.data.test_reader import all_batches, random_sequences, write_transform_dir
from tfseq.data import reader, schema, vocab
from tfseq.data.formats import DataError
from tfseq.data.vocab import METADATA, DatasetMetadata, SplitInfo

USERS = (schema.USER_IDS,)  # the side inputs of a model that reads users (hrm's side_inputs)


def with_user_vocab(root: Path, users: list[str]) -> None:
    """Transform's ``user_vocab.txt``: padding line, then the users sorted by raw ID."""
    (root / vocab.USER_VOCAB).write_text(vocab.vocabulary_text(sorted(users)), encoding="utf-8")


@pytest.fixture
def transform(tmp_path):
    sequences = random_sequences(users=12, items=15, max_len=9, seed=1)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, num_items=15)
    with_user_vocab(Path(root), list(sequences))
    index = {raw: n for n, raw in enumerate(sorted(sequences), start=1)}
    return root, metadata, sequences, index


def test_batches_carry_user_ids_only_when_asked(transform):
    root, metadata, _, _ = transform
    for causal in (False, True):
        plain = all_batches(readers.training_dataset(
            root, metadata, causal=causal, max_seq_len=4, batch_size=5, seed=0))
        assert all(schema.USER_IDS not in b for b in plain)
        with_users = all_batches(readers.training_dataset(
            root, metadata, causal=causal, max_seq_len=4, batch_size=5, seed=0, side_inputs=USERS))
        assert all(b[schema.USER_IDS].shape == b[schema.ITEM_IDS].shape[:1] for b in with_users)
        for a, b in zip(plain, with_users):  # the same examples in the same order, plus the users
            np.testing.assert_array_equal(a[schema.ITEM_IDS], b[schema.ITEM_IDS])
    valid = reader.evaluation_dataset(root, metadata, "valid", max_seq_len=4, batch_size=4)
    assert set(valid.element_spec) == {schema.ITEM_IDS, schema.TARGET}


def test_prefix_windows_carry_their_users_vocabulary_index(transform):
    root, metadata, sequences, index = transform
    batches = all_batches(readers.training_dataset(
        root, metadata, causal=False, max_seq_len=3, batch_size=7, seed=0, shuffle=False, side_inputs=USERS))
    got = [(tuple(int(i) for i in row if i), int(t), int(u))
           for b in batches for row, t, u in zip(b[schema.ITEM_IDS], b[schema.TARGET], b[schema.USER_IDS])]
    # plain-Python oracle: users by raw ID, each prefix's last <= 3 items, its next item, the user's line number
    want = []
    for user in sorted(sequences):
        items = sequences[user]
        train = items[:-2] if len(items) >= schema.MIN_EVAL_INTERACTIONS else items
        want += [(tuple(train[max(0, t - 3):t]), train[t], index[user]) for t in range(1, len(train))]
    assert got == want


def test_evaluation_rows_carry_their_users_index(transform):
    root, metadata, _, index = transform
    users = readers.evaluation_users(root, metadata, "test")
    batches = all_batches(reader.evaluation_dataset(root, metadata, "test", max_seq_len=4, batch_size=3,
                                                    side_inputs=USERS))
    got = np.concatenate([b[schema.USER_IDS] for b in batches])
    np.testing.assert_array_equal(got, [index[u] for u in users])


def test_users_without_training_records_are_unknown(tmp_path):
    """A user split: u3 has only a valid record, so the model never trained its vector: index 0."""
    root = tmp_path / "t"
    records = {
        "train": [schema.encode("u1", [1, 2, 3]), schema.encode("u2", [2, 3, 4])],
        "valid": [schema.encode("u3", [1, 2], 3), schema.encode("u1", [1, 2], 3)],
        "test": [schema.encode("u4", [4, 3], 2)],
    }
    infos = {}
    for split, rows in records.items():
        (root / split).mkdir(parents=True)
        with tf.io.TFRecordWriter(str(root / split / "part-00000-of-00001.tfrecord")) as writer:
            for row in rows:
                writer.write(row)
        infos[split] = SplitInfo(f"{split}/part-*.tfrecord", len(rows))
    metadata = DatasetMetadata(num_items=5, num_users=4, compression="", splits=infos,
                               item_counts=(0, 1, 2, 2, 1), max_length=3)
    (root / METADATA).write_text(metadata.to_json())
    with_user_vocab(root, ["u1", "u2", "u3", "u4"])
    assert reader.training_user_index(str(root), metadata) == {"u1": 1, "u2": 2}
    for split, users, want in (("valid", ["u1", "u3"], [1, 0]), ("test", ["u4"], [0])):
        batches = all_batches(reader.evaluation_dataset(str(root), metadata, split, max_seq_len=4, batch_size=8,
                                                        side_inputs=USERS))
        assert readers.evaluation_users(str(root), metadata, split) == users
        np.testing.assert_array_equal(batches[0][schema.USER_IDS], want)


def test_a_user_vocabulary_that_disagrees_is_a_data_error(transform):
    root, metadata, sequences, _ = transform
    with_user_vocab(Path(root), sorted(sequences)[:-1])
    with pytest.raises(DataError, match="user_vocab.txt: 11 users, metadata.json says 12"):
        reader.training_data(root, metadata, causal=True, max_seq_len=4, batch_size=4, seed=0, side_inputs=USERS)
    names = sorted(sequences)
    names[3] = "someone-else"
    with_user_vocab(Path(root), names)
    with pytest.raises(DataError, match="training user 'u003' is not in the user vocabulary"):
        reader.training_user_index(root, metadata)


def test_shuffled_epochs_keep_each_window_with_its_user(transform):
    root, metadata, sequences, index = transform
    owner = {}  # (window items, target) -> users that have it; shuffling must keep the pairing
    for user in sequences:
        items = sequences[user]
        train = items[:-2] if len(items) >= schema.MIN_EVAL_INTERACTIONS else items
        for t in range(1, len(train)):
            owner.setdefault((tuple(train[max(0, t - 3):t]), train[t]), set()).add(index[user])
    data = reader.training_data(root, metadata, causal=False, max_seq_len=3, batch_size=4, seed=3, side_inputs=USERS)
    for batch in all_batches(data.dataset()):
        for row, target, user in zip(batch[schema.ITEM_IDS], batch[schema.TARGET], batch[schema.USER_IDS]):
            assert int(user) in owner[(tuple(int(i) for i in row if i), int(target))]
