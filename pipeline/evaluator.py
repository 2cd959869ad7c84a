"""The Evaluator stage: full-ranking metrics of the trained model on valid and test, and its blessing.

Writes ``metrics.json`` =
``{"model", "loss", "valid": {...}, "test": {...}, "best_epoch", "train_seconds", "exclude_history",
"eval_users", "valid_metric", "data"}`` (each split's ``num_users`` is how many users it ranked:
all of them, or the seeded sample of ``eval_users``), copies the Trainer's training curve beside it, and
**blesses** the run or not (``blessing.json``, :func:`bless`): as TFX's
Evaluator validates a candidate against the baseline model before its Pusher
may push, a run is blessed when it is not worse than the model currently
served under the same name, on the same data, by its ``valid_metric`` on the
test split, and passes every absolute threshold.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq.config import ConfigError, shown

BLESSING_SPLIT = "test"  # the split a candidate and the served model are compared on


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    """When the Evaluator blesses a run for the Pusher (field names are ``pipeline.run`` flags).

    Attributes:
      bless_threshold: absolute floors on the test split, e.g. ``ndcg@10=0.03`` (several
        comma-separated); a run below any of them is not blessed.
      bless_tolerance: how far (absolute) below the served model's figure a run may be
        and still be blessed.
    """

    bless_threshold: tuple[str, ...] = ()
    bless_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.bless_tolerance <= 1:  # every metric is in [0, 1]
            raise ConfigError(f"--bless_tolerance must be in [0, 1], got {self.bless_tolerance}")
        self.thresholds()  # validates

    def thresholds(self) -> dict[str, float]:
        """``{metric: floor}`` from ``bless_threshold``."""
        from tfseq.metrics import METRICS, UNCUT_METRICS  # the names, without TensorFlow

        floors: dict[str, float] = {}
        items = [part for entry in self.bless_threshold for part in str(entry).replace(",", " ").split()]
        for item in items:
            metric, sep, value = item.partition("=")
            metric = metric.strip().lower()
            name, _, k = metric.partition("@")
            try:
                floor = float(value)
            except ValueError:
                floor = math.nan
            known = metric in UNCUT_METRICS or (name in METRICS and k.isdigit() and int(k) >= 1)
            if not sep or not known or not 0 <= floor <= 1:
                raise ConfigError(f"--bless_threshold must look like ndcg@10=0.03, a floor in [0, 1] (metrics: "
                                  f"{', '.join(METRICS)}); got {shown(item)}")
            floors[metric] = floor
        return floors


@dataclasses.dataclass(frozen=True)
class ServingTarget:
    """Where the Pusher would push: ``<serving_dir>/<model_name>/<version>``."""

    serving_dir: str
    model_name: str

    @property
    def model_dir(self) -> str:
        return artifacts.join(self.serving_dir, self.model_name)


METRIC_NAMES = ("recall", "mrr", "ndcg", "hit", "precision", "map")
# With one target per user (leave-one-out), hit@K equals recall@K and map@K equals mrr@K:
# the table shows such a row once and says so under it.
SAME_WITH_ONE_TARGET = {"hit": "recall", "map": "mrr"}


def format_table(metrics: dict[str, Any]) -> str:
    """A fixed-width table: one row per split and metric, one column per K; no row printed twice."""
    ks = sorted({int(k.split("@")[1]) for k in metrics["test"] if "@" in k})
    header = f"{'':6}{'':10}" + "".join(f"{'@' + str(k):>10}" for k in ks)
    masked = "  history masked" if metrics.get("exclude_history") else ""
    sampled = f"  sample of {metrics['test'].get('num_users')} users" if metrics.get("eval_users") else ""
    lines = [
        f"model: {metrics['model']}  loss: {metrics['loss']}  best epoch: {metrics['best_epoch']}  "
        f"train: {metrics['train_seconds']:.1f}s{masked}{sampled}",
        header,
    ]
    merged: set[str] = set()
    for split in ("valid", "test"):
        rows = {name: [metrics[split].get(f"{name}@{k}") for k in ks] for name in METRIC_NAMES}
        for name in METRIC_NAMES:
            row = rows[name]
            if all(v is None for v in row):
                continue
            twin = SAME_WITH_ONE_TARGET.get(name)
            if twin is not None and rows[twin] == row:
                merged.add(f"{name} = {twin}")
                continue
            cells = "".join(f"{v:>10.4f}" if v is not None else f"{'-':>10}" for v in row)
            lines.append(f"{split:6}{name:10}{cells}")
        uncut = {k: v for k, v in metrics[split].items() if "@" not in k and k != "num_users"}
        for name, value in sorted(uncut.items()):  # over the whole catalogue, e.g. RecBole's MRR without @K
            lines.append(f"{split:6}{name + '@all':10}{value:>10.4f}")
    if merged:
        lines.append(f"({', '.join(sorted(merged))} with one target per user)")
    return "\n".join(lines)


def run_evaluator(
    config: EvaluatorConfig,
    trainer_dir: str,
    transform_dir: str,
    output_dir: str,
    *,
    serving: ServingTarget | None = None,
    verbose: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluates the Trainer's best weights on valid and test; writes ``metrics.json`` and ``blessing.json``.

    Args:
      config: the blessing thresholds and tolerance.
      serving: where the Pusher would push; the model served there is the baseline
        (None: no baseline, only the thresholds count).
      verbose: print the result table.
      progress: a line per split, and one every 30 s while a split is ranked.

    Returns:
      The metrics record (as ``metrics.json``).
    """
    from tfseq.data.reader import evaluation_dataset
    from tfseq.data.vocab import DatasetMetadata
    from tfseq.evaluation import evaluate
    from tfseq.experiment import load_trained_model
    from tfseq.metrics import reported
    from tfseq.training import validation_ks

    metadata = DatasetMetadata.load(transform_dir)
    model, trained = load_trained_model(trainer_dir, transform_dir)
    results: dict[str, Any] = {"model": trained.model, "loss": trained.loss}
    for split in ("valid", "test"):
        data = evaluation_dataset(
            transform_dir,
            metadata,
            split,
            max_seq_len=trained.train.max_seq_len,
            batch_size=trained.train.eval_batch_size,
            side_inputs=model.side_inputs,
            sample_users=trained.train.eval_users,
            seed=trained.train.seed,
        )
        train = trained.train
        ks = validation_ks(train.valid_metric, train.topk)
        users = metadata.splits[split].records
        users = min(users, train.eval_users) if train.eval_users else users
        report = _SplitProgress(split, users, metadata.num_items - 1) if progress else None
        metrics = evaluate(model, data, ks=ks, exclude_history=train.exclude_history, progress=report)
        if report is not None:
            report.done()
        results[split] = reported(metrics, train.metrics, train.valid_metric)
    history = artifacts.read_json(artifacts.join(trainer_dir, artifacts.HISTORY))
    results["best_epoch"] = history.get("best_epoch")
    results["train_seconds"] = history.get("train_seconds")
    results["exclude_history"] = trained.train.exclude_history
    results["eval_users"] = trained.train.eval_users  # 0: every user; else the sample drawn
    results["valid_metric"] = trained.train.valid_metric
    results["data"] = data_fingerprint(transform_dir)
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.METRICS), results)
    blessing = bless(results, config, baseline_of(serving) if serving else None)
    blessing["served"] = serving.model_dir if serving else None
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.BLESSING), blessing)
    if serving is not None:
        print(f"[Evaluator] {blessing['reason']}", flush=True)
    curve = artifacts.join(trainer_dir, artifacts.CURVE)
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(curve):
        FileSystems.copy([curve], [artifacts.join(output_dir, artifacts.CURVE)])
    if verbose:
        print(format_table(results), flush=True)
    return results


