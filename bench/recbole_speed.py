"""Training speed against RecBole 1.2.1, in one run: SASRec and GRU4Rec epochs on Amazon Beauty.

For each model, one after the other in the same run: a RecBole epoch (in a virtualenv of its
own, CPU torch with as many threads as the machine has cores) and a tfseq epoch in each of three
layouts, all with the full softmax (RecBole's ``CE``) and histories of at most 50 items, the
first two with RecBole's 128 targets per optimizer step:

- ``prefixes``: ``--all_positions false --batch_size 128``, RecBole's own layout, (prefix, next
  item) examples in batches of 128, each with its own dropout draw;
- ``one_pass_t128``: ``--batch_by targets --batch_size 128``, every position of a sequence in one
  pass, a batch holding as many sequences as fit in 128 targets.
- ``default``: no flag, the model's own training defaults, as ``python -m pipeline.run --model
  M`` trains it (both models: one pass in steps of about 256 targets).

Each system trains ``--epochs`` epochs (2) and reports the mean of those after the first (as
bench/train_speed.py does), so tfseq's graph tracing and first-touch allocations stay out of
it; evaluation is never timed. Each epoch is timed twice: wall seconds, and CPU seconds of all
the process's threads, which a shared machine disturbs less (see :func:`cpu_seconds_per_epoch`).
RecBole runs in a subprocess, bench/recbole_runner.py, in ``WORK/recbole-venv`` (made on the
first run with :data:`RECBOLE_REQUIREMENTS`, reused after); it reads Beauty.txt converted to
RecBole's atomic ``beauty.inter`` under ``WORK/recbole_speed/`` (``timestamp`` = the item's
position in its user's sequence, so RecBole's time order is the file's). tfseq's epochs are
timed by bench/train_speed.py's ``measure``, on the Transform output the other benchmarks share.
``--threads N`` gives both systems N threads (torch's ``set_num_threads``, TensorFlow's intra-
and inter-op pools); by default torch gets as many as the machine has cores, TensorFlow its default.

Results go to ``bench/results/recbole_speed.json``, rewritten after each measurement: per
model, system and layout the seconds and CPU seconds per epoch, training examples (targets) per
second, the load average before and after and, for tfseq, ``speedup_vs_recbole`` (RecBole's
seconds per epoch / tfseq's, both timed in this run) and ``cpu_speedup_vs_recbole``.
``quality`` holds the known test NDCG@10 of each tfseq layout, read from ``quality.json`` and
``ablation.json`` (never typed in), and the published RecBole figure it is held against
(``notes.json``'s ``published_floors``); ``equal_quality`` names, per model, the fastest
layout that reaches that figure and its speedups.

    python bench/recbole_speed.py                          # the whole run: about 20 minutes on 2 idle cores
    python bench/recbole_speed.py --users 100 --threads 1  # smoke test: results under WORK only
    python bench/recbole_speed.py --quality_only          # re-reads the quality figures, times nothing
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATASETS,
    REPO,
    WORK,
    data_pipeline,
    machine,
    preprocess,
    read_results,
    run_tree,
    write_results,
)

NAME = "recbole_speed"
BEAUTY = DATASETS / "amazon-beauty" / "Beauty.txt"
RUNNER = REPO / "bench" / "recbole_runner.py"
VENV = WORK / "recbole-venv"
# RecBole 1.2.1 and the libraries it runs on in the timed path, pinned. The CPU build of torch
# comes from the machine's wheel folder (pip's find-links); numpy and pandas stay on the last
# releases RecBole 1.2.1 was written against (see bench/recbole_runner.py).
RECBOLE_REQUIREMENTS = ("recbole==1.2.1", "torch==2.13.0+cpu", "numpy==1.26.4", "pandas==2.2.3", "scipy==1.17.1")
MODELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
BATCH = 128
MAX_SEQ_LEN = 50
# layout -> tfseq settings (pipeline.cli names)
LAYOUTS: dict[str, dict[str, Any]] = {
    "prefixes": {"all_positions": False, "batch_size": BATCH},
    "one_pass_t128": {"batch_by": "targets", "batch_size": BATCH},
    "default": {},  # the model's own training defaults: what `python -m pipeline.run --model M` trains
}
# (model, layout) -> where its test NDCG@10 on Beauty is recorded: quality.json's run key, or
# ablation.json's row name (every seed of it)
QUALITY_SOURCES: dict[tuple[str, str], tuple[str, str]] = {
    ("sasrec", "prefixes"): ("quality", "beauty/sasrec/softmax/prefixes"),
    ("gru4rec", "prefixes"): ("quality", "beauty/gru4rec/softmax/prefixes"),
    ("sasrec", "one_pass_t128"): ("ablation", "one_pass_t128"),
    ("sasrec", "default"): ("ablation", "default"),
    ("gru4rec", "default"): ("quality", "beauty/gru4rec/softmax/t256, rate cut"),
}


def write_atomic(sequences: Path, inter: Path, max_users: int | None = None) -> dict[str, int]:
    """Writes the ``user item item ...`` file ``sequences`` as RecBole's atomic ``inter`` file.

    One row per interaction, ``user_id:token``, ``item_id:token`` and ``timestamp:float``, the
    timestamp being the item's position in its user's sequence (0, 1, ...), so that RecBole's time
    order is the file's order. ``max_users`` keeps the first users only (a smoke test's subset).
    Returns the users and interactions written.
    """
    inter.parent.mkdir(parents=True, exist_ok=True)
    users = interactions = 0
    tmp = inter.with_suffix(".tmp")
    with sequences.open() as lines, tmp.open("w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in lines:
            words = line.split()
            if len(words) < 2:  # a blank line, or a user without items
                continue
            user, items = words[0], words[1:]
            if max_users is not None and users >= max_users:
                break
            out.writelines(f"{user}\t{item}\t{position}\n" for position, item in enumerate(items))
            users += 1
            interactions += len(items)
    tmp.replace(inter)
    return {"users": users, "interactions": interactions}


def recbole_python() -> Path:
    """The Python of RecBole's virtualenv, made (``python -m venv`` + pip) unless it has the pins."""
    python = VENV / "bin" / "python"
    stamp = VENV / "tfseq-requirements.txt"
    wanted = "\n".join(RECBOLE_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"installing {' '.join(RECBOLE_REQUIREMENTS)} into {VENV}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *RECBOLE_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


def run_recbole(python: Path, data_path: Path, model: str, epochs: int, workdir: Path, threads: int) -> dict[str, Any]:
    """One RecBole model's epochs (bench/recbole_runner.py in RecBole's venv), with its peak memory."""
    from bench.recbole_runner import MARKER

    workdir.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(RUNNER), "--data_path", str(data_path), "--dataset", "beauty",
               "--model", MODELS[model], "--epochs", str(epochs), "--batch_size", str(BATCH),
               "--max_seq_len", str(MAX_SEQ_LEN), "--threads", str(threads), "--workdir", str(workdir)]
    output, peak_mib, wall = run_tree(command, cwd=REPO, log=workdir / f"{model}.log")
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"{RUNNER.name} printed no result:\n{output[-3000:]}")
    return {**json.loads(lines[-1][len(MARKER):]), "peak_rss_mib": peak_mib, "wall_seconds": wall}


