"""pipeline.run: bad input (clear error, nothing half-written), stage reuse keyed on configs and input files."""

from __future__ import annotations

import json
import os
import re

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
    assert code == 2
    assert re.search(expected, err), err
    assert len(err.strip().splitlines()) == 1, err
    assert stage_dirs(root) == [] and leftovers(root) == []


def test_an_unknown_format_is_refused_by_the_flag_layer(tmp_path, capsys):
    with pytest.raises(SystemExit):
        pipeline_run.main(["--input", "u.data", "--input_format", "unknown_fmt", "--output_dir", str(tmp_path)])
    assert "unknown_fmt" in capsys.readouterr().err


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


def test_rerun_skips_finished_stages_and_rebuilds_changed_ones(tmp_path, capsys):
    root = str(tmp_path / "out")
    argv = [*TINY, "--output_dir", root, "--stop_after", "Transform"]
    assert pipeline_run.run(argv).stages == {"ExampleGen": "ran", "Transform": "ran"}
    assert stage_dirs(root) == ["ExampleGen", "Transform"] and leftovers(root) == stage_dirs(root)
    vocab = (tmp_path / "out" / "Transform" / "item_vocab.txt").read_text()
    assert pipeline_run.run(argv).stages == {"ExampleGen": "skipped", "Transform": "skipped"}
    # A Transform flag changes only Transform; a new input would rebuild both.
    changed = pipeline_run.run([*argv, "--min_item_inter", "2"])
    assert changed.stages == {"ExampleGen": "skipped", "Transform": "ran"}
    assert pipeline_run.run([*argv, "--min_item_inter", "2", "--force"]).stages == {
        "ExampleGen": "ran", "Transform": "ran"
    }
    assert pipeline_run.run(argv).stages["Transform"] == "ran"
    assert (tmp_path / "out" / "Transform" / "item_vocab.txt").read_text() == vocab


def csv_log(path, users: range, items_per_user: int = 6) -> None:
    """A csv log: user u rates items u..u+items_per_user-1 at increasing times."""
    rows = [f"u{u},i{(u + t) % 50},{u * 100 + t}" for u in users for t in range(items_per_user)]
    mode = "a" if path.exists() else "w"
    with open(path, mode) as f:
        if mode == "w":
            f.write("user_id,item_id,timestamp\n")
        f.write("\n".join(rows) + "\n")


def test_appending_rows_to_the_input_rebuilds_example_gen_and_transform(tmp_path, capsys):
    """Stale results (issue 11): a stage's fingerprint covers its input files, not only its flags."""
    log = tmp_path / "log.csv"
    csv_log(log, range(30))
    root = tmp_path / "out"
    argv = ["--input", str(log), "--output_dir", str(root), "--stop_after", "Transform"]  # format from .csv
    assert pipeline_run.run(argv).stages == {"ExampleGen": "ran", "Transform": "ran"}
    assert json.loads((root / "ExampleGen" / "stats.json").read_text())["interactions"] == 180
    assert pipeline_run.run(argv).stages == {"ExampleGen": "skipped", "Transform": "skipped"}
    csv_log(log, range(30, 40))  # 10 more users, 60 more rows
    assert pipeline_run.run(argv).stages == {"ExampleGen": "ran", "Transform": "ran"}
    assert json.loads((root / "ExampleGen" / "stats.json").read_text())["interactions"] == 240
    assert "input file " + str(log) + " changed" in capsys.readouterr().out
    os.utime(log, (1, 1))  # same bytes, another mtime: the content hash says nothing changed
    assert pipeline_run.run(argv).stages == {"ExampleGen": "skipped", "Transform": "skipped"}


def test_the_training_seed_does_not_rebuild_the_data_stages(tmp_path):
    """--seed is the training seed only; the synthetic log has --synthetic_seed (issue 11)."""
    log = tmp_path / "log.csv"
    csv_log(log, range(30))
    root = str(tmp_path / "out")
    argv = ["--input", str(log), "--output_dir", root, "--stop_after", "Transform"]
    pipeline_run.run(argv)
    assert pipeline_run.run([*argv, "--seed", "7"]).stages == {"ExampleGen": "skipped", "Transform": "skipped"}
    synthetic = [*TINY, "--output_dir", str(tmp_path / "syn"), "--stop_after", "ExampleGen"]
    pipeline_run.run(synthetic)
    assert pipeline_run.run([*synthetic, "--seed", "7"]).stages == {"ExampleGen": "skipped"}
    assert pipeline_run.run([*synthetic, "--synthetic_seed", "7"]).stages == {"ExampleGen": "ran"}


def test_temporary_folders_of_a_killed_run_are_removed_at_the_next_start(tmp_path, capsys):
    root = tmp_path / "out"
    pipeline_run.run([*TINY, "--output_dir", str(root), "--stop_after", "ExampleGen"])
    dead = root / ".Transform.tmp-deadbeef"
    dead.mkdir()
    (dead / "_owner.json").write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": os.uname().nodename}))
    (dead / "part").write_text("half a stage")
    alive = root / ".Transform.tmp-alive000"
    alive.mkdir()
    (alive / "_owner.json").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    pipeline_run.run([*TINY, "--output_dir", str(root), "--stop_after", "ExampleGen"])
    assert not dead.exists() and alive.exists()  # another live run's folder is left alone
    assert "removed a killed run's temporary folder" in capsys.readouterr().out


def test_an_unwritable_output_dir_is_one_line(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    code, err = run_main(capsys, *TINY, "--output_dir", str(blocked / "out"), "--stop_after", "ExampleGen")
    assert code == 2 and str(blocked) in err and len(err.strip().splitlines()) == 1, err
