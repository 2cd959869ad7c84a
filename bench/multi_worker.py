"""Multi-worker training speed: one process against two local workers (`--distribute multi_worker`).

The same Trainer (`python -m pipeline.trainer`) on ml-100k's Transform output, SASRec with the
full softmax, a few epochs: once as one process (`--distribute none`) and once as two worker
processes on localhost, each with its own `TF_CONFIG` (the chief writes the outputs). Both keep
the global batch, so they take the same number of steps; the speed-up is the ratio of their
steady seconds per epoch (the first epoch, which traces, left out). On one 2-core machine two
workers share the cores and add a collective all-reduce per step, so the speed-up can be below 1:
the figure is there to show what the distribution costs, not what a cluster gains.

    python bench/multi_worker.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SOURCES, WORK, data_pipeline, machine, write_results  # noqa: E402

NAME = "multi_worker"
MODEL = ["--model", "sasrec", "--loss", "softmax", "--batch_size", "256"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def trainer_command(root: Path, argv: list[str], distribute: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.trainer", "--output_dir", str(root), *argv, "--distribute", distribute,
            "--quiet"]


def steady_epoch_seconds(root: Path) -> tuple[float, int, dict[str, Any]]:
    """Mean seconds of the epochs after the first, the replicas and the test-free validation row."""
    history = json.loads(next(root.glob("runs/*/Trainer/history.json")).read_text())
    seconds = [row["train_seconds"] for row in history["history"]]
    steady = seconds[1:] or seconds
    last = {k: v for k, v in history["history"][-1].items() if k.startswith("val_ndcg")}
    return sum(steady) / len(steady), int(history.get("replicas", 1)), last


def single(data: Path, argv: list[str]) -> dict[str, Any]:
    root = WORK / "multi_worker" / "single"
    _fresh_copy(data, root)
    start = time.perf_counter()
    subprocess.run(trainer_command(root, argv, "none"), cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    seconds, replicas, valid = steady_epoch_seconds(root)
    return {"workers": 1, "replicas": replicas, "seconds_per_epoch": round(seconds, 2), "wall_seconds": round(wall, 1),
            "valid_last_epoch": valid}


def two_workers(data: Path, argv: list[str]) -> dict[str, Any]:
    root = WORK / "multi_worker" / "two"
    _fresh_copy(data, root)
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    start = time.perf_counter()
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(trainer_command(root, argv, "multi_worker"), cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, err = process.communicate(timeout=3600)
        if process.returncode:
            raise RuntimeError(f"a worker failed ({process.returncode}):\n{err[-3000:]}")
    wall = time.perf_counter() - start
    seconds, replicas, valid = steady_epoch_seconds(root)
    return {"workers": 2, "replicas": replicas, "seconds_per_epoch": round(seconds, 2), "wall_seconds": round(wall, 1),
            "valid_last_epoch": valid}


def _fresh_copy(data: Path, root: Path) -> None:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(data, root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(SOURCES))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    data = WORK / "multi_worker" / f"data-{args.dataset}"
    data_pipeline(SOURCES[args.dataset], data).run(stop_after="Transform")
    train = [*MODEL, "--epochs", str(args.epochs), "--patience", str(args.epochs)]
    one = single(data, train)
    print(f"[multi_worker] one process: {one}", flush=True)
    two = two_workers(data, train)
    print(f"[multi_worker] two workers: {two}", flush=True)
    write_results(NAME, {
        "dataset": args.dataset, "epochs": args.epochs, "flags": " ".join(train),
        "single": one, "two_workers": two,
        "speed_up": round(one["seconds_per_epoch"] / two["seconds_per_epoch"], 3),
        "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
