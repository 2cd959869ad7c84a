"""Spotlight's families (``cnn``, ``lstm``, ``pooling``) on leave-one-out: what differs from Spotlight, one
change per row, against ``pop``.

Each row is ``python -m pipeline.run`` with the row's flags, through the Evaluator, on the dataset's
leave-one-out split (tfseq's default protocol: full ranking, unmasked). A ``before`` row restores, by
flags, what the family's defaults were before this benchmark (no item bias, tied pooling, Adam at
1e-3 in batches of 256 whole sequences); every other row is the family's current defaults plus the
flags it names, so each row differs from another in one thing. Results accumulate in
``bench/results/spotlight_defaults.json`` with each row's command; the data stages are shared per
dataset under ``WORK``, each run's folder is removed before it trains.

    python bench/spotlight_defaults.py                       # every ml-100k row not yet in the results
    python bench/spotlight_defaults.py --rows ml-100k/lstm/default --force --seed 2021
    python bench/spotlight_defaults.py --rows beauty/pop beauty/cnn/default beauty/lstm/default \
        beauty/pooling/default --set epochs=10                # Beauty, capped at 10 epochs

Spotlight's own implementation (PyTorch, not on PyPI) is not run here; its figures on the same
ml-100k split, with the settings of its ML-1M experiments, are in the results' ``reference``
section with the way they were obtained; the ``*/spotlight_settings`` rows are tfseq with those
settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SOURCES, WORK, command_of, machine, read_results, run_measured, write_results  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Row:
    """One run: ``model`` with ``flags`` on ``dataset``; ``question`` says what it is compared for."""

    name: str
    model: str
    question: str
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "ml-100k"

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"


# The families' defaults before this benchmark, restored by flags (the model's fields and TrainConfig's).
OLD_TRAINING = {"learning_rate": 0.001, "batch_size": 256, "batch_by": "sequences", "lr_decay_patience": 0}
BEFORE: dict[str, dict[str, Any]] = {
    "cnn": {"item_bias": False, **OLD_TRAINING},
    "lstm": {"item_bias": False, **OLD_TRAINING},
    "pooling": {"item_bias": False, "tie_weights": True, "window": 0, **OLD_TRAINING},
}
HINGE = {"loss": "adaptive_hinge"}
# Spotlight's best ML-1M settings (examples/movielens_sequence): 200-item sequences, no dropout, fixed epochs.
SPOTLIGHT_WINDOWS = {"max_seq_len": 200, "dropout_prob": 0.0, "batch_by": "sequences", "lr_decay_patience": 0}
SPOTLIGHT_SETTINGS: dict[str, dict[str, Any]] = {
    "cnn": {**HINGE, **SPOTLIGHT_WINDOWS, "embedding_size": 256, "kernel_width": 3, "dilation": "1 2 4",
            "learning_rate": 0.001, "batch_size": 32, "epochs": 9, "patience": 9},
    "lstm": {**HINGE, **SPOTLIGHT_WINDOWS, "embedding_size": 32, "learning_rate": 0.05, "batch_size": 256,
             "epochs": 11, "patience": 11},
}


def rows_of(dataset: str) -> tuple[Row, ...]:
    rows = [Row("pop", "pop", "the floor every model must clear", dataset=dataset)]
    for family in ("cnn", "lstm", "pooling"):
        rows += [
            Row(f"{family}/before", family, "the old defaults (softmax)", BEFORE[family], dataset),
            Row(f"{family}/before/adaptive_hinge", family, "the old defaults with Spotlight's loss",
                {**BEFORE[family], **HINGE}, dataset),
            Row(f"{family}/default", family, "the defaults (softmax)", {}, dataset),
            Row(f"{family}/default/adaptive_hinge", family, "the defaults with Spotlight's loss", HINGE, dataset),
        ]
    return tuple(rows)


ROWS = rows_of("ml-100k") + rows_of("beauty") + (
    # ml-100k: one change against the old defaults ...
    Row("cnn/before+bias/adaptive_hinge", "cnn", "Spotlight's item bias alone",
        {**BEFORE["cnn"], **HINGE, "item_bias": True}),
    Row("lstm/before+bias", "lstm", "Spotlight's item bias alone", {**BEFORE["lstm"], "item_bias": True}),
    Row("pooling/before+bias", "pooling", "Spotlight's item bias alone", {**BEFORE["pooling"], "item_bias": True}),
    Row("pooling/before+untied", "pooling", "a separate candidate table alone",
        {**BEFORE["pooling"], "tie_weights": False}),
    # ... or against the current ones
    Row("pooling/default+window0", "pooling", "the defaults averaging the whole history (Spotlight's)",
        {"window": 0}),
    Row("pooling/default+window0+untied", "pooling", "the whole history's mean against a separate candidate table",
        {"window": 0, "tie_weights": False}),
    Row("pooling/default+window10", "pooling", "the defaults, averaging the last 10 items", {"window": 10}),
    Row("cnn/default-bias", "cnn", "the defaults without the item bias", {"item_bias": False}),
    Row("cnn/default-bias/adaptive_hinge", "cnn", "the defaults without the item bias, Spotlight's loss",
        {"item_bias": False, **HINGE}),
    # Spotlight's best ML-1M settings, as its own implementation ran them on the same split (``reference``)
    Row("cnn/spotlight_settings", "cnn", "Spotlight's ML-1M CNN settings: the reference's run in tfseq",
        {**SPOTLIGHT_SETTINGS["cnn"], "item_bias": True}),
    Row("lstm/spotlight_settings", "lstm", "Spotlight's ML-1M LSTM settings: the reference's run in tfseq",
        {**SPOTLIGHT_SETTINGS["lstm"], "item_bias": True}),
)
BY_KEY = {row.key: row for row in ROWS}


def settings_of(row: Row, seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {**SOURCES[row.dataset], "model": row.model, **row.flags, **extra, "seed": seed}


KEPT = ("ndcg@10", "hit@10", "recall@10", "mrr", "ndcg@20", "recall@20", "num_users")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(BY_KEY), help="default: every row of --datasets")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"], choices=sorted(SOURCES))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--set", nargs="*", default=[], help="extra setting=value for every row (e.g. epochs=20)")
    parser.add_argument("--force", action="store_true", help="run rows already in the results again")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    results = read_results("spotlight_defaults")
    results["machine"] = machine()
    runs = results.setdefault("runs", {})
    chosen = [BY_KEY[key] for key in args.rows] if args.rows else [r for r in ROWS if r.dataset in args.datasets]
    for row in chosen:
        key = f"{row.key}/seed{args.seed}" + "".join(f"/{k}={v}" for k, v in sorted(extra.items()))
        if key in runs and not args.force:
            continue
        settings = settings_of(row, args.seed, extra)
        root = WORK / "spotlight_defaults" / row.dataset
        for stale in ("runs", "serving"):  # data stages are shared; a run is always trained afresh
            shutil.rmtree(root / stale, ignore_errors=True)
        print(f"== {key}: {command_of(settings)}", flush=True)
        _, measured = run_measured(settings, root)
        for split in ("valid", "test"):
            measured[split] = {k: v for k, v in measured[split].items() if k in KEPT}
        runs[key] = {"row": row.name, "dataset": row.dataset, "model": row.model, "question": row.question,
                     "flags": row.flags, "extra": extra, "seed": args.seed, "command": command_of(settings),
                     **measured}
        write_results("spotlight_defaults", results)
        print(json.dumps({"row": key, "test_ndcg@10": round(measured["test"]["ndcg@10"], 4),
                          "test_hit@10": round(measured["test"].get("recall@10", float("nan")), 4),
                          "best_epoch": measured["best_epoch"], "epochs_run": measured["epochs_run"],
                          "wall_seconds": round(measured["wall_seconds"])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
