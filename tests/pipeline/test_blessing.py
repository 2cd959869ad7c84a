"""pipeline/evaluator.py's blessing: a run is pushed only when it is not worse than the served model."""

from __future__ import annotations

import json

import pytest

from pipeline import artifacts
from pipeline.evaluator import EvaluatorConfig, ServingTarget, baseline_of, bless
from pipeline.pusher import PusherConfig, current_blessing
from tfseq.config import ConfigError


def metrics(ndcg: float, data: str = "d1", **test: float) -> dict:
    return {"valid_metric": "ndcg@10", "data": data, "valid": {"ndcg@10": ndcg}, "test": {"ndcg@10": ndcg, **test}}


def served(tmp_path, version: int, run_metrics: dict | None, run: str = "sasrec-softmax-aaaa") -> ServingTarget:
    """A served version whose export record points at a run folder holding ``run_metrics``."""
    run_dir = tmp_path / "root" / "runs" / run
    (run_dir / "Trainer").mkdir(parents=True, exist_ok=True)
    if run_metrics is not None:
        (run_dir / "Evaluator").mkdir(exist_ok=True)
        (run_dir / "Evaluator" / "metrics.json").write_text(json.dumps(run_metrics))
    extra = tmp_path / "serving" / "tfseq" / str(version) / "assets.extra"
    extra.mkdir(parents=True)
    (extra / "tfseq_export.json").write_text(json.dumps({"trainer_dir": str(run_dir / "Trainer")}))
    return ServingTarget(str(tmp_path / "serving"), "tfseq")


def test_without_a_served_model_a_run_is_blessed_and_says_so():
    verdict = bless(metrics(0.05), EvaluatorConfig(), None)
    assert verdict["blessed"] is True and verdict["baseline"] is None
    assert "no served model" in verdict["reason"]


def test_a_worse_run_is_not_blessed_and_both_figures_are_recorded(tmp_path):
    target = served(tmp_path, 1, metrics(0.0500))
    verdict = bless(metrics(0.0400), EvaluatorConfig(), baseline_of(target))
    assert verdict["blessed"] is False
    assert (verdict["candidate"], verdict["baseline"]) == (0.04, {"version": 1, "run": "sasrec-softmax-aaaa",
                                                                  "value": 0.05})
    assert "0.0400 is worse than the served version 1" in verdict["reason"]


def test_tolerance_lets_a_slightly_worse_run_through(tmp_path):
    target = served(tmp_path, 3, metrics(0.0500))
    # 0.0500 - 0.0480 = 0.0020 below: inside a tolerance of 0.003, outside one of 0.001.
    assert bless(metrics(0.0480), EvaluatorConfig(bless_tolerance=0.003), baseline_of(target))["blessed"] is True
    assert bless(metrics(0.0480), EvaluatorConfig(bless_tolerance=0.001), baseline_of(target))["blessed"] is False


def test_the_newest_version_is_the_baseline(tmp_path):
    served(tmp_path, 1, metrics(0.09), run="old-run")
    target = served(tmp_path, 2, metrics(0.03), run="new-run")
    baseline = baseline_of(target)
    assert (baseline["version"], baseline["run"]) == (2, "new-run")
    assert bless(metrics(0.04), EvaluatorConfig(), baseline)["blessed"] is True


def test_a_model_served_for_other_data_is_no_baseline_to_beat(tmp_path):
    target = served(tmp_path, 1, metrics(0.01, data="synthetic"))
    verdict = bless(metrics(0.20, data="beauty"), EvaluatorConfig(), baseline_of(target))
    assert verdict["blessed"] is False and "other data" in verdict["reason"]


def test_absolute_thresholds_are_checked_on_the_test_split():
    config = EvaluatorConfig(bless_threshold=("ndcg@10=0.03", "recall@10=0.2"))
    verdict = bless(metrics(0.05, **{"recall@10": 0.1}), config, None)
    assert verdict["blessed"] is False
    assert verdict["thresholds"]["ndcg@10"] == {"floor": 0.03, "value": 0.05, "passed": True}
    assert verdict["thresholds"]["recall@10"]["passed"] is False
    assert "recall@10 0.1000 is below the threshold 0.2" in verdict["reason"]


@pytest.mark.parametrize("bad", ["ndcg@10", "ndcg@10=high", "nope@10=0.1", "ndcg@0=0.1", "ndcg@10=nan"])
def test_bad_thresholds_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="bless_threshold"):
        EvaluatorConfig(bless_threshold=(bad,))


def test_comma_separated_thresholds_count_each():
    assert EvaluatorConfig(bless_threshold=("ndcg@10=0.03,mrr@10=0.01",)).thresholds() == {
        "ndcg@10": 0.03, "mrr@10": 0.01}


def test_the_pusher_blesses_again_when_another_version_was_pushed_since(tmp_path):
    evaluator = tmp_path / "Evaluator"
    evaluator.mkdir()
    candidate = metrics(0.04)
    (evaluator / "metrics.json").write_text(json.dumps(candidate))
    first = {**bless(candidate, EvaluatorConfig(), None), "served": str(tmp_path / "serving" / "tfseq")}
    (evaluator / "blessing.json").write_text(json.dumps(first))
    target = PusherConfig().target(str(tmp_path / "serving"))
    assert current_blessing(str(evaluator), EvaluatorConfig(), target)["blessed"] is True
    served(tmp_path, 1, metrics(0.06))  # a better model was pushed after this run was evaluated
    again = current_blessing(str(evaluator), EvaluatorConfig(), target)
    assert again["blessed"] is False and again["baseline"]["version"] == 1


def test_push_policy_is_checked():
    with pytest.raises(ConfigError, match="--push"):
        PusherConfig(push="sometimes")
    assert artifacts.BLESSING == "blessing.json"
