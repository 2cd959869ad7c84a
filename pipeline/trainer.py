"""The Trainer stage: registry model + registry loss, trained with early stopping on validation.

Writes into ``output_dir`` (a temporary directory the driver renames into place),
with the names of :mod:`pipeline.artifacts`:

* ``config.json``: the flat experiment config (loadable with ``--config``);
* ``weights/``: the best epoch's TF checkpoint;
* ``history.json``: ``TrainResult.to_dict()`` + ``model``, ``loss``,
  ``train_targets`` (RecBole's training examples) and ``train_batches``;
* ``training_curve.png``: loss and the validation metric per epoch;
* ``logs/``: TensorBoard scalars.
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
        max_seq_len=train.max_seq_len, batch_size=train.eval_batch_size, users=model.uses_user,
    )
    return TrainingSetup(config, metadata, model, train_data, valid_data)


def run_trainer(
    config: ExperimentConfig, transform_dir: str, output_dir: str, verbose: int = 1
) -> training.TrainResult:
    """Trains ``config``'s model on the Transform output ``transform_dir``; fills ``output_dir``.

    Args:
      verbose: 0 silent, 1 a progress bar per epoch (terminals), 2 one line per epoch (logs).
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
    result = training.fit(
        model, train_data.dataset(), valid_data, train,
        log_dir=artifacts.join(output_dir, artifacts.LOGS), verbose=verbose,
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
    return result
