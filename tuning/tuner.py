"""The KerasTuner side: oracles, a tuner whose ``run_trial`` trains with tfseq, and one trial's run.

KerasTuner 1.4.8 imports Keras 3 and rejects the tf-keras models tfseq builds,
so nothing goes through ``HyperModel.build``: :class:`SearchTuner` subclasses
KerasTuner's oracle-driven ``BaseTuner`` and overrides ``run_trial`` to train
and evaluate the trial's config with the pipeline's own Trainer and Evaluator
stages (:class:`TrialRunner`), returning the validation objective.

KerasTuner keeps its state in ``<output_dir>/keras_tuner/`` (``overwrite=False``),
so re-running a search resumes it: finished trials are not run again and a
trial interrupted halfway (Ctrl-C, a killed process) is run again from the
start. A trial that raises is recorded as failed (``FailedTrialError``: no
retry) and KerasTuner never scores it; :mod:`tuning.report` never reports it
as best.

In a distributed search (:mod:`tuning.distributed`) the same tuner runs on
each worker, its oracle calls going to the chief's oracle over gRPC.

Oracles: ``grid`` (:class:`GridOracle`: KerasTuner's ``GridSearchOracle``
keeps its queue outside its saved state, so a resumed grid search would stop
at once; this one derives the next combination from the saved set of tried
values), ``random``, ``bayesian`` (Gaussian process, needs scikit-learn) and
``hyperband`` (KerasTuner's, with ``--epochs`` as its largest budget; a
promoted configuration is trained again from scratch for its larger budget,
since tfseq's trainer does not resume a checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import posixpath
import time
import traceback
from typing import Any, Protocol, Sequence

import keras_tuner
import tensorflow as tf
from keras_tuner.engine.base_tuner import BaseTuner

from pipeline import artifacts
from tfseq.config import ConfigError
from tfseq.experiment import ExperimentConfig
from tuning import report
from tuning.distributed import OracleUnreachable
from tuning.report import TrialRecord
from tuning.spaces import Param, clean_values, grid, to_hyperparameters

ORACLES = ("grid", "random", "bayesian", "hyperband")
HYPERBAND_FACTOR = 3
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
WEIGHTS_DIR = "weights"
ERROR_FILE = "error.txt"
TUNER_STATE = "tuner0.json"  # KerasTuner's name for a lone tuner's state (its default KERASTUNER_TUNER_ID)
RECORD_WAIT_S = 10.0
_RUNNING, _IDLE, _STOPPED = "RUNNING", "IDLE", "STOPPED"


class GridOracle(keras_tuner.Oracle):
    """Every combination of a discrete space, in :func:`tuning.spaces.grid` order.

    The next trial is the first combination not yet tried; KerasTuner saves the
    set of tried values with the oracle, so a reloaded search continues the grid.
    """

    def __init__(self, space: Sequence[Param], objective: Any, max_trials: int | None = None,
                 seed: int | None = None) -> None:
        combinations = grid(space)
        super().__init__(objective=objective, max_trials=min(max_trials or len(combinations), len(combinations)),
                         seed=seed, hyperparameters=to_hyperparameters(space), max_consecutive_failed_trials=None)
        self.combinations = combinations

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        for values in self.combinations:
            if not self._duplicate(values):
                return {"status": _RUNNING, "values": dict(values)}
        return {"status": _IDLE if self.ongoing_trials else _STOPPED, "values": None}


def make_oracle(
    kind: str,
    space: Sequence[Param],
    objective: str,
    *,
    max_trials: int | None,
    seed: int,
    max_epochs: int,
) -> keras_tuner.Oracle:
    """The ``kind`` oracle over ``space``, maximising ``objective``.

    ``max_trials`` caps the number of trials (None: the whole grid, 10 for random
    and Bayesian search, Hyperband's own schedule). KerasTuner's stop after 3
    consecutive failures is switched off: the search driver decides.
    """
    oracle = _make_oracle(kind, space, keras_tuner.Objective(objective, direction="max"),
                          max_trials=max_trials, seed=seed if seed > 0 else 1,  # a falsy seed: random
                          max_epochs=max_epochs)
    oracle.verbose = 0  # KerasTuner's trial tables; the search prints its own progress lines
    return oracle


def _make_oracle(kind: str, space: Sequence[Param], target: Any, *, max_trials: int | None, seed: int,
                 max_epochs: int) -> keras_tuner.Oracle:
    if kind == "grid" or not space:  # nothing to sample: the single empty combination
        return GridOracle(space, target, max_trials=max_trials, seed=seed)
    hp = to_hyperparameters(space)
    common = dict(objective=target, seed=seed, hyperparameters=hp, max_consecutive_failed_trials=None)
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials or 10, **common)
    if kind == "bayesian":
        try:
            return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=max_trials or 10, **common)
        except ImportError as e:
            raise ConfigError(f"--oracle bayesian: {e}") from None
    if kind == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=max_epochs, factor=HYPERBAND_FACTOR, **common)
        # Oracle.create_trial stops at max_trials (and sizes the trial ids from it).
        oracle.max_trials = min(max_trials or math.inf, _hyperband_trials(oracle))
        return oracle
    raise ConfigError(f"unknown oracle {kind!r}; oracles: {', '.join(ORACLES)}")


def _hyperband_trials(oracle: Any) -> int:
    """Trials in one Hyperband iteration: the size of every round of every bracket."""
    brackets = oracle._get_num_brackets()
    return int(sum(oracle._get_size(b, r) for b in range(brackets) for r in range(b + 1)))


def planned_trials(oracle: keras_tuner.Oracle, space: Sequence[Param]) -> int:
    """How many trials the search will run in all (for the progress count and ETA)."""
    if space and all(p.discrete for p in space):  # random search stops when the grid is exhausted
        return int(min(oracle.max_trials, len(grid(space))))
    return int(oracle.max_trials)


class Listener(Protocol):
    def trial_started(self, trial_id: str, params: dict[str, Any]) -> None: ...

    def trial_finished(self, record: TrialRecord) -> None: ...


def trial_params(values: dict[str, Any]) -> dict[str, Any]:
    """The config overrides of KerasTuner trial values: Hyperband's budget becomes ``epochs``."""
    params = clean_values({k: v for k, v in values.items() if not k.startswith("tuner/")})
    if "tuner/epochs" in values:
        params["epochs"] = int(values["tuner/epochs"])
    return params


@dataclasses.dataclass
class TrialRunner:
    """Trains and evaluates one trial's config into ``<trials_dir>/<trial_id>/``.

    Each execution ``n`` (seed ``seed + n``) runs the Trainer stage into
    ``exec_<n>/Trainer`` and the Evaluator stage into ``exec_<n>/Evaluator``;
    the trial's objective is the mean of the executions' best-epoch validation
    ``objective``. Any exception makes the trial a failed one (its traceback in
    ``error.txt``); KeyboardInterrupt is not caught, so an interrupted trial
    leaves no record and runs again on resume.
    """

    base: ExperimentConfig
    transform_dir: str
    trials_dir: str
    objective: str
    executions: int = 1
    verbose: int = 0

    def trial_dir(self, trial_id: str) -> str:
        return posixpath.join(self.trials_dir, trial_id)

    def run(self, trial_id: str, params: dict[str, Any]) -> TrialRecord:
        trial_dir = self.trial_dir(trial_id)
        if tf.io.gfile.exists(trial_dir):  # a trial interrupted before: start it clean
            tf.io.gfile.rmtree(trial_dir)
        tf.io.gfile.makedirs(trial_dir)
        start = time.perf_counter()
        config: ExperimentConfig | None = None
        try:
            config = self.base.replace(**params)
            runs = [self._execute(config, trial_dir, n) for n in range(self.executions)]
        except Exception as e:  # noqa: BLE001  (any failure fails the trial, recorded with its error)
            artifacts.atomic_write_text(posixpath.join(trial_dir, ERROR_FILE), traceback.format_exc())
            record = TrialRecord(
                trial_id=trial_id, params=params, status=report.FAILED,
                seconds=time.perf_counter() - start, error=f"{type(e).__name__}: {e}",
                config=config.to_flat() if config is not None else {}, finished_at=report.now(),
            )
        else:
            record = TrialRecord(
                trial_id=trial_id, params=params, status=report.COMPLETED,
                seconds=time.perf_counter() - start,
                objective=float(sum(r["objective"] for r in runs) / len(runs)),
                valid=report.mean_metrics([r.pop("valid") for r in runs]),
                test=report.mean_metrics([r.pop("test") for r in runs]),
                config=config.to_flat(), runs=tuple(runs), finished_at=report.now(),
            )
        report.write_record(trial_dir, record)
        return record

    def _execute(self, config: ExperimentConfig, trial_dir: str, n: int) -> dict[str, Any]:
        from pipeline.evaluator import EvaluatorConfig, run_evaluator
        from pipeline.trainer import run_trainer

        if n:
            config = config.replace(seed=config.train.seed + n)
        name = f"exec_{n}"
        trainer_dir = posixpath.join(trial_dir, name, TRAINER)
        evaluator_dir = posixpath.join(trial_dir, name, EVALUATOR)
        for path in (trainer_dir, evaluator_dir):
            tf.io.gfile.makedirs(path)
        tf.keras.backend.clear_session()  # free the previous trial's graphs and layer names
        result = run_trainer(config, self.transform_dir, trainer_dir, verbose=2 if self.verbose else 0)
        if self.objective not in result.best_metrics:
            raise ConfigError(f"objective {self.objective!r} is not computed; "
                              f"available: {', '.join(sorted(result.best_metrics))}")
        objective = float(result.best_metrics[self.objective])
        if not math.isfinite(objective):
            raise FloatingPointError(f"validation {self.objective} is {objective}")
        table = io.StringIO()
        with contextlib.redirect_stdout(table) if not self.verbose else contextlib.nullcontext():
            metrics = run_evaluator(EvaluatorConfig(), trainer_dir, self.transform_dir, evaluator_dir)
        return {
            "name": name,
            "seed": config.train.seed,
            "objective": objective,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "valid": _ranking_metrics(result.best_metrics),
            "test": _ranking_metrics(metrics["test"]),
        }

    def trainer_dir(self, record: TrialRecord) -> str:
        """The Trainer output of ``record``'s best execution (the one to export)."""
        best = max(record.runs, key=lambda r: r["objective"])
        return posixpath.join(self.trial_dir(record.trial_id), best["name"], TRAINER)

    def prune_weights(self, records: Sequence[TrialRecord], keep: TrialRecord | None) -> None:
        """Deletes the weights of every execution but ``keep``'s best (configs and metrics stay)."""
        kept = self.trainer_dir(keep) if keep is not None else None
        for record in records:
            for run in record.runs:
                trainer_dir = posixpath.join(self.trial_dir(record.trial_id), run["name"], TRAINER)
                weights = posixpath.join(trainer_dir, WEIGHTS_DIR)
                if trainer_dir != kept and tf.io.gfile.exists(weights):
                    tf.io.gfile.rmtree(weights)


def _ranking_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    from tfseq.metrics.ranking import UNCUT_METRICS

    return {k: float(v) for k, v in metrics.items() if "@" in k or k in UNCUT_METRICS}


class ChiefUnreachable(OracleUnreachable, keras_tuner.errors.FatalError):
    """A worker's call to the chief failed; KerasTuner ends the search at once on a ``FatalError``
    (any other error inside a trial would mark the trial invalid and print its traceback)."""


class SearchTuner(BaseTuner):
    """KerasTuner's oracle loop; each trial is run by a :class:`TrialRunner`, reported to a listener.

    In a distributed search (:mod:`tuning.distributed`) a worker's tuner sends
    its oracle calls to the chief (KerasTuner's ``OracleClient``, each call
    bounded by ``chief_timeout_s``) and saves no state: the chief's oracle is the
    search's state. The tuner's own state file has one name whatever
    ``KERASTUNER_TUNER_ID`` is, so a search started in one process resumes
    under a chief and back.
    """

    def __init__(self, oracle: keras_tuner.Oracle, runner: TrialRunner, listener: Listener,
                 directory: str, project_name: str, chief_timeout_s: float | None = None) -> None:
        super().__init__(oracle=oracle, hypermodel=None, directory=directory,
                         project_name=project_name, overwrite=False)
        if self._is_worker():
            from tuning.distributed import DEFAULT_CHIEF_TIMEOUT_S, bound_client

            client = getattr(self, "oracle")  # KerasTuner's OracleClient
            self.oracle = bound_client(client, chief_timeout_s or DEFAULT_CHIEF_TIMEOUT_S, ChiefUnreachable)
        self.runner = runner
        self.listener = listener
        self._records: dict[str, TrialRecord] = {}

    def _get_tuner_fname(self) -> str:
        # A worker saves no state: its name never exists, so KerasTuner does not "reload" it.
        name = f"{self.tuner_id}.worker.json" if self._is_worker() else TUNER_STATE
        return posixpath.join(str(self.project_dir), name)

    def save(self) -> None:
        if not self._is_worker():
            super().save()

    def reload(self) -> None:
        if not self._is_worker():
            super().reload()

    def on_trial_begin(self, trial: Any) -> None:
        self.listener.trial_started(trial.trial_id, trial_params(trial.hyperparameters.values))

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> float:
        record = self.runner.run(trial.trial_id, trial_params(trial.hyperparameters.values))
        self._records[trial.trial_id] = record
        if not record.completed:
            raise keras_tuner.errors.FailedTrialError(record.error)
        return float(record.objective)  # type: ignore[arg-type]

    def on_trial_end(self, trial: Any) -> None:
        record = self._records.pop(trial.trial_id, None)
        if record is None:  # the runner itself raised (e.g. writing its record): KerasTuner caught it
            record = failed_record(trial)
            report.write_record(self.runner.trial_dir(trial.trial_id), record)
        # The record is written before the oracle hears of the end: a chief reads it then.
        super().on_trial_end(trial)  # the oracle records the trial's end and saves its state
        self.listener.trial_finished(record)


def failed_record(trial: Any, error: str | None = None) -> TrialRecord:
    """The record of a trial that left none: failed, with the last line of KerasTuner's message."""
    message = error or (trial.message or "unknown error").strip().splitlines()[-1]
    return TrialRecord(trial.trial_id, trial_params(trial.hyperparameters.values), report.FAILED,
                       0.0, error=message, finished_at=report.now())


def reported_record(runner: TrialRunner, trial: Any, wait_s: float = RECORD_WAIT_S) -> TrialRecord:
    """The record a worker wrote for ``trial`` before reporting its end (a chief's view).

    A shared file system may show the file a moment after the worker's report,
    so this looks for ``wait_s`` seconds; a trial that left none is recorded
    (by the chief) as failed.
    """
    path = posixpath.join(runner.trial_dir(trial.trial_id), report.RESULT)
    deadline = time.monotonic() + wait_s
    while not tf.io.gfile.exists(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    if tf.io.gfile.exists(path):
        return TrialRecord.from_dict(artifacts.read_json(path))
    record = failed_record(trial, None if trial.message else f"the worker left no {report.RESULT}")
    report.write_record(runner.trial_dir(trial.trial_id), record)
    return record
