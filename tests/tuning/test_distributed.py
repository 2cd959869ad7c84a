"""Distributed search: a chief and local workers against one process; the chief's queue; setup errors."""

from __future__ import annotations

import collections
import json
import re
import socket

import pytest

from tests.data.test_reader import write_transform_dir
from tests.test_training import NUM_ITEMS, cycles
from tuning import distributed, report, search
from tuning.spaces import Param
from tuning.tuner import make_oracle, trial_params

TINY_GRU = ["--embedding_size", "16", "--hidden_size", "16", "--batch_size", "32", "--max_seq_len", "10",
            "--epochs", "2"]
FOUR_RATES = "learning_rate choice [0.05, 0.01, 0.005, 0.0001]\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root, _ = write_transform_dir(tmp_path_factory.mktemp("cycles"), cycles(), NUM_ITEMS)
    return str(root)


def argv(data: str, out, params: str, *extra: str) -> list[str]:
    return ["gru4rec", "--data", data, "--output_dir", str(out), "--params_file", params, *TINY_GRU, *extra]


def read_trials(out) -> dict[str, dict]:
    return {t["trial_id"]: t for t in map(json.loads, (out / report.TRIALS).read_text().splitlines())}


@pytest.mark.slow
def test_a_chief_and_two_local_workers_run_each_trial_once_as_one_process_does(data, tmp_path, capsys):
    params = tmp_path / "hyper.test"
    params.write_text(FOUR_RATES)
    search.run(argv(data, tmp_path / "alone", str(params)))
    alone = read_trials(tmp_path / "alone")
    capsys.readouterr()

    out = tmp_path / "chief"
    outcome = search.run(argv(data, out, str(params), "--workers", "2", "--chief_timeout", "120"))
    printed = capsys.readouterr().out
    together = read_trials(out)
    # The same four trials, the same objectives (each trial trains from its seed, in whichever process).
    assert sorted(together) == sorted(alone) == ["0", "1", "2", "3"]
    for trial_id, trial in together.items():
        assert trial["status"] == "completed" and trial["params"] == alone[trial_id]["params"]
        assert trial["objective"] == pytest.approx(alone[trial_id]["objective"], abs=1e-4)
    assert outcome.best.trial_id == max(alone.values(), key=lambda t: t["objective"])["trial_id"]
    assert (out / report.BEST).read_text() == (tmp_path / "alone" / report.BEST).read_text()

    # Each trial started exactly once, on a worker, as the chief and the workers' logs both say.
    announced = re.findall(r"\] trial (\d+) on (tuner\d): ", printed)
    assert sorted(t for t, _ in announced) == ["0", "1", "2", "3"], printed
    ran = collections.Counter()
    for tuner_id in ("tuner0", "tuner1"):
        log = (out / distributed.WORKERS_DIR / f"{tuner_id}.log").read_text()
        assert f"{tuner_id}: the chief has no more trials" in log, log
        ran.update(re.findall(rf"^{tuner_id}: trial (\d+): learning_rate=", log, flags=re.M))
    assert ran == {"0": 1, "1": 1, "2": 1, "3": 1}
    # The chief alone wrote the reports and KerasTuner's state; workers wrote their trials' folders.
    assert sorted(p.name for p in out.iterdir()) == sorted([
        report.HYPER_RESULT, report.TRIALS, report.BEST, report.OBJECTIVE_PLOT, search.SEARCH_FILE,
        search.PROJECT, search.TRIALS_DIR, distributed.WORKERS_DIR])
    assert sorted(p.name for p in (out / search.TRIALS_DIR / "2").iterdir()) == ["exec_0", report.RESULT]
    assert sorted(p.name for p in (out / search.PROJECT).iterdir() if p.is_file()) == ["oracle.json", "tuner0.json"]
    assert "search finished: 4 trial(s), 4 completed" in printed

    # The same command again: the search is over, so no worker is even started.
    search.run(argv(data, out, str(params), "--workers", "2", "--chief_timeout", "120"))
    assert (out / distributed.WORKERS_DIR / "tuner0.log").read_text().count("--- tuner0 started") == 1
    assert read_trials(out) == together


class Recorder:
    def __init__(self, fail_on: str | None = None):
        self.events: list[tuple] = []
        self.fail_on = fail_on

    def trial_started(self, trial_id, params, worker=None):
        self.events.append(("started", trial_id, worker))

    def trial_finished(self, record):
        self.events.append(("finished", record))
        if record == self.fail_on:
            raise search.SearchFailed(f"trial {record} failed")

    def trial_lost(self, trial_id, worker):
        self.events.append(("lost", trial_id, worker))


def grid_chief(tmp_path, listener: Recorder) -> distributed.Chief:
    space = (Param("learning_rate", "choice", (0.1, 0.01, 0.001)),)
    oracle = make_oracle("grid", space, "ndcg@10", max_trials=None, seed=1, max_epochs=1)
    oracle._set_project_dir(str(tmp_path), "keras_tuner")
    return distributed.Chief(oracle, listener, record_of=lambda trial: trial.trial_id, params_of=trial_params)


