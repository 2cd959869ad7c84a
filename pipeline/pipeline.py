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
import json
import sys
import time
from typing import Any, Callable, Mapping

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from pipeline.configs import PipelineConfigs
from pipeline.evaluator import EvaluatorConfig
from pipeline.example_gen import ExampleGenConfig, match_inputs, run_example_gen
from pipeline.pusher import PusherConfig, run_pusher
from pipeline.transform import TransformConfig, run_transform
from tfseq.config import ConfigError, to_dict
from tfseq.experiment import ExperimentConfig

DEFAULT_ROOT = artifacts.DEFAULT_ROOT
FILE_FORMATS_WITHOUT_FILES = ("synthetic", "tfds")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a pipeline, wired as TFX components are: by the outputs it reads.

    Attributes:
      name: the stage's name (``artifacts.STAGES``).
      directory: its final output folder.
      spec: its own settings and the identity of any outside files it reads.
      inputs: the names of the stages whose outputs it reads; their folders are
        handed to ``work`` and their fingerprints are part of this stage's, so
        a change above rebuilds exactly the stages that read it.
      work: ``work(out, inputs)`` fills the temporary folder ``out``; ``inputs``
        maps each declared input to its folder.
      defaults: the default of every setting in ``spec``; a folder built before a
        setting existed is up to date when the setting is at its default.
    """

    name: str
    directory: str
    spec: dict[str, Any]
    work: Callable[[str, Mapping[str, str]], Any] = dataclasses.field(compare=False, repr=False)
    inputs: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What a run produced: which stages ran, where, the metrics and the export.

    Attributes:
      root: the pipeline root.
      run: the run's name (``<model>-<loss>-<hash>``).
      stages: ``{stage: "ran" | "skipped"}`` for the stages up to ``stop_after``.
      metrics: the Evaluator's ``metrics.json`` when the run has one (also when skipped).
      pushed: the Pusher's ``pushed.json`` when the run has been pushed.
      blessing: the verdict that let the Pusher push or not (``blessing.json``), once evaluated.
    """

    root: str
    run: str
    stages: dict[str, str]
    metrics: dict[str, Any] | None
    pushed: dict[str, Any] | None
    blessing: dict[str, Any] | None = None

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

        if not artifacts.is_complete(self.trainer_dir):  # stopped before training: there is no run yet
            return f"data: {self.transform_dir if 'Transform' in self.stages else self.root}"
        lines = [f"run: {self.run}  ({self.run_dir})"]
        if self.metrics:
            lines.append(format_table(self.metrics))
        if self.pushed:
            lines.append(f"exported: {self.pushed['model_name']} version {self.pushed['version']} "
                         f"({self.pushed['path']})")
            lines.append(f"serve it: {self.serve_command()}")
        elif self.stages.get("Pusher") and self.blessing and not self.blessing.get("blessed"):
            lines.append(f"not pushed, {self.blessing['reason']} (--push always pushes it anyway)")
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

    def specs(self, reuse_records: bool = False) -> dict[str, dict[str, Any]]:
        """Each stage's full spec: its own settings plus the fingerprints of the stages it reads.

        Args:
          reuse_records: an input whose folder holds an equivalent older build
            record (:func:`_same_spec`) is fingerprinted by that record, which
            is what the stages below it recorded when they were built.
        """
        specs: dict[str, dict[str, Any]] = {}
        prints: dict[str, str] = {}
        for stage in self.stages:
            unknown = [name for name in stage.inputs if name not in specs]
            if unknown:
                raise ValueError(f"stage {stage.name} reads {unknown}, which no earlier stage writes")
            spec = specs[stage.name] = stage_spec(stage, {name: prints[name] for name in stage.inputs})
            prints[stage.name] = artifacts.fingerprint(spec)
            if reuse_records and artifacts.is_complete(stage.directory):
                previous = _read_spec(stage.directory)
                if _same_spec(previous, spec, stage.defaults):
                    prints[stage.name] = artifacts.fingerprint(previous)
        return specs

    def run(self, stop_after: str = "Pusher", force: bool = False, log: Any = None) -> PipelineResult:
        """Runs the stages up to ``stop_after``; skips those whose spec is unchanged unless ``force``.

        Raises:
          ConfigError: a data stage would be rebuilt for other data (another input
            file or data flag) under a root that holds runs trained on its
            current data; ``force`` rebuilds it anyway.
        """
        if stop_after not in artifacts.STAGES:
            raise ValueError(f"unknown stage {stop_after!r}; stages: {', '.join(artifacts.STAGES)}")
        out = log or sys.stdout
        specs = self.specs(reuse_records=not force)
        names = [stage.name for stage in self.stages]
        todo = self.stages[: names.index(stop_after) + 1] if stop_after in names else self.stages
        if not force:
            self._refuse_other_data(todo, specs)
        for parent in (self.root, artifacts.run_dir(self.root, self.run_name)):
            for path in artifacts.remove_stale_temporaries(parent):
                print(f"removed a killed run's temporary folder {path}", file=out, flush=True)
        resume = artifacts.trainer_resume_dir(self.root, self.run_name)
        if force and any(stage.name == "Trainer" for stage in todo) and artifacts.is_complete(resume):
            artifacts.delete_tree(resume)  # --force trains from scratch
            print(f"[Trainer] --force: removed the interrupted training's checkpoint {resume}", file=out, flush=True)
        outcome: dict[str, str] = {}
        for stage in todo:
            inputs = {name: self.stage(name).directory for name in stage.inputs}
            outcome[stage.name] = run_stage(stage, specs[stage.name], force=force, log=out, inputs=inputs)
        return load_result(self.root, self.run_name, outcome)

    def _refuse_other_data(self, stages: tuple[Stage, ...], specs: dict[str, dict[str, Any]]) -> None:
        """One root holds one dataset: rebuilding its data under existing runs needs ``--force``."""
        for stage in stages:
            if stage.name not in artifacts.DATA_STAGES or not artifacts.is_complete(stage.directory):
                continue
            previous = _read_spec(stage.directory)
            if _same_spec(previous, specs[stage.name], stage.defaults):
                continue
            runs = artifacts.list_runs(self.root)
            if not runs:
                return  # nothing was trained on the old data: rebuild it
            raise ConfigError(
                f"--output_dir {self.root} holds {len(runs)} run(s) trained on other data: "
                f"{_what_changed(previous, specs[stage.name])}; give this data its own --output_dir "
                "(or --force to rebuild the data here; the runs under it then no longer match it)"
            )


