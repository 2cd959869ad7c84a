"""Markdown tables of the benchmark results in bench/results/*.json, and the README's copies of them.

    python bench/report.py            # every table whose JSON exists
    python bench/report.py --readme   # rewrites the README's <!-- name --> ... <!-- /name --> blocks
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
MODELS = ("pop", "gru4rec", "sasrec", "core_ave", "core_trm", "sasrec_f", "difsr", "cnn", "lstm", "pooling", "hrm")
LOSSES = ("softmax", "sampled_softmax", "bpr", "hinge", "adaptive_hinge")


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def f4(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def quality_table(results: dict, dataset: str) -> str:
    rows = []
    runs = results["runs"]
    pop = runs.get(f"{dataset}/pop/softmax", {}).get("test", {}).get("ndcg@10")
    for key in sorted(k for k in runs if k.startswith(f"{dataset}/")):
        _, model, loss, *tag = key.split("/")
        run = runs[key]
        params = "" if not tag else " (" + ", ".join(tag) + ")"
        rows.append((
            MODELS.index(model) if model in MODELS else 99, LOSSES.index(loss) if loss in LOSSES else 9, [
                f"`{model}`{params}", loss, f4(run["valid"]["ndcg@10"]), f4(run["test"]["ndcg@10"]),
                f"{run['test']['ndcg@10'] / pop:.2f}×" if pop else "–",
                f4(run["test"]["recall@10"]), f4(run["test"]["mrr@10"]),
                f4(run.get("test_exclude_seen", {}).get("ndcg@10")), str(run.get("best_epoch", "–")),
                f"{run.get('train_seconds', 0):.0f}",
            ]))
    rows.sort(key=lambda r: (r[0], r[1]))
    header = ["model", "loss", "valid NDCG@10", "test NDCG@10", "× pop", "test Recall@10", "test MRR@10",
              "test NDCG@10, history masked", "best epoch", "train s"]
    return table(header, [r[2] for r in rows])


def side_features_table(results: dict, dataset: str) -> str:
    """difsr / sasrec_f / sasrec on one dataset: the issue's metrics, masked NDCG@10, s/epoch, peak RSS."""
    order = ("sasrec", "sasrec_f", "difsr")
    rows = []
    for key in sorted(k for k in results["runs"] if k.startswith(f"{dataset}/")):
        _, model, *tag = key.split("/")
        run = results["runs"][key]
        test = run["test"]
        rows.append((order.index(model) if model in order else 9, [
            f"`{model}`" + (f" ({', '.join(tag)})" if tag else ""),
            f4(test["ndcg@10"]), f4(test["recall@10"]), f4(test["ndcg@20"]), f4(test["recall@20"]),
            f4(run["test_history_masked"]["ndcg@10"]), f"{run['best_epoch']} / {run['epochs_run']}",
            f"{run['seconds_per_epoch']:.1f}" if run.get("seconds_per_epoch") else "–",
            f"{run['peak_rss_mib']:,.0f}",
        ]))
    rows.sort(key=lambda r: r[0])
    header = ["model", "test NDCG@10", "test Recall@10", "test NDCG@20", "test Recall@20",
              "test NDCG@10, history masked", "best / run epochs", "s/epoch", "peak RSS MiB"]
    return table(header, [r[1] for r in rows])


