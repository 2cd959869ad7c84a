"""Every stage's folder layout and file names, input fingerprints, and the one atomic writer.

Layout of a pipeline root (``--output_dir``)::

    <root>/ExampleGen/                    validated interactions + stats.json
    <root>/Transform/                     SequenceExamples, vocabularies, metadata.json, stats.json
    <root>/runs/<run>/Trainer/            config.json, weights/, history.json, training_curve.png, logs/
    <root>/runs/<run>/.Trainer.resume/    last finished epoch of an interrupted Trainer (gone once it completes)
    <root>/runs/<run>/Evaluator/          metrics.json, blessing.json, training_curve.png
    <root>/runs/<run>/Pusher/             pushed.json (which version of which model it exported, or why none)
    <root>/serving/<model_name>/<version>/   the SavedModels (TF Serving's layout)
    <root>/serving/.<model_name>.lock        held by the Pusher that is pushing to that name

The data stages are shared by every training run; each run (model, loss and
hyperparameters) has its own folder ``<model>-<loss>-<hash>``, so runs sit
side by side. Every stage folder holds ``_spec.json``, the configuration and
input identity it was built from.

A stage writes into a hidden temporary directory beside its final one
(``.<Stage>.tmp-<id>``, with an ``_owner.json`` naming the process) and renames
it into place only when it has fully succeeded, so a reader (the next stage, a
re-run, a model server polling a folder) never sees half an output. Paths go
through Beam's FileSystems, so ``gs://`` and ``s3://`` roots work where the
matching Beam extra is installed; on object stores the final move is a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import socket
import time
import uuid
from typing import Any, Iterator

# Names the library defines, re-exported so that the layout reads from one place.
from tfseq import storage
from tfseq.config import CONFIG_FILE as CONFIG  # noqa: F401  (the Trainer's model contract)
from tfseq.config import WEIGHTS  # noqa: F401
from tfseq.data.vocab import ITEM_FEATURES_DIR as ITEM_FEATURES  # noqa: F401  (the Transform's data contract)
from tfseq.data.vocab import ITEM_VOCAB, METADATA, USER_VOCAB  # noqa: F401
from tfseq.storage import OWNER, owner_record  # the record that says who writes a temporary folder

# The one atomic writer (tfseq.storage), under the names every stage uses.
atomic_write_bytes = storage.atomic_write_bytes
atomic_write_text = storage.atomic_write_text
atomic_write_json = storage.atomic_write_json
disk_errors = storage.disk_errors  # a write out of room, reported by any layer, as the OSError it is
exclusive_lock = storage.exclusive_lock  # writers of one folder across processes take turns (the Pusher)


class _LazyFileSystems:
    """Beam's ``FileSystems``, imported on first use: the layout's names (read by the flag layer
    and ``pipeline.compare``) come without loading Beam."""

    def __getattr__(self, name: str) -> Any:
        from apache_beam.io.filesystems import FileSystems as beam_file_systems

        return getattr(beam_file_systems, name)


FileSystems = _LazyFileSystems()

STAGES = ("ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher")
DATA_STAGES = ("ExampleGen", "Transform")
RUN_STAGES = ("Trainer", "Evaluator", "Pusher")
DEFAULT_ROOT = "tfseq_output"  # --output_dir of pipeline.run, the root pipeline.compare reads
RUNS_DIR = "runs"
SERVING_DIR = "serving"

# Files every stage folder holds.
SPEC = "_spec.json"
STATS = "stats.json"  # ExampleGen and Transform
# Transform: METADATA, ITEM_VOCAB, USER_VOCAB and ITEM_FEATURES (the reader's contract, from tfseq.data).
# Trainer: CONFIG and WEIGHTS (the model itself, from tfseq.config), and:
HISTORY = "history.json"
CURVE = "training_curve.png"
LOGS = "logs"
# Beside the Trainer, not inside it: the last finished epoch of an interrupted training.
TRAINER_RESUME = ".Trainer.resume"
# Evaluator.
METRICS = "metrics.json"
BLESSING = "blessing.json"
# Pusher.
PUSHED = "pushed.json"
# pipeline.compare.
COMPARE_CSV = "compare.csv"
COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"  # training curves and test metrics of the runs

HASH_BYTES_LIMIT = 256 << 20  # inputs up to this size are fingerprinted by content too
STALE_SECONDS = 60  # a temporary folder without a live owner is removed after this long


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else posixpath.join(*parts)


def stage_dir(root: str, stage: str, run: str | None = None) -> str:
    """``<root>/<stage>`` for a data stage, ``<root>/runs/<run>/<stage>`` for a run stage."""
    if stage in DATA_STAGES:
        return join(root, stage)
    if stage in RUN_STAGES:
        if not run:
            raise ValueError(f"{stage} belongs to a run; pass run=<run name>")
        return join(run_dir(root, run), stage)
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def runs_dir(root: str) -> str:
    return join(root, RUNS_DIR)


def run_dir(root: str, run: str) -> str:
    return join(root, RUNS_DIR, run)


def trainer_resume_dir(root: str, run: str) -> str:
    """``<root>/runs/<run>/.Trainer.resume``: the epoch checkpoint an interrupted Trainer resumes from.

    Outside the staged folder (deleted on interruption), and not a ``.tmp-``
    folder, so ``remove_stale_temporaries`` keeps it; the Trainer deletes it when done.
    """
    return join(run_dir(root, run), TRAINER_RESUME)


def serving_dir(root: str) -> str:
    """Where the Pusher writes ``<model_name>/<version>/`` by default."""
    return join(root, SERVING_DIR)


def push_lock(serving_dir: str, model_name: str) -> str:
    """``<serving_dir>/.<model_name>.lock``: the lock Pushers of one model name take in turn
    (beside the model's folder, which a model server reads, not in it)."""
    return join(serving_dir, f".{model_name}.lock")


def root_of_run(path: str) -> str:
    """The pipeline root of a run folder ``<root>/runs/<run>``."""
    return posixpath.dirname(posixpath.dirname(path.rstrip("/")))


def list_runs(root: str) -> list[str]:
    """Names of the runs under ``<root>/runs`` that have a finished Trainer, sorted."""
    base = runs_dir(root)
    if "://" in root or not os.path.isdir(base):
        return []
    return sorted(
        name for name in os.listdir(base)
        if not name.startswith(".") and os.path.isdir(join(base, name, "Trainer"))
    )


# ----------------------------------------------------------------------------- fingerprints


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _content_hash(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_identity(path: str) -> dict[str, Any]:
    """What a stage's input file is: path, size and a content hash (mtime where too big to hash).

    Two runs see the same input when these are equal, so appending rows, or
    replacing the file, changes the fingerprint of every stage that read it.
    """
    metadata = FileSystems.match([path])[0].metadata_list
    if not metadata:
        raise FileNotFoundError(f"{path}: no such file")
    info = metadata[0]
    identity: dict[str, Any] = {"path": info.path, "size": info.size_in_bytes}
    if info.size_in_bytes <= HASH_BYTES_LIMIT:
        identity["sha256"] = _content_hash(info.path)
    else:
        identity["mtime"] = info.last_updated_in_seconds
    return identity


# ----------------------------------------------------------------------------- stage outputs


def is_complete(path: str) -> bool:
    """A stage is complete when its directory exists (it appears only on success)."""
    return FileSystems.exists(path)


def delete_tree(path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])


def _owner_alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's run: not ours to judge
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def remove_stale_temporaries(parent: str) -> list[str]:
    """Deletes ``.<Stage>.tmp-*`` folders under ``parent`` left by runs that died; returns them.

    A temporary folder is stale when the process named in its ``_owner.json`` is
    gone (same host), or it has no owner file and is older than ``STALE_SECONDS``.
    Local roots only; object stores keep theirs until ``--force``.
    """
    if "://" in parent or not os.path.isdir(parent):
        return []
    removed = []
    for name in os.listdir(parent):
        if not (name.startswith(".") and ".tmp-" in name):
            continue
        path = join(parent, name)
        owner_file = join(path, OWNER)
        try:
            with open(owner_file, encoding="utf-8") as f:
                stale = not _owner_alive(json.load(f))
        except (OSError, ValueError):
            try:
                stale = time.time() - os.path.getmtime(path) > STALE_SECONDS
            except OSError:
                continue
        if stale:
            delete_tree(path)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staged_output(final: str) -> Iterator[str]:
    """Yields a temporary directory that replaces ``final`` when the block succeeds.

    On any exception the temporary directory is deleted and ``final`` is left
    as it was; a complete earlier output is replaced only once the new one is ready.
    """
    parent, name = posixpath.dirname(final.rstrip("/")), posixpath.basename(final.rstrip("/"))
    if not FileSystems.exists(parent):
        FileSystems.mkdirs(parent)
    tmp = join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    FileSystems.mkdirs(tmp)
    atomic_write_text(join(tmp, OWNER), owner_record())
    try:
        yield tmp
    except BaseException:
        delete_tree(tmp)
        raise
    FileSystems.delete([join(tmp, OWNER)])
    old = None
    if FileSystems.exists(final):
        old = join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
        FileSystems.rename([final], [old])
    FileSystems.rename([tmp], [final])
    if old is not None:
        delete_tree(old)


# ----------------------------------------------------------------------------- files


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read().decode("utf-8")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))
