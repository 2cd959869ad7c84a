"""``python -m pipeline.run``: flags -> stage configs -> ExampleGen ... Pusher, skipping finished stages.

Our flags go to argparse (each stage's config dataclass defines its own); the
rest go to Beam's ``PipelineOptions``, so ``--runner=FlinkRunner`` (or Spark,
Dataflow) switches engines with no code change. Every stage writes
``<output_dir>/<Stage>/`` through a temporary directory renamed on success,
together with ``_spec.json``, the configuration it was built from (and its
upstream's). A re-run skips a stage whose spec is unchanged, rebuilds one whose
spec changed, and rebuilds everything with ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts, flags
from pipeline.example_gen import ExampleGenConfig, run_example_gen
from pipeline.pusher import PusherConfig, run_pusher
from pipeline.transform import TransformConfig, run_transform
from tfseq.config import ConfigError, to_dict
from tfseq.data.formats import DataError
from tfseq.experiment import ExperimentConfig

DEFAULT_OUTPUT_DIR = "tfseq_output"
SPEC_FILE = "_spec.json"
DEFAULT_STOP = "Evaluator"


@dataclass(frozen=True)
class Stage:
    name: str
    spec: dict[str, Any]
    run: Callable[[str], Any]  # called with the temporary output directory


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.run",
        description="tfseq pipeline: ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher. "
        "Flags not listed here are passed to Beam (e.g. --runner, --direct_num_workers).",
    )
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help="pipeline root")
    parser.add_argument(
        "--stop_after",
        default=DEFAULT_STOP,
        type=lambda s: {x.lower(): x for x in artifacts.STAGES}.get(s.lower(), s),
        choices=artifacts.STAGES,
        help=f"last stage to run (default {DEFAULT_STOP}; Pusher exports a SavedModel)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild every stage")
    parser.add_argument("--config", help="JSON file of model/loss/hyperparameters (flat keys)")
    parser.add_argument("--model", help="model registry key (default sasrec)")
    parser.add_argument("--loss", help="loss registry key (default softmax)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress bar")
    return parser


def _fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _experiment_config(args: argparse.Namespace, hyper: dict[str, Any]) -> ExperimentConfig:
    values = dict(hyper)
    if args.model:
        values["model"] = args.model
    if args.loss:
        values["loss"] = args.loss
    if args.config:
        return ExperimentConfig.from_json_file(args.config, overrides=values)
    return ExperimentConfig.from_flat(values)


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any], list[str]]:
    """Two passes: --model/--loss/--config first, then that model's and loss's flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = build_parser().parse_known_args(argv)
    probe = {k: v for k, v in (("model", first.model), ("loss", first.loss)) if v}
    if first.config:
        from tfseq.config import load_json

        file_values = load_json(first.config)
        probe = {**{k: file_values[k] for k in ("model", "loss") if k in file_values}, **probe}
    probe_config = ExperimentConfig.from_flat(probe)
    parser = build_parser()
    seen = {a.dest for a in parser._actions}
    stage_classes: tuple[type, ...] = (ExampleGenConfig, TransformConfig, PusherConfig)
    for cls in stage_classes:
        flags.add_dataclass_flags(parser, cls, seen)
    for cls in ExperimentConfig.sections(probe_config.model, probe_config.loss).values():
        flags.add_dataclass_flags(parser, cls, seen)
    args, beam_args = parser.parse_known_args(argv)
    flags.check_beam_args(beam_args, seen)
    hyper = {}
    for cls in ExperimentConfig.sections(probe_config.model, probe_config.loss).values():
        hyper.update(flags.values_for(cls, args))
    return args, hyper, beam_args


def build_stages(args: argparse.Namespace, hyper: dict[str, Any], beam_args: list[str]) -> list[Stage]:
    from apache_beam.options.pipeline_options import PipelineOptions

    from tfseq.config import from_dict

    options = PipelineOptions(beam_args)
    root = args.output_dir
    example_gen = from_dict(ExampleGenConfig, flags.values_for(ExampleGenConfig, args))
    transform = from_dict(TransformConfig, flags.values_for(TransformConfig, args))
    experiment = _experiment_config(args, hyper)
    eg_dir = artifacts.stage_dir(root, "ExampleGen")
    tr_dir = artifacts.stage_dir(root, "Transform")
    trainer_dir = artifacts.stage_dir(root, "Trainer")
    verbose = 0 if args.quiet else 1

    def train(out: str) -> Any:
        from pipeline.trainer import run_trainer

        return run_trainer(experiment, tr_dir, out, verbose=verbose)

    def evaluate(out: str) -> Any:
        from pipeline.evaluator import run_evaluator

        return run_evaluator(trainer_dir, tr_dir, out)

    stages = [
        Stage("ExampleGen", to_dict(example_gen), lambda out: run_example_gen(example_gen, out, options)),
        Stage("Transform", to_dict(transform), lambda out: run_transform(transform, eg_dir, out, options)),
        Stage("Trainer", experiment.to_flat(), train),
        Stage("Evaluator", {}, evaluate),
    ]
    pusher = from_dict(PusherConfig, flags.values_for(PusherConfig, args))
    stages.append(Stage("Pusher", to_dict(pusher), lambda out: run_pusher(pusher, trainer_dir, tr_dir, out)))
    return stages


def run_stages(root: str, stages: list[Stage], stop_after: str, force: bool = False) -> dict[str, str]:
    """Runs ``stages`` in order up to ``stop_after``; returns {stage: "ran" | "skipped"}."""
    outcome: dict[str, str] = {}
    upstream = ""
    rebuild = force
    for stage in stages:
        spec = {"stage": stage.name, "config": stage.spec, "upstream": upstream}
        upstream = _fingerprint(spec)
        final = artifacts.stage_dir(root, stage.name)
        if artifacts.is_complete(root, stage.name) and not rebuild:
            previous = json.loads(artifacts.read_text(artifacts.join(final, SPEC_FILE)))
            if previous == spec:
                print(f"[{stage.name}] up to date, skipped ({final})", flush=True)
                outcome[stage.name] = "skipped"
                if stage.name == stop_after:
                    break
                continue
            print(f"[{stage.name}] configuration changed, rebuilding", flush=True)
        rebuild = True  # everything downstream of a rebuilt stage is rebuilt
        print(f"[{stage.name}] running ...", flush=True)
        start = time.perf_counter()
        with artifacts.staged_output(root, stage.name, force=True) as tmp:
            stage.run(tmp)
            artifacts.atomic_write_text(artifacts.join(tmp, SPEC_FILE), json.dumps(spec, indent=1))
        print(f"[{stage.name}] done in {time.perf_counter() - start:.1f}s -> {final}", flush=True)
        outcome[stage.name] = "ran"
        if stage.name == stop_after:
            break
    return outcome


def run(argv: Sequence[str] | None = None) -> dict[str, str]:
    args, hyper, beam_args = parse(argv)
    stages = build_stages(args, hyper, beam_args)
    return run_stages(args.output_dir, stages, args.stop_after, force=args.force)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except (DataError, ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
