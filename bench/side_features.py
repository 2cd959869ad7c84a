"""Side features benchmark: ``difsr``, ``sasrec_f`` and ``sasrec`` side by side on one data root.

Amazon Beauty with S3-Rec's ``Beauty_item2attributes.json`` (categories) and
ml-100k with its genres (``class``). Every model runs through the pipeline
itself (``create_pipeline``: the same ExampleGen and Transform, one run folder
per model under ``WORK/side-<dataset>/runs``), with the same epochs budget and
patience, RecBole's protocol (leave-one-out, full ranking, unmasked) plus the
test metrics with the history masked. Seconds per epoch (training alone,
validation excluded) and the process's peak RSS are recorded beside each row.
Results accumulate in bench/results/side_features.json after every run.

    python bench/side_features.py --datasets ml-100k beauty --models sasrec sasrec_f difsr --epochs 30

``--record`` adds a run made elsewhere, e.g. the README's own command timed with
``/usr/bin/time -v`` (whose wall time and maximum resident set size are passed in):

    python bench/side_features.py --record tfseq_output runs/difsr-softmax-0123abcd --datasets beauty \
        --wall_seconds 2900 --peak_rss_mib 2100 --tag "README command"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATASETS,
    SOURCES,
    WORK,
    history_in_top,
    machine,
    masked_test_metrics,
    read_results,
    result_row,
    run_measured,
    trained_test_data,
    write_results,
)

# The history a masked figure masks, at least: the default window, so a row trained on a shorter one
# (the authors' Beauty log reads 7 items) masks what the others do.
MASKED_WINDOW = 50

FEATURES: dict[str, dict[str, Any]] = {
    "beauty": {"item_features": str(DATASETS / "amazon-beauty" / "Beauty_item2attributes.json")},
    "ml-100k": {"item_features": str(DATASETS / "ml-100k" / "ml-100k.item"), "item_feature_fields": ("class",)},
}


def add_test_analyses(row: dict[str, Any], trainer_dir: str, transform_dir: str) -> None:
    """Adds the run's masked test metrics and where its top-20 test slots go (one model load).

    Both look at each history's last ``MASKED_WINDOW`` items at least, whatever the run's window.
    """
    model, data = trained_test_data(trainer_dir, transform_dir, min_window=MASKED_WINDOW)
    row["test_history_masked"] = masked_test_metrics(model, data)
    row["test_top_slots"] = history_in_top(model, data)


def run_one(dataset: str, model: str, epochs: int, patience: int, extra: dict[str, Any]) -> dict[str, Any]:
    settings = {**SOURCES[dataset], **FEATURES[dataset], "model": model, "epochs": epochs, "patience": patience,
                **extra}
    result, row = run_measured(settings, WORK / f"side-{dataset}")
    add_test_analyses(row, result.trainer_dir, result.transform_dir)
    return row


def record(root: str, run: str, wall_seconds: float, peak_rss_mib: float) -> tuple[str, dict[str, Any]]:
    """The row of run ``run`` already made under pipeline root ``root`` (its model name, its row)."""
    from pipeline.pipeline import load_result

    result = load_result(root, run.removeprefix("runs/"))
    if result.metrics is None:
        raise SystemExit(f"{root}: run {run} has no Evaluator metrics")
    row = result_row(result, wall_seconds, peak_rss_mib)
    add_test_analyses(row, result.trainer_dir, result.transform_dir)
    return row["config"]["model"], row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "beauty"], choices=list(FEATURES))
    parser.add_argument("--models", nargs="+", default=["sasrec", "sasrec_f", "difsr"])
    parser.add_argument("--epochs", type=int, default=30, help="the same budget for every model")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], help="extra setting=value for every model")
    parser.add_argument("--tag", help="suffix of the result keys (runs with --set values)")
    parser.add_argument("--record", nargs=2, metavar=("ROOT", "RUN"),
                        help="record run RUN (runs/<name>) of pipeline root ROOT instead of training (one dataset)")
    parser.add_argument("--wall_seconds", type=float, help="with --record: the run's measured wall time")
    parser.add_argument("--peak_rss_mib", type=float, help="with --record: the run's measured peak RSS")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    results = read_results("side_features")
    results["machine"] = machine()
    runs = results.setdefault("runs", {})
    if args.record:
        if len(args.datasets) != 1 or args.wall_seconds is None or args.peak_rss_mib is None:
            parser.error("--record takes one --datasets name, --wall_seconds and --peak_rss_mib")
        root, run = args.record
        model, row = record(root, run, args.wall_seconds, args.peak_rss_mib)
        runs[f"{args.datasets[0]}/{model}" + (f"/{args.tag}" if args.tag else "")] = row
        write_results("side_features", results)
        return 0
    for dataset in args.datasets:
        for model in args.models:
            key = f"{dataset}/{model}" + (f"/{args.tag}" if args.tag else "")
            print(f"== {key}", flush=True)
            runs[key] = run_one(dataset, model, args.epochs, args.patience, extra)
            write_results("side_features", results)
            print(json.dumps({k: runs[key]["test"][k] for k in ("ndcg@10", "ndcg@20", "recall@20")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
