"""The approximate top-K (``approximate_clusters`` / ``approximate_probes``): every probe = the exact
answer, fewer probes = the cluster search done by hand in numpy, recall against exact on clustered
embeddings, reload in a TensorFlow-only process, the choice in the metadata and status, bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving import export, server
from serving.clusters import build_cluster_index
from serving.signature import EXPORT_INFO_FILE, FALLBACK, SCORES, TOP_RAW_IDS
from tests.serving.common import MeanEmbedding
from tests.serving.test_clusters import mixture
from tests.serving.test_export import TF_ONLY_SCRIPT, run_signature
from tfseq.data import vocab

ITEMS, DIM, BLOBS = 400, 8, 20
TOP_K, MAX_SEQ_LEN = 10, 4


class Catalogue:
    """A MeanEmbedding model over ITEMS items whose embeddings form BLOBS Gaussian blobs, and its vocabulary."""

    def __init__(self, directory: Path, spread: float = 0.3) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.raw_ids = ["", *[f"i{i:03d}" for i in range(1, ITEMS + 1)]]
        self.vocab_path = str(directory / vocab.ITEM_VOCAB)
        Path(self.vocab_path).write_text(vocab.vocabulary_text(self.raw_ids[1:]), encoding="utf-8")
        self.counts = np.random.default_rng(5).integers(1, 100, size=ITEMS + 1)
        self.counts[0] = 0
        self.model = MeanEmbedding(None, num_items=ITEMS + 1, dim=DIM)
        self.model.encode(tf.ones([1, 1], tf.int64))
        self.table, _ = mixture(ITEMS, BLOBS, DIM, seed=3, spread=spread)
        self.model.item_embedding.embeddings.assign(self.table)
        self.index = {raw: i for i, raw in enumerate(self.raw_ids) if i}

    def export(self, serving_dir: Path, **kwargs) -> str:
        return export.export_saved_model(
            self.model, item_vocab_path=self.vocab_path, item_counts=self.counts, serving_dir=str(serving_dir),
            model_name="big", top_k=TOP_K, max_seq_len=MAX_SEQ_LEN, **kwargs,
        )

    def histories(self, count: int, seed: int = 0) -> list[list[str]]:
        """Random histories of 1..6 items, one with an unknown ID, one empty (the fallback)."""
        rng = np.random.default_rng(seed)
        rows = [[self.raw_ids[i] for i in rng.integers(1, ITEMS + 1, size=rng.integers(1, 7))]
                for _ in range(count - 2)]
        return [*rows, ["not-an-item", rows[0][0]], []]

    def cluster_search(self, histories, clusters: int, probes: int, exclude_history: bool) -> list[list[str]]:
        """The SavedModel's cluster search by hand: the same seeded index, centroids, probes, exact scores."""
        index = build_cluster_index(self.table, clusters, probes)
        table = self.table.astype(np.float64)
        counts = self.counts.astype(np.float64)
        fallback = (counts[1:, np.newaxis] * table[1:]).sum(axis=0) / counts[1:].sum()  # mean of one-item queries
        answers = []
        for history in histories:
            known = [self.index[raw] for raw in history if raw in self.index]
            query = table[known[-MAX_SEQ_LEN:]].mean(axis=0) if known else fallback
            probed = np.argsort(-(index.centroids @ query), kind="stable")[:probes]
            items = np.concatenate([index.items[index.offsets[c] : index.offsets[c + 1]] for c in probed])
            if exclude_history:
                items = items[~np.isin(items, known)]
            best = items[np.argsort(-(table[items] @ query), kind="stable")[:TOP_K]]
            answers.append([self.raw_ids[i] for i in best])
        return answers


def ids(outputs) -> list[list[str]]:
    return [[raw.decode() for raw in row if raw] for row in outputs[TOP_RAW_IDS]]


def recall_at_k(got: list[list[str]], exact: list[list[str]]) -> float:
    """Mean over rows of |approximate top K & exact top K| / |exact top K|."""
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))


