"""Top-K ranking metrics from the rank of the single true item, with RecBole's definitions.

``rank`` is 0-based: the number of items placed above the true item. With one
relevant item per user, RecBole's metrics at cut-off K reduce to:

* ``hit@K`` = ``recall@K`` = [rank < K]
* ``ndcg@K`` = 1 / log2(rank + 2) if rank < K (the ideal DCG is 1)
* ``mrr@K`` = 1 / (rank + 1) if rank < K
* ``precision@K`` = [rank < K] / K
* ``map@K`` = 1 / (rank + 1) if rank < K (average precision over min(K, 1) relevant items)

and 0 otherwise. Beside them, without a cut-off (named without ``@``):

* ``mrr`` = 1 / (rank + 1) over the full catalogue (Spotlight's sequence MRR;
  Spotlight averages the ranks of tied items, tfseq breaks ties as the
  evaluator documents).

Every metric at every K comes from one rank vector, i.e. one ranking pass; a
metric's value is its mean over users.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfseq.metrics import DEFAULT_KS, METRICS, UNCUT_METRICS  # noqa: F401  (the names, defined without TF)


def validated_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """``ks`` as a tuple of distinct positive ints; raises ``ValueError`` otherwise."""
    out = tuple(ks)
    if not out:
        raise ValueError("ks must name at least one cut-off K")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every K must be an int >= 1, got {k!r} in ks={out}")
    if len(set(out)) != len(out):
        raise ValueError(f"ks has duplicates: {out}")
    return tuple(int(k) for k in out)


def as_rank_vector(ranks: np.ndarray | tf.Tensor | Sequence[int]) -> np.ndarray:
    """Ranks (numpy, TF or a list) as a float64 vector ``[U]``; raises on a bad shape or value."""
    values = np.asarray(ranks.numpy() if isinstance(ranks, tf.Tensor) else ranks, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"ranks must be a vector [num_users], got shape {values.shape}")
    if values.size and (np.any(values < 0) or not np.all(np.isfinite(values))):
        raise ValueError("ranks must be finite and >= 0")
    return values


def per_user_metrics(
    ranks: np.ndarray | tf.Tensor | Sequence[int], k: int
) -> dict[str, np.ndarray]:
    """Each metric at cut-off ``k`` for every user: ``{"ndcg": [U], ...}``."""
    values = as_rank_vector(ranks)
    hit = (values < k).astype(np.float64)
    reciprocal = hit / (values + 1.0)
    return {
        "recall": hit,
        "hit": hit,
        "ndcg": hit / np.log2(values + 2.0),
        "mrr": reciprocal,
        "precision": hit / k,
        "map": reciprocal,
    }


def uncut_metrics(ranks: np.ndarray | tf.Tensor | Sequence[int]) -> dict[str, np.ndarray]:
    """Each metric of :data:`UNCUT_METRICS` for every user: ``{"mrr": [U]}``."""
    return {"mrr": 1.0 / (as_rank_vector(ranks) + 1.0)}


def metric_sums(
    ranks: np.ndarray | tf.Tensor | Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """``{"recall@10": sum over users, ..., "mrr": sum}`` for every metric and K, and the uncut ones
    (sums add across batches)."""
    out: dict[str, float] = {}
    for k in validated_ks(ks):
        for name, values in per_user_metrics(ranks, k).items():
            out[f"{name}@{k}"] = float(values.sum())
    for name, values in uncut_metrics(ranks).items():
        out[name] = float(values.sum())
    return out


def metrics_from_ranks(
    ranks: np.ndarray | tf.Tensor | Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """``{"recall@10": mean over users, ..., "mrr": mean}``: every metric in :data:`METRICS` at every K,
    and every one in :data:`UNCUT_METRICS`.

    Args:
      ranks: ``[U]`` 0-based rank of each user's true item.
      ks: cut-offs.

    Raises:
      ValueError: no users, a rank < 0, or bad ``ks``.
    """
    values = as_rank_vector(ranks)
    if values.size == 0:
        raise ValueError("no users to evaluate")
    return {name: total / values.size for name, total in metric_sums(values, ks).items()}
