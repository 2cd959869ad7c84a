"""``python -m serving.server`` started as the README starts it: every REST and gRPC status code, hostile requests.

One server subprocess (toy model, small limits) serves the whole module; each
test checks that it is still the same process and that its log holds no traceback.
"""

from __future__ import annotations

import ast
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving import client, server
from serving.signature import HISTORY
from tests.serving.common import assert_same_recommendations, make_toy, start_server

REPO = Path(__file__).resolve().parents[2]
LIMITS = {"max_batch_size": 8, "max_history_length": 16, "max_elements": 64}
MAX_BODY = 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """The toy model served by a subprocess with TF Serving's flag names and small limits."""
    root = tmp_path_factory.mktemp("cli")
    toy = make_toy(root / "data")
    toy.export(root / "serving")
    rest_port = _free_port()
    log = root / "server.log"
    process, line = start_server(
        root / "serving" / "toy",
        log,
        "--port=0",
        f"--rest_api_port={rest_port}",
        "--file_system_poll_wait_seconds=0.5",
        *(f"--{k}={v}" for k, v in LIMITS.items()),
        f"--rest_max_body_bytes={MAX_BODY}",
        "--rest_timeout_seconds=1",
        "--rest_api_num_threads=2",
        "--grpc_max_message_bytes=65536",
    )
    try:
        assert f"REST on 127.0.0.1:{rest_port}" in line, (line, log.read_text())
        target = line.split("gRPC on ", 1)[1].split(",", 1)[0]
        yield toy, process, target, f"http://127.0.0.1:{rest_port}", log
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


@pytest.fixture
def served(cli):
    """The module's server; afterwards: still the same process, and no traceback in its log."""
    toy, process, target, base, log = cli
    yield toy, target, base
    assert process.poll() is None, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def http(url: str, body: bytes | dict | None = None, method: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=20) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": raw.decode("latin-1")}


def raw_http(base: str, request: bytes, timeout: float = 20) -> bytes:
    """Sends ``request`` bytes as they are; returns what the server answers before closing (or timing out)."""
    host, port = base.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in request:
                    break
        except socket.timeout:
            pass
    return b"".join(chunks)


PADDED = [["a01", "a02", ""], ["x y", "unknown", "ünï"], ["", "", ""]]


def test_rest_answers_and_every_error_status(served):
    toy, _, base = served
    model = f"{base}/v1/models/toy"
    status, rows = http(f"{model}:predict", {"instances": PADDED})
    assert status == 200
    got = [[(i, s) for i, s in zip(r["item_ids"], r["scores"]) if i] for r in rows["predictions"]]
    assert_same_recommendations(got, [[(i, s) for i, s in row if i] for row in toy.expected(PADDED)])
    assert http(model)[1]["model_version_status"][0]["state"] == "AVAILABLE"
    assert set(http(f"{model}/versions/1/metadata")[1]["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default",
        "embed",
    }
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = [
        # (url, body, method, HTTP status, a word of the error)
        (f"{base}/v1/models/nope:predict", {"instances": PADDED}, None, 404, "nope"),
        (f"{base}/v1/models/nope", None, None, 404, "nope"),
        (f"{base}/v1/models/nope/metadata", None, None, 404, "nope"),
        (f"{model}/versions/7:predict", {"instances": PADDED}, None, 404, "7"),
        (f"{model}/versions/7", None, None, 404, "7"),
        (f"{model}/versions/7/metadata", None, None, 404, "7"),
        (f"{base}/v2/elsewhere", None, None, 404, "endpoint"),
        (f"{model}:predict", {"signature_name": "nope", "instances": PADDED}, None, 400, "nope"),
        (f"{model}:predict", {"instances": ["a01", "a02"]}, None, 400, "rank"),  # rank-1 input
        (f"{model}:predict", {"instances": []}, None, 400, "non-empty"),
        (f"{model}:predict", {"instances": [["a01", "a02"], ["a03"]]}, None, 400, "pad"),
        (f"{model}:predict", {"instances": [[1, 2]]}, None, 400, "int"),
        (f"{model}:predict", {"instances": [{"hist": ["a01"]}]}, None, 400, "hist"),
        (f"{model}:predict", {"rows": PADDED}, None, 400, "instances"),
        (f"{model}:predict", b"", None, 400, "JSON object"),
        (f"{model}:predict", b"{not json", None, 400, "malformed JSON"),
        (f"{model}:predict", b'{"instances": [["\xff\xfe"]]}', None, 400, "malformed JSON"),
        (f"{model}:predict", deep[:1500] + deep[-1500:], None, 400, "malformed JSON"),
        (f"{model}:predict", {"instances": [["a01"]] * 9}, None, 400, "--max_batch_size"),
        (f"{model}:predict", {"instances": [["a01"] * 17]}, None, 400, "--max_history_length"),
        (f"{model}:predict", {"instances": [["a01"] * 16] * 8}, None, 429, "--max_elements"),
        (f"{model}:predict", {"instances": [["a01" * 2000]]}, None, 413, ""),
        (f"{model}:predict", None, "GET", 405, "POST"),
        (model, {"instances": PADDED}, None, 405, "GET"),
    ]
    for url, body, method, code, word in cases:
        status, answer = http(url, body, method)
        shown = body if isinstance(body, dict) else ""
        assert (status, word in answer["error"]) == (code, True), (url, shown, answer)


def test_rest_malformed_headers_get_400_and_stalled_bodies_hold_no_worker(served):
    _, _, base = served
    path = "/v1/models/toy:predict"
    for length in (b"abc", b"-1", b"1e3"):
        head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
        answer = raw_http(base, head)
        assert answer.startswith(b"HTTP/1.1 400"), (length, answer[:200])
    # more half-sent bodies than REST worker threads (2): a complete request is still answered
    stalled = []
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=20)
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"instan")
        stalled.append(s)
    try:
        status, rows = http(f"{base}{path}", {"instances": [["a01"]]})
        assert status == 200 and len(rows["predictions"]) == 1
        # --rest_timeout_seconds=1: the server hangs up on each stalled connection (recv returns b"")
        for s in stalled:
            assert s.recv(1024) in (b"", b"HTTP/1.1 408")
    finally:
        for s in stalled:
            s.close()


