"""``python -m pipeline.compare ROOT``: one table of every run's metrics under a pipeline root.

Each run (``<root>/runs/<model>-<loss>-<hash>``) is one row: its model, loss,
the hyperparameters that differ between runs, validation and test metrics,
best epoch and training time. The table is printed and written beside the runs
as ``compare.csv`` and ``compare.json``.
"""

from __future__ import annotations

import csv
import io
import sys
from typing import Any, Sequence

COLUMNS = ("valid ndcg@10", "test ndcg@10", "test recall@10", "test mrr@10", "test ndcg@20", "test recall@20")


def compare_runs(root: str) -> list[dict[str, Any]]:
    """One row per run of ``root`` that has a Trainer; metrics are empty for a run not yet evaluated."""
    from pipeline import artifacts

    configs: dict[str, dict[str, Any]] = {}
    rows = []
    for run in artifacts.list_runs(root):
        trainer = artifacts.stage_dir(root, "Trainer", run)
        configs[run] = artifacts.read_json(artifacts.join(trainer, artifacts.CONFIG))
        evaluator = artifacts.stage_dir(root, "Evaluator", run)
        metrics = artifacts.read_json(artifacts.join(evaluator, artifacts.METRICS)) if artifacts.is_complete(
            evaluator) else {}
        history = artifacts.read_json(artifacts.join(trainer, artifacts.HISTORY))
        row: dict[str, Any] = {"run": run, "model": configs[run]["model"], "loss": configs[run]["loss"]}
        for column in COLUMNS:
            split, metric = column.split(" ")
            row[column] = metrics.get(split, {}).get(metric)
        row["history masked"] = configs[run].get("exclude_history", False)
        row["best epoch"] = history.get("best_epoch")
        row["train s"] = f"{float(history.get('train_seconds') or 0.0):.1f}"
        rows.append(row)
    for row in rows:  # what tells apart the runs of the same model
        mine = configs[row["run"]]
        peers = [c for c in configs.values() if c["model"] == mine["model"]]
        differing = sorted(k for k in mine if k not in ("model", "loss") and len({repr(c.get(k)) for c in peers}) > 1)
        row["settings"] = " ".join(f"{k}={mine[k]}" for k in differing)
    return sorted(rows, key=lambda r: -(r["test ndcg@10"] or -1.0))


def format_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs"
    header = list(rows[0])
    cells = [[_cell(row[h]) for h in header] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_comparison(root: str, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Writes ``compare.csv`` and ``compare.json`` under ``root``; returns their paths."""
    from pipeline import artifacts

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    csv_path = artifacts.join(root, artifacts.COMPARE_CSV)
    json_path = artifacts.join(root, artifacts.COMPARE_JSON)
    artifacts.atomic_write_text(csv_path, buffer.getvalue())
    artifacts.atomic_write_json(json_path, rows)
    return csv_path, json_path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("root", nargs="?", default="tfseq_output", help="pipeline root (default tfseq_output)")
    args = parser.parse_args(argv)
    from tfseq.runtime import quiet_startup

    quiet_startup()
    rows = compare_runs(args.root)
    if not rows:
        print(f"error: no runs under {args.root}/runs", file=sys.stderr)
        return 2
    print(format_rows(rows))
    csv_path, json_path = write_comparison(args.root, rows)
    print(f"written: {csv_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
