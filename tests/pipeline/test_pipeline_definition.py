"""pipeline/pipeline.py: stages declare the outputs they read, and one root holds one dataset."""

from __future__ import annotations

import json

import pytest

from pipeline import artifacts
from pipeline import run as pipeline_run
from pipeline.configs import PipelineConfigs
from pipeline.pipeline import Pipeline, Stage, create_pipeline
from tests.pipeline.test_run import TINY, csv_log


def test_each_stage_reads_only_what_it_declares(tmp_path):
    pipeline = create_pipeline(PipelineConfigs(), root=str(tmp_path))
    assert {s.name: s.inputs for s in pipeline.stages} == {
        "ExampleGen": (), "Transform": ("ExampleGen",), "Trainer": ("Transform",),
        "Evaluator": ("Trainer", "Transform"), "Pusher": ("Trainer", "Transform", "Evaluator"),
    }
    specs = pipeline.specs()
    assert specs["Evaluator"]["inputs"] == {
        "Trainer": artifacts.fingerprint(specs["Trainer"]), "Transform": artifacts.fingerprint(specs["Transform"])}


def test_a_pusher_setting_changes_no_other_stage_spec(tmp_path):
    import dataclasses

    base = PipelineConfigs()
    other = dataclasses.replace(base, pusher=dataclasses.replace(base.pusher, top_k=3))
    before = create_pipeline(base, root=str(tmp_path)).specs()
    after = create_pipeline(other, root=str(tmp_path)).specs()
    assert [name for name in before if before[name] != after[name]] == ["Pusher"]


def test_a_stage_cannot_read_a_stage_that_comes_after_it(tmp_path):
    noop = Stage("Trainer", str(tmp_path / "t"), {}, lambda out, inputs: None, inputs=("Evaluator",))
    with pytest.raises(ValueError, match="reads \\['Evaluator'\\]"):
        Pipeline(root=str(tmp_path), run_name="r", stages=(noop,)).specs()


def fake_run(root) -> None:
    """A run folder trained on the root's current data (a finished Trainer is what makes a run)."""
    (root / "runs" / "sasrec-softmax-12345678" / "Trainer").mkdir(parents=True)


def test_changing_a_data_flag_under_runs_is_refused_naming_the_flag_and_both_values(tmp_path, capsys):
    root = tmp_path / "out"
    argv = [*TINY, "--output_dir", str(root), "--stop_after", "Transform"]
    pipeline_run.run(argv)
    fake_run(root)
    spec_before = (root / "Transform" / "_spec.json").read_text()
    code = pipeline_run.main([*argv, "--min_item_inter", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--min_item_inter 0 -> 3" in err or "--min_item_inter 1 -> 3" in err or "-> 3" in err, err
    assert f"--output_dir {root}" in err and "--force" in err
    assert (root / "Transform" / "_spec.json").read_text() == spec_before  # nothing rebuilt
    # --force is the user saying so.
    assert pipeline_run.run([*argv, "--min_item_inter", "3", "--force"]).stages["Transform"] == "ran"


def test_editing_the_input_under_runs_is_refused_naming_the_file(tmp_path, capsys):
    log = tmp_path / "log.csv"
    csv_log(log, range(30))
    root = tmp_path / "out"
    argv = ["--input", str(log), "--output_dir", str(root), "--stop_after", "Transform"]
    pipeline_run.run(argv)
    fake_run(root)
    csv_log(log, range(30, 40))
    assert pipeline_run.main(argv) == 2
    err = capsys.readouterr().err
    assert f"input file {log} changed" in err, err
    assert json.loads((root / "ExampleGen" / "stats.json").read_text())["interactions"] == 180


def test_without_runs_the_data_is_simply_rebuilt(tmp_path):
    root = tmp_path / "out"
    argv = [*TINY, "--output_dir", str(root), "--stop_after", "Transform"]
    pipeline_run.run(argv)
    assert pipeline_run.run([*argv, "--min_item_inter", "3"]).stages == {"ExampleGen": "skipped", "Transform": "ran"}


def _rewrite_spec(folder, change) -> None:
    path = folder / "_spec.json"
    spec = json.loads(path.read_text())
    change(spec)
    path.write_text(json.dumps(spec))


def test_folders_built_by_an_older_tfseq_are_kept(tmp_path):
    """A setting added since (at its default), or the older linear build record, rebuilds nothing."""
    root = tmp_path / "out"
    argv = [*TINY, "--output_dir", str(root), "--stop_after", "Transform"]
    pipeline_run.run(argv)
    fake_run(root)
    added = next(k for k, v in json.loads((root / "ExampleGen" / "_spec.json").read_text())["config"].items()
                 if k != "inputs")
    _rewrite_spec(root / "ExampleGen", lambda spec: spec["config"].pop(added))
    older = json.loads((root / "ExampleGen" / "_spec.json").read_text())
    _rewrite_spec(root / "Transform", lambda spec: spec["inputs"].update(ExampleGen=artifacts.fingerprint(older)))
    assert pipeline_run.run(argv).stages == {"ExampleGen": "skipped", "Transform": "skipped"}

    def linear(spec):
        spec["upstream"] = "0123456789abcdef"
        del spec["inputs"]

    _rewrite_spec(root / "Transform", linear)
    assert pipeline_run.run(argv).stages == {"ExampleGen": "skipped", "Transform": "skipped"}
