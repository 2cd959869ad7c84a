"""Metrics: ranking metrics from the rank of the true item (RecBole definitions).

The metric names live here, importable without TensorFlow (configs and flags
validate ``ndcg@10`` before anything is computed); :mod:`tfseq.metrics.ranking`
computes them.
"""

METRICS = ("recall", "hit", "ndcg", "mrr", "precision", "map")
UNCUT_METRICS = ("mrr",)  # over the full catalogue; their names carry no "@K"
DEFAULT_KS = (5, 10, 20)


def reported(metrics: dict[str, float], names: tuple[str, ...], keep: str) -> dict[str, float]:
    """``metrics`` limited to the metric ``names`` (any cut-off; empty: all), always with ``keep``
    (the valid_metric) and the ``num_users`` count."""
    if not names:
        return dict(metrics)
    return {key: value for key, value in metrics.items()
            if key.partition("@")[0] in names or key in (keep, "num_users")}
