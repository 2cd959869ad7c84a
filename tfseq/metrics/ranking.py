"""Top-K ranking metrics from the rank of the single true item, with RecBole's definitions.

``rank`` is 0-based: the number of items placed above the true item. With one
relevant item per user, RecBole's metrics at cut-off K reduce to:

* ``hit@K`` = ``recall@K`` = [rank < K]
* ``ndcg@K`` = 1 / log2(rank + 2) if rank < K
* ``mrr@K`` = 1 / (rank + 1) if rank < K
* ``precision@K`` = [rank < K] / K
* ``map@K`` = 1 / (rank + 1) if rank < K (average precision over min(K, 1) relevant items)

Every metric at every K comes from one rank vector, i.e. one ranking pass.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("recall", "mrr", "ndcg", "hit", "precision", "map")
DEFAULT_KS = (5, 10, 20)


def per_user_metrics(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each metric at cut-off ``k`` for every user ``[U]``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = (ranks < k).astype(np.float64)
    reciprocal = hit / (ranks + 1.0)
    return {
        "recall": hit,
        "hit": hit,
        "ndcg": hit / np.log2(ranks + 2.0),
        "mrr": reciprocal,
        "precision": hit / k,
        "map": reciprocal,
    }


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"recall@10": mean, ...}`` over users for every metric and every K."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    for k in ks:
        for name, values in per_user_metrics(ranks, k).items():
            out[f"{name}@{k}"] = float(values.mean())
    return out
