"""Serving at a million items: exact vs approximate (item-cluster) top-K, latency, recall, export cost.

SASRec from the registry (``tfseq.experiment.build_model``, RecBole defaults:
hidden 64, 2 layers, max_seq_len 50), randomly initialised, over ``--items``
items (1,000,000 by default; no training: latency does not depend on the
weights). Its item table, which is also its candidate table, is replaced by a
seeded mixture of Gaussians (``--blobs`` centres drawn N(0, 0.02^2) per
dimension, SASRec's initialiser scale, each item its centre plus N(0,
0.01^2) noise): random initial embeddings have no cluster structure, so no
cluster search finds their nearest items, while trained ones do have it. The
JSON's ``embeddings`` says exactly what was used.

The model is exported once exact and once per ``--probes`` value with
``--clusters`` k-means clusters (``serving.export``'s ``approximate_clusters``
/ ``approximate_probes``), each timed (export seconds) and measured on disk
(SavedModel bytes). Each export is served by the project's own server
(``python -m serving.server`` in a subprocess, as ``bench/serving.py`` does,
with its helpers) and measured with one-history gRPC requests at 1, 8 and 32
concurrent clients (p50/p95/p99, throughput). Recall@10 of each approximate
export against the exact export's top 10 is measured over ``--recall_histories``
random histories, both SavedModels loaded in process. Histories are random:
1 to 50 items drawn by popularity (seeded Zipf counts, which also weight the
popularity fallback). Writes bench/results/serving_scale.json.

    python bench/serving_scale.py [--items 1000000] [--clusters 1000] [--probes 4 16 64] [--requests 400]
    python bench/serving_scale.py --items 20000      # a quick check
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import WORK, machine, write_results  # noqa: E402
from bench.serving import MODEL_NAME, grpc_load, start_server  # noqa: E402

DIM = 64  # SASRec's default embedding_size
TOP_K = 10
CENTRE_STD, NOISE_STD = 0.02, 0.01


def build_model(items: int, seed: int) -> tuple[Any, Any, Any]:
    """``(model, metadata, config)``: randomly initialised SASRec over ``items`` items, as the pipeline builds it."""
    import numpy as np

    from tfseq.data.vocab import DatasetMetadata
    from tfseq.experiment import ExperimentConfig
    from tfseq.experiment import build_model as registry_model

    rng = np.random.default_rng(seed)
    counts = np.floor(1000.0 / rng.zipf(1.3, size=items + 1).clip(1, 10**6)).astype(np.int64) + 1  # Zipf-ish, > 0
    counts[0] = 0
    metadata = DatasetMetadata(num_items=items + 1, num_users=1, compression="", splits={},
                               item_counts=tuple(int(c) for c in counts), max_length=50)
    # the loss is never used (no training); softmax refuses a catalogue this large, sampled_softmax does not
    config = ExperimentConfig.from_flat({"model": "sasrec", "loss": "sampled_softmax", "seed": seed})
    model = registry_model(config, metadata)
    return model, metadata, config


def clustered_table(items: int, blobs: int, seed: int) -> Any:
    """``[items + 1, DIM]`` float32: row 0 zeros (padding), items around ``blobs`` Gaussian centres."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    centres = rng.normal(0.0, CENTRE_STD, size=(blobs, DIM)).astype(np.float32)
    blob = rng.integers(0, blobs, size=items)
    table = np.empty((items + 1, DIM), np.float32)
    table[0] = 0.0
    for start in range(0, items, 262_144):  # in blocks: no [items, DIM] float64 temporary
        rows = slice(start, min(start + 262_144, items))
        table[start + 1 : rows.stop + 1] = centres[blob[rows]] + rng.normal(
            0.0, NOISE_STD, size=(rows.stop - start, DIM)
        ).astype(np.float32)
    return table


def random_histories(counts: Any, count: int, seed: int, raw_ids: list[str]) -> list[list[str]]:
    """``count`` histories of 1..50 raw IDs, items drawn by popularity."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = np.asarray(counts, np.float64)
    p = p / p.sum()
    lengths = rng.integers(1, 51, size=count)
    return [[raw_ids[i] for i in rng.choice(len(p), size=n, p=p)] for n in lengths]


def folder_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def export_variant(model: Any, metadata: Any, vocab_path: str, root: Path, clusters: int, probes: int) -> dict:
    """Exports one variant under ``root/<variant>/MODEL_NAME/1``; returns its facts (path, seconds, bytes)."""
    from serving.export import export_saved_model

    name = "exact" if not clusters else f"clusters{clusters}_probes{probes}"
    serving_dir = root / name
    shutil.rmtree(serving_dir, ignore_errors=True)
    start = time.perf_counter()
    path = export_saved_model(
        model, item_vocab_path=vocab_path, item_counts=metadata.item_counts, serving_dir=str(serving_dir),
        model_name=MODEL_NAME, top_k=TOP_K, max_seq_len=50, approximate_clusters=clusters,
        approximate_probes=probes,
    )
    seconds = time.perf_counter() - start
    size = folder_bytes(path)
    facts = {"name": name, "path": path, "export_seconds": seconds, "saved_model_bytes": size,
             "clusters": clusters, "probes": probes}
    print(f"exported {name} in {seconds:.1f} s ({size / 2**20:.1f} MiB)", flush=True)
    return facts


def top_ids(path: str, histories: list[list[str]], batch: int = 50) -> list[list[str]]:
    """The SavedModel's top-K raw IDs for ``histories``, in batches, loaded in process."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["serving_default"]
    answers = []
    for first in range(0, len(histories), batch):
        rows = histories[first : first + batch]
        width = max(len(h) for h in rows)
        padded = np.array([h + [""] * (width - len(h)) for h in rows], dtype=object)
        out = signature(history=tf.constant(padded))["item_ids"].numpy()
        answers.extend([[raw.decode() for raw in row if raw] for row in out])
    return answers


