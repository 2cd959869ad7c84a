"""Search results: one record per trial, and the files derived from them.

Each finished trial leaves ``<output_dir>/trials/<trial_id>/result.json``
(a :class:`TrialRecord`, written last and atomically, so a trial interrupted
halfway has none and is run again). Everything else is rebuilt from those
records after every trial, so the files always agree with each other:

* ``hyper.result``: RecBole's ``run_hyper.py`` layout -- per completed trial
  the parameters line (``learning_rate:0.001, temperature:0.07``), then
  ``Valid result:`` and ``Test result:`` lines with recall / mrr / ndcg / hit /
  precision @10 (4 decimals). Failed trials are left out: RecBole's layout has
  no place for them; ``trials.jsonl`` has them.
* ``trials.jsonl``: one JSON object per finished trial (completed or failed):
  trial id, params, status, seconds, objective, valid / test metrics at every
  K, error, finish time, and the trial's runs.
* ``best.json``: the flat experiment config of the completed trial with the
  highest objective (ties: the earlier trial), model and loss included, for
  ``python -m pipeline.run --config best.json``. Never a failed trial.
* ``objective.png``: the objective per trial with the best-so-far line (failed
  trials as red crosses); ``heatmap.png`` for a space of two discrete params.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import posixpath
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from pipeline import artifacts

COMPLETED = "completed"
FAILED = "failed"
RESULT = "result.json"
HYPER_RESULT = "hyper.result"
TRIALS = "trials.jsonl"
BEST = "best.json"
OBJECTIVE_PLOT = "objective.png"
HEATMAP = "heatmap.png"
RESULT_METRICS = ("recall", "mrr", "ndcg", "hit", "precision")  # RecBole's default metrics
RESULT_K = 10  # RecBole's default topk


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """What one trial did.

    Attributes:
      trial_id: KerasTuner's trial id (``"00"``, ``"01"`` ...; the directory name).
      params: the searched values (plus ``epochs`` when Hyperband sets the budget).
      status: :data:`COMPLETED` or :data:`FAILED`.
      seconds: wall time of the trial (all its executions).
      objective: the validation objective, the mean over executions (None when failed).
      valid: validation metrics of the best epoch, mean over executions (``{"ndcg@10": ...}``).
      test: test metrics of the restored best weights, mean over executions.
      error: ``"ExceptionType: message"`` of a failed trial.
      config: the flat experiment config trained (the first execution's seed).
      runs: one dict per execution: ``name`` (directory under the trial's), ``seed``,
        ``objective``, ``best_epoch``, ``epochs_run``.
      finished_at: ISO-8601 UTC time the trial ended.
    """

    trial_id: str
    params: dict[str, Any]
    status: str
    seconds: float
    objective: float | None = None
    valid: dict[str, float] = dataclasses.field(default_factory=dict)
    test: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    runs: tuple[dict[str, Any], ...] = ()
    finished_at: str = ""

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def order(self) -> int:
        return int(self.trial_id)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["runs"] = list(self.runs)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialRecord":
        values = dict(values)
        values["runs"] = tuple(values.get("runs", ()))
        return cls(**values)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(trial_dir: str, record: TrialRecord) -> None:
    import tensorflow as tf  # gfile: any TF filesystem; imported here, not by the command line

    tf.io.gfile.makedirs(trial_dir)
    artifacts.atomic_write_text(posixpath.join(trial_dir, RESULT), json.dumps(record.to_dict(), indent=1))


def load_records(trials_dir: str) -> list[TrialRecord]:
    """Every finished trial under ``trials_dir``, in trial order."""
    import tensorflow as tf

    records = []
    for path in tf.io.gfile.glob(posixpath.join(trials_dir, "*", RESULT)):
        with tf.io.gfile.GFile(path, "r") as f:
            records.append(TrialRecord.from_dict(json.load(f)))
    return sorted(records, key=lambda r: r.order)


def best_record(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the highest objective (the earliest on ties); None if none completed."""
    completed = [r for r in records if r.completed and r.objective is not None and math.isfinite(r.objective)]
    if not completed:
        return None
    return max(completed, key=lambda r: (r.objective, -r.order))


def params_line(params: dict[str, Any]) -> str:
    """RecBole's ``params2str``: ``name:value, name:value``."""
    return ", ".join(f"{name}:{value}" for name, value in params.items())


def _metrics_line(metrics: dict[str, float]) -> str:
    """RecBole's ``dict2str`` of the @10 metrics, 4 decimals (RecBole's ``metric_decimal_place``)."""
    cells = []
    for name in RESULT_METRICS:
        key = f"{name}@{RESULT_K}"
        if key in metrics:
            cells.append(f"{key} : {round(float(metrics[key]), 4)}")
    return "    ".join(cells)


def hyper_result_text(records: Sequence[TrialRecord]) -> str:
    blocks = [
        f"{params_line(r.params)}\nValid result:\n{_metrics_line(r.valid)}\nTest result:\n{_metrics_line(r.test)}\n\n"
        for r in records
        if r.completed
    ]
    return "".join(blocks)


def trials_jsonl_text(records: Sequence[TrialRecord]) -> str:
    return "".join(json.dumps(r.to_dict()) + "\n" for r in records)


def write_reports(output_dir: str, records: Sequence[TrialRecord]) -> TrialRecord | None:
    """Rewrites ``hyper.result``, ``trials.jsonl`` and ``best.json``; returns the best record."""
    artifacts.atomic_write_text(posixpath.join(output_dir, HYPER_RESULT), hyper_result_text(records))
    artifacts.atomic_write_text(posixpath.join(output_dir, TRIALS), trials_jsonl_text(records))
    best = best_record(records)
    if best is not None:
        best_json = json.dumps(best.config, indent=1, sort_keys=True) + "\n"
        artifacts.atomic_write_text(posixpath.join(output_dir, BEST), best_json)
    return best


def mean_metrics(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts (keys every dict has)."""
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    return {k: float(np.mean([d[k] for d in dicts])) for k in keys}


# ----------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)  # Agg rendering without pyplot's global state
    return figure


def _save(figure: Any, path: str) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    artifacts.atomic_write_bytes(path, buffer.getvalue())


def plot_objective(records: Sequence[TrialRecord], objective: str, path: str, title: str = "") -> None:
    """The objective of every trial in trial order, the best-so-far line, failed trials as red crosses."""
    figure = _figure(8, 4.5)
    axes = figure.subplots()
    numbers = np.arange(1, len(records) + 1)
    values = np.array([r.objective if r.completed and r.objective is not None else np.nan for r in records])
    done = ~np.isnan(values)
    axes.plot(numbers[done], values[done], "o", color="tab:blue", label=f"trial {objective}")
    best_so_far = np.fmax.accumulate(np.where(done, values, -np.inf)) if len(values) else values
    best_so_far = np.where(np.isfinite(best_so_far), best_so_far, np.nan)
    axes.step(numbers, best_so_far, where="post", color="tab:green", label="best so far")
    if (~done).any():
        floor = np.nanmin(values) if done.any() else 0.0
        axes.plot(numbers[~done], np.full((~done).sum(), floor), "x", color="tab:red", markersize=9,
                  label="failed")
    axes.set(xlabel="trial", ylabel=f"validation {objective}", title=title or f"validation {objective} per trial")
    axes.set_xticks(numbers if len(numbers) <= 30 else numbers[:: max(1, len(numbers) // 30)])
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    _save(figure, path)


def heatmap_cells(
    records: Sequence[TrialRecord], rows: tuple[str, Sequence[Any]], columns: tuple[str, Sequence[Any]]
) -> np.ndarray:
    """``[len(row values), len(column values)]`` mean objective per cell; NaN where no trial completed."""
    (row_name, row_values), (column_name, column_values) = rows, columns
    sums = np.zeros((len(row_values), len(column_values)))
    counts = np.zeros_like(sums)
    for r in records:
        if not r.completed or r.objective is None:
            continue
        try:
            i = list(row_values).index(r.params[row_name])
            j = list(column_values).index(r.params[column_name])
        except (KeyError, ValueError):
            continue
        sums[i, j] += r.objective
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def plot_heatmap(
    records: Sequence[TrialRecord],
    rows: tuple[str, Sequence[Any]],
    columns: tuple[str, Sequence[Any]],
    objective: str,
    path: str,
) -> None:
    """Objective over a two-parameter grid, each cell annotated ("-" = not run or failed)."""
    cells = heatmap_cells(records, rows, columns)
    figure = _figure(1.6 + 1.3 * len(columns[1]), 1.4 + 0.7 * len(rows[1]))
    axes = figure.subplots()
    image = axes.imshow(np.ma.masked_invalid(cells), cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label=f"validation {objective}")
    axes.set_xticks(range(len(columns[1])), [str(v) for v in columns[1]])
    axes.set_yticks(range(len(rows[1])), [str(v) for v in rows[1]])
    axes.set(xlabel=columns[0], ylabel=rows[0], title=f"validation {objective}")
    finite = cells[np.isfinite(cells)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(cells.shape[0]):
        for j in range(cells.shape[1]):
            value = cells[i, j]
            text = "-" if np.isnan(value) else f"{value:.4f}"
            color = "black" if np.isnan(value) or value > middle else "white"  # NaN cells are blank
            axes.text(j, i, text, ha="center", va="center", color=color)
    _save(figure, path)