def stage_spec(stage: Stage, input_fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a stage is built from: its name, its own settings, and the fingerprints of its inputs."""
    return {"stage": stage.name, "config": stage.spec, "inputs": dict(input_fingerprints or {})}


def run_stage(
    stage: Stage,
    spec: dict[str, Any] | None = None,
    *,
    force: bool = False,
    log: Any = None,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """Builds ``stage`` unless its folder holds the same spec; returns "ran" or "skipped".

    Args:
      spec: the stage's full spec (:meth:`Pipeline.specs`); by default its own
        settings with no inputs (a stage run on its own).
      inputs: the folders of its declared inputs, handed to its work.

    The output appears only complete (``artifacts.staged_output``).
    """
    out = log or sys.stdout
    spec = spec if spec is not None else stage_spec(stage)
    final = stage.directory
    if artifacts.is_complete(final) and not force:
        previous = _read_spec(final)
        if _same_spec(previous, spec, stage.defaults):
            print(f"[{stage.name}] up to date, skipped ({final})", file=out, flush=True)
            return "skipped"
        print(f"[{stage.name}] rebuilding: {_what_changed(previous, spec)}", file=out, flush=True)
    print(f"[{stage.name}] running ...", file=out, flush=True)
    start = time.perf_counter()
    with artifacts.staged_output(final) as tmp, artifacts.disk_errors(final):  # a full disk: one line, whoever saw it
        stage.work(tmp, dict(inputs or {}))
        artifacts.atomic_write_json(artifacts.join(tmp, artifacts.SPEC), spec)
    print(f"[{stage.name}] done in {time.perf_counter() - start:.1f}s -> {final}", file=out, flush=True)
    return "ran"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _read_spec(directory: str) -> Any:
    path = artifacts.join(directory, artifacts.SPEC)
    try:
        return artifacts.read_json(path)
    except (OSError, ValueError):
        return None


def _same_spec(previous: Any, spec: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> bool:
    """Whether a stored spec describes the same build as ``spec``, so that upgrading tfseq rebuilds nothing.

    Two kinds of older records count as the same build: one written before
    stages declared their inputs (one linear ``upstream`` fingerprint instead of
    ``inputs``) with the same settings, and one that lacks settings added since,
    when those are at their ``defaults``.
    """
    if not isinstance(previous, dict):
        return False
    new = _jsonable(spec)
    if previous.get("stage") != new["stage"] or not _same_settings(previous.get("config"), new["config"], defaults):
        return False
    if "upstream" in previous and "inputs" not in previous:
        return True
    return bool(previous.get("inputs") == new["inputs"])


def _same_settings(old: Any, new: Any, defaults: Mapping[str, Any] | None) -> bool:
    if old == new:
        return True
    if not (isinstance(old, dict) and isinstance(new, dict)) or set(old) - set(new):
        return False
    known = _jsonable(dict(defaults or {}))
    return all(old[k] == new[k] if k in old else (k in known and new[k] == known[k]) for k in new)


def _what_changed(previous: Any, spec: dict[str, Any]) -> str:
    """Why a stage is rebuilt, in a user's words: the input file, the flag and its two values, or an input stage."""
    if not isinstance(previous, dict):
        return "no readable record of how it was built"
    old, new = previous.get("config", {}), _jsonable(spec["config"])
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        if old.get("inputs") != new.get("inputs"):
            changes.append(_files_changed(old.get("inputs") or [], new.get("inputs") or []))
        for key in sorted(k for k in set(old) | set(new) if k != "inputs" and old.get(k) != new.get(k)):
            if key in old:  # a setting added since the folder was built is not a change
                changes.append(f"--{key} {_short(old.get(key))} -> {_short(new.get(key))}")
        if changes:
            return "; ".join(changes[:4]) + ("; ..." if len(changes) > 4 else "")
    old_inputs = previous.get("inputs") or {}
    changed = sorted(k for k, v in (spec.get("inputs") or {}).items() if old_inputs.get(k) != v)
    if changed:
        return f"the output of {', '.join(changed)} changed"
    return "its build record changed"


def _files_changed(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    old_by_path = {f.get("path"): f for f in old}
    new_by_path = {f.get("path"): f for f in new}
    if set(old_by_path) != set(new_by_path):
        return (f"input files {', '.join(sorted(map(str, old_by_path))) or '(none)'} -> "
                f"{', '.join(sorted(map(str, new_by_path))) or '(none)'}")
    edited = sorted(str(p) for p in new_by_path if old_by_path[p] != new_by_path[p])
    return f"input file {', '.join(edited)} changed (size or content)"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_result(root: str, run: str, outcome: dict[str, str] | None = None) -> PipelineResult:
    """The result of run ``run`` under ``root`` as its folders hold it."""
    evaluator = artifacts.stage_dir(root, "Evaluator", run)
    pusher = artifacts.stage_dir(root, "Pusher", run)
    metrics = blessing = pushed = None
    if artifacts.is_complete(evaluator):
        metrics = artifacts.read_json(artifacts.join(evaluator, artifacts.METRICS))
        blessing = _read_optional(artifacts.join(evaluator, artifacts.BLESSING))
    if artifacts.is_complete(pusher):
        record = artifacts.read_json(artifacts.join(pusher, artifacts.PUSHED))
        blessing = record.get("blessing") or blessing
        pushed = record if record.get("pushed", True) else None
    return PipelineResult(root=root, run=run, stages=dict(outcome or {}), metrics=metrics, pushed=pushed,
                          blessing=blessing)


def _read_optional(path: str) -> Any:
    try:
        return artifacts.read_json(path)
    except (OSError, ValueError):
        return None


def create_pipeline(
    configs: PipelineConfigs = PipelineConfigs(),
    root: str = DEFAULT_ROOT,
    beam_options: Any = None,
    *,
    progress: int = 2,
) -> Pipeline:
    """The five stages of one run, from typed configs, each declaring the outputs it reads.

    Args:
      configs: the stages' configs (``pipeline.cli`` builds them from flags).
      root: the pipeline root (``--output_dir``).
      beam_options: ``PipelineOptions``, a list of Beam flags, or None (DirectRunner defaults).
      progress: Trainer output: 0 none, 1 a progress bar per epoch, 2 one line per epoch.

    Raises:
      DataError: the input matches no file (checked here, before any stage runs).
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    if beam_options is None or isinstance(beam_options, (list, tuple)):
        beam_options = PipelineOptions(list(beam_options or []))
    experiment, pusher = configs.experiment, configs.pusher
    name = run_name(experiment)
    default_serving_dir = artifacts.serving_dir(root)

    def example_gen(out: str, inputs: Mapping[str, str]) -> Any:
        return run_example_gen(configs.example_gen, out, beam_options)

    def transform(out: str, inputs: Mapping[str, str]) -> Any:
        return run_transform(configs.transform, inputs["ExampleGen"], out, beam_options)

    def train(out: str, inputs: Mapping[str, str]) -> Any:
        from pipeline.trainer import run_trainer

        pusher.check_data(inputs["Transform"])  # a K past the catalogue is an error now, not after training
        return run_trainer(experiment, inputs["Transform"], out, verbose=progress,
                           resume_dir=artifacts.trainer_resume_dir(root, name))

    def evaluate(out: str, inputs: Mapping[str, str]) -> Any:
        from pipeline.evaluator import run_evaluator

        return run_evaluator(configs.evaluator, inputs["Trainer"], inputs["Transform"], out,
                             serving=pusher.target(default_serving_dir), progress=bool(progress))

    def push(out: str, inputs: Mapping[str, str]) -> Any:
        return run_pusher(pusher, inputs["Trainer"], inputs["Transform"], out, run=name,
                          default_serving_dir=default_serving_dir, evaluator_dir=inputs["Evaluator"],
                          evaluator_config=configs.evaluator)

    trainer_defaults = ExperimentConfig.from_flat({"model": experiment.model, "loss": experiment.loss}).to_flat()
    stages = (
        Stage("ExampleGen", artifacts.stage_dir(root, "ExampleGen"),
              {**to_dict(configs.example_gen), "inputs": input_identity(configs.example_gen)}, example_gen,
              defaults=to_dict(ExampleGenConfig())),
        Stage("Transform", artifacts.stage_dir(root, "Transform"),
              {**to_dict(configs.transform), "inputs": transform_inputs(configs.transform)}, transform,
              inputs=("ExampleGen",), defaults=to_dict(TransformConfig())),
        Stage("Trainer", artifacts.stage_dir(root, "Trainer", name), experiment.to_flat(), train,
              inputs=("Transform",), defaults=trainer_defaults),
        Stage("Evaluator", artifacts.stage_dir(root, "Evaluator", name), to_dict(configs.evaluator), evaluate,
              inputs=("Trainer", "Transform"), defaults=to_dict(EvaluatorConfig())),
        Stage("Pusher", artifacts.stage_dir(root, "Pusher", name), to_dict(pusher), push,
              inputs=("Trainer", "Transform", "Evaluator"), defaults=to_dict(PusherConfig())),
    )
    return Pipeline(root=root, run_name=name, stages=stages)
