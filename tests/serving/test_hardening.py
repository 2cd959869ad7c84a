"""Hardening of the model server (issue 23): slow REST clients, odd version folders, garbage and oversized
gRPC requests, flag ranges, load/unload log lines, an explicit empty ``user_id``, the client's backoff cap."""

from __future__ import annotations

import gc
import json
import logging
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from serving import client, export, rest, server
from serving.signature import HISTORY, MAX_VERSION, SCORES, USER_ID, list_versions, version_folders
from tests.serving.common import TOY_RAW_IDS, make_toy

REPO = Path(__file__).resolve().parents[2]
PREDICT_PATH = "/v1/models/toy:predict"
State = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    """The toy model exported as version 1; its model folder."""
    root = tmp_path_factory.mktemp("hardening")
    make_toy(root / "data").export(root / "serving")
    return root / "serving" / "toy"


def _post(port: int, body: dict, timeout: float = 20) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{PREDICT_PATH}", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed ``s`` (end of stream or reset); never blocks."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True


# ---- 1. slow REST clients ------------------------------------------------------------------------
def test_rest_closes_requests_that_trickle_past_the_request_deadline_and_answers_a_good_one(toy_dir):
    """Six clients each send a request line, then a header line every quarter second: never idle, never done.

    With 4 connections allowed, they would hold every one of them and keep the good request in the listen
    backlog; the idle timeout (30 s) never fires for them. The request deadline (1 s) closes each.
    """
    options = rest.RestOptions(max_connections=4, request_timeout_s=1.0, timeout_s=30.0, threads=2)
    handle = server.serve(str(toy_dir), "toy", port=0, rest_port=0, poll_seconds=0, rest_options=options)
    slow: list[socket.socket] = []
    try:
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", handle.rest_port), timeout=5)
            s.sendall(f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: x\r\n".encode())
            slow.append(s)
        good: list[tuple[int, dict]] = []
        asker = threading.Thread(target=lambda: good.append(_post(handle.rest_port, {"instances": [["a01"]]})))
        asker.start()
        open_ = set(range(len(slow)))
        give_up = time.monotonic() + 15
        while open_ and time.monotonic() < give_up:
            for index in sorted(open_):
                if _closed_by_server(slow[index]):
                    open_.discard(index)
                    continue
                try:
                    slow[index].sendall(b"X-Slow: 1\r\n")
                except OSError:
                    open_.discard(index)
            time.sleep(0.25)
        asker.join(timeout=20)
        assert not open_, f"connections {sorted(open_)} still open: the request deadline did not close them"
        assert good and good[0][0] == 200 and len(good[0][1]["predictions"]) == 1, good
    finally:
        for s in slow:
            s.close()
        handle.stop()


def test_one_client_address_holds_at_most_its_connection_cap(toy_dir, caplog):
    caplog.set_level(logging.INFO, logger="tfseq.serving")
    options = rest.RestOptions(max_connections=16, max_connections_per_client=2)
    handle = server.serve(str(toy_dir), "toy", port=0, rest_port=0, poll_seconds=0, rest_options=options)
    idle = [socket.create_connection(("127.0.0.1", handle.rest_port), timeout=10) for _ in range(2)]
    try:
        for _ in range(2):  # over the cap: answered 503 and closed at once, not held
            with socket.create_connection(("127.0.0.1", handle.rest_port), timeout=10) as extra:
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
            assert b"at most 2" in answer
        refusals = [r for r in caplog.records if "refusing REST connections from 127.0.0.1" in r.getMessage()]
        assert len(refusals) == 1  # one line for the burst, not one per connection
        idle.pop().close()
        for _ in range(50):  # until the server has seen the close
            status, body = _post(handle.rest_port, {"instances": [["a01"]]})
            if status != 503:
                break
            time.sleep(0.05)
        assert status == 200 and len(body["predictions"]) == 1, (status, body)
    finally:
        for s in idle:
            s.close()
        handle.stop()


def test_rest_bursts_log_no_task_queue_warnings(toy_served, caplog):
    """waitress warns "Task queue depth" for every request queued behind busy threads: silenced."""
    _, handle = toy_served
    assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_post(handle.rest_port, {"instances": [["a01"]]})[0]))
        for _ in range(24)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 24
    assert not [r for r in caplog.records if "Task queue depth" in r.getMessage()]


