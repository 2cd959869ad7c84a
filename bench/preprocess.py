"""Preprocessing benchmark: the Transform stage's rows/s and peak memory on DirectRunner and Dask.

Cases: Amazon Beauty (198,502 interactions) and a 1,000,000-interaction synthetic
log, each through the whole Transform (vocabularies, per-user sequences,
leave-one-out, SequenceExamples; no k-core) with the in-memory DirectRunner and
with ``--direct_running_mode=multi_processing --direct_num_workers=2``; the
synthetic log also with Beam's DaskRunner on a local ``dask.distributed`` cluster
of ``DASK_WORKERS`` worker processes (one thread each; needs the ``dask`` extra);
then 5-core filtering on the synthetic log, reported separately. ExampleGen runs
once per dataset beforehand and is not timed here.

Each measurement runs in a fresh child process (which also starts the Dask
cluster, before the clock starts); the parent samples the resident memory of the
child and all its descendants (multi-processing or Dask workers) every 50 ms, so
"peak_rss_mib" is the whole process tree. The runners' outputs are compared
(vocabularies, stats and every record) and the result says whether they are
identical.

    python bench/preprocess.py            # all cases, JSON into bench/results/preprocess.json
    python bench/preprocess.py --datasets synthetic-1m --runners dask --merge   # add or redo some cases
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, RESULTS, SOURCES, WORK, machine, run_tree, write_results  # noqa: E402

RUNNERS = {
    "in_memory": ["--runner=DirectRunner"],
    "multi_processing": ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                         "--direct_num_workers=2"],
    "dask": ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner", "--dask_npartitions=4"],
}
RUNNER_DATASETS = {"dask": ("synthetic-1m",)}  # runners measured on some datasets only
DASK_WORKERS = 2
DATASETS = {
    "beauty": SOURCES["beauty"],
    "synthetic-1m": {"synthetic_users": 60000, "synthetic_items": 20000, "synthetic_interactions": 1000000},
}
TARGET_SECONDS_1M = 60.0


def example_gen(dataset: str) -> str:
    """ExampleGen output of ``dataset`` (run once, reused)."""
    from bench.common import data_pipeline

    root = WORK / "preprocess" / dataset
    data_pipeline(DATASETS[dataset], root).run(stop_after="ExampleGen")
    return str(root / "ExampleGen")


def child(example_gen_dir: str, output_dir: str, runner: str, kcore: int) -> None:
    """Runs one Transform and prints its timing as the last line (JSON)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    import tfseq  # noqa: F401
    from pipeline.transform import TransformConfig, run_transform

    config = TransformConfig(min_user_inter=kcore, min_item_inter=kcore)
    flags = RUNNERS[runner]
    cluster = None
    if runner == "dask":
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=DASK_WORKERS, processes=True, threads_per_worker=1, dashboard_address=None)
        flags = [*flags, f"--dask_client_address={cluster.scheduler_address}"]
    start = time.perf_counter()
    stats = run_transform(config, example_gen_dir, output_dir, PipelineOptions(flags))
    seconds = time.perf_counter() - start
    if cluster is not None:
        cluster.close()
    print(json.dumps({"seconds": seconds, "stats": stats}))


def measure(example_gen_dir: str, output_dir: str, runner: str, kcore: int = 0) -> dict:
    """Runs :func:`child` in a subprocess, sampling the process tree's memory."""
    import shutil

    shutil.rmtree(output_dir, ignore_errors=True)
    command = [sys.executable, __file__, "--child", example_gen_dir, output_dir, runner, str(kcore)]
    output, peak_mib, _ = run_tree(command, cwd=REPO)
    result = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    stats = result["stats"]
    rows = stats["interactions"] + sum(stats["dropped"].values())
    return {
        "runner": runner,
        **({"workers": DASK_WORKERS} if runner == "dask" else {}),
        "kcore": kcore,
        "seconds": round(result["seconds"], 2),
        "rows_in": rows,
        "rows_per_second": round(rows / result["seconds"]),
        "peak_rss_mib": round(peak_mib),
        "users": stats["users"],
        "items": stats["items"],
        "interactions": stats["interactions"],
        "kcore_rounds": stats["kcore_rounds"],
    }


def output_digest(transform_dir: str) -> str:
    """A digest of everything a downstream stage reads: vocabularies, stats, and each split's records."""
    import tensorflow as tf

    digest = hashlib.sha256()
    root = Path(transform_dir)
    for name in ("item_vocab.txt", "user_vocab.txt"):
        digest.update((root / name).read_bytes())
    stats = json.loads((root / "stats.json").read_text())
    digest.update(json.dumps({k: v for k, v in stats.items() if k != "config"}, sort_keys=True).encode())
    for split in ("train", "valid", "test"):
        files = sorted(str(p) for p in (root / split).glob("part-*"))
        records = sorted(r.numpy() for r in tf.data.TFRecordDataset(files))
        digest.update(split.encode())
        for record in records:
            digest.update(record)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        example_gen_dir, output_dir, runner, kcore = argv[1:]
        child(example_gen_dir, output_dir, runner, int(kcore))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the cases of bench/results/preprocess.json that this run does not measure")
    args = parser.parse_args(argv)

    results: dict = {"machine": machine(), "target_seconds_1m": TARGET_SECONDS_1M, "cases": {}}
    if args.merge and (RESULTS / "preprocess.json").exists():
        results["cases"] = json.loads((RESULTS / "preprocess.json").read_text()).get("cases", {})
    for dataset in args.datasets:
        eg = example_gen(dataset)
        digests = {}
        for runner in args.runners:
            if dataset not in RUNNER_DATASETS.get(runner, (dataset,)):
                continue
            out = str(WORK / "preprocess" / f"{dataset}-{runner}")
            case = measure(eg, out, runner)
            digests[runner] = output_digest(out)
            results["cases"][f"{dataset}/{runner}"] = case
            print(json.dumps({f"{dataset}/{runner}": case}), flush=True)
            write_results("preprocess", results)
        if len(digests) > 1:
            results["cases"][f"{dataset}/runners_identical"] = len(set(digests.values())) == 1
        if dataset.startswith("synthetic"):
            out = str(WORK / "preprocess" / f"{dataset}-kcore5")
            case = measure(eg, out, "in_memory", kcore=5)
            results["cases"][f"{dataset}/in_memory/kcore5"] = case
            print(json.dumps({f"{dataset}/in_memory/kcore5": case}), flush=True)
        write_results("preprocess", results)
    one_m = results["cases"].get("synthetic-1m/in_memory")
    if one_m:
        results["meets_target_1m"] = one_m["seconds"] < TARGET_SECONDS_1M
    path = write_results("preprocess", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
