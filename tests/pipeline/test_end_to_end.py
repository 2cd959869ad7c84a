"""End to end on the DirectRunner: a small synthetic log through every stage to metrics.json."""

from __future__ import annotations

import json
import os

import pytest

from pipeline import run as pipeline_run

SMALL = [
    "--runner=DirectRunner", "--synthetic_users", "400", "--synthetic_items", "120",
    "--synthetic_interactions", "8000", "--epochs", "6", "--batch_size", "64", "--quiet",
]


@pytest.mark.slow
def test_pipeline_trains_a_model_that_beats_popularity(tmp_path, capsys):
    root = tmp_path / "run"
    argv = [*SMALL, "--output_dir", str(root), "--model", "sasrec"]
    outcome = pipeline_run.run(argv)
    assert outcome == dict.fromkeys(["ExampleGen", "Transform", "Trainer", "Evaluator"], "ran")
    assert sorted(p for p in os.listdir(root) if not p.startswith(".")) == sorted(outcome)
    assert not [p for p in os.listdir(root) if p.startswith(".")]  # no temporaries left
    sasrec = json.loads((root / "Evaluator" / "metrics.json").read_text())
    assert set(sasrec) >= {"model", "loss", "valid", "test", "best_epoch", "train_seconds"}
    assert (sasrec["model"], sasrec["loss"]) == ("sasrec", "softmax")
    assert 1 <= sasrec["best_epoch"] <= 6 and sasrec["test"]["num_users"] == 400
    assert (root / "Evaluator" / "training_curve.png").stat().st_size > 1000
    assert (root / "Trainer" / "logs").is_dir()
    table = capsys.readouterr().out
    assert "test  ndcg" in table and "@10" in table

    # The same command again reuses everything; another model reruns only Trainer + Evaluator.
    assert set(pipeline_run.run(argv).values()) == {"skipped"}
    outcome = pipeline_run.run([*SMALL, "--output_dir", str(root), "--model", "pop"])
    assert outcome == {"ExampleGen": "skipped", "Transform": "skipped", "Trainer": "ran", "Evaluator": "ran"}
    pop = json.loads((root / "Evaluator" / "metrics.json").read_text())
    assert pop["model"] == "pop"
    assert sasrec["test"]["ndcg@10"] > 2 * pop["test"]["ndcg@10"], (sasrec["test"], pop["test"])


def test_config_file_with_unknown_key_fails_before_any_stage(tmp_path, capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"model": "gru4rec", "hidden_size": 32, "hiden_size": 64}))
    code = pipeline_run.main(["--config", str(config), "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "hiden_size" in err and "best.json" in err
    assert not (tmp_path / "run").exists()
