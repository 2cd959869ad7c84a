"""Metrics: ranking metrics from the rank of the true item (RecBole definitions).

The metric names live here, importable without TensorFlow (configs and flags
validate ``ndcg@10`` before anything is computed); :mod:`tfseq.metrics.ranking`
computes them.
"""

METRICS = ("recall", "hit", "ndcg", "mrr", "precision", "map")
UNCUT_METRICS = ("mrr",)  # over the full catalogue; their names carry no "@K"
DEFAULT_KS = (5, 10, 20)