def finish(chief: distributed.Chief, trial, value: float = 0.5) -> None:
    chief.oracle.update_trial(trial.trial_id, {"ndcg@10": value})
    trial.status = "COMPLETED"
    chief.end_trial(trial)


def test_a_lost_workers_trial_goes_to_the_next_worker_that_asks(tmp_path):
    listener = Recorder()
    chief = grid_chief(tmp_path, listener)
    first, second = chief.create_trial("tuner0"), chief.create_trial("tuner1")
    assert not chief.nothing_left()
    assert chief.worker_lost("tuner1") == second.trial_id
    assert chief.worker_lost("tuner1") is None  # nothing of its own left
    finish(chief, first)
    again = chief.create_trial("tuner0")
    assert again.trial_id == second.trial_id and again.hyperparameters.values == {"learning_rate": 0.01}
    finish(chief, again)
    finish(chief, chief.create_trial("tuner0"))
    assert chief.nothing_left() and not chief.finished()  # the oracle has not yet said so to anyone
    assert chief.create_trial("tuner0").status == "STOPPED" and chief.finished()
    assert listener.events == [
        ("started", "0", "tuner0"), ("started", "1", "tuner1"), ("lost", "1", "tuner1"), ("finished", "0"),
        ("started", "1", "tuner0"), ("finished", "1"), ("started", "2", "tuner0"), ("finished", "2"),
    ]


def test_a_reporting_error_stops_handing_out_trials_and_waits_for_the_running_ones(tmp_path, capsys):
    chief = grid_chief(tmp_path, Recorder(fail_on="0"))
    first, second = chief.create_trial("tuner0"), chief.create_trial("tuner1")
    finish(chief, first)
    assert "stopping: trial 0 failed; waiting for 1 running trial(s)" in capsys.readouterr().out
    assert chief.create_trial("tuner0").status == "STOPPED" and not chief.finished()
    finish(chief, second)
    assert chief.create_trial("tuner1").status == "STOPPED" and chief.finished()
    assert isinstance(chief.failure, search.SearchFailed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((distributed.LOCAL_IP, 0))
        return s.getsockname()[1]


def distributed_env(monkeypatch, tuner_id: str, port: int) -> None:
    monkeypatch.setenv(distributed.ENV_TUNER_ID, tuner_id)
    monkeypatch.setenv(distributed.ENV_ORACLE_IP, distributed.LOCAL_IP)
    monkeypatch.setenv(distributed.ENV_ORACLE_PORT, str(port))


def test_setup_errors_are_one_line_and_do_not_hang(data, tmp_path, monkeypatch, capsys):
    params = tmp_path / "hyper.test"
    params.write_text(FOUR_RATES)
    # A chief whose port is taken (here by a plain listening socket).
    with socket.socket() as taken:
        taken.bind((distributed.LOCAL_IP, 0))
        taken.listen()
        distributed_env(monkeypatch, "chief", taken.getsockname()[1])
        assert search.main(argv(data, tmp_path / "chief", str(params))) == 2
    err = capsys.readouterr().err
    assert "the port is in use" in err and distributed.ENV_ORACLE_PORT in err and len(err.splitlines()) == 1

    # A worker with no chief to answer gives up after --chief_timeout, having written nothing.
    distributed_env(monkeypatch, "tuner0", free_port())
    assert search.main(argv(data, tmp_path / "worker", str(params), "--chief_timeout", "1")) == 1
    err = capsys.readouterr().err
    assert "tuner0: no answer from the chief's oracle" in err and "within 1s" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "worker").exists()

    # Half the variables, or --workers under a chief's variables: refused before any work.
    monkeypatch.delenv(distributed.ENV_ORACLE_PORT)
    assert search.main(argv(data, tmp_path / "half", str(params))) == 2
    assert f"unset: {distributed.ENV_ORACLE_PORT}" in capsys.readouterr().err
    distributed_env(monkeypatch, "chief", free_port())
    assert search.main(argv(data, tmp_path / "both", str(params), "--workers", "2")) == 2
    assert "--workers starts a chief and its workers" in capsys.readouterr().err


class ExitedProcess:
    def __init__(self, code: int):
        self.returncode = code

    def poll(self) -> int:
        return self.returncode


@pytest.mark.parametrize("code, restarts, words", [
    (2, 0, "tuner0 exited with status 2: error: no such data (log: "),
    (-9, distributed.MAX_RESTARTS, "tuner0 was killed (SIGKILL)"),
])
def test_when_no_local_worker_is_left_the_chief_stops_naming_the_last_exit(tmp_path, code, restarts, words):
    chief = grid_chief(tmp_path, Recorder())
    trial = chief.create_trial("tuner0")
    workers = distributed.LocalWorkers(1, [], str(tmp_path / "logs"))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "tuner0.log").write_text("tuner0: waiting for the chief's oracle\nerror: no such data\n")
    workers.processes["tuner0"] = distributed.LocalWorker("tuner0", ExitedProcess(code), restarts=restarts)
    with pytest.raises(distributed.WorkersLost, match="every worker exited before the search finished") as raised:
        workers.check(chief)
    assert words in str(raised.value) and "re-run the same command to resume" in str(raised.value)
    assert chief.oracle._retry_queue == [trial.trial_id] and not chief.oracle.ongoing_trials
