"""Full-ranking evaluation against numpy: stable-sort ranks with ties, padding at -inf,
exclude_history, all metrics at all K, one trace for every batch shape."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfseq.evaluation import Evaluator, evaluate, rank_targets
from tfseq.metrics.ranking import metrics_from_ranks
from tfseq.models import MODELS
from tfseq.models.base import Features, SequentialRecommender, item_ids_of

NUM_ITEMS = 15  # padding + items 1..14


class SumOfEmbeddings(SequentialRecommender):
    """Query = sum of the history's embeddings over a fixed integer table: exact float32 ties."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(None, num_items=len(table))
        self.table = tf.Variable(table, dtype=tf.float32, trainable=False)

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        item_ids = item_ids_of(features)  # [B, L]
        embeddings = tf.gather(self.table, item_ids)  # [B, L, D]
        valid = tf.cast(tf.not_equal(item_ids, 0), tf.float32)[:, :, tf.newaxis]
        return tf.reduce_sum(embeddings * valid, axis=1)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        return self.table


def toy_table(seed: int = 0) -> np.ndarray:
    table = np.random.default_rng(seed).integers(-1, 2, size=(NUM_ITEMS, 3)).astype(np.float32)
    table[0] = [9.0, 9.0, 9.0]  # padding would top most rankings if it were not at -inf
    return table


