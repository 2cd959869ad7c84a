"""python -m tuning.search end to end on tiny data: reports, best.json, resume, failures, preprocessing, export."""

from __future__ import annotations

import json

import pytest

import pipeline.trainer
from pipeline import cli
from pipeline import run as pipeline_run
from tests.data.test_reader import write_transform_dir
from tests.test_training import NUM_ITEMS, cycles
from tfseq.experiment import ExperimentConfig
from tuning import report, search

TINY_GRU = ["--embedding_size", "16", "--hidden_size", "16", "--batch_size", "32", "--max_seq_len", "10",
            "--epochs", "2"]
LEARNING_RATES = "learning_rate choice [0.05, 0.01, 0.0001]\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root, _ = write_transform_dir(tmp_path_factory.mktemp("cycles"), cycles(), NUM_ITEMS)
    return str(root)


def params_file(tmp_path, text: str) -> str:
    path = tmp_path / "hyper.test"
    path.write_text(text)
    return str(path)


def gru_argv(data: str, out, params: str, *extra: str) -> list[str]:
    return ["gru4rec", "--data", data, "--output_dir", str(out), "--params_file", params, *TINY_GRU, *extra]


def read_trials(out) -> list[dict]:
    return [json.loads(line) for line in (out / report.TRIALS).read_text().splitlines()]


def hyper_result_blocks(out) -> list[list[str]]:
    return [block.splitlines() for block in (out / report.HYPER_RESULT).read_text().strip().split("\n\n")]


class CountingTrainer:
    """Wraps the real Trainer stage: counts calls; raises KeyboardInterrupt on call ``interrupt_at``."""

    def __init__(self, monkeypatch, interrupt_at: int | None = None):
        self.calls: list[float] = []
        self.interrupt_at = interrupt_at
        self.real = pipeline.trainer.run_trainer
        monkeypatch.setattr(pipeline.trainer, "run_trainer", self)

    def __call__(self, config, *args, **kwargs):
        self.calls.append(config.train.learning_rate)
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return self.real(config, *args, **kwargs)


