"""pipeline/pusher.py: the Pusher stage inside pipeline.run, its flags and its pushed.json."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket

import pytest
import tensorflow as tf

from pipeline import run as pipeline_run
from pipeline.example_gen import ExampleGenConfig
from pipeline.pusher import PusherConfig
from pipeline.transform import TransformConfig
from serving.signature import SCORES
from tests.serving.common import PIPELINE_FLAGS
from tfseq.config import TrainConfig
from tfseq.losses import LOSSES
from tfseq.models import MODELS


def output_k(version_dir) -> int:
    return (
        tf.saved_model.load(str(version_dir))
        .signatures["serving_default"]
        .structured_outputs[SCORES]
        .shape[1]
    )


def test_pusher_flags_collide_with_no_other_config_field():
    others = [ExampleGenConfig, TransformConfig, TrainConfig]
    others += [MODELS.get(name).config_cls for name in MODELS.names()]
    others += [LOSSES.get(name).config_cls for name in LOSSES.names()]
    pusher = {f.name for f in dataclasses.fields(PusherConfig)}
    for cls in others:
        assert not pusher & {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_pipeline_pushes_version_1_of_its_run_and_records_which(trained):
    pushed = trained.pushed()
    blessing = pushed.pop("blessing")
    assert blessing["blessed"] is True and blessing["baseline"] is None  # nothing was served before
    assert pushed == {
        "run": trained.run,
        "pushed": True,
        "path": str(trained.serving_dir / "tfseq" / "1"),
        "version": 1,
        "model_name": "tfseq",
        "serving_dir": str(trained.serving_dir),
        "exclude_history": False,
    }
    assert trained.run.startswith("sasrec-softmax-")
    assert output_k(pushed["path"]) == 10


def test_pusher_flags_rerun_only_the_pusher(trained, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(trained.root, root)
    base = [*PIPELINE_FLAGS, "--output_dir", str(root), "--stop_after", "Pusher"]
    assert set(pipeline_run.run(base).stages.values()) == {"skipped"}
    assert sorted(p.name for p in (root / "serving" / "tfseq").iterdir()) == ["1"]

    result = pipeline_run.run([*base, "--model_name", "other", "--top_k", "3"])
    assert result.stages == {
        **dict.fromkeys(["ExampleGen", "Transform", "Trainer", "Evaluator"], "skipped"),
        "Pusher": "ran",
    }
    pushed = json.loads((root / "runs" / trained.run / "Pusher" / "pushed.json").read_text())
    assert (pushed["model_name"], pushed["version"], pushed["run"]) == ("other", 1, trained.run)
    info = json.loads(
        (root / "serving" / "other" / "1" / "assets.extra" / "tfseq_export.json").read_text()
    )
    assert (info["top_k"], info["exclude_history"], info["model"]) == (3, False, "sasrec")
    assert output_k(pushed["path"]) == 3

    elsewhere = tmp_path / "models"
    pipeline_run.run([*base, "--serving_dir", str(elsewhere), "--version", "4"])
    assert json.loads((root / "runs" / trained.run / "Pusher" / "pushed.json").read_text())["path"] == str(
        elsewhere / "tfseq" / "4"
    )


def test_the_pusher_exports_the_clustered_search_which_answers_as_exact_when_it_probes_every_cluster(
    trained, tmp_path
):
    root = tmp_path / "run"
    shutil.copytree(trained.root, root)
    base = [*PIPELINE_FLAGS, "--output_dir", str(root), "--stop_after", "Pusher"]
    result = pipeline_run.run([*base, "--approximate_clusters", "6", "--approximate_probes", "6"])
    assert result.stages["Pusher"] == "ran" and result.pushed["version"] == 2  # a new version, not version 1
    info = json.loads((root / "serving" / "tfseq" / "2" / "assets.extra" / "tfseq_export.json").read_text())
    assert (info["top_k_search"]["method"], info["top_k_search"]["clusters"]) == ("clusters", 6)
    histories, _ = trained.test_histories(limit=30)
    width = max(len(h) for h in histories)
    batch = tf.constant([h + [""] * (width - len(h)) for h in histories])
    exact = tf.saved_model.load(str(root / "serving" / "tfseq" / "1")).signatures["serving_default"](history=batch)
    clustered = tf.saved_model.load(result.export_path).signatures["serving_default"](history=batch)
    assert exact["item_ids"].numpy().tolist() == clustered["item_ids"].numpy().tolist()
    # the same flags again reuse that export; the exact search's settings find version 1 again
    assert set(pipeline_run.run([*base, "--approximate_clusters", "6", "--approximate_probes", "6"])
               .stages.values()) == {"skipped"}


def test_a_pusher_killed_after_its_export_does_not_push_the_run_twice(trained, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(trained.root, root)
    shutil.rmtree(root / "runs" / trained.run / "Pusher")  # killed before it wrote pushed.json
    result = pipeline_run.run([*PIPELINE_FLAGS, "--output_dir", str(root), "--stop_after", "Pusher"])
    assert result.stages["Pusher"] == "ran"
    assert sorted(p.name for p in (root / "serving" / "tfseq").iterdir()) == ["1"]
    assert result.pushed["version"] == 1


def test_a_killed_exports_temporary_folder_is_removed_by_the_next_push(trained, tmp_path):
    """Issue 23, case 8: kill -9 during the Pusher left ``.N.tmp-*`` in the model folder for good."""
    root = tmp_path / "run"
    shutil.copytree(trained.root, root)
    leftover = root / "serving" / "tfseq" / ".2.tmp-deadbeef"
    (leftover / "variables").mkdir(parents=True)
    (leftover / "_owner.json").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    shutil.rmtree(root / "runs" / trained.run / "Pusher")
    pipeline_run.run([*PIPELINE_FLAGS, "--output_dir", str(root), "--stop_after", "Pusher"])
    assert sorted(p.name for p in (root / "serving" / "tfseq").iterdir()) == ["1"]


def test_history_masking_of_a_run_is_carried_into_its_export(trained, tmp_path):
    """--exclude_history is one setting: the masked run is evaluated masked and served masked."""
    root = tmp_path / "run"
    shutil.copytree(trained.root, root)
    # Pushed whatever its figure against the unmasked version 1 (the blessing is tested elsewhere).
    result = pipeline_run.run([*PIPELINE_FLAGS, "--output_dir", str(root), "--exclude_history", "--push", "always"])
    assert result.run != trained.run  # another run, beside the unmasked one
    assert result.stages["Trainer"] == "ran" and result.stages["Transform"] == "skipped"
    assert result.metrics["exclude_history"] is True and result.pushed["exclude_history"] is True
    info = json.loads((tmp_path / "run" / "serving" / "tfseq" / "2" / "assets.extra" / "tfseq_export.json").read_text())
    assert info["exclude_history"] is True
    model = tf.saved_model.load(result.export_path).signatures["serving_default"]
    histories, _ = trained.test_histories(limit=20)
    width = max(len(h) for h in histories)
    batch = tf.constant([h + [""] * (width - len(h)) for h in histories])
    answers = model(history=batch)["item_ids"].numpy()
    for history, row in zip(histories, answers):  # the served model masks what the model saw (last 50 items)
        assert not set(history[-50:]) & {i.decode() for i in row}


@pytest.mark.parametrize(
    "flag, value", [("--top_k", "0"), ("--top_k", "1000000000"), ("--model_name", "a/b"), ("--version", "-1"),
                    ("--push", "sometimes"), ("--bless_threshold", "ndcg@10"), ("--bless_tolerance", "nan"),
                    ("--approximate_probes", "3"), ("--approximate_clusters", "-1")]
)
def test_bad_pusher_flags_fail_before_any_stage(tmp_path, capsys, flag, value):
    code = pipeline_run.main(
        [
            *PIPELINE_FLAGS,
            "--output_dir",
            str(tmp_path / "run"),
            "--stop_after",
            "Pusher",
            flag,
            value,
        ]
    )
    assert code == 2 and flag.lstrip("-") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
