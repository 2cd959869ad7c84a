"""Process start-up for the command-line entry points: quiet imports and the errors users see as one line.

An entry point parses and validates its flags first, without TensorFlow or
Beam (``--help`` and a bad flag answer at once), then calls
:func:`quiet_startup` before the work that needs them.
"""

from __future__ import annotations

import logging
import os
import sys


def quiet_startup(verbose: bool = False, beam: bool = True) -> None:
    """Imports TensorFlow and Beam with their start-up logs silenced (unless ``verbose``).

    TensorFlow's C++ runtime writes oneDNN/CUDA notices ("failed call to
    cuInit" on every machine without a GPU) straight to file descriptor 2,
    before Python logging exists, and later logs oneDNN's int64 fallbacks as
    errors (so its log level goes to 3 unless the user set
    ``TF_CPP_MIN_LOG_LEVEL``; real failures still raise Python exceptions);
    Beam warns about optional GCP clients.
    None of it is actionable, so stderr is pointed at /dev/null while they load
    and initialise their devices, then restored: later errors still show.
    ``beam=False`` leaves Beam out (``serving.client`` runs no pipeline).
    """
    import tfseq  # TF_USE_LEGACY_KERAS before TensorFlow

    if verbose:
        return
    if tfseq.USER_TF_LOG_LEVEL is None:  # also oneDNN's int64 notices during training, logged as errors
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # A local Dask cluster (--runner=DaskRunner) logs every scheduler and worker event at INFO; its
    # workers are new processes, so the level travels in Dask's own environment variable.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    # Beam logs a failing DoFn's traceback before it re-raises the same error to the caller, which
    # prints it (a bug) or reports it in one line (a full disk, bad data): once is enough.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe, now rather than mid-training
        tf.get_logger().setLevel("ERROR")  # retracing notices between progress lines
        import tf_keras  # noqa: F401

        if beam:  # entry points that run no pipeline (serving.client) skip its import
            import apache_beam  # noqa: F401
    finally:
        root.setLevel(level)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions an entry point reports as one ``error:`` line with exit status 2.

    Bad configuration or data (named file, line or field), and the file system
    refusing a path (an unwritable ``--output_dir``, a missing file); anything
    else is a bug and keeps its traceback. TensorFlow's file errors count once
    TensorFlow is loaded; this does not load it (a flag error comes before it).
    """
    from tfseq.config import ConfigError
    from tfseq.data.formats import DataError

    errors: list[type[BaseException]] = [ConfigError, DataError, OSError]
    tf = sys.modules.get("tensorflow")
    tf_errors = getattr(tf, "errors", None)
    if tf_errors is not None:
        errors += [tf_errors.NotFoundError, tf_errors.PermissionDeniedError]
    return tuple(errors)


def user_error_in(error: BaseException) -> BaseException | None:
    """The user error (:func:`user_errors`) that caused ``error``, if any.

    A runner reports a DoFn's failure as its own exception (Beam: a
    ``RuntimeError`` carrying the text), with the original as its cause: a full
    disk inside ExampleGen is an ``OSError`` a few links down the chain.
    """
    kinds = user_errors()
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 20:
        if isinstance(cause, kinds):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def exit_status_of(error: Exception) -> int:
    """An entry point's answer to ``error``: a user error (wrapped or not) is one ``error:`` line and status 2;
    anything else is a bug and is raised again with its traceback."""
    cause = user_error_in(error)
    if cause is None:
        raise error
    print(f"error: {cause}", file=sys.stderr)
    return 2
