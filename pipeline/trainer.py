"""The Trainer stage: registry model + registry loss, trained with early stopping.

Writes ``config.json`` (the flat experiment config, loadable with ``--config``),
``weights/`` (best-epoch TF checkpoint), ``history.json``, ``training_curve.png``
and TensorBoard logs under ``logs/``.
"""

from __future__ import annotations

import json
import posixpath

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq import training
from tfseq.data import reader
from tfseq.data.vocab import DatasetMetadata
from tfseq.experiment import CONFIG_FILE, WEIGHTS, ExperimentConfig, build_model

HISTORY = "history.json"
CURVE = "training_curve.png"


def run_trainer(
    config: ExperimentConfig, transform_dir: str, output_dir: str, verbose: int = 1
) -> training.TrainResult:
    metadata = DatasetMetadata.load(transform_dir)
    training.seed_everything(config.train.seed)
    model = build_model(config, metadata)
    train = config.train
    train_data = reader.training_data(
        transform_dir, metadata, causal=model.causal, max_seq_len=train.max_seq_len,
        batch_size=train.batch_size, seed=train.seed,
    )
    valid_data = reader.evaluation_dataset(
        transform_dir, metadata, "valid", max_seq_len=train.max_seq_len, batch_size=train.eval_batch_size
    )
    if verbose:
        print(
            f"[Trainer] {config.model} + {config.loss}: {train_data.num_targets} training targets in "
            f"{train_data.num_batches} batches, {metadata.num_items - 1} items",
            flush=True,
        )
    result = training.fit(
        model, train_data, valid_data, train, log_dir=posixpath.join(output_dir, "logs"), verbose=verbose
    )
    model.save_weights(posixpath.join(output_dir, WEIGHTS))
    artifacts.atomic_write_text(posixpath.join(output_dir, CONFIG_FILE), config.to_json())
    history = {
        "best_epoch": result.best_epoch,
        "best_valid": result.best_metrics,
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_targets": train_data.num_targets,
        "epochs": result.history,
    }
    artifacts.atomic_write_text(posixpath.join(output_dir, HISTORY), json.dumps(history, indent=1))
    training.plot_training_curve(result.history, posixpath.join(output_dir, CURVE), train.valid_metric)
    return result
