"""tfseq: sequential recommendation on TensorFlow.

Importing this package selects Keras 2 (``tf-keras``) for TensorFlow before
TensorFlow is first imported: tensorflow-recommenders is written against the
Keras 2 API, and TF 2.16+ would otherwise hand it Keras 3.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")  # the user's own choice wins over ours
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def run(input: str = "", **settings):  # noqa: A002  (the flag's name)
    """Runs the pipeline from Python; see :func:`pipeline.api.run`."""
    from pipeline.api import run as _run

    return _run(input, **settings)


def load(run_dir: str):
    """A trained run as an in-process recommender; see :func:`pipeline.api.load`."""
    from pipeline.api import load as _load

    return _load(run_dir)


__all__ = ["__version__", "load", "run"]