@contextlib.contextmanager
def cpu_seconds_per_epoch(seconds: list[float]) -> Iterator[None]:
    """Within, every ``tfseq.training.fit`` also records each epoch's process CPU seconds in ``seconds``.

    bench/train_speed.py's ``measure`` times epochs by the wall clock, which on a shared machine
    also counts the time other jobs hold the cores, and the two systems do not lose the same share
    to them (the scheduler shares the cores by thread, and TensorFlow runs more threads than
    torch). CPU seconds are timed beside it, by one more callback that sees the same epoch
    boundaries as ``measure``'s own, so that neither side's timing code is copied.
    """
    import tensorflow as tf

    from tfseq import training

    fit = training.fit

    def fit_timing_cpu(*args: Any, callbacks: Any = (), **kwargs: Any) -> Any:
        clock = tf.keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: seconds.append(-time.process_time()),
            on_epoch_end=lambda epoch, logs: seconds.append(seconds.pop() + time.process_time()),
        )
        return fit(*args, callbacks=[*callbacks, clock], **kwargs)

    training.fit = fit_timing_cpu
    try:
        yield
    finally:
        training.fit = fit


def run_tfseq(transform_dir: str, model: str, layout: str, epochs: int) -> dict[str, Any]:
    """One tfseq model's epochs in ``layout``, timed as bench/train_speed.py times them, with CPU seconds."""
    from bench.train_speed import measure

    settings = {**LAYOUTS[layout], "max_seq_len": MAX_SEQ_LEN, "loss": "softmax"}
    cpu: list[float] = []
    with cpu_seconds_per_epoch(cpu):
        measured = measure(transform_dir, model, epochs, settings)
    steady = cpu[1:] or cpu
    return {**measured, "epoch_cpu_seconds": cpu, "cpu_seconds_per_epoch": sum(steady) / len(steady)}


