"""``python -m pipeline.trainer --distribute``: two local worker processes train as one process does, only
the chief writes, ``pipeline.run`` then skips the Trainer, and a killed worker ends the chief with one line.

The workers are subprocesses on localhost ports, each with its own ``TF_CONFIG``, training on one
small synthetic Transform output; the single-process and ``mirrored`` runs go through the same
entry point in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline import artifacts, cli
from pipeline import run as pipeline_run
from pipeline import trainer
from pipeline.pipeline import run_name
from pipeline.trainer import build_parser
from tests.pipeline.test_cli import imported_by
from tests.pipeline.test_run import TINY

REPO = Path(__file__).resolve().parents[2]
# The full softmax and no dropout: training draws no random numbers, so the runs can agree.
# batch_size 9 splits batches unevenly (4 + 5 windows); weight_decay checks that the L2 term counts once.
MODEL = ["--model", "gru4rec", "--embedding_size", "16", "--hidden_size", "16", "--dropout_prob", "0",
         "--loss", "softmax", "--batch_size", "9", "--learning_rate", "0.01", "--weight_decay", "0.01",
         "--max_seq_len", "10"]
TWO_EPOCHS = [*MODEL, "--epochs", "2", "--patience", "2"]
TIMEOUT = 60  # --collective_timeout; a killed worker is noticed sooner (its connection closes, heartbeats stop)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(root: Path, argv: list[str], tmp_path: Path) -> list[subprocess.Popen]:
    """Starts worker 0 (the chief) and worker 1 of a two-worker cluster on ``root``; worker 1's
    temporary files go to ``tmp_path / "worker1-tmp"``."""
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        scratch = tmp_path / f"worker{index}-tmp"
        scratch.mkdir()
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "TMPDIR": str(scratch)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "pipeline.trainer", "--output_dir", str(root), *argv, "--distribute",
             "multi_worker", "--collective_timeout", str(TIMEOUT)],
            cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return processes


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A pipeline root holding ExampleGen and Transform of the tiny synthetic log."""
    root = tmp_path_factory.mktemp("multi_worker") / "data"
    pipeline_run.run([*TINY, "--output_dir", str(root), "--stop_after", "Transform"])
    return root


def copy_of(data_root: Path, path: Path) -> Path:
    shutil.copytree(data_root, path)
    return path


def run_name_of(argv: list[str]) -> str:
    """The run folder's name of the Trainer flags ``argv`` (as pipeline.run names it)."""
    _, configs, _ = cli.parse(build_parser(), argv, sections=("Trainer",))
    return run_name(configs.experiment)


def trainer_dir(root: Path, argv: list[str] = TWO_EPOCHS) -> Path:
    return Path(artifacts.stage_dir(str(root), "Trainer", run_name_of(argv)))


def weights(directory: Path) -> dict[str, np.ndarray]:
    prefix = str(directory / artifacts.WEIGHTS)
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
            if "OPTIMIZER_SLOT" not in name and not name.startswith("_CHECKPOINTABLE")}


def history(directory: Path) -> dict:
    return json.loads((directory / artifacts.HISTORY).read_text())


def val_metrics(directory: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k.startswith("val_")} for row in history(directory)["history"]]


def test_trainer_help_does_not_import_tensorflow():
    process, modules = imported_by("pipeline.trainer", "--help")
    assert process.returncode == 0 and "--distribute {none,mirrored,multi_worker}" in process.stdout
    assert not modules & {"tensorflow", "apache_beam"}