class _SplitProgress:
    """Lines a person follows while a split is ranked: one every ``every`` seconds, and one at the end."""

    def __init__(self, split: str, users: int, items: int, every: float = 30.0) -> None:
        import time

        self.split, self.users, self.items, self.every = split, users, items, every
        self._clock = time.monotonic
        self.start = self.last = self._clock()
        self.ranked = 0

    def __call__(self, ranked: int) -> None:
        self.ranked = ranked
        now = self._clock()
        if now - self.last >= self.every and 0 < ranked < self.users:
            elapsed = now - self.start
            left = elapsed * (self.users - ranked) / ranked
            print(f"[Evaluator] {self.split}: {ranked:,} of {self.users:,} users ranked, {elapsed:.0f} s, "
                  f"about {left:.0f} s left", flush=True)
            self.last = now

    def done(self) -> None:
        print(f"[Evaluator] {self.split}: {self.ranked:,} users ranked against {self.items:,} items in "
              f"{self._clock() - self.start:.1f} s", flush=True)


# ----------------------------------------------------------------------------- blessing


def data_fingerprint(transform_dir: str) -> str | None:
    """The identity of the data a run was trained and evaluated on: the Transform output's build record."""
    try:
        return artifacts.fingerprint(artifacts.read_json(artifacts.join(transform_dir, artifacts.SPEC)))
    except (OSError, ValueError):
        return None