def families_table(results: dict, experiment: str) -> str:
    """One experiment of bench/families.py: Spotlight's MRR, or MetaSpore's @20 metrics beside NDCG@10 / pop."""
    runs = {k.split("/", 1)[1].replace("/", " (", 1) + (")" if k.count("/") > 1 else ""): v
            for k, v in results["runs"].items() if k.startswith(f"{experiment}/")}
    pop = runs.get("pop", {}).get("test", {}).get("ndcg@10")
    rows = []
    for model, run in runs.items():
        test, loss = run["test"], run["settings"].get("loss", "softmax")
        speed = f"{run['seconds_per_epoch']:.1f}" if run.get("seconds_per_epoch") else "–"
        epochs = f"{run['best_epoch']} / {run['epochs_run']}"
        if experiment.startswith("spotlight"):
            name = f"`{model.split(' ')[0]}`" + (model[len(model.split(' ')[0]):])
            rows.append((-test.get("mrr", 0), [name, loss, f4(test.get("mrr")), f4(run["valid"].get("mrr")),
                                               f4(test.get("ndcg@10")), epochs, speed]))
        else:
            ratio = f"{test['ndcg@10'] / pop:.2f}×" if pop else "–"
            name = f"`{model.split(' ')[0]}`" + (model[len(model.split(' ')[0]):])
            rows.append((-test["ndcg@10"], [name, loss, f4(test["ndcg@10"]), ratio,
                                            f4(test.get("precision@20")), f4(test.get("recall@20")),
                                            f4(test.get("map@20")), f4(test.get("ndcg@20")), epochs, speed]))
    rows.sort(key=lambda r: r[0])
    if experiment.startswith("spotlight"):
        header = ["model", "loss", "test MRR", "valid MRR", "test NDCG@10", "best / run epochs", "s/epoch"]
    else:
        header = ["model", "loss", "test NDCG@10", "× pop", "P@20", "R@20", "MAP@20", "NDCG@20",
                  "best / run epochs", "s/epoch"]
    return table(header, [r[1] for r in rows])


def speed_table(results: dict) -> str:
    rows = []
    for key, run in sorted(results["runs"].items()):
        dataset, model, *tag = key.split("/")
        epoch = run.get("seconds_per_epoch")
        label = f"`{model}`" + (" (" + ", ".join(tag) + ")" if tag else "")
        rows.append([dataset, label, "–" if epoch is None else f"{epoch:.1f}",
                     "–" if epoch is None else f"{run['train_targets_per_second']:,.0f}",
                     f"{run['eval_seconds']:.2f}", f"{run['eval_users_per_second']:,.0f}",
                     f"{run['peak_rss_mib']:,.0f}"])
    speed = table(["dataset", "model", "s/epoch", "train targets/s", "eval s (valid)", "eval users/s",
                   "peak RSS MiB"], rows)
    floors = results.get("softmax_floor", {})
    if not floors:
        return speed
    floor_rows = [[dataset, f"{f['batches']} × {f['targets_per_batch']:,} × {f['items']:,}",
                   f"{f['loss_seconds_per_epoch']:.1f}", f"{f['matmul_seconds_per_epoch']:.1f}",
                   f"{f['matmul_gflops_per_second']:.0f}"] for dataset, f in sorted(floors.items())]
    return speed + "\n\nThe full softmax alone, per epoch (random queries of the epoch's shape, 64 wide):\n\n" + table(
        ["dataset", "batches × targets × items", "loss + gradients s", "its 3 float32 matmuls s",
         "matmul GFLOP/s"], floor_rows)


def preprocess_table(results: dict) -> str:
    rows = []
    for key, case in results["cases"].items():
        if not isinstance(case, dict):
            continue
        rows.append([key.rsplit("/", 1)[0] if case["kcore"] == 0 else key.split("/")[0] + " + 5-core",
                     case["runner"].replace("_", "-"), f"{case['rows_in']:,}", f"{case['seconds']:.1f}",
                     f"{case['rows_per_second']:,}", f"{case['peak_rss_mib']:,}"])
    return table(["data", "DirectRunner", "rows", "Transform s", "rows/s", "peak RSS MiB (process tree)"], rows)


def tuning_table(results: dict) -> str:
    rows = []
    for name in ("default", "best"):
        trial = results.get(name)
        if trial:
            params = ", ".join(f"{k}={v}" for k, v in trial["params"].items())
            rows.append([name, params, f4(trial["valid_ndcg@10"]), f4(trial["test_ndcg@10"]),
                         f4(trial["test_recall@10"]), f"{trial['seconds']:.0f}"])
    return table(["trial", "params", "valid NDCG@10", "test NDCG@10", "test Recall@10", "seconds"], rows)


