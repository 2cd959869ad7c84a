"""Default search spaces, name checks, oracles (the resumable grid) and the report helpers."""

from __future__ import annotations

import pytest

from tfseq.config import ConfigError
from tfseq.experiment import ExperimentConfig
from tfseq.models import MODELS
from tuning import report, spaces
from tuning.hyper_file import parse_text
from tuning.report import TrialRecord
from tuning.tuner import GridOracle, make_oracle, planned_trials


@pytest.mark.parametrize("model", MODELS.names())
def test_every_registry_model_has_a_default_space_of_known_names(model):
    space = spaces.check_space(spaces.default_space(model), model, "softmax")
    base = ExperimentConfig.from_flat({"model": model})
    for values in spaces.grid(space)[:3] + spaces.grid(space)[-3:]:
        config = base.replace(**values)  # every default value is accepted by the model's config
        assert {k: config.to_flat()[k] for k in values} == values


def test_core_default_grid_is_the_papers_12_trials():
    assert spaces.resolve_model("core") == "core_trm"
    combos = spaces.grid(spaces.default_space("core"))
    assert len(combos) == 12
    assert {c["learning_rate"] for c in combos} == {0.0005, 0.001, 0.003}
    assert {c["temperature"] for c in combos} == {0.05, 0.07, 0.1, 0.2}
    assert len({tuple(c.values()) for c in combos}) == 12


def test_gru4rec_and_sasrec_default_grids():
    gru = spaces.default_space("gru4rec")
    assert {p.name: p.grid() for p in gru} == {
        "learning_rate": (0.01, 0.005, 0.001, 0.0005, 0.0001),
        "dropout_prob": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
        "num_layers": (1, 2, 3),
        "hidden_size": (128,),
    }
    assert len(spaces.grid(gru)) == 5 * 6 * 3
    assert {p.name for p in spaces.default_space("sasrec")} == {
        "learning_rate", "attn_dropout_prob", "hidden_dropout_prob", "num_heads", "num_layers", "embedding_size"
    }


def test_unknown_hyperparameter_is_rejected_by_name_and_line():
    space = parse_text("learning_rate choice [0.01]\ntemprature choice [0.1]\n", "core.test")
    with pytest.raises(ConfigError) as error:
        spaces.check_space(space, "core_trm", "softmax")
    assert "core.test:2" in str(error.value) and "'temprature'" in str(error.value)
    assert "temperature" in str(error.value)  # the known names are listed
    # Loss hyperparameters are known only with that loss.
    negatives = parse_text("num_negatives choice [64, 128]", "s.test")
    spaces.check_space(negatives, "gru4rec", "sampled_softmax")
    with pytest.raises(ConfigError, match="'num_negatives'"):
        spaces.check_space(negatives, "gru4rec", "softmax")


def test_continuous_param_has_no_grid():
    (lr,) = parse_text("learning_rate uniform 0.001,0.01", "x.test")
    with pytest.raises(ConfigError, match=r"x.test:1: learning_rate is uniform \(continuous\)"):
        spaces.grid([lr])


def _run_oracle(oracle, trials: int) -> list[dict]:
    """Creates and ends ``trials`` trials as BaseTuner does (end_trial, then save), scoring each 1.0."""
    seen = []
    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        seen.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"ndcg@10": 1.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        oracle.save()
    return seen


def test_grid_oracle_resumes_where_a_reloaded_search_stopped(tmp_path):
    space = parse_text("learning_rate choice [0.1, 0.01]\nnum_layers choice [1, 2, 3]\n")
    first = make_oracle("grid", space, "ndcg@10", max_trials=None, seed=1, max_epochs=5)
    assert isinstance(first, GridOracle) and planned_trials(first, space) == 6
    first._set_project_dir(str(tmp_path), "project")
    done = _run_oracle(first, 2)
    # A new process: a fresh oracle reloaded from the saved state continues the grid.
    second = make_oracle("grid", space, "ndcg@10", max_trials=None, seed=1, max_epochs=5)
    second._set_project_dir(str(tmp_path), "project")
    second.reload()
    rest = _run_oracle(second, 10)
    assert done + rest == spaces.grid(space)
    assert second.create_trial("tuner0").status == "STOPPED"


