"""Ctrl-C in ``python -m pipeline.run``: one line, exit status 130, and a re-run that resumes the Trainer.

The interruption is a real SIGINT sent to a ``python -m pipeline.run`` subprocess
once it has printed its second epoch line (two epochs left, so a busy machine's slow
reader still sends it before the run ends); the uninterrupted and the resumed
runs go through ``pipeline.run.run`` in this process.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pipeline import artifacts
from pipeline import run as pipeline_run
from tests.pipeline.test_run import TINY

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
# No dropout and the full softmax: training draws no random numbers, so a resumed run is bitwise the
# uninterrupted one (dropout masks and sampled negatives are drawn anew after a resume).
ARGS = [*TINY, "--model", "gru4rec", "--embedding_size", "16", "--hidden_size", "16", "--dropout_prob", "0",
        "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--stop_after", "Evaluator"]


def without_seconds(metrics: dict | None) -> dict:
    assert metrics is not None
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}


def without_timings(history: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "train_seconds")} for row in history["history"]]


def interrupt_after_epoch(argv: list[str], epoch: int) -> tuple[int, str, str]:
    """Runs ``python -m pipeline.run argv`` and sends it SIGINT once it prints ``epoch <epoch>/``.

    Returns the exit status, the output and the error output.
    """
    # SIGINT as a terminal delivers it: a shell's background job (a CI runner started with &) ignores
    # SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen([sys.executable, "-m", "pipeline.run", *argv], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # one flushed line per epoch (stdout is not a terminal)
        lines.append(line)
        if line.startswith(f"epoch {epoch}/"):
            process.send_signal(signal.SIGINT)
            break
    rest, err = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + rest, err


def test_ctrl_c_is_one_line_and_the_rerun_resumes_where_it_stopped_with_the_same_metrics(tmp_path, capsys):
    root = tmp_path / "out"
    argv = [*ARGS, "--output_dir", str(root)]
    uninterrupted = pipeline_run.run(argv)
    run_dir = Path(uninterrupted.run_dir)
    trainer = run_dir / "Trainer"
    expected_history = json.loads((trainer / artifacts.HISTORY).read_text())
    assert sorted(p.name for p in run_dir.iterdir()) == ["Evaluator", "Trainer"]  # no checkpoint left behind
    shutil.rmtree(root / artifacts.RUNS_DIR)  # keep the data stages, train again

    status, out, err = interrupt_after_epoch(argv, 2)
    assert status == 130, (out, err)
    assert err.strip() == "interrupted at epoch 3 of 4; run the same command again to resume from epoch 3"
    # The staged Trainer folder is gone; the checkpoint of epoch 2 waits beside where it will go.
    assert sorted(p.name for p in run_dir.iterdir()) == [artifacts.TRAINER_RESUME]
    state = json.loads((run_dir / artifacts.TRAINER_RESUME / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    capsys.readouterr()

    resumed = pipeline_run.run(argv)
    out = capsys.readouterr().out
    assert f"[Trainer] resuming from epoch 3 of {EPOCHS}" in out
    epoch_lines = [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == ["epoch 3/4", "epoch 4/4"]
    assert resumed.metrics["test"] == uninterrupted.metrics["test"]  # every metric, exactly
    assert without_seconds(resumed.metrics) == without_seconds(uninterrupted.metrics)  # valid, best epoch ...
    history = json.loads((trainer / artifacts.HISTORY).read_text())
    assert without_timings(history) == without_timings(expected_history)
    assert history["best_epoch"] == expected_history["best_epoch"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["Evaluator", "Trainer"]  # the checkpoint is removed