def load() -> float:
    """The machine's 1-minute load average (other jobs share it; kept beside each timing)."""
    return round(os.getloadavg()[0], 2)


def row_of(system: str, model: str, layout: str, measured: dict[str, Any], examples: str,
           batches: str, load_before: float, command: str) -> dict[str, Any]:
    seconds = measured["seconds_per_epoch"]
    return {
        "system": system, "model": model, "layout": layout, "command": command,
        "epoch_seconds": measured["epoch_seconds"],
        "seconds_per_epoch": seconds,
        "epoch_cpu_seconds": measured["epoch_cpu_seconds"],
        "cpu_seconds_per_epoch": measured["cpu_seconds_per_epoch"],
        "train_examples": measured[examples],
        "train_batches": measured[batches],
        "examples_per_second": measured[examples] / seconds,
        "peak_rss_mib": measured["peak_rss_mib"],
        "load_average": [load_before, load()],
    }


def quality_of(model: str, layout: str, results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The recorded test NDCG@10 (mean over seeds) of tfseq's ``model`` in ``layout`` on Beauty, or None."""
    source = QUALITY_SOURCES.get((model, layout))
    if source is None:
        return None
    name, key = source
    if name == "quality":
        run = results.get("quality", {}).get("runs", {}).get(key)
        found = {f"quality.json runs/{key}": run["test"]["ndcg@10"]} if run else {}
    else:
        rows = results.get("ablation", {}).get("rows", {})
        found = {f"ablation.json rows/{k}": r["test"]["ndcg@10"] for k, r in sorted(rows.items())
                 if r.get("row") == key and r.get("test")}
    if not found:
        return None
    return {"test_ndcg@10": sum(found.values()) / len(found), "sources": found}


def published(model: str, notes: dict[str, Any]) -> dict[str, Any] | None:
    """RecBole's published unmasked test NDCG@10 of ``model`` on Beauty (``notes.json``), or None."""
    floors = notes.get("published_floors", {})
    for row in floors.get("rows", []):
        if row["model"] == model:
            return {"test_ndcg@10": row["ndcg@10"], "source": "notes.json published_floors", "what": floors["source"]}
    return None


def quality_section(models: Iterable[str], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``quality``: per model, RecBole's published figure and each layout's recorded one."""
    return {model: {"recbole_published": published(model, results.get("notes", {})),
                    "tfseq": {layout: quality_of(model, layout, results) for layout in LAYOUTS}}
            for model in models}


def equal_quality(quality: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    """Per model, the fastest tfseq layout whose recorded test NDCG@10 reaches RecBole's published one."""
    answer: dict[str, Any] = {}
    for model, entry in quality.items():
        anchor = (entry.get("recbole_published") or {}).get("test_ndcg@10")
        timed = [(runs[f"{model}/tfseq/{layout}"]["seconds_per_epoch"], layout, q["test_ndcg@10"])
                 for layout, q in entry["tfseq"].items()
                 if q and anchor is not None and q["test_ndcg@10"] >= anchor and f"{model}/tfseq/{layout}" in runs]
        if f"{model}/recbole" not in runs or not timed:
            answer[model] = {"layout": None, "recbole_published_ndcg@10": anchor}
            continue
        seconds, layout, ndcg = min(timed)
        tfseq, recbole = runs[f"{model}/tfseq/{layout}"], runs[f"{model}/recbole"]
        answer[model] = {"layout": layout, "test_ndcg@10": ndcg, "recbole_published_ndcg@10": anchor,
                         "speedup_vs_recbole": recbole["seconds_per_epoch"] / seconds,
                         "cpu_speedup_vs_recbole": recbole["cpu_seconds_per_epoch"] / tfseq["cpu_seconds_per_epoch"]}
    return answer


def smoke_transform(sequences: Path, users: int) -> str:
    """The Transform output of the first ``users`` users of ``sequences`` (a smoke test's tfseq data)."""
    subset = WORK / NAME / f"beauty-{users}.txt"
    subset.parent.mkdir(parents=True, exist_ok=True)
    with sequences.open() as lines:
        subset.write_text("".join(line for _, line in zip(range(users), lines)))
    settings = {"input": str(subset), "input_format": "sequence"}
    return data_pipeline(settings, WORK / NAME / f"tfseq-{users}").run(stop_after="Transform").transform_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--layouts", nargs="+", choices=sorted(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per system; those after the first count")
    parser.add_argument("--recbole_epochs", type=int, help="RecBole's epochs, when not --epochs: 1 times its "
                        "first epoch, which (nothing to trace) differs from the next only by a few batches' warm-up")
    parser.add_argument("--users", type=int, help="smoke test: the first USERS users only, results under WORK")
    parser.add_argument("--quality_only", action="store_true", help="re-read the quality figures, time nothing")
    parser.add_argument("--threads", type=int, help="threads of each system (default: torch as many as cores, "
                        "TensorFlow its own default, which is the same on a CPU machine)")
    args = parser.parse_args(argv)
    smoke = WORK / NAME / f"smoke-{args.users}.json" if args.users is not None else None
    known = {name: read_results(name) for name in ("quality", "ablation", "notes")}
    results = read_results(NAME) if smoke is None else json.loads(smoke.read_text()) if smoke.exists() else {}
    runs = results.setdefault("runs", {})

    def save() -> None:
        results["quality"] = quality_section(MODELS, known)
        results["equal_quality"] = equal_quality(results["quality"], runs)
        if smoke is None:
            write_results(NAME, results)
        else:
            smoke.parent.mkdir(parents=True, exist_ok=True)
            smoke.write_text(json.dumps(results, indent=1, sort_keys=True))

    if args.quality_only:
        save()
        return 0
    if args.threads:
        import tensorflow as tf  # before any TensorFlow op runs

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    threads = args.threads or os.cpu_count() or 1
    python = recbole_python()
    data_path = WORK / NAME / ("atomic" if smoke is None else f"atomic-{args.users}")
    written = write_atomic(BEAUTY, data_path / "beauty" / "beauty.inter", args.users)
    transform_dir = preprocess("beauty") if smoke is None else smoke_transform(BEAUTY, args.users)
    command = " ".join(["python bench/recbole_speed.py", *(argv if argv is not None else sys.argv[1:])])
    results.update({
        "machine": machine(),
        "command": command,
        "dataset": {"name": "beauty", **written},
        "settings": {"epochs": args.epochs, "recbole_epochs": args.recbole_epochs or args.epochs,
                     "threads": args.threads or "default", "batch": BATCH, "max_seq_len": MAX_SEQ_LEN,
                     "loss": "full softmax (CE)",
                     "recbole_requirements": list(RECBOLE_REQUIREMENTS), "tfseq_layouts": LAYOUTS},
    })
    for model in args.models:
        print(f"== {model}/recbole", flush=True)
        before = load()
        epochs = args.recbole_epochs or args.epochs
        measured = run_recbole(python, data_path, model, epochs, WORK / NAME / "recbole-work", threads)
        runs[f"{model}/recbole"] = {
            **row_of("recbole", model, "prefixes", measured, "train_examples", "train_batches", before,
                     command),
            "setup_seconds": measured["setup_seconds"], "epoch_losses": measured["epoch_losses"],
            "threads": measured["threads"], "config": measured["config"], "versions": measured["versions"],
        }
        save()
        recbole = runs[f"{model}/recbole"]
        print(json.dumps({k: recbole[k] for k in ("seconds_per_epoch", "cpu_seconds_per_epoch", "train_examples")}),
              flush=True)
        for layout in args.layouts:
            key = f"{model}/tfseq/{layout}"
            print(f"== {key}", flush=True)
            before = load()
            measured = run_tfseq(transform_dir, model, layout, args.epochs)
            row = row_of("tfseq", model, layout, measured, "train_targets", "train_batches", before, command)
            row["speedup_vs_recbole"] = recbole["seconds_per_epoch"] / row["seconds_per_epoch"]
            row["cpu_speedup_vs_recbole"] = recbole["cpu_seconds_per_epoch"] / row["cpu_seconds_per_epoch"]
            row["config"] = measured["config"]
            runs[key] = row
            save()
            print(json.dumps({k: row[k] for k in ("seconds_per_epoch", "cpu_seconds_per_epoch", "speedup_vs_recbole",
                                                  "cpu_speedup_vs_recbole")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
