"""Serving latency: gRPC at 1, 8 and 32 concurrent clients vs the SavedModel called in process.

SASRec (RecBole defaults: 2 layers, hidden 64, max_seq_len 50) over Amazon
Beauty's 12,101 items, exported with K=10, untrained (initialised) weights by
default (``--train_epochs N`` trains first; latency does not depend on the
weights). Requests are single histories from Beauty's test split (raw IDs, the
real length distribution). Per concurrency level: p50/p95/p99 latency seen by
the client (request building + gRPC + parsing) and throughput. In process: the
loaded SavedModel's ``serving_default`` called on one history at a time,
measured in blocks alternating with single-client gRPC requests
(``grpc["1_interleaved"]``), so both see the same background load; the targets
use that pair. ``load_average_1min`` records how busy the machine was.

The server runs as a subprocess (``python -m serving.server``) so client and
server do not share a GIL; ``--cpus N`` pins both to the first N CPUs.
Writes bench/results/serving.json.

    python bench/serving.py [--cpus 2] [--requests 2000] [--train_epochs 0]

Targets: p99 < 10 ms at concurrency 1 on 2 cores; gRPC p50 < 2x in-process p50.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, WORK, machine, preprocess, write_results  # noqa: E402

MODEL_NAME = "sasrec_beauty"
TARGET_P99_MS = 10.0
TARGET_OVERHEAD = 2.0


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "requests": int(len(ms)),
    }


def export_model(
    transform_dir: str, train_epochs: int, serving_dir: Path
) -> tuple[str, list[list[str]], dict]:
    """Builds (optionally trains) and exports SASRec; returns (version dir, histories, facts)."""
    from serving.export import export_saved_model
    from tfseq.data.reader import load_evaluation_split
    from tfseq.data.vocab import ITEM_VOCAB, DatasetMetadata, read_vocabulary
    from tfseq.experiment import ExperimentConfig, build_model

    metadata = DatasetMetadata.load(transform_dir)
    config = ExperimentConfig.from_flat({"model": "sasrec", "epochs": max(train_epochs, 1)})
    if train_epochs:
        from pipeline.trainer import run_trainer
        from tfseq.experiment import load_trained_model

        trainer_dir = str(WORK / "beauty" / f"serving-trainer-{train_epochs}")
        if not Path(trainer_dir, "config.json").exists():
            run_trainer(config, transform_dir, trainer_dir, verbose=1)
        model, _ = load_trained_model(trainer_dir, transform_dir)
        weights = f"trained {train_epochs} epoch(s), softmax loss"
    else:
        model = build_model(config, metadata)
        weights = "untrained (initialised) weights"
    shutil.rmtree(serving_dir, ignore_errors=True)
    vocab_path = os.path.join(transform_dir, ITEM_VOCAB)
    path = export_saved_model(
        model,
        item_vocab_path=vocab_path,
        item_counts=metadata.item_counts,
        serving_dir=str(serving_dir),
        model_name=MODEL_NAME,
        top_k=10,
        max_seq_len=config.train.max_seq_len,
    )
    raw_ids = read_vocabulary(vocab_path)
    sequences = load_evaluation_split(transform_dir, metadata, "test")
    histories = [
        [raw_ids[i] for i in sequences.sequence(u)[-config.train.max_seq_len :]]
        for u in range(len(sequences))
    ]
    facts = {
        "name": "sasrec",
        "num_items": metadata.num_items - 1,
        "hidden_size": config.model_config.embedding_size,
        "num_layers": config.model_config.num_layers,
        "max_seq_len": config.train.max_seq_len,
        "top_k": 10,
        "weights": weights,
    }
    return path, histories, facts


def in_process_caller(version_dir: str) -> Callable[[list[str]], Any]:
    """One history -> the loaded SavedModel's ``serving_default`` answer, as a user calls it."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(version_dir).signatures["serving_default"]

    def call(history: list[str]) -> Any:
        return signature(history=tf.constant(np.array([history], dtype=object)))["item_ids"].numpy()

    return call


def interleaved_latency(
    callers: dict[str, Callable[[list[str]], Any]],
    histories: list[list[str]],
    requests: int,
    block: int = 50,
) -> dict[str, dict[str, float]]:
    """Latency of each caller on the same histories, in alternating blocks of ``block`` requests.

    Alternating keeps the comparison fair when other processes load the machine unevenly.
    """
    for call in callers.values():  # warm-up
        for history in histories[:50]:
            call(history)
    times: dict[str, list[float]] = {name: [] for name in callers}
    for first in range(0, requests, block):
        for name, call in callers.items():
            for i in range(first, min(first + block, requests)):
                history = histories[i % len(histories)]
                start = time.perf_counter()
                call(history)
                times[name].append(time.perf_counter() - start)
    return {name: percentiles(t) for name, t in times.items()}