def recall_at_k(got: list[list[str]], exact: list[list[str]]) -> float:
    """Mean over histories of ``|approximate top K & exact top K| / |exact top K|``."""
    return sum(len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)) / len(exact)


def serve_and_measure(variant: dict, histories: list[list[str]], concurrency: Sequence[int], requests: int,
                      max_workers: int, intra_op_threads: int) -> dict[str, Any]:
    """Latency of one export through ``serving/server.py`` at each concurrency level."""
    start = time.perf_counter()
    process, target = start_server(Path(variant["path"]).parent, max_workers, intra_op_threads)
    load_seconds = time.perf_counter() - start
    results: dict[str, Any] = {"server_load_seconds": load_seconds}
    try:
        for level in concurrency:
            results[str(level)] = grpc_load(target, histories, level, requests)
            row = results[str(level)]
            print(f"{variant['name']} x{level}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                  f"{row['throughput_rps']:.0f} req/s, {row['errors']} errors", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalogue size")
    parser.add_argument("--clusters", type=int, default=0, help="k-means clusters (0 = round(sqrt(items)))")
    parser.add_argument("--probes", type=int, nargs="+", default=[4, 16, 64], help="clusters searched per request")
    parser.add_argument("--blobs", type=int, default=0, help="Gaussian centres of the item table (0 = 4 x clusters)")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--recall_histories", type=int, default=300)
    parser.add_argument("--max_workers", type=int, default=8, help="server request threads")
    parser.add_argument("--intra_op_threads", type=int, default=1, help="server TF op threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clusters = args.clusters or round(math.sqrt(args.items))
    blobs = args.blobs or 4 * clusters
    if not 1 <= clusters <= args.items or any(not 1 <= p <= clusters for p in args.probes):
        parser.error(f"need 1 <= clusters <= items and 1 <= probes <= clusters; got {clusters}, {args.probes}")

    import tensorflow as tf

    from tfseq.data.vocab import vocabulary_text

    root = WORK / "serving-scale"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.perf_counter()
    model, metadata, config = build_model(args.items, args.seed)
    table = clustered_table(args.items, blobs, args.seed)
    model.candidate_embeddings().assign(table)  # SASRec's item table: inputs and candidates
    raw_ids = ["", *[f"i{i}" for i in range(1, args.items + 1)]]
    vocab_path = str(root / "item_vocab.txt")
    Path(vocab_path).write_text(vocabulary_text(raw_ids[1:]), encoding="utf-8")
    print(f"built sasrec over {args.items} items in {time.perf_counter() - start:.1f} s", flush=True)

    variants = [export_variant(model, metadata, vocab_path, root, 0, 0)]
    variants += [export_variant(model, metadata, vocab_path, root, clusters, p) for p in args.probes]

    recall_histories = random_histories(metadata.item_counts, args.recall_histories, args.seed + 2, raw_ids)
    exact_top = top_ids(variants[0]["path"], recall_histories)
    for variant in variants[1:]:
        variant["recall_at_10"] = recall_at_k(top_ids(variant["path"], recall_histories), exact_top)
        print(f"{variant['name']}: recall@10 {variant['recall_at_10']:.4f}", flush=True)
    tf.keras.backend.clear_session()

    histories = random_histories(metadata.item_counts, 2000, args.seed + 3, raw_ids)
    load_before = os.getloadavg()[0]
    for variant in variants:
        variant["grpc"] = serve_and_measure(variant, histories, args.concurrency, args.requests,
                                            args.max_workers, args.intra_op_threads)
        variant.pop("path")
    payload = {
        "machine": {**machine(), "cpus_used": len(os.sched_getaffinity(0))},
        "model": {"name": "sasrec", "num_items": args.items, "hidden_size": config.model_config.embedding_size,
                  "num_layers": config.model_config.num_layers, "max_seq_len": config.train.max_seq_len,
                  "top_k": TOP_K, "weights": "untrained (randomly initialised), item table replaced as below"},
        "embeddings": (
            f"clustered: a seeded mixture of {blobs} Gaussians in {DIM} dimensions (centres N(0, {CENTRE_STD}^2), "
            f"items centre + N(0, {NOISE_STD}^2) per dimension), used for every export, the latency and the "
            "recall; not random initial embeddings, on which no cluster search can find the nearest items"
        ),
        "requests": "one history per request: 1..50 raw IDs drawn by popularity (seeded Zipf counts)",
        "recall": f"recall@10 of the approximate top 10 against the exact export's, over {args.recall_histories} "
                  "random histories (the same distribution), both SavedModels loaded in process",
        "approximate": {"clusters": clusters, "probes": args.probes},
        "server_max_workers": args.max_workers,
        "intra_op_threads": args.intra_op_threads,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "variants": {variant.pop("name"): variant for variant in variants},
    }
    path = write_results("serving_scale", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