def baseline_of(target: ServingTarget) -> dict[str, Any] | None:
    """The model served now at ``target`` (its highest version) and its evaluation, or None when none is.

    Returns:
      ``{"version", "path", "run", "metrics"}``; ``metrics`` is None when the
      version was not pushed by a pipeline whose run folder is still there.
    """
    from serving.signature import EXPORT_INFO_FILE, list_versions

    versions = list_versions(target.model_dir)
    if not versions:
        return None
    path = artifacts.join(target.model_dir, str(versions[-1]))
    baseline: dict[str, Any] = {"version": versions[-1], "path": path, "run": None, "metrics": None}
    try:
        info = artifacts.read_json(artifacts.join(path, EXPORT_INFO_FILE))
        trainer_dir = str(info["trainer_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return baseline
    run_dir = posixpath.dirname(trainer_dir.rstrip("/"))
    baseline["run"] = posixpath.basename(run_dir)
    try:
        baseline["metrics"] = artifacts.read_json(artifacts.join(run_dir, "Evaluator", artifacts.METRICS))
    except (OSError, ValueError):
        pass
    return baseline


def bless(metrics: dict[str, Any], config: EvaluatorConfig, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict on a candidate run: blessed or not, with both figures and the reason.

    The candidate must pass every ``bless_threshold`` on the test split, and
    must not be worse (beyond ``bless_tolerance``) than the served model by the
    candidate's ``valid_metric`` on the same split of the same data. A served
    version trained on other data is not a comparable baseline: the run is not
    blessed (serve it under another ``--model_name``, or ``--push always``).

    Returns:
      The ``blessing.json`` record: ``blessed``, ``reason``, ``metric``,
      ``split``, ``candidate``, ``baseline`` (``{"version", "run", "value"}`` or
      None), ``tolerance``, ``thresholds`` (``{metric: {"floor", "value", "passed"}}``).
    """
    metric = str(metrics.get("valid_metric") or "ndcg@10")
    candidate = _figure(metrics, metric)
    record: dict[str, Any] = {
        "metric": metric, "split": BLESSING_SPLIT, "candidate": candidate, "baseline": None,
        "tolerance": config.bless_tolerance, "thresholds": {},
    }
    failures = []
    for name, floor in config.thresholds().items():
        value = _figure(metrics, name)
        passed = value is not None and value >= floor
        record["thresholds"][name] = {"floor": floor, "value": value, "passed": passed}
        if not passed:
            failures.append(f"{BLESSING_SPLIT} {name} {_fmt(value)} is below the threshold {floor:g}")
    if baseline is not None:
        served = baseline.get("metrics")
        value = _figure(served, metric) if served else None
        record["baseline"] = {"version": baseline["version"], "run": baseline.get("run"), "value": value}
        where = f"version {baseline['version']}" + (f" (run {baseline['run']})" if baseline.get("run") else "")
        if served and served.get("data") and metrics.get("data") and served["data"] != metrics["data"]:
            failures.append(f"the served {where} was trained on other data; push under another --model_name")
        elif value is not None and candidate is not None and candidate < value - config.bless_tolerance:
            failures.append(f"{BLESSING_SPLIT} {metric} {candidate:.4f} is worse than the served {where}'s "
                            f"{value:.4f}" + (f" (tolerance {config.bless_tolerance:g})"
                                              if config.bless_tolerance else ""))
    if candidate is None:
        failures.append(f"the run has no {BLESSING_SPLIT} {metric}")
    record["blessed"] = not failures
    if failures:
        record["reason"] = "not blessed: " + "; ".join(failures)
    elif record["baseline"] and record["baseline"]["value"] is not None:
        record["reason"] = (f"blessed: {BLESSING_SPLIT} {metric} {candidate:.4f} against the served version "
                            f"{record['baseline']['version']}'s {record['baseline']['value']:.4f}")
    else:
        record["reason"] = f"blessed: {BLESSING_SPLIT} {metric} {_fmt(candidate)} (no served model to compare with)"
    return record


def _figure(metrics: dict[str, Any] | None, metric: str) -> float | None:
    value = ((metrics or {}).get(BLESSING_SPLIT) or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
