"""Stage output directories ``<root>/<Stage>/`` and atomic writes (temp + rename).

A stage writes into a hidden temporary directory beside its final one and
renames it into place only when it has fully succeeded, so a reader (the next
stage, a re-run, a model server polling a folder) never sees half an output.
Paths go through Beam's FileSystems, so ``gs://`` and ``s3://`` roots work
where the matching Beam extra is installed; on object stores the final move
is a copy, not an atomic rename.
"""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from typing import Iterator

from apache_beam.io.filesystems import FileSystems

STAGES = ("ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher")


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else posixpath.join(*parts)


def stage_dir(root: str, stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return join(root, stage)


def is_complete(root: str, stage: str) -> bool:
    """A stage is complete when its directory exists (it appears only on success)."""
    return FileSystems.exists(stage_dir(root, stage))


def _delete_tree(path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])


@contextlib.contextmanager
def staged_output(root: str, stage: str, force: bool = False) -> Iterator[str]:
    """Yields a temporary directory that becomes ``<root>/<stage>`` when the block succeeds.

    On any exception the temporary directory is deleted and nothing appears
    under ``<root>/<stage>``; an existing complete output is left untouched.
    With ``force``, a complete output is replaced only once the new one is ready.
    """
    final = stage_dir(root, stage)
    if FileSystems.exists(final) and not force:
        raise FileExistsError(f"{final} exists; pass --force to rebuild it")
    FileSystems.mkdirs(root) if not FileSystems.exists(root) else None
    tmp = join(root, f".{stage}.tmp-{uuid.uuid4().hex[:8]}")
    FileSystems.mkdirs(tmp)
    try:
        yield tmp
    except BaseException:
        _delete_tree(tmp)
        raise
    old = None
    if FileSystems.exists(final):
        old = join(root, f".{stage}.old-{uuid.uuid4().hex[:8]}")
        FileSystems.rename([final], [old])
    FileSystems.rename([tmp], [final])
    if old is not None:
        _delete_tree(old)


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")