# ---- 3. names in the model folder ----------------------------------------------------------------
def test_version_folders_are_ascii_digit_names_within_int64():
    """TF Serving parses each child's name with strings::safe_strto64, keeps the last of a version's names in
    sorted order, and loads from the child itself: 0003 is version 3, from 0003/."""
    folders, skipped = version_folders(
        ["1", "0003", "3", "0007", "²", "٣", "abc", "1e3", " 8", "-9", ".5.tmp-abcd", str(MAX_VERSION),
         str(MAX_VERSION + 1)]
    )
    assert folders == {1: "1", 3: "3", 7: "0007", MAX_VERSION: str(MAX_VERSION)}
    # safe_strto64 would also read " 8" and "-9"; they are not versions here (version_folders' docstring)
    assert set(skipped) == {"0003", "²", "٣", "abc", "1e3", " 8", "-9", str(MAX_VERSION + 1)}
    assert "loaded from 3/" in skipped["0003"]


def test_names_that_are_not_versions_are_ignored_with_one_warning_each(toy_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfseq.serving")
    model_dir = tmp_path / "toy"
    shutil.copytree(toy_dir, model_dir)
    (model_dir / "²").mkdir()  # str.isdigit() says yes, int() says no
    (model_dir / "notes").mkdir()
    manager = server.ModelManager("toy", str(model_dir), poll_seconds=0)
    manager.start()  # refused to start before
    assert manager.served_version() == 1
    (model_dir / "٣").mkdir()  # created while the server runs
    (model_dir / "99999999999999999999").mkdir()  # past int64
    for _ in range(4):
        assert manager.poll_once() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("²", "notes", "٣", "99999999999999999999"):
        assert sum(f"ignoring {name!r}" in w for w in warnings) == 1, (name, warnings)
    assert not [r for r in caplog.records if r.exc_info]


def test_a_zero_padded_folder_is_the_version_its_digits_spell_as_in_tf_serving(toy_dir, tmp_path, caplog):
    """TF Serving's file system source parses a folder's name with strings::safe_strto64: 0003 is version 3."""
    caplog.set_level(logging.INFO, logger="tfseq.serving")
    model_dir = tmp_path / "toy"
    shutil.copytree(toy_dir, model_dir)
    manager = server.ModelManager("toy", str(model_dir), poll_seconds=60)
    assert manager.poll_once() == 1
    shutil.copytree(model_dir / "1", model_dir / "0003")
    assert manager.poll_once() == 3
    assert manager.servable("toy").path == str(model_dir / "0003")
    assert [(v, s.state) for v, s in manager.statuses("toy")] == [(3, State.AVAILABLE), (1, State.END)]
    # one line per load and per unload, naming the versions
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("loaded toy version 1 from ") for m in messages) == 1
    assert sum(m.startswith(f"loaded toy version 3 from {model_dir / '0003'}") for m in messages) == 1
    assert messages.count("unloaded toy version 1 (replaced by version 3)") == 1


# ---- 5, 7, 8: gRPC requests ----------------------------------------------------------------------
def _raw_call(target: str, method: str, payload: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as failure:
            call(payload, timeout=20)
    return failure.value


@pytest.mark.parametrize(
    "method",
    ["/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.ModelService/GetModelStatus"],
)
def test_garbage_grpc_messages_get_invalid_argument_and_one_warning_line(toy_served, caplog, method):
    _, handle = toy_served
    caplog.set_level(logging.INFO)
    for payload in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"garbage!"):
        error = _raw_call(handle.target, method, payload)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "malformed request" in error.details()
    refused = [r for r in caplog.records if "refused a malformed" in r.getMessage()]
    assert len(refused) == 3 and all(r.levelno == logging.WARNING for r in refused)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert client.recommend([["a01"]], target=handle.target, model_name="toy")  # still serving


def test_an_unknown_dtype_number_is_invalid_argument(toy_served):
    _, handle = toy_served
    request = client.predict_request([["a01"]], model_name="toy")
    request.inputs[HISTORY].dtype = 999  # protobuf enums are open: any number goes on the wire
    with client.RecommenderClient(handle.target, "toy", retries=0) as c:
        with pytest.raises(grpc.RpcError) as failure:
            c.predict(request)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert "999" in failure.value.details()


