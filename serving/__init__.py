"""Serving: SavedModel export for TF Serving, warm-up requests, a gRPC client and a local PredictionService."""

import sys

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# ``python -m serving.<tool>`` is starting: a command line, not a library import. The client reads its flags
# before it loads TensorFlow (a wrong flag answers at once) and silences the load itself.
_PARSES_FLAGS_FIRST = ("serving.client",)
if sys.argv[:1] == ["-m"] and not set(_PARSES_FLAGS_FIRST) & set(getattr(sys, "orig_argv", ())):
    from tfseq.runtime import quiet_startup

    quiet_startup(verbose="--verbose" in sys.argv)
