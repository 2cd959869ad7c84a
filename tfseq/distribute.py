"""Synchronous data-parallel training: the strategies, the per-replica batches, the global-mean step, lost workers.

``--distribute`` picks one of :data:`MODES`:

* ``none``: one device, no strategy (``fit`` as it always was);
* ``mirrored``: ``tf.distribute.MirroredStrategy``, every GPU of this machine (the CPU when there is none);
* ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the cluster the ``TF_CONFIG``
  environment variable describes, each worker with its local devices.

What stays as in one process, for the same global batch:

* **Batches.** Every worker builds the same global batches of ``batch_size`` windows, in the same
  order (``reader.TrainingData.dataset``: each epoch's order comes from ``(seed, epoch)``), and
  keeps the contiguous rows of its replicas: replica ``r`` of ``R`` gets rows
  ``r * B // R .. (r + 1) * B // R`` of a batch of ``B`` rows (:func:`distributed_batches`).
  The global batch stays ``batch_size``; a replica whose share of a short last batch is empty
  gets one stand-in row that weighs 0.
* **The loss.** Each replica's loss is its mean over its own targets (or pairs) times its share
  of the global batch's targets (:data:`SHARE`, counted by the input pipeline), and the gradients
  are summed over replicas, so the gradient is the one of the global batch's mean
  (:func:`global_mean_train_step`; ``tfrs.Model.train_step`` would sum the replicas' means, ``R``
  times too much). The logged loss is Keras' sum of the replicas' values: the global mean.
  For ``softmax`` and ``sampled_softmax`` the share is exact; for the pairwise losses, which
  average over the pairs left after removing accidental hits, the share counts targets, which is
  exact when no hit is removed and within the hit rate (about ``1 / num_items``) otherwise.
* **Negatives.** In-batch negatives come from the replica's own share of the batch (its
  ``B / R`` rows, or its chunks of ``chunk_size`` targets when fewer), and sampled negatives
  are drawn per replica (``sampled_softmax`` shares ``num_negatives`` draws per replica, not per
  global batch). So with more replicas each query sees fewer in-batch negatives; raise
  ``num_negatives`` or ``batch_size`` to keep as many. ``softmax`` (every item) and the
  per-row negatives of ``bpr``/``hinge`` do not change with ``R``.
* **Random draws.** Dropout masks and negatives come from TensorFlow's seed, which worker
  ``w > 0`` offsets by ``w`` (:func:`worker_seed`), so workers do not repeat each other's draws.

Decisions are the chief's: every worker validates (same data, same weights), then takes the
chief's metrics (:func:`chief_values`), so early stopping and the learning-rate cuts are the
same everywhere (a worker that stopped alone would leave the others waiting). Only the chief
writes outputs; the others write theirs to a temporary folder that is deleted
(:func:`writable_dir`). A worker that dies, or does not reach a synchronisation point within
``collective_timeout`` seconds, ends training on every worker with :class:`WorkerLost`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from tfseq.config import ConfigError
from tfseq.data import schema

NONE = "none"
MIRRORED = "mirrored"
MULTI_WORKER = "multi_worker"
MODES = (NONE, MIRRORED, MULTI_WORKER)
DEFAULT_TIMEOUT = 600.0  # seconds a collective waits for the other workers (--collective_timeout)
SHARE = "replica_share"  # a replica batch's scalar: its targets / the global batch's (training only)
TF_CONFIG = "TF_CONFIG"
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
# What a collective raises when a peer is gone or late (UNAVAILABLE: socket closed, heartbeats
# stopped; DEADLINE_EXCEEDED: the timeout; the others when the runtime aborts the collectives).
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                     tf.errors.AbortedError)


class WorkerLost(ConnectionError):
    """Multi-worker training cannot go on: a worker died or stopped answering.

    ``str()`` is the one line the entry points print (a ``ConnectionError`` is an ``OSError``,
    which they report as ``error: ...`` with exit status 2).
    """


# ----------------------------------------------------------------------------- the cluster


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG``; ConfigError naming what is wrong (with an example) otherwise."""
    text = os.environ.get(TF_CONFIG, "")
    if not text.strip():
        raise ConfigError(f"--distribute {MULTI_WORKER} reads the cluster from the {TF_CONFIG} environment "
                          f"variable, which is not set; e.g. {TF_CONFIG}='{TF_CONFIG_EXAMPLE}' on the first worker "
                          "and the same with \"index\": 1 on the second")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{TF_CONFIG} is not valid JSON ({e.msg} at character {e.pos}); "
                          f"e.g. {TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"{TF_CONFIG} needs \"cluster\" and \"task\"; e.g. {TF_CONFIG_EXAMPLE}")
    kind, index = task.get("type"), task.get("index", 0)
    jobs = [job for job in ("chief", "worker") if job in cluster]
    if kind not in jobs or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        tasks = ", ".join(f"{job} 0..{len(cluster[job]) - 1}" for job in jobs) or "chief or worker tasks"
        raise ConfigError(f"{TF_CONFIG}: task {task} is not one of the cluster's {tasks}")
    return config


