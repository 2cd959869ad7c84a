"""tfseq.data.reader against plain-Python oracles of RecBole's training examples."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.data import readers
from tfseq.data import reader, schema
from tfseq.data.formats import DataError
from tfseq.data.vocab import METADATA, DatasetMetadata, SplitInfo

SUFFIX = {"": ".tfrecord", "GZIP": ".tfrecord.gz"}


def write_transform_dir(
    root: Path,
    sequences: dict[str, list[int]],
    num_items: int,
    *,
    compression: str = "",
    shards: int = 2,
    seed: int = 0,
) -> tuple[str, DatasetMetadata]:
    """A Transform-like output of ``sequences`` (time-ordered item indices per user), leave-one-out.

    Records are spread over ``shards`` files in a scrambled order, as a Beam
    runner may write them; the layout follows tfseq/data/schema.py's docstring.
    """
    splits: dict[str, list[bytes]] = {split: [] for split in schema.SPLITS}
    counts = np.zeros(num_items, np.int64)
    for user, items in sequences.items():
        if len(items) < schema.MIN_EVAL_INTERACTIONS:
            splits["train"].append(schema.encode(user, items))
            np.add.at(counts, items, 1)
            continue
        splits["train"].append(schema.encode(user, items[:-2]))
        splits["valid"].append(schema.encode(user, items[:-2], items[-2]))
        splits["test"].append(schema.encode(user, items[:-1], items[-1]))
        np.add.at(counts, items[:-2], 1)
    rng = random.Random(seed)
    infos = {}
    for split, records in splits.items():
        rng.shuffle(records)
        (root / split).mkdir(parents=True)
        options = tf.io.TFRecordOptions(compression_type=compression or None)
        for shard in range(shards):
            path = root / split / f"part-{shard:05d}-of-{shards:05d}{SUFFIX[compression]}"
            with tf.io.TFRecordWriter(str(path), options) as writer:
                for record in records[shard::shards]:
                    writer.write(record)
        infos[split] = SplitInfo(f"{split}/part-*{SUFFIX[compression]}", len(records))
    metadata = DatasetMetadata(
        num_items=num_items,
        num_users=len(sequences),
        compression=compression,
        splits=infos,
        item_counts=tuple(int(c) for c in counts),
        max_length=max(len(s) for s in sequences.values()),
    )
    (root / METADATA).write_text(metadata.to_json())
    return str(root), DatasetMetadata.load(str(root))


def random_sequences(users: int, items: int, max_len: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    return {
        f"u{u:03d}": [rng.randrange(1, items) for _ in range(rng.randint(1, max_len))]
        for u in range(users)
    }


def all_batches(dataset: tf.data.Dataset) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def rows(batches: list[dict[str, np.ndarray]], key: str) -> list[tuple[tuple[int, ...], object]]:
    """(history without padding, target(s)) per row, asserting every row is right-padded."""
    out = []
    for batch in batches:
        for i, history in enumerate(batch[schema.ITEM_IDS]):
            n = int(np.count_nonzero(history))
            assert np.all(history[:n] != 0) and np.all(history[n:] == 0), history
            target = batch[key][i]
            out.append((tuple(history[:n]), tuple(target[:n]) if np.ndim(target) else int(target)))
    return out


def recbole_prefixes(sequence: list[int], max_seq_len: int) -> list[tuple[tuple[int, ...], int]]:
    """RecBole's augmentation, literally: each prefix (last max_seq_len items) -> next item."""
    return [
        (tuple(sequence[max(0, t - max_seq_len): t]), sequence[t]) for t in range(1, len(sequence))
    ]


def train_part(items: list[int]) -> list[int]:
    return items[:-2] if len(items) >= schema.MIN_EVAL_INTERACTIONS else items