def start_server(
    model_base_path: Path, max_workers: int, intra_op_threads: int, model_name: str = MODEL_NAME
) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.server",
            "--model_base_path",
            str(model_base_path),
            "--model_name",
            model_name,
            "--port",
            "0",
            "--max_workers",
            str(max_workers),
            "--poll_seconds",
            "60",
            "--intra_op_threads",
            str(intra_op_threads),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if "gRPC on" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[1]


def grpc_load(
    target: str, histories: list[list[str]], concurrency: int, requests: int, model_name: str = MODEL_NAME
) -> dict[str, Any]:
    """``concurrency`` client threads (a channel each) send ``requests`` one-history requests."""
    from serving.client import RecommenderClient

    clients = [
        RecommenderClient(target, model_name, timeout_s=30, retries=0) for _ in range(concurrency)
    ]
    for c in clients:  # connect and warm up every channel
        for history in histories[:5]:
            c.recommend([history])
    times: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    per_client = max(1, requests // concurrency)

    def run(worker: int) -> None:
        for i in range(per_client):
            history = histories[(worker * per_client + i) % len(histories)]
            start = time.perf_counter()
            try:
                clients[worker].recommend([history])
            except Exception as e:  # counted, reported
                errors.append(repr(e)[:200])
            times[worker].append(time.perf_counter() - start)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    result = percentiles([t for ts in times for t in ts])
    result.update(
        throughput_rps=result["requests"] / elapsed, errors=len(errors), concurrency=concurrency
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cpus", type=int, default=0, help="pin bench + server to the first N CPUs (0 = all)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max_workers", type=int, default=8, help="server request threads")
    parser.add_argument(
        "--intra_op_threads", type=int, default=1, help="server and in-process TF op threads"
    )
    parser.add_argument("--train_epochs", type=int, default=0, help="0 = untrained weights")
    args = parser.parse_args(argv)
    from serving.server import configure_threads

    configure_threads(args.intra_op_threads, 0)  # as the server subprocess does
    if args.cpus:
        # inherited by the server subprocess
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cpus]))
    cpus = len(os.sched_getaffinity(0))

    transform_dir = preprocess("beauty")
    serving_dir = WORK / "beauty" / "serving-bench"
    version_dir, histories, facts = export_model(transform_dir, args.train_epochs, serving_dir)
    print(f"exported {version_dir} ({facts}); {len(histories)} test histories", flush=True)

    load_before = os.getloadavg()
    process, target = start_server(
        serving_dir / MODEL_NAME, args.max_workers, args.intra_op_threads
    )
    grpc_results: dict[str, dict[str, Any]] = {}
    try:
        from serving.client import RecommenderClient

        with RecommenderClient(target, MODEL_NAME, timeout_s=30, retries=0) as single_client:
            side_by_side = interleaved_latency(
                {
                    "in_process": in_process_caller(version_dir),
                    "grpc": lambda history: single_client.recommend([history]),
                },
                histories,
                args.requests,
            )
        in_process = side_by_side["in_process"]
        print(f"in process: {in_process}", flush=True)
        print(f"gRPC x1 (interleaved with in process): {side_by_side['grpc']}", flush=True)
        for concurrency in args.concurrency:
            grpc_results[str(concurrency)] = grpc_load(
                target, histories, concurrency, args.requests
            )
            print(f"gRPC x{concurrency}: {grpc_results[str(concurrency)]}", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    grpc_results["1_interleaved"] = side_by_side["grpc"]

    single = grpc_results["1_interleaved"]
    payload: dict[str, Any] = {
        "machine": {**machine(), "cpus_used": cpus},
        "model": facts,
        "requests": "one test-split history per request (raw IDs)",
        "server_max_workers": args.max_workers,
        "intra_op_threads": args.intra_op_threads,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "in_process": in_process,
        "grpc": grpc_results,
    }
    payload["grpc_overhead_p50"] = single["p50_ms"] / in_process["p50_ms"]
    payload["targets"] = {
        "p99_ms_at_concurrency_1": {
            "target": TARGET_P99_MS,
            "value": single["p99_ms"],
            "met": single["p99_ms"] < TARGET_P99_MS,
        },
        "grpc_over_in_process_p50": {
            "target": TARGET_OVERHEAD,
            "value": payload["grpc_overhead_p50"],
            "met": payload["grpc_overhead_p50"] < TARGET_OVERHEAD,
        },
    }
    path = write_results("serving", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
