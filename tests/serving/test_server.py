"""serving/server.py, rest.py, client.py on a toy servable: answers, status codes, versions."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from serving import client, server
from serving.signature import HISTORY, SCORES, WARMUP_FILE
from tests.serving.common import assert_same_recommendations, make_toy

State = get_model_status_pb2.ModelVersionStatus.State
HISTORIES = [
    ["a01", "a02"],
    ["x y", "unknown", "ünï"],
    [],
    ["a03"] * 6,
    ["12", "Z-9", "a20", "a21", "a22"],
]


def without_padding(answers):
    return [[(i, s) for i, s in row if i] for row in answers]


def stubs(target: str):
    channel = grpc.insecure_channel(target)
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
        channel,
    )


def good_request(**spec) -> predict_pb2.PredictRequest:
    return client.predict_request([["a01", "a02"]], model_name="toy", **spec)


def test_predict_answers_equal_the_numpy_oracle(toy_served):
    toy, handle = toy_served
    got = client.recommend(HISTORIES, target=handle.target, model_name="toy")
    assert_same_recommendations(got, without_padding(toy.expected(HISTORIES)))
    one = client.recommend([["a07"]], target=handle.target, model_name="toy", version=1)
    assert_same_recommendations(one, toy.expected([["a07"]]))


def test_response_names_the_version_and_honours_output_filter(toy_served):
    _, handle = toy_served
    predict, _, channel = stubs(handle.target)
    request = good_request()
    request.output_filter.append(SCORES)
    response = predict.Predict(request, timeout=10)
    assert list(response.outputs) == [SCORES]
    assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 1)
    assert response.model_spec.signature_name == "serving_default"
    channel.close()


def _tensor(values, dtype=None):
    return tf.make_tensor_proto(np.array(values, dtype=dtype))


def _bad(field: str):
    request = good_request()
    if field == "model":
        request.model_spec.name = "nope"
    elif field == "version":
        request.model_spec.version.value = 42
    elif field == "label":
        request.model_spec.version_label = "stable"
    elif field == "signature":
        request.model_spec.signature_name = "recommend_v2"
    elif field == "input_name":
        request.inputs["hist"].CopyFrom(request.inputs.pop(HISTORY))
    elif field == "no_input":
        del request.inputs[HISTORY]
    elif field == "extra_input":
        request.inputs["user"].CopyFrom(_tensor([["u1"]], object))
    elif field == "dtype":
        request.inputs[HISTORY].CopyFrom(_tensor([[1, 2]], np.int64))
    elif field == "rank1":
        request.inputs[HISTORY].CopyFrom(_tensor(["a01", "a02"], object))
    elif field == "rank3":
        request.inputs[HISTORY].CopyFrom(_tensor([[["a01"]]], object))
    elif field == "malformed":
        request.inputs[HISTORY].string_val.extend(
            [b"a03", b"a04", b"a05"]
        )  # 5 values for shape [1, 2]
    elif field == "output_filter":
        request.output_filter.append("logits")
    return request


@pytest.mark.parametrize(
    "field, code, words",
    [
        ("model", grpc.StatusCode.NOT_FOUND, ["'nope'", "'toy'"]),
        ("version", grpc.StatusCode.NOT_FOUND, ["42", "serving version 1"]),
        ("label", grpc.StatusCode.INVALID_ARGUMENT, ["label", "stable"]),
        ("signature", grpc.StatusCode.INVALID_ARGUMENT, ["recommend_v2", "embed, serving_default"]),
        ("input_name", grpc.StatusCode.INVALID_ARGUMENT, ["'hist'", "history"]),
        ("no_input", grpc.StatusCode.INVALID_ARGUMENT, ["missing", "'history'"]),
        ("extra_input", grpc.StatusCode.INVALID_ARGUMENT, ["'user'"]),
        ("dtype", grpc.StatusCode.INVALID_ARGUMENT, ["DT_STRING", "DT_INT64", "'history'"]),
        ("rank1", grpc.StatusCode.INVALID_ARGUMENT, ["rank 2", "rank 1"]),
        ("rank3", grpc.StatusCode.INVALID_ARGUMENT, ["rank 2", "rank 3"]),
        ("malformed", grpc.StatusCode.INVALID_ARGUMENT, ["malformed", "'history'"]),
        ("output_filter", grpc.StatusCode.INVALID_ARGUMENT, ["'logits'", "item_ids, scores"]),
    ],
)
def test_bad_predict_requests_get_their_status_code_and_a_message(toy_served, field, code, words):
    _, handle = toy_served
    predict, _, channel = stubs(handle.target)
    with pytest.raises(grpc.RpcError) as failure:
        predict.Predict(_bad(field), timeout=10)
    assert failure.value.code() == code, failure.value.details()
    for word in words:
        assert word in failure.value.details()
    assert predict.Predict(good_request(), timeout=10).outputs[SCORES].tensor_shape.dim[0].size == 1
    channel.close()


def test_metadata_and_status(toy_served):
    _, handle = toy_served
    predict, models, channel = stubs(handle.target)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "toy"
    response = predict.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "embed"}
    assert (
        signatures.signature_def["serving_default"].outputs["item_ids"].tensor_shape.dim[1].size
        == 5
    )

    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"})
    )
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, State.AVAILABLE)]

    failures = [
        (
            lambda: predict.GetModelMetadata(
                get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec={"name": "toy"}, metadata_field=["weights"]
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: predict.GetModelMetadata(
                get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec={"name": "other"}, metadata_field=["signature_def"]
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: models.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "other"})
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: models.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(
                    model_spec={"name": "toy", "version": {"value": 9}}
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: predict.Classify(classification_pb2.ClassificationRequest()),
            grpc.StatusCode.UNIMPLEMENTED,
        ),
    ]
    for call, code in failures:
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert failure.value.code() == code
    channel.close()


def test_concurrent_requests_are_each_answered_correctly(toy_served):
    toy, handle = toy_served
    rng = np.random.default_rng(3)
    batches = [
        [
            list(rng.choice(toy.raw_ids[1:] + ["unknown"], size=rng.integers(0, 7)))
            for _ in range(rng.integers(1, 4))
        ]
        for _ in range(64)
    ]
    wrong: list[str] = []

    def work(worker: int) -> None:
        with client.RecommenderClient(handle.target, "toy", timeout_s=10) as c:
            for batch in batches[worker::8]:
                try:
                    assert_same_recommendations(
                        c.recommend(batch), without_padding(toy.expected(batch))
                    )
                except Exception as e:  # collected and asserted below, in the test thread
                    wrong.append(f"{batch}: {e!r}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:3]


def _http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_answers_equal_grpc(toy_served):
    _, handle = toy_served
    base = f"http://127.0.0.1:{handle.rest_port}/v1/models/toy"
    width = max(len(h) for h in HISTORIES)
    padded = [h + [""] * (width - len(h)) for h in HISTORIES]
    grpc_answers = client.recommend(HISTORIES, target=handle.target, model_name="toy")

    status, rows = _http(f"{base}:predict", {"instances": padded})
    assert status == 200
    assert [
        [(i, s) for i, s in zip(r["item_ids"], r["scores"]) if i] for r in rows["predictions"]
    ] == grpc_answers
    status, columns = _http(f"{base}/versions/1:predict", {"inputs": {"history": padded}})
    assert status == 200
    out = columns["outputs"]
    assert [list(zip(i, s)) for i, s in zip(out["item_ids"], out["scores"])] == grpc_answers
    status, named = _http(
        f"{base}:predict", {"signature_name": "embed", "instances": [{"history": padded[0]}]}
    )
    assert status == 200 and len(named["predictions"][0]) == 8

    assert _http(base)[1]["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = _http(f"{base}/metadata")[1]["metadata"]["signature_def"]["signature_def"]
    assert set(metadata) == {"serving_default", "embed"}

    for url, body, code, word in [
        (
            f"http://127.0.0.1:{handle.rest_port}/v1/models/nope:predict",
            {"instances": padded},
            404,
            "nope",
        ),
        (f"{base}/versions/5:predict", {"instances": padded}, 404, "5"),
        (f"{base}:predict", {"instances": HISTORIES}, 400, "pad"),  # ragged rows
        (f"{base}:predict", {"instances": [[1, 2]]}, 400, "int"),
        (f"{base}:predict", {"signature_name": "nope", "instances": padded}, 400, "nope"),
        (f"{base}:predict", {"instances": [{"hist": ["a01"]}]}, 400, "hist"),
        (f"{base}:predict", {"rows": padded}, 400, "instances"),
        (
            f"{base}:predict",
            {"instances": [["a01"]], "inputs": {"history": [["a01"]]}},
            400,
            "exactly one",
        ),
    ]:
        status, body = _http(url, body)
        assert (status, word in body["error"]) == (code, True), (url, status, body)


def test_client_cli_prints_the_ranking(toy_served, capsys):
    toy, handle = toy_served
    argv = [
        "--target",
        handle.target,
        "--model_name",
        "toy",
        "--history",
        "a01 a02",
        "--history",
        "",
        "--k",
        "3",
    ]
    assert client.main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    want = toy.expected([["a01", "a02"], []])
    assert [[(r["item_id"], r["score"]) for r in row] for row in rows] == [
        [(i, pytest.approx(s, rel=1e-5)) for i, s in w[:3]] for w in want
    ]
    assert client.main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "history: a01 a02" and table[1].split()[:2] == ["1", want[0][0][0]]
    assert client.main(["--target", handle.target, "--model_name", "nope", "--history", "a01"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_retries_until_the_server_is_up_and_honours_its_deadline(toy, tmp_path):
    toy.export(tmp_path / "serving")
    port = _free_port()
    target = f"127.0.0.1:{port}"
    with pytest.raises(grpc.RpcError) as failure:
        client.recommend([["a01"]], target=target, model_name="toy", retries=0, timeout_s=2)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE

    started: list[server.ServerHandle] = []
    timer = threading.Timer(
        0.5,
        lambda: started.append(
            server.serve(str(tmp_path / "serving" / "toy"), "toy", port=port, poll_seconds=60)
        ),
    )
    timer.start()
    try:
        got = client.recommend([["a01"]], target=target, model_name="toy", retries=8, timeout_s=2)
        assert_same_recommendations(got, toy.expected([["a01"]]))
        with pytest.raises(grpc.RpcError) as failure:
            # A deadline shorter than any round trip: on a loaded machine a 1 ms deadline
            # can fire after the answer has already arrived, a 1 us one cannot.
            client.recommend(
                [["a01", "a02"]] * 1000, target=target, model_name="toy", retries=1, timeout_s=1e-6
            )
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        timer.join()
        for handle in started:
            handle.stop()


def _version_of(answer_by_version: dict[int, list], got: list) -> int | None:
    for version, want in answer_by_version.items():
        try:
            assert_same_recommendations(got, want)
            return version
        except AssertionError:
            continue
    return None


def test_new_version_is_served_after_it_loads_with_no_failed_request(tmp_path):
    toy_v1 = make_toy(tmp_path / "v1", seed=1)
    toy_v2 = make_toy(tmp_path / "v2", seed=2)  # same vocabulary, other weights
    serving_dir = tmp_path / "serving"
    toy_v1.export(serving_dir)
    handle = server.serve(str(serving_dir / "toy"), "toy", port=0, poll_seconds=0.1)
    expected = {1: toy_v1.expected(HISTORIES), 2: toy_v2.expected(HISTORIES)}
    assert expected[1] != expected[2]
    seen: dict[int, list[int]] = {w: [] for w in range(6)}
    errors: list[str] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with client.RecommenderClient(handle.target, "toy", timeout_s=10, retries=0) as c:
            while not stop.is_set():
                try:
                    request = client.predict_request(HISTORIES, model_name="toy")
                    response = c.predict(request)
                    version = response.model_spec.version.value
                    answer = client.parse_recommendations(response)
                    assert (
                        _version_of({version: without_padding(expected[version])}, answer)
                        == version
                    )
                    seen[worker].append(version)
                except Exception as e:  # collected and asserted in the test thread
                    errors.append(repr(e))

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        toy_v2.export(serving_dir)
        deadline = time.monotonic() + 30
        while not all(s and s[-1] == 2 for s in seen.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert not errors, errors[:3]
        for versions in seen.values():
            assert versions[0] == 1 and versions[-1] == 2
            assert versions == sorted(versions)  # never back to 1 once 2 answered
        _, models, channel = stubs(handle.target)
        status = models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"})
        )
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (2, State.AVAILABLE),
            (1, State.END),
        ]
        channel.close()
    finally:
        handle.stop()


def _failures_logged(caplog, version: int) -> int:
    return sum(f"failed to load toy version {version} " in r.getMessage() for r in caplog.records)


def test_broken_versions_keep_the_old_one_serving_and_are_retried_only_when_their_files_change(
    toy, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="tfseq.serving")
    model_dir = tmp_path / "serving" / "toy"
    toy.export(tmp_path / "serving")
    manager = server.ModelManager("toy", str(model_dir), poll_seconds=0.001)  # backoff from 1 ms
    assert manager.poll_once() == 1
    (model_dir / ".3.tmp-abcd").mkdir()  # an export in progress: not a version
    (model_dir / "2").mkdir()
    (model_dir / "2" / "saved_model.pb").write_bytes(b"not a protobuf")
    assert manager.poll_once() == 1
    (version, status), *_ = manager.statuses("toy", 2)
    assert (version, status.state, status.attempts) == (2, State.END, 1)
    assert status.error_code != 0 and status.error_message
    # unchanged files: not retried, and not logged again, however many polls (the backoff is long over)
    time.sleep(0.05)
    for _ in range(5):
        assert manager.poll_once() == 1
    assert manager.statuses("toy", 2)[0][1].attempts == 1 and _failures_logged(caplog, 2) == 1
    assert 3 not in dict(manager.statuses("toy"))

    # a version whose warm-up request fails is not served either
    shutil.copytree(model_dir / "1", model_dir / "4")
    bad = client.predict_request([["a01"]], model_name="toy", signature="no_such_signature")
    with tf.io.TFRecordWriter(str(model_dir / "4" / WARMUP_FILE)) as writer:
        writer.write(
            prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=bad)).SerializeToString()
        )
    assert manager.poll_once() == 1
    assert "warm-up request 0" in manager.statuses("toy", 4)[0][1].error_message

    # version 2's files change (the copy completes): it is retried and served, version 4 still skipped
    shutil.rmtree(model_dir / "2")
    shutil.copytree(model_dir / "1", model_dir / "2")
    assert manager.poll_once() == 2
    assert manager.statuses("toy", 4)[0][1].attempts == 1 and _failures_logged(caplog, 4) == 1

    # a good new version takes over; deleting it rolls back to the highest loadable one
    toy.export(tmp_path / "serving", version=5)
    assert manager.poll_once() == 5
    shutil.rmtree(model_dir / "5")
    assert manager.poll_once() == 2
    assert manager.servable("toy").version == 2


def test_a_version_copied_in_file_by_file_is_served_once_complete(toy, tmp_path, caplog):
    """TF Serving keeps retrying a version whose files change; tfseq used to give up after 3 attempts."""
    caplog.set_level(logging.INFO, logger="tfseq.serving")
    exported = toy.export(tmp_path / "export")
    model_dir = tmp_path / "serving" / "toy"
    shutil.copytree(exported, model_dir / "1")
    manager = server.ModelManager("toy", str(model_dir), poll_seconds=0.001)
    assert manager.poll_once() == 1
    files = sorted(p for p in Path(exported).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name != "saved_model.pb")  # the graph first: every partial copy fails to load
    for number, source in enumerate(files):
        target = model_dir / "2" / source.relative_to(exported)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.utime(target, ns=(number + 1, number + 1))  # a distinct mtime per step, as a slow copy has
        if number < len(files) - 1:
            time.sleep(0.002 * 2**min(number, 8))  # past the backoff of the attempts so far
            assert manager.poll_once() == 1
    failures = _failures_logged(caplog, 2)
    assert failures >= 4  # more than the 3 attempts the manager used to allow
    deadline = time.monotonic() + 30
    while manager.poll_once() != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert manager.servable("toy").version == 2
    assert [(v, s.state) for v, s in manager.statuses("toy")] == [(2, State.AVAILABLE), (1, State.END)]
    got = manager.servable("toy").run("serving_default", {HISTORY: np.array([[b"a01", b"a02"]], dtype=object)})
    np.testing.assert_allclose(got[SCORES][0], [s for _, s in toy.expected([["a01", "a02"]])[0]], rtol=1e-5)


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -np.inf, 0.25]], np.float32),
        np.array([[b"a", "ü".encode()], [b"", b"x y"]], dtype=object),
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([True, False]),
        np.zeros((0, 10), np.float32),
        np.array(3.0, np.float64),
    ],
)
def test_response_tensors_read_back_identically(array):
    back = tf.make_ndarray(server.tensor_proto(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_a_missing_model_base_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        server.ModelManager("toy", str(tmp_path / "missing_dir"))


class _UserDefault(tf.Module):
    """A signature whose ``user_id`` input has a default (the empty vector), as exports of user models have."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([None], tf.string, name="user_id"),
        ]
    )
    def count(self, history, user_id=tf.constant([], tf.string)):
        known = tf.reduce_sum(tf.cast(tf.not_equal(history, ""), tf.int32), axis=1)  # [B]
        return {"known": known, "users": tf.fill(tf.shape(known), tf.size(user_id))}  # [B], [B]


