"""A full disk in ExampleGen, the Trainer or the Pusher: one error line, and nothing half-written (issue 23.5)."""

from __future__ import annotations

import errno
import os

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
