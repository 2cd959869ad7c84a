"""Bounded soak of the model server: mixed good, malformed and hostile requests while versions are pushed.

``python -m serving.server`` runs as a subprocess on loopback (gRPC and REST)
serving a small SASRec (untrained, spread-out weights so that answers differ
between versions). ``--concurrency`` client threads send ``--requests``
requests (stopping early at ``--time_limit_s``), drawn from:

* good: ``Predict`` over gRPC and ``:predict`` over REST, 1-4 histories of raw
  IDs (some unknown), each answer compared with the answer of the in-process
  SavedModel of the version that gave it (REST answers do not name their
  version: one must equal a pushed good version's answer);
* malformed: unknown model, version or signature, wrong dtype or rank, a value
  count that disagrees with the shape, a negative dimension, bad JSON, empty
  instances, a bad ``Content-Length``, a wrong method;
* hostile: a 41-byte TensorProto that declares ``[1, 100000000]``, batches and
  histories over the caps, too many elements, an ID over ``--max_id_bytes``,
  a dtype number no DataType has, bytes that are not a protobuf message, a gRPC
  message over ``--grpc_max_message_bytes``, a REST body over
  ``--rest_max_body_bytes``, 2,000-deep JSON nesting, half-sent REST bodies
  left open, and slow clients (slowloris): a request line, then one header
  line every half second, never finished, which the server must close at
  ``--rest_request_timeout_seconds``.

Meanwhile versions are pushed: atomically (copy to a hidden folder, rename),
slow-copied file by file into the version folder, corrupt (a garbage
``saved_model.pb``; truncated variables), and under a zero-padded name
(``0007``, version 7, as TF Serving reads it); folders that are not versions
(``²``, ``٣``, ``notes``, a number past int64, and an empty ``0002`` beside
``2/``, which must stay version 2's folder) appear beside them and must each
cost one warning line, no traceback. Writes bench/results/soak.json:
requests by transport and status, unexpected statuses per kind, wrong answers,
the server's exit and peak RSS (sampled every 0.1 s) against a bound computed
from the configured limits, and latency percentiles.

    python bench/soak.py [--requests 20000] [--concurrency 16] [--time_limit_s 600]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, WORK, machine, write_results  # noqa: E402

MODEL = "soak"
TOP_K = 10
# The server's configured limits (the defaults of serving/servable.py and serving/rest.py, except these two).
GRPC_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
REST_TIMEOUT_S = 2.0
REST_REQUEST_TIMEOUT_S = 2.0
REST_PER_CLIENT = 512  # every soak client shares 127.0.0.1: the per-client cap must not be what refuses them
SLOW_CLIENT_HEADER_EVERY_S = 0.5
MAX_WORKERS = 8
REST_THREADS = 8
REST_MAX_BODY = 8 * 1024 * 1024
# version -> how it is pushed; 1 is there at start. Good versions: 1, 2, 4, 6.
PUSHES = [(0.12, 2, "slow"), (0.2, 0, "odd_names"), (0.3, 3, "corrupt_graph"), (0.45, 4, "atomic"),
          (0.6, 5, "corrupt_variables"), (0.75, 6, "slow"), (0.85, 7, "zero_padded")]
GOOD_VERSIONS = (1, 2, 4, 6)  # exported; version 7 is version 6's files in the folder 0007
ODD_NAMES = ("²", "٣", "notes", "99999999999999999999", "0002")  # 0002: version 2 stays read from 2/


# ---- the model, its versions and their in-process answers ----------------------------------
def export_versions(staging: Path, num_items: int, max_seq_len: int) -> list[str]:
    """Exports one SASRec per good version (other seeds) into ``staging``; returns the raw IDs."""
    import numpy as np
    import tensorflow as tf

    from serving.export import export_saved_model
    from tfseq.data import vocab
    from tfseq.models.sasrec import SASRec, SASRecConfig

    raw_ids = ["", *[f"item-{i:05d}" for i in range(1, num_items)]]
    vocab_path = staging / vocab.ITEM_VOCAB
    vocab_path.write_text(vocab.vocabulary_text(raw_ids[1:]), encoding="utf-8")
    counts = np.random.default_rng(0).integers(1, 100, size=num_items)
    counts[0] = 0
    config = SASRecConfig(
        embedding_size=32, num_layers=1, inner_size=64, initializer_range=0.5, max_seq_len=max_seq_len
    )
    for version in GOOD_VERSIONS:
        tf.keras.utils.set_random_seed(version)
        model = SASRec(config, num_items)
        model.encode(tf.ones([1, 1], tf.int64))
        export_saved_model(
            model,
            item_vocab_path=str(vocab_path),
            item_counts=counts,
            serving_dir=str(staging),
            model_name=MODEL,
            version=version,
            top_k=TOP_K,
            max_seq_len=max_seq_len,
        )
    return raw_ids


def in_process_answers(version_dir: Path, histories: list[list[str]]) -> list[tuple[list[str], list[float]]]:
    """The loaded SavedModel's ``serving_default`` answer for each history on its own."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    answers = []
    for history in histories:
        out = signature(history=tf.constant(np.array([history or [""]], dtype=object)))
        answers.append(([i.decode() for i in out["item_ids"].numpy()[0]], out["scores"].numpy()[0].tolist()))
    return answers


