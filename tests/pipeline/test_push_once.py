"""A run is pushed once (issue 23, cases 5 and 8): Pushers racing for one model name, a re-run after a kill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline import artifacts
from pipeline import run as pipeline_run
from tests.pipeline.test_run import TINY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One Pusher in its own process, as two `python -m pipeline.run` commands would run theirs.
PUSH = """
import json, sys
from pipeline.pusher import PusherConfig, run_pusher
root, run, out = sys.argv[1:]
stage = lambda name: f"{root}/runs/{run}/{name}" if name != "Transform" else f"{root}/Transform"
record = run_pusher(PusherConfig(push="always"), stage("Trainer"), stage("Transform"), out, run=run,
                    default_serving_dir=f"{root}/serving", evaluator_dir=stage("Evaluator"), verbose=False)
print(json.dumps(record))
"""


@pytest.mark.slow
def test_simultaneous_pushes_each_land_once_on_their_own_version(tmp_path):
    root = tmp_path / "out"
    runs = [pipeline_run.run([*TINY, "--epochs", "1", "--model", model, "--output_dir", str(root),
                              "--stop_after", "Evaluator"]).run for model in ("gru4rec", "pooling")]
    pushes = [runs[0], runs[0], runs[1]]  # the first run twice at once, the second beside them
    processes = [subprocess.Popen([sys.executable, "-c", PUSH, str(root), run, str(tmp_path / f"pusher-{i}")],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, run in enumerate(pushes)]
    results = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    records = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert all(record["pushed"] for record in records)
    assert records[0]["version"] == records[1]["version"] != records[2]["version"]  # the first run once
    model_dir = root / "serving" / "tfseq"
    assert sorted(os.listdir(model_dir)) == ["1", "2"]  # no second copy, no temporary folder
    for record in records:
        info = json.loads((model_dir / str(record["version"]) / "assets.extra" / "tfseq_export.json").read_text())
        assert info["trainer_dir"] == artifacts.stage_dir(str(root), "Trainer", record["run"])


def test_a_rerun_after_a_pusher_killed_past_its_export_finds_the_version_it_named(tmp_path, capsys):
    """With --version N, a Pusher killed between its export and its record made every re-run fail:
    version N exists, and versions are never overwritten. It is this run's export: it is recorded."""
    root = tmp_path / "out"
    argv = [*TINY, "--epochs", "1", "--model", "pooling", "--output_dir", str(root), "--version", "5"]
    first = pipeline_run.run(argv)
    assert first.pushed["version"] == 5
    pusher = root / "runs" / first.run / "Pusher"
    shutil.rmtree(pusher)  # killed before its record: the stage folder never appeared
    again = pipeline_run.run(argv)
    assert again.stages["Pusher"] == "ran" and again.pushed["version"] == 5
    assert "not pushing it twice" in capsys.readouterr().out
    assert sorted(os.listdir(root / "serving" / "tfseq")) == ["5"]
    other = pipeline_run.main([*argv, "--model", "gru4rec", "--push", "always"])  # another run never overwrites 5
    assert other == 2 and "never overwritten" in capsys.readouterr().err
