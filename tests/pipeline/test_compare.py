"""pipeline.compare: runs ranked by validation, the dataset and served columns, compare.png, no TensorFlow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from pipeline import artifacts, compare

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (run, valid ndcg@10, test ndcg@10, pushed version): "gru4rec" has the best test score but the worst
# validation score, so a table ranked by validation puts it last; "core" holds the highest version.
RUNS = [
    ("sasrec-softmax-aaaa1111", 0.30, 0.20, 1),
    ("gru4rec-softmax-bbbb2222", 0.25, 0.22, 2),
    ("core_trm-softmax-cccc3333", 0.28, 0.18, 3),
]


def write_json(path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def fake_root(tmp_path, runs=RUNS, input_config=None):
    """A pipeline root holding only the JSON files compare reads, written by hand."""
    root = tmp_path / "root"
    config = input_config or {"input": "data/ml-100k.inter", "input_format": "recbole", "user_col": "user_id"}
    write_json(root / "ExampleGen" / artifacts.SPEC, {"stage": "ExampleGen", "config": config, "upstream": None})
    serving = root / "serving"
    for i, (name, valid, test, version) in enumerate(runs):
        run = root / "runs" / name
        model = name.split("-")[0]
        write_json(run / "Trainer" / artifacts.CONFIG,
                   {"model": model, "loss": "softmax", "learning_rate": 0.001, "valid_metric": "ndcg@10",
                    "hidden_size": 64 * (i + 1)})
        # the validation metric climbs to its best at epoch 3; the loss falls
        write_json(run / "Trainer" / artifacts.HISTORY, {
            "history": [{"epoch": e, "loss": 5.0 - e, "ndcg@10": valid * e / 3} for e in (1, 2, 3)],
            "best_epoch": 3, "best_metrics": {"ndcg@10": valid}, "train_seconds": 12.5,
        })
        write_json(run / "Evaluator" / artifacts.METRICS, {
            "model": model, "loss": "softmax", "valid_metric": "ndcg@10",
            "valid": {"ndcg@10": valid}, "test": {"ndcg@10": test, "recall@10": 2 * test},
        })
        if version is not None:
            write_json(run / "Pusher" / artifacts.PUSHED, {
                "run": name, "pushed": True, "version": version, "model_name": "tfseq",
                "serving_dir": str(serving), "path": str(serving / "tfseq" / str(version)),
            })
            (serving / "tfseq" / str(version)).mkdir(parents=True)
    return root


def test_runs_are_ranked_by_validation_not_test(tmp_path):
    rows = compare.compare_runs(str(fake_root(tmp_path)))
    # valid 0.30 > 0.28 > 0.25; by test it would be gru4rec (0.22) first
    assert [r["run"] for r in rows] == ["sasrec-softmax-aaaa1111", "core_trm-softmax-cccc3333",
                                        "gru4rec-softmax-bbbb2222"]
    assert [r["valid"] for r in rows] == [0.30, 0.28, 0.25]
    assert {r["valid metric"] for r in rows} == {"ndcg@10"}
    assert len({r["run"] for r in rows}) == len(rows) == len(RUNS)  # one row per run
    assert rows[0]["test ndcg@10"] == 0.20 and rows[0]["test recall@10"] == 0.40
    assert rows[0]["test mrr@10"] is None  # not in metrics.json: empty, not invented
    assert {r["settings"] for r in rows} == {""}  # three models: no peers to differ from


def test_sort_chooses_the_column(tmp_path):
    root = str(fake_root(tmp_path))
    by_test = compare.compare_runs(root, sort="test ndcg@10")
    assert [r["run"].split("-")[0] for r in by_test] == ["gru4rec", "sasrec", "core_trm"]
    by_name = compare.compare_runs(root, sort="model")
    assert [r["model"] for r in by_name] == ["core_trm", "gru4rec", "sasrec"]  # text: A-Z
    with pytest.raises(KeyError, match="not a column"):
        compare.compare_runs(root, sort="test auc")


def test_the_served_run_holds_the_highest_version_present(tmp_path):
    root = fake_root(tmp_path)
    rows = {r["run"]: r for r in compare.compare_runs(str(root))}
    assert [run for run, r in rows.items() if r["served"] == "*"] == ["core_trm-softmax-cccc3333"]
    # version 3 removed from the serving folder: the server now loads version 2, pushed by gru4rec
    (root / "serving" / "tfseq" / "3").rmdir()
    rows = {r["run"]: r for r in compare.compare_runs(str(root))}
    assert [run for run, r in rows.items() if r["served"]] == ["gru4rec-softmax-bbbb2222"]


def test_a_run_not_pushed_or_not_evaluated_still_has_its_row(tmp_path):
    root = fake_root(tmp_path, runs=[("sasrec-softmax-aaaa1111", 0.30, 0.20, None),
                                     ("gru4rec-softmax-bbbb2222", 0.25, 0.22, None)])
    write_json(root / "runs" / "gru4rec-softmax-bbbb2222" / "Pusher" / artifacts.PUSHED,
               {"run": "gru4rec-softmax-bbbb2222", "pushed": False, "model_name": "tfseq"})  # not blessed
    (root / "runs" / "sasrec-softmax-aaaa1111" / "Evaluator" / artifacts.METRICS).unlink()
    rows = {r["run"]: r for r in compare.compare_runs(str(root))}
    assert not any(r["served"] for r in rows.values())
    sasrec = rows["sasrec-softmax-aaaa1111"]
    assert sasrec["valid"] == 0.30  # the Trainer's best epoch, before the Evaluator ran
    assert sasrec["test ndcg@10"] is None


@pytest.mark.parametrize("config, expected", [
    ({"input": "data/ml-100k.inter", "input_format": "recbole"}, "recbole:data/ml-100k.inter"),
    ({"input": "", "input_format": "synthetic", "synthetic_users": 30, "synthetic_items": 20,
      "synthetic_interactions": 600, "synthetic_seed": 7},
     "synthetic (users=30, items=20, interactions=600, seed=7)"),
])
def test_the_dataset_column_names_the_input_of_example_gen(tmp_path, config, expected):
    rows = compare.compare_runs(str(fake_root(tmp_path, input_config=config)))
    assert {r["dataset"] for r in rows} == {expected}


def test_compare_png_is_a_real_png(tmp_path):
    root = fake_root(tmp_path)
    rows = compare.compare_runs(str(root))
    csv_path, json_path, png_path = compare.write_comparison(str(root), rows)
    assert png_path == str(root / artifacts.COMPARE_PNG)
    data = (root / artifacts.COMPARE_PNG).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    from matplotlib import image

    pixels = image.imread(png_path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert pixels.std() > 0.01  # curves and bars drawn, not a blank canvas
    with open(csv_path, newline="") as f:
        assert [r["run"] for r in csv.DictReader(f)] == [r["run"] for r in rows]
    assert json.loads((root / artifacts.COMPARE_JSON).read_text()) == rows


def test_the_command_prints_the_table_without_importing_tensorflow(tmp_path):
    root = fake_root(tmp_path)
    process = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline.compare", str(root)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in process.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "pipeline.compare" in modules or "pipeline.artifacts" in modules
    assert "tensorflow" not in modules and "apache_beam" not in modules
    assert "matplotlib" in modules  # for compare.png only
    lines = process.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "model", "loss", "dataset"]
    assert lines[1].startswith("sasrec-softmax-aaaa1111") and lines[3].startswith("gru4rec-softmax-bbbb2222")
    assert (root / artifacts.COMPARE_PNG).read_bytes()[:8] == PNG_MAGIC

    process = subprocess.run([sys.executable, "-m", "pipeline.compare", str(root), "--sort", "auc"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 2 and "--sort 'auc' is not a column" in process.stderr
    assert len(process.stderr.strip().splitlines()) == 2


def test_an_empty_root_is_one_error_line(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no runs under {tmp_path}/runs"
