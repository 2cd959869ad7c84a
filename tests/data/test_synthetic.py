"""The synthetic Markov-chain log: deterministic, per-user independent, learnable."""

from __future__ import annotations

import collections

import pytest

from tfseq.config import ConfigError
from tfseq.data import synthetic
from tfseq.data.synthetic import SyntheticConfig, user_interactions


def tsv(config: SyntheticConfig, users) -> list[list[str]]:
    return [[e.to_tsv() for e in user_interactions(config, u)] for u in users]


def test_same_seed_same_log_and_users_are_independent():
    config = SyntheticConfig(num_users=50, num_items=40, num_interactions=500, seed=3)
    first = tsv(config, range(50))
    assert first == tsv(config, range(50))
    # Any user alone, in any order, with nothing cached: what a Beam worker would compute.
    synthetic._chain.cache_clear()
    assert tsv(config, [17]) == [first[17]]
    assert tsv(config, reversed(range(50))) == first[::-1]
    assert len({tuple(r.split("\t")[1] for r in rows) for rows in first}) == 50  # users differ
    other = SyntheticConfig(num_users=50, num_items=40, num_interactions=500, seed=4)
    assert tsv(other, range(50)) != first


def test_shape_of_the_log():
    config = SyntheticConfig(num_users=200, num_items=100, num_interactions=3000)
    users = [user_interactions(config, u) for u in range(200)]
    assert min(len(u) for u in users) >= 3
    total = sum(len(u) for u in users)
    assert 0.8 * 3000 < total < 1.2 * 3000
    for events in users:
        times = [e.timestamp for e in events]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all(e.item.startswith("i") and 0 <= int(e.item[1:]) < 100 for e in events)


def test_next_item_is_far_more_predictable_from_the_last_item_than_from_popularity():
    config = SyntheticConfig(num_users=600, num_items=200, num_interactions=12000)
    sequences = [[e.item for e in user_interactions(config, u)] for u in range(600)]
    train, held_out = sequences[:500], sequences[500:]
    successors: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    popularity: collections.Counter = collections.Counter()
    for seq in train:
        popularity.update(seq)
        for a, b in zip(seq, seq[1:]):
            successors[a][b] += 1
    top = popularity.most_common(1)[0][0]
    pairs = [(a, b) for seq in held_out for a, b in zip(seq, seq[1:])]
    hits = sum(successors[a].most_common(1)[0][0] == b for a, b in pairs if successors[a])
    markov = hits / len(pairs)
    popular = sum(b == top for _, b in pairs) / len(pairs)
    assert markov > 0.3 and markov > 5 * popular


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_users": 100, "num_interactions": 200}, "below 3 per user"),
        ({"num_items": 1}, "at least 1 user and 2 items"),
        ({"concentration": 0.0}, "concentration must be > 0"),
        ({"order": 0}, "order=0"),
    ],
)
def test_invalid_knobs_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticConfig(**kwargs)