def test_an_input_left_out_is_filled_from_its_signature_default(tmp_path):
    from serving import rest

    module = _UserDefault()
    tf.saved_model.save(module, str(tmp_path / "m" / "1"), signatures={"serving_default": module.count})
    # 5 elements per request: history [2, 2] alone (4) passes, with 2 users (6) it does not
    manager = server.ModelManager("m", str(tmp_path / "m"), poll_seconds=60, limits=server.Limits(max_elements=5))
    assert manager.poll_once() == 1

    def ask(users=None):
        request = client.predict_request([["a", "b"], ["c"]], model_name="m", signature="serving_default")
        if users is not None:
            request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.array(users, dtype=object)))
        response = server.predict(manager, request)
        return [tf.make_ndarray(response.outputs[k]).tolist() for k in ("known", "users")]

    # history [["a", "b"], ["c", ""]]: 2 and 1 known entries; the default user_id holds 0 users
    assert ask() == [[2, 1], [0, 0]]
    with pytest.raises(server.ServingError, match="6 elements") as failure:
        ask(["u1", "u2"])
    assert failure.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    manager = server.ModelManager("m", str(tmp_path / "m"), poll_seconds=60)
    manager.poll_once()
    assert ask(["u1", "u2"]) == [[2, 1], [2, 2]]
    with pytest.raises(server.ServingError, match="batch size"):
        ask(["u1", "u2", "u3"])
    answer = rest.rest_predict(manager, "m", None, {"instances": [["a", "b"], ["c", ""]]})
    assert answer == {"predictions": [{"known": 2, "users": 0}, {"known": 1, "users": 0}]}
