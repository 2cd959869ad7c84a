"""``python -m pipeline.compare ROOT``: one table of every run's metrics under a pipeline root.

Each run (``<root>/runs/<model>-<loss>-<hash>``) is one row: its model, loss,
the dataset the root's ExampleGen read, whether it is the served run, its
validation metric (the one it was early-stopped on) and value, test metrics,
the hyperparameters that differ between runs of the same model, best epoch and
training time. Rows are ranked by the validation value, best first: a model is
chosen on validation, and the test columns report how the choice generalises;
ranking by a test column (``--sort "test ndcg@10"``) is allowed but is the
mistake the table should not invite.

The served run (``*`` in ``served``) is the one whose ``Pusher/pushed.json``
names the highest version present under its ``serving_dir/model_name``, i.e.
the one a model server polling that folder loads.

The table is printed and written beside the runs as ``compare.csv`` and
``compare.json``, with ``compare.png``: every run's training loss and
validation metric per epoch, and its test metrics as bars. Only JSON files are
read: neither TensorFlow nor Beam is imported (matplotlib only for the PNG).
Local roots only, as :func:`pipeline.artifacts.list_runs`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from typing import Any, Sequence

from pipeline import artifacts

TEST_COLUMNS = ("test ndcg@10", "test recall@10", "test mrr@10", "test ndcg@20", "test recall@20")
VALID_METRIC = "valid metric"  # each run's own early-stopping metric (TrainConfig.valid_metric)
VALID = "valid"  # its value on the validation split: the default ranking
SERVED = "served"
SERVED_MARK = "*"
DEFAULT_SORT = VALID


def _read_json(path: str) -> Any:
    """``path``'s JSON, or None when the file is missing (a stage not run yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def dataset_of(root: str) -> str:
    """What the root's ExampleGen read, from its ``_spec.json``: ``recbole:data/ml-100k.inter``,
    ``synthetic (users=3000, items=1000, ...)``; ``-`` before ExampleGen ran."""
    spec = _read_json(os.path.join(artifacts.stage_dir(root, "ExampleGen"), artifacts.SPEC))
    config = (spec or {}).get("config") or {}
    if not config:
        return "-"
    fmt = config.get("input_format", "synthetic")
    if fmt == "synthetic":
        knobs = ("users", "items", "interactions", "seed")
        given = ", ".join(f"{k}={config[f'synthetic_{k}']}" for k in knobs if f"synthetic_{k}" in config)
        return f"synthetic ({given})" if given else "synthetic"
    return f"{fmt}:{config.get('input', '')}"


def served_runs(root: str, pushed: dict[str, dict[str, Any]]) -> set[str]:
    """The runs whose pushed version is the highest present under its ``serving_dir/model_name``.

    Args:
      pushed: ``{run: its pushed.json}`` (records of runs that were not pushed are skipped).
    """
    highest: dict[str, int | None] = {}
    served = set()
    for run, record in pushed.items():
        if record.get("pushed") is False or record.get("version") is None:
            continue
        serving_dir = record.get("serving_dir") or artifacts.serving_dir(root)
        model_dir = os.path.join(serving_dir, str(record.get("model_name", "")))
        if model_dir not in highest:
            try:
                versions = [int(n) for n in os.listdir(model_dir) if n.isdigit()]
            except OSError:
                versions = []
            highest[model_dir] = max(versions, default=None)
        if highest[model_dir] is not None and int(record["version"]) == highest[model_dir]:
            served.add(run)
    return served


def _history_metric(row: dict[str, Any], metric: str) -> Any:
    return row.get(metric, row.get(f"val_{metric}"))


def compare_runs(root: str, sort: str = DEFAULT_SORT) -> list[dict[str, Any]]:
    """One row per run of ``root`` that has a Trainer, best first by column ``sort``.

    Numeric columns rank high first (metrics are maximised), text columns
    alphabetically; empty cells (a run not evaluated yet) come last. The
    validation value comes from the Evaluator, or before it from the Trainer's best epoch.

    Raises:
      KeyError: ``sort`` is not a column of the table.
    """
    configs: dict[str, dict[str, Any]] = {}
    pushed: dict[str, dict[str, Any]] = {}
    dataset = dataset_of(root)
    rows: dict[str, dict[str, Any]] = {}  # by run name: one row per run
    for run in artifacts.list_runs(root):
        trainer = artifacts.stage_dir(root, "Trainer", run)
        config = configs[run] = _read_json(os.path.join(trainer, artifacts.CONFIG)) or {}
        history = _read_json(os.path.join(trainer, artifacts.HISTORY)) or {}
        metrics = _read_json(os.path.join(artifacts.stage_dir(root, "Evaluator", run), artifacts.METRICS)) or {}
        record = _read_json(os.path.join(artifacts.stage_dir(root, "Pusher", run), artifacts.PUSHED))
        if record:
            pushed[run] = record
        valid_metric = str(metrics.get("valid_metric") or config.get("valid_metric") or "ndcg@10")
        valid = metrics.get("valid", {}).get(valid_metric)
        if valid is None:
            valid = (history.get("best_metrics") or {}).get(valid_metric)
        row: dict[str, Any] = {
            "run": run,
            "model": config.get("model", metrics.get("model")),
            "loss": config.get("loss", metrics.get("loss")),
            "dataset": dataset,
            SERVED: "",
            VALID_METRIC: valid_metric,
            VALID: valid,
        }
        for column in TEST_COLUMNS:
            split, metric = column.split(" ")
            row[column] = metrics.get(split, {}).get(metric)
        row["history masked"] = bool(config.get("exclude_history", False))
        row["best epoch"] = history.get("best_epoch")
        seconds = history.get("train_seconds")
        row["train s"] = round(float(seconds), 1) if seconds is not None else None
        rows[run] = row
    for run in served_runs(root, pushed):
        rows[run][SERVED] = SERVED_MARK
    for row in rows.values():  # what tells apart the runs of the same model
        mine = configs[row["run"]]
        peers = [c for c in configs.values() if c.get("model") == mine.get("model")]
        differing = sorted(k for k in mine if k not in ("model", "loss") and len({repr(c.get(k)) for c in peers}) > 1)
        row["settings"] = " ".join(f"{k}={mine[k]}" for k in differing)
    return sort_rows(list(rows.values()), sort)