def test_one_id_is_bounded_by_max_id_bytes_over_grpc_and_rest(toy_served):
    _, handle = toy_served
    with client.RecommenderClient(handle.target, "toy", retries=0) as c:
        assert c.recommend([["a01", "x" * 256]])  # at the limit: an unknown ID, answered
        with pytest.raises(grpc.RpcError) as failure:
            c.recommend([["a01", "x" * 257]])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "257 bytes" in failure.value.details() and "--max_id_bytes" in failure.value.details()
    status, body = _post(handle.rest_port, {"instances": [["a01", "ü" * 129]]})  # 258 bytes in UTF-8
    assert status == 400 and "--max_id_bytes" in body["error"], body


def test_grpc_requests_over_64_mib_are_refused_by_default(toy_served):
    _, handle = toy_served
    request = client.predict_request([["a01"]], model_name="toy")
    request.inputs[HISTORY].string_val[0] = b"x" * (64 * 1024 * 1024)
    with client.RecommenderClient(handle.target, "toy", retries=0, timeout_s=60) as c:
        with pytest.raises(grpc.RpcError) as failure:
            c.predict(request)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure.value.details()


def _memory_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak since the last reset) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_memory() -> None:
    """Sets ``VmHWM`` back to the current RSS (Linux's ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as e:
        pytest.skip(f"the peak RSS cannot be reset here: {e}")


def test_an_id_over_max_id_bytes_is_refused_in_bounded_memory(toy_dir):
    """Issue 23, case 7: refusing a 16 MiB ID costs at most about one more copy of it, each time.

    The ID is measured where it lies in the parsed request, one value at a time; neither the tensor nor a
    serialization of it is built first (protobuf's ``ByteSize()`` serializes the whole tensor into a buffer
    grown by doubling: four times the ID at its peak; before the cap the ID was materialised and run).
    """
    size = 16 * 1024 * 1024
    manager = server.ModelManager("toy", str(toy_dir), poll_seconds=0)  # no poller thread allocating meanwhile
    assert manager.poll_once() == 1
    server.predict(manager, client.predict_request([["a01"]], model_name="toy"))  # first-call allocations
    request = client.predict_request([["a01", "x"]], model_name="toy")
    request.inputs[HISTORY].string_val[1] = b"x" * size
    gc.collect()
    _reset_peak_memory()
    start_kib = _memory_kib("VmRSS")
    for _ in range(3):  # memory kept from one refusal is reused by the next, never added to
        with pytest.raises(server.ServingError, match=f"{size} bytes long, over the limit of 256 bytes") as error:
            server.predict(manager, request)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "--max_id_bytes" in error.value.message
    peak_mib = (_memory_kib("VmHWM") - start_kib) / 1024
    assert peak_mib < 1.5 * size / 2**20, f"refusing a 16 MiB ID peaked {peak_mib:.1f} MiB over the start"


def _hrm_manager(tmp_path: Path) -> server.ModelManager:
    from tfseq.models import MODELS
    from tfseq.models.hrm import HRMConfig

    toy = make_toy(tmp_path / "data")
    tf.keras.utils.set_random_seed(3)
    model = MODELS.build(
        "hrm", HRMConfig(embedding_size=8, window=2, aggregation="max"), num_items=len(TOY_RAW_IDS), user_vocab_size=3
    )
    model.encode(tf.ones([1, 1], tf.int64))
    export.export_saved_model(
        model,
        item_vocab_path=toy.vocab_path,
        item_counts=toy.counts,
        serving_dir=str(tmp_path / "serving"),
        model_name="hrm",
        top_k=5,
        max_seq_len=4,
        user_index={"alice": 1, "bob": 2},
    )
    manager = server.ModelManager("hrm", str(tmp_path / "serving" / "hrm"), poll_seconds=60)
    assert manager.poll_once() == 1
    return manager


def test_an_explicit_empty_user_id_is_accepted_as_the_saved_model_accepts_it(tmp_path):
    """hrm's user_id default is the empty vector ("no users"); sending that vector is the same request."""
    manager = _hrm_manager(tmp_path)
    histories = [["a01", "a02"], ["a07"], []]
    alone = server.predict(manager, client.predict_request(histories, model_name="hrm"))
    empty = _with_users(histories, [])  # user_id of shape [0]
    answered = server.predict(manager, empty)
    for name in alone.outputs:
        np.testing.assert_array_equal(tf.make_ndarray(answered.outputs[name]), tf.make_ndarray(alone.outputs[name]))
    # the SavedModel itself takes the empty vector
    signature = tf.saved_model.load(manager.servable("hrm").path).signatures["serving_default"]
    direct = signature(history=tf.constant([["a01", "a02"]]), user_id=tf.constant([], tf.string))
    np.testing.assert_allclose(direct[SCORES].numpy()[0], tf.make_ndarray(alone.outputs[SCORES])[0], rtol=1e-6)
    padded = [h + [""] * (2 - len(h)) for h in histories]
    columns = rest.rest_predict(manager, "hrm", None, {"inputs": {"history": padded, "user_id": []}})
    np.testing.assert_allclose(columns["outputs"]["scores"], tf.make_ndarray(alone.outputs[SCORES]), rtol=1e-6)
    with pytest.raises(server.ServingError, match="batch size"):  # a non-empty user_id must still match
        server.predict(manager, _with_users(histories, ["alice", "bob"]))


