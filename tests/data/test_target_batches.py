"""Batches counted in targets (``TrainConfig.batch_by="targets"``): every window once, at most the
budget of targets per step, the same number of batches every epoch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.test_reader import all_batches, random_sequences, write_transform_dir
from tfseq.config import ConfigError, TrainConfig
from tfseq.data import reader


@pytest.mark.parametrize("budget", [1, 17, 128])
def test_every_window_once_within_the_budget_and_the_same_count_every_epoch(budget):
    lengths = np.random.default_rng(0).integers(1, 51, size=2000)
    expected = reader.count_batches(lengths, budget, shuffle=True, by_targets=True)
    epochs = [reader.batch_indices(lengths, budget, np.random.default_rng([3, e]), by_targets=True)
              for e in range(3)]
    for batches in epochs:
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
        assert len(batches) == expected
        for batch in batches:  # a window longer than the budget is a batch of its own
            assert lengths[batch].sum() <= budget or len(batch) == 1
    assert [b.tolist() for b in epochs[0]] != [b.tolist() for b in epochs[1]]


def test_batches_are_filled_greedily_in_length_order():
    lengths = np.array([3, 1, 2, 2, 5, 1])
    batches = reader.batch_indices(lengths, 4, None, by_targets=True)  # natural order
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4], [5]]
    assert reader.count_batches(lengths, 4, shuffle=False, by_targets=True) == 4
    shuffled = reader.batch_indices(lengths, 4, np.random.default_rng(0), by_targets=True)
    assert sorted(sorted(lengths[b].tolist()) for b in shuffled) == [[1, 1, 2], [2], [3], [5]]


def test_causal_training_batches_hold_at_most_the_budget_of_targets(tmp_path):
    sequences = random_sequences(60, items=30, max_len=20, seed=4)
    root, metadata = write_transform_dir(tmp_path, sequences, num_items=30)
    data = reader.training_data(root, metadata, causal=True, max_seq_len=8, batch_size=24, seed=1,
                                by_targets=True)
    batches = all_batches(data.dataset())
    targets = [int((batch["targets"] != 0).sum()) for batch in batches]
    assert len(batches) == data.num_batches
    assert sum(targets) == data.num_targets
    assert max(targets) <= 24 < max(len(batch["targets"]) * 8 for batch in batches)
    by_sequences = reader.training_data(root, metadata, causal=True, max_seq_len=8, batch_size=24, seed=1)
    assert by_sequences.num_batches < data.num_batches


def test_prefix_batches_are_the_same_either_way(tmp_path):
    root, metadata = write_transform_dir(tmp_path, random_sequences(40, items=20, max_len=12, seed=5),
                                         num_items=20)
    settings = dict(causal=False, max_seq_len=6, batch_size=16, seed=2)
    plain = all_batches(reader.training_data(root, metadata, **settings).dataset())
    by_targets = all_batches(reader.training_data(root, metadata, by_targets=True, **settings).dataset())
    assert len(plain) == len(by_targets)
    for a, b in zip(plain, by_targets):
        np.testing.assert_array_equal(a["item_ids"], b["item_ids"])


def test_batch_by_names_its_choices():
    with pytest.raises(ConfigError, match="TrainConfig.batch_by must be one of sequences, targets, got 'rows'"):
        TrainConfig(batch_by="rows")