# -- loading ----------------------------------------------------------------------------
def test_load_split_sorts_records_by_user_whatever_the_shard_order(tmp_path):
    sequences = random_sequences(30, 20, 9, seed=1)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 20, shards=3)
    loaded = reader.load_split(root, metadata, "train")
    assert list(loaded.users) == sorted(sequences)
    for i, user in enumerate(loaded.users):
        assert loaded.sequence(i).tolist() == train_part(sequences[user])
        assert loaded.targets[i] == schema.PAD_ID


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_evaluation_dataset_gives_truncated_history_and_target(tmp_path, compression):
    sequences = random_sequences(25, 15, 12, seed=2)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 15, compression=compression)
    for split, cut in (("valid", 2), ("test", 1)):  # schema.py: valid = i_1..i_{n-2} -> i_{n-1}
        users = readers.evaluation_users(root, metadata, split)
        dataset = reader.evaluation_dataset(root, metadata, split, max_seq_len=4, batch_size=7)
        batches = all_batches(dataset)
        expected = {
            u: (tuple(s[:-cut][-4:]), s[-cut])
            for u, s in sequences.items()
            if len(s) >= schema.MIN_EVAL_INTERACTIONS
        }
        # shortest history first, ties by user
        assert users == sorted(expected, key=lambda u: (len(sequences[u]) - cut, u))
        assert set(users) == set(expected)
        assert rows(batches, schema.TARGET) == [expected[u] for u in users]
        for batch in batches:  # padded to the batch's own longest history, at most max_seq_len
            widths = np.count_nonzero(batch[schema.ITEM_IDS], axis=1)
            assert batch[schema.ITEM_IDS].shape[1] == widths.max() <= 4


def test_gzip_records_under_an_uncompressed_metadata_are_a_data_error(tmp_path):
    sequences = random_sequences(5, 9, 5, seed=3)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 9, compression="GZIP")
    wrong = DatasetMetadata.from_dict({**json.loads(metadata.to_json()), "compression": ""})
    with pytest.raises(DataError, match="train"):
        reader.load_split(root, wrong, "train")


def test_bad_inputs_are_data_errors_naming_the_split(tmp_path):
    root, metadata = write_transform_dir(tmp_path / "t", {"a": [1, 2, 3, 4], "b": [5, 6, 7]}, 8)
    data = json.loads(metadata.to_json())

    def with_split(split: str, pattern: str, records: int) -> DatasetMetadata:
        splits = {**data["splits"], split: {"pattern": pattern, "records": records}}
        return DatasetMetadata.from_dict({**data, "splits": splits})

    message = r"valid/part-\*.tfrecord: 2 records, metadata.json says 3"
    with pytest.raises(DataError, match=message):
        reader.load_split(root, with_split("valid", "valid/part-*.tfrecord", 3), "valid")
    with pytest.raises(DataError, match="user 'b'.* item_ids 5 outside 1..4"):  # train: a 1 2, b 5
        reader.load_split(root, DatasetMetadata.from_dict({**data, "num_items": 5}), "train")
    with pytest.raises(DataError, match="no TFRecord files"):
        reader.load_split(root, with_split("train", "nothing/*.tfrecord", 2), "train")
    with pytest.raises(ValueError, match="no evaluation targets"):
        reader.evaluation_dataset(root, metadata, "train", max_seq_len=3, batch_size=2)


# -- prefix layout -----------------------------------------------------------------------
def test_prefix_windows_of_one_sequence_by_hand():
    sequences = reader.Sequences(
        users=np.array(["a", "b"], dtype=object),
        items=np.array([1, 2, 3, 4, 5, 9], np.int64),
        offsets=np.array([0, 5, 6], np.int64),  # a: 1 2 3 4 5, b: 9 (no target)
        targets=np.zeros(2, np.int64),
    )
    windows = reader.training_windows(sequences, causal=False, max_seq_len=3)
    batch = windows.batch(np.arange(len(windows)))
    # 1 -> 2, 1 2 -> 3, 1 2 3 -> 4, then truncated to the last three: 2 3 4 -> 5
    expected_histories = [[1, 0, 0], [1, 2, 0], [1, 2, 3], [2, 3, 4]]
    np.testing.assert_array_equal(batch[schema.ITEM_IDS], expected_histories)
    np.testing.assert_array_equal(batch[schema.TARGET], [2, 3, 4, 5])
    assert windows.num_targets == 4


