"""serving/clusters.py: the seeded k-means index of the approximate top-K, against numpy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from serving.clusters import build_cluster_index, check_search_options


def mixture(items: int, centres: int, dim: int, seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``([items + 1, dim] table, [items + 1] blob of each row)``: row 0 padding (zeros, blob -1), the
    rest around ``centres`` random centres."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim))
    blob = rng.integers(0, centres, size=items)
    rows = centre[blob] + spread * rng.normal(size=(items, dim))
    return np.vstack([np.zeros((1, dim)), rows]).astype(np.float32), np.concatenate([[-1], blob])


def test_every_item_is_in_exactly_one_cluster_around_its_nearest_centroid():
    table, blob = mixture(300, 6, 4)
    index = build_cluster_index(table, 6, 2)
    assert sorted(index.items.tolist()) == list(range(1, 301))  # padding (row 0) is never a candidate
    assert index.offsets[0] == 0 and index.offsets[-1] == 300 and np.all(np.diff(index.offsets) >= 0)
    for c in range(6):
        members = index.items[index.offsets[c] : index.offsets[c + 1]]
        assert np.all(np.diff(members) > 0)  # ascending within a cluster
        if len(members):  # each centroid is the mean of its items ...
            np.testing.assert_allclose(index.centroids[c], table[members].mean(axis=0), rtol=1e-5, atol=1e-6)
    # ... and each item is nearer its own centroid than any other (Lloyd converged on 6 tight blobs)
    distances = ((table[1:, np.newaxis, :] - index.centroids[np.newaxis]) ** 2).sum(axis=2)  # [300, 6]
    own = np.repeat(np.arange(6), np.diff(index.offsets))[np.argsort(index.items)]
    np.testing.assert_array_equal(np.argmin(distances, axis=1), own)
    # six tight blobs, six clusters: each cluster is one whole blob
    assert sorted(tuple(sorted(set(blob[index.items[index.offsets[c]:index.offsets[c + 1]]]))) for c in range(6)) \
        == [(b,) for b in range(6)]
    assert index.facts()["empty_clusters"] == 0 and index.facts()["method"] == "clusters"


def test_the_index_is_seeded_and_fits_on_a_sample_of_a_large_catalogue():
    table, _ = mixture(2000, 40, 8, spread=0.5)
    first = build_cluster_index(table, 10, 3, seed=1, sample_per_cluster=50)
    again = build_cluster_index(table, 10, 3, seed=1, sample_per_cluster=50)
    other = build_cluster_index(table, 10, 3, seed=2, sample_per_cluster=50)
    for name in ("centroids", "offsets", "items"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.items, other.items)
    assert first.sample == 500 and first.facts()["kmeans_sample"] == 500  # 50 per cluster, not all 2000
    assert first.probes == 3 and first.clusters == 10
    whole = build_cluster_index(table, 10, 3, seed=1, sample_per_cluster=1000)
    assert whole.sample == 2000  # the sample is capped by the catalogue


@pytest.mark.parametrize(
    "clusters, probes, word",
    [(5, 6, "approximate_probes must be in 1..5"), (11, 1, "approximate_clusters must be in 1..10"),
     (0, 2, "approximate_probes must be 0"), (3, 0, "approximate_probes must be in 1..3"),
     (-1, 1, "approximate_clusters must be in 1..10")],
)
def test_bad_options_are_one_line_errors(clusters, probes, word):
    with pytest.raises(ValueError, match=word) as failure:
        check_search_options(clusters, probes, num_items=11)  # 10 items and padding
    assert "\n" not in str(failure.value)
    with pytest.raises(ValueError, match=word):
        build_cluster_index(mixture(10, 2, 3)[0], clusters, probes)
    check_search_options(0, 0, num_items=11)  # the exact search