def _with_users(histories: list[list[str]], users: list[str]) -> predict_pb2.PredictRequest:
    """The request for ``histories`` with a ``user_id`` input of exactly ``users`` (any count)."""
    request = client.predict_request(histories, model_name="hrm")
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add().size = len(users)
    proto.string_val.extend(u.encode() for u in users)
    request.inputs[USER_ID].CopyFrom(proto)
    return request


# ---- 6: flags ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--port", "70000", ["--port", "0..65535", "70000"]),
        ("--rest_port", "-1", ["--rest_port", "0..65535"]),
        ("--rest_api_port", "65536", ["--rest_api_port", "0..65535"]),
        ("--intra_op_threads", "-1", ["--intra_op_threads", "0..1024"]),
        ("--inter_op_threads", "100000", ["--inter_op_threads", "0..1024"]),
        ("--max_workers", "0", ["--max_workers", "1..1024"]),
        ("--poll_seconds", "nan", ["--poll_seconds", "finite"]),
        ("--poll_seconds", "inf", ["--poll_seconds", "finite"]),
        ("--file_system_poll_wait_seconds", "-inf", ["--file_system_poll_wait_seconds", "finite"]),
        ("--poll_seconds", "1e-9", ["--poll_seconds", "0.01..86400"]),  # would spin the CPU
        ("--max_batch_size", "0", ["--max_batch_size"]),
        ("--max_history_length", "3000000000", ["--max_history_length"]),
        ("--max_elements", "x", ["--max_elements", "'x'"]),
        ("--max_id_bytes", "0", ["--max_id_bytes"]),
        ("--grpc_max_message_bytes", str(2**31), ["--grpc_max_message_bytes"]),
        ("--rest_api_num_threads", "0", ["--rest_api_num_threads"]),
        ("--rest_max_body_bytes", "-5", ["--rest_max_body_bytes"]),
        ("--rest_timeout_seconds", "nan", ["--rest_timeout_seconds"]),
        ("--rest_request_timeout_seconds", "0", ["--rest_request_timeout_seconds", "0.1..86400"]),
        ("--rest_max_connections", "0", ["--rest_max_connections"]),
        ("--rest_max_connections_per_client", "0", ["--rest_max_connections_per_client"]),
    ],
)
def test_numeric_flags_out_of_range_are_one_error_line_and_exit_2(toy_dir, capsys, flag, value, words):
    with pytest.raises(SystemExit) as exit_:
        server.main(["--model_base_path", str(toy_dir), "--model_name", "toy", f"{flag}={value}"])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, err


def test_flags_in_range_parse():
    parser = server.build_parser()
    base = ["--model_base_path", "x", "--model_name", "toy"]
    for poll in ("0", "-1", "0.01", "86400"):
        assert parser.parse_args([*base, "--poll_seconds", poll]).poll_seconds == float(poll)
    args = parser.parse_args([*base, "--port", "65535", "--rest_port", "0", "--intra_op_threads", "0"])
    assert (args.port, args.rest_port, args.intra_op_threads) == (65535, 0, 0)
    assert (args.max_id_bytes, args.rest_request_timeout_seconds, args.rest_max_connections_per_client) == (
        256,
        30.0,
        64,
    )
    assert args.grpc_max_message_bytes == 64 * 1024 * 1024


