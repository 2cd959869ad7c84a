"""Metrics: ranking metrics from the rank of the true item (RecBole definitions)."""