def same_answer(got_ids: Sequence[str], got_scores: Sequence[float], want: tuple[list[str], list[float]],
                tol: float = 1e-4) -> bool:
    """Equal scores within ``tol``; a differing item is allowed only where the wanted scores tie."""
    want_ids, want_scores = want
    if len(got_ids) != len(want_ids) or any(abs(g - w) > tol for g, w in zip(got_scores, want_scores)):
        return False
    for position, (g, w) in enumerate(zip(got_ids, want_ids)):
        if g != w:
            tied = {i for i, s in zip(want_ids, want_scores) if abs(s - want_scores[position]) <= tol}
            if g not in tied:
                return False
    return True


# ---- pushing versions ------------------------------------------------------------------------
def push(staging: Path, model_dir: Path, version: int, how: str, slow_copy_s: float) -> None:
    source = staging / MODEL / str({"corrupt_graph": 1, "corrupt_variables": 1, "zero_padded": 6}.get(how, version))
    target = model_dir / (f"{version:04d}" if how == "zero_padded" else str(version))
    if how == "odd_names":
        for name in ODD_NAMES:
            (model_dir / name).mkdir()
        (model_dir / ODD_NAMES[0] / "saved_model.pb").write_bytes(b"not a version")
    elif how in ("atomic", "corrupt_variables", "zero_padded"):
        hidden = model_dir / f".{version}.tmp-soak"
        shutil.copytree(source, hidden)
        if how == "corrupt_variables":
            data = next((hidden / "variables").glob("variables.data-*"))
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        os.rename(hidden, target)
    elif how == "slow":  # file by file into the version folder, the graph first (every partial copy fails)
        files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: (p.name != "saved_model.pb", p))
        for file in files:
            destination = target / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, destination)
            time.sleep(slow_copy_s)
    elif how == "corrupt_graph":
        shutil.copytree(source, target)
        (target / "saved_model.pb").write_bytes(os.urandom(4096))
    else:
        raise ValueError(how)


