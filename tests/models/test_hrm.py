"""hrm: both poolings against a NumPy forward pass, the user's fallback, causality with users,
a user-dependent next item it learns only through the user, save/reload parity with users."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import NUM_ITEMS, NUM_USERS, build, random_histories, right_pad
from tests.models.scores import raw_scores
from tfseq.config import ConfigError
from tfseq.data.schema import ITEM_IDS, USER_IDS
from tfseq.models import MODELS
from tfseq.models.hrm import HRMConfig


def numpy_query(items: np.ndarray, users: np.ndarray, history: list[int], user: int, window: int,
                aggregation: str) -> np.ndarray:
    """HRM by hand: pool the last ``window`` items, then pool [user, that] (the items alone for no user)."""
    pool = np.max if aggregation == "max" else np.mean
    recent = items[history[-window:]]  # [w, D]
    s = pool(recent, axis=0)
    if not 0 < user < len(users):
        return s
    return pool(np.stack([users[user], s]), axis=0)


@pytest.mark.parametrize("aggregation", ["average", "max"])
def test_both_layers_pool_as_the_numpy_oracle(aggregation):
    model = build("hrm", HRMConfig(window=3, aggregation=aggregation, embedding_size=4))
    items = model.item_embedding.embeddings.numpy()
    users = model.user_embedding.embeddings.numpy()
    histories = [[3, 4], [1, 2, 3, 4, 5], [9], [7, 7, 8, 2]]
    user_ids = [2, 0, 5, NUM_USERS + 3]  # known, unknown, the last known, outside the table
    item_ids = tf.constant(right_pad(histories))
    every = model.encode_all({ITEM_IDS: item_ids, USER_IDS: tf.constant(user_ids)}).numpy()  # [B, L, D]
    last = model.encode({ITEM_IDS: item_ids, USER_IDS: tf.constant(user_ids)}).numpy()  # [B, D]
    for row, (history, user) in enumerate(zip(histories, user_ids)):
        for t in range(len(history)):
            # e.g. average, window 3, history [1, 2, 3, 4, 5] at t = 4, user 2:
            # s = (e3 + e4 + e5) / 3, query = (u2 + s) / 2; max: s = max(e3, e4, e5), query = max(u2, s)
            want = numpy_query(items, users, history[: t + 1], user, 3, aggregation)
            np.testing.assert_allclose(every[row, t], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(last[row], every[row, len(history) - 1], rtol=1e-5, atol=1e-6)


def test_average_by_hand_on_a_one_dimensional_table():
    model = build("hrm", HRMConfig(window=2, aggregation="average", embedding_size=1))
    model.item_embedding.embeddings.assign(np.arange(NUM_ITEMS, dtype=np.float32)[:, None])  # e_i = i
    model.user_embedding.embeddings.assign(10.0 * np.arange(NUM_USERS, dtype=np.float32)[:, None])  # u_n = 10n
    item_ids = tf.constant([[2, 4, 9]], tf.int64)
    # positions: [2] -> 2; [2, 4] -> 3; [4, 9] -> 6.5 (the window drops 2); with user 1: (10 + s) / 2
    np.testing.assert_allclose(model.encode_all(item_ids).numpy()[0, :, 0], [2.0, 3.0, 6.5])
    np.testing.assert_allclose(
        model.encode_all({ITEM_IDS: item_ids, USER_IDS: tf.constant([1])}).numpy()[0, :, 0], [6.0, 6.5, 8.25]
    )
    model_max = build("hrm", HRMConfig(window=2, aggregation="max", embedding_size=1))
    model_max.item_embedding.embeddings.assign(np.arange(NUM_ITEMS, dtype=np.float32)[:, None])
    model_max.user_embedding.embeddings.assign(np.full([NUM_USERS, 1], 5.0, np.float32))
    # max: [2] -> 2, [2, 4] -> 4, [4, 9] -> 9; with a user at 5: max(5, s) = 5, 5, 9
    np.testing.assert_allclose(model_max.encode_all(item_ids).numpy()[0, :, 0], [2.0, 4.0, 9.0])
    np.testing.assert_allclose(
        model_max.encode_all({ITEM_IDS: item_ids, USER_IDS: tf.constant([3])}).numpy()[0, :, 0], [5.0, 5.0, 9.0]
    )


def test_shapes_with_and_without_users():
    model = build("hrm", HRMConfig(embedding_size=8))
    item_ids = tf.constant(random_histories(5, 7, seed=1))
    users = tf.constant([1, 2, 0, 4, 5], tf.int64)
    assert model.encode(item_ids).shape == (5, 8)
    assert model.encode({ITEM_IDS: item_ids, USER_IDS: users}).shape == (5, 8)
    assert model.encode_all({ITEM_IDS: item_ids, USER_IDS: users}).shape == (5, 7, 8)
    assert raw_scores(model, {ITEM_IDS: item_ids, USER_IDS: users}).shape == (5, NUM_ITEMS)
    assert model.candidate_embeddings().shape == (NUM_ITEMS, 8)


def test_a_missing_or_unknown_user_is_the_sequence_only_path():
    model = build("hrm")
    item_ids = tf.constant(random_histories(4, 6, seed=2))
    alone = model.encode({ITEM_IDS: item_ids}).numpy()  # no user_ids
    for unknown in ([0, 0, 0, 0], [NUM_USERS, NUM_USERS + 1, -1, 10**6]):
        np.testing.assert_array_equal(model.encode({ITEM_IDS: item_ids, USER_IDS: tf.constant(unknown)}).numpy(), alone)
        np.testing.assert_array_equal(
            model.encode_all({ITEM_IDS: item_ids, USER_IDS: tf.constant(unknown)}).numpy(),
            model.encode_all({ITEM_IDS: item_ids}).numpy(),
        )
    known = model.encode({ITEM_IDS: item_ids, USER_IDS: tf.constant([1, 2, 3, 4])}).numpy()
    assert not np.allclose(known, alone)  # a known user does change the query
    # one known row in a batch of unknown ones changes that row only
    mixed = model.encode({ITEM_IDS: item_ids, USER_IDS: tf.constant([0, 2, 0, 0])}).numpy()
    np.testing.assert_array_equal(mixed[[0, 2, 3]], alone[[0, 2, 3]])
    np.testing.assert_array_equal(mixed[1], known[1])


def test_query_at_t_ignores_later_items_with_a_user():
    model = build("hrm", HRMConfig(window=3))
    item_ids = random_histories(5, 6, seed=3, min_len=6)
    users = tf.constant([1, 2, 3, 0, 5])
    before = model.encode_all({ITEM_IDS: tf.constant(item_ids), USER_IDS: users}).numpy()
    rng = np.random.default_rng(4)
    for t in range(5):
        changed = item_ids.copy()
        changed[:, t + 1:] = rng.integers(1, NUM_ITEMS, changed[:, t + 1:].shape)
        after = model.encode_all({ITEM_IDS: tf.constant(changed), USER_IDS: users}).numpy()
        np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-6)


def test_only_the_last_window_items_matter():
    model = build("hrm", HRMConfig(window=2))
    long = right_pad([[1, 2, 3, 4, 5], [6, 7, 8]])
    short = right_pad([[4, 5], [7, 8]])
    users = tf.constant([1, 2])
    np.testing.assert_allclose(
        model.encode({ITEM_IDS: tf.constant(long), USER_IDS: users}),
        model.encode({ITEM_IDS: tf.constant(short), USER_IDS: users}), atol=1e-6,
    )


def favourite_sequences(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User u (1..5) alternates a random item with its favourite 15 + u: ``r, f, r', f, ...``.

    After a random item only the user tells which item comes next.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(1, NUM_USERS, rows)
    sequences = np.zeros((rows, 9), np.int64)
    sequences[:, 0::2] = rng.integers(1, 15, (rows, 5))
    sequences[:, 1::2] = (15 + users)[:, None]
    return sequences, users


def test_learns_a_next_item_that_only_the_user_predicts():
    model = build("hrm", HRMConfig(window=1, aggregation="average", dropout_prob=0.0))
    sequences, users = favourite_sequences(64, seed=5)
    batch = {"item_ids": tf.constant(sequences[:, :-1]), "targets": tf.constant(sequences[:, 1:]),
             "user_ids": tf.constant(users)}
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=1, epochs=60, verbose=0)
    probe, probe_users = favourite_sequences(32, seed=6)
    history = tf.constant(probe[:, :1])  # one random item: its next item is the user's favourite
    favourite = 15 + probe_users

    def hit_rate(scores: np.ndarray) -> float:
        return float(np.mean(np.argmax(scores[:, 1:], axis=1) + 1 == favourite))

    with_user = hit_rate(raw_scores(model, {ITEM_IDS: history, USER_IDS: tf.constant(probe_users)}).numpy())
    without = hit_rate(raw_scores(model, history).numpy())
    assert with_user == 1.0  # the user names the favourite
    assert without <= 0.5  # the item alone cannot (5 favourites, all equally likely after it)


def test_save_weights_then_reload_scores_identically_with_users(tmp_path):
    model = build("hrm", seed=1)
    sequences, users = favourite_sequences(16, seed=7)
    batch = {"item_ids": tf.constant(sequences[:, :-1]), "targets": tf.constant(sequences[:, 1:]),
             "user_ids": tf.constant(users)}
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=2, verbose=0)
    model.save_weights(str(tmp_path / "weights"))
    fresh = build("hrm", seed=2)
    features = {ITEM_IDS: tf.constant(random_histories(5, 6, seed=8)), USER_IDS: tf.constant([1, 2, 0, 4, 5])}
    assert not np.allclose(raw_scores(fresh, features), raw_scores(model, features))
    fresh.load_weights(str(tmp_path / "weights")).assert_existing_objects_matched()
    np.testing.assert_array_equal(
        raw_scores(fresh, features).numpy(), raw_scores(model, features).numpy()
    )


def test_tied_weights_score_with_the_input_table():
    model = build("hrm", HRMConfig(tie_weights=True))
    assert model.candidate_embeddings() is model.item_embedding.embeddings
    untied = build("hrm")
    assert untied.candidate_embeddings() is not untied.item_embedding.embeddings


def test_config_and_construction_errors_name_the_field():
    with pytest.raises(ConfigError, match="HRMConfig.aggregation"):
        HRMConfig(aggregation="sum")
    with pytest.raises(ConfigError, match="HRMConfig.window"):
        HRMConfig(window=0)
    with pytest.raises(ValueError, match="user_vocab_size"):
        MODELS.build("hrm", num_items=NUM_ITEMS)


def test_the_evaluator_ranks_with_the_batch_users():
    from tfseq.evaluation import Evaluator

    model = build("hrm")
    item_ids = random_histories(6, 5, seed=9)
    targets = np.array([3, 5, 7, 9, 11, 13])
    users = np.array([1, 2, 0, 4, 5, 3])

    def ranks_by_hand(scores: np.ndarray) -> np.ndarray:
        # rank = #(s > s_t) + #(s == s_t and index < t), padding column at -inf
        scores[:, 0] = -np.inf
        own = scores[np.arange(len(targets)), targets][:, None]
        columns = np.arange(scores.shape[1])[None, :]
        return ((scores > own) | ((scores == own) & (columns < targets[:, None]))).sum(axis=1)

    evaluator = Evaluator(model)
    with_users = np.concatenate(
        list(evaluator.batch_ranks([{"item_ids": item_ids, "target": targets, "user_ids": users}])))
    without = np.concatenate(list(evaluator.batch_ranks([{"item_ids": item_ids, "target": targets}])))
    features = {ITEM_IDS: tf.constant(item_ids), USER_IDS: tf.constant(users)}
    np.testing.assert_array_equal(with_users, ranks_by_hand(raw_scores(model, features).numpy()))
    np.testing.assert_array_equal(without, ranks_by_hand(raw_scores(model, tf.constant(item_ids)).numpy()))
    assert not np.array_equal(with_users, without)
