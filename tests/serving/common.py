"""Serving test helpers: a toy model with a numpy oracle, the trained pipeline, comparisons."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from serving import export
from tests.conftest import REPO
from tests.models.scores import raw_scores
from tfseq.data import vocab
from tfseq.models.base import SequentialRecommender, item_ids_of


class MeanEmbedding(SequentialRecommender):
    """query = mean of the history's item embeddings; candidates = the same table (weight tying)."""

    def __init__(self, config: object, num_items: int, *, dim: int = 8, seed: int = 0) -> None:
        super().__init__(config, num_items)
        init = tf.keras.initializers.RandomNormal(stddev=1.0, seed=seed)
        self.item_embedding = tf.keras.layers.Embedding(num_items, dim, embeddings_initializer=init)

    def encode(self, features, training=False):
        item_ids = item_ids_of(features)  # [B, L]
        mask = tf.cast(tf.not_equal(item_ids, 0), tf.float32)[:, :, tf.newaxis]  # [B, L, 1]
        total = tf.reduce_sum(self.item_embedding(item_ids) * mask, axis=1)  # [B, D]
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

    def candidate_embeddings(self, training=False):
        return self.item_embedding.embeddings


# Raw IDs with a space, non-ASCII and digits only: the vocabulary must round-trip them exactly.
TOY_RAW_IDS = ["", *[f"a{i:02d}" for i in range(1, 24)], "x y", "ünï", "12", "Z-9", "last.item"]


@dataclasses.dataclass
class Toy:
    """A built MeanEmbedding model, its vocabulary file and counts, and the numpy answer key."""

    model: MeanEmbedding
    vocab_path: str
    raw_ids: list[str]
    counts: np.ndarray

    @property
    def table(self) -> np.ndarray:
        return self.model.item_embedding.embeddings.numpy()

    def fallback_scores(self) -> np.ndarray:
        """``[N]`` the popularity fallback's scores by hand: ``sum_j p_j * scores([j])``, where the scores
        after the one-item history ``[j]`` are ``table @ table[j]`` (the mean of one item is that item)."""
        table = self.table.astype(np.float64)
        p = self.counts[1:] / self.counts[1:].sum()  # [N - 1], items 1 .. N-1
        return sum(p_j * (table @ table[j]) for j, p_j in enumerate(p, start=1))

    def export(self, serving_dir: Path, name: str = "toy", **kwargs) -> str:
        kwargs.setdefault("top_k", 5)
        kwargs.setdefault("max_seq_len", 4)
        return export.export_saved_model(
            self.model,
            item_vocab_path=self.vocab_path,
            item_counts=self.counts,
            serving_dir=str(serving_dir),
            model_name=name,
            **kwargs,
        )

    def expected(
        self,
        histories: Sequence[Sequence[str]],
        *,
        top_k: int = 5,
        max_seq_len: int = 4,
        exclude_history: bool = False,
    ) -> list[list[tuple[str, float]]]:
        """The answer by hand: skip unknown IDs, keep the last max_seq_len, mean, dot, sort."""
        index = {raw: i for i, raw in enumerate(self.raw_ids) if i > 0}
        table = self.table
        answers = []
        for history in histories:
            known = [index[raw] for raw in history if raw in index]
            recent = known[-max_seq_len:]
            if recent:
                scores = table @ table[recent].mean(axis=0)  # [N]
            else:
                scores = self.fallback_scores()  # no known item: the popularity fallback
            scores = scores.astype(np.float64)
            scores[0] = -np.inf  # the padding item is never recommended
            if exclude_history:
                scores[known] = -np.inf
            order = np.argsort(-scores, kind="stable")[
                :top_k
            ]  # ties: lower index first, like top_k
            answers.append(
                [
                    (self.raw_ids[i] if np.isfinite(scores[i]) else "", float(scores[i]))
                    for i in order
                ]
            )
        return answers


def make_toy(directory: Path, seed: int = 0) -> Toy:
    directory.mkdir(parents=True, exist_ok=True)
    vocab_path = directory / vocab.ITEM_VOCAB
    vocab_path.write_text(vocab.vocabulary_text(TOY_RAW_IDS[1:]), encoding="utf-8")
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 50, size=len(TOY_RAW_IDS))
    counts[0] = 0
    counts[5] = counts[9] = counts.max() + 3  # a tie at the top: a05 (index 5) must come before a09
    model = MeanEmbedding(None, num_items=len(TOY_RAW_IDS), seed=seed)
    model.encode(tf.ones([1, 1], tf.int64))
    return Toy(model=model, vocab_path=str(vocab_path), raw_ids=list(TOY_RAW_IDS), counts=counts)


