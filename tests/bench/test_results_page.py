"""RESULTS.md is bench/report.py's output for bench/results/*.json, and follows the JSON when it changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(report.RESULTS, copy)
    return copy


def edit(path: Path, keys: list[str | int], value) -> None:
    data = json.loads(path.read_text())
    node = data
    for key in keys[:-1]:
        node = node[key]
    assert keys[-1] in node if isinstance(node, dict) else keys[-1] < len(node)  # an existing figure
    node[keys[-1]] = value
    path.write_text(json.dumps(data))


def test_results_page_matches_the_checked_in_json():
    assert report.PAGE.read_text() == report.results_page(), (
        "RESULTS.md and bench/results/*.json disagree: run python bench/report.py --write")


@pytest.mark.parametrize("name, keys, value, shown", [
    # a benchmark's figure: Beauty SASRec on prefixes, in the quality table and the published-floors table
    ("quality", ["runs", "beauty/sasrec/softmax/prefixes", "test", "ndcg@10"], 0.05, "0.0500"),
    # a figure recorded by hand: the default Beauty command's wall time
    ("notes", ["beauty_default_command", "wall_seconds"], 700.0, "11 min 40 s in all"),
    ("soak", ["wrong_answers"], 3, "3 of {good_answers_checked:,} checked"),  # the count from the same file
])
def test_a_changed_figure_changes_the_page(results_copy, name, keys, value, shown):
    before = report.results_page(results_copy)
    shown = shown.format(**json.loads((results_copy / f"{name}.json").read_text()))
    edit(results_copy / f"{name}.json", keys, value)
    after = report.results_page(results_copy)
    assert after != before
    assert shown in after and shown not in before


def test_check_fails_on_changed_json_and_writes_nothing(results_copy, capsys):
    page = report.PAGE.read_text()
    edit(results_copy / "tuning.json", ["seconds_per_trial"], 99.9)
    assert report.main(["--results", str(results_copy), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert report.PAGE.read_text() == page
    assert report.main(["--check"]) == 0


def test_a_missing_results_file_drops_its_section_only(results_copy):
    (results_copy / "serving.json").unlink()
    page = report.results_page(results_copy)
    assert "\n## Serving\n" not in page
    assert "\n## Serving soak\n" in page and "\n## Quality\n" in page


def test_the_generator_imports_neither_tensorflow_nor_tfseq():
    code = "import sys, bench.report; sys.exit(sorted({'tensorflow', 'tfseq'} & set(sys.modules)) or 0)"
    done = subprocess.run([sys.executable, "-c", code], cwd=report.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
