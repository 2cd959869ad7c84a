"""What Spotlight's three families (``cnn``, ``lstm``, ``pooling``) share (:mod:`tfseq.models.spotlight`): the
per-item bias in every score, its learning, its export, and the training defaults they take."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import (
    NUM_ITEMS,
    assert_saved_model_scores_like_the_model,
    build,
    causal_batch,
    item_counts,
    random_histories,
)
from tests.models.scores import raw_scores
from tfseq.models.base import gather_last
from tfseq.models.cnn import CNNConfig
from tfseq.models.lstm import LSTMConfig
from tfseq.models.pooling import PoolingConfig

SPOTLIGHT_FAMILIES = {
    "cnn": CNNConfig(embedding_size=8, item_bias=True),
    "lstm": LSTMConfig(embedding_size=8, item_bias=True),
    "pooling": PoolingConfig(embedding_size=8, item_bias=True, tie_weights=False),
}


@pytest.mark.parametrize("name", sorted(SPOTLIGHT_FAMILIES))
def test_item_bias_adds_one_score_per_item_to_query_dot_item(name):
    model = build(name, SPOTLIGHT_FAMILIES[name])
    model.item_biases.assign(np.linspace(-1.0, 1.0, NUM_ITEMS))
    item_ids = tf.constant(random_histories(4, 6, seed=8))
    representation = gather_last(model.representations(item_ids), item_ids).numpy()  # [B, E]
    items = model.scored_items().numpy()  # [N, E]
    # score(i) = representation . item_i + bias_i, carried as one more column of each side
    expected = representation @ items.T + np.linspace(-1.0, 1.0, NUM_ITEMS)[np.newaxis, :]
    np.testing.assert_allclose(raw_scores(model, item_ids).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert model.encode(item_ids).shape == (4, 9) and model.candidate_embeddings().shape == (NUM_ITEMS, 9)
    np.testing.assert_array_equal(model.encode_all(item_ids).numpy()[..., -1], np.ones((4, 6)))


@pytest.mark.parametrize("name", sorted(SPOTLIGHT_FAMILIES))
def test_item_biases_learn_popularity_when_the_history_tells_nothing(name):
    # Next items drawn from a Zipf law over items 1..20, whatever came before: the best a model can
    # do is rank by popularity. From zero biases and near-uniform scores, each gradient step moves
    # bias_i by lr * (share of targets that are i - softmax_i), so a few plain SGD steps order the
    # biases as the targets' counts (rank correlation, 1 = the same order; ties in the counts keep
    # it a little below 1).
    rng = np.random.default_rng(0)
    probabilities = 1.0 / np.arange(1, NUM_ITEMS)
    probabilities /= probabilities.sum()
    sequences = [list(rng.choice(np.arange(1, NUM_ITEMS), size=8, p=probabilities)) for _ in range(128)]
    target_counts = item_counts([s[1:] for s in sequences])[1:]
    model = build(name, SPOTLIGHT_FAMILIES[name], counts=item_counts(sequences))
    model.compile(optimizer=tf.keras.optimizers.SGD(1.0))
    batch = causal_batch(sequences)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=1, epochs=5, verbose=0)
    biases = model.item_biases.numpy()[1:]  # items 1..20
    by_bias, by_count = np.argsort(np.argsort(-biases)), np.argsort(np.argsort(-target_counts))
    assert np.corrcoef(by_bias, by_count)[0, 1] > 0.9, (biases, target_counts)


@pytest.mark.parametrize("name", sorted(SPOTLIGHT_FAMILIES))
def test_saved_model_with_item_biases_scores_like_the_model(name, tmp_path):
    model = build(name, SPOTLIGHT_FAMILIES[name])
    model.item_biases.assign(np.linspace(-1.0, 1.0, NUM_ITEMS))
    assert_saved_model_scores_like_the_model(model, str(tmp_path))


def test_without_item_bias_the_query_is_the_representation_and_the_candidates_the_table():
    model = build("cnn", CNNConfig(embedding_size=8, item_bias=False))
    item_ids = tf.constant(random_histories(3, 5, seed=9))
    assert model.item_biases is None
    np.testing.assert_array_equal(model.encode_all(item_ids).numpy(), model.representations(item_ids).numpy())
    assert model.candidate_embeddings() is model.item_embedding.embeddings
