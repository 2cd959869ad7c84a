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
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

PAD_ID = 0
PAD_TOKEN = ""  # line 0 of the item vocabulary; an empty string is padding in serving too
USER = "user"
TARGET = "target"
ITEM_IDS = "item_ids"
TARGETS = "targets"  # training batches only: the next item after every position
USER_IDS = "user_ids"  # batches of models that use users only: [B] user vocabulary index, 0 = unknown
SPLITS = ("train", "valid", "test")
MIN_EVAL_INTERACTIONS = 3  # users with fewer interactions are used for training only

CONTEXT_SPEC = {
    USER: tf.io.FixedLenFeature([], tf.string),
    TARGET: tf.io.FixedLenFeature([], tf.int64, default_value=PAD_ID),
}
SEQUENCE_SPEC = {
    ITEM_IDS: tf.io.FixedLenSequenceFeature([], tf.int64),
}


def encode(user: str, item_ids: Sequence[int], target: int = PAD_ID) -> bytes:
    """Serializes one record; ``item_ids`` are vocabulary indices (never PAD_ID)."""
    example = tf.train.SequenceExample()
    context = example.context.feature
    context[USER].bytes_list.value.append(user.encode("utf-8"))
    context[TARGET].int64_list.value.append(int(target))
    steps = example.feature_lists.feature_list[ITEM_IDS].feature
    for item in item_ids:
        steps.add().int64_list.value.append(int(item))
    return example.SerializeToString(deterministic=True)  # map order fixed: byte-identical on every runner


def decode(serialized: bytes) -> tuple[str, list[int], int]:
    """Parses one record in plain Python: ``(user, item_ids, target)`` (tests, tools)."""
    example = tf.train.SequenceExample.FromString(serialized)
    user = example.context.feature[USER].bytes_list.value[0].decode("utf-8")
    target = int(example.context.feature[TARGET].int64_list.value[0])
    steps = example.feature_lists.feature_list[ITEM_IDS].feature
    return user, [int(step.int64_list.value[0]) for step in steps], target


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """tf.data parse function: ``{user: [], target: [], item_ids: [T]}`` for one record."""
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=CONTEXT_SPEC, sequence_features=SEQUENCE_SPEC
    )
    return {USER: context[USER], TARGET: context[TARGET], ITEM_IDS: sequence[ITEM_IDS]}
