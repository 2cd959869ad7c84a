"""``python -m tuning.search MODEL``: a resumable KerasTuner search over a registry model's hyperparameters.

Usage::

    python -m tuning.search core --data runs/beauty/Transform --epochs 30
    python -m tuning.search gru4rec --input ../shared/datasets/ml-100k/ml-100k.inter \\
        --input_format recbole --oracle random --max_trials 20
    python -m tuning.search sasrec --params_file hyper.test --oracle bayesian --max_trials 30 --export

MODEL is a registry key (``core`` = ``core_trm``). The data is a Transform
output (``--data``), or is preprocessed first from the same input flags as
``python -m pipeline.run`` into ``<output_dir>/data`` with pipeline.run's
stages (a re-run finds it up to date). The space is the model's default
(:mod:`tuning.spaces`) or a RecBole ``hyper.test`` (``--params_file``); every
other hyperparameter is fixed by its flag (``--hidden_size 64``), by
``--config FILE`` (flat JSON, e.g. a previous ``best.json``) or by its default.
A hyperparameter cannot be both fixed by a flag and searched.

Each trial trains with early stopping on the objective (``--objective``,
default ``ndcg@10`` on the validation split, maximised; ``--epochs`` caps the
epochs of a trial) and is evaluated on valid and test; outputs, under
``--output_dir`` (default ``tuning_output/<model>``), are described in
:mod:`tuning.report`; ``--export`` exports the best trial's model as
``pipeline.run``'s Pusher does, into ``<output_dir>/serving/<model_name>/<version>``.

Distributed search (KerasTuner's chief and workers, :mod:`tuning.distributed`):
``--workers N`` runs the trials in N worker processes on this machine while
this process, the chief, holds the oracle and alone writes the reports. On
several machines each runs the same command over one shared ``--output_dir``,
with ``KERASTUNER_TUNER_ID=chief`` on one and ``tuner0``, ``tuner1`` ... on
the others, and ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` set to
the chief's address everywhere; a worker gives up after ``--chief_timeout``
seconds without an answer from the chief.

Running the same command again resumes: finished trials are kept, an
interrupted one is run again, and ``--max_trials`` may be raised to extend a
search. A command whose search differs (model, space, oracle, objective, fixed
hyperparameters, data) from the one in ``--output_dir`` is refused unless
``--overwrite`` starts it over. Exit status: 0 with at least one completed
trial, 1 when every trial failed or the search stopped after
``--max_consecutive_failures`` failures in a row, 2 for bad flags, files or data.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import posixpath
import sys
import time
from typing import Any, Sequence

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts, cli
from pipeline.configs import ExampleGenConfig, TransformConfig
from pipeline.pusher import PusherConfig
from tfseq import aliases
from tfseq.config import ConfigError, field_names, to_dict
from tfseq.data.formats import DataError
from tfseq.data.vocab import METADATA
from tfseq.experiment import ExperimentConfig
from tfseq.metrics import METRICS, UNCUT_METRICS
from tuning import distributed, report, spaces
from tuning.hyper_file import read_params_file
from tuning.report import TrialRecord

DEFAULT_OUTPUT_ROOT = "tuning_output"
DEFAULT_OBJECTIVE = "ndcg@10"
SEARCH_FILE = "search.json"
PROJECT = "keras_tuner"
TRIALS_DIR = "trials"
DATA_DIR = "data"
EXPORT_DIR = "Pusher"
DERIVED = (SEARCH_FILE, report.HYPER_RESULT, report.TRIALS, report.BEST, report.OBJECTIVE_PLOT, report.HEATMAP)


class SearchFailed(RuntimeError):
    """No trial completed, or too many failed in a row (exit status 1)."""


@dataclasses.dataclass(frozen=True)
class Search:
    """A parsed command: what to search, over which data, into which directory."""

    model: str
    base: ExperimentConfig
    space: tuple[spaces.Param, ...]
    oracle: str
    objective: str
    max_trials: int | None
    executions_per_trial: int
    output_dir: str
    data: str | None
    example_gen: ExampleGenConfig
    transform: TransformConfig
    beam_args: tuple[str, ...]
    pusher: PusherConfig | None
    overwrite: bool
    max_consecutive_failures: int
    verbose: bool
    startup_logs: bool = False
    workers: int = 0
    chief_timeout: float = distributed.DEFAULT_CHIEF_TIMEOUT_S
    role: distributed.Role | None = None
    argv: tuple[str, ...] = ()

    @property
    def trials_dir(self) -> str:
        return posixpath.join(self.output_dir, TRIALS_DIR)

    def definition(self, transform_dir: str) -> dict[str, Any]:
        """What makes two commands the same search (``--max_trials`` may change on resume)."""
        metadata = artifacts.read_text(posixpath.join(transform_dir, METADATA))
        data = hashlib.sha256(metadata.encode()).hexdigest()[:16]
        return {
            "model": self.model,
            "loss": self.base.loss,
            "oracle": self.oracle,
            "objective": self.objective,
            "executions_per_trial": self.executions_per_trial,
            "space": [p.to_dict() for p in self.space],
            "config": self.base.to_flat(),
            "data": data,
        }


@dataclasses.dataclass(frozen=True)
class Outcome:
    records: list[TrialRecord]
    best: TrialRecord | None
    pushed: dict[str, Any] | None


# ----------------------------------------------------------------------------- command line


SECTIONS = ("ExampleGen", "Transform", "Trainer", "Pusher")


def build_parser() -> argparse.ArgumentParser:
    from tfseq.models import MODELS

    parser = cli.make_parser(
        "python -m tuning.search",
        "Hyperparameter search (KerasTuner) over a tfseq model; resumable. Hyperparameter flags "
        "(--epochs, --seed, --hidden_size ...) fix values; input flags preprocess the data as pipeline.run does.",
    )
    parser.add_argument("searched_model", metavar="MODEL",
                        help=f"registry model: {', '.join(MODELS.names())}, or core (= core_trm); RecBole's names too")
    search = parser.add_argument_group("search")
    search.add_argument("--data", help="a Transform output directory (or a pipeline root holding "
                        "Transform/); default: preprocess the input flags into <output_dir>/data")
    search.add_argument("--output_dir", help=f"default {DEFAULT_OUTPUT_ROOT}/<model>")
    search.add_argument("--oracle", default="grid", choices=("grid", "random", "bayesian", "hyperband"))
    search.add_argument("--max_trials", type=int, help="default: the whole grid; 10 for random and "
                        "bayesian; Hyperband's schedule")
    search.add_argument("--executions_per_trial", type=int, default=1,
                        help="trainings per trial (seeds seed, seed+1, ...); the objective is their mean")
    search.add_argument("--objective", default=DEFAULT_OBJECTIVE, type=aliases.metric_name,
                        help="validation metric to maximise (also the early-stopping metric)")
    search.add_argument("--params_file", help="RecBole hyper.test search space (default: the model's)")
    search.add_argument("--export", action="store_true", help="export the best model for TF Serving")
    search.add_argument("--overwrite", action="store_true", help="discard a previous search in output_dir")
    search.add_argument("--max_consecutive_failures", type=int, default=3,
                        help="stop after this many failed trials in a row (0 = never)")
    search.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run the trials in N worker processes on this machine; this process, the chief, "
                        "holds the oracle and writes the reports (KerasTuner's distributed mode). On several "
                        f"machines: the same command on each, without --workers, with {distributed.ENV_TUNER_ID} "
                        f"(chief, tuner0, tuner1 ...), {distributed.ENV_ORACLE_IP} and {distributed.ENV_ORACLE_PORT} "
                        "(the chief's address) set and --output_dir shared")
    search.add_argument("--chief_timeout", type=float, default=distributed.DEFAULT_CHIEF_TIMEOUT_S, metavar="SECONDS",
                        help="how long a worker waits for the chief's oracle to answer (at start, while the "
                        "chief preprocesses the data, and at each later call) before it exits with an error")
    search.add_argument("--verbose", action="store_true", help="per-epoch lines and evaluation tables of each "
                        "trial (TensorFlow's and Beam's start-up logs: --startup_logs)")
    cli.add_config_flags(parser, SECTIONS, model_flag=False)
    return parser


def parse(argv: Sequence[str] | None = None) -> Search:
    """The command line -> a :class:`Search`, validated before any data is read."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = cli.parse_values(build_parser(), argv, SECTIONS)
    args = parsed.own
    model = aliases.model_name(args.searched_model)
    if "model" in parsed.values and parsed.values["model"] != model:
        raise ConfigError(f"{parsed.source}: model {parsed.values['model']!r} differs from the searched {model!r}")
    objective = _check_objective(args.objective)
    if parsed.values.get("valid_metric", objective) != objective:
        raise ConfigError(f"--valid_metric {parsed.values['valid_metric']} differs from --objective {objective}: "
                          "a trial is stopped early and scored on the same metric")
    stage_keys = {*field_names(ExampleGenConfig), *field_names(TransformConfig)}
    stage_flags = sorted(k for k in parsed.values if k in stage_keys)
    if args.data and (stage_flags or parsed.beam_args):
        given = ", ".join([f"--{k}" for k in stage_flags] + parsed.beam_args)
        raise ConfigError(f"--data uses preprocessed data; input and Beam flags ({given}) apply only without it")
    sections = ("Trainer", "Pusher") if args.data else SECTIONS  # --data: its Transform is already built
    configs = cli.build_configs({**parsed.values, "model": model, "valid_metric": objective},
                                sections=sections, source=parsed.source)
    base = configs.experiment
    pusher_keys = set(field_names(PusherConfig))
    fixed = {k for k in parsed.flags if k not in stage_keys | pusher_keys | {"model"}}

    space = read_params_file(args.params_file) if args.params_file else spaces.default_space(model)
    space = spaces.check_space(space, model, base.loss)
    for param in space:
        if param.name in fixed:
            raise ConfigError(f"{param.name} is both fixed by --{param.name} and searched ({param.source})")
    if args.oracle == "hyperband" and any(p.name == "epochs" for p in space):
        raise ConfigError("--oracle hyperband sets the epochs of each trial; do not search epochs")
    if args.oracle == "grid":
        spaces.grid(space)  # a continuous param is an error naming its source
    for name in ("max_trials", "executions_per_trial"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    if not args.chief_timeout > 0:
        raise ConfigError(f"--chief_timeout must be > 0 seconds, got {args.chief_timeout}")
    role = distributed.role_from_env()
    if role is not None and args.workers:
        raise ConfigError(f"--workers starts a chief and its workers on this machine; with {distributed.ENV_TUNER_ID}="
                          f"{role.tuner_id} set, start each worker yourself, with its own {distributed.ENV_TUNER_ID}")
    return Search(
        model=model,
        base=base,
        space=space,
        oracle=args.oracle,
        objective=objective,
        max_trials=args.max_trials,
        executions_per_trial=args.executions_per_trial,
        output_dir=args.output_dir or posixpath.join(DEFAULT_OUTPUT_ROOT, model),
        data=args.data,
        example_gen=configs.example_gen,
        transform=configs.transform,
        beam_args=tuple(parsed.beam_args),
        pusher=configs.pusher if args.export else None,
        overwrite=args.overwrite,
        max_consecutive_failures=args.max_consecutive_failures,
        verbose=args.verbose,
        startup_logs=args.startup_logs,
        workers=args.workers,
        chief_timeout=args.chief_timeout,
        role=role,
        argv=tuple(argv),
    )


def _check_objective(objective: str) -> str:
    name, _, k = objective.partition("@")
    if objective not in UNCUT_METRICS and (name not in METRICS or not k.isdigit() or int(k) < 1):
        raise ConfigError(f"--objective must look like ndcg@10 with a metric in {', '.join(METRICS)}, or be "
                          f"one of {', '.join(UNCUT_METRICS)}; got {objective!r}")
    return objective


# ----------------------------------------------------------------------------- data and resume


def transform_dir(search: Search) -> str:
    """The Transform output to search over, preprocessing it first when no ``--data`` is given."""
    import tensorflow as tf

    if search.data:
        for candidate in (search.data, artifacts.join(search.data, "Transform")):
            if tf.io.gfile.exists(artifacts.join(candidate, METADATA)):
                return candidate
        raise DataError(f"{search.data}: not a Transform output (no {METADATA}, nor Transform/{METADATA})")
    from pipeline.configs import PipelineConfigs
    from pipeline.pipeline import create_pipeline

    root = posixpath.join(search.output_dir, DATA_DIR)
    configs = PipelineConfigs(example_gen=search.example_gen, transform=search.transform, experiment=search.base)
    data = create_pipeline(configs, root=root, beam_options=list(search.beam_args))
    return data.run(stop_after="Transform").transform_dir


def prepare_output(search: Search, definition: dict[str, Any]) -> None:
    """Starts a new search in ``output_dir`` or checks that the one there is the same."""
    import tensorflow as tf

    path = posixpath.join(search.output_dir, SEARCH_FILE)
    if search.overwrite:
        for name in (PROJECT, TRIALS_DIR, distributed.WORKERS_DIR):
            if tf.io.gfile.exists(posixpath.join(search.output_dir, name)):
                tf.io.gfile.rmtree(posixpath.join(search.output_dir, name))
        for name in DERIVED:
            if tf.io.gfile.exists(posixpath.join(search.output_dir, name)):
                tf.io.gfile.remove(posixpath.join(search.output_dir, name))
    elif tf.io.gfile.exists(path):
        changed = changes(json.loads(artifacts.read_text(path)), definition)
        if changed:
            raise ConfigError(
                f"{path}: {search.output_dir} holds a different search (changed: {changed}); "
                "pass --overwrite to start over, or choose another --output_dir"
            )
    elif tf.io.gfile.exists(posixpath.join(search.output_dir, PROJECT)):
        raise ConfigError(f"{search.output_dir}/{PROJECT} exists without {SEARCH_FILE}; pass --overwrite")
    tf.io.gfile.makedirs(search.output_dir)
    artifacts.atomic_write_text(path, json.dumps(definition, indent=1, sort_keys=True))


def changes(previous: dict[str, Any], definition: dict[str, Any]) -> str:
    """What differs between two search definitions (``""``: the same search)."""
    if previous == json.loads(json.dumps(definition)):
        return ""
    changed = sorted(k for k in set(previous) | set(definition) if previous.get(k) != definition.get(k))
    if "config" in changed:
        old, new = previous.get("config", {}), definition["config"]
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        changed[changed.index("config")] = f"config ({', '.join(keys)})"
    return ", ".join(changed)


def worker_transform_dir(search: Search) -> str:
    """A worker's data: ``--data``, or what the chief preprocessed into ``<output_dir>/data`` (read only)."""
    if search.data:
        return transform_dir(search)
    from pipeline.configs import PipelineConfigs
    from pipeline.pipeline import create_pipeline

    root = posixpath.join(search.output_dir, DATA_DIR)
    configs = PipelineConfigs(example_gen=search.example_gen, transform=search.transform, experiment=search.base)
    directory = create_pipeline(configs, root=root, beam_options=list(search.beam_args)).stage("Transform").directory
    if not artifacts.is_complete(directory):
        raise DataError(f"{directory}: no preprocessed data; the chief writes it before it opens its oracle, "
                        "into an --output_dir that the chief and every worker must share")
    return directory


def check_chief_search(search: Search, definition: dict[str, Any]) -> None:
    """A worker runs trials only for the search the chief started in ``--output_dir``."""
    import tensorflow as tf

    path = posixpath.join(search.output_dir, SEARCH_FILE)
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{path} is missing: the chief starts the search there before it opens its oracle; "
                          "the chief and every worker must share --output_dir")
    changed = changes(json.loads(artifacts.read_text(path)), definition)
    if changed:
        raise ConfigError(f"{path}: this worker's command is not the chief's search (changed: {changed}); "
                          "run the chief's command")


