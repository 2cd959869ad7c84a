"""The one atomic writer: a file or a folder appears whole or not at all, on local disks and object stores.

Every layer writes through it (the pipeline's stage records, the export's
description, checkpoints' state, tuning's trial records, benchmark results),
so a reader (the next stage, a model server polling a folder, a person
running ``cat``) never sees half a file, and a full disk or a kill leaves the
previous file as it was. Local paths use a temporary file in the same folder
and ``os.replace``; ``scheme://`` paths go through TensorFlow's file systems
(imported only then), where the final move is a copy.

It also owns what a writer needs around that: publishing a finished folder
under a name that must not be taken twice (:func:`publish_folder`), a lock
that serialises writers of one folder across processes (:func:`exclusive_lock`),
and recognising a write that ran out of room whichever layer reported it
(:func:`disk_error`), so that entry points report it as one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
import uuid
from typing import Any, Iterator

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


def publish_folder(staging: str, final: str) -> None:
    """Renames the finished folder ``staging`` to ``final``, which must not exist yet.

    Locally one ``rename``: when another process publishes ``final`` first, even
    between any check and the rename, the rename fails (a version folder is never
    empty) instead of replacing it. Object stores check, then copy.

    Raises:
      FileExistsError: ``final`` exists (``staging`` is left as it was).
    """
    if is_remote(final):
        import tensorflow as tf

        try:
            tf.io.gfile.rename(staging, final, overwrite=False)
        except tf.errors.AlreadyExistsError:
            raise FileExistsError(errno.EEXIST, "already exists", final) from None
        return
    if os.path.lexists(final):
        raise FileExistsError(errno.EEXIST, "already exists", final)
    try:
        os.rename(staging, final)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "already exists", final) from None
        raise


@contextlib.contextmanager
def exclusive_lock(lock_file: str) -> Iterator[None]:
    """Holds an exclusive lock on the local file ``lock_file`` (created when missing) for the block;
    waits for another holder to finish.

    The lock is ``flock``: the system releases it when its holder exits or is
    killed, so no stale lock is left behind. Object stores have no such lock:
    there the block runs unlocked.
    """
    if is_remote(lock_file):
        yield
        return
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(lock_file)), exist_ok=True)
    with open(lock_file, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# A write that ran out of room: the disk is full, a quota or the file size limit (ulimit -f) is reached.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_error(error: BaseException, where: str = "") -> OSError | None:
    """The OSError ``error`` stands for when a write ran out of room (:data:`DISK_FULL_ERRNOS`), else None.

    TensorFlow reports it as its own error whose message ends with
    ``<path>; No space left on device`` (or the limit's text), and a Beam runner
    wraps a worker's error in its own, with the original as its cause or only
    in its text: the cause chain is searched for the OSError, then for the text.
    The OSError names the file, or ``where`` when the writer did not say.
    """
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for link in chain:
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            if link is error and (link.filename or not where):
                return link
            return OSError(link.errno, os.strerror(link.errno), link.filename or where)
    for link in chain:
        text = str(link)
        for number in DISK_FULL_ERRNOS:
            reason = os.strerror(number)
            if reason in text:  # TensorFlow's "<path>; <reason>", a wrapped OSError's "<reason>: '<path>'"
                path = re.search(rf"(\S+); {re.escape(reason)}|{re.escape(reason)}: '([^']+)'", text)
                return OSError(number, reason, (path.group(1) or path.group(2)) if path else where)
    return None


@contextlib.contextmanager
def disk_errors(where: str = "") -> Iterator[None]:
    """Re-raises an error of the block that is a write out of room (:func:`disk_error`) as that OSError,
    naming ``where`` (e.g. the folder being written) when the writer named no file."""
    try:
        yield
    except Exception as e:
        error = disk_error(e, where)
        if error is None or error is e:
            raise
        raise error from e
