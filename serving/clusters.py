"""The item-cluster index of the SavedModel's approximate top-K: seeded k-means over the candidate table.

A large catalogue makes the exact top-K a ``[B, D] x [D, N]`` matmul per
request. The approximate path (``serving.export``, ``--approximate_clusters C
--approximate_probes P``) is an inverted-file search in standard TF ops: the
items are grouped into C clusters once, at export, and a request scores the
query against the C centroids, keeps the P best clusters and scores their
items exactly. This module builds that grouping in numpy (no TensorFlow), so it
is seeded and the same on every machine:

* Lloyd's k-means (squared Euclidean distance, k-means++ seeds) over the
  candidate vectors of items ``1 .. N-1`` (row 0, padding, is never a candidate). On a large
  catalogue the centroids are fitted on a seeded sample of
  ``SAMPLE_PER_CLUSTER * C`` items (at least 64 per cluster, as inverted-file
  indexes are trained), then every item is assigned to its nearest centroid.
* Each centroid is finally the mean of the items assigned to it, so
  ``query . centroid`` is the mean score of the cluster's items: probing the
  best centroids probes the clusters whose items score best on average.
* The items grouped by cluster are stored CSR-style: ``items [N-1]`` (item
  indices, cluster by cluster, ascending within a cluster) and ``offsets
  [C+1]`` (cluster ``c`` holds ``items[offsets[c]:offsets[c+1]]``). Unlike a
  padded ``[C, M]`` table, a request reads only the probed clusters' real
  items, however unbalanced the clusters are.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfseq.config import ConfigError

SAMPLE_PER_CLUSTER = 64  # items sampled per cluster to fit the centroids on a large catalogue
KMEANS_ITERATIONS = 10  # Lloyd iterations at most (fewer once no assignment changes)
_CHUNK_ROWS = 16_384  # rows per distance block: [chunk, C] float32 at a time, never [N, C]


@dataclasses.dataclass(frozen=True)
class ClusterIndex:
    """Items grouped by cluster, and the clusters' centroids.

    Attributes:
      centroids: ``[C, D]`` float32, the mean candidate vector of each cluster
        (an empty cluster keeps its fitted centroid; it holds no item to return).
      offsets: ``[C + 1]`` int64; cluster ``c`` is ``items[offsets[c]:offsets[c + 1]]``.
      items: ``[N - 1]`` int64 item indices (1 .. N-1), cluster by cluster, ascending within one.
      probes: P, the clusters searched per request.
      seed: the k-means seed.
      iterations: Lloyd iterations run.
      sample: how many items the centroids were fitted on.
    """

    centroids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    probes: int
    seed: int
    iterations: int
    sample: int

    @property
    def clusters(self) -> int:
        return int(self.centroids.shape[0])

    def sizes(self) -> np.ndarray:
        """``[C]`` items per cluster."""
        return np.diff(self.offsets)

    def facts(self) -> dict[str, Any]:
        """What the export records about the index (``tfseq_export.json``'s ``top_k_search``)."""
        sizes = self.sizes()
        return {
            "method": "clusters",
            "clusters": self.clusters,
            "probes": self.probes,
            "kmeans_seed": self.seed,
            "kmeans_iterations": self.iterations,
            "kmeans_sample": self.sample,
            "largest_cluster": int(sizes.max()),
            "empty_clusters": int(np.sum(sizes == 0)),
        }


def check_search_options(clusters: int, probes: int, num_items: int) -> None:
    """Raises a one-line ConfigError (a ValueError) unless ``(clusters, probes)`` is exact ``(0, 0)`` or a
    valid cluster search.

    ``num_items`` counts the padding row, so ``num_items - 1`` items can be clustered.
    """
    if clusters == 0 and probes == 0:
        return
    if clusters == 0:
        raise ConfigError(
            f"approximate_probes must be 0 with the exact search (approximate_clusters 0), got {probes}; "
            "give approximate_clusters too"
        )
    if not 1 <= clusters <= num_items - 1:
        raise ConfigError(
            f"approximate_clusters must be in 1..{num_items - 1} (the number of items), or 0 for the exact "
            f"search; got {clusters}"
        )
    if not 1 <= probes <= clusters:
        raise ConfigError(f"approximate_probes must be in 1..{clusters} (approximate_clusters), got {probes}")


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[n]`` int64 index of the nearest centroid (squared Euclidean) of each row of ``vectors [n, D]``."""
    squared = np.einsum("cd,cd->c", centroids, centroids)  # [C]
    nearest = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block = vectors[start : start + _CHUNK_ROWS]  # [b, D]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every c of a row
        distances = squared[np.newaxis, :] - 2.0 * (block @ centroids.T)  # [b, C]
        nearest[start : start + len(block)] = np.argmin(distances, axis=1)
    return nearest


def _means(vectors: np.ndarray, assignment: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """``([C, D] float64 sums / counts, [C] counts)``: each cluster's mean (rows of empty clusters are 0)."""
    counts = np.bincount(assignment, minlength=clusters)  # [C]
    order = np.argsort(assignment, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.zeros((clusters, vectors.shape[1]), np.float64)
    filled = counts > 0
    sums[filled] = np.add.reduceat(vectors[order].astype(np.float64), starts[filled], axis=0)
    return sums / np.maximum(counts, 1)[:, np.newaxis], counts


def _kmeans_plus_plus(vectors: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """``[C, D]`` k-means++ seeds (Arthur & Vassilvitskii 2007): each next seed is an item drawn with
    probability proportional to its squared distance to the nearest seed so far, so that well-separated
    groups each get a seed (a uniform draw often puts two seeds in one group and none in another)."""
    seeds = np.empty((clusters, vectors.shape[1]), np.float32)
    seeds[0] = vectors[rng.integers(len(vectors))]
    nearest = ((vectors - seeds[0]) ** 2).sum(axis=1, dtype=np.float64)  # [s]
    for c in range(1, clusters):
        total = nearest.sum()
        pick = rng.choice(len(vectors), p=nearest / total) if total > 0 else rng.integers(len(vectors))
        seeds[c] = vectors[pick]
        np.minimum(nearest, ((vectors - seeds[c]) ** 2).sum(axis=1, dtype=np.float64), out=nearest)
    return seeds


def build_cluster_index(
    candidates: np.ndarray,
    clusters: int,
    probes: int,
    *,
    seed: int = 0,
    iterations: int = KMEANS_ITERATIONS,
    sample_per_cluster: int = SAMPLE_PER_CLUSTER,
) -> ClusterIndex:
    """Groups items ``1 .. N-1`` of ``candidates [N, D]`` into ``clusters`` by seeded k-means.

    Args:
      candidates: the model's candidate table ``[N, D]`` (row 0 is padding and is left out).
      clusters: C, 1 .. N-1.
      probes: P, 1 .. C (recorded with the index; the search itself is the SavedModel's).
      seed: seeds the sample and the initial centroids (k-means++ over the sample).
      iterations: Lloyd iterations at most on the sample; they stop early once no assignment changes.
      sample_per_cluster: the centroids are fitted on ``min(N - 1, sample_per_cluster * C)`` items.

    Returns:
      The :class:`ClusterIndex`; the same arrays for the same inputs and seed.
    """
    candidates = np.asarray(candidates, np.float32)
    if candidates.ndim != 2:
        raise ValueError(f"candidates must have shape [N, D], got {list(candidates.shape)}")
    check_search_options(clusters, probes, len(candidates))
    if clusters == 0:
        raise ValueError("approximate_clusters 0 is the exact search: there is no index to build")
    if iterations < 1 or sample_per_cluster < 1:
        raise ValueError(f"iterations and sample_per_cluster must be >= 1, got {iterations} and {sample_per_cluster}")
    vectors = candidates[1:]  # [n, D], item i is row i - 1
    n = len(vectors)
    rng = np.random.default_rng(seed)
    size = min(n, sample_per_cluster * clusters)
    sample = vectors if size == n else vectors[np.sort(rng.choice(n, size, replace=False))]  # [s, D]
    centroids = _kmeans_plus_plus(sample, clusters, rng)  # [C, D]
    assignment = None
    ran = 0
    for ran in range(1, iterations + 1):
        previous, assignment = assignment, _nearest(sample, centroids)
        if previous is not None and np.array_equal(previous, assignment):
            break
        means, counts = _means(sample, assignment, clusters)
        empty = np.flatnonzero(counts == 0)
        means[empty] = sample[rng.choice(size, len(empty), replace=False)] if len(empty) else means[empty]
        centroids = means.astype(np.float32)  # an empty cluster restarts at a random sampled item
    everything = _nearest(vectors, centroids)  # [n]: every item to its nearest fitted centroid
    means, counts = _means(vectors, everything, clusters)
    centroids = np.where(counts[:, np.newaxis] > 0, means, centroids).astype(np.float32)
    items = np.argsort(everything, kind="stable").astype(np.int64) + 1  # item index = row + 1
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ClusterIndex(centroids, offsets, items, int(probes), int(seed), ran, int(size))
