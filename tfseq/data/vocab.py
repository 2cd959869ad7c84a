"""The item/user vocabulary files and the dataset metadata that Transform writes.

A vocabulary file is plain UTF-8 text, one raw ID per line: line ``n`` holds the
raw ID of index ``n`` and line 0 is padding (``schema.PAD_TOKEN``, an empty
line). The SavedModel carries the item vocabulary as an asset, so the mapping is
defined once, here, and read by the reader, the evaluator and the server alike.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any, Sequence

from tfseq.config import from_dict

ITEM_VOCAB = "item_vocab.txt"
USER_VOCAB = "user_vocab.txt"
METADATA = "metadata.json"
ITEM_FEATURES_DIR = "item_features"  # the item side-feature table, when Transform had --item_features


def read_vocabulary(path: str) -> list[str]:
    """Reads a vocabulary file; index ``n`` of the result is line ``n``."""
    import tensorflow as tf

    from tfseq.data import schema  # TensorFlow's: imported where a vocabulary is read, not with the file names

    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != schema.PAD_TOKEN:
        raise ValueError(f"{path}:1: a vocabulary file starts with the padding line (empty)")
    return lines


def vocabulary_text(raw_ids: Sequence[str]) -> str:
    """File contents for ``raw_ids`` (without padding): the padding line, then one ID a line."""
    from tfseq.data import schema

    for raw in raw_ids:
        if not raw or "\n" in raw or "\r" in raw:
            raise ValueError(f"vocabulary IDs must be non-empty single-line strings, got {raw!r}")
    return "\n".join([schema.PAD_TOKEN, *raw_ids]) + "\n"


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """Where a split lives, relative to the Transform directory, and how many records it has."""

    pattern: str
    records: int


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What downstream stages need to know about a Transform output.

    Attributes:
      num_items: vocabulary size including padding (valid indices are 1..num_items-1).
      num_users: users with at least one record.
      compression: "" or "GZIP", the TFRecord compression of every split.
      splits: ``{"train": SplitInfo, "valid": ..., "test": ...}``.
      item_counts: occurrences of each item index in the training split
        (index 0 is always 0); drives the popularity sampler and ``pop``.
      max_length: the longest user sequence.
    """

    num_items: int
    num_users: int
    compression: str
    splits: dict[str, SplitInfo]
    item_counts: tuple[int, ...]
    max_length: int

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["item_counts"] = list(self.item_counts)
        return json.dumps(data, indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetMetadata":
        data = dict(data)
        data["splits"] = {k: from_dict(SplitInfo, v) for k, v in data.get("splits", {}).items()}
        data["item_counts"] = tuple(int(c) for c in data.get("item_counts", ()))
        return from_dict(cls, data)

    @classmethod
    def load(cls, transform_dir: str) -> "DatasetMetadata":
        import tensorflow as tf

        path = posixpath.join(transform_dir, METADATA)
        with tf.io.gfile.GFile(path, "r") as f:
            return cls.from_dict(json.load(f))

    def split_pattern(self, transform_dir: str, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; known: {', '.join(self.splits)}")
        return posixpath.join(transform_dir, self.splits[split].pattern)