def fallback_scores_by_hand(model, counts: np.ndarray) -> np.ndarray:
    """``[N]`` the popularity fallback's scores of any model: each one-item history ``[j]`` scored by
    ``model.score`` alone (every side input 0, unknown), weighted by item ``j``'s share of the counts."""
    from tfseq.data import schema

    total = np.zeros(model.num_items, np.float64)
    weights = np.asarray(counts, np.float64)[1:] / np.sum(counts[1:])
    for item, weight in enumerate(weights, start=1):
        if weight == 0:
            continue
        features = {schema.ITEM_IDS: tf.constant([[item]], tf.int64)}
        for key in model.side_inputs:
            features[key] = tf.zeros([1], tf.int64) if key == schema.USER_IDS else tf.zeros([1, 1], tf.int64)
        total += weight * raw_scores(model, features).numpy()[0].astype(np.float64)
    return total


def assert_same_recommendations(got, want, *, tol: float = 1e-4) -> None:
    """Equal (item, score) lists, best first; neighbours whose scores tie within ``tol`` may swap.

    A ``want`` row may hold one entry more than its ``got`` row: it only decides a tie at place K.
    """
    assert len(got) == len(want)
    for row, (g, w) in enumerate(zip(got, want)):
        assert len(w) - len(g) in (0, 1), (row, g, w)
        head = w[: len(g)]
        np.testing.assert_allclose(
            [s for _, s in g], [s for _, s in head], rtol=tol, atol=tol, err_msg=f"row {row}"
        )
        for (g_id, _), (w_id, w_score) in zip(g, head):
            if g_id != w_id:
                tied = {other for other, score in w if abs(score - w_score) <= tol}
                assert g_id in tied, (row, g, w)


# ---- a small trained pipeline (ExampleGen -> ... -> Pusher) ----

PIPELINE_FLAGS = [
    "--runner=DirectRunner",
    "--synthetic_users",
    "300",
    "--synthetic_items",
    "100",
    "--synthetic_interactions",
    "5000",
    "--epochs",
    "2",
    "--batch_size",
    "64",
    "--quiet",
    "--model",
    "sasrec",
    "--hidden_size",
    "32",
    "--num_layers",
    "1",
]


@dataclasses.dataclass
class TrainedRun:
    root: Path
    run: str  # the run's folder name under <root>/runs

    @property
    def transform_dir(self) -> str:
        return str(self.root / "Transform")

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.run

    @property
    def trainer_dir(self) -> str:
        return str(self.run_dir / "Trainer")

    @property
    def serving_dir(self) -> Path:
        return self.root / "serving"

    def pushed(self) -> dict:
        return json.loads((self.run_dir / "Pusher" / "pushed.json").read_text())

    def test_histories(self, limit: int = 200) -> tuple[list[list[str]], list[np.ndarray]]:
        """Raw-ID histories of the test split and their index arrays (first ``limit`` users)."""
        from tfseq.data.reader import load_evaluation_split

        metadata = vocab.DatasetMetadata.load(self.transform_dir)
        raw_ids = vocab.read_vocabulary(str(Path(self.transform_dir) / vocab.ITEM_VOCAB))
        sequences = load_evaluation_split(self.transform_dir, metadata, "test")
        indices = [sequences.sequence(u) for u in range(min(limit, len(sequences)))]
        return [[raw_ids[i] for i in seq] for seq in indices], indices


def keras_top_k(
    model, indices: list[np.ndarray], raw_ids: list[str], *, top_k: int, max_seq_len: int
):
    """The in-process Keras model's top-K (+1 for tie checks): score(), padding at -inf, sort."""
    recent = [seq[-max_seq_len:] for seq in indices]
    width = max(len(r) for r in recent)
    item_ids = np.zeros((len(recent), width), np.int64)
    for row, items in enumerate(recent):
        item_ids[row, : len(items)] = items
    scores = raw_scores(model, tf.constant(item_ids), training=False).numpy().astype(np.float64)  # [B, N]
    scores[:, 0] = -np.inf
    answers = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: top_k + 1]
        answers.append([(raw_ids[i], float(row[i])) for i in order])
    return answers


def start_server(model_dir: Path, log: Path, *flags: str, model_name: str = "toy") -> tuple[subprocess.Popen, str]:
    """``python -m serving.server`` as the README runs it; returns the process and its first stdout line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model_base_path", str(model_dir), "--model_name", model_name,
         *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    return process, process.stdout.readline()
