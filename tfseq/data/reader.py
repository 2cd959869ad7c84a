"""tf.data over the Transform output: parse, build training targets, right-pad, batch, prefetch.

Splits are parsed once with the shared schema (they fit in memory: Amazon
Beauty is 0.2M interactions) into a right-padded ``[records, max_seq_len]``
matrix. Training batches then come from a seeded generator that reshuffles
every epoch and groups examples of similar length, so a batch is padded only
to its own longest history.

Two training layouts:

* prefix (RecBole's augmentation): every prefix ``i_1..i_t`` of a training
  sequence predicts ``i_{t+1}``: ``{"item_ids": [B, L], "target": [B]}``;
* causal: one pass per sequence, a target after every position:
  ``{"item_ids": [B, L], "targets": [B, L]}`` (0 = no target). A sequence with
  more than ``max_seq_len`` targets is cut into windows from its end so every
  prefix target is trained exactly once; targets in earlier windows then see
  at most their window's items as context (RecBole would see the last
  ``max_seq_len`` items), a deviation only for sequences longer than the window.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.data.vocab import DatasetMetadata

PARSE_BATCH = 4096
LENGTH_BUCKET = 4  # histories within this many items of each other share batches


@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split in memory, records sorted by user.

    Attributes:
      users: ``[R]`` raw user IDs.
      sequences: ``R`` int64 arrays of item indices (full length, not truncated).
      targets: ``[R]`` target item index (PAD_ID in the train split).
    """

    users: np.ndarray
    sequences: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def read_split(transform_dir: str, metadata: DatasetMetadata, split: str) -> SplitData:
    """Parses every record of ``split`` with ``schema`` specs (sorted by user: runner-independent)."""
    files = sorted(tf.io.gfile.glob(metadata.split_pattern(transform_dir, split)))
    if not files:
        raise FileNotFoundError(f"no {split} files match {metadata.split_pattern(transform_dir, split)}")
    dataset = tf.data.TFRecordDataset(files, compression_type=metadata.compression or None)

    def parse_batch(serialized):
        context, sequence, lengths = tf.io.parse_sequence_example(
            serialized, context_features=schema.CONTEXT_SPEC, sequence_features=schema.SEQUENCE_SPEC
        )
        return context[schema.USER], context[schema.TARGET], sequence[schema.ITEM_IDS], lengths[schema.ITEM_IDS]

    users, targets, sequences = [], [], []
    for user, target, items, lengths in dataset.batch(PARSE_BATCH).map(parse_batch).as_numpy_iterator():
        users.extend(u.decode("utf-8") for u in user)
        targets.append(target)
        sequences.extend(row[:n] for row, n in zip(items, lengths))
    order = np.argsort(np.asarray(users, dtype=object), kind="stable") if users else np.zeros(0, int)
    return SplitData(
        users=np.asarray(users, dtype=object)[order],
        sequences=[sequences[i] for i in order],
        targets=np.concatenate(targets)[order] if targets else np.zeros(0, np.int64),
    )


def right_pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    """``rows`` (each at most ``width`` long) -> ``[len(rows), width]`` int64, zeros on the right."""
    matrix = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return matrix


def prefix_examples(sequences: list[np.ndarray], max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix -> next item: inputs ``[P, max_seq_len]`` (last items kept) and targets ``[P]``."""
    inputs, targets = [], []
    for seq in sequences:
        for t in range(1, len(seq)):
            inputs.append(seq[max(0, t - max_seq_len): t])
            targets.append(seq[t])
    return right_pad(inputs, max_seq_len), np.asarray(targets, dtype=np.int64)


def causal_examples(sequences: list[np.ndarray], max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``inputs`` and next-item ``targets`` ``[W, max_seq_len]`` covering every target once."""
    inputs, targets = [], []
    for seq in sequences:
        end = len(seq) - 1  # seq[1..end] are targets
        while end > 0:
            start = max(0, end - max_seq_len)
            inputs.append(seq[start:end])
            targets.append(seq[start + 1: end + 1])
            end = start
    return right_pad(inputs, max_seq_len), right_pad(targets, max_seq_len)


@dataclasses.dataclass
class TrainingData:
    """Training examples and how to batch them.

    Attributes:
      inputs: ``[E, max_seq_len]`` right-padded histories.
      targets: ``[E]`` (prefix layout) or ``[E, max_seq_len]`` (causal layout).
      num_targets: training targets per epoch (RecBole's "training examples").
    """

    inputs: np.ndarray
    targets: np.ndarray
    causal: bool
    batch_size: int
    seed: int
    shuffle: bool = True

    @property
    def num_targets(self) -> int:
        return int(np.count_nonzero(self.targets))

    @property
    def num_batches(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def batches(self, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """One epoch: similar lengths together, batch order shuffled."""
        lengths = np.count_nonzero(self.inputs, axis=1)
        if self.shuffle:
            order = np.lexsort((rng.random(len(lengths)), lengths // LENGTH_BUCKET))
        else:
            order = np.argsort(lengths, kind="stable")
        chunks = [order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(chunks)
        key = "targets" if self.causal else schema.TARGET
        for chunk in chunks:
            width = max(int(lengths[chunk].max()), 1)
            targets = self.targets[chunk, :width] if self.causal else self.targets[chunk]
            yield {schema.ITEM_IDS: self.inputs[chunk, :width], key: targets}

    def dataset(self) -> tf.data.Dataset:
        """A re-iterable dataset: each pass over it is a new seeded shuffle."""
        rng = np.random.default_rng(self.seed)
        key = "targets" if self.causal else schema.TARGET
        signature = {
            schema.ITEM_IDS: tf.TensorSpec([None, None], tf.int64),
            key: tf.TensorSpec([None, None] if self.causal else [None], tf.int64),
        }
        dataset = tf.data.Dataset.from_generator(lambda: self.batches(rng), output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(self.num_batches)).prefetch(2)


def training_data(
    transform_dir: str,
    metadata: DatasetMetadata,
    *,
    causal: bool,
    max_seq_len: int,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
) -> TrainingData:
    split = read_split(transform_dir, metadata, "train")
    build = causal_examples if causal else prefix_examples
    inputs, targets = build(split.sequences, max_seq_len)
    return TrainingData(inputs, targets, causal, batch_size, seed, shuffle)


def evaluation_dataset(
    transform_dir: str,
    metadata: DatasetMetadata,
    split: str,
    *,
    max_seq_len: int,
    batch_size: int,
) -> tf.data.Dataset:
    """``{"item_ids": [B, L], "target": [B]}`` for valid/test, histories cut to the last ``max_seq_len``."""
    data = read_split(transform_dir, metadata, split)
    return evaluation_batches(data, max_seq_len=max_seq_len, batch_size=batch_size)


def evaluation_batches(data: SplitData, *, max_seq_len: int, batch_size: int) -> tf.data.Dataset:
    histories = right_pad([seq[-max_seq_len:] for seq in data.sequences], max_seq_len)
    width = max(int(np.count_nonzero(histories, axis=1).max(initial=1)), 1)
    return tf.data.Dataset.from_tensor_slices(
        {schema.ITEM_IDS: histories[:, :width], schema.TARGET: data.targets.astype(np.int64)}
    ).batch(batch_size).prefetch(2)
