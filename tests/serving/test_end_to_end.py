"""Pipeline -> Pusher -> server on a free port: gRPC/REST answers equal the Keras model's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from serving import client, export, server
from tests.serving.common import assert_same_recommendations, keras_top_k
from tfseq.data import vocab
from tfseq.experiment import load_trained_model


@pytest.fixture(scope="module")
def oracle(trained):
    """The trained model's own top-10 (+1 for ties) on 200 test histories, computed in process."""
    histories, indices = trained.test_histories(limit=200)
    model, config = load_trained_model(trained.trainer_dir, trained.transform_dir)
    raw_ids = vocab.read_vocabulary(os.path.join(trained.transform_dir, vocab.ITEM_VOCAB))
    return histories, keras_top_k(
        model, indices, raw_ids, top_k=10, max_seq_len=config.train.max_seq_len
    )


@pytest.fixture
def serving_copy(trained, tmp_path):
    """The Pusher's version 1 in a private serving directory (tests here add versions)."""
    model_dir = tmp_path / "serving" / "tfseq"
    shutil.copytree(trained.serving_dir / "tfseq" / "1", model_dir / "1")
    return model_dir


def test_grpc_and_rest_answers_equal_the_in_process_model(trained, oracle, serving_copy):
    histories, want = oracle
    handle = server.serve(str(serving_copy), "tfseq", port=0, rest_port=0, poll_seconds=60)
    try:
        with client.RecommenderClient(handle.target, "tfseq") as c:
            got = [
                row
                for start in range(0, 200, 50)
                for row in c.recommend(histories[start : start + 50])
            ]
        assert_same_recommendations(got, want)

        # the same 50 histories, padded the same way as the gRPC client did: identical answers
        width = max(len(h) for h in histories[:50])
        body = {"instances": [h + [""] * (width - len(h)) for h in histories[:50]]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{handle.rest_port}/v1/models/tfseq:predict",
            data=json.dumps(body).encode(),
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            rows = json.loads(reply.read())["predictions"]
        rest = [list(zip(r["item_ids"], r["scores"])) for r in rows]
        assert rest == [[(i, s) for i, s in row] for row in got[:50]]
    finally:
        handle.stop()


def test_a_second_export_while_serving_switches_versions_with_no_failed_request(
    trained, oracle, serving_copy
):
    histories, want = oracle
    batches = [histories[start : start + 25] for start in range(0, 200, 25)]
    expected = [want[start : start + 25] for start in range(0, 200, 25)]
    handle = server.serve(str(serving_copy), "tfseq", port=0, poll_seconds=0.2)
    versions: dict[int, list[int]] = {w: [] for w in range(4)}
    errors: list[str] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with client.RecommenderClient(handle.target, "tfseq", timeout_s=30, retries=0) as c:
            turn = worker
            while not stop.is_set():
                batch = turn % len(batches)
                turn += 1
                try:
                    response = c.predict(client.predict_request(batches[batch], model_name="tfseq"))
                    version = response.model_spec.version.value
                    k = {1: 10, 2: 5}[version]  # version 2 is the same model exported with top_k=5
                    answer = client.parse_recommendations(response)
                    assert_same_recommendations(answer, [row[: k + 1] for row in expected[batch]])
                    versions[worker].append(version)
                except Exception as e:  # collected and asserted in the test thread
                    errors.append(repr(e)[:500])

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        path = export.export_from_trainer(
            trained.trainer_dir, trained.transform_dir, str(serving_copy.parent), "tfseq", top_k=5
        )
        assert path.endswith("/2")
        deadline = time.monotonic() + 60
        while not all(v and v[-1] == 2 for v in versions.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
        handle.stop()
    assert not errors, errors[:3]
    for seen in versions.values():
        assert seen[0] == 1 and seen[-1] == 2 and seen == sorted(seen), seen


def test_server_cli_serves_the_pipeline_output(trained, oracle, serving_copy):
    histories, want = oracle
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.server",
            "--model_base_path",
            str(serving_copy),
            "--model_name",
            "tfseq",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        line = process.stdout.readline()  # "serving 'tfseq' from ...: gRPC on 127.0.0.1:PORT"
        assert "gRPC on 127.0.0.1:" in line, line
        target = line.strip().rsplit(" ", 1)[1]
        got = client.recommend(histories[:30], target=target, model_name="tfseq", timeout_s=30)
        assert_same_recommendations(got, want[:30])
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