@pytest.mark.parametrize("exclude_history", [False, True])
def test_searching_every_cluster_answers_as_the_exact_search(tmp_path, exclude_history):
    catalogue = Catalogue(tmp_path / "data")
    histories = catalogue.histories(60)
    exact = run_signature(catalogue.export(tmp_path / "s", exclude_history=exclude_history), histories)
    every = run_signature(
        catalogue.export(tmp_path / "s", exclude_history=exclude_history, approximate_clusters=BLOBS,
                         approximate_probes=BLOBS),
        histories,
    )
    assert ids(every) == ids(exact)
    np.testing.assert_allclose(every[SCORES], exact[SCORES], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(every[FALLBACK], exact[FALLBACK])
    assert every[FALLBACK].tolist() == [False] * 59 + [True]
    if exclude_history:  # no history item comes back, also past the last MAX_SEQ_LEN
        assert not any(set(row) & set(history) for row, history in zip(ids(every), histories))


def test_fewer_probes_search_only_the_best_clusters_and_recall_is_high_on_clustered_embeddings(
    tmp_path, record_property
):
    catalogue = Catalogue(tmp_path / "data")
    histories = catalogue.histories(300, seed=1)
    exact = ids(run_signature(catalogue.export(tmp_path / "s", exclude_history=True), histories))
    recalls = {}
    for probes in (1, 2, 4, BLOBS):
        path = catalogue.export(tmp_path / "s", exclude_history=True, approximate_clusters=BLOBS,
                                approximate_probes=probes)
        got = ids(run_signature(path, histories))
        assert got == catalogue.cluster_search(histories, BLOBS, probes, exclude_history=True)
        recalls[probes] = recall_at_k(got, exact)
    record_property("recall_at_10_vs_exact_by_probes", recalls)
    print(f"recall@10 against the exact top 10, {BLOBS} clusters of {ITEMS} clustered items: {recalls}")
    # every probe more can only add candidates; on 20 blobs of items, 4 probes find nearly everything
    assert list(recalls.values()) == sorted(recalls.values())
    assert recalls[BLOBS] == 1.0 and recalls[4] >= 0.9 and recalls[1] < 1.0


def test_the_approximate_saved_model_reloads_in_a_tensorflow_only_process_and_answers_identically(tmp_path):
    catalogue = Catalogue(tmp_path / "data")
    histories = catalogue.histories(40, seed=2)
    path = catalogue.export(tmp_path / "s", approximate_clusters=BLOBS, approximate_probes=3)
    here = run_signature(path, histories)
    (tmp_path / "histories.json").write_text(json.dumps(histories))
    (tmp_path / "tf_only.py").write_text(TF_ONLY_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    subprocess.run([sys.executable, "tf_only.py", path, "histories.json", "out.json"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["loaded"] == []  # neither tfseq nor tf-keras was needed
    assert out["item_ids"] == [[raw.decode() for raw in row] for row in here[TOP_RAW_IDS]]
    np.testing.assert_array_equal(np.array(out["scores"], np.float32), here[SCORES])
    again = run_signature(path, histories)  # and a second load in this process
    for key in here:
        np.testing.assert_array_equal(again[key], here[key])


def test_the_search_is_recorded_in_the_export_and_shown_by_the_server(tmp_path):
    catalogue = Catalogue(tmp_path / "data")
    path = catalogue.export(tmp_path / "s", approximate_clusters=BLOBS, approximate_probes=3)
    search = json.loads(Path(path, EXPORT_INFO_FILE).read_text())["top_k_search"]
    want = {"method": "clusters", "clusters": BLOBS, "probes": 3}
    assert {k: search[k] for k in want} == want
    assert search["kmeans_seed"] == 0 and search["largest_cluster"] >= ITEMS // BLOBS
    handle = server.serve(str(Path(path).parent), "big", port=0, rest_port=0, poll_seconds=0.2, max_workers=2)
    try:
        url = f"http://127.0.0.1:{handle.rest_port}/v1/models/big"
        with urllib.request.urlopen(url, timeout=10) as reply:
            shown = json.loads(reply.read())["model_version_status"][0]["tfseq"]["top_k_search"]
    finally:
        handle.stop()
    assert shown == search
    exact = catalogue.export(tmp_path / "s")
    assert json.loads(Path(exact, EXPORT_INFO_FILE).read_text())["top_k_search"] == {"method": "exact"}


@pytest.mark.parametrize(
    "clusters, probes, word",
    [(BLOBS, BLOBS + 1, f"approximate_probes must be in 1..{BLOBS}"),
     (ITEMS + 1, 1, f"approximate_clusters must be in 1..{ITEMS}"),
     (0, 3, "approximate_probes must be 0")],
)
def test_bad_options_are_one_line_errors_that_write_nothing(tmp_path, clusters, probes, word):
    catalogue = Catalogue(tmp_path / "data")
    with pytest.raises(ValueError, match=word) as failure:
        catalogue.export(tmp_path / "s", approximate_clusters=clusters, approximate_probes=probes)
    assert "\n" not in str(failure.value)
    assert not (tmp_path / "s").exists()


def test_the_export_command_takes_the_search_options(trained, tmp_path, capsys):
    argv = ["--trainer_dir", trained.trainer_dir, "--transform_dir", trained.transform_dir,
            "--serving_dir", str(tmp_path), "--model_name", "cli"]
    assert export.main([*argv, "--approximate_clusters", "1000", "--approximate_probes", "2"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "approximate_clusters must be in 1..100" in error
    assert not (tmp_path / "cli").exists()
    assert export.main([*argv, "--approximate_clusters", "8", "--approximate_probes", "8"]) == 0
    path = capsys.readouterr().out.strip()
    assert json.loads(Path(path, EXPORT_INFO_FILE).read_text())["top_k_search"]["clusters"] == 8
    histories, _ = trained.test_histories(limit=50)
    every = run_signature(path, histories)
    exact = run_signature(trained.pushed()["path"], histories)
    assert ids(every) == ids(exact)  # 8 of 8 clusters: the trained SASRec's exact answers
    np.testing.assert_allclose(every[SCORES], exact[SCORES], rtol=1e-4, atol=1e-4)
