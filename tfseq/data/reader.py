"""tf.data over the Transform output: parse once, expand to training windows, pad, bucket, batch.

A split is small enough to hold in memory (Amazon Beauty's training split is
~200k item indices), so its TFRecords are parsed once, in batches, into one
flat array (:class:`Sequences`). Every example is then a *window* into that
array, ``items[start : start + length]``, and a batch is built with one
vectorised NumPy gather, right-padded with ``PAD_ID`` to the batch's own
longest window (never wider than ``max_seq_len``).

Training examples (:func:`training_windows`) follow RecBole's definition: every
prefix ``i_1 .. i_t`` of a training sequence predicts ``i_{t+1}``.

* **prefix mode** (non-causal models, and causal ones when
  ``TrainConfig.all_positions`` is off): one example per target, the history
  truncated to its last ``max_seq_len`` items ->
  ``{"item_ids": [B, L], "target": [B]}``.
* **causal mode** (a query after every position, e.g. SASRec): one example per
  sequence, ``inputs = seq[:-1]``, ``targets = seq[1:]`` ->
  ``{"item_ids": [B, L], "targets": [B, L]}`` (``targets`` 0 = no target).
  A sequence with more than ``max_seq_len`` targets is cut into windows of
  ``max_seq_len`` targets aligned at its end, so every RecBole training target
  is trained on exactly once. Deviation from RecBole's prefix augmentation: a
  target in a window that is not the sequence's first sees only the items since
  the window's start (1 .. ``max_seq_len`` of them) instead of the last
  ``max_seq_len``; the most recent window, the one that matters most for
  next-item prediction, has the full context at its last position.

Side inputs: the entry points take ``side_inputs``, the model's list of the
batch keys it reads beyond ``item_ids`` (``tfseq.data.schema.SIDE_INPUTS``),
and add exactly those:

* ``user_ids [B]``: the user vocabulary index (``user_vocab.txt``) of each
  example's user, or 0 for a user without training records (:func:`user_index`:
  a user the model never trained on is unknown to it);
* a per-event column such as ``hour_ids [B, L]``: parsed from the records
  (the Transform writes it when its ``event_columns`` name it), windowed and
  padded position for position with ``item_ids`` (padding 0).

Without side inputs the batches are the plain ID batches.

Batches of similar lengths are grouped to keep padding small: each epoch the
examples are shuffled (seeded), cut into pools of ``pool_batches`` batches,
sorted by length inside each pool, cut into batches, and the batches are
shuffled again. Only the epoch's last batch can be smaller than ``batch_size``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import posixpath
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfseq.data import schema
from tfseq.data.formats import DataError
from tfseq.data.vocab import USER_VOCAB, DatasetMetadata, read_vocabulary

TARGETS = schema.TARGETS  # [B, L] next item after every position (causal batches)
USER_IDS = schema.USER_IDS  # [B] user vocabulary index, 0 = unknown (side input)
DEFAULT_POOL_BATCHES = 32
# Batches made ahead of the consumer. A fixed number: tf.data's autotuning is off (windows_dataset).
PREFETCH_BATCHES = 4
_PARSE_BATCH = 2048


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
    """One split in memory, sorted by user: record ``u`` has ``items[offsets[u]:offsets[u + 1]]``.

    Attributes:
      users: ``[U]`` raw user IDs (str).
      items: ``[T]`` int64 vocabulary indices of all sequences, concatenated.
      offsets: ``[U + 1]`` int64 start of each sequence in ``items``.
      targets: ``[U]`` int64 context target of each record (``PAD_ID`` in ``train``).
      events: per-event column name -> ``[T]`` int64, aligned with ``items`` (only the columns read).
    """

    users: np.ndarray
    items: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray
    events: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        """``[U]`` number of items in each sequence."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.users)

    def sequence(self, index: int) -> np.ndarray:
        return self.items[self.offsets[index] : self.offsets[index + 1]]

    def take(self, order: np.ndarray) -> "Sequences":
        """The records ``order [U']`` (indices into this split), in that order."""
        lengths = self.lengths[order]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        shift = np.repeat(self.offsets[:-1][order] - offsets[:-1], lengths)  # old start - new start
        steps = np.arange(offsets[-1], dtype=np.int64) + shift
        return Sequences(
            users=self.users[order],
            items=self.items[steps],
            offsets=offsets,
            targets=self.targets[order],
            events={name: values[steps] for name, values in self.events.items()},
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
    """Examples as windows ``items[starts[e] : starts[e] + lengths[e]]`` of a flat item array.

    Attributes:
      items: ``[T + 1]`` int64 item indices with one trailing ``PAD_ID`` (so
        ``start + length`` is always a valid index).
      starts: ``[E]`` int64 first item of each window.
      lengths: ``[E]`` int64 window length, ``1 .. max_seq_len``.
      targets: ``[E]`` int64 the item each window predicts (prefix and
        evaluation examples), or ``None`` for causal windows, whose targets are
        the items one step later, ``items[start + 1 : start + length + 1]``.
      user_ids: ``[E]`` int64 user vocabulary index of each window's user (0 =
        unknown), or ``None`` when the batches carry no user.
      events: per-event column name -> ``[T + 1]`` int64 aligned with ``items``
        (trailing 0); batches carry each as ``[B, L]`` beside ``item_ids``.
    """

    items: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray | None
    user_ids: np.ndarray | None = None
    events: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def causal(self) -> bool:
        return self.targets is None

    @property
    def num_targets(self) -> int:
        """Training targets (RecBole's number of training examples)."""
        return int(self.lengths.sum()) if self.causal else len(self.starts)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The padded batch of windows ``indices [B]``.

        Returns ``item_ids [B, L]`` plus ``target [B]`` or (causal) ``targets [B, L]``,
        ``user_ids [B]`` when the windows carry users, and each per-event column ``[B, L]``.

        ``L`` is the longest of these windows; shorter ones are right-padded with ``PAD_ID``.
        """
        starts, lengths = self.starts[indices], self.lengths[indices]
        width = int(lengths.max()) if len(indices) else 0
        steps = np.arange(width)
        valid = steps[None, :] < lengths[:, None]  # [B, L]
        positions = np.where(valid, starts[:, None] + steps[None, :], len(self.items) - 1)
        batch = {schema.ITEM_IDS: self.items[positions]}  # the trailing PAD fills the padding
        if self.targets is None:
            next_positions = np.minimum(positions + 1, len(self.items) - 1)
            batch[TARGETS] = np.where(valid, self.items[next_positions], schema.PAD_ID)
        else:
            batch[schema.TARGET] = self.targets[indices]
        if self.user_ids is not None:
            batch[USER_IDS] = self.user_ids[indices]
        for name, values in self.events.items():
            batch[name] = values[positions]  # the trailing 0 fills the padding
        return batch


# -- reading a split ------------------------------------------------------------------
def split_files(transform_dir: str, metadata: DatasetMetadata, split: str) -> list[str]:
    """The sorted TFRecord files of ``split``; a pattern matching nothing is a DataError."""
    pattern = metadata.split_pattern(transform_dir, split)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord files for split {split!r}")
    return files


def _parse_batch(serialized: tf.Tensor, event_columns: tuple[str, ...] = ()) -> dict[str, tf.Tensor]:
    context, sequence, lengths = tf.io.parse_sequence_example(
        serialized, context_features=schema.CONTEXT_SPEC, sequence_features=schema.sequence_spec(event_columns)
    )
    parsed = {
        schema.USER: context[schema.USER],
        schema.TARGET: context[schema.TARGET],
        schema.ITEM_IDS: sequence[schema.ITEM_IDS],  # [b, T], padded with 0
        "length": lengths[schema.ITEM_IDS],  # [b]
    }
    for name in event_columns:
        parsed[name] = sequence[name]  # [b, T'], T' = 0 when no record has the column
        parsed[f"length:{name}"] = lengths[name]  # [b]
    return parsed


def event_columns_of(side_inputs: Iterable[str]) -> tuple[str, ...]:
    """The per-event columns among ``side_inputs`` (those the records must hold)."""
    return tuple(name for name in schema.check_side_inputs(tuple(side_inputs)) if name in schema.EVENT_COLUMNS)


def load_split(
    transform_dir: str, metadata: DatasetMetadata, split: str, event_columns: Iterable[str] = ()
) -> Sequences:
    """Parses every record of ``split`` into :class:`Sequences`, sorted by raw user ID.

    Sorting makes the order independent of how the runner sharded the files, so
    a seed fixes the training order across re-runs of the pipeline.
    ``event_columns`` (``tfseq.data.schema.EVENT_COLUMNS`` names) are read too.

    Raises:
      DataError: no files, unreadable records, a record count that disagrees
        with ``metadata``, an item index outside ``1 .. num_items - 1``, or a
        record without one of ``event_columns`` (or with a value outside it).
    """
    columns = tuple(event_columns)
    files = split_files(transform_dir, metadata, split)
    pattern = metadata.split_pattern(transform_dir, split)
    dataset = (
        tf.data.TFRecordDataset(files, compression_type=metadata.compression or None)
        .batch(_PARSE_BATCH)
        .map(lambda serialized: _parse_batch(serialized, columns))
    )
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    events: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    try:
        for batch in dataset.as_numpy_iterator():
            steps = np.arange(batch[schema.ITEM_IDS].shape[1])
            valid = steps[None, :] < batch["length"][:, None]  # [b, T]
            items.append(batch[schema.ITEM_IDS][valid])
            users.append(batch[schema.USER])
            lengths.append(batch["length"])
            targets.append(batch[schema.TARGET])
            for name in columns:
                short = np.flatnonzero(batch[f"length:{name}"] != batch["length"])
                if len(short):
                    user = batch[schema.USER][short[0]].decode("utf-8")
                    raise DataError(f"{pattern}: record of user {user!r} has {int(batch[f'length:{name}'][short[0]])} "
                                    f"{name} for {int(batch['length'][short[0]])} items; the Transform writes "
                                    f"{name} when its event_columns name it")
                events[name].append(batch[name][valid])
    except tf.errors.OpError as e:
        raise DataError(f"{pattern}: cannot read split {split!r} "
                        f"(compression {metadata.compression!r}): {e.message}") from None
    if not users:
        raise DataError(f"{pattern}: split {split!r} has no records")
    sequences = Sequences(
        users=np.array([u.decode("utf-8") for u in np.concatenate(users)], dtype=object),
        items=np.concatenate(items).astype(np.int64),
        offsets=np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64),
        targets=np.concatenate(targets).astype(np.int64),
        events={name: np.concatenate(parts).astype(np.int64) for name, parts in events.items()},
    )
    expected = metadata.splits[split].records
    if len(sequences) != expected:
        raise DataError(f"{pattern}: {len(sequences)} records, metadata.json says {expected}")
    _check_range(sequences, metadata.num_items, pattern)
    return sequences.take(np.argsort(sequences.users, kind="stable"))


def user_index(transform_dir: str, metadata: DatasetMetadata, trained_users: Iterable[str]) -> dict[str, int]:
    """Raw user -> user vocabulary index (``user_vocab.txt``) for ``trained_users``, the users
    with training records; every other user is unknown (index 0) to the reader and the export.

    Raises:
      DataError: the vocabulary disagrees with ``metadata.num_users``, or lacks a trained user.
    """
    path = posixpath.join(transform_dir, USER_VOCAB)
    vocabulary = read_vocabulary(path)
    if len(vocabulary) != metadata.num_users + 1:
        raise DataError(f"{path}: {len(vocabulary) - 1} users, metadata.json says {metadata.num_users}")
    index = {raw: n for n, raw in enumerate(vocabulary) if n}
    trained = set(trained_users)
    missing = sorted(trained - index.keys())
    if missing:
        raise DataError(f"{path}: training user {missing[0]!r} is not in the user vocabulary")
    return {raw: index[raw] for raw in trained}


def training_user_index(transform_dir: str, metadata: DatasetMetadata) -> dict[str, int]:
    """:func:`user_index` of the users of the ``train`` split."""
    return user_index(transform_dir, metadata, load_split(transform_dir, metadata, "train").users)


def user_ids_of(users: np.ndarray, index: Mapping[str, int]) -> np.ndarray:
    """``[U]`` int64 vocabulary index of each raw user of ``users [U]`` (0 = unknown)."""
    return np.fromiter((index.get(user, schema.PAD_ID) for user in users), np.int64, len(users))


def _check_range(sequences: Sequences, num_items: int, pattern: str) -> None:
    """Raises a DataError naming the first record whose item or target is not a vocabulary index."""
    item_owner = np.repeat(np.arange(len(sequences)), sequences.lengths)
    bad_items = (sequences.items < 1) | (sequences.items >= num_items)
    bad_targets = (sequences.targets < 0) | (sequences.targets >= num_items)
    for name, bad, values, owner in (
        ("item_ids", bad_items, sequences.items, item_owner),
        ("target", bad_targets, sequences.targets, np.arange(len(sequences))),
    ):
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            record = int(owner[first])
            raise DataError(
                f"{pattern}: record {record} (user {sequences.users[record]!r}) has {name} "
                f"{int(values[first])} outside 1..{num_items - 1}"
            )
    for name, values in sequences.events.items():
        size = schema.EVENT_COLUMNS[name].size
        bad = (values < 0) | (values > size)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            record = int(item_owner[first])
            raise DataError(f"{pattern}: record {record} (user {sequences.users[record]!r}) has {name} "
                            f"{int(values[first])} outside 0..{size}")


# -- examples ---------------------------------------------------------------------------
def _padded_items(sequences: Sequences) -> np.ndarray:
    return np.append(sequences.items, np.int64(schema.PAD_ID))


def _padded_events(sequences: Sequences) -> dict[str, np.ndarray]:
    return {name: np.append(values, np.int64(schema.PAD_ID)) for name, values in sequences.events.items()}


def training_windows(
    sequences: Sequences, *, causal: bool, max_seq_len: int, user_ids: np.ndarray | None = None
) -> Windows:
    """All training examples of ``sequences`` (see the module docstring for both modes).

    Prefix mode: for ``i_1 .. i_n``, ``n - 1`` windows, the one predicting
    ``i_{t+1}`` holding ``i_{max(1, t - max_seq_len + 1)} .. i_t``.
    Causal mode: ``ceil((n - 1) / max_seq_len)`` windows per sequence, which
    together predict each of ``i_2 .. i_n`` once.
    ``user_ids [U]`` (one per record), when given, is copied to each record's windows;
    the per-event columns of ``sequences`` travel with their items.
    """
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    items = _padded_items(sequences)
    lengths = sequences.lengths
    first = sequences.offsets[:-1]
    if not causal:
        # every position that is not the first of its sequence is a target
        owner_start = np.repeat(first, lengths)  # [T] start of the sequence holding each item
        positions = np.arange(len(sequences.items), dtype=np.int64)
        is_target = positions > owner_start
        ends = positions[is_target]  # window = items[start:end], target = items[end]
        starts = np.maximum(owner_start[is_target], ends - max_seq_len)
        owners = np.repeat(np.arange(len(sequences)), lengths)[is_target]
        return Windows(items, starts, ends - starts, items[ends], _per_window(user_ids, owners),
                       _padded_events(sequences))
    num_targets = np.maximum(lengths - 1, 0)  # targets i_2 .. i_n
    per_sequence = -(-num_targets // max_seq_len)  # ceil
    owner = np.repeat(np.arange(len(sequences)), per_sequence)
    first_window = np.repeat(np.cumsum(per_sequence) - per_sequence, per_sequence)
    from_end = np.arange(len(owner)) - first_window  # 0 = the window ending the sequence
    last = num_targets[owner] - from_end * max_seq_len  # last target (1-based step) of the window
    first_target = np.maximum(1, last - max_seq_len + 1)
    # window inputs are steps first_target-1 .. last-1 (0-based), targets one step later
    return Windows(items, first[owner] + first_target - 1, last - first_target + 1, None,
                   _per_window(user_ids, owner), _padded_events(sequences))


def _per_window(user_ids: np.ndarray | None, owners: np.ndarray) -> np.ndarray | None:
    """The user of each window, from ``user_ids [U]`` and the record ``owners [E]`` of the windows."""
    return None if user_ids is None else np.asarray(user_ids, np.int64)[owners]


def evaluation_order(sequences: Sequences) -> np.ndarray:
    """Records by history length (stable, so ties keep user order): batches then pad little."""
    return np.argsort(sequences.lengths, kind="stable")


def evaluation_windows(
    sequences: Sequences, *, max_seq_len: int, user_ids: np.ndarray | None = None
) -> Windows:
    """One window per record (in :func:`evaluation_order`): last ``max_seq_len`` items + target
    (+ the record's user from ``user_ids [U]``, when given)."""
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    order = evaluation_order(sequences)
    lengths = np.minimum(sequences.lengths[order], max_seq_len)
    starts = sequences.offsets[1:][order] - lengths
    return Windows(_padded_items(sequences), starts, lengths, sequences.targets[order],
                   _per_window(user_ids, order), _padded_events(sequences))


# -- batching ---------------------------------------------------------------------------
def batch_indices(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    pool_batches: int = DEFAULT_POOL_BATCHES,
    by_targets: bool = False,
) -> list[np.ndarray]:
    """One epoch's batches of example indices.

    With ``rng``: shuffle, sort by length within pools of ``pool_batches``
    batches, cut into batches, shuffle the batches. Without: natural order.

    ``by_targets`` (causal windows, whose length is their number of targets): each batch
    holds as many windows as fit in ``batch_size`` targets (at least one), so every step
    averages its loss over about ``batch_size`` targets, as a batch of prefixes does. With
    ``rng`` the windows are sorted by length over the whole epoch (ties in random order),
    which keeps the number of batches the same every epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = len(lengths)
    if by_targets:
        order = np.arange(count) if rng is None else rng.permutation(count)
        if rng is not None:
            order = order[np.argsort(lengths[order], kind="stable")]
        batches = _fill_batches(order, lengths, batch_size)
    else:
        if rng is None:
            order = np.arange(count)
        else:
            order = rng.permutation(count)
            pool = batch_size * max(1, pool_batches)
            for begin in range(0, count, pool):
                chunk = order[begin : begin + pool]
                order[begin : begin + pool] = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [order[begin : begin + batch_size] for begin in range(0, count, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _fill_batches(order: np.ndarray, lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """``order`` cut greedily into runs whose ``lengths`` sum to at most ``budget`` (>= 1 each)."""
    batches, begin, total = [], 0, 0
    for position, length in enumerate(lengths[order].tolist()):
        if total and total + length > budget:
            batches.append(order[begin:position])
            begin, total = position, 0
        total += length
    if begin < len(order):
        batches.append(order[begin:])
    return batches


def count_batches(lengths: np.ndarray, batch_size: int, *, shuffle: bool, by_targets: bool = False) -> int:
    """How many batches :func:`batch_indices` cuts an epoch into (the same every epoch)."""
    if not by_targets:
        return math.ceil(len(lengths) / batch_size)
    order = np.argsort(lengths, kind="stable") if shuffle else np.arange(len(lengths))
    return len(_fill_batches(order, lengths, batch_size))


def windows_dataset(
    windows: Windows,
    *,
    batch_size: int,
    seed: int | None = None,
    shuffle: bool = False,
    pool_batches: int = DEFAULT_POOL_BATCHES,
    first_epoch: int = 0,
    by_targets: bool = False,
) -> tf.data.Dataset:
    """A re-iterable ``tf.data.Dataset`` of padded batches of ``windows``.

    With ``shuffle``, iteration ``k`` (epoch ``k``, counted from ``first_epoch``) uses
    ``np.random.default_rng([seed, k])``, so a seed fixes every epoch's order and a
    resumed training sees the batches the uninterrupted one would have. The cardinality is known
    (``ceil(E / batch_size)``), which gives Keras' progress bar its total.
    """
    if shuffle and seed is None:
        raise ValueError("shuffle=True needs a seed")
    epochs = itertools.count(first_epoch)

    def generate() -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng([int(seed or 0), next(epochs)]) if shuffle else None
        for indices in batch_indices(windows.lengths, batch_size, rng, pool_batches, by_targets):
            yield windows.batch(indices)

    signature = {schema.ITEM_IDS: tf.TensorSpec([None, None], tf.int64)}
    if windows.causal:
        signature[TARGETS] = tf.TensorSpec([None, None], tf.int64)
    else:
        signature[schema.TARGET] = tf.TensorSpec([None], tf.int64)
    if windows.user_ids is not None:
        signature[USER_IDS] = schema.side_input_spec(USER_IDS)
    for name in windows.events:
        signature[name] = schema.side_input_spec(name)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    num_batches = count_batches(windows.lengths, batch_size, shuffle=shuffle, by_targets=by_targets)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    # Autotuning only sizes this one prefetch buffer, and its optimisation thread makes the
    # deletion of a finished iterator (Keras drops one at each epoch's end) wait out the
    # thread's sleep: up to tens of seconds per epoch on 2 cores. A fixed buffer costs nothing.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)


# -- the entry points -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class TrainingData:
    """The training windows of a split and how to batch them.

    Attributes:
      windows: every training example (:func:`training_windows`).
      batch_size: windows per batch (sequences in causal mode, prefixes otherwise).
      seed: fixes every epoch's order.
      shuffle: shuffle + length bucketing (off: natural order, for inspection).
      by_targets: ``batch_size`` counts targets, not windows (see :func:`batch_indices`);
        the same in prefix mode, where a window is one target.
    """

    windows: Windows
    batch_size: int
    seed: int
    shuffle: bool = True
    by_targets: bool = False

    @property
    def causal(self) -> bool:
        return self.windows.causal

    @property
    def num_targets(self) -> int:
        """Training targets per epoch (RecBole's number of training examples)."""
        return self.windows.num_targets

    @property
    def num_batches(self) -> int:
        return count_batches(self.windows.lengths, self.batch_size, shuffle=self.shuffle,
                             by_targets=self.by_targets and self.causal)

    def dataset(self, first_epoch: int = 0) -> tf.data.Dataset:
        """Batches as a re-iterable ``tf.data.Dataset``; each pass is the next epoch's order,
        the first pass epoch ``first_epoch``'s (0-based; a resumed training's first epoch)."""
        return windows_dataset(
            self.windows, batch_size=self.batch_size, seed=self.seed, shuffle=self.shuffle,
            first_epoch=first_epoch, by_targets=self.by_targets and self.causal,
        )


def training_data(
    transform_dir: str,
    metadata: DatasetMetadata,
    *,
    causal: bool,
    max_seq_len: int,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    side_inputs: Sequence[str] = (),
    by_targets: bool = False,
) -> TrainingData:
    """The ``train`` split's windows (prefix or causal layout) with their batching settings;
    batches carry the ``side_inputs`` (a model's ``side_inputs``, see the module docstring)."""
    sequences = load_split(transform_dir, metadata, "train", event_columns_of(side_inputs))
    user_ids = (user_ids_of(sequences.users, user_index(transform_dir, metadata, sequences.users))
                if USER_IDS in side_inputs else None)
    windows = training_windows(sequences, causal=causal, max_seq_len=max_seq_len, user_ids=user_ids)
    return TrainingData(windows, batch_size=batch_size, seed=seed, shuffle=shuffle, by_targets=by_targets)


def evaluation_dataset(
    transform_dir: str,
    metadata: DatasetMetadata,
    split: str,
    *,
    max_seq_len: int,
    batch_size: int,
    side_inputs: Sequence[str] = (),
    sample_users: int = 0,
    seed: int = 0,
) -> tf.data.Dataset:
    """``{"item_ids": [B, L], "target": [B]}`` for ``valid``/``test``, plus the ``side_inputs``.

    Rows come shortest history first (:func:`evaluation_order`), so a batch pads little. Histories
    (and their per-event columns) are truncated to their last ``max_seq_len``
    items and right-padded to the batch's longest one. A user without training
    records has ``user_ids`` 0 (:func:`user_index`). ``sample_users`` > 0 keeps that many
    records of the split, drawn without replacement from ``seed`` (:func:`sampled_records`).
    """
    sequences = load_evaluation_split(transform_dir, metadata, split, event_columns_of(side_inputs))
    if sample_users:
        sequences = sequences.take(sampled_records(len(sequences), sample_users, seed))
    user_ids = (user_ids_of(sequences.users, training_user_index(transform_dir, metadata))
                if USER_IDS in side_inputs else None)
    windows = evaluation_windows(sequences, max_seq_len=max_seq_len, user_ids=user_ids)
    return windows_dataset(windows, batch_size=batch_size)


def sampled_records(count: int, sample: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(sample, count)`` of ``count`` records, a function of ``seed``."""
    if sample >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, count]).choice(count, sample, replace=False))


def load_evaluation_split(
    transform_dir: str, metadata: DatasetMetadata, split: str, event_columns: Iterable[str] = ()
) -> Sequences:
    """:func:`load_split` for ``valid``/``test``, whose every record must have a target."""
    if split == "train":
        raise ValueError("the train split has no evaluation targets; use 'valid' or 'test'")
    sequences = load_split(transform_dir, metadata, split, event_columns)
    missing = np.flatnonzero(sequences.targets == schema.PAD_ID)
    if len(missing):
        raise DataError(
            f"{metadata.split_pattern(transform_dir, split)}: record {int(missing[0])} "
            f"(user {sequences.users[missing[0]]!r}) has no target"
        )
    return sequences