# ---- requests --------------------------------------------------------------------------------
class Worker:
    """One client thread's connections (a gRPC channel, a keep-alive HTTP connection) and its tallies."""

    def __init__(self, grpc_target: str, rest_port: int) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(grpc_target, options=[("grpc.max_send_message_length", -1)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.rest_port = rest_port
        self.http: http.client.HTTPConnection | None = None
        self.stalled: list[tuple[float, socket.socket]] = []
        self.slow: list[tuple[float, socket.socket]] = []  # slow clients: (opened at, socket)
        self.next_header = 0.0

    def rest(self, method: str, path: str, body: bytes | None, headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                if self.http is None:
                    self.http = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=60)
                self.http.request(method, path, body=body, headers=headers or {})
                reply = self.http.getresponse()
                data = reply.read()
                if reply.getheader("Connection", "").lower() == "close":
                    self.http.close()
                    self.http = None
                return reply.status, data
            except (http.client.HTTPException, OSError):
                if self.http is not None:
                    self.http.close()
                self.http = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.channel.close()
        if self.http is not None:
            self.http.close()


def string_proto(shape: list[int], values: list[bytes]) -> Any:
    from tensorflow.core.framework import tensor_pb2, types_pb2

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    proto.string_val.extend(values)
    return proto


class Soak:
    """The request kinds, each with the status it must get; tallies shared by all workers."""

    def __init__(self, pool: list[list[str]], answers: dict[int, list], rest_port: int, pushed: set[int]) -> None:
        self.pool = pool
        self.answers = answers  # version -> per-pool-history in-process answer
        self.rest_port = rest_port
        self.pushed = pushed  # good versions on disk so far
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.unexpected: Counter = Counter()
        self.unexpected_examples: list[str] = []
        self.wrong = 0
        self.good_checked = 0
        self.versions_seen: Counter = Counter()
        self.latency: dict[str, list[float]] = {"grpc_good": [], "rest_good": [], "all": []}
        self.kinds = self._kinds()

    # -- helpers --
    def _batch(self, rng: random.Random) -> list[int]:
        start = rng.randrange(len(self.pool))
        return [(start + k) % len(self.pool) for k in range(rng.randint(1, 4))]

    def _grpc(self, worker: Worker, request: Any, timeout: float = 60) -> tuple[str, Any]:
        import grpc

        try:
            return "OK", worker.stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name, None

    def _predict_request(self, rows: list[list[str]], **spec: Any) -> Any:
        from serving.client import predict_request

        return predict_request(rows, model_name=spec.pop("model", MODEL), **spec)

    # -- kinds: name -> (weight, transport, expected status, function returning (status, wrong or None)) --
    def _kinds(self) -> dict[str, tuple[float, str, str, Callable]]:
        path = f"/v1/models/{MODEL}:predict"

        def post(url: str, body: bytes, method: str = "POST") -> Callable:
            return lambda w, r: self._rest(w, method, url, body)

        def proto(shape: list[int], values: list[bytes]) -> Callable:
            return lambda w, r: self._proto(w, shape, values)

        def spec(**changes: Any) -> Callable:
            return lambda w, r: self._status(w, **changes)

        bad, exhausted = "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"
        one = b'{"instances": [["a"]]}'
        long_history = b'{"instances": [[' + b'"a",' * 200_000 + b'""]]}'
        return {
            "good": (0.34, "grpc", "OK", self.good_grpc),
            "good_rest": (0.26, "rest", "200", self.good_rest),
            # malformed
            "unknown_model": (0.02, "grpc", "NOT_FOUND", spec(model="nope")),
            "unknown_version": (0.02, "grpc", "NOT_FOUND", spec(version=99)),
            "unknown_signature": (0.02, "grpc", bad, spec(signature="nope")),
            "wrong_dtype": (0.02, "grpc", bad, self.wrong_dtype),
            "rank1": (0.02, "grpc", bad, proto([2], [b"a", b"b"])),
            "count_mismatch": (0.02, "grpc", bad, proto([1, 2], [b"a"] * 3)),
            "negative_dim": (0.02, "grpc", bad, proto([-1, 2], [b"a", b"b"])),
            "rest_unknown_model": (0.02, "rest", "404", post("/v1/models/nope:predict", one)),
            "rest_unknown_version": (0.02, "rest", "404", post(f"/v1/models/{MODEL}/versions/99:predict", one)),
            "rest_unknown_signature": (0.02, "rest", "400", post(path, b'{"signature_name": "x", "instances": []}')),
            "rest_rank1": (0.02, "rest", "400", post(path, b'{"instances": ["a", "b"]}')),
            "rest_empty": (0.02, "rest", "400", post(path, b'{"instances": []}')),
            "rest_bad_json": (0.02, "rest", "400", post(path, b'{"instances": [[')),
            "rest_wrong_method": (0.01, "rest", "405", post(path, b"", method="GET")),
            "rest_bad_content_length": (0.02, "rest", "400", self.bad_content_length),
            # hostile
            "expanding_proto": (0.03, "grpc", bad, proto([1, 100_000_000], [b"a"])),  # 41 bytes on the wire
            "batch_over_cap": (0.02, "grpc", bad, proto([2000, 1], [b"a"] * 2000)),
            "history_over_cap": (0.02, "grpc", bad, proto([1, 20_000], [b"a"] * 20_000)),
            "elements_over_cap": (0.01, "grpc", exhausted, proto([1000, 300], [b"a"] * 300_000)),
            "message_over_cap": (0.003, "grpc", exhausted, proto([1, 1], [b"x" * (GRPC_MAX_MESSAGE_BYTES + 1024)])),
            "rest_body_over_cap": (0.01, "rest", "413", self.body_over_cap),
            "rest_history_over_cap": (0.01, "rest", "400", post(path, long_history)),
            "rest_deep_json": (0.01, "rest", "400", post(path, b"[" * 2000 + b"]" * 2000)),
            "rest_half_sent_body": (0.01, "rest", "stalled", self.half_sent),
            "rest_slow_client": (0.01, "rest", "slow", self.slow_client),
            "id_over_cap": (0.01, "grpc", bad, proto([1, 2], [b"item-00001", b"x" * 257])),
            "unknown_dtype": (0.01, "grpc", bad, self.unknown_dtype),
            "garbage_message": (0.01, "grpc", bad, self.garbage_message),
        }

    def _status(self, worker: Worker, **spec: Any) -> tuple[str, None]:
        return self._grpc(worker, self._predict_request([["item-00001"]], **spec))[0], None

    def _proto(self, worker: Worker, shape: list[int], values: list[bytes]) -> tuple[str, None]:
        request = self._predict_request([["item-00001"]])
        request.inputs["history"].CopyFrom(string_proto(shape, values))
        return self._grpc(worker, request)[0], None

    def wrong_dtype(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        import numpy as np
        import tensorflow as tf

        request = self._predict_request([["item-00001"]])
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2]], np.int64)))
        return self._grpc(worker, request)[0], None

    def unknown_dtype(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        request = self._predict_request([["item-00001"]])
        request.inputs["history"].dtype = 999  # no DataType has it
        return self._grpc(worker, request)[0], None

    def garbage_message(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        import grpc

        call = worker.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        try:
            call(rng.choice([b"\xff\xff\xff\xff", b"\x0a\x05ab", b"garbage!"]), timeout=60)
            return "OK", None
        except grpc.RpcError as e:
            return e.code().name, None

    def _rest(self, worker: Worker, method: str, path: str, body: bytes | None) -> tuple[str, None]:
        return str(worker.rest(method, path, body)[0]), None

    def bad_content_length(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        value = rng.choice([b"-1", b"abc", b"1e9", b"12 34"])
        with socket.create_connection(("127.0.0.1", self.rest_port), timeout=30) as s:
            s.sendall(b"POST /v1/models/" + MODEL.encode() + b":predict HTTP/1.1\r\nHost: soak\r\nContent-Length: "
                      + value + b"\r\n\r\n")
            head = s.recv(64)
        return head[9:12].decode("latin-1") or "closed", None

    def body_over_cap(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        """Declares a body over the cap and starts sending it: the answer must come before the body is read."""
        with socket.create_connection(("127.0.0.1", self.rest_port), timeout=30) as s:
            s.sendall(b"POST /v1/models/" + MODEL.encode() + b":predict HTTP/1.1\r\nHost: soak\r\nContent-Length: "
                      + str(REST_MAX_BODY + 1).encode() + b"\r\n\r\n" + b"[" * 65536)
            head = s.recv(64)
        return head[9:12].decode("latin-1") or "closed", None

    def half_sent(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        s = socket.create_connection(("127.0.0.1", self.rest_port), timeout=30)
        s.sendall(b"POST /v1/models/" + MODEL.encode() + b":predict HTTP/1.1\r\nHost: soak\r\nContent-Length: 5000\r\n"
                  b"\r\n{\"instances\": [[")
        worker.stalled.append((time.monotonic(), s))  # closed by the worker 3 x REST_TIMEOUT_S later
        return "stalled", None

    def slow_client(self, worker: Worker, rng: random.Random) -> tuple[str, None]:
        """Opens a request that the worker keeps trickling (see :meth:`trickle`) until the server closes it."""
        s = socket.create_connection(("127.0.0.1", self.rest_port), timeout=30)
        s.sendall(b"POST /v1/models/" + MODEL.encode() + b":predict HTTP/1.1\r\nHost: soak\r\n")
        worker.slow.append((time.monotonic(), s))
        return "slow", None

    def trickle(self, worker: Worker, *, wait: bool = False) -> None:
        """Sends each open slow client's next header line; tallies those the server closed, or left open too long.

        A slow client must be closed within its request deadline plus the server's check interval; after
        three deadlines it counts as left open.
        """
        while True:
            now = time.monotonic()
            if now >= worker.next_header:
                worker.next_header = now + SLOW_CLIENT_HEADER_EVERY_S
                still: list[tuple[float, socket.socket]] = []
                for opened, s in worker.slow:
                    outcome = None
                    try:
                        s.setblocking(False)
                        if s.recv(1) == b"":
                            outcome = "closed-by-server"
                    except BlockingIOError:
                        try:
                            s.send(b"X-Slow: 1\r\n")
                        except OSError:
                            outcome = "closed-by-server"
                    except OSError:
                        outcome = "closed-by-server"
                    if outcome is None and now - opened > 3 * REST_REQUEST_TIMEOUT_S:
                        outcome = "still-open"
                    if outcome is None:
                        still.append((opened, s))
                        continue
                    s.close()
                    with self.lock:
                        self.statuses[f"rest:slow-{outcome}"] += 1
                worker.slow = still
            if not (wait and worker.slow):
                return
            time.sleep(max(0.0, worker.next_header - time.monotonic()))

    def good_grpc(self, worker: Worker, rng: random.Random) -> tuple[str, bool | None]:
        from serving.client import parse_recommendations

        rows = self._batch(rng)
        status, response = self._grpc(worker, self._predict_request([self.pool[i] for i in rows]))
        if response is None:
            return status, None
        version = response.model_spec.version.value
        got = parse_recommendations(response)
        with self.lock:
            self.versions_seen[version] += 1
        wrong = version not in self.answers or not all(
            same_answer([i for i, _ in g], [s for _, s in g], self._unpadded(self.answers[version][row]))
            for g, row in zip(got, rows)
        )
        return status, wrong

    @staticmethod
    def _unpadded(answer: tuple[list[str], list[float]]) -> tuple[list[str], list[float]]:
        ids, scores = answer
        keep = [k for k, i in enumerate(ids) if i]
        return [ids[k] for k in keep], [scores[k] for k in keep]

    def good_rest(self, worker: Worker, rng: random.Random) -> tuple[str, bool | None]:
        rows = self._batch(rng)
        width = max(1, *(len(self.pool[i]) for i in rows))
        body = {"instances": [self.pool[i] + [""] * (width - len(self.pool[i])) for i in rows]}
        status, data = worker.rest("POST", f"/v1/models/{MODEL}:predict", json.dumps(body).encode())
        if status != 200:
            return str(status), None
        predictions = json.loads(data)["predictions"]
        candidates = [v for v in self.answers if v in self.pushed]
        wrong = not any(
            all(same_answer(p["item_ids"], p["scores"], self.answers[v][row]) for p, row in zip(predictions, rows))
            for v in candidates
        )
        return "200", wrong

    def run_one(self, worker: Worker, rng: random.Random) -> None:
        names = list(self.kinds)
        name = rng.choices(names, weights=[self.kinds[n][0] for n in names])[0]
        _, transport, expected, call = self.kinds[name]
        start = time.perf_counter()
        try:
            status, wrong = call(worker, rng)
        except Exception as e:  # noqa: BLE001  (a client-side failure is a result too: counted by name)
            status, wrong = f"client-{type(e).__name__}", None
        seconds = time.perf_counter() - start
        with self.lock:
            self.statuses[f"{transport}:{status}"] += 1
            if status != expected:
                self.unexpected[name] += 1
                if len(self.unexpected_examples) < 20:
                    self.unexpected_examples.append(f"{name}: got {status}, expected {expected}")
            if wrong is not None:
                self.good_checked += 1
                self.wrong += int(wrong)
            if name in ("good", "good_rest") and status == expected:
                self.latency["grpc_good" if name == "good" else "rest_good"].append(seconds)
            self.latency["all"].append(seconds)
        self.reap(worker)
        self.trickle(worker)

    def reap(self, worker: Worker, *, wait: bool = False) -> None:
        """Closes the worker's half-sent connections older than 3 REST timeouts, noting who hung up first."""
        if wait and worker.stalled:
            time.sleep(max(0.0, worker.stalled[-1][0] + 3 * REST_TIMEOUT_S - time.monotonic()))
        now = time.monotonic()
        while worker.stalled and now - worker.stalled[0][0] > 3 * REST_TIMEOUT_S:
            _, s = worker.stalled.pop(0)
            s.setblocking(False)
            try:
                closed = s.recv(1) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            with self.lock:
                self.statuses["rest:stalled-closed-by-server" if closed else "rest:stalled-still-open"] += 1
            s.close()


# ---- the run ---------------------------------------------------------------------------------
def slow_crowd(rest_port: int, count: int, pool: list[list[str]], source: str = "127.0.0.2") -> dict[str, Any]:
    """``count`` slow clients at once from another loopback address, while good requests keep coming.

    Each slow client sends a request line and then one header line every
    ``SLOW_CLIENT_HEADER_EVERY_S``, never finishing; the server must close each
    at its request deadline. Meanwhile good ``:predict`` requests from
    127.0.0.1 go out every 0.1 s; each must be answered (200), at worst after
    a slow client's deadline frees a connection.
    """
    crowd: list[socket.socket] = []
    refused = 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", rest_port), timeout=5, source_address=(source, 0))
            s.sendall(b"POST /v1/models/" + MODEL.encode() + b":predict HTTP/1.1\r\nHost: crowd\r\n")
            crowd.append(s)
        except OSError:
            refused += 1
    good: list[tuple[int, float]] = []
    closed: dict[int, float] = {}
    opened = time.monotonic()
    body = json.dumps({"instances": [pool[0] or ["item-00001"]]}).encode()
    next_header = opened
    while time.monotonic() - opened < 3 * REST_REQUEST_TIMEOUT_S:
        now = time.monotonic()
        if now >= next_header:
            next_header = now + SLOW_CLIENT_HEADER_EVERY_S
            for index, s in enumerate(crowd):
                if index in closed:
                    continue
                try:
                    s.setblocking(False)
                    if s.recv(1) == b"":
                        closed[index] = now - opened
                except BlockingIOError:
                    try:
                        s.send(b"X-Slow: 1\r\n")
                    except OSError:
                        closed[index] = now - opened
                except OSError:
                    closed[index] = now - opened
        start = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
            connection.request("POST", f"/v1/models/{MODEL}:predict", body, {"Content-Type": "application/json"})
            status = connection.getresponse().status
            connection.close()
        except OSError:
            status = 0
        good.append((status, time.monotonic() - start))
        time.sleep(0.1)
    for s in crowd:
        s.close()
    seconds = sorted(t for _, t in good)
    return {
        "slow_clients": count, "source_address": source, "refused_at_connect": refused,
        "closed_by_server": len(closed), "left_open": len(crowd) - len(closed),
        "closed_after_s_max": round(max(closed.values(), default=0.0), 2),
        "good_requests": len(good), "good_answered_200": sum(1 for status, _ in good if status == 200),
        "good_latency_s": {"p50": round(seconds[len(seconds) // 2], 3) if seconds else None,
                           "max": round(seconds[-1], 3) if seconds else None},
    }


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str, int, list[str]]:
    flags = [
        "--model_base_path", str(model_dir), "--model_name", MODEL, "--port", "0", "--rest_port", "0",
        "--poll_seconds", "0.5", "--max_workers", str(MAX_WORKERS), "--rest_api_num_threads", str(REST_THREADS),
        "--grpc_max_message_bytes", str(GRPC_MAX_MESSAGE_BYTES), "--rest_timeout_seconds", str(REST_TIMEOUT_S),
        "--rest_max_body_bytes", str(REST_MAX_BODY), "--rest_request_timeout_seconds", str(REST_REQUEST_TIMEOUT_S),
        "--rest_max_connections_per_client", str(REST_PER_CLIENT),
    ]
    process = subprocess.Popen([sys.executable, "-m", "serving.server", *flags], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=log.open("w"), text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "gRPC on" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}; see {log}")
    grpc_target = line.split("gRPC on ", 1)[1].split(",", 1)[0]
    return process, grpc_target, int(line.rsplit(":", 1)[1]), flags


def percentiles(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "requests": len(ms)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time_limit_s", type=float, default=600.0, help="stop sending after this long")
    parser.add_argument("--items", type=int, default=2000, help="vocabulary size of the soak model")
    parser.add_argument("--slow_copy_s", type=float, default=0.4, help="pause after each file of a slow copy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow_crowd", type=int, default=300, help="slow clients opened at once half way through")
    args = parser.parse_args(argv)
    import psutil

    work = WORK / "soak"
    shutil.rmtree(work, ignore_errors=True)
    staging, model_dir = work / "staging", work / "serving" / MODEL
    staging.mkdir(parents=True)
    model_dir.mkdir(parents=True)
    max_seq_len = 20
    raw_ids = export_versions(staging, args.items, max_seq_len)
    rng = random.Random(args.seed)
    pool = [[rng.choice(raw_ids[1:]) if rng.random() > 0.1 else f"unknown-{k}" for k in range(rng.randint(0, 30))]
            for _ in range(256)]
    answers = {v: in_process_answers(staging / MODEL / str(v), pool) for v in GOOD_VERSIONS}
    answers[7] = answers[6]  # the zero-padded push copies version 6's files
    shutil.copytree(staging / MODEL / "1", model_dir / "1")
    pushed = {1}

    log = work / "server.log"
    process, grpc_target, rest_port, flags = start_server(model_dir, log)
    server = psutil.Process(process.pid)
    rss_after_load = server.memory_info().rss
    soak = Soak(pool, answers, rest_port, pushed)
    peak = [rss_after_load]
    done = threading.Event()
    sent = [0]
    sent_lock = threading.Lock()

    def sample_rss() -> None:
        while not done.wait(0.1):
            try:
                peak[0] = max(peak[0], server.memory_info().rss)
            except psutil.Error:
                return

    def pusher() -> None:
        for fraction, version, how in PUSHES:
            while not done.is_set() and sent[0] < fraction * args.requests:
                time.sleep(0.05)
            if done.is_set():
                return
            print(f"pushing version {version} ({how}) after {sent[0]} requests", flush=True)
            if version in answers:
                pushed.add(version)  # before the copy: the server may serve it as soon as the last file lands
            push(staging, model_dir, version, how, args.slow_copy_s)

    deadline = time.monotonic() + args.time_limit_s

    def client(index: int) -> None:
        worker = Worker(grpc_target, rest_port)
        worker_rng = random.Random(args.seed * 1000 + index)
        try:
            while time.monotonic() < deadline:
                with sent_lock:
                    if sent[0] >= args.requests:
                        break
                    sent[0] += 1
                soak.run_one(worker, worker_rng)
            soak.reap(worker, wait=True)
            soak.trickle(worker, wait=True)
        finally:
            worker.close()

    crowd_result: dict[str, Any] = {}

    def crowd() -> None:  # the slow-client crowd, once, half way through the run
        while not done.is_set() and sent[0] < 0.5 * args.requests:
            time.sleep(0.05)
        if args.slow_crowd and not done.is_set():
            print(f"{args.slow_crowd} slow clients after {sent[0]} requests", flush=True)
            crowd_result.update(slow_crowd(rest_port, args.slow_crowd, pool))

    crowd_thread = threading.Thread(target=crowd, daemon=True)
    threads = [threading.Thread(target=sample_rss, daemon=True), threading.Thread(target=pusher, daemon=True),
               crowd_thread]
    clients = [threading.Thread(target=client, args=(i,)) for i in range(args.concurrency)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for t in threads + clients:
        t.start()
    for t in clients:
        t.join()
    crowd_thread.join(timeout=120)
    elapsed = time.perf_counter() - start
    done.set()
    time.sleep(3)  # the poller settles on the last version
    alive = process.poll() is None
    from serving.client import RecommenderClient

    with RecommenderClient(grpc_target, MODEL, timeout_s=30) as c:
        final_version = c.predict(soak._predict_request([["item-00001"]])).model_spec.version.value
    process.terminate()
    exit_code = process.wait(timeout=60)
    text = log.read_text()
    mib = 1024 * 1024
    # What the limits allow beyond the loaded state: every gRPC worker holding a maximal message three times
    # (bytes + parsed proto + one value copied while its length is checked), every REST thread a maximal body
    # ~10x (bytes + JSON objects), and a second version loading beside the served one.
    bound = rss_after_load * 2 + MAX_WORKERS * 3 * GRPC_MAX_MESSAGE_BYTES + REST_THREADS * 10 * REST_MAX_BODY
    payload: dict[str, Any] = {
        "machine": {**machine(), "load_average_1min_before": load_before, "load_average_1min_after":
                    os.getloadavg()[0], "note": "2 shared cores; the client threads run on the same cores"},
        "server_flags": flags[4:],
        "model": {"name": "sasrec", "hidden_size": 32, "num_layers": 1, "items": args.items, "top_k": TOP_K,
                  "max_seq_len": max_seq_len},
        "concurrency": args.concurrency,
        "requests_sent": sum(v for k, v in soak.statuses.items() if "stalled-" not in k and "slow-" not in k),
        "seconds": round(elapsed, 1),
        "requests_by_status": dict(sorted(soak.statuses.items())),
        "unexpected_status_by_kind": dict(sorted(soak.unexpected.items())),
        "unexpected_examples": soak.unexpected_examples,
        "good_answers_checked": soak.good_checked,
        "wrong_answers": soak.wrong,
        "versions_pushed": [{"version": v, "how": how} for _, v, how in PUSHES if how != "odd_names"],
        "odd_folder_names": list(ODD_NAMES),
        "grpc_answers_by_version": {str(k): v for k, v in sorted(soak.versions_seen.items())},
        "final_version": final_version,
        "server_alive_at_end": alive,
        "server_restarts": 0 if alive else 1,
        "server_exit_code": exit_code,
        "server_log_tracebacks": text.count("Traceback"),
        "server_log_failed_loads": text.count("failed to load"),
        # one warning per name that is not a version, however many polls saw it
        "server_log_ignored_names": {name: text.count(f"ignoring {name!r}") for name in ODD_NAMES},
        "server_log_slow_clients_closed_lines": text.count("had not sent a whole request"),
        "slow_crowd": crowd_result,
        "rss_mib": {"after_load": round(rss_after_load / mib, 1), "peak": round(peak[0] / mib, 1),
                    "bound_from_limits": round(bound / mib, 1), "within_bound": peak[0] <= bound},
        "latency": {k: percentiles(v) for k, v in soak.latency.items()},
    }
    path = write_results("soak", payload)
    shown = ("requests_sent", "seconds", "requests_by_status", "wrong_answers", "unexpected_status_by_kind", "rss_mib",
             "latency", "final_version", "server_log_tracebacks")
    print(json.dumps({k: payload[k] for k in shown}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
