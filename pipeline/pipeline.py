"""The pipeline definition: typed stage configs -> ExampleGen ... Pusher, and running it.

As TFX separates ``create_pipeline()`` from its runner, :func:`create_pipeline`
only describes the stages of one run from config dataclasses; ``Pipeline.run``
runs them in order, skipping the ones already built from the same spec.
``pipeline.run`` (the command line), ``tuning.search``, ``bench/`` and
``tfseq.run`` (the Python API) all call it.

A stage's spec is its config, the identity of its input files (path, size,
content hash) and the fingerprint of the stage above it; a stage whose spec
is unchanged is skipped, one whose spec changed is rebuilt together with
everything below it. ExampleGen and Transform are shared by every run in a
root; the Trainer, Evaluator and Pusher of a run live in their own folder
``<root>/runs/<model>-<loss>-<hash>``, so models sit side by side (layout in
:mod:`pipeline.artifacts`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from pipeline.example_gen import ExampleGenConfig, match_inputs, run_example_gen
from pipeline.pusher import PusherConfig, run_pusher
from pipeline.transform import TransformConfig, run_transform
from tfseq.config import to_dict
from tfseq.experiment import ExperimentConfig

DEFAULT_ROOT = "tfseq_output"
FILE_FORMATS_WITHOUT_FILES = ("synthetic", "tfds")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step: its final folder, the spec it is built from, and the work (into a temporary folder)."""

    name: str
    directory: str
    spec: dict[str, Any]
    work: Callable[[str], Any] = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What a run produced: which stages ran, where, the metrics and the export.

    Attributes:
      root: the pipeline root.
      run: the run's name (``<model>-<loss>-<hash>``).
      stages: ``{stage: "ran" | "skipped"}`` for the stages up to ``stop_after``.
      metrics: the Evaluator's ``metrics.json`` when the run has one (also when skipped).
      pushed: the Pusher's ``pushed.json`` when the run has been pushed.
    """

    root: str
    run: str
    stages: dict[str, str]
    metrics: dict[str, Any] | None
    pushed: dict[str, Any] | None

    @property
    def run_dir(self) -> str:
        return artifacts.run_dir(self.root, self.run)

    @property
    def transform_dir(self) -> str:
        return artifacts.stage_dir(self.root, "Transform")

    @property
    def trainer_dir(self) -> str:
        return artifacts.stage_dir(self.root, "Trainer", self.run)

    @property
    def export_path(self) -> str | None:
        return self.pushed["path"] if self.pushed else None

    def serve_command(self) -> str | None:
        """The command that serves the exported model (None before the Pusher)."""
        if not self.pushed:
            return None
        base = artifacts.join(self.pushed["serving_dir"], self.pushed["model_name"])
        return (f"python -m serving.server --model_base_path {base} --model_name {self.pushed['model_name']} "
                "--port 8500 --rest_api_port 8501")

    def summary(self) -> str:
        """The result table and the serve command, as ``pipeline.run`` prints them at the end."""
        from pipeline.evaluator import format_table

        lines = [f"run: {self.run}  ({self.run_dir})"]
        if self.metrics:
            lines.append(format_table(self.metrics))
        if self.pushed:
            lines.append(f"exported: {self.pushed['model_name']} version {self.pushed['version']} "
                         f"({self.pushed['path']})")
            lines.append(f"serve it: {self.serve_command()}")
        return "\n".join(lines)


def run_name(experiment: ExperimentConfig) -> str:
    """``<model>-<loss>-<8 hex>``: the same experiment config always maps to the same run folder."""
    return f"{experiment.model}-{experiment.loss}-{artifacts.fingerprint(experiment.to_flat())[:8]}"


def input_identity(config: ExampleGenConfig) -> list[dict[str, Any]]:
    """The identity (path, size, content hash) of every file ExampleGen will read."""
    if config.input_format in FILE_FORMATS_WITHOUT_FILES:
        return []
    return [artifacts.file_identity(path) for path in match_inputs(config.input)]


def transform_inputs(config: TransformConfig) -> list[dict[str, Any]]:
    """The identity of the files Transform reads besides ExampleGen's output (the item feature table)."""
    return [artifacts.file_identity(config.item_features)] if config.item_features else []


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """The stages of one run over one root, in order; ``run`` executes them."""

    root: str
    run_name: str
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def run(self, stop_after: str = "Pusher", force: bool = False, log: Any = None) -> PipelineResult:
        """Runs the stages up to ``stop_after``; skips those whose spec is unchanged unless ``force``."""
        if stop_after not in artifacts.STAGES:
            raise ValueError(f"unknown stage {stop_after!r}; stages: {', '.join(artifacts.STAGES)}")
        out = log or sys.stdout
        for parent in (self.root, artifacts.run_dir(self.root, self.run_name)):
            for path in artifacts.remove_stale_temporaries(parent):
                print(f"removed a killed run's temporary folder {path}", file=out, flush=True)
        outcome: dict[str, str] = {}
        upstream = ""
        rebuild = force
        for stage in self.stages:
            status, upstream = run_stage(stage, upstream, force=rebuild, log=out)
            rebuild = rebuild or status == "ran"  # everything downstream of a rebuilt stage is rebuilt
            outcome[stage.name] = status
            if stage.name == stop_after:
                break
        return load_result(self.root, self.run_name, outcome)


