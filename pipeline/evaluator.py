"""The Evaluator stage: full-ranking metrics of the trained model on valid and test.

Writes ``metrics.json`` =
``{"model", "loss", "valid": {...}, "test": {...}, "best_epoch", "train_seconds", "exclude_history"}``,
copies the Trainer's training curve beside it, and prints a RecBole-style table.
"""

from __future__ import annotations

from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq.data.reader import evaluation_dataset
from tfseq.data.vocab import DatasetMetadata
from tfseq.evaluation import evaluate
from tfseq.experiment import load_trained_model

METRIC_NAMES = ("recall", "mrr", "ndcg", "hit", "precision", "map")


def format_table(metrics: dict[str, Any]) -> str:
    """A fixed-width table: one row per split and metric, one column per K."""
    ks = sorted({int(k.split("@")[1]) for k in metrics["test"] if "@" in k})
    header = f"{'':6}{'':10}" + "".join(f"{'@' + str(k):>10}" for k in ks)
    masked = "  history masked" if metrics.get("exclude_history") else ""
    lines = [
        f"model: {metrics['model']}  loss: {metrics['loss']}  best epoch: {metrics['best_epoch']}  "
        f"train: {metrics['train_seconds']:.1f}s{masked}",
        header,
    ]
    for split in ("valid", "test"):
        for name in METRIC_NAMES:
            row = [metrics[split].get(f"{name}@{k}") for k in ks]
            if all(v is None for v in row):
                continue
            cells = "".join(f"{v:>10.4f}" if v is not None else f"{'-':>10}" for v in row)
            lines.append(f"{split:6}{name:10}{cells}")
        uncut = {k: v for k, v in metrics[split].items() if "@" not in k and k != "num_users"}
        for name, value in sorted(uncut.items()):  # e.g. mrr over the whole catalogue
            lines.append(f"{split:6}{name:10}{value:>10.4f}  (no cut-off)")
    return "\n".join(lines)


def run_evaluator(trainer_dir: str, transform_dir: str, output_dir: str, verbose: bool = False) -> dict[str, Any]:
    """Evaluates the Trainer's best weights on valid and test; writes and returns ``metrics.json``."""
    metadata = DatasetMetadata.load(transform_dir)
    model, config = load_trained_model(trainer_dir, transform_dir)
    results: dict[str, Any] = {"model": config.model, "loss": config.loss}
    for split in ("valid", "test"):
        data = evaluation_dataset(
            transform_dir,
            metadata,
            split,
            max_seq_len=config.train.max_seq_len,
            batch_size=config.train.eval_batch_size,
            users=model.uses_user,
        )
        results[split] = evaluate(model, data, exclude_history=config.train.exclude_history)
    history = artifacts.read_json(artifacts.join(trainer_dir, artifacts.HISTORY))
    results["best_epoch"] = history.get("best_epoch")
    results["train_seconds"] = history.get("train_seconds")
    results["exclude_history"] = config.train.exclude_history
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.METRICS), results)
    curve = artifacts.join(trainer_dir, artifacts.CURVE)
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(curve):
        FileSystems.copy([curve], [artifacts.join(output_dir, artifacts.CURVE)])
    if verbose:
        print(format_table(results), flush=True)
    return results