# ----------------------------------------------------------------------------- progress


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "no hyperparameters"


class Session:
    """Listens to the tuner (or the chief): progress lines, reports rewritten and weights pruned after every trial.

    In a distributed search trials run side by side: a started trial names its
    worker, and the ETA divides the remaining work among the workers seen.
    """

    def __init__(self, search: Search, runner: Any, total: int, records: list[TrialRecord]) -> None:
        self.search = search
        self.runner = runner
        self.total = total
        self.records = {r.trial_id: r for r in records}
        self.running: set[str] = set()
        self.workers: set[str] = set()
        self.start = time.perf_counter()
        self.failures_in_a_row = 0

    def trial_started(self, trial_id: str, params: dict[str, Any], worker: str | None = None) -> None:
        self.running.add(trial_id)
        number = len(self.records) + len(self.running - set(self.records))
        where = ""
        if worker is not None:
            self.workers.add(worker)
            where = f" on {worker}"
        print(f"[{number}/{max(self.total, number)}] trial {trial_id}{where}: {params_text(params)}", flush=True)

    def trial_lost(self, trial_id: str, worker: str) -> None:
        self.running.discard(trial_id)
        print(f"trial {trial_id} goes back to the queue (its worker {worker} is gone)", flush=True)

    def trial_finished(self, record: TrialRecord) -> None:
        self.running.discard(record.trial_id)
        self.records[record.trial_id] = record
        records = sorted(self.records.values(), key=lambda r: r.order)
        best = report.write_reports(self.search.output_dir, records)
        self.runner.prune_weights(records, best)
        done = len(records)
        total = max(self.total, done)
        mean_seconds = sum(r.seconds for r in records) / done
        timing = (f"elapsed {duration(time.perf_counter() - self.start)}, "
                  f"ETA {duration(mean_seconds * (total - done) / max(1, len(self.workers)))}")
        objective = self.search.objective
        if record.completed:
            self.failures_in_a_row = 0
            assert best is not None
            print(f"[{done}/{total}] trial {record.trial_id}: {objective} {record.objective:.4f} in "
                  f"{record.seconds:.1f}s (best {best.objective:.4f}, trial {best.trial_id}); {timing}",
                  flush=True)
            return
        self.failures_in_a_row += 1
        print(f"[{done}/{total}] trial {record.trial_id}: FAILED after {record.seconds:.1f}s: "
              f"{record.error}; {timing}", flush=True)
        limit = self.search.max_consecutive_failures
        if limit and self.failures_in_a_row >= limit:
            raise SearchFailed(f"{limit} trials failed in a row (last: {record.error}); "
                               "fix the cause and re-run the same command to continue")


