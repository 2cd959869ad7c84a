"""Tuning: KerasTuner searches over the registry models, trained with the tfseq trainer."""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
