"""Spotlight's and MetaSpore's model families against tfseq's, each under its own protocol.

Experiments (each one data root under ``WORK``, every model a run folder beside the others,
built with ``create_pipeline`` exactly as ``pipeline.run`` builds it):

* ``spotlight-ml-100k``: Spotlight's ``movielens_sequence`` protocol on ml-100k: a seeded
  user split (10% validation users, 10% test users, unseen in training, their last item the
  target), sequences of up to 200 items, full-catalogue MRR. ``pooling``, ``cnn`` and
  ``lstm`` with Spotlight's best ML-1M hyperparameters, ``gru4rec`` and ``sasrec`` for reference.
* ``loo-ml-100k``, ``loo-beauty``: tfseq's leave-one-out protocol: ``hrm`` beside ``gru4rec``
  (MetaSpore's table: Precision / Recall / MAP / NDCG @20), and ``cnn``, ``lstm``,
  ``pooling`` beside ``sasrec`` and ``pop``.

Seconds per epoch (training alone) and peak RSS beside every row; results accumulate in
bench/results/families.json after every run.

    python bench/families.py --experiments spotlight-ml-100k loo-ml-100k loo-beauty
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SOURCES, WORK, machine, read_results, run_measured, write_results  # noqa: E402

SPOTLIGHT_SPLIT = {"split": "user", "valid_fraction": 0.1, "test_fraction": 0.1, "max_seq_len": 200,
                   "valid_metric": "mrr"}
# Spotlight's best ML-1M settings (its README / movielens_sequence experiment).
SPOTLIGHT_MODELS: dict[str, dict[str, Any]] = {
    "pooling": {"loss": "adaptive_hinge", "embedding_size": 32},
    "cnn": {"loss": "adaptive_hinge", "embedding_size": 256, "kernel_width": 3, "num_layers": 3,
            "dilation": "1 2 4", "nonlinearity": "relu", "residual": True, "dropout_prob": 0.0},
    "lstm": {"loss": "adaptive_hinge", "embedding_size": 32, "learning_rate": 0.05, "batch_size": 256,
             "dropout_prob": 0.0},
    "gru4rec": {"loss": "softmax"},
    "sasrec": {"loss": "softmax"},
}
LOO_MODELS: dict[str, dict[str, Any]] = {
    "pop": {},
    "gru4rec": {},
    "hrm": {},
    "sasrec": {},
    "cnn": {},
    "lstm": {},
    "pooling": {},
}
EXPERIMENTS: dict[str, tuple[str, dict[str, Any], dict[str, dict[str, Any]]]] = {
    "spotlight-ml-100k": ("ml-100k", SPOTLIGHT_SPLIT, SPOTLIGHT_MODELS),
    # RecBole's steps per epoch on ml-100k: batches of 50 whole sequences, whatever the model's own batching
    "loo-ml-100k": ("ml-100k", {"batch_size": 50, "batch_by": "sequences"}, LOO_MODELS),
    "loo-beauty": ("beauty", {}, LOO_MODELS),
}
KEPT = ("mrr", "ndcg@10", "recall@10", "precision@20", "recall@20", "map@20", "ndcg@20", "num_users")


def run_one(experiment: str, model: str, epochs: int, patience: int, extra: dict[str, Any]) -> dict[str, Any]:
    dataset, shared, models = EXPERIMENTS[experiment]
    settings = {**SOURCES[dataset], **shared, "model": model, "epochs": epochs, "patience": patience,
                **models[model], **extra}
    _, row = run_measured(settings, WORK / experiment)
    row["valid"] = {k: v for k, v in row["valid"].items() if k in KEPT}
    row["test"] = {k: v for k, v in row["test"].items() if k in KEPT}
    row["settings"] = {k: v for k, v in settings.items() if k not in ("input", "input_format")}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--models", nargs="+", help="default: every model of the experiment")
    parser.add_argument("--epochs", type=int, default=30, help="the same budget for every model")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], help="extra setting=value for every model")
    parser.add_argument("--tag", help="suffix of the result keys (runs with --set values)")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    results = read_results("families")
    results["machine"] = machine()
    runs = results.setdefault("runs", {})
    for experiment in args.experiments:
        for model in args.models or list(EXPERIMENTS[experiment][2]):
            if model not in EXPERIMENTS[experiment][2]:
                continue
            key = f"{experiment}/{model}" + (f"/{args.tag}" if args.tag else "")
            print(f"== {key}", flush=True)
            runs[key] = run_one(experiment, model, args.epochs, args.patience, extra)
            write_results("families", results)
            print(json.dumps(runs[key]["test"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
