"""serving/export.py for a model that uses users (hrm): the optional ``user_id`` input, its
fallback, answers equal to the in-process model's, and ID-only models' unchanged signature."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import client, export, server
from serving.servable import Servable, read_signature_defs
from serving.signature import HISTORY, SCORES, TOP_RAW_IDS, USER_ID
from tests.models.scores import raw_scores
from tests.serving.common import TOY_RAW_IDS, assert_same_recommendations, fallback_scores_by_hand, make_toy
from tfseq.data.schema import ITEM_IDS as ITEM_IDS_KEY
from tfseq.data.schema import USER_IDS
from tfseq.models import MODELS
from tfseq.models.hrm import HRMConfig

# alice, bob and carol trained; dave is in the user vocabulary (index 4) but has no training records.
USER_INDEX = {"alice": 1, "bob": 2, "carol": 3}
NUM_USERS = 5
HISTORIES = [
    ["a01", "a02", "a03"],
    ["a07"],
    ["nope", "a04", "", "x y", "missing", "ünï"],
    ["a01", "a02", "a03", "a04", "a05", "unknown", "a06", "12"],  # -> the last 4 known: a04 a05 a06 12
    ["", "", ""],  # no known item -> the popularity fallback, whoever the user
    ["last.item", "Z-9"],
    ["a10", "a11"],
]
USERS = ["alice", "bob", "", "carol", "alice", "nobody", "dave"]  # "", unknown and untrained: no user
TOP_K, MAX_SEQ_LEN = 5, 4


@pytest.fixture
def hrm_export(tmp_path):
    toy = make_toy(tmp_path / "data")
    tf.keras.utils.set_random_seed(3)
    model = MODELS.build("hrm", HRMConfig(embedding_size=8, window=2, aggregation="max"),
                         num_items=len(TOY_RAW_IDS), user_vocab_size=NUM_USERS)
    model.encode(tf.ones([1, 1], tf.int64))
    path = export.export_saved_model(
        model, item_vocab_path=toy.vocab_path, item_counts=toy.counts, serving_dir=str(tmp_path / "serving"),
        model_name="hrm", top_k=TOP_K, max_seq_len=MAX_SEQ_LEN, user_index=USER_INDEX,
    )
    return model, toy, path


def in_process(model, toy, histories, users):
    """The Keras model's answer by hand: known IDs, last MAX_SEQ_LEN, score with the user's index
    (0 for "", unknown and untrained users), the popularity fallback for no known item, padding at -inf, top K."""
    index = {raw: i for i, raw in enumerate(TOY_RAW_IDS) if i}
    recent = [[index[r] for r in h if r in index][-MAX_SEQ_LEN:] for h in histories]
    item_ids = np.zeros((len(recent), max(1, *(len(r) for r in recent))), np.int64)
    for row, items in enumerate(recent):
        item_ids[row, : len(items)] = items
    features = {ITEM_IDS_KEY: tf.constant(item_ids)}
    if users is not None:
        features[USER_IDS] = tf.constant([USER_INDEX.get(u, 0) for u in users], tf.int64)
    scores = raw_scores(model, features).numpy().astype(np.float64)
    answers = []
    for row, items in enumerate(recent):
        row_scores = scores[row] if items else fallback_scores_by_hand(model, toy.counts)
        row_scores[0] = -np.inf
        order = np.argsort(-row_scores, kind="stable")[: TOP_K + 1]
        answers.append([(TOY_RAW_IDS[i], float(row_scores[i])) for i in order])
    return answers


def padded(histories) -> tf.Tensor:
    width = max(1, *(len(h) for h in histories))
    return tf.constant([h + [""] * (width - len(h)) for h in histories], tf.string)


def pairs(outputs) -> list[list[tuple[str, float]]]:
    return [[(raw.decode("utf-8"), float(s)) for raw, s in zip(ids, scores)]
            for ids, scores in zip(np.asarray(outputs[TOP_RAW_IDS]), np.asarray(outputs[SCORES]))]


def test_both_signatures_take_history_and_an_optional_user_id(hrm_export):
    _, _, path = hrm_export
    signatures = read_signature_defs(path)
    for name in ("serving_default", "embed"):
        signature = signatures[name]
        assert set(signature.inputs) == {HISTORY, USER_ID}
        user = signature.inputs[USER_ID]
        assert user.dtype == tf.string.as_datatype_enum
        assert [d.size for d in user.tensor_shape.dim] == [-1]
        # the default TF Serving substitutes for a missing user_id: an empty vector = no users
        assert tf.make_ndarray(signature.defaults[USER_ID]).shape == (0,)


def test_answers_with_users_equal_the_in_process_model(hrm_export):
    model, toy, path = hrm_export
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](history=padded(HISTORIES), user_id=tf.constant(USERS))
    want = in_process(model, toy, HISTORIES, USERS)
    assert_same_recommendations(pairs(got), want)
    # the users do matter: alice and carol's rows differ from their sequence-only answers
    alone = in_process(model, toy, HISTORIES, None)
    assert pairs(got)[0] != alone[0][:TOP_K] and pairs(got)[3] != alone[3][:TOP_K]


def test_no_user_empty_or_unknown_users_get_the_sequence_only_answer(hrm_export):
    model, toy, path = hrm_export
    loaded = tf.saved_model.load(path)
    want = in_process(model, toy, HISTORIES, None)
    history = padded(HISTORIES)
    answers = {
        "no user_id (the default)": loaded.recommend(history),
        "an empty user_id": loaded.signatures["serving_default"](history=history, user_id=tf.constant([], tf.string)),
        "every user empty": loaded.recommend(history, tf.constant([""] * len(HISTORIES))),
        "every user unknown or untrained": loaded.recommend(
            history, tf.constant(["nobody", "dave", "", "x", "alice ", "ALICE", "bob\t"])),
    }
    for case, got in answers.items():
        try:
            assert_same_recommendations(pairs(got), want)
        except AssertionError as e:
            raise AssertionError(f"{case}: {e}") from None
    embedded = loaded.signatures["embed"](history=history, user_id=tf.constant(USERS))["embedding"].numpy()
    known = [0, 1, 3, 5]  # rows with a known item
    query = model.encode({ITEM_IDS_KEY: tf.constant([[1, 2, 3], [7, 0, 0]], tf.int64),
                          USER_IDS: tf.constant([1, 2])}).numpy()
    np.testing.assert_allclose(embedded[:2], query, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(embedded[4], np.zeros(8))  # no known item: zeros
    assert np.all(np.isfinite(embedded[known]))


def test_a_user_id_that_is_not_one_per_history_is_refused(hrm_export):
    _, _, path = hrm_export
    loaded = tf.saved_model.load(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one user per history"):
        loaded.recommend(padded(HISTORIES[:3]), tf.constant(["alice", "bob"]))


def test_id_only_models_keep_history_as_their_only_input(tmp_path):
    toy = make_toy(tmp_path / "data")
    path = toy.export(tmp_path / "serving")
    for name, signature in read_signature_defs(path).items():
        assert set(signature.inputs) == {HISTORY}, name
        assert not signature.defaults, name
    pooling = MODELS.build("pooling", num_items=len(TOY_RAW_IDS))
    pooling.encode(tf.ones([1, 1], tf.int64))
    path = export.export_saved_model(pooling, item_vocab_path=toy.vocab_path, item_counts=toy.counts,
                                     serving_dir=str(tmp_path / "serving"), model_name="pooling")
    assert {n: set(s.inputs) for n, s in read_signature_defs(path).items()} == {
        "serving_default": {HISTORY}, "embed": {HISTORY}}


def test_export_needs_the_user_index_of_a_user_model(tmp_path):
    toy = make_toy(tmp_path / "data")
    model = MODELS.build("hrm", num_items=len(TOY_RAW_IDS), user_vocab_size=NUM_USERS)
    with pytest.raises(ValueError, match="user_index"):
        export.export_saved_model(model, item_vocab_path=toy.vocab_path, item_counts=toy.counts,
                                  serving_dir=str(tmp_path / "s"), model_name="hrm")
    with pytest.raises(ValueError, match="outside the model's 1..4"):
        export.export_saved_model(model, item_vocab_path=toy.vocab_path, item_counts=toy.counts,
                                  serving_dir=str(tmp_path / "s"), model_name="hrm", user_index={"eve": 5})


def test_warm_up_requests_send_users_and_replay(hrm_export):
    _, _, path = hrm_export
    servable = Servable("hrm", 1, path)
    assert servable.warm_up() == 12  # 5 single histories + 1 batch of them, for each signature: all ran


def test_the_grpc_server_answers_with_a_user_as_in_process(hrm_export):
    model, toy, path = hrm_export
    handle = server.serve(str(path.rsplit("/", 1)[0]), "hrm", port=0, poll_seconds=0.2, max_workers=2)
    try:
        with client.RecommenderClient(f"127.0.0.1:{handle.port}", "hrm", timeout_s=20) as rpc:
            request = client.predict_request(HISTORIES, model_name="hrm", users=USERS)
            got = [[(i, s) for i, s in row] for row in client.parse_recommendations(rpc.predict(request))]
            want = in_process(model, toy, HISTORIES, USERS)
            assert_same_recommendations(got, [[(i, s) for i, s in row if i] for row in want])
            unknown = client.predict_request(HISTORIES, model_name="hrm", users=[""] * len(HISTORIES))
            got = client.parse_recommendations(rpc.predict(unknown))
            assert_same_recommendations(got, in_process(model, toy, HISTORIES, None))
    finally:
        handle.stop()


def test_the_grpc_server_answers_without_user_id_as_tf_serving_does(hrm_export):
    """TF Serving fills a missing input from SignatureDef.defaults (here user_id = []: no users)."""
    model, toy, path = hrm_export
    handle = server.serve(str(path.rsplit("/", 1)[0]), "hrm", port=0, poll_seconds=0.2, max_workers=2)
    try:
        with client.RecommenderClient(f"127.0.0.1:{handle.port}", "hrm", timeout_s=20) as rpc:
            try:
                got = rpc.recommend(HISTORIES)  # history alone
            except grpc.RpcError as e:
                pytest.fail(f"{e.code()}: {e.details()}")
            assert_same_recommendations(got, in_process(model, toy, HISTORIES, None))
    finally:
        handle.stop()