def _stubs(target: str):
    channel = grpc.insecure_channel(target)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def _history(shape: list[int], values: list[bytes]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    proto.string_val.extend(values)
    return proto


def _request(**changes):
    request = client.predict_request([["a01", "a02"]], model_name="toy")
    for key, value in changes.items():
        if key == "history":
            request.inputs[HISTORY].CopyFrom(value)
        elif key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


GRPC_CASES = [
    ("model", _request(name="nope"), grpc.StatusCode.NOT_FOUND, "'nope'"),
    ("version", _request(version=7), grpc.StatusCode.NOT_FOUND, "version 7"),
    ("label", _request(version_label="stable"), grpc.StatusCode.INVALID_ARGUMENT, "label"),
    ("signature", _request(signature_name="nope"), grpc.StatusCode.INVALID_ARGUMENT, "'nope'"),
    ("dtype", _request(history=tf.make_tensor_proto(np.array([[1, 2]]))), grpc.StatusCode.INVALID_ARGUMENT, "INT64"),
    ("rank1", _request(history=_history([2], [b"a01", b"a02"])), grpc.StatusCode.INVALID_ARGUMENT, "rank 1"),
    # 41 bytes that TensorFlow would expand to 2,000,000 strings: refused before anything is allocated
    ("expands", _request(history=_history([1, 2_000_000], [b"a01"])), grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
    ("too_many_values", _request(history=_history([1, 1], [b"a01", b"a02"])), grpc.StatusCode.INVALID_ARGUMENT, "got"),
    ("negative_dim", _request(history=_history([-1, 2], [b"a01", b"a02"])), grpc.StatusCode.INVALID_ARGUMENT, "negati"),
    ("batch", _request(history=_history([9, 1], [b"a01"] * 9)), grpc.StatusCode.INVALID_ARGUMENT, "--max_batch_size"),
    ("length", _request(history=_history([1, 17], [b"a01"] * 17)), grpc.StatusCode.INVALID_ARGUMENT, "--max_history_"),
    ("elements", _request(history=_history([8, 16], [b"a01"] * 128)), grpc.StatusCode.RESOURCE_EXHAUSTED, "--max_elem"),
    # over --grpc_max_message_bytes=65536: gRPC itself refuses it
    ("message", _request(history=_history([1, 1], [b"a" * 70_000])), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
]


@pytest.mark.parametrize("name, request_, code, word", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_status_codes(served, name, request_, code, word):
    _, target, _ = served
    predict, _ = _stubs(target)
    with pytest.raises(grpc.RpcError) as failure:
        predict.Predict(request_, timeout=20)
    assert failure.value.code() == code, failure.value.details()
    assert word in failure.value.details()


def test_garbage_grpc_messages_are_one_warning_line_each_and_invalid_argument(served, cli):
    """gRPC's own handling logs "Exception deserializing request!" with a traceback and answers INTERNAL."""
    _, target, _ = served
    log = cli[4]
    before = log.read_text().count("refused a malformed")
    with grpc.insecure_channel(target) as channel:
        for service, method in (("PredictionService", "Predict"), ("ModelService", "GetModelStatus")):
            method = f"/tensorflow.serving.{service}/{method}"
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as failure:
                call(b"\xff\xff\xff\xff", timeout=20)
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    lines = [line for line in log.read_text().splitlines() if "refused a malformed" in line]
    assert len(lines) - before == 2 and all(" WARNING " in line for line in lines)
    # (the served fixture checks that no traceback was logged)


def test_the_log_names_the_version_loaded(served, cli):
    lines = cli[4].read_text().splitlines()
    assert sum(" INFO tfseq.serving: loaded toy version 1 from " in line for line in lines) == 1, lines[-20:]


def test_grpc_answers_metadata_status_and_unimplemented(served):
    toy, target, _ = served
    histories = [["a01", "a02"], ["x y", "unknown"], []]
    got = client.recommend(histories, target=target, model_name="toy")
    assert_same_recommendations(got, [[(i, s) for i, s in row if i] for row in toy.expected(histories)])
    predict, models = _stubs(target)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "toy"}, metadata_field=["signature_def"]
    )
    assert predict.GetModelMetadata(metadata, timeout=20).model_spec.version.value == 1
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"}), timeout=20)
    assert [s.version for s in status.model_version_status] == [1]
    failures = [
        (lambda: predict.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "nope"}, metadata_field=["signature_def"])), grpc.StatusCode.NOT_FOUND),
        (lambda: predict.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "toy"}, metadata_field=["weights"])), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "toy", "version": {"value": 9}})), grpc.StatusCode.NOT_FOUND),
        (lambda: models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "nope"})), grpc.StatusCode.NOT_FOUND),
        (lambda: predict.Classify(classification_pb2.ClassificationRequest()), grpc.StatusCode.UNIMPLEMENTED),
    ]
    for call, code in failures:
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert failure.value.code() == code


