"""The Trainer stage: registry model + registry loss, trained with early stopping on validation.

Writes into ``output_dir`` (a temporary directory the driver renames into place),
with the names of :mod:`pipeline.artifacts`:

* ``config.json``: the flat experiment config (loadable with ``--config``);
* ``weights/``: the best epoch's TF checkpoint;
* ``history.json``: ``TrainResult.to_dict()`` + ``model``, ``loss``,
  ``train_targets`` (RecBole's training examples) and ``train_batches``;
* ``training_curve.png``: loss and the validation metric per epoch;
* ``logs/``: TensorBoard scalars.

With ``resume_dir`` (the pipeline passes ``<root>/runs/<run>/.Trainer.resume``,
outside the staged folder, which an interruption deletes), every finished
epoch is checkpointed there (:class:`tfseq.training.EpochCheckpoint`), keyed by
the experiment config and the Transform's spec; a re-run after Ctrl-C resumes
from the last finished epoch (what it restores, and why dropout masks and
sampled negatives are drawn anew: :mod:`tfseq.training`). The checkpoint is
deleted once the Trainer's outputs are written.

With ``distribution`` (``--distribute mirrored | multi_worker``, :mod:`tfseq.distribute`)
the model, its loss and the optimizer are built in the strategy's scope and
each global batch is split over the replicas. In a multi-worker job only the
chief writes the outputs and the checkpoints; the other workers read the
chief's checkpoint to resume and write theirs to a local temporary folder that
is deleted. ``python -m pipeline.trainer`` runs this stage alone, on each
worker, into the run folder that ``python -m pipeline.run`` uses (:func:`main`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import TYPE_CHECKING, Any, Sequence

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from pipeline.configs import DISTRIBUTE_MODES, DistributeConfig
from tfseq.config import ConfigError
from tfseq.data.vocab import DatasetMetadata
from tfseq.experiment import ExperimentConfig, build_model, load_item_features, uses_item_features

if TYPE_CHECKING:  # TensorFlow's, imported where used: python -m pipeline.trainer --help answers without it
    from tfseq import training
    from tfseq.data import reader


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """What the Trainer trains: the built model, its batches and the validation split."""

    config: ExperimentConfig
    metadata: DatasetMetadata
    model: Any
    train_data: reader.TrainingData
    valid_data: Any  # tf.data.Dataset of {"item_ids", "target"}


def prepare_training(config: ExperimentConfig, transform_dir: str, strategy: Any = None) -> TrainingSetup:
    """Seeds, builds ``config``'s model (in ``strategy``'s scope, when given) for the Transform output
    and reads its training/validation data."""
    from tfseq import training
    from tfseq.data import reader

    metadata = DatasetMetadata.load(transform_dir)
    train = config.train
    training.seed_everything(train.seed)  # before building: identical initial weights per seed
    features = load_item_features(transform_dir) if uses_item_features(config.model) else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(config, metadata, features)
    train_data = training.training_data(model, transform_dir, metadata, train)
    valid_data = reader.evaluation_dataset(
        transform_dir, metadata, "valid",
        max_seq_len=train.max_seq_len, batch_size=train.eval_batch_size, side_inputs=model.side_inputs,
        sample_users=train.eval_users, seed=train.seed,
    )
    return TrainingSetup(config, metadata, model, train_data, valid_data)


def resume_key(config: ExperimentConfig, transform_dir: str) -> str:
    """What a Trainer checkpoint is valid for: ``config`` and the Transform output it trains on.

    The Transform's ``_spec.json`` fingerprints its config and input files (a
    folder without one, as tests write, counts as the same data).
    """
    spec = artifacts.join(transform_dir, artifacts.SPEC)
    transform = artifacts.read_json(spec) if artifacts.is_complete(spec) else None
    return artifacts.fingerprint({"experiment": config.to_flat(), "transform": transform})


def run_trainer(
    config: ExperimentConfig,
    transform_dir: str,
    output_dir: str,
    verbose: int = 1,
    resume_dir: str | None = None,
    distribution: DistributeConfig = DistributeConfig(),
) -> training.TrainResult:
    """Trains ``config``'s model on the Transform output ``transform_dir``; fills ``output_dir``.

    Args:
      verbose: 0 silent, 1 a progress bar per epoch (terminals), 2 one line per epoch (logs).
      resume_dir: where each finished epoch is checkpointed and an interrupted
        training resumes from (None: no checkpoints); deleted on success.
      distribution: ``--distribute`` and ``--collective_timeout``. The strategy is created
        first: ``multi_worker`` must start before TensorFlow runs anything in the process.
        On a multi-worker job's other workers ``output_dir`` stays untouched.

    Raises:
      tfseq.training.TrainingInterrupted: Ctrl-C during training.
      tfseq.distribute.WorkerLost: a multi-worker job lost a worker.
    """
    from tfseq import distribute

    strategy = distribute.make_strategy(distribution.distribute, distribution.collective_timeout)
    timeout = distribution.collective_timeout
    with distribute.writable_dir(output_dir, distribute.is_chief(strategy)) as out, \
            distribute.lost_worker_errors(strategy, timeout):
        return _train(config, transform_dir, out, verbose, resume_dir, strategy, distribution)


def _train(
    config: ExperimentConfig, transform_dir: str, out: str, verbose: int, resume_dir: str | None, strategy: Any,
    distribution: DistributeConfig,
) -> training.TrainResult:
    """:func:`run_trainer` once the strategy exists; ``out`` is where this process writes."""
    from tfseq import distribute, training

    setup = prepare_training(config, transform_dir, strategy)
    metadata, model, train_data, valid_data = setup.metadata, setup.model, setup.train_data, setup.valid_data
    train = config.train
    chief = distribute.is_chief(strategy)
    worker_verbose, verbose = verbose, verbose if chief else 0  # the other workers: a line at start and end
    if verbose:
        layout = "causal windows" if train_data.causal else "prefixes"
        print(
            f"[Trainer] {config.model} + {config.loss}: {train_data.num_targets} training targets "
            f"({len(train_data.windows)} {layout}, {train_data.num_batches} batches/epoch), "
            f"{metadata.num_items - 1} items",
            flush=True,
        )
    if strategy is not None and (verbose or worker_verbose):
        role = "writes the outputs" if chief else "writes nothing (the chief writes the outputs)"
        print(f"[Trainer] --distribute {distribution.distribute}: {distribute.describe(strategy)}, global batch "
              f"{train.batch_size} split over them; this process {role}", flush=True)
    checkpoint = None
    if resume_dir:
        key = resume_key(config, transform_dir)
        own = resume_dir if chief else artifacts.join(out, artifacts.TRAINER_RESUME)  # the others read the chief's
        checkpoint = training.EpochCheckpoint(own, key, read_from=resume_dir)
    state = checkpoint.load() if checkpoint is not None else None
    if state and verbose:
        print(f"[Trainer] resuming from epoch {state['epoch'] + 1} of {train.epochs} "
              f"(epochs 1-{state['epoch']} from {resume_dir})", flush=True)
    try:
        result = training.fit(
            model, train_data, valid_data, train,
            log_dir=artifacts.join(out, artifacts.LOGS) if chief else None, verbose=verbose, checkpoint=checkpoint,
            strategy=strategy, collective_timeout=distribution.collective_timeout,
        )
    except Exception:
        if checkpoint is not None and chief and checkpoint.load() is None:
            checkpoint.clear()  # no finished epoch to resume from (a full disk in the first): none half-written stays
        raise
    # Every worker saves (a save may read variables through collectives); the others' go to a deleted folder.
    model.save_weights(artifacts.join(out, artifacts.WEIGHTS))
    if chief:
        artifacts.atomic_write_text(artifacts.join(out, artifacts.CONFIG), config.to_json())
        history = {
            "model": config.model,
            "loss": config.loss,
            **result.to_dict(),
            "train_targets": train_data.num_targets,
            "train_batches": train_data.num_batches,
            "distribute": distribution.distribute,
            "replicas": distribute.num_replicas(strategy),
        }
        artifacts.atomic_write_json(artifacts.join(out, artifacts.HISTORY), history)
        png = training.training_curve_png(result.history, train.valid_metric)
        artifacts.atomic_write_bytes(artifacts.join(out, artifacts.CURVE), png)
    if checkpoint is not None:
        checkpoint.clear()
    if strategy is not None and not chief and worker_verbose:
        print(f"[Trainer] {distribute.describe(strategy)}: done (best epoch {result.best_epoch})", flush=True)
    return result


# ----------------------------------------------------------------------------- python -m pipeline.trainer


def build_parser() -> Any:
    from pipeline import cli

    parser = cli.make_parser(
        "python -m pipeline.trainer",
        "tfseq Trainer alone, into the run folder python -m pipeline.run uses (which then skips it). Run "
        "ExampleGen and Transform first (python -m pipeline.run ... --stop_after Transform); for "
        "--distribute multi_worker start this same command on every worker, each with its TF_CONFIG.",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=artifacts.DEFAULT_ROOT,
                     help=f"pipeline root holding Transform/ (default {artifacts.DEFAULT_ROOT})")
    run.add_argument("--quiet", action="store_true", help="no per-epoch output")
    docs = cli.field_docs(DistributeConfig)
    group = parser.add_argument_group("distribution (DistributeConfig)")
    group.add_argument("--distribute", choices=DISTRIBUTE_MODES, default=DistributeConfig.distribute,
                       help=f"{docs['distribute']} (default: {DistributeConfig.distribute!r})")
    group.add_argument("--collective_timeout", type=float, default=DistributeConfig.collective_timeout,
                       metavar="SECONDS", help=f"{docs['collective_timeout']} "
                       f"(default: {DistributeConfig.collective_timeout!r})")
    cli.add_config_flags(parser, sections=("Trainer",))
    return parser


def train_stage(
    experiment: ExperimentConfig, root: str, distribution: DistributeConfig, chief: bool, verbose: int = 2
) -> str:
    """Runs the Trainer of ``experiment`` on ``root``'s Transform output into its run folder, as
    ``pipeline.run`` would (same folder, same build record); returns "ran" or "skipped".

    The Trainer is skipped, on every worker alike, when its folder holds the same build. On a
    multi-worker job's other workers (``chief`` False) nothing is written under ``root``.
    """
    from pipeline.pipeline import Stage, _read_spec, _same_spec, run_name, run_stage, stage_spec

    transform_dir = artifacts.stage_dir(root, "Transform")
    if not artifacts.is_complete(transform_dir):
        raise ConfigError(f"{transform_dir}: no Transform output; build it first: python -m pipeline.run "
                          f"--output_dir {root} --stop_after Transform (with the data flags)")
    name = run_name(experiment)
    resume_dir = artifacts.trainer_resume_dir(root, name)

    def work(out: str, inputs: Any) -> training.TrainResult:
        return run_trainer(experiment, inputs["Transform"], out, verbose=verbose, resume_dir=resume_dir,
                           distribution=distribution)

    defaults = ExperimentConfig.from_flat({"model": experiment.model, "loss": experiment.loss}).to_flat()
    stage = Stage("Trainer", artifacts.stage_dir(root, "Trainer", name), experiment.to_flat(), work,
                  inputs=("Transform",), defaults=defaults)
    # The Transform's build record, as pipeline.run fingerprints a folder it reuses.
    spec = stage_spec(stage, {"Transform": artifacts.fingerprint(_read_spec(transform_dir))})
    if artifacts.is_complete(stage.directory) and _same_spec(_read_spec(stage.directory), spec, defaults):
        print(f"[Trainer] up to date, skipped ({stage.directory})", flush=True)
        return "skipped"
    if chief:
        for path in artifacts.remove_stale_temporaries(artifacts.run_dir(root, name)):
            print(f"removed a killed run's temporary folder {path}", flush=True)
        return run_stage(stage, spec, force=True, inputs={"Transform": transform_dir})
    work(stage.directory, {"Transform": transform_dir})  # run_trainer writes nothing there off the chief
    return "ran"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.trainer``: flags -> :func:`train_stage`; errors as one line (``pipeline.run``'s rules)."""
    from tfseq.runtime import exit_status_of, quiet_startup

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from pipeline import cli

        args, configs, beam_args = cli.parse(build_parser(), argv, sections=("Trainer",))
        if beam_args:
            raise ConfigError(f"python -m pipeline.trainer runs no Beam pipeline: unexpected {beam_args[0]}")
        distribution = DistributeConfig(args.distribute, args.collective_timeout)
        quiet_startup(verbose=args.startup_logs)
        from tfseq import distribute

        chief = True
        if distribution.distribute == distribute.MULTI_WORKER:
            chief = distribute.is_chief_task(distribute.tf_config())
        progress = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
        train_stage(configs.experiment, args.output_dir, distribution, chief, verbose=progress)
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (a user error, a lost worker: one line)
        return exit_status_of(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
