"""The synthetic Markov-chain log: deterministic, per-user independent, learnable."""

from __future__ import annotations

import collections

import numpy as np
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
    # users draw from their own streams: no two share items and start time
    assert len({tuple(r.split("\t", 1)[1] for r in rows) for rows in first}) == 50
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


def test_item_popularity_is_long_tailed_with_the_documented_exponent():
    config = SyntheticConfig(num_users=2000, num_items=5000, num_interactions=40000)
    counts = collections.Counter(
        e.item for u in range(2000) for e in user_interactions(config, u)
    )
    frequencies = sorted(counts.values(), reverse=True)
    # the 1% most popular items hold far more than 1% of the events, and most items are rare
    head = sum(frequencies[: len(frequencies) // 100]) / sum(frequencies)
    assert head > 0.1
    # the rank-frequency slope of the head is near the Zipf exponent
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(frequencies[:200]), 1)[0]
    assert abs(-slope - synthetic.POPULARITY_EXPONENT) < 0.3


def test_every_catalogue_item_enters_the_log_even_when_there_are_more_items_than_users():
    config = SyntheticConfig(num_users=200, num_items=900, num_interactions=4000)
    logs = [user_interactions(config, u) for u in range(200)]
    assert {e.item for events in logs for e in events} == {f"i{i}" for i in range(900)}
    # user 7 opens with its share of the catalogue, then follows the chain
    assert [e.item for e in logs[7][:5]] == ["i7", "i207", "i407", "i607", "i807"]
