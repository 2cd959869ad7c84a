"""Serving: SavedModel export for TF Serving, warm-up requests, a gRPC client and a local PredictionService."""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
