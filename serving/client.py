"""gRPC client of the recommender: histories of raw item IDs in, ranked (item, score) lists out.

Speaks TF Serving's ``PredictionService`` through the official
``tensorflow-serving-api`` stubs, so it works the same against
``serving/server.py`` and the real ``tensorflow_model_server``::

    python -m serving.client --target localhost:8500 --model_name tfseq --history "i1 i2 i3" --k 10

The request format (:func:`predict_request`) is defined here once; the warm-up
records written at export time use it too. Each answered row is a
:class:`Ranking`: its ``(item_id, score)`` pairs, and whether the server
answered it by the popularity fallback (``fallback``) or without the user it
named (``unknown_user``); the command line prints both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import grpc

from serving.signature import (
    FALLBACK,
    HISTORY,
    PAD_TOKEN,
    SCORES,
    SERVING_SIGNATURE,
    TOP_RAW_IDS,
    UNKNOWN_USER,
    USER_ID,
)

if TYPE_CHECKING:  # TensorFlow's protos are imported where a request is built, after the flags are read
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2

# Failures worth another try: the server is not up yet, restarting, or too slow this once.
RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)
MAX_BACKOFF_S = 2.0  # the longest wait between two attempts, as gRPC's reconnect backoff below


class Ranking(list):
    """One history's answer: a list of ``(item_id, score)``, best first, that also says how it was made.

    Attributes:
      fallback: True when the history had no known item and the server answered with the popularity
        fallback; ``None`` when the model does not report it (an export older than the ``fallback`` output).
      unknown_user: True when the ``user_id`` sent is not a user the model knows, so the row was
        answered without a user; ``None`` for models that do not read users.
    """

    def __init__(
        self, pairs: Sequence[tuple[str, float]] = (), *, fallback: bool | None = None,
        unknown_user: bool | None = None,
    ) -> None:
        super().__init__(pairs)
        self.fallback = fallback
        self.unknown_user = unknown_user

    def notes(self) -> list[str]:
        """Human-readable notes on how the row was answered (empty for a plain model answer)."""
        notes = []
        if self.fallback:
            notes.append("fallback: no known item in the history, answered by popularity")
        if self.unknown_user:
            notes.append("unknown user: answered without a user")
        return notes


Recommendations = list[Ranking]


def history_tensor_proto(histories: Sequence[Sequence[str]]) -> tensor_pb2.TensorProto:
    """Right-pads ``histories`` with ``""`` into a DT_STRING TensorProto ``[B, max(1, longest)]``.

    Built field by field (no TF op runs), which keeps a request's client-side cost in microseconds.
    """
    from tensorflow.core.framework import tensor_pb2, types_pb2

    width = max([1, *(len(h) for h in histories)])
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add().size = len(histories)
    proto.tensor_shape.dim.add().size = width
    proto.string_val.extend(
        str(item).encode("utf-8")
        for h in histories
        for item in [*h, *[PAD_TOKEN] * (width - len(h))]
    )
    return proto


def predict_request(
    histories: Sequence[Sequence[str]],
    *,
    model_name: str,
    signature: str = SERVING_SIGNATURE,
    version: int | None = None,
    users: Sequence[str] | None = None,
) -> predict_pb2.PredictRequest:
    """The PredictRequest for ``histories`` (lists of raw item IDs, most recent last).

    ``users`` (one raw user ID per history, ``""`` = none) fills the ``user_id``
    input of models that use users; ``None`` sends ``history`` alone.
    """
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[HISTORY].CopyFrom(history_tensor_proto(histories))
    if users is not None:
        if len(users) != len(histories):
            raise ValueError(f"{len(users)} users for {len(histories)} histories; give one per history")
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        proto.tensor_shape.dim.add().size = len(users)
        proto.string_val.extend(str(user).encode("utf-8") for user in users)
        request.inputs[USER_ID].CopyFrom(proto)
    return request


def parse_recommendations(response: predict_pb2.PredictResponse) -> Recommendations:
    """:class:`Ranking` lists (``(item_id, score)``, best first, padding dropped) from a ``serving_default`` response.

    A row has fewer than K entries when fewer than K items were eligible
    (``exclude_history`` at export); the servable pads those with ``""``.
    Each row carries the response's ``fallback`` and ``unknown_user`` flags.
    """
    for name in (TOP_RAW_IDS, SCORES):
        if name not in response.outputs:
            raise ValueError(
                f"response has no output {name!r}; outputs: {', '.join(response.outputs)}"
            )
    import tensorflow as tf

    item_ids = tf.make_ndarray(response.outputs[TOP_RAW_IDS])  # [B, K] bytes
    scores = tf.make_ndarray(response.outputs[SCORES])  # [B, K] float32
    rows = len(item_ids)
    flags: dict[str, list[bool | None]] = {
        name: [bool(v) for v in tf.make_ndarray(response.outputs[name])] if name in response.outputs
        else [None] * rows
        for name in (FALLBACK, UNKNOWN_USER)
    }  # [B] each; None when not reported
    return [
        Ranking(
            [(raw.decode("utf-8"), float(score)) for raw, score in zip(row_ids, row_scores) if raw],
            fallback=flags[FALLBACK][row],
            unknown_user=flags[UNKNOWN_USER][row],
        )
        for row, (row_ids, row_scores) in enumerate(zip(item_ids, scores))
    ]


class RecommenderClient:
    """A channel to one server, reused across calls (creating a channel costs milliseconds).

    Args:
      target: ``host:port`` of a PredictionService.
      model_name: the servable's name (TF Serving's ``MODEL_NAME``).
      timeout_s: deadline of each attempt.
      retries: further attempts after a retryable failure (UNAVAILABLE,
        DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), with exponential backoff from
        ``backoff_s``. Other errors (NOT_FOUND, INVALID_ARGUMENT ...) raise at once.
      backoff_s: the wait after the first failed attempt; each further one doubles it.
      max_backoff_s: the longest wait between two attempts, however many retries.
    """

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        if not (0 <= backoff_s <= max_backoff_s and math.isfinite(max_backoff_s)):
            raise ValueError(f"need 0 <= backoff_s <= max_backoff_s < inf, got {backoff_s} and {max_backoff_s}")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Reconnect about as fast as we retry (gRPC's default first reconnect waits 1 s).
        reconnect_ms = max(1, int(backoff_s * 1000))
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.initial_reconnect_backoff_ms", reconnect_ms),
                ("grpc.min_reconnect_backoff_ms", reconnect_ms),
                ("grpc.max_reconnect_backoff_ms", max(reconnect_ms, 2000)),
            ],
        )
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Sends ``request`` with the deadline and retries; raises the last ``grpc.RpcError``."""
        for attempt in range(self.retries + 1):
            try:
                return self._stub.Predict(request, timeout=self.timeout_s)
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or attempt == self.retries:
                    raise
                time.sleep(min(self.backoff_s * 2 ** min(attempt, 62), self.max_backoff_s))
        raise AssertionError("unreachable")

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        *,
        signature: str = SERVING_SIGNATURE,
        version: int | None = None,
        users: Sequence[str] | None = None,
    ) -> Recommendations:
        """Top-K ``(item_id, score)`` per history; K is fixed when the model is exported.

        ``users`` (one raw user ID per history) goes to models that read the user (``hrm``).
        """
        request = predict_request(
            histories, model_name=self.model_name, signature=signature, version=version, users=users
        )
        return parse_recommendations(self.predict(request))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RecommenderClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recommend(
    histories: Sequence[Sequence[str]],
    *,
    target: str = "localhost:8500",
    model_name: str = "tfseq",
    signature: str = SERVING_SIGNATURE,
    version: int | None = None,
    timeout_s: float = 5.0,
    retries: int = 2,
    backoff_s: float = 0.1,
    max_backoff_s: float = MAX_BACKOFF_S,
    users: Sequence[str] | None = None,
) -> Recommendations:
    """One-shot :meth:`RecommenderClient.recommend` (opens and closes a channel)."""
    with RecommenderClient(
        target, model_name, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s
    ) as client:
        return client.recommend(histories, signature=signature, version=version, users=users)


