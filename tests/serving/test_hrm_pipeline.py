"""hrm through the pipeline: trained on users' batches, exported with the ``user_id`` input, and
``python -m serving.server`` answering with and without a user exactly as ``tfseq.load`` does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving import client
from serving.servable import read_signature_defs
from serving.signature import HISTORY, USER_ID
from tests.serving.common import PIPELINE_FLAGS
from tfseq.data import vocab
from tfseq.data.reader import load_evaluation_split

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hrm_run(tmp_path_factory):
    from pipeline import run as pipeline_run

    root = tmp_path_factory.mktemp("hrm") / "run"
    flags = PIPELINE_FLAGS[: PIPELINE_FLAGS.index("--model")]  # the small synthetic log, 2 epochs
    result = pipeline_run.run([*flags, "--model", "hrm", "--window", "3", "--output_dir", str(root),
                               "--stop_after", "Pusher"])
    assert result.stages["Pusher"] == "ran"
    return root, result


def test_the_export_of_a_pipeline_run_takes_history_and_user_id(hrm_run):
    _, result = hrm_run
    signatures = read_signature_defs(result.export_path)
    assert {name: set(s.inputs) for name, s in signatures.items()} == {
        "serving_default": {HISTORY, USER_ID}, "embed": {HISTORY, USER_ID}}


def test_the_server_answers_with_and_without_a_user_as_tfseq_load(hrm_run, tmp_path, capsys):
    import tfseq

    root, result = hrm_run
    transform = str(root / "Transform")
    metadata = vocab.DatasetMetadata.load(transform)
    raw_ids = vocab.read_vocabulary(str(root / "Transform" / vocab.ITEM_VOCAB))
    sequences = load_evaluation_split(transform, metadata, "test")
    histories = [[raw_ids[i] for i in sequences.sequence(u)] for u in range(12)]
    users = [str(u) for u in sequences.users[:12]]
    users[1], users[2] = "", "never-seen-user"
    recommender = tfseq.load(result.run_dir)
    want_users = recommender.recommend(histories, k=10, users=users)
    want_alone = recommender.recommend(histories, k=10)
    assert recommender.input_names == (USER_ID,)  # the SavedModel's inputs besides history, by name
    assert recommender.recommend(histories, k=10, **{USER_ID: users}).item_ids == want_users.item_ids
    with pytest.raises(ValueError, match="has no input 'hour'; its inputs besides the history: user_id"):
        recommender.recommend(histories, k=10, hour=[[0]] * len(histories))
    for not_a_history in ("i1 i2", ["i13 i47"]):  # issues 22.7 and 23.8: a string is no list of IDs
        with pytest.raises(ValueError, match="list of lists of item IDs"):
            recommender.recommend(not_a_history, k=10)
    # the users change answers, and "" / unknown users get the sequence-only answer
    assert sum(a != b for a, b in zip(want_users.item_ids, want_alone.item_ids)) >= 6
    assert want_users.item_ids[1:3] == want_alone.item_ids[1:3]

    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model_base_path", str(Path(result.export_path).parent),
         "--model_name", "tfseq", "--port=0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
    )
    try:
        line = process.stdout.readline()
        assert "gRPC on " in line, (line, log.read_text())
        target = line.split("gRPC on ", 1)[1].split(",", 1)[0].strip()
        with client.RecommenderClient(target, "tfseq", timeout_s=30) as rpc:
            with_users = client.parse_recommendations(
                rpc.predict(client.predict_request(histories, model_name="tfseq", users=users)))
            alone = rpc.recommend(histories)  # no user_id input at all: its default, no users
            assert rpc.recommend(histories, users=users) == with_users
        argv = ["--target", target, "--model_name", "tfseq", "--json", "--k", "3"]
        for history, user in zip(histories[:2], users[:2]):
            argv += ["--history", " ".join(history), "--user", user]
        capsys.readouterr()
        assert client.main(argv) == 0  # python -m serving.client --user
        printed = json.loads(capsys.readouterr().out)
        assert [[r["item_id"] for r in row] for row in printed] == [row[:3] for row in want_users.item_ids[:2]]
        for got, want in ((with_users, want_users), (alone, want_alone)):
            assert [[i for i, _ in row] for row in got] == want.item_ids
            np.testing.assert_allclose([[s for _, s in row] for row in got], want.scores, rtol=1e-5, atol=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text()
