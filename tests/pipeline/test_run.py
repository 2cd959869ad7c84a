"""pipeline.run: flags, bad input (clear error, non-zero exit, nothing half-written), stage reuse."""

from __future__ import annotations

import json
import os

import pytest

from pipeline import run as pipeline_run

TINY = [
    "--input_format", "synthetic", "--synthetic_users", "40", "--synthetic_items", "30",
    "--synthetic_interactions", "400",
]


def stage_dirs(root) -> list[str]:
    return sorted(p for p in os.listdir(root) if not p.startswith(".")) if os.path.exists(root) else []


def leftovers(root) -> list[str]:
    return sorted(os.listdir(root)) if os.path.exists(root) else []


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = pipeline_run.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "name, content, fmt, expected",
    [
        ("missing.inter", None, "recbole", r"missing\.inter"),
        ("empty.inter", "", "recbole", r"empty\.inter"),
        ("noheader.inter", "1\t2\t3\t4\n", "recbole", r"noheader\.inter:1"),
        ("u.data", "1\t2\t5\t881250949\n", "unknown_fmt", r"unknown_fmt"),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_no_stage(tmp_path, capsys, name, content, fmt, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    root = tmp_path / "out"
    code, err = run_main(
        capsys, "--input", str(path), "--input_format", fmt, "--output_dir", str(root),
        "--stop_after", "transform",
    )
    assert code != 0
    assert pytest.importorskip("re").search(expected, err), err
    assert stage_dirs(root) == [] and leftovers(root) == []


def test_strict_fails_on_a_malformed_row_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "log.inter"
    path.write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        "u1\ti1\t1\nu1\ti2\t2\nu1\ti3\tnot-a-time\nu1\ti4\t4\n"
    )
    root = tmp_path / "out"
    argv = ["--input", str(path), "--input_format", "recbole", "--output_dir", str(root)]
    code, err = run_main(capsys, *argv, "--strict", "--stop_after", "ExampleGen")
    assert code != 0 and "log.inter:4" in err, err
    assert leftovers(root) == []
    # Without --strict the row is counted, with its place, and the rest goes through.
    assert run_main(capsys, *argv, "--stop_after", "ExampleGen")[0] == 0
    stats = json.loads((root / "ExampleGen" / "stats.json").read_text())
    assert "log.inter:4" in json.dumps(stats)


def test_unknown_flag_is_rejected_with_a_suggestion(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--min_user_inter"):
        pipeline_run.run(["--min_user_intr", "5", "--output_dir", str(tmp_path)])


def test_rerun_skips_finished_stages_and_rebuilds_changed_ones(tmp_path, capsys):
    root = str(tmp_path / "out")
    argv = [*TINY, "--output_dir", root, "--stop_after", "Transform"]
    assert pipeline_run.run(argv) == {"ExampleGen": "ran", "Transform": "ran"}
    assert stage_dirs(root) == ["ExampleGen", "Transform"] and leftovers(root) == stage_dirs(root)
    vocab = (tmp_path / "out" / "Transform" / "item_vocab.txt").read_text()
    assert pipeline_run.run(argv) == {"ExampleGen": "skipped", "Transform": "skipped"}
    # A Transform flag changes only Transform; a new input would rebuild both.
    changed = pipeline_run.run([*argv, "--min_item_inter", "2"])
    assert changed == {"ExampleGen": "skipped", "Transform": "ran"}
    assert pipeline_run.run([*argv, "--min_item_inter", "2", "--force"]) == {
        "ExampleGen": "ran", "Transform": "ran"
    }
    assert pipeline_run.run(argv)["Transform"] == "ran"
    assert (tmp_path / "out" / "Transform" / "item_vocab.txt").read_text() == vocab
