"""Quality benchmark: every model x loss on Amazon Beauty and ml-100k, RecBole's protocol.

Leave-one-out, full ranking, max length 50, no history masking unless --exclude_seen.
Results accumulate in bench/results/quality.json (one entry per dataset/model/loss/masking,
rewritten after each run so an interrupted benchmark keeps what it finished).

    python bench/quality.py --datasets beauty ml-100k --models sasrec gru4rec core_trm core_ave pop
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    machine,
    masked_test_metrics,
    preprocess,
    read_results,
    trained_test_data,
    write_results,
)

# Per-model settings for the benchmark runs (RecBole defaults unless a note says why).
MODEL_PARAMS: dict[str, dict] = {
    "pop": {},
    "gru4rec": {"learning_rate": 0.001},
    "sasrec": {"learning_rate": 0.001},
    "core_ave": {"learning_rate": 0.001},
    "core_trm": {"learning_rate": 0.001},
}


def run_one(transform_dir: str, model: str, loss: str, epochs: int, exclude_seen: bool, extra: dict) -> dict:
    from pipeline.evaluator import EvaluatorConfig, run_evaluator
    from pipeline.trainer import run_trainer
    from tfseq.experiment import ExperimentConfig

    values = {"model": model, "loss": loss, "epochs": epochs, "exclude_history": exclude_seen}
    values.update(MODEL_PARAMS.get(model, {}))
    values.update(extra)
    config = ExperimentConfig.from_flat(values)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        run_trainer(config, transform_dir, f"{work}/trainer", verbose=0)
        metrics = run_evaluator(EvaluatorConfig(), f"{work}/trainer", transform_dir, f"{work}/evaluator")
        metrics["wall_seconds"] = time.perf_counter() - start
        metrics["test_exclude_seen"] = masked_test_metrics(*trained_test_data(f"{work}/trainer", transform_dir))
    metrics["config"] = config.to_flat()
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "beauty"])
    parser.add_argument("--models", nargs="+", default=["pop", "sasrec", "bsarec", "gru4rec", "core_trm", "core_ave",
                                                        "cnn", "lstm", "pooling", "hrm"])
    parser.add_argument("--losses", nargs="+", default=["softmax"])
    parser.add_argument("--epochs", type=int, default=100, help="upper bound; early stopping decides")
    parser.add_argument("--exclude_seen", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value hyperparameters")
    parser.add_argument("--tag", help="suffix of the result keys (runs with non-default --set values)")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    for dataset in args.datasets:
        transform_dir = preprocess(dataset)
        for model in args.models:
            for loss in args.losses if model != "pop" else ["softmax"]:
                key = f"{dataset}/{model}/{loss}" + ("/exclude_seen" if args.exclude_seen else "")
                key += f"/{args.tag}" if args.tag else ""
                print(f"== {key}", flush=True)
                metrics = run_one(transform_dir, model, loss, args.epochs, args.exclude_seen, extra)
                results = read_results("quality")  # keeps what another run of this script wrote meanwhile
                results["machine"] = machine()
                results.setdefault("runs", {})[key] = metrics
                write_results("quality", results)
                print(json.dumps({k: metrics["test"][k] for k in ("ndcg@10", "recall@10")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