@pytest.mark.parametrize("max_seq_len", [1, 3, 50])
def test_prefix_dataset_is_recbole_augmentation(tmp_path, max_seq_len):
    sequences = random_sequences(40, 30, 15, seed=4)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 30)
    data = reader.training_data(
        root, metadata, causal=False, max_seq_len=max_seq_len, batch_size=16, seed=0, shuffle=False
    )
    expected = [
        prefix
        for user in sorted(sequences)
        for prefix in recbole_prefixes(train_part(sequences[user]), max_seq_len)
    ]
    sum_n_minus_1 = sum(len(train_part(s)) - 1 for s in sequences.values())
    assert data.num_targets == len(expected) == sum_n_minus_1
    batches = all_batches(data.dataset())
    assert len(batches) == data.num_batches
    assert rows(batches, schema.TARGET) == expected  # natural order without shuffle


def test_shuffled_epochs_reorder_the_same_examples_and_the_seed_fixes_the_order(tmp_path):
    sequences = random_sequences(60, 30, 20, seed=5)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 30)
    settings = dict(causal=False, max_seq_len=6, batch_size=8)

    def epochs(seed: int, count: int = 2) -> list[list[tuple]]:
        dataset = readers.training_dataset(root, metadata, seed=seed, **settings)
        return [rows(all_batches(dataset), schema.TARGET) for _ in range(count)]

    first, second = epochs(seed=7)
    natural = reader.training_data(root, metadata, seed=7, shuffle=False, **settings)
    expected = sorted(rows(all_batches(natural.dataset()), schema.TARGET))
    assert sorted(first) == sorted(second) == expected
    assert first != second  # a new order every epoch
    assert epochs(seed=7)[0] == first
    assert epochs(seed=8, count=1)[0] != first
    sizes = [len(b[schema.TARGET]) for b in all_batches(natural.dataset())]
    assert sizes[:-1] == [8] * (len(sizes) - 1)


def test_datasets_prefetch_without_tf_data_autotuning(tmp_path):
    # Autotuning's optimisation thread held each finished epoch's iterator for tens of seconds
    # when Keras deleted it (17% of a Beauty run's Trainer time): the reader turns it off.
    root, metadata = write_transform_dir(tmp_path / "t", random_sequences(20, 30, 10, seed=1), 30)
    train = readers.training_dataset(root, metadata, causal=False, max_seq_len=6, batch_size=8, seed=1)
    valid = reader.evaluation_dataset(root, metadata, "valid", max_seq_len=6, batch_size=8)
    for dataset in (train, valid):
        assert dataset.options().autotune.enabled is False
        assert len(all_batches(dataset)) == int(dataset.cardinality())


def test_shuffled_batches_are_full_but_one():
    lengths = np.random.default_rng(0).integers(1, 51, size=1000)
    batches = reader.batch_indices(lengths, 64, np.random.default_rng(1), pool_batches=4)
    assert sorted(len(b) for b in batches) == [1000 - 15 * 64] + [64] * 15


def test_length_bucketing_keeps_padding_small():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 51, size=4096)

    def padding(batches: list[np.ndarray]) -> float:
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - lengths.sum() / padded

    bucketed = reader.batch_indices(lengths, 64, np.random.default_rng(1), pool_batches=16)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(len(lengths)))
    order = rng.permutation(len(lengths))
    unbucketed = [order[i: i + 64] for i in range(0, len(lengths), 64)]
    assert padding(bucketed) < 0.1 < 0.4 < padding(unbucketed)


# -- causal layout -----------------------------------------------------------------------
def test_causal_windows_of_one_sequence_by_hand():
    sequences = reader.Sequences(
        users=np.array(["a"], dtype=object),
        items=np.array([1, 2, 3, 4, 5, 6, 7], np.int64),
        offsets=np.array([0, 7], np.int64),
        targets=np.zeros(1, np.int64),
    )
    windows = reader.training_windows(sequences, causal=True, max_seq_len=4)
    batch = windows.batch(np.arange(len(windows)))
    # 6 targets (2..7) in windows of 4 aligned at the end:
    # inputs 3 4 5 6 -> targets 4 5 6 7, then inputs 1 2 -> targets 2 3
    np.testing.assert_array_equal(batch[schema.ITEM_IDS], [[3, 4, 5, 6], [1, 2, 0, 0]])
    np.testing.assert_array_equal(batch["targets"], [[4, 5, 6, 7], [2, 3, 0, 0]])
    assert windows.num_targets == 6