def test_a_grpc_port_in_use_is_one_error_line_naming_it(toy_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "serving.server", "--model_base_path", str(toy_dir), "--model_name", "toy",
             f"--port={port}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert result.stdout == f"error: cannot bind gRPC port 127.0.0.1:{port}: it is in use, or not an address " \
        "of this machine\n"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "loaded toy version" not in result.stderr  # checked before loading anything


# ---- 8: the client's backoff ---------------------------------------------------------------------
class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def test_client_retry_backoff_doubles_up_to_its_cap(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(client.time, "sleep", waits.append)

    class Stub:
        def Predict(self, request, timeout):
            raise _Unavailable()

    with client.RecommenderClient("127.0.0.1:1", "toy", retries=9, backoff_s=0.1) as c:
        c._stub = Stub()
        with pytest.raises(_Unavailable):
            c.predict(predict_pb2.PredictRequest())
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0])
    assert client.MAX_BACKOFF_S == 2.0
    with pytest.raises(ValueError, match="max_backoff_s"):
        client.RecommenderClient("127.0.0.1:1", "toy", backoff_s=3.0, max_backoff_s=2.0)


def test_the_backoff_cap_is_a_client_flag_and_an_argument_of_recommend(monkeypatch, capsys):
    """Nothing listens on port 1: every attempt is UNAVAILABLE, and the waits show the cap that was passed on."""
    waits: list[float] = []
    monkeypatch.setattr(client.time, "sleep", waits.append)
    with pytest.raises(grpc.RpcError):
        client.recommend([["a01"]], target="127.0.0.1:1", model_name="toy", retries=3, backoff_s=0.5,
                         max_backoff_s=0.75)
    assert waits == [0.5, 0.75, 0.75]
    waits.clear()
    argv = ["--target", "127.0.0.1:1", "--model_name", "toy", "--history", "a01", "--retries", "4"]
    assert client.main([*argv, "--backoff_s", "0.25", "--max_backoff_s", "0.5"]) == 1
    assert waits == [0.25, 0.5, 0.5, 0.5]
    assert "UNAVAILABLE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--max_backoff_s", "nan"], ["--max_backoff_s", "finite"]),
        (["--max_backoff_s", "inf"], ["--max_backoff_s", "finite"]),
        (["--backoff_s", "-1"], ["--backoff_s", "0..3600"]),
        (["--backoff_s", "3", "--max_backoff_s", "2"], ["--backoff_s 3 is over --max_backoff_s 2"]),
        (["--timeout_s", "nan"], ["--timeout_s", "finite"]),
        (["--timeout_s", "0"], ["--timeout_s", "0.001..86400"]),
        (["--retries", "-1"], ["--retries", "0..100"]),
        (["--k", "0"], ["--k"]),
        (["--version", "-3"], ["--version"]),
    ],
)
def test_client_numeric_flags_out_of_range_exit_2_naming_the_flag(capsys, flags, words):
    with pytest.raises(SystemExit) as exit_:
        client.main(["--history", "a01", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_the_export_counts_versions_by_the_servers_rule(tmp_path):
    """The next version number the export picks ignores what the server ignores (issue 23, case 3)."""
    for name in ("²", "0003", "notes", ".4.tmp-abc"):
        (tmp_path / name).mkdir()
    assert list_versions(str(tmp_path)) == [3]


def test_two_pushes_to_one_name_at_once_both_land_on_their_own_versions(toy, tmp_path, monkeypatch):
    """Issue 23, case 5: the export that loses the race for version 1 takes version 2, not an error."""
    import json

    import tensorflow as tf

    save = tf.saved_model.save

    def save_then_lose_the_race(module, path, **kwargs):
        save(module, path, **kwargs)
        (tmp_path / "serving" / "toy" / "1").mkdir(exist_ok=True)  # another process published 1 meanwhile

    monkeypatch.setattr(tf.saved_model, "save", save_then_lose_the_race)
    path = toy.export(tmp_path / "serving")
    assert path.endswith("/toy/2")
    info = json.loads((tmp_path / "serving" / "toy" / "2" / "assets.extra" / "tfseq_export.json").read_text())
    assert info["version"] == 2
    assert not (tmp_path / "serving" / "toy" / "2" / "_owner.json").exists()  # the owner record stays behind
    assert sorted(p.name for p in (tmp_path / "serving" / "toy").iterdir()) == ["1", "2"]
    with pytest.raises(FileExistsError, match="never overwritten"):
        toy.export(tmp_path / "serving", version=1)
