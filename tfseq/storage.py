"""The one atomic writer: a file appears whole or not at all, on local disks and object stores.

Every layer writes through it (the pipeline's stage records, the export's
description, checkpoints' state, tuning's trial records, benchmark results),
so a reader (the next stage, a model server polling a folder, a person
running ``cat``) never sees half a file, and a full disk or a kill leaves the
previous file as it was. Local paths use a temporary file in the same folder
and ``os.replace``; ``scheme://`` paths go through TensorFlow's file systems
(imported only then), where the final move is a copy.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
from typing import Any

# A temporary folder's owner record: the process writing it, so that a later run can tell a
# folder in progress from one a killed process left behind (pipeline.artifacts.remove_stale_temporaries).
OWNER = "_owner.json"


def owner_record() -> str:
    """The JSON ``{"pid", "host", "started"}`` of this process, for :data:`OWNER`."""
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})


def is_remote(path: str) -> bool:
    return "://" in path


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename; never half a file.

    The folder is created when missing.

    Raises:
      OSError: the folder cannot be written (the disk is full, ...); ``path`` is
        then unchanged and no temporary file is left behind.
    """
    if is_remote(path):
        import tensorflow as tf

        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        try:
            with tf.io.gfile.GFile(tmp, "wb") as f:
                f.write(data)
            tf.io.gfile.rename(tmp, path, overwrite=True)
        finally:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, value: Any, *, sort_keys: bool = False) -> None:
    """``value`` as indented JSON (one key per line), written atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=sort_keys) + "\n")