def test_random_oracle_stops_when_a_discrete_space_is_exhausted(tmp_path):
    space = parse_text("learning_rate choice [0.1, 0.01]\nnum_layers choice [1, 2]\n")
    oracle = make_oracle("random", space, "ndcg@10", max_trials=10, seed=3, max_epochs=5)
    assert planned_trials(oracle, space) == 4
    oracle._set_project_dir(str(tmp_path), "project")
    seen = _run_oracle(oracle, 10)
    assert sorted(map(str, seen)) == sorted(map(str, spaces.grid(space)))


def test_hyperband_budgets_are_capped_by_epochs(tmp_path):
    space = parse_text("learning_rate loguniform -7,-2")
    oracle = make_oracle("hyperband", space, "ndcg@10", max_trials=None, seed=3, max_epochs=9)
    oracle._set_project_dir(str(tmp_path), "project")
    seen = _run_oracle(oracle, planned_trials(oracle, space) + 5)
    assert len(seen) == planned_trials(oracle, space)
    epochs = [v["tuner/epochs"] for v in seen]
    assert max(epochs) == 9 and min(epochs) == 1  # factor 3: budgets 1, 3, 9


def _record(trial_id, objective, status=report.COMPLETED, **params):
    return TrialRecord(trial_id, params, status, 1.0, objective=objective)


def test_best_record_ignores_failed_trials_and_breaks_ties_by_order():
    records = [
        _record("0", 0.3, lr=1),
        _record("1", None, report.FAILED, lr=2),
        _record("2", 0.5, lr=3),
        _record("3", 0.5, lr=4),
    ]
    assert report.best_record(records).trial_id == "2"
    assert report.best_record([records[1]]) is None


def test_heatmap_cells_average_repeated_cells_and_leave_failed_ones_empty():
    records = [
        _record("0", 0.2, lr=0.1, t=1),
        _record("1", 0.4, lr=0.1, t=1),
        _record("2", 0.9, lr=0.01, t=2),
        _record("3", None, report.FAILED, lr=0.1, t=2),
    ]
    cells = report.heatmap_cells(records, ("lr", (0.1, 0.01)), ("t", (1, 2)))
    assert cells[0, 0] == pytest.approx(0.3)  # (0.2 + 0.4) / 2
    assert cells[1, 1] == pytest.approx(0.9)
    assert cells[0, 1] != cells[0, 1] and cells[1, 0] != cells[1, 0]  # NaN: failed / never run


def test_hyper_result_follows_recbole_layout():
    record = TrialRecord(
        "0", {"learning_rate": 0.001, "temperature": 0.07}, report.COMPLETED, 2.0, objective=0.123456,
        valid={"recall@10": 0.25, "mrr@10": 0.1, "ndcg@10": 0.123456, "hit@10": 0.25, "precision@10": 0.025,
               "ndcg@20": 0.2},
        test={"recall@10": 0.2, "mrr@10": 0.05, "ndcg@10": 0.09, "hit@10": 0.2, "precision@10": 0.02},
    )
    failed = TrialRecord("1", {"learning_rate": 0.1, "temperature": 0.07}, report.FAILED, 1.0, error="E: x")
    assert report.hyper_result_text([record, failed]) == (
        "learning_rate:0.001, temperature:0.07\n"
        "Valid result:\n"
        "recall@10 : 0.25    mrr@10 : 0.1    ndcg@10 : 0.1235    hit@10 : 0.25    precision@10 : 0.025\n"
        "Test result:\n"
        "recall@10 : 0.2    mrr@10 : 0.05    ndcg@10 : 0.09    hit@10 : 0.2    precision@10 : 0.02\n"
        "\n"
    )


def test_side_feature_models_search_fusion_lambda_learning_rate_and_dropout():
    difsr = {p.name: p.grid() for p in spaces.default_space("difsr")}
    assert difsr["fusion_type"] == ("sum", "concat", "gate")
    assert 10.0 in difsr["lambda_attr"] and 0.0001 in difsr["learning_rate"]  # the authors' Beauty run
    assert {"hidden_dropout_prob"} < set(difsr)
    assert len(spaces.grid(spaces.default_space("difsr"))) == 54
    assert {p.name for p in spaces.default_space("sasrec_f")} == {
        "learning_rate", "attn_dropout_prob", "hidden_dropout_prob", "pooling_mode"
    }