def run_stage(stage: Stage, upstream: str = "", force: bool = False, log: Any = None) -> tuple[str, str]:
    """Builds ``stage`` unless its folder holds the same spec; returns ("ran" | "skipped", its fingerprint).

    The spec is the stage's config plus ``upstream``, the fingerprint of the
    stage it reads; the output appears only complete (``artifacts.staged_output``).
    """
    out = log or sys.stdout
    spec = {"stage": stage.name, "config": stage.spec, "upstream": upstream}
    fingerprint = artifacts.fingerprint(spec)
    final = stage.directory
    if artifacts.is_complete(final) and not force:
        previous = _read_spec(final)
        if previous == _jsonable(spec):
            print(f"[{stage.name}] up to date, skipped ({final})", file=out, flush=True)
            return "skipped", fingerprint
        print(f"[{stage.name}] {_what_changed(previous, spec)} changed, rebuilding", file=out, flush=True)
    print(f"[{stage.name}] running ...", file=out, flush=True)
    start = time.perf_counter()
    with artifacts.staged_output(final) as tmp:
        stage.work(tmp)
        artifacts.atomic_write_json(artifacts.join(tmp, artifacts.SPEC), spec)
    print(f"[{stage.name}] done in {time.perf_counter() - start:.1f}s -> {final}", file=out, flush=True)
    return "ran", fingerprint


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _read_spec(directory: str) -> Any:
    path = artifacts.join(directory, artifacts.SPEC)
    try:
        return artifacts.read_json(path)
    except (OSError, ValueError):
        return None


def _what_changed(previous: Any, spec: dict[str, Any]) -> str:
    """A few words on why a stage is rebuilt: its input files, its config, or the stage above."""
    if not isinstance(previous, dict):
        return "spec"
    old, new = previous.get("config", {}), _jsonable(spec["config"])
    if isinstance(old, dict) and isinstance(new, dict):
        if old.get("inputs") != new.get("inputs"):
            return "input files"
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if keys:
            return "configuration (" + ", ".join(keys[:4]) + ("..." if len(keys) > 4 else "") + ")"
    return "upstream stage"


def load_result(root: str, run: str, outcome: dict[str, str] | None = None) -> PipelineResult:
    """The result of run ``run`` under ``root`` as its folders hold it."""
    evaluator = artifacts.stage_dir(root, "Evaluator", run)
    pusher = artifacts.stage_dir(root, "Pusher", run)
    metrics = artifacts.read_json(artifacts.join(evaluator, artifacts.METRICS)) if artifacts.is_complete(
        evaluator) else None
    pushed = artifacts.read_json(artifacts.join(pusher, artifacts.PUSHED)) if artifacts.is_complete(pusher) else None
    return PipelineResult(root=root, run=run, stages=dict(outcome or {}), metrics=metrics, pushed=pushed)


def create_pipeline(
    example_gen: ExampleGenConfig = ExampleGenConfig(),
    transform: TransformConfig = TransformConfig(),
    experiment: ExperimentConfig = ExperimentConfig(),
    pusher: PusherConfig = PusherConfig(),
    root: str = DEFAULT_ROOT,
    beam_options: Any = None,
    *,
    progress: int = 2,
) -> Pipeline:
    """The five stages of one run, from typed configs.

    Args:
      example_gen, transform, experiment, pusher: the stages' configs.
      root: the pipeline root (``--output_dir``).
      beam_options: ``PipelineOptions``, a list of Beam flags, or None (DirectRunner defaults).
      progress: Trainer output: 0 none, 1 a progress bar per epoch, 2 one line per epoch.

    Raises:
      DataError: the input matches no file (checked here, before any stage runs).
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    if beam_options is None or isinstance(beam_options, (list, tuple)):
        beam_options = PipelineOptions(list(beam_options or []))
    name = run_name(experiment)
    eg_dir = artifacts.stage_dir(root, "ExampleGen")
    tr_dir = artifacts.stage_dir(root, "Transform")
    trainer_dir = artifacts.stage_dir(root, "Trainer", name)

    def train(out: str) -> Any:
        from pipeline.trainer import run_trainer

        return run_trainer(experiment, tr_dir, out, verbose=progress)

    def evaluate(out: str) -> Any:
        from pipeline.evaluator import run_evaluator

        return run_evaluator(trainer_dir, tr_dir, out)

    def push(out: str) -> Any:
        return run_pusher(pusher, trainer_dir, tr_dir, out, run=name,
                          default_serving_dir=artifacts.serving_dir(root))

    stages = (
        Stage("ExampleGen", eg_dir, {**to_dict(example_gen), "inputs": input_identity(example_gen)},
              lambda out: run_example_gen(example_gen, out, beam_options)),
        Stage("Transform", tr_dir, {**to_dict(transform), "inputs": transform_inputs(transform)},
              lambda out: run_transform(transform, eg_dir, out, beam_options)),
        Stage("Trainer", trainer_dir, experiment.to_flat(), train),
        Stage("Evaluator", artifacts.stage_dir(root, "Evaluator", name), {}, evaluate),
        Stage("Pusher", artifacts.stage_dir(root, "Pusher", name), to_dict(pusher), push),
    )
    return Pipeline(root=root, run_name=name, stages=stages)