class WorkerLog:
    """A worker's listener: a line per trial it runs (the chief keeps the reports)."""

    def __init__(self, tuner_id: str, objective: str) -> None:
        self.tuner_id = tuner_id
        self.objective = objective
        self.records: list[TrialRecord] = []

    def trial_started(self, trial_id: str, params: dict[str, Any]) -> None:
        print(f"{self.tuner_id}: trial {trial_id}: {params_text(params)}", flush=True)

    def trial_finished(self, record: TrialRecord) -> None:
        self.records.append(record)
        result = (f"{self.objective} {record.objective:.4f}" if record.completed and record.objective is not None
                  else f"FAILED: {record.error}")
        print(f"{self.tuner_id}: trial {record.trial_id}: {result} in {record.seconds:.1f}s", flush=True)


# ----------------------------------------------------------------------------- the search


def run_search(search: Search) -> Outcome:
    """Preprocesses if needed, runs (or resumes) the search, writes the reports; exports on request.

    With ``--workers`` or as ``KERASTUNER_TUNER_ID=chief`` this process is the
    chief: it serves the oracle and writes the reports while workers run the
    trials (:mod:`tuning.distributed`); as any other ``KERASTUNER_TUNER_ID`` it
    is a worker (:func:`run_worker`).
    """
    from tuning.tuner import SearchTuner, TrialRunner, make_oracle, planned_trials, reported_record, trial_params

    role = search.role
    if role is not None and not role.is_chief:
        return run_worker(search, role)
    data = transform_dir(search)
    prepare_output(search, search.definition(data))
    runner = TrialRunner(
        base=search.base, transform_dir=data, trials_dir=search.trials_dir, objective=search.objective,
        executions=search.executions_per_trial, verbose=int(search.verbose),
    )
    oracle = make_oracle(search.oracle, search.space, search.objective, max_trials=search.max_trials,
                         seed=search.base.train.seed, max_epochs=search.base.train.epochs)
    previous = report.load_records(search.trials_dir)
    session = Session(search, runner, planned_trials(oracle, search.space), previous)
    tuner = SearchTuner(oracle, runner, session, directory=search.output_dir, project_name=PROJECT)
    print(f"search: {search.model} + {search.base.loss}, {search.oracle} oracle over "
          f"{', '.join(p.describe() for p in search.space) or 'no hyperparameters'}; "
          f"{session.total} trial(s), maximising validation {search.objective}"
          + (f"; resuming with {len(previous)} finished" if previous else ""), flush=True)
    try:
        if role is None and not search.workers:
            tuner.search(verbose=0)
        else:
            tuner.save()  # the oracle's state, before any worker asks
            chief = distributed.Chief(tuner.oracle, session, lambda trial: reported_record(runner, trial),
                                      trial_params)
            workers = None
            if search.workers:
                workers = distributed.LocalWorkers(search.workers, search.argv,
                                                   distributed.local_log_dir(search.output_dir))
            distributed.serve(chief, role, workers)
    finally:
        records = report.load_records(search.trials_dir)
        best = report.write_reports(search.output_dir, records)
        if records:
            write_plots(search, records)
    completed = sum(r.completed for r in records)
    print(f"search finished: {len(records)} trial(s), {completed} completed, {len(records) - completed} failed; "
          f"results in {search.output_dir}", flush=True)
    if best is None:
        raise SearchFailed("every trial failed; see trials.jsonl for the errors")
    test = best.test.get(search.objective)
    print(f"best: trial {best.trial_id} ({params_text(best.params)}): valid {search.objective} "
          f"{best.objective:.4f}" + (f", test {test:.4f}" if test is not None else ""), flush=True)
    pushed = export_best(search, runner, best, data) if search.pusher is not None else None
    return Outcome(records, best, pushed)


