"""The TFX-style pipeline: ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher on Apache Beam."""

import tfseq  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