def soak_table(results: dict) -> str:
    """Requests by transport and status, then the checks, of bench/results/soak.json."""
    by: dict[str, dict[str, int]] = {"grpc": {}, "rest": {}}
    for key, n in results["requests_by_status"].items():
        transport, status = key.split(":", 1)
        by[transport][status] = n
    closed = by["rest"].pop("stalled-closed-by-server", 0)
    if "stalled" in by["rest"]:
        by["rest"]["half-sent body (closed by the server)"] = by["rest"].pop("stalled")
    grpc_rows = sorted(by["grpc"].items(), key=lambda kv: (kv[0] != "OK", kv[0]))
    rest_rows = sorted(by["rest"].items())
    rows = []
    for g, r in itertools.zip_longest(grpc_rows, rest_rows):
        rest_count = "" if r is None else f"{r[1]:,}" + (f" ({closed:,})" if "half-sent" in r[0] else "")
        rows.append(["" if g is None else g[0], "" if g is None else f"{g[1]:,}", "" if r is None else r[0],
                     rest_count])
    rss, latency = results["rss_mib"], results["latency"]
    pushes = ", ".join(f"{p['version']} {p['how'].replace('_', ' ')}" for p in results["versions_pushed"])
    grpc_good, rest_good = latency["grpc_good"], latency["rest_good"]
    checks = table(["check", "result"], [
        ["wrong answers (vs the in-process SavedModel)",
         f"{results['wrong_answers']} of {results['good_answers_checked']:,} checked"],
        ["unexpected status codes", str(sum(results["unexpected_status_by_kind"].values()))],
        ["server restarts / tracebacks in its log",
         f"{results['server_restarts']} / {results['server_log_tracebacks']}"],
        ["versions pushed (served at the end)", f"{pushes} ({results['final_version']})"],
        ["peak RSS MiB (after load; bound from the limits)",
         f"{rss['peak']:,.0f} ({rss['after_load']:,.0f}; {rss['bound_from_limits']:,.0f})"],
        ["good gRPC requests p50 / p99 ms", f"{grpc_good['p50_ms']:.1f} / {grpc_good['p99_ms']:.1f}"],
        ["good REST requests p50 / p99 ms", f"{rest_good['p50_ms']:.1f} / {rest_good['p99_ms']:.1f}"],
    ])
    return (f"{results['requests_sent']:,} requests in {results['seconds']:.0f} s at concurrency "
            f"{results['concurrency']}:\n\n" + table(["gRPC status", "requests", "REST status", "requests"], rows)
            + "\n\n" + checks)


def readme_blocks() -> dict[str, str]:
    """The README's generated blocks by marker name, for the results whose JSON exists."""
    blocks = {}
    quality = load("quality")
    if quality:
        blocks["quality"] = (
            "Amazon Beauty (22,363 users, 12,101 items):\n\n" + quality_table(quality, "beauty")
            + "\n\nml-100k (943 users, 1,682 items):\n\n" + quality_table(quality, "ml-100k")
        )
    speed = load("train_speed")
    if speed:
        blocks["speed"] = speed_table(speed)
    preprocess = load("preprocess")
    if preprocess:
        blocks["preprocess"] = preprocess_table(preprocess)
    tuning = load("tuning")
    if tuning:
        blocks["tuning"] = (f"{tuning['completed']} of {tuning['trials']} trials completed, "
                            f"{tuning['seconds_per_trial']} s per trial.\n\n" + tuning_table(tuning))
    soak = load("soak")
    if soak:
        blocks["soak"] = soak_table(soak)
    families = load("families")
    if families:
        experiments = sorted({k.split("/")[0] for k in families["runs"]})
        blocks["families"] = "\n\n".join(f"{e}:\n\n{families_table(families, e)}" for e in experiments)
    side = load("side_features")
    if side:
        datasets = sorted({k.split("/")[0] for k in side["runs"]}, key=lambda d: (d != "beauty", d))
        blocks["side_features"] = "\n\n".join(f"{d}:\n\n{side_features_table(side, d)}" for d in datasets)
    return blocks


def update_readme(path: Path = README) -> None:
    """Replaces each ``<!-- name -->`` ... ``<!-- /name -->`` block of ``path`` with its table."""
    text = path.read_text()
    for name, block in readme_blocks().items():
        pattern = re.compile(rf"<!-- {name} -->\n.*?<!-- /{name} -->\n", flags=re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no <!-- {name} --> ... <!-- /{name} --> block")
        text = pattern.sub(lambda _: f"<!-- {name} -->\n{block}\n<!-- /{name} -->\n", text)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> int:
    if sys.argv[1:] == ["--readme"]:
        update_readme()
        return 0
    for name, block in readme_blocks().items():
        print(f"### {name}\n\n{block}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