def test_two_workers_train_as_one_process_and_only_the_chief_writes(data_root, tmp_path):
    single = copy_of(data_root, tmp_path / "single")
    assert trainer.main(["--output_dir", str(single), *TWO_EPOCHS, "--quiet"]) == 0
    # mirrored on two logical CPU devices: a process that splits its CPU before TensorFlow runs anything
    mirrored = copy_of(data_root, tmp_path / "mirrored")
    two_cpus = ("import sys, tfseq, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
                "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
                "from pipeline import trainer; sys.exit(trainer.main(sys.argv[1:]))")
    process = subprocess.run(
        [sys.executable, "-c", two_cpus, "--output_dir", str(mirrored), *TWO_EPOCHS, "--quiet", "--distribute",
         "mirrored"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert (history(trainer_dir(mirrored))["distribute"], history(trainer_dir(mirrored))["replicas"]) == (
        "mirrored", 2)

    shared = copy_of(data_root, tmp_path / "shared")
    workers = start_workers(shared, TWO_EPOCHS, tmp_path)
    outputs = [process.communicate(timeout=300) for process in workers]
    for process, (out, err) in zip(workers, outputs):
        assert process.returncode == 0, (out, err[-3000:])
    chief_out, worker_out = outputs[0][0], outputs[1][0]
    assert "worker 0 of 2 tasks, 2 replica(s) in all" in chief_out and "epoch 2/2" in chief_out
    assert "this process writes nothing" in worker_out and "epoch 2/2" not in worker_out

    # Only the chief wrote: the run folder holds its finished Trainer (no checkpoint or temporaries
    # left), and worker 1's temporary folder is gone.
    reference, chief = trainer_dir(single), trainer_dir(shared)
    assert sorted(p.name for p in chief.parent.iterdir()) == ["Trainer"]
    assert {artifacts.HISTORY, artifacts.CURVE, artifacts.CONFIG, "weights", artifacts.LOGS} <= {
        p.name for p in chief.iterdir()}
    assert list((tmp_path / "worker1-tmp").iterdir()) == []
    assert (history(chief)["distribute"], history(chief)["replicas"]) == ("multi_worker", 2)

    # Same global batches, same seed, no random draws: the replicas' summed gradients are the
    # single-process gradient up to float32 rounding (the sums run in another order), about 1e-7
    # on these weights after 2 epochs; the metrics are equal unless two scores tie to within that.
    for run in (mirrored, shared):
        got, expected = weights(trainer_dir(run)), weights(reference)
        assert got.keys() == expected.keys()
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-5, err_msg=name)
        for row, expected_row in zip(val_metrics(trainer_dir(run)), val_metrics(reference)):
            assert row == pytest.approx(expected_row, abs=1e-6)
        assert [r["loss"] for r in history(trainer_dir(run))["history"]] == pytest.approx(
            [r["loss"] for r in history(reference)["history"]], rel=1e-5)

    # pipeline.run finds the Trainer built and goes on from it.
    result = pipeline_run.run([*TINY, *TWO_EPOCHS, "--output_dir", str(shared), "--stop_after", "Trainer"])
    assert result.stages == {"ExampleGen": "skipped", "Transform": "skipped", "Trainer": "skipped"}


def test_a_killed_worker_ends_the_chief_with_one_line_and_a_checkpoint_to_resume_from(data_root, tmp_path):
    root = copy_of(data_root, tmp_path / "root")
    argv = [*MODEL, "--epochs", "50", "--patience", "50"]
    chief, worker = start_workers(root, argv, tmp_path)
    try:
        assert chief.stdout is not None
        for line in chief.stdout:  # one flushed line per epoch (stdout is not a terminal)
            if line.startswith("epoch 1/"):
                break
        worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        out, err = chief.communicate(timeout=3 * TIMEOUT)
        seconds = time.monotonic() - killed
    finally:
        for process in (chief, worker):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert chief.returncode == 2, (out, err[-3000:])
    assert seconds < TIMEOUT  # noticed by the closed connection or the heartbeats, not the timeout
    line = err.strip().splitlines()[-1]
    # Which notices first, the closed connection or the missing heartbeats, depends on what the chief was doing.
    reasons = ("the connection to worker 1 closed (its process exited or was killed)",
               "worker 1 stopped sending heartbeats (its process died or its machine is unreachable)")
    assert any(line.startswith(f"error: multi-worker training stopped at epoch 2 of 50: {reason}; the others "
                               "cannot go on without it") for reason in reasons), err[-3000:]
    assert line.endswith("restart every worker with the same command to resume from epoch 2")
    # The staged Trainer folder is gone; the chief's checkpoint of epoch 1 waits for the restart.
    assert sorted(p.name for p in trainer_dir(root, argv).parent.iterdir()) == [artifacts.TRAINER_RESUME]