@pytest.mark.parametrize("max_seq_len", [1, 4, 50])
def test_causal_windows_train_every_recbole_target_exactly_once(tmp_path, max_seq_len):
    # distinct items per user, so an item identifies its position in the sequence
    rng = random.Random(6)
    sequences, next_item = {}, 1
    for u in range(30):
        n = rng.randint(1, 14)
        sequences[f"u{u:02d}"] = list(range(next_item, next_item + n))
        next_item += n
    root, metadata = write_transform_dir(tmp_path / "t", sequences, next_item)
    data = reader.training_data(
        root, metadata, causal=True, max_seq_len=max_seq_len, batch_size=4, seed=3
    )
    trained = []  # (context seen by the query, target) for every target position
    for history, targets in rows(all_batches(data.dataset()), "targets"):
        assert len(history) <= max_seq_len and len(targets) == len(history)
        trained.extend((history[: k + 1], target) for k, target in enumerate(targets))
    expected = [p for s in sequences.values() for p in recbole_prefixes(train_part(s), max_seq_len)]
    assert data.num_targets == len(trained) == len(expected)
    assert sorted(t for _, t in trained) == sorted(t for _, t in expected)
    recbole_context = {target: context for context, target in expected}
    for context, target in trained:  # the end of RecBole's context, shorter in earlier windows
        assert recbole_context[target][-len(context):] == context
    for s in sequences.values():  # a sequence's last target sees RecBole's full context
        part = train_part(s)
        if len(part) > 1:
            assert (recbole_context[part[-1]], part[-1]) in trained


# -- the real Transform output -------------------------------------------------------------
def test_transform_output_reads_consistently_with_its_metadata(tmp_path):
    from pipeline import run as pipeline_run

    root = tmp_path / "run"
    pipeline_run.run([
        "--runner=DirectRunner", "--synthetic_users", "60", "--synthetic_items", "40",
        "--synthetic_interactions", "900", "--output_dir", str(root), "--stop_after", "Transform",
    ])
    transform_dir = str(root / "Transform")
    metadata = DatasetMetadata.load(transform_dir)
    train = reader.load_split(transform_dir, metadata, "train")
    # every training item but each sequence's first is a target, in both layouts
    targets = sum(metadata.item_counts) - len(train)
    for causal in (False, True):
        data = reader.training_data(
            transform_dir, metadata, causal=causal, max_seq_len=5, batch_size=32, seed=0
        )
        assert data.num_targets == targets
    valid = reader.load_evaluation_split(transform_dir, metadata, "valid")
    test = reader.load_evaluation_split(transform_dir, metadata, "test")
    assert list(valid.users) == list(test.users)
    assert sorted(readers.evaluation_users(transform_dir, metadata, "test")) == list(test.users)
    for i in range(len(valid)):  # leave-one-out: test history = valid history + valid target
        assert test.sequence(i).tolist() == [*valid.sequence(i).tolist(), valid.targets[i]]


def test_an_evaluation_sample_is_seeded_and_a_subset_of_the_split(tmp_path):
    sequences = random_sequences(40, 15, 12, seed=3)
    root, metadata = write_transform_dir(tmp_path / "t", sequences, 15)

    def test_rows(**kwargs):
        dataset = reader.evaluation_dataset(root, metadata, "test", max_seq_len=4, batch_size=7, **kwargs)
        return sorted(rows(all_batches(dataset), schema.TARGET))

    everyone = test_rows()
    sample = test_rows(sample_users=9, seed=7)
    assert len(sample) == 9 and len(everyone) > 9
    assert set(sample) <= set(everyone)
    assert test_rows(sample_users=9, seed=7) == sample  # the seed fixes the sample
    assert any(test_rows(sample_users=9, seed=seed) != sample for seed in range(3))
    assert test_rows(sample_users=len(everyone) + 5, seed=7) == everyone
