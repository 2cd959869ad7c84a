"""Training and evaluation speed of every model on Amazon Beauty and ml-100k (RecBole defaults).

Per dataset and model: training targets per second and seconds per epoch
(steady state: the epoch after the first, which also traces the graphs),
full-ranking evaluation users per second on the validation split (after a
warm-up pass), and the process's peak resident memory while the model ran.
Per dataset, the cost of the full softmax alone (``softmax_floor``): its
forward and backward pass on random queries of the epoch's shape, and the
three float32 matmuls inside it, with their rate in GFLOP/s: every model
trained with ``softmax`` pays that much per epoch whatever its encoder.
Results accumulate in bench/results/train_speed.json.

    python bench/train_speed.py --datasets beauty ml-100k \
        --models gru4rec sasrec core_ave core_trm pop

Targets (``TARGETS``, stored with each run; RESULTS.md says whether they were met): a
one-pass Beauty epoch of sasrec, and full-ranking evaluation of all of Beauty's users. There is
no gru4rec epoch target: the full softmax alone (``softmax_floor``) sets most of that epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PeakMemory, machine, preprocess, read_results, write_results  # noqa: E402

TARGETS = {"beauty": {"sasrec": 17.0, "eval_seconds": 5.0}}


def measure(
    transform_dir: str, model_name: str, epochs: int, extra: dict[str, Any]
) -> dict[str, Any]:
    import tensorflow as tf  # after bench.common, which imports tfseq first

    from pipeline.trainer import prepare_training
    from tfseq import training
    from tfseq.evaluation import Evaluator
    from tfseq.experiment import ExperimentConfig

    config = ExperimentConfig.from_flat({"model": model_name, "epochs": epochs, "patience": epochs, **extra})
    train = config.train
    with PeakMemory() as memory:
        start = time.perf_counter()
        setup = prepare_training(config, transform_dir)  # the Trainer stage's own model and data
        model, data, valid = setup.model, setup.train_data, setup.valid_data
        read_seconds = time.perf_counter() - start
        epoch_seconds: list[float] = []
        if model.trainable_variables:
            timer = tf.keras.callbacks.LambdaCallback(  # runs before the epoch's validation
                on_epoch_begin=lambda epoch, logs: epoch_seconds.append(-time.perf_counter()),
                on_epoch_end=lambda epoch, logs: epoch_seconds.append(
                    epoch_seconds.pop() + time.perf_counter()
                ),
            )
            training.fit(model, data.dataset(), valid, train, verbose=0, callbacks=[timer])
        evaluator = Evaluator(model, exclude_history=train.exclude_history)
        evaluator(valid)  # warm-up: traces the ranking function
        start = time.perf_counter()
        metrics = evaluator(valid)
        eval_seconds = time.perf_counter() - start
    steady = epoch_seconds[1:] or epoch_seconds
    per_epoch = sum(steady) / len(steady) if steady else None
    result = {
        "config": config.to_flat(),
        "train_targets": data.num_targets,
        "train_batches": data.num_batches,
        "read_seconds": read_seconds,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": per_epoch,
        "train_targets_per_second": data.num_targets / per_epoch if per_epoch else None,
        "eval_users": metrics["num_users"],
        "eval_seconds": eval_seconds,
        "eval_users_per_second": metrics["num_users"] / eval_seconds,
        "peak_rss_mib": memory.peak_mib,
        "valid_ndcg@10_after_training": metrics["ndcg@10"],
    }
    tf.keras.backend.clear_session()
    return result


def softmax_floor(
    num_targets: int, num_batches: int, num_items: int, dim: int = 64, repeats: int = 5
) -> dict[str, Any]:
    """Seconds per epoch of the full softmax alone: ``num_batches`` batches of the mean target count.

    Times ``softmax_cross_entropy`` forward + backward (what training calls)
    and, as the floor under it, the three plain matmuls it cannot avoid:
    logits ``[T, D] x [D, N]`` and the two gradients ``[T, N] x [N, D]`` and
    ``[N, T] x [T, D]``.
    """
    import tensorflow as tf

    from tfseq.losses.softmax import softmax_cross_entropy

    rows = max(num_targets // max(num_batches, 1), 1)
    generator = tf.random.Generator.from_seed(0)
    query = tf.Variable(generator.normal([rows, dim]) * 0.1)
    table = tf.Variable(generator.normal([num_items, dim]) * 0.1)
    labels = generator.uniform([rows], 0, num_items, tf.int32)

    @tf.function
    def loss_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = softmax_cross_entropy(query, table, labels)
        d_query, d_table = tape.gradient(loss, [query, table])
        return loss + d_query[0, 0] + d_table[0, 0]

    @tf.function
    def matmuls() -> tf.Tensor:
        logits = tf.linalg.matmul(query, table, transpose_b=True)  # [T, N]
        d_query = tf.linalg.matmul(logits, table)  # [T, D]
        d_table = tf.linalg.matmul(logits, query, transpose_a=True)  # [N, D]
        return d_query[0, 0] + d_table[0, 0]

    def seconds_per_epoch(step: Any) -> float:
        step()  # traces
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            step().numpy()
            best = min(best, time.perf_counter() - start)
        return best * num_batches

    matmul_seconds = seconds_per_epoch(matmuls)
    flops = 3 * 2 * rows * num_items * dim * num_batches
    return {
        "targets_per_batch": rows,
        "batches": num_batches,
        "items": num_items,
        "loss_seconds_per_epoch": seconds_per_epoch(loss_step),
        "matmul_seconds_per_epoch": matmul_seconds,
        "matmul_gflops_per_second": flops / matmul_seconds / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "beauty"])
    parser.add_argument(
        "--models", nargs="+",
        default=["gru4rec", "sasrec", "core_ave", "core_trm", "cnn", "lstm", "pooling", "hrm", "pop"],
    )
    parser.add_argument("--epochs", type=int, default=2, help="the first one includes tracing")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value hyperparameters")
    parser.add_argument("--tag", help="suffix of the result keys (runs with non-default --set values)")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    results = read_results("train_speed")
    results["machine"] = machine()
    runs = results.setdefault("runs", {})
    floors = results.setdefault("softmax_floor", {})
    for dataset in args.datasets:
        transform_dir = preprocess(dataset)
        epoch_shape: tuple[int, int] | None = None  # (targets, batches) of this dataset's layout
        for model in args.models:
            key = f"{dataset}/{model}" + (f"/{args.tag}" if args.tag else "")
            print(f"== {key}", flush=True)
            run = measure(transform_dir, model, args.epochs, extra)
            target = TARGETS.get(dataset, {})
            run["targets"] = {k: v for k, v in target.items() if k in (model, "eval_seconds")}
            runs[key] = run
            write_results("train_speed", results)
            shown = ("seconds_per_epoch", "train_targets_per_second", "eval_seconds")
            print(json.dumps({k: run[k] for k in (*shown, "peak_rss_mib")}), flush=True)
            epoch_shape = (run["train_targets"], run["train_batches"])
        if epoch_shape is not None:
            from tfseq.data.vocab import DatasetMetadata

            items = DatasetMetadata.load(transform_dir).num_items - 1  # the padding row is not scored
            floor_key = dataset + (f"/{args.tag}" if args.tag else "")
            floors[floor_key] = softmax_floor(*epoch_shape, items)
            write_results("train_speed", results)
            print(json.dumps({"softmax_floor": floors[floor_key]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
