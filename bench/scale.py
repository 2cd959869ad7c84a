"""How time and peak memory grow with the catalogue: the whole road at 10k, 100k and 1M items.

Each size is the synthetic log with ``users = items / 2`` and ``interactions = 10 * items``
(1M items: 500,000 users, 10,000,000 interactions). Each step runs as its own
``python -m pipeline.run --stop_after <Stage>`` process (the stages before it are up to date
and skipped), and the peak resident memory of its whole process tree is sampled:

- ``data``: ExampleGen + Transform on the DirectRunner;
- ``train``: one epoch of ``sasrec`` + ``sampled_softmax`` (validation on a sample of
  ``--eval_users`` users);
- ``evaluate``: the Evaluator, full ranking of the same sample on valid and test (users/s);
- ``export``: the Pusher's SavedModel;
- ``serve``: ``python -m serving.server`` on it, one-history requests from one gRPC client.

Seconds are the pipeline's own ``done in`` figures of the step's stages (the serving step:
start-up until the first answer). Writes ``bench/results/scale.json`` as it goes and the log-log plot
``bench/results/scale.png``.

    python bench/scale.py                      # 10k, 100k and 1M items
    python bench/scale.py --items 10000        # one size
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, RESULTS, WORK, machine, read_results, run_tree, write_results  # noqa: E402

NAME = "scale"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
STEPS = {"data": "Transform", "train": "Trainer", "evaluate": "Evaluator", "export": "Pusher"}
DONE = re.compile(r"^\[(\w+)\] done in ([0-9.]+)s", re.MULTILINE)
MODEL_NAME = "scale"


def pipeline_argv(items: int, root: Path, eval_users: int) -> list[str]:
    """``pipeline.run`` flags of the size ``items``, writing under ``root``."""
    return [
        "--runner=DirectRunner",
        "--synthetic_items", str(items),
        "--synthetic_users", str(items // 2),
        "--synthetic_interactions", str(10 * items),
        "--model", "sasrec", "--loss", "sampled_softmax", "--epochs", "1",
        "--eval_users", str(eval_users),
        "--model_name", MODEL_NAME,
        "--output_dir", str(root),
    ]


def stage_seconds(output: str) -> dict[str, float]:
    """``{"Transform": 12.3, ...}`` from the ``[Stage] done in 12.3s`` lines of a run."""
    return {stage: float(seconds) for stage, seconds in DONE.findall(output)}


def measure_stage(argv: list[str], stage: str, log: Path) -> dict[str, Any]:
    """Runs the pipeline up to ``stage`` in a subprocess: seconds of the stages it ran and the
    peak memory of its process tree."""
    command = [sys.executable, "-m", "pipeline.run", *argv, "--stop_after", stage]
    output, peak_mib, wall = run_tree(command, cwd=REPO, log=log)
    return {"seconds": stage_seconds(output), "peak_rss_mib": round(peak_mib), "wall_seconds": round(wall, 1)}


def serve(root: Path, items: int, requests: int, log: Path) -> dict[str, Any]:
    """Serves the pushed model with ``python -m serving.server`` and times one-history requests."""
    import numpy as np

    from bench.common import tree_rss
    from bench.serving import grpc_load, start_server

    start = time.perf_counter()
    process, target = start_server(root / "serving" / MODEL_NAME, max_workers=4, intra_op_threads=2,
                                   model_name=MODEL_NAME)
    try:
        rng = np.random.default_rng(0)
        histories = [[f"i{i}" for i in rng.integers(0, items, 10)] for _ in range(200)]
        from serving.client import RecommenderClient

        with RecommenderClient(target, MODEL_NAME, timeout_s=120, retries=0) as client:
            client.recommend([histories[0]])
        ready = time.perf_counter() - start
        latency = grpc_load(target, histories, concurrency=1, requests=requests, model_name=MODEL_NAME)
        peak = tree_rss(process.pid) / 2**20
    finally:
        process.terminate()
        process.wait(timeout=60)
    log.write_text(json.dumps(latency, indent=1))
    return {"seconds": {"serve": round(ready, 2)}, "peak_rss_mib": round(peak), "latency": latency}


def measure_size(items: int, eval_users: int, requests: int) -> dict[str, Any]:
    """Every step at ``items`` items (fresh root)."""
    import shutil

    root = WORK / "scale" / str(items)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    argv = pipeline_argv(items, root, eval_users)
    row: dict[str, Any] = {"items": items, "users": items // 2, "interactions": 10 * items,
                           "eval_users": eval_users}
    for step, stage in STEPS.items():
        print(f"[scale] {items:,} items: {step} ...", flush=True)
        row[step] = measure_stage(argv, stage, root / f"{step}.log")
        print(f"[scale]   {row[step]}", flush=True)
    stats = json.loads((root / "Transform" / "stats.json").read_text())
    row["vocabulary_items"] = stats["items"]
    row["logged_interactions"] = stats["interactions"]
    metrics = json.loads(next((root / "runs").glob("*/Evaluator/metrics.json")).read_text())
    row["test"] = {k: metrics["test"][k] for k in ("ndcg@10", "recall@10", "num_users")}
    evaluated = metrics["valid"]["num_users"] + metrics["test"]["num_users"]
    row["evaluate"]["users_per_second"] = round(evaluated / row["evaluate"]["seconds"]["Evaluator"], 1)
    print(f"[scale] {items:,} items: serve ...", flush=True)
    row["serve"] = serve(root, items, requests, root / "serve.log")
    print(f"[scale]   {row['serve']}", flush=True)
    return row


def plot(sizes: dict[str, Any], path: Path) -> None:
    """Log-log seconds and peak memory of each step against the number of items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(sizes.values(), key=lambda r: r["items"])
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in (*STEPS, "serve"):
        points = [(r["vocabulary_items"], r[step]) for r in rows if step in r]
        if not points:
            continue
        items = [p[0] for p in points]
        time_axis.plot(items, [sum(p[1]["seconds"].values()) for p in points], "o-", label=step)
        memory_axis.plot(items, [p[1]["peak_rss_mib"] / 1024 for p in points], "o-", label=step)
    if rows:
        first = rows[0]["vocabulary_items"]
        line = [first, rows[-1]["vocabulary_items"]]
        base = rows[0]["train"]["peak_rss_mib"] / 1024
        memory_axis.plot(line, [base, base * line[1] / line[0]], "k:", label="linear from train")
    for axis, label in ((time_axis, "seconds"), (memory_axis, "peak memory of the process tree (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("items in the vocabulary")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("tfseq end to end: users = items / 2, interactions = 10 x items, 2 cores")
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--eval_users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="one-history requests to time")
    parser.add_argument("--serve_only", action="store_true",
                        help="measure serving again on the models an earlier run exported (a quiet machine)")
    args = parser.parse_args(argv)
    sizes = dict(read_results(NAME).get("sizes", {}))
    for items in args.items:
        if args.serve_only:
            root = WORK / "scale" / str(items)
            print(f"[scale] {items:,} items: serve again ...", flush=True)
            sizes[str(items)]["serve"] = serve(root, items, args.requests, root / "serve.log")
            print(f"[scale]   {sizes[str(items)]['serve']}", flush=True)
        else:
            sizes[str(items)] = measure_size(items, args.eval_users, args.requests)
        write_results(NAME, {"sizes": sizes, "machine": machine()})
        plot(sizes, RESULTS / "scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
