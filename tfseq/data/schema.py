"""THE feature contract between Transform, the tf.data reader and the serving export.

Every split is a set of TFRecord files of ``tf.train.SequenceExample`` records:

* context ``user`` (bytes): the raw user ID from the log;
* context ``target`` (int64): the vocabulary index of the item to predict, or
  ``PAD_ID`` in training records (whose targets are the sequence's own items);
* sequence ``item_ids`` (int64, one per step): vocabulary indices in time order.

Leave-one-out (RecBole ``LS: valid_and_test``, ``order: TO``) for a user whose
time-ordered items are ``i_1 .. i_n`` with ``n >= 3``:

* ``train``: ``item_ids = i_1 .. i_{n-2}``, ``target = PAD_ID``
* ``valid``: ``item_ids = i_1 .. i_{n-2}``, ``target = i_{n-1}``
* ``test``:  ``item_ids = i_1 .. i_{n-1}``, ``target = i_n``

Users with fewer than 3 items get only a ``train`` record of all their items.

Spotlight's user split (Transform ``--split user``) writes the same records
differently: each user goes whole to one split, chosen by a seeded hash of its
raw ID. A ``train`` user's record holds all its items (``target = PAD_ID``); a
``valid`` or ``test`` user's holds ``i_1 .. i_{n-1}`` with ``target = i_n``,
and the user has no ``train`` record (a 1-item user trains instead).

Per-event columns (:data:`EVENT_COLUMNS`): a record may also hold, beside
``item_ids``, one sequence feature per column the Transform was asked to write
(``TransformConfig.event_columns``), one int64 per step, computed from each
event's timestamp: ``hour_ids``, the UTC hour of the event plus one (1..24; 0 is
padding, as ``PAD_ID``). Without event columns a record is byte-identical to one
written before they existed.

Side inputs: the keys of a batch beyond ``item_ids`` and the targets that a
model may read (its ``side_inputs``): ``user_ids [B]`` (the user vocabulary
index of each history's user, 0 = unknown) and every per-event column
``[B, L]``, aligned with ``item_ids``. The reader, the evaluator and the export
ask the model for its list and supply those keys; a new side input is a new
entry here, not a new flag.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import tensorflow as tf

PAD_ID = 0
PAD_TOKEN = ""  # line 0 of the item vocabulary; an empty string is padding in serving too
USER = "user"
TARGET = "target"
ITEM_IDS = "item_ids"
TARGETS = "targets"  # training batches only: the next item after every position
USER_IDS = "user_ids"  # side input: [B] user vocabulary index (user_vocab.txt), 0 = unknown
HOUR_IDS = "hour_ids"  # per-event column: [B, L] UTC hour of each event + 1 (1..24), 0 = padding
SPLITS = ("train", "valid", "test")
MIN_EVAL_INTERACTIONS = 3  # users with fewer interactions are used for training only

CONTEXT_SPEC = {
    USER: tf.io.FixedLenFeature([], tf.string),
    TARGET: tf.io.FixedLenFeature([], tf.int64, default_value=PAD_ID),
}
SEQUENCE_SPEC = {
    ITEM_IDS: tf.io.FixedLenSequenceFeature([], tf.int64),
}


def event_hour(timestamp: float) -> int:
    """The UTC hour (0..23) of a Unix timestamp in seconds; -1 (unknown) when it is not finite."""
    if not math.isfinite(timestamp):
        return -1
    return int(math.floor(timestamp / 3600.0)) % 24


@dataclasses.dataclass(frozen=True)
class EventColumn:
    """A categorical per-event column the Transform can write beside ``item_ids``.

    A record stores ``value + 1`` for a value in ``0 .. size - 1`` and 0 (padding,
    as ``PAD_ID``) for an unknown one, so the reader's right-padding means "no
    value" and a model's embedding table has ``size + 1`` rows.

    Attributes:
      name: the sequence feature in the records and the batch key ``[B, L]`` (``*_ids``).
      size: the number of distinct values.
      value_of: an event's value (``0 .. size - 1``, or -1 = unknown) from its timestamp.
      input_name: the SavedModel input carrying the raw values (int64 ``[B, L]``,
        aligned with ``history``; -1 or out of range = unknown).
    """

    name: str
    size: int
    value_of: Callable[[float], int]
    input_name: str

    def id_of(self, value: int) -> int:
        """The stored index of a raw value: ``value + 1``, or 0 when it is not in ``0 .. size - 1``."""
        return value + 1 if 0 <= value < self.size else PAD_ID

    def ids_of(self, timestamps: Sequence[float]) -> list[int]:
        """The stored indices of events with these timestamps."""
        return [self.id_of(self.value_of(t)) for t in timestamps]


# THE list of per-event columns: the Transform writes those its config names, the reader
# batches them, models read them as side inputs and the export takes them by input_name.
EVENT_COLUMNS: Mapping[str, EventColumn] = {
    column.name: column for column in (
        EventColumn(HOUR_IDS, 24, event_hour, "hour"),
    )
}
SIDE_INPUTS = (USER_IDS, *EVENT_COLUMNS)  # every batch key a model may list in its side_inputs


def check_side_inputs(names: Sequence[str], owner: str = "side_inputs") -> tuple[str, ...]:
    """``names`` as a tuple; ValueError naming the first one that is not a known side input."""
    for name in names:
        if name not in SIDE_INPUTS:
            raise ValueError(f"{owner}: unknown side input {name!r}; known: {', '.join(SIDE_INPUTS)}")
    return tuple(names)


def side_input_spec(name: str) -> tf.TensorSpec:
    """The batch tensor of side input ``name``: ``[B]`` int64 (``user_ids``) or ``[B, L]`` (event columns)."""
    check_side_inputs([name])
    return tf.TensorSpec([None] if name == USER_IDS else [None, None], tf.int64)


def encode(
    user: str, item_ids: Sequence[int], target: int = PAD_ID, events: Mapping[str, Sequence[int]] | None = None
) -> bytes:
    """Serializes one record; ``item_ids`` are vocabulary indices (never PAD_ID).

    ``events``: per-event columns (:data:`EVENT_COLUMNS` names) -> one stored index
    per item. Without them the bytes are those of a record without event columns.
    """
    example = tf.train.SequenceExample()
    context = example.context.feature
    context[USER].bytes_list.value.append(user.encode("utf-8"))
    context[TARGET].int64_list.value.append(int(target))
    steps = example.feature_lists.feature_list[ITEM_IDS].feature
    for item in item_ids:
        steps.add().int64_list.value.append(int(item))
    for name, values in sorted((events or {}).items()):
        if name not in EVENT_COLUMNS:
            raise ValueError(f"unknown event column {name!r}; known: {', '.join(EVENT_COLUMNS)}")
        if len(values) != len(item_ids):
            raise ValueError(f"event column {name!r} has {len(values)} values for {len(item_ids)} items")
        column = example.feature_lists.feature_list[name].feature
        for value in values:
            column.add().int64_list.value.append(int(value))
    return example.SerializeToString(deterministic=True)  # map order fixed: byte-identical on every runner


def decode(serialized: bytes) -> tuple[str, list[int], int]:
    """Parses one record in plain Python: ``(user, item_ids, target)`` (tests, tools)."""
    example = tf.train.SequenceExample.FromString(serialized)
    user = example.context.feature[USER].bytes_list.value[0].decode("utf-8")
    target = int(example.context.feature[TARGET].int64_list.value[0])
    steps = example.feature_lists.feature_list[ITEM_IDS].feature
    return user, [int(step.int64_list.value[0]) for step in steps], target


def decode_events(serialized: bytes) -> dict[str, list[int]]:
    """The per-event columns of one record in plain Python: ``{name: one index per item}``."""
    example = tf.train.SequenceExample.FromString(serialized)
    lists = example.feature_lists.feature_list
    return {name: [int(step.int64_list.value[0]) for step in lists[name].feature]
            for name in sorted(lists) if name != ITEM_IDS}


def sequence_spec(event_columns: Sequence[str] = ()) -> dict[str, tf.io.FixedLenSequenceFeature]:
    """:data:`SEQUENCE_SPEC` plus ``event_columns``; a record without a column parses it as empty."""
    spec = dict(SEQUENCE_SPEC)
    for name in event_columns:
        if name not in EVENT_COLUMNS:
            raise ValueError(f"unknown event column {name!r}; known: {', '.join(EVENT_COLUMNS)}")
        spec[name] = tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)
    return spec


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """tf.data parse function: ``{user: [], target: [], item_ids: [T]}`` for one record."""
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=CONTEXT_SPEC, sequence_features=SEQUENCE_SPEC
    )
    return {USER: context[USER], TARGET: context[TARGET], ITEM_IDS: sequence[ITEM_IDS]}