def _number(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` (int or float) in ``low..high``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {low:g}..{high:g}, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number in {low:g}..{high:g}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("--target", default="localhost:8500", help="host:port of the gRPC server")
    parser.add_argument("--model_name", default="tfseq")
    parser.add_argument(
        "--history",
        action="append",
        required=True,
        help="space-separated raw item IDs, oldest first; repeat the flag for a batch",
    )
    parser.add_argument(
        "--user", action="append",
        help="the raw user ID of each --history, in order, for models that read the user (hrm)",
    )
    parser.add_argument(
        "--k", type=_number(int, 1, 2**31 - 1), default=10, help="print at most k items (K is fixed at export)"
    )
    parser.add_argument(
        "--version", type=_number(int, 0, 2**63 - 1), default=None, help="a specific model version"
    )
    parser.add_argument(
        "--timeout_s", type=_number(float, 0.001, 86400), default=5.0, help="deadline of each attempt, 0.001..86400"
    )
    parser.add_argument(
        "--retries", type=_number(int, 0, 100), default=2,
        help="retries after UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, 0..100",
    )
    parser.add_argument(
        "--backoff_s", type=_number(float, 0, 3600), default=0.1,
        help="wait before the first retry, doubled for each further one, 0..3600",
    )
    parser.add_argument(
        "--max_backoff_s", type=_number(float, 0, 3600), default=MAX_BACKOFF_S,
        help="longest wait between two attempts, 0..3600 (at least --backoff_s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--startup_logs", action="store_true",
                        help="keep TensorFlow's start-up logs (hidden by default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    histories = [h.split() for h in args.history]
    if args.user is not None and len(args.user) != len(histories):
        parser.error(f"--user given {len(args.user)} times for {len(histories)} --history; give one per history")
    if args.backoff_s > args.max_backoff_s:
        parser.error(f"--backoff_s {args.backoff_s:g} is over --max_backoff_s {args.max_backoff_s:g}")
    from tfseq.runtime import quiet_startup

    quiet_startup(verbose=args.startup_logs, beam=False)  # the flags are fine: load TensorFlow (its protos)
    try:
        results = recommend(
            histories,
            target=args.target,
            model_name=args.model_name,
            version=args.version,
            timeout_s=args.timeout_s,
            retries=args.retries,
            backoff_s=args.backoff_s,
            max_backoff_s=args.max_backoff_s,
            users=args.user,
        )
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    if args.json:  # each entry also says how its row was answered (fallback, unknown_user)
        flags = [
            {name: value for name, value in (("fallback", row.fallback), ("unknown_user", row.unknown_user))
             if value is not None}
            for row in results
        ]
        print(json.dumps([[{"item_id": i, "score": s, **how} for i, s in row[: args.k]]
                          for row, how in zip(results, flags)]))
        return 0
    for history, row in zip(args.history, results):
        notes = row.notes()
        print(f"history: {history}" + (f"  ({'; '.join(notes)})" if notes else ""))
        for rank, (item, score) in enumerate(row[: args.k], start=1):
            print(f"{rank:4d}  {item}\t{score:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
