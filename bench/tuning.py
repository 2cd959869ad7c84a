"""Tuning benchmark: the CORE grid (learning rate x temperature, 12 trials) on Amazon Beauty.

Runs ``python -m tuning.search MODEL`` (default ``core`` = ``core_trm``) on the
preprocessed Beauty data with capped epochs, then reports seconds per trial, the
best parameters with their validation and test NDCG@10, and the same figures for
the default parameters (learning rate 0.001, temperature 0.07, one cell of the
grid). The search itself is resumable, so an interrupted benchmark continues.

    python bench/tuning.py --epochs 4            # JSON into bench/results/tuning.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import WORK, machine, preprocess, write_results  # noqa: E402

DEFAULTS = {"learning_rate": 0.001, "temperature": 0.07}


def summary(record) -> dict:
    return {
        "params": record.params,
        "valid_ndcg@10": record.valid.get("ndcg@10"),
        "test_ndcg@10": record.test.get("ndcg@10"),
        "test_recall@10": record.test.get("recall@10"),
        "seconds": round(record.seconds, 1),
        "best_epoch": record.runs[0]["best_epoch"] if record.runs else None,
    }


def main(argv: list[str] | None = None) -> int:
    from tuning import search

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="core")
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--epochs", type=int, default=4, help="cap on each trial's epochs")
    parser.add_argument("--patience", type=int, default=2)
    args = parser.parse_args(argv)

    data = preprocess(args.dataset)
    output_dir = WORK / "tuning" / f"{args.dataset}-{args.model}-e{args.epochs}"
    outcome = search.run([
        args.model, "--data", data, "--output_dir", str(output_dir), "--oracle", "grid",
        "--epochs", str(args.epochs), "--patience", str(args.patience),
    ])
    completed = [r for r in outcome.records if r.completed]
    default = next((r for r in completed if all(r.params.get(k) == v for k, v in DEFAULTS.items())), None)
    results = {
        "machine": machine(),
        "model": args.model,
        "dataset": args.dataset,
        "oracle": "grid",
        "epochs_cap": args.epochs,
        "patience": args.patience,
        "trials": len(outcome.records),
        "completed": len(completed),
        "seconds_per_trial": round(sum(r.seconds for r in completed) / max(1, len(completed)), 1),
        "best": summary(outcome.best) if outcome.best else None,
        "default": summary(default) if default else None,
        "all": [summary(r) for r in completed],
        "output_dir": str(output_dir),
    }
    path = write_results("tuning", results)
    print(json.dumps({k: results[k] for k in ("seconds_per_trial", "best", "default")}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
