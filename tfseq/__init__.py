"""tfseq: sequential recommendation on TensorFlow.

Importing this package selects Keras 2 (``tf-keras``) for TensorFlow before
TensorFlow is first imported: tensorflow-recommenders is written against the
Keras 2 API, and TF 2.16+ would otherwise hand it Keras 3.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["__version__"]
