"""Shared benchmark plumbing: dataset locations, preprocessing once, JSON results written atomically."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TFSEQ_DATASETS", REPO.parent / "shared" / "datasets"))
RESULTS = REPO / "bench" / "results"
WORK = Path(os.environ.get("TFSEQ_BENCH_WORK", "/tmp/tfseq-bench"))

# name -> ExampleGen settings (pipeline.cli names)
SOURCES: dict[str, dict[str, Any]] = {
    "beauty": {"input": str(DATASETS / "amazon-beauty" / "Beauty.txt"), "input_format": "sequence"},
    "ml-100k": {"input": str(DATASETS / "ml-100k" / "ml-100k.inter"), "input_format": "recbole"},
}


def data_pipeline(settings: dict[str, Any], root: Path, beam_options: Any = None, progress: int = 0):
    """The pipeline of ``settings`` (any pipeline.cli names) under ``root``, built as pipeline.run builds it."""
    from pipeline import cli
    from pipeline.pipeline import create_pipeline

    configs = cli.build_configs(settings)
    return create_pipeline(configs, root=str(root), beam_options=beam_options, progress=progress)


def command_of(settings: dict[str, Any]) -> str:
    """The ``python -m pipeline.run`` command line of ``settings``, as a user on a fresh clone types it."""
    words = ["python -m pipeline.run"]
    for key, value in settings.items():
        if isinstance(value, str) and Path(value).is_relative_to(DATASETS):  # the shared datasets beside the clone
            value = "../shared/datasets/" + str(Path(value).relative_to(DATASETS))
        words.append(f"--{key} {str(value).lower() if isinstance(value, bool) else value}")
    return " ".join(words)


def run_measured(settings: dict[str, Any], root: Path) -> tuple[Any, dict[str, Any]]:
    """Runs ``settings`` through the Evaluator under ``root``; returns (the PipelineResult, its row).

    The row: the run's name, valid and test metrics, best and run epochs, seconds per epoch of
    training alone (steady state: after the first epoch, which traces), wall seconds, the
    process's peak RSS and the run's config.
    """
    pipeline = data_pipeline(settings, root, progress=2)
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = pipeline.run(stop_after="Evaluator")
        wall = time.perf_counter() - start
    return result, result_row(result, wall, memory.peak_mib)


def result_row(result: Any, wall_seconds: float, peak_rss_mib: float) -> dict[str, Any]:
    """:func:`run_measured`'s row of a finished run (``pipeline.pipeline.PipelineResult``), timed by the caller."""
    history = json.loads(Path(result.trainer_dir, "history.json").read_text())
    epoch_seconds = [row["train_seconds"] for row in history["history"] if row.get("train_seconds") is not None]
    steady = epoch_seconds[1:] or epoch_seconds
    return {
        "run": result.run,
        "valid": result.metrics["valid"],
        "test": result.metrics["test"],
        "best_epoch": result.metrics["best_epoch"],
        "epochs_run": history["epochs_run"],
        "seconds_per_epoch": sum(steady) / len(steady) if steady else None,
        "train_seconds": history["train_seconds"],
        "wall_seconds": wall_seconds,
        "peak_rss_mib": peak_rss_mib,
        "config": json.loads(Path(result.trainer_dir, "config.json").read_text()),
    }


def trained_test_data(trainer_dir: str, transform_dir: str, min_window: int = 0) -> tuple[Any, Any]:
    """A trained run's model and its test batches (with the side inputs the model reads).

    The batches hold each history's last ``max(max_seq_len, min_window)`` items. The transformer
    models (``sasrec``, ``sasrec_f``, ``difsr``, ``core_*``) encode their own last ``max_seq_len``
    only, so for them a wider read changes no score and lets masking reach the items that a
    short-window run does not read; a recurrent model would read them all.
    """
    from tfseq.data.reader import evaluation_dataset
    from tfseq.data.vocab import DatasetMetadata
    from tfseq.experiment import load_trained_model

    model, config = load_trained_model(trainer_dir, transform_dir)
    data = evaluation_dataset(
        transform_dir, DatasetMetadata.load(transform_dir), "test",
        max_seq_len=max(config.train.max_seq_len, min_window), batch_size=config.train.eval_batch_size,
        side_inputs=model.side_inputs,
    )
    return model, data


def masked_test_metrics(model: Any, data: Any) -> dict[str, float]:
    """A trained model's test metrics (:func:`trained_test_data`) with the history masked
    (``exclude_history``), whatever it was trained with."""
    from tfseq.evaluation import evaluate

    return evaluate(model, data, exclude_history=True)


def history_in_top(model: Any, data: Any, k: int = 20) -> dict[str, float]:
    """Where a trained model's unmasked top ``k`` test slots go (:func:`trained_test_data`): the mean
    number of history items among them, and the share of users whose first item is in the history /
    is its last item."""
    import numpy as np

    from tfseq.data import schema
    from tfseq.scoring import score_items

    in_top: list[int] = []
    first_in_history: list[bool] = []
    first_is_last: list[bool] = []
    for batch in data:
        items = batch[schema.ITEM_IDS].numpy()
        scores = score_items(model, batch)
        top = np.argsort(-scores.numpy(), axis=1)[:, :k]
        last = items[np.arange(len(items)), np.count_nonzero(items, axis=1) - 1]
        seen = np.array([np.isin(row, history[history != schema.PAD_ID]) for row, history in zip(top, items)])
        in_top.extend(seen.sum(axis=1))
        first_in_history.extend(seen[:, 0])
        first_is_last.extend(top[:, 0] == last)
    return {f"history_items_in_top_{k}": float(np.mean(in_top)),
            "first_item_in_history": float(np.mean(first_in_history)),
            "first_item_is_last": float(np.mean(first_is_last))}


class PeakMemory:
    """Samples the process's resident memory in a background thread; ``peak_mib`` once stopped."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (0 once it has ended)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_tree(command: list[str], cwd: Path, log: Path | None = None) -> tuple[str, float, float]:
    """Runs ``command``, sampling its process tree's memory; returns (stdout and stderr, peak MiB,
    wall seconds). Raises RuntimeError with the output's end when it fails."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if log is not None:
        log.write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{output[-3000:]}")
    return output, peak / 2**20, wall


def preprocess(dataset: str) -> str:
    """Runs ExampleGen + Transform once per dataset (later calls reuse it); returns the Transform dir."""
    return data_pipeline(SOURCES[dataset], WORK / dataset).run(stop_after="Transform").transform_dir


def machine() -> dict[str, Any]:
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` atomically; its ``runs`` are merged into the file's, so two benchmark
    processes writing one results file keep each other's rows."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    if "runs" in payload and path.exists():
        on_disk = json.loads(path.read_text()).get("runs", {})
        payload = {**payload, "runs": {**on_disk, **payload["runs"]}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def read_results(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}
