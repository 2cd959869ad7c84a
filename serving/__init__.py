"""Serving: SavedModel export for TF Serving, warm-up requests, a gRPC client and a local PredictionService."""

import sys

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

if sys.argv[:1] == ["-m"]:  # ``python -m serving.<tool>`` is starting: a command line, not a library import
    from tfseq.runtime import quiet_startup

    quiet_startup(verbose="--verbose" in sys.argv)
