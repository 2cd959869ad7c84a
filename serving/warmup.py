"""Warm-up requests: ``assets.extra/tf_serving_warmup_requests`` inside an exported version.

TF Serving replays these ``PredictionLog`` records (a TFRecord file) when it
loads a version and makes the version available only afterwards, so the first
real request does not pay for graph optimisation and kernel selection.
``serving/server.py`` replays them the same way. The histories cover the shapes
requests take: empty, one item, a few popular items, a full ``max_seq_len``
history, and one with an ID outside the vocabulary. For a model that reads
users, every request also sends ``user_id``: a known user, ``""`` and an
unknown user in turn; for a model with per-event side inputs (e.g. ``hour``),
each of them with one value per history entry.
"""

from __future__ import annotations

import posixpath
from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving.client import predict_request
from serving.signature import EMBED_SIGNATURE, SERVING_SIGNATURE, WARMUP_FILE

UNKNOWN_ITEM = "<tfseq-warmup-unknown-item>"
UNKNOWN_USER = "<tfseq-warmup-unknown-user>"


def warmup_histories(
    raw_ids: Sequence[str], item_counts: Sequence[int] | np.ndarray, *, max_seq_len: int
) -> list[list[str]]:
    """Histories of raw IDs for warm-up, built from the most popular items.

    Args:
      raw_ids: the vocabulary, ``raw_ids[n]`` = raw ID of index ``n`` (index 0 = padding).
      item_counts: ``[num_items]`` training counts, aligned with ``raw_ids``.
      max_seq_len: the longest history the model reads.
    """
    counts = np.asarray(item_counts, dtype=np.int64)
    if len(counts) != len(raw_ids):
        raise ValueError(f"{len(raw_ids)} vocabulary entries but {len(counts)} item counts")
    by_popularity = [raw_ids[i] for i in np.argsort(-counts[1:], kind="stable") + 1]
    if not by_popularity:
        raise ValueError("the vocabulary has no items")
    longest = [by_popularity[i % len(by_popularity)] for i in range(max_seq_len)]
    return [
        [],
        by_popularity[:1],
        by_popularity[:3],
        longest,
        [UNKNOWN_ITEM, *by_popularity[1:3]],
    ]


def warmup_users(known_user: str) -> list[str]:
    """The ``user_id`` values warm-up requests cycle through: ``known_user``, none, an unknown one."""
    return [known_user, "", UNKNOWN_USER]


def event_values(histories: Sequence[Sequence[str]]) -> np.ndarray:
    """A per-event input for ``histories``: int64 ``[B, max(1, longest)]`` holding each entry's
    position (0, 1, ...; -1 = padding), the shape ``predict_request`` gives ``history``."""
    width = max([1, *(len(h) for h in histories)])
    values = np.full((len(histories), width), -1, np.int64)
    for row, history in enumerate(histories):
        values[row, : len(history)] = np.arange(len(history))
    return values


def warmup_logs(
    histories: Sequence[Sequence[str]],
    *,
    model_name: str,
    users: Sequence[str] | None = None,
    event_inputs: Sequence[str] = (),
) -> list[prediction_log_pb2.PredictionLog]:
    """One single-history and one batched request per signature, as PredictionLogs.

    ``users`` (models that read users): history ``i`` is sent with ``users[i % len(users)]``.
    ``event_inputs``: per-event input names, each sent as :func:`event_values`.
    """
    logs = []
    row_users = None if users is None else [users[i % len(users)] for i in range(len(histories))]
    for signature in (SERVING_SIGNATURE, EMBED_SIGNATURE):
        batches = [[i] for i in range(len(histories))] + [list(range(len(histories)))]
        for rows in batches:
            batch = [histories[i] for i in rows]
            request = predict_request(
                batch, model_name=model_name, signature=signature,
                users=None if row_users is None else [row_users[i] for i in rows],
            )
            for name in event_inputs:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(event_values(batch)))
            logs.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            )
    return logs


def write_warmup_requests(
    saved_model_dir: str,
    histories: Sequence[Sequence[str]],
    *,
    model_name: str,
    users: Sequence[str] | None = None,
    event_inputs: Sequence[str] = (),
) -> str:
    """Writes the warm-up file into ``saved_model_dir`` (``users``, ``event_inputs``: see
    :func:`warmup_logs`); returns its path."""
    path = posixpath.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(histories, model_name=model_name, users=users, event_inputs=event_inputs):
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str) -> list[predict_pb2.PredictRequest]:
    """The PredictRequests of a version's warm-up file; ``[]`` when it has none.

    Raises:
      ValueError: a record is not a PredictionLog holding a PredictRequest (names the record).
    """
    path = posixpath.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for number, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as e:  # protobuf's DecodeError has no stable import path
            raise ValueError(f"{path}: record {number} is not a PredictionLog: {e}") from None
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(
                f"{path}: record {number} holds a {log.WhichOneof('log_type')}, not a predict_log"
            )
        requests.append(log.predict_log.request)
    return requests
