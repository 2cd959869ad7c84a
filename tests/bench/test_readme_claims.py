"""The README's figures that come from benchmarks are the benchmarks' JSON, word for word."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from bench import report


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_readme_states_the_recbole_speed_ratios_of_the_benchmark_json():
    claim = report.recbole_speed_claim(json.loads((report.RESULTS / "recbole_speed.json").read_text()))
    assert claim, "recbole_speed.json has no tfseq default and prefixes rows"
    assert normalised(claim) in normalised((report.ROOT / "README.md").read_text()), (
        f"README.md must say, as bench/results/recbole_speed.json gives it:\n{claim}")


def test_the_claim_follows_the_json(tmp_path: Path):
    copy = tmp_path / "recbole_speed.json"
    shutil.copy(report.RESULTS / "recbole_speed.json", copy)
    results = json.loads(copy.read_text())
    before = report.recbole_speed_claim(results)
    results["runs"]["sasrec/tfseq/default"]["speedup_vs_recbole"] = 99.94
    after = report.recbole_speed_claim(results)
    assert "`sasrec` 99.9× faster with its defaults" in after and "99.9×" not in before