def test_search_reports_every_trial_and_the_best_as_a_pipeline_config(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "search"
    trainer = CountingTrainer(monkeypatch, interrupt_at=2)
    argv = gru_argv(data, out, params_file(tmp_path, LEARNING_RATES))
    # Interrupted (Ctrl-C) during the second trial: the first is kept, nothing of the second.
    with pytest.raises(KeyboardInterrupt):
        search.run(argv)
    assert [t["params"] for t in read_trials(out)] == [{"learning_rate": 0.05}]
    first_finished = read_trials(out)[0]["finished_at"]

    trainer.interrupt_at = None
    outcome = search.run(argv)  # the same command resumes: the second and third trials only
    assert trainer.calls == [0.05, 0.01, 0.01, 0.0001]
    printed = capsys.readouterr().out
    assert "resuming with 1 finished" in printed and "[3/3] trial" in printed and "ETA" in printed

    trials = read_trials(out)
    assert [t["params"]["learning_rate"] for t in trials] == [0.05, 0.01, 0.0001]
    assert trials[0]["finished_at"] == first_finished
    assert {t["status"] for t in trials} == {"completed"} and all(t["error"] is None for t in trials)
    for t in trials:  # each trial trained its own learning rate, and its record holds its Evaluator's test metrics
        trial_dir = out / "trials" / t["trial_id"] / "exec_0"
        assert json.loads((trial_dir / "Trainer" / "config.json").read_text())["learning_rate"] == \
            t["params"]["learning_rate"]
        evaluated = json.loads((trial_dir / "Evaluator" / "metrics.json").read_text())
        assert t["test"]["ndcg@10"] == pytest.approx(evaluated["test"]["ndcg@10"])
        assert t["objective"] == pytest.approx(t["valid"]["ndcg@10"])
    # Two epochs at learning rate 1e-4 barely move the embeddings: the search must see it.
    objectives = {t["params"]["learning_rate"]: t["objective"] for t in trials}
    assert objectives[0.0001] < max(objectives.values())

    best = max(trials, key=lambda t: t["objective"])
    assert outcome.best.trial_id == best["trial_id"]
    best_json = json.loads((out / report.BEST).read_text())
    assert best_json == best["config"]
    assert best_json["learning_rate"] == best["params"]["learning_rate"]
    assert (best_json["model"], best_json["loss"]) == ("gru4rec", "softmax")
    config = ExperimentConfig.from_json_file(str(out / report.BEST))
    assert config.train.learning_rate == best["params"]["learning_rate"] and config.model_config.hidden_size == 16
    _, configs, _ = cli.parse(pipeline_run.build_parser(), ["--config", str(out / report.BEST)])
    assert configs.experiment == config  # pipeline.run accepts it as it is

    blocks = hyper_result_blocks(out)
    assert [b[0] for b in blocks] == ["learning_rate:0.05", "learning_rate:0.01", "learning_rate:0.0001"]
    for block, t in zip(blocks, trials):
        assert block[1] == "Valid result:" and block[3] == "Test result:"
        valid = dict(cell.split(" : ") for cell in block[2].split("    "))
        assert list(valid) == ["recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"]
        assert float(valid["ndcg@10"]) == pytest.approx(t["objective"], abs=5e-5)
    # Only the best trial keeps its weights (for --export); every trial keeps config and metrics.
    kept = [t["trial_id"] for t in trials if (out / "trials" / t["trial_id"] / "exec_0/Trainer/weights").exists()]
    assert kept == [best["trial_id"]]
    assert (out / report.OBJECTIVE_PLOT).stat().st_size > 5000
    assert not (out / report.HEATMAP).exists()  # one searched parameter

    # Finished: the same command again runs nothing; a bigger max_trials on a finished grid neither.
    search.run(argv + ["--max_trials", "5"])
    assert len(trainer.calls) == 4


def test_max_trials_extends_a_search_and_two_parameters_draw_a_heat_map(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "search"
    trainer = CountingTrainer(monkeypatch)
    params = params_file(tmp_path, "learning_rate choice [0.05, 0.001]\ndropout_prob choice [0.0, 0.5]\n")
    search.run(gru_argv(data, out, params, "--max_trials", "1", "--epochs", "1"))
    assert len(trainer.calls) == 1 and len(read_trials(out)) == 1
    search.run(gru_argv(data, out, params, "--max_trials", "3", "--epochs", "1"))
    assert len(trainer.calls) == 3
    assert [t["params"] for t in read_trials(out)] == [
        {"learning_rate": 0.05, "dropout_prob": 0.0},
        {"learning_rate": 0.05, "dropout_prob": 0.5},
        {"learning_rate": 0.001, "dropout_prob": 0.0},
    ]
    assert (out / report.HEATMAP).stat().st_size > 5000
    # A different search into the same directory is refused, naming what changed.
    code = search.main(gru_argv(data, out, params, "--epochs", "2"))
    assert code == 2 and "different search (changed: config (epochs))" in capsys.readouterr().err


def test_failed_trial_is_recorded_and_never_best(data, tmp_path, capsys):
    out = tmp_path / "search"
    # dropout_prob must be in [0, 1): the 1.0 trial raises (a ConfigError building its config).
    params = params_file(tmp_path, "dropout_prob choice [1.0, 0.0]\n")
    assert search.main(gru_argv(data, out, params, "--epochs", "1")) == 0
    failed, completed = read_trials(out)
    assert failed["status"] == "failed" and failed["objective"] is None
    assert failed["error"].startswith("ConfigError:") and "dropout_prob" in failed["error"]
    assert "Traceback" in (out / "trials" / failed["trial_id"] / "error.txt").read_text()
    assert completed["status"] == "completed"
    assert json.loads((out / report.BEST).read_text())["dropout_prob"] == 0.0
    assert [b[0] for b in hyper_result_blocks(out)] == ["dropout_prob:0.0"]
    assert "FAILED" in capsys.readouterr().out


def test_all_trials_failing_exits_non_zero(data, tmp_path, capsys):
    out = tmp_path / "search"
    params = params_file(tmp_path, "dropout_prob choice [1.0, 1.5]\n")
    assert search.main(gru_argv(data, out, params)) == 1
    assert [t["status"] for t in read_trials(out)] == ["failed", "failed"]
    assert not (out / report.BEST).exists()
    assert "every trial failed" in capsys.readouterr().err


def test_consecutive_failures_stop_the_search(data, tmp_path, capsys):
    out = tmp_path / "search"
    params = params_file(tmp_path, "dropout_prob choice [1.0, 1.5, 2.0, 0.0]\n")
    assert search.main(gru_argv(data, out, params, "--max_consecutive_failures", "2")) == 1
    assert len(read_trials(out)) == 2
    assert "2 trials failed in a row" in capsys.readouterr().err


@pytest.mark.parametrize(
    "hyper, extra, words",
    [
        ("learning_rate choice [0.01]\nhiden_size choice [8]\n", [], ["hyper.test:2", "'hiden_size'"]),
        ("learning_rate choice [0.01]\n", ["--learning_rate", "0.1"], ["learning_rate is both fixed"]),
        ("learning_rate uniform 0.001,0.01\n", [], ["hyper.test:1", "continuous"]),
        ("learning_rate choice [0.01]\n", ["--objective", "auc@10"], ["--objective"]),
        ("learning_rate choice [0.01]\n", ["--input", "x.csv"], ["--data uses preprocessed data", "--input"]),
    ],
)
def test_bad_commands_exit_2_with_a_clear_error(data, tmp_path, capsys, hyper, extra, words):
    code = search.main(gru_argv(data, tmp_path / "out", params_file(tmp_path, hyper), *extra))
    err = capsys.readouterr().err
    assert code == 2, err
    for word in words:
        assert word in err
    assert not (tmp_path / "out" / "trials").exists()


def test_preprocesses_input_flags_once_and_exports_the_best(tmp_path, capsys):
    out = tmp_path / "pop"
    argv = ["pop", "--output_dir", str(out), "--runner=DirectRunner", "--synthetic_users", "60",
            "--synthetic_items", "30", "--synthetic_interactions", "600", "--export", "--model_name", "best"]
    outcome = search.run(argv)
    assert (out / "data" / "Transform" / "metadata.json").exists()
    assert [r.params for r in outcome.records] == [{}]  # pop: nothing to tune, one trial
    assert outcome.pushed["path"] == str(out / "serving" / "best" / "1")
    assert (out / "serving" / "best" / "1" / "saved_model.pb").exists()

    capsys.readouterr()
    search.run(argv)  # data, trials and export are all reused
    printed = capsys.readouterr().out
    assert "[Transform] up to date, skipped" in printed and "[Pusher] up to date, skipped" in printed
    assert "trial 0:" not in printed
    assert not (out / "serving" / "best" / "2").exists()


@pytest.mark.parametrize("oracle", ["random", "bayesian", "hyperband"])
def test_every_oracle_runs_real_trials_within_the_space(oracle, data, tmp_path):
    out = tmp_path / oracle
    params = params_file(tmp_path, "learning_rate loguniform -9.2,-3\ndropout_prob choice [0.0, 0.2]\n")
    argv = gru_argv(data, out, params, "--oracle", oracle, "--max_trials", "2", "--epochs", "2")
    outcome = search.run(argv)
    trials = read_trials(out)
    assert len(trials) == len(outcome.records) == 2
    for t in trials:
        assert t["status"] == "completed" and t["objective"] > 0
        assert 1e-4 <= t["params"]["learning_rate"] <= 0.05 and t["params"]["dropout_prob"] in (0.0, 0.2)
        if oracle == "hyperband":  # Hyperband sets each trial's budget, capped by --epochs
            assert 1 <= t["params"]["epochs"] <= 2
    best = max(trials, key=lambda t: t["objective"])
    assert json.loads((out / report.BEST).read_text())["learning_rate"] == best["params"]["learning_rate"]
