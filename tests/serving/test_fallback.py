"""Reported fallbacks: the ``fallback`` and ``unknown_user`` outputs, fallback scores on the model's
scale, and their counters in the server's status (REST and gRPC) and in serving/client.py."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from serving import client, export, server
from serving.servable import Servable
from serving.signature import FALLBACK, HISTORY, SCORES, UNKNOWN_USER
from tests.serving.common import TOY_RAW_IDS, fallback_scores_by_hand, make_toy
from tests.serving.test_export import HISTORIES, as_pairs, run_signature
from tfseq.models import MODELS
from tfseq.models.hrm import HRMConfig

FALLBACK_ROWS = [False, False, False, False, True, True, False]  # rows 4 and 5 of HISTORIES: no known item


def test_a_history_with_no_known_item_is_flagged_and_scored_by_the_model(toy, tmp_path):
    path = toy.export(tmp_path / "serving", top_k=5)
    outputs = run_signature(path, HISTORIES)
    assert outputs[FALLBACK].dtype == bool and outputs[FALLBACK].tolist() == FALLBACK_ROWS
    got = as_pairs(outputs)
    # the fallback's scores: the model's expected scores after one item drawn by popularity,
    # sum_j p_j * (table @ table[j]) -- real dot products, not training counts
    want = toy.fallback_scores()
    want[0] = -np.inf
    order = np.argsort(-want, kind="stable")[:5]
    assert [i for i, _ in got[4]] == [toy.raw_ids[i] for i in order] and got[4] == got[5]
    np.testing.assert_allclose([s for _, s in got[4]], want[order], rtol=1e-5, atol=1e-6)
    # on the model's scale: within the range of the scores the model gives any item after any one item
    table = toy.table
    one_item = table[1:] @ table[1:].T  # [N-1, N-1]
    assert one_item.min() <= min(s for _, s in got[4]) and max(s for _, s in got[4]) <= one_item.max()
    assert max(s for _, s in got[4]) < toy.counts.max() / 2  # no longer raw counts (a tied 52 here)


def test_the_fallback_query_is_the_popularity_weighted_mean_of_one_item_queries(toy):
    counts = toy.counts.astype(np.float64)
    query = export.popularity_query(toy.model, toy.counts, batch_size=4)  # several batches, one short
    table = toy.table.astype(np.float64)
    want = (counts[1:, np.newaxis] * table[1:]).sum(axis=0) / counts[1:].sum()  # MeanEmbedding: q([j]) = e_j
    np.testing.assert_allclose(query, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("counts, word", [([0] * len(TOY_RAW_IDS), "positive"), ([-1] + [1] * 28, ">= 0")])
def test_counts_that_cannot_weight_a_fallback_are_refused(toy, tmp_path, counts, word):
    with pytest.raises(ValueError, match=word) as failure:
        export.export_saved_model(toy.model, item_vocab_path=toy.vocab_path, item_counts=counts,
                                  serving_dir=str(tmp_path / "s"), model_name="toy")
    assert "\n" not in str(failure.value)
    assert not (tmp_path / "s").exists()


USER_INDEX = {"alice": 1, "bob": 2, "carol": 3}
USERS = ["alice", "bob", "", "carol", "alice", "nobody", "dave"]  # "nobody", "dave": named but not trained


@pytest.fixture
def hrm_path(tmp_path):
    toy = make_toy(tmp_path / "data")
    tf.keras.utils.set_random_seed(3)
    model = MODELS.build("hrm", HRMConfig(embedding_size=8, window=2, aggregation="max"),
                         num_items=len(TOY_RAW_IDS), user_vocab_size=5)
    model.encode(tf.ones([1, 1], tf.int64))
    path = export.export_saved_model(
        model, item_vocab_path=toy.vocab_path, item_counts=toy.counts, serving_dir=str(tmp_path / "serving"),
        model_name="hrm", top_k=5, max_seq_len=4, user_index=USER_INDEX,
    )
    return model, toy, path


def _padded(histories) -> tf.Tensor:
    width = max(1, *(len(h) for h in histories))
    return tf.constant([h + [""] * (width - len(h)) for h in histories])


def test_an_unknown_user_is_reported_and_an_absent_one_is_not(hrm_path):
    model, toy, path = hrm_path
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](history=_padded(HISTORIES), user_id=tf.constant(USERS))
    assert got[UNKNOWN_USER].numpy().tolist() == [False] * 5 + [True, True]  # "" asks for no user
    assert got[FALLBACK].numpy().tolist() == FALLBACK_ROWS  # row 4: alice, but no known item
    alone = loaded.recommend(_padded(HISTORIES))  # no user_id input (its default): nobody was named
    assert alone[UNKNOWN_USER].numpy().tolist() == [False] * 7
    # a fallback row's scores are the model's own (user unknown), whatever the user
    want = fallback_scores_by_hand(model, toy.counts)
    want[0] = -np.inf
    np.testing.assert_allclose(got[SCORES].numpy()[4], np.sort(want)[::-1][:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[SCORES].numpy()[4], alone[SCORES].numpy()[4])


def _status(rest_port: int, name: str) -> dict:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{name}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())["model_version_status"][0]["tfseq"]


def _grpc_details(target: str, name: str) -> dict:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["tfseq"])
        request.model_spec.name = name
        response = stub.GetModelMetadata(request, timeout=20)
    details = struct_pb2.Struct()
    response.metadata["tfseq"].Unpack(details)
    assert "signature_def" not in response.metadata  # only the field asked for
    return json_format.MessageToDict(details)


def test_the_server_counts_fallback_and_unknown_user_rows_and_the_client_shows_them(hrm_path, capsys):
    _, _, path = hrm_path
    handle = server.serve(path.rsplit("/", 1)[0], "hrm", port=0, rest_port=0, poll_seconds=0.2, max_workers=2)
    try:
        # warm-up requests (a fallback row among them) are not counted
        zero = {"rows": 0, "fallback_rows": 0, "unknown_user_rows": 0}
        assert _status(handle.rest_port, "hrm") == {"top_k_search": {"method": "exact"}, "counters": zero}
        with client.RecommenderClient(handle.target, "hrm", timeout_s=20) as rpc:
            rows = rpc.recommend(HISTORIES, users=USERS)
            assert [row.fallback for row in rows] == FALLBACK_ROWS
            assert [row.unknown_user for row in rows] == [False] * 5 + [True, True]
            assert rows[4].notes() == ["fallback: no known item in the history, answered by popularity"]
            rest = f"http://127.0.0.1:{handle.rest_port}/v1/models/hrm:predict"
            body = json.dumps({"instances": [{HISTORY: [""], "user_id": "nobody"}]}).encode()
            with urllib.request.urlopen(urllib.request.Request(rest, data=body), timeout=10) as reply:
                answer = json.loads(reply.read())["predictions"][0]
            assert answer[FALLBACK] is True and answer[UNKNOWN_USER] is True
        want = {"rows": 8, "fallback_rows": 3, "unknown_user_rows": 3}
        assert _status(handle.rest_port, "hrm")["counters"] == want
        assert _grpc_details(handle.target, "hrm")["counters"] == {k: float(v) for k, v in want.items()}
        argv = ["--target", handle.target, "--model_name", "hrm", "--k", "2",
                "--history", "a01 a02", "--user", "alice", "--history", "nope", "--user", "nobody"]
        assert client.main(argv) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed[0] == "history: a01 a02"
        assert printed[3] == ("history: nope  (fallback: no known item in the history, answered by popularity; "
                              "unknown user: answered without a user)")
        assert client.main([*argv, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        flags = [{(e["fallback"], e["unknown_user"]) for e in row} for row in rows]
        assert flags == [{(False, False)}, {(True, True)}]
        assert _status(handle.rest_port, "hrm")["counters"]["fallback_rows"] == 5
    finally:
        handle.stop()


def test_an_export_without_the_fallback_output_is_parsed_as_not_reporting(toy, tmp_path):
    """An older version (no ``fallback`` output) still parses; its rows say nothing rather than False."""
    path = toy.export(tmp_path / "serving")
    servable = Servable("toy", 1, path)
    outputs = servable.run("serving_default", {HISTORY: np.array([["a01"], [""]], dtype=object)},
                           output_filter=["item_ids", "scores"])
    reply = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        reply.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    rows = client.parse_recommendations(reply)
    assert [row.fallback for row in rows] == [None, None] and [row.unknown_user for row in rows] == [None, None]
    assert servable.details()["counters"] == {"rows": 2, "fallback_rows": 1, "unknown_user_rows": 0}