def run_worker(search: Search, role: distributed.Role) -> Outcome:
    """Runs trials for the chief at ``role.address`` until it has none left; writes only their folders."""
    from tuning.tuner import SearchTuner, TrialRunner, make_oracle

    distributed.follow_local_chief()
    print(f"{role.tuner_id}: waiting for the chief's oracle at {role.address}", flush=True)
    distributed.wait_for_chief(role, search.chief_timeout)
    data = worker_transform_dir(search)
    check_chief_search(search, search.definition(data))
    runner = TrialRunner(
        base=search.base, transform_dir=data, trials_dir=search.trials_dir, objective=search.objective,
        executions=search.executions_per_trial, verbose=int(search.verbose),
    )
    oracle = make_oracle(search.oracle, search.space, search.objective, max_trials=search.max_trials,
                         seed=search.base.train.seed, max_epochs=search.base.train.epochs)
    log = WorkerLog(role.tuner_id, search.objective)
    tuner = SearchTuner(oracle, runner, log, directory=search.output_dir, project_name=PROJECT,
                        chief_timeout_s=search.chief_timeout)
    tuner.search(verbose=0)  # a failed call to the chief raises OracleUnreachable
    print(f"{role.tuner_id}: the chief has no more trials; {len(log.records)} run here", flush=True)
    return Outcome(log.records, None, None)


