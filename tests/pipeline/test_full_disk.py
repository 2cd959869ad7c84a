"""A full disk in ExampleGen, the Trainer or the Pusher: one error line, and nothing half-written (issue 23.5)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
from apache_beam.io.filesystems import FileSystems

from pipeline import artifacts
from pipeline import run as pipeline_run
from tests.pipeline.test_run import TINY


def full_disk(path: str = "") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", path)


def hidden(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if ".tmp-" in p) if os.path.isdir(folder) else []


def test_a_full_disk_is_one_line_in_every_stage_and_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    root = tmp_path / "out"
    argv = [*TINY, "--epochs", "1", "--model", "gru4rec", "--output_dir", str(root)]

    # ExampleGen: a Beam worker's write fails; the runner wraps the error, the user sees one line.
    create = FileSystems.create

    def no_room_in_example_gen(path, *args, **kwargs):
        if "ExampleGen" in path:
            raise full_disk(path)
        return create(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "create", staticmethod(no_room_in_example_gen))
    assert pipeline_run.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: [Errno 28] No space left on device") and len(err.splitlines()) == 1, err
    assert not (root / "ExampleGen").exists() and hidden(root) == []
    monkeypatch.setattr(FileSystems, "create", create)

    # The Trainer: its history cannot be written.
    write_json = artifacts.atomic_write_json

    def no_room_for_history(path, value, **kwargs):
        if path.endswith(artifacts.HISTORY):
            raise full_disk(path)
        return write_json(path, value, **kwargs)

    monkeypatch.setattr(artifacts, "atomic_write_json", no_room_for_history)
    assert pipeline_run.main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    runs = list((root / "runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "Trainer").exists() and hidden(runs[0]) == []
    monkeypatch.setattr(artifacts, "atomic_write_json", write_json)

    # The Pusher: the SavedModel cannot be written.
    import tensorflow as tf

    def no_room_for_the_model(*args, **kwargs):
        raise full_disk("saved_model.pb")

    monkeypatch.setattr(tf.saved_model, "save", no_room_for_the_model)
    assert pipeline_run.main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    model_dir = root / "serving" / "tfseq"
    assert os.listdir(model_dir) == [] and not (runs[0] / "Pusher").exists() and hidden(runs[0]) == []
    assert (runs[0] / "Trainer").is_dir() and (runs[0] / "Evaluator").is_dir()  # the finished stages stay


# -- a real file-size limit (ulimit -f), so that TensorFlow's and Beam's own writers fail ---------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 32 << 10  # bytes per file: the log and its records fit, a checkpoint or a SavedModel does not


def run_with_file_size_limit(*argv: str) -> subprocess.CompletedProcess:
    """``python -m pipeline.run argv`` where a write past LIMIT bytes fails with EFBIG, as on a full disk."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-m", "pipeline.run", *argv], cwd=REPO, preexec_fn=limit,
                          capture_output=True, text=True, timeout=600)


def half_written(root) -> list[str]:
    """Temporary folders and files anywhere under ``root``, and the Trainer's epoch checkpoint."""
    return sorted(str(p) for p in root.rglob("*") if ".tmp-" in p.name or p.name == artifacts.TRAINER_RESUME)


@pytest.mark.slow
def test_tensorflows_full_disk_in_the_trainer_and_the_pusher_is_one_line_naming_the_file(tmp_path):
    """Issue 23.5: TensorFlow reports a full disk as its own error (a traceback), and the Trainer's
    first epoch checkpoint stayed behind half written."""
    root = tmp_path / "out"
    argv = [*TINY, "--epochs", "1", "--model", "gru4rec", "--output_dir", str(root)]
    pipeline_run.run([*argv, "--stop_after", "Transform"])

    trainer = run_with_file_size_limit(*argv, "--stop_after", "Trainer")
    err = trainer.stderr.strip()
    assert trainer.returncode == 2 and len(err.splitlines()) == 1, err[-3000:]
    assert err.startswith("error: [Errno 27] File too large: ") and str(root) in err, err
    run = next((root / "runs").iterdir())
    assert not (run / "Trainer").exists() and half_written(root) == []

    pipeline_run.run([*argv, "--stop_after", "Evaluator"])
    pusher = run_with_file_size_limit(*argv)
    err = pusher.stderr.strip()
    assert pusher.returncode == 2 and len(err.splitlines()) == 1, err[-3000:]
    assert err.startswith("error: [Errno 27] File too large: ") and str(root / "serving" / "tfseq") in err, err
    assert os.listdir(root / "serving" / "tfseq") == [] and not (run / "Pusher").exists()
    assert half_written(root) == []


def test_a_full_disk_in_a_beam_worker_names_the_stage_folder(tmp_path):
    """A Beam worker's write names no file: the one line names the folder the stage was writing."""
    root = tmp_path / "out"
    process = run_with_file_size_limit(*TINY, "--synthetic_interactions", "20000", "--output_dir", str(root),
                                       "--stop_after", "ExampleGen")
    err = process.stderr.strip()
    assert process.returncode == 2 and len(err.splitlines()) == 1, err[-3000:]
    assert err == f"error: [Errno 27] File too large: '{root / 'ExampleGen'}'", err
    assert not (root / "ExampleGen").exists() and half_written(root) == []