def sort_rows(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """``rows`` ranked by ``column``: numbers high first, text A-Z, empty cells last; ties keep run order."""
    if rows and column not in rows[0]:
        raise KeyError(f"--sort {column!r} is not a column; columns: {', '.join(rows[0])}")

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row[column]
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            return (2, 0)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, -value)
        return (1, str(value))

    return sorted(rows, key=key)


def format_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs"
    header = list(rows[0])
    cells = [[_cell(row[h], h) for h in header] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "train s" else f"{value:.4f}"
    return str(value)


def plot_comparison(root: str, rows: list[dict[str, Any]]) -> bytes:
    """``compare.png``: per run, training loss and validation metric per epoch, and test metrics as bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(15, 4.5))
    figure.subplots_adjust(left=0.04, right=0.99, bottom=0.12, top=0.92, wspace=0.15)
    loss_axes, valid_axes, test_axes = figure.subplots(1, 3)
    valid_metrics = sorted({row[VALID_METRIC] for row in rows})
    for row in rows:
        history = _read_json(os.path.join(artifacts.stage_dir(root, "Trainer", row["run"]), artifacts.HISTORY)) or {}
        epochs = history.get("history") or []
        label = row["run"] + (f" ({SERVED})" if row[SERVED] else "")
        points = [(e["epoch"], e["loss"]) for e in epochs if e.get("loss") is not None]
        if points:
            loss_axes.plot(*zip(*points), marker=".", label=label)
        points = [(e["epoch"], _history_metric(e, row[VALID_METRIC])) for e in epochs]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            valid_axes.plot(*zip(*points), marker=".", label=label)
    loss_axes.set(title="training loss", xlabel="epoch")
    for axes in (loss_axes, valid_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    valid_axes.set(title=f"validation {' / '.join(valid_metrics)}", xlabel="epoch")
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        values = [row[c] if row[c] is not None else 0.0 for c in TEST_COLUMNS]
        label = row["run"] + (f" ({SERVED})" if row[SERVED] else "")
        test_axes.bar([j + i * width for j in range(len(TEST_COLUMNS))], values, width, label=label)
    test_axes.set_xticks([j + 0.4 - width / 2 for j in range(len(TEST_COLUMNS))],
                         [c.split(" ", 1)[1] for c in TEST_COLUMNS])
    test_axes.set(title="test metrics")
    for axes in (loss_axes, valid_axes, test_axes):
        if axes.has_data():
            axes.legend(fontsize="x-small")
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def write_comparison(root: str, rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """Writes ``compare.csv``, ``compare.json`` and ``compare.png`` under ``root``; returns their paths."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    csv_path = artifacts.join(root, artifacts.COMPARE_CSV)
    json_path = artifacts.join(root, artifacts.COMPARE_JSON)
    png_path = artifacts.join(root, artifacts.COMPARE_PNG)
    artifacts.atomic_write_text(csv_path, buffer.getvalue())
    artifacts.atomic_write_json(json_path, rows)
    artifacts.atomic_write_bytes(png_path, plot_comparison(root, rows))
    return csv_path, json_path, png_path


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.cli import FlagParser

    parser = FlagParser(prog="python -m pipeline.compare", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("root", nargs="?", default=artifacts.DEFAULT_ROOT,
                        help=f"pipeline root (default {artifacts.DEFAULT_ROOT})")
    parser.add_argument("--sort", default=DEFAULT_SORT, metavar="COLUMN",
                        help=f"the column to rank by (default {DEFAULT_SORT!r}: each run's validation metric; "
                        "e.g. 'test ndcg@10', 'train s')")
    args = parser.parse_args(argv)
    try:
        rows = compare_runs(args.root, args.sort)
    except KeyError as e:
        parser.error(str(e.args[0]))
    if not rows:
        print(f"error: no runs under {artifacts.runs_dir(args.root)}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    paths = write_comparison(args.root, rows)
    print(f"written: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
