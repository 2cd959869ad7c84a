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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq import training
from tfseq.data import reader
from tfseq.data.vocab import DatasetMetadata
from tfseq.experiment import ExperimentConfig, build_model, load_item_features, uses_item_features


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """What the Trainer trains: the built model, its batches and the validation split."""

    config: ExperimentConfig
    metadata: DatasetMetadata
    model: Any
    train_data: reader.TrainingData
    valid_data: Any  # tf.data.Dataset of {"item_ids", "target"}


def prepare_training(config: ExperimentConfig, transform_dir: str) -> TrainingSetup:
    """Seeds, builds ``config``'s model for the Transform output and reads its training/validation data."""
    metadata = DatasetMetadata.load(transform_dir)
    train = config.train
    training.seed_everything(train.seed)  # before building: identical initial weights per seed
    features = load_item_features(transform_dir) if uses_item_features(config.model) else None
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
) -> training.TrainResult:
    """Trains ``config``'s model on the Transform output ``transform_dir``; fills ``output_dir``.

    Args:
      verbose: 0 silent, 1 a progress bar per epoch (terminals), 2 one line per epoch (logs).
      resume_dir: where each finished epoch is checkpointed and an interrupted
        training resumes from (None: no checkpoints); deleted on success.

    Raises:
      tfseq.training.TrainingInterrupted: Ctrl-C during training.
    """
    setup = prepare_training(config, transform_dir)
    metadata, model, train_data, valid_data = setup.metadata, setup.model, setup.train_data, setup.valid_data
    train = config.train
    if verbose:
        layout = "causal windows" if train_data.causal else "prefixes"
        print(
            f"[Trainer] {config.model} + {config.loss}: {train_data.num_targets} training targets "
            f"({len(train_data.windows)} {layout}, {train_data.num_batches} batches/epoch), "
            f"{metadata.num_items - 1} items",
            flush=True,
        )
    checkpoint = training.EpochCheckpoint(resume_dir, resume_key(config, transform_dir)) if resume_dir else None
    state = checkpoint.load() if checkpoint is not None else None
    if state and verbose:
        print(f"[Trainer] resuming from epoch {state['epoch'] + 1} of {train.epochs} "
              f"(epochs 1-{state['epoch']} from {resume_dir})", flush=True)
    result = training.fit(
        model, train_data, valid_data, train,
        log_dir=artifacts.join(output_dir, artifacts.LOGS), verbose=verbose, checkpoint=checkpoint,
    )
    model.save_weights(artifacts.join(output_dir, artifacts.WEIGHTS))
    artifacts.atomic_write_text(artifacts.join(output_dir, artifacts.CONFIG), config.to_json())
    history = {
        "model": config.model,
        "loss": config.loss,
        **result.to_dict(),
        "train_targets": train_data.num_targets,
        "train_batches": train_data.num_batches,
    }
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.HISTORY), history)
    png = training.training_curve_png(result.history, train.valid_metric)
    artifacts.atomic_write_bytes(artifacts.join(output_dir, artifacts.CURVE), png)
    if checkpoint is not None:
        checkpoint.clear()
    return result