def is_chief_task(config: Mapping[str, Any]) -> bool:
    """Whether ``TF_CONFIG`` ``config`` names the chief: the ``chief`` task, else worker 0 (TensorFlow's rule)."""
    task = config["task"]
    if "chief" in config["cluster"]:
        return bool(task["type"] == "chief")
    return bool(task["type"] == "worker" and task.get("index", 0) == 0)


def make_strategy(mode: str, timeout_seconds: float = DEFAULT_TIMEOUT) -> tf.distribute.Strategy | None:
    """The strategy of ``--distribute mode`` (None for ``none``).

    ``multi_worker`` must be created before TensorFlow runs anything in the process (it
    configures the runtime's collective ops); it starts this worker's server and waits
    for the others. Collectives fail after ``timeout_seconds`` without the other workers.
    """
    if mode not in MODES:
        raise ConfigError(f"--distribute must be one of {', '.join(MODES)}, got {mode!r}")
    if not timeout_seconds > 0:
        raise ConfigError(f"--collective_timeout must be > 0 seconds, got {timeout_seconds!r}")
    if mode == NONE:
        return None
    if mode == MIRRORED:  # every GPU; without one, every logical CPU (one unless the process split it)
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    tf_config()  # a clear error before TensorFlow quietly falls back to one local worker
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout_seconds))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as e:
        if "startup" not in str(e) and "initialized" not in str(e):
            raise
        raise ConfigError(f"--distribute {MULTI_WORKER} must start before TensorFlow runs anything in the "
                          "process; run the Trainer alone (python -m pipeline.trainer)") from e


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the outputs (always, except on a multi-worker job's other workers)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


def worker_index(strategy: tf.distribute.Strategy | None) -> int:
    """This worker's place in the cluster: 0 on the chief (and without a cluster), 1.. on the others."""
    if not is_multi_worker(strategy):
        return 0
    resolver = strategy.cluster_resolver  # type: ignore[union-attr]
    from tensorflow.python.distribute import multi_worker_util  # the id TensorFlow numbers replicas by

    return int(multi_worker_util.id_in_cluster(resolver.cluster_spec(), resolver.task_type, resolver.task_id))


def num_workers(strategy: tf.distribute.Strategy | None) -> int:
    if not is_multi_worker(strategy):
        return 1
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()  # type: ignore[union-attr]
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def num_replicas(strategy: tf.distribute.Strategy | None) -> int:
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def worker_seed(seed: int, epoch: int, worker: int) -> int:
    """TensorFlow's seed on worker ``worker > 0`` of a fit seeded ``seed`` that starts at ``epoch``."""
    return int(np.random.SeedSequence([seed, epoch, worker]).generate_state(1)[0])


# ----------------------------------------------------------------------------- batches and the step


def replica_batch(batch: Mapping[str, tf.Tensor], replica: tf.Tensor, replicas: int) -> dict[str, tf.Tensor]:
    """Replica ``replica``'s rows of a global ``batch`` and its :data:`SHARE` of the batch's targets.

    Rows ``replica * B // replicas .. (replica + 1) * B // replicas`` (contiguous, sizes differ by at
    most one). An empty share (``B < replicas``) is the batch's first row with a share of 0.
    """
    targets = batch[schema.TARGETS] if schema.TARGETS in batch else batch[schema.TARGET]
    rows = tf.shape(targets, out_type=tf.int64)[0]
    replica = tf.cast(replica, tf.int64)
    start, end = replica * rows // replicas, (replica + 1) * rows // replicas
    empty = end <= start
    start, end = tf.where(empty, tf.constant(0, tf.int64), start), tf.where(empty, tf.constant(1, tf.int64), end)

    def count(values: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.cast(tf.not_equal(values, schema.PAD_ID), tf.float32))

    share = tf.where(empty, 0.0, tf.math.divide_no_nan(count(targets[start:end]), count(targets)))
    return {**{key: value[start:end] for key, value in batch.items()}, SHARE: share}


def distributed_batches(
    strategy: tf.distribute.Strategy, train_data: Any, first_epoch: int = 0
) -> tf.distribute.DistributedDataset:
    """The batches of ``train_data`` (a ``reader.TrainingData``) split over the replicas, every epoch in a row.

    Each worker's input pipeline reads every global batch (the single-process order) and
    yields, for each, the rows of its local replicas in order; the distributed iterator hands
    consecutive elements to consecutive local replicas. The stream never ends: fit runs
    ``train_data.num_batches`` steps per epoch, and the next pass is the next epoch.
    """
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def split(batch: dict[str, tf.Tensor]) -> tf.data.Dataset:
            return tf.data.Dataset.range(local).map(lambda j: replica_batch(batch, first + j, replicas))

        return train_data.dataset(first_epoch=first_epoch).repeat().flat_map(split)

    return strategy.distribute_datasets_from_function(dataset_fn)


def global_mean_train_step(model: tf.keras.Model) -> Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """A replica's ``train_step`` whose summed gradients are those of the global batch's mean loss.

    ``tfrs.Model.train_step`` differentiates ``compute_loss`` (a mean over the replica's
    targets) and the optimizer sums the replicas' gradients. Here the replica's mean is
    weighted by its :data:`SHARE` of the global batch's targets first:
    ``sum_r share_r * mean_r = sum_r sum_r / T = mean`` over the ``T`` targets of the
    global batch. Layer regularisers count once (divided by the replica count).
    """

    def train_step(inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features = dict(inputs)
        share = features.pop(SHARE)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, training=True) * tf.cast(share, tf.float32)
            regularization = tf.reduce_sum([tf.reduce_sum(term) for term in model.losses]) / replicas
            total = loss + regularization
        gradients = tape.gradient(total, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return {"loss": loss}  # Keras sums the replicas' logs: the global batch's mean

    return train_step


# ----------------------------------------------------------------------------- agreement and outputs


class ChiefValues:
    """Every worker's copy of the chief's numbers: an all-reduce to which only replica 0 (on the chief)
    contributes. Every worker must call it at the same point, as any collective."""

    def __init__(self, strategy: tf.distribute.Strategy) -> None:
        self.strategy = strategy

        @tf.function
        def broadcast(values: tf.Tensor) -> Any:
            def replica_fn(values: tf.Tensor) -> tf.Tensor:
                context = tf.distribute.get_replica_context()
                mine = tf.where(tf.equal(context.replica_id_in_sync_group, 0), values, tf.zeros_like(values))
                return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

            return strategy.run(replica_fn, args=(values,))

        self._broadcast = broadcast

    def __call__(self, values: Mapping[str, float]) -> dict[str, float]:
        names = sorted(values)
        local = tf.constant([float(values[name]) for name in names], tf.float64)
        result = self.strategy.experimental_local_results(self._broadcast(local))[0].numpy()
        return {name: float(value) for name, value in zip(names, result)}


def chief_values(strategy: tf.distribute.Strategy | None) -> Callable[[Mapping[str, float]], dict[str, float]]:
    """``values -> the chief's values`` for a multi-worker strategy, the identity otherwise."""
    if not is_multi_worker(strategy) or num_workers(strategy) == 1:
        return dict
    return ChiefValues(strategy)


@contextlib.contextmanager
def writable_dir(output_dir: str, chief: bool) -> Iterator[str]:
    """``output_dir`` on the chief; elsewhere a local temporary folder, deleted when the block ends."""
    if chief:
        yield output_dir
        return
    temporary = tempfile.mkdtemp(prefix="tfseq-worker-")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


CLOSED_CONNECTION = ("socket closed", "connection reset", "connection refused", "failed to connect")
_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")


def worker_lost(error: Exception, timeout_seconds: float, where: str = "", resume: str = "") -> WorkerLost:
    """The one-line :class:`WorkerLost` for a collective's ``error``.

    Args:
      where: e.g. ``"at epoch 3 of 10"``.
      resume: what to do next, e.g. ``"restart every worker ... to resume from epoch 3"``.
    """
    text = str(getattr(error, "message", "") or error)
    tasks = sorted({f"{job} {task}" for job, task in _TASK.findall(text)})
    peer = " or ".join(tasks) if tasks else "another worker"
    if isinstance(error, tf.errors.DeadlineExceededError):
        why = (f"the workers did not all reach the same step within {timeout_seconds:g} s "
               "(--collective_timeout): one of them is stuck or far slower")
    elif "heartbeat" in text:
        why = f"{peer} stopped sending heartbeats (its process died or its machine is unreachable)"
    elif any(sign in text.lower() for sign in CLOSED_CONNECTION):
        why = f"the connection to {peer} closed (its process exited or was killed)"
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
        why = f"{peer} failed: {first[:200]}"
    parts = ["multi-worker training stopped", where, f"{why}; the others cannot go on without it"]
    line = " ".join(p for p in parts[:2] if p) + ": " + parts[2]
    return WorkerLost(f"{line}; {resume}" if resume else line)


def lost_worker_errors(
    strategy: tf.distribute.Strategy | None, timeout_seconds: float, where: Callable[[], str] = str,
    resume: Callable[[], str] = str,
) -> contextlib.AbstractContextManager[None]:
    """Turns a collective's failure inside the block into :class:`WorkerLost` (multi-worker strategies only)."""
    if not is_multi_worker(strategy):
        return contextlib.nullcontext()
    return _lost_worker_errors(timeout_seconds, where, resume)


@contextlib.contextmanager
def _lost_worker_errors(timeout_seconds: float, where: Callable[[], str], resume: Callable[[], str]) -> Iterator[None]:
    try:
        yield
    except tf.errors.OpError as e:
        if not isinstance(e, COLLECTIVE_ERRORS) and "ollective" not in str(e):
            raise
        raise worker_lost(e, timeout_seconds, where(), resume()) from None


def describe(strategy: tf.distribute.Strategy | None) -> str:
    """``"worker 1 of 2 tasks, 2 replicas in all"`` (TF_CONFIG's task names) for the progress lines."""
    replicas = num_replicas(strategy)
    if is_multi_worker(strategy):
        resolver = strategy.cluster_resolver  # type: ignore[union-attr]
        return f"{resolver.task_type} {resolver.task_id} of {num_workers(strategy)} tasks, {replicas} replica(s) in all"
    return f"{replicas} replica(s) on this machine"