def toy_rows(rows: int = 40, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded histories ``[rows, 6]`` and targets; some targets repeat a history item."""
    rng = np.random.default_rng(seed)
    histories = np.zeros((rows, 6), np.int64)
    for row in histories:
        length = rng.integers(1, 7)
        row[:length] = rng.integers(1, NUM_ITEMS, length)
    targets = rng.integers(1, NUM_ITEMS, rows)
    targets[::5] = histories[::5, 0]  # a repeat: the target is in the history
    return histories, targets


def stable_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Oracle: position of each target in a stable sort by descending score."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.argmax(order == targets[:, np.newaxis], axis=1)


def oracle_ranks(table, histories, targets, *, exclude_history: bool, mask_padding: bool = True):
    query = np.stack([table[row[row > 0]].sum(axis=0) for row in histories])
    scores = query @ table.T  # [B, N], exact small integers
    if mask_padding:
        scores[:, 0] = -np.inf
    if exclude_history:
        for u, row in enumerate(histories):
            scores[u, row[row > 0]] = -np.inf
    return stable_ranks(scores, targets)


def all_ranks(evaluator: Evaluator, data) -> np.ndarray:
    """``[U]`` rank of every row's target, in the order of ``data``."""
    return np.concatenate(list(evaluator.batch_ranks(data)))


def batches(histories, targets, size):
    rows = {"item_ids": histories, "target": targets}
    return tf.data.Dataset.from_tensor_slices(rows).batch(size)


def test_rank_targets_matches_numpy_stable_argsort_with_ties_and_minus_inf():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(60, 25)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    targets = rng.integers(0, 25, 60)
    scores[:5, targets[:5]] = -np.inf  # some targets at -inf themselves
    ranks = rank_targets(tf.constant(scores), tf.constant(targets)).numpy()
    np.testing.assert_array_equal(ranks, stable_ranks(scores, targets))


def test_rank_targets_by_hand():
    # row scores [3, 5, 3, 3]: target 2 is behind item 1 (higher) and item 0 (tie, lower index),
    # ahead of item 3 (tie, higher index): rank 2. Target 0: only item 1 above: rank 1.
    scores = tf.constant([[3.0, 5.0, 3.0, 3.0], [3.0, 5.0, 3.0, 3.0]])
    assert rank_targets(scores, tf.constant([2, 0])).numpy().tolist() == [2, 1]


@pytest.mark.parametrize("chunk_items", [1, 4, NUM_ITEMS, 1 << 16])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_evaluate_matches_numpy(exclude_history, chunk_items):
    table = toy_table()
    model = SumOfEmbeddings(table)
    histories, targets = toy_rows()
    expected = oracle_ranks(table, histories, targets, exclude_history=exclude_history)
    evaluator = Evaluator(model, exclude_history=exclude_history, chunk_items=chunk_items)
    np.testing.assert_array_equal(all_ranks(evaluator, batches(histories, targets, 7)), expected)
    data = batches(histories, targets, 7)
    metrics = evaluate(model, data, ks=(1, 3, 10), exclude_history=exclude_history,
                       chunk_items=chunk_items)
    assert metrics.pop("num_users") == 40
    oracle = metrics_from_ranks(expected, (1, 3, 10))
    assert metrics.keys() == oracle.keys()
    for name, value in oracle.items():
        assert metrics[name] == pytest.approx(value, rel=1e-12), name


@pytest.mark.parametrize("exclude_history", [False, True])
def test_chunked_ranks_equal_unchunked_ranks_exactly_for_a_real_model(exclude_history):
    # A real model's float scores (no integer ties): every chunk size, including chunks that
    # split the catalogue unevenly, gives the ranks of one [B, N] matrix.
    model = MODELS.build("sasrec", num_items=203)
    rng = np.random.default_rng(5)
    histories = np.zeros((50, 8), np.int64)
    for row in histories:
        length = rng.integers(1, 9)
        row[:length] = rng.integers(1, 203, length)
    targets = rng.integers(1, 203, 50)
    targets[::4] = histories[::4, 0]
    model.encode({"item_ids": tf.constant(histories)})  # builds the layers
    whole = all_ranks(Evaluator(model, exclude_history, chunk_items=203), batches(histories, targets, 16))
    assert len(set(whole.tolist())) > 10  # the ranks differ from row to row
    for chunk_items in (1, 10, 64, 202, 500):
        chunked = Evaluator(model, exclude_history, chunk_items=chunk_items)
        np.testing.assert_array_equal(all_ranks(chunked, batches(histories, targets, 16)), whole)
    # and the one [B, N] score matrix of tfseq.scoring gives them too
    from tfseq.scoring import score_items

    scores = score_items(model, {"item_ids": tf.constant(histories)}, exclude_history=exclude_history)
    np.testing.assert_array_equal(rank_targets(scores, tf.constant(targets)).numpy(), whole)


def test_a_bad_chunk_size_is_refused():
    with pytest.raises(ValueError, match="chunk_items must be >= 1"):
        Evaluator(SumOfEmbeddings(toy_table()), chunk_items=0)


def test_the_checks_have_power_padding_and_history_change_the_ranks():
    table = toy_table()
    histories, targets = toy_rows()
    plain = oracle_ranks(table, histories, targets, exclude_history=False)
    assert np.any(plain != oracle_ranks(table, histories, targets, exclude_history=False,
                                        mask_padding=False))
    assert np.any(plain != oracle_ranks(table, histories, targets, exclude_history=True))


def test_exclude_history_puts_a_repeated_target_below_every_unseen_item():
    table = toy_table()
    histories, targets = toy_rows()
    evaluator = Evaluator(SumOfEmbeddings(table), exclude_history=True)
    ranks = all_ranks(evaluator, batches(histories, targets, 16))
    for row, target, rank in zip(histories, targets, ranks):
        if target in row:
            unseen = NUM_ITEMS - 1 - len(set(row[row > 0]))
            assert rank >= unseen


def test_any_iterable_of_dicts_and_any_batch_shape_with_one_trace():
    table = toy_table()
    histories, targets = toy_rows()
    evaluator = Evaluator(SumOfEmbeddings(table))
    as_dataset = evaluator(batches(histories, targets, 9))
    # numpy batches of other sizes and widths (extra right padding, shorter batches)
    pieces = [
        {
            "item_ids": np.pad(histories[:13], [(0, 0), (0, 3)]),
            "target": targets[:13].astype(np.int32),
        },
        {"item_ids": histories[13:], "target": targets[13:]},
    ]
    assert evaluator(pieces) == pytest.approx(as_dataset, rel=1e-12)  # sums in another order
    assert list(evaluator._ranks) == [()]  # one ranking function: no side inputs
    assert evaluator._ranks_for(()).experimental_get_tracing_count() == 1


def test_pop_ties_follow_item_index():
    # Counts with many ties; pop's scores are log1p(count), the same order.
    counts = np.array([0, 3, 7, 3, 0, 7, 7, 1, 3, 0, 2, 2, 7, 1, 0])
    model = MODELS.build("pop", num_items=NUM_ITEMS)
    model.adapt(counts)
    histories, targets = toy_rows()
    scores = np.tile(counts.astype(float), (len(targets), 1))
    scores[:, 0] = -np.inf
    expected = stable_ranks(scores, targets)
    np.testing.assert_array_equal(all_ranks(Evaluator(model), batches(histories, targets, 11)), expected)
    # e.g. item 6 (count 7) ranks 2nd: items 2 and 5 tie with it at a lower index
    assert all_ranks(Evaluator(model), [{"item_ids": histories[:1], "target": np.array([6])}])[0] == 2


def test_non_finite_queries_raise_instead_of_ranking_first():
    table = toy_table()
    table[3] = [np.nan, 0.0, 0.0]
    histories = np.array([[1, 2, 0], [3, 0, 0]])
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        evaluate(SumOfEmbeddings(table), [{"item_ids": histories, "target": np.array([4, 5])}])


def test_no_rows_or_bad_ks_raise():
    model = SumOfEmbeddings(toy_table())
    with pytest.raises(ValueError, match="no users"):
        evaluate(model, [])
    histories, targets = toy_rows(4)
    with pytest.raises(ValueError, match="int >= 1"):
        evaluate(model, batches(histories, targets, 2), ks=(0, 5))


def test_progress_hears_the_rows_ranked_after_each_batch():
    table = toy_table()
    histories, targets = toy_rows()
    heard: list[int] = []
    evaluate(SumOfEmbeddings(table), batches(histories, targets, 16), progress=heard.append)
    assert heard == [16, 32, 40]