def write_plots(search: Search, records: list[TrialRecord]) -> None:
    out = search.output_dir
    report.plot_objective(records, search.objective, posixpath.join(out, report.OBJECTIVE_PLOT),
                          title=f"{search.model}: {search.oracle} search, validation {search.objective}")
    if len(search.space) == 2 and all(p.discrete for p in search.space):
        rows, columns = ((p.name, p.grid()) for p in search.space)
        report.plot_heatmap(records, rows, columns, search.objective, posixpath.join(out, report.HEATMAP))


def export_best(search: Search, runner: Any, best: TrialRecord, data: str) -> dict[str, Any]:
    """Exports ``best``'s model as the Pusher stage does (skipped when that export is already there)."""
    from pipeline.pipeline import Stage, run_stage
    from pipeline.pusher import run_pusher

    config = search.pusher or PusherConfig()
    trainer_dir = runner.trainer_dir(best)
    serving_root = artifacts.join(search.output_dir, artifacts.SERVING_DIR)
    run = f"trial-{best.trial_id}"
    stage = Stage(
        "Pusher", artifacts.join(search.output_dir, EXPORT_DIR),
        {"trial_id": best.trial_id, "trainer_dir": trainer_dir, "pusher": to_dict(config)},
        lambda out, _inputs: run_pusher(config, trainer_dir, data, out, run=run, default_serving_dir=serving_root),
    )
    run_stage(stage)
    return artifacts.read_json(artifacts.join(stage.directory, artifacts.PUSHED))


def run(argv: Sequence[str] | None = None) -> Outcome:
    """Parses ``argv`` (without TensorFlow: a bad flag answers at once), then runs the search."""
    from tfseq.runtime import quiet_startup

    search = parse(argv)
    quiet_startup(verbose=search.startup_logs)
    return run_search(search)


def main(argv: Sequence[str] | None = None) -> int:
    from tfseq.runtime import exit_status_of

    try:
        run(argv)
    except (SearchFailed, distributed.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume the search", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (a user error, maybe wrapped by the runner, is one line)
        return exit_status_of(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