def test_an_empty_model_base_path_is_warned_about(tmp_path):
    (tmp_path / "toy").mkdir()
    log = tmp_path / "server.log"
    process, line = start_server(tmp_path / "toy", log, "--port=0", "--poll_seconds=60")
    try:
        assert "gRPC on 127.0.0.1:" in line, log.read_text()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert "has no version folders" in log.read_text()


def test_flags_refuse_abbreviations_and_disagreeing_rest_ports(capsys):
    for argv in (
        ["--model_base_path", "x", "--model_name", "toy", "--max_batch", "3"],
        ["--model_base_path", "x", "--model_name", "toy", "--rest_port", "1", "--rest_api_port", "2"],
        ["--model_base_path", "x", "--model_name", "toy", "--max_elements", "0"],
    ):
        with pytest.raises(SystemExit) as exit_:
            server.main(argv)
        assert exit_.value.code == 2
    args = server.build_parser().parse_args(["--model_base_path", "x", "--model_name", "toy"])
    assert (args.max_batch_size, args.max_history_length, args.max_elements) == (1024, 10_000, 262_144)
    assert args.grpc_max_message_bytes == 64 * 1024 * 1024 and args.rest_api_port == 0


def _imports(module: str) -> set[str]:
    tree = ast.parse((REPO / "serving" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_servable_is_transport_free_and_rest_never_imports_the_grpc_front_end():
    assert "serving.server" not in _imports("rest")
    assert not {"serving.server", "serving.rest", "waitress"} & _imports("servable")
    # the one ServingError class is the one both front ends catch
    from serving import rest, servable

    assert rest.ServingError is servable.ServingError is server.ServingError


def test_grpc_accepts_messages_over_4_mb_by_default_as_tf_serving_does(tmp_path):
    toy = make_toy(tmp_path / "data")
    toy.export(tmp_path / "serving")
    handle = server.serve(str(tmp_path / "serving" / "toy"), "toy", port=0, poll_seconds=60)
    try:
        histories = [[f"a{i % 23 + 1:02d}" + " " * 50 for i in range(150)] + ["a05"]] * 600  # ~5 MB
        request = client.predict_request(histories, model_name="toy")
        assert request.ByteSize() > 4 * 1024 * 1024
        got = client.recommend(histories[:1], target=handle.target, model_name="toy")
        with client.RecommenderClient(handle.target, "toy", timeout_s=60) as c:
            response = c.predict(request)
        assert_same_recommendations(client.parse_recommendations(response)[599:], got)
    finally:
        handle.stop()
