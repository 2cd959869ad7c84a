"""End to end on the DirectRunner: a small synthetic log through every stage, runs side by side, the CLI output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import compare
from pipeline import run as pipeline_run
from tests.conftest import REPO

SMALL = [
    "--runner=DirectRunner", "--synthetic_users", "400", "--synthetic_items", "120",
    "--synthetic_interactions", "8000", "--epochs", "6", "--batch_size", "64", "--quiet",
]
STAGES = ["ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"]


@pytest.mark.slow
def test_models_sit_side_by_side_and_compare_in_one_table(tmp_path, capsys):
    root = tmp_path / "run"
    argv = [*SMALL, "--output_dir", str(root), "--model", "sasrec"]
    sasrec = pipeline_run.run(argv)
    assert sasrec.stages == dict.fromkeys(STAGES, "ran")
    assert sorted(p for p in os.listdir(root) if not p.startswith(".")) == [
        "ExampleGen", "Transform", "runs", "serving"]
    assert not [p for p in os.listdir(root) if p.startswith(".")]  # no temporaries left
    run_dir = Path(sasrec.run_dir)
    assert run_dir.parent == root / "runs" and run_dir.name.startswith("sasrec-softmax-")
    metrics = json.loads((run_dir / "Evaluator" / "metrics.json").read_text())
    assert metrics == sasrec.metrics
    assert (metrics["model"], metrics["loss"]) == ("sasrec", "softmax")
    assert 1 <= metrics["best_epoch"] <= 6 and metrics["test"]["num_users"] == 400
    assert (run_dir / "Evaluator" / "training_curve.png").stat().st_size > 1000
    assert (run_dir / "Trainer" / "logs").is_dir()
    assert Path(sasrec.export_path) == root / "serving" / "tfseq" / "1"

    # The same command again reuses everything; another model trains beside it, overwriting nothing.
    assert set(pipeline_run.run(argv).stages.values()) == {"skipped"}
    capsys.readouterr()
    # (pop ranks a seeded sample of 150 of the 400 users, and reports RecBole's --topk and --metrics)
    pop_flags = ["--model", "pop", "--eval_users", "150", "--topk", "3", "7", "--metrics", "NDCG", "Hit"]
    pop = pipeline_run.run([*SMALL, "--output_dir", str(root), *pop_flags])
    assert pop.stages == {"ExampleGen": "skipped", "Transform": "skipped",
                          "Trainer": "ran", "Evaluator": "ran", "Pusher": "ran"}
    assert pop.run != sasrec.run and Path(sasrec.run_dir, "Evaluator", "metrics.json").exists()
    assert (pop.metrics["eval_users"], pop.metrics["valid"]["num_users"], pop.metrics["test"]["num_users"]) == (
        150, 150, 150)
    # the chosen metrics at the chosen cut-offs, plus the valid_metric's (ndcg@10) cut-off
    assert set(pop.metrics["test"]) == {f"{m}@{k}" for m in ("ndcg", "hit") for k in (3, 7, 10)} | {"num_users"}
    # the log is long-tailed, so popularity is a real baseline; the sequence model still wins clearly
    assert sasrec.metrics["test"]["ndcg@10"] > 1.4 * pop.metrics["test"]["ndcg@10"], (sasrec.metrics, pop.metrics)

    # The worse model is not pushed: the served version stays sasrec's, and the verdict names both figures.
    log = capsys.readouterr().out
    assert "not blessed" in log and "served model is unchanged" in log, log
    assert pop.export_path is None and sorted(os.listdir(root / "serving" / "tfseq")) == ["1"]
    blessing = json.loads(Path(pop.run_dir, "Evaluator", "blessing.json").read_text())
    assert blessing["blessed"] is False and blessing["metric"] == "ndcg@10"
    assert blessing["candidate"] == pop.metrics["test"]["ndcg@10"]
    assert blessing["baseline"] == {"version": 1, "run": sasrec.run, "value": sasrec.metrics["test"]["ndcg@10"]}
    record = json.loads(Path(pop.run_dir, "Pusher", "pushed.json").read_text())
    assert (record["run"], record["pushed"]) == (pop.run, False)
    # --push always pushes it anyway (only the Pusher re-runs).
    forced = pipeline_run.run([*SMALL, "--output_dir", str(root), *pop_flags, "--push", "always"])
    assert forced.stages["Pusher"] == "ran" and forced.stages["Evaluator"] == "skipped"
    assert Path(forced.export_path) == root / "serving" / "tfseq" / "2"

    # A hyperparameter makes a third run; compare lists all three, best first, with what differs.
    lr = pipeline_run.run([*argv, "--learning_rate", "0.003"])
    assert lr.run != sasrec.run and lr.stages["Trainer"] == "ran"
    capsys.readouterr()
    assert compare.main([str(root)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((root / "compare.json").read_text())
    assert {r["run"] for r in rows} == {sasrec.run, pop.run, lr.run}
    assert [r["test ndcg@10"] for r in rows] == sorted((r["test ndcg@10"] for r in rows), reverse=True)
    assert {r["settings"] for r in rows if r["model"] == "sasrec"} == {"learning_rate=0.001", "learning_rate=0.003"}
    assert (root / "compare.csv").read_text().splitlines()[0].startswith("run,model,loss")
    assert sasrec.run in printed and pop.run in printed

    # The table is printed even when every stage is skipped.
    capsys.readouterr()
    assert pipeline_run.main(argv) == 0
    out = capsys.readouterr().out
    assert "up to date, skipped" in out and "test  ndcg" in out and "serve it: python -m serving.server" in out


def test_config_file_with_unknown_key_fails_before_any_stage(tmp_path, capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"model": "gru4rec", "hidden_size": 32, "hiden_size": 64}))
    code = pipeline_run.main(["--config", str(config), "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "hiden_size" in err and "best.json" in err
    assert not (tmp_path / "run").exists()


def readme_block(marker: str) -> str:
    """The code block after ``<!-- marker -->`` in the README."""
    text = (REPO / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_block("python-api"), "README.md", "exec"), namespace)  # noqa: S102
    result, recommender = namespace["result"], namespace["recommender"]
    assert set(result.metrics) >= {"valid", "test"} and Path(result.export_path).is_dir()
    import tensorflow as tf

    served = tf.saved_model.load(result.export_path).signatures["serving_default"]
    histories = namespace["histories"]
    width = max(len(h) for h in histories)
    answer = served(history=tf.constant([h + [""] * (width - len(h)) for h in histories]))
    in_process = recommender.recommend(histories, k=10)
    assert in_process.item_ids == [[i.decode() for i in row] for row in answer["item_ids"].numpy()]
    assert (abs(in_process.scores - answer["scores"].numpy()) < 1e-5).all()
    # the README's last history has no known item: the popularity fallback, and both say so
    assert in_process.fallback.tolist() == answer["fallback"].numpy().tolist() == [False, False, True]


@pytest.mark.slow
def test_the_command_line_without_a_terminal_is_quiet_and_ends_with_a_servable_model(tmp_path):
    """The README's command as a subprocess (no tty): few lines, no TF/CUDA noise, one line per epoch."""
    root = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.run", "--output_dir", str(root), "--synthetic_users", "300",
               "--synthetic_items", "80", "--synthetic_interactions", "4000", "--epochs", "3"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert len(log.splitlines()) < 60, log
    for noise in ("cuInit", "oneDNN", "absl", "apitools", "\b"):
        assert noise not in log, noise
    assert sum(line.startswith("epoch ") for line in done.stdout.splitlines()) == 3
    assert "serve it: python -m serving.server --model_base_path" in done.stdout
    assert list((root / "serving" / "tfseq").iterdir()) == [root / "serving" / "tfseq" / "1"]
    assert (root / "serving" / "tfseq" / "1" / "saved_model.pb").exists()
