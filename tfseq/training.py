"""fit(): Adam, per-epoch full-ranking validation, early stopping, best weights, history, curve, resume.

Training runs through ``tfrs.Model.compile/fit`` with callbacks, in this order
(then :class:`_Progress`, the lines a person reads, when ``verbose``):

1. validation: the epoch's mean training loss replaces Keras' last-batch
   ``loss``, then full-ranking metrics on the validation batches
   (``tfseq.evaluation``) are added as ``val_<metric>`` (``val_ndcg@10`` ...,
   at the ``valid_metric``'s K; the history keeps every K);
2. best weights + early stopping on ``TrainConfig.valid_metric`` (maximised,
   strictly better to count as an improvement): a copy of the weights of the
   best epoch is kept and restored when training ends; training stops after
   ``patience`` consecutive epochs without improvement;
3. the epoch checkpoint (when ``checkpoint``, an :class:`EpochCheckpoint`);
4. TensorBoard (when ``log_dir``), then the progress bar, so both see the
   validation metrics.

A fit resumed from an :class:`EpochCheckpoint` after an interruption (Ctrl-C:
:class:`TrainingInterrupted`) restores the model and optimizer variables, the
learning rate, the early-stopping state and the history, and each epoch's batch
order comes from ``(seed, epoch)`` (``reader.TrainingData.dataset``), so a
training that draws no random numbers (no dropout, full softmax) ends exactly
as the uninterrupted one. Dropout masks and sampled negatives come from
TensorFlow's stateful random ops, whose stream lives inside the traced train
step and cannot be saved: a resumed fit seeds TensorFlow with
:func:`epoch_seed` ``(seed, first epoch)``, so it is reproducible, but its
masks and negatives differ from the uninterrupted run's (same distribution).
Retracing the train step at every epoch would make them equal, but each
retrace keeps the old graph's functions alive in TensorFlow's runtime.

``weight_decay`` is RecBole's: PyTorch ``Adam(weight_decay=wd)`` adds
``wd * w`` to every gradient before the Adam moments (L2, not AdamW's
decoupled decay), which :class:`L2Adam` reproduces. Models without trainable
weights (``pop``) take no gradient step: one validation, one history row.

With a ``tf.distribute`` strategy (``fit(strategy=...)``, :mod:`tfseq.distribute`)
the model, its loss and the optimizer live in the strategy's scope, each global
batch is split over the replicas, and each step's gradient is that of the global
batch's mean loss; every worker validates and takes the chief's metrics, so all
of them stop at the same epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import posixpath
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfseq import distribute
from tfseq.config import ConfigError, TrainConfig
from tfseq.data import reader
from tfseq.data.vocab import DatasetMetadata
from tfseq.evaluation import Evaluator
from tfseq.experiment import build_variables
from tfseq.metrics.ranking import DEFAULT_KS
from tfseq.models.base import SequentialRecommender

NUM_USERS = "num_users"  # the evaluator's count, not a metric
# tfrs.Model.train_step also reports these: it adds the layers' losses (self.losses) to
# SequentialRecommender.compute_loss's value, which does not include them, and trains on that sum.
# tfseq's layers register none (weight_decay is L2Adam's), so they only clutter the progress bar.
TFRS_EXTRAS = ("regularization_loss", "total_loss")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` did.

    Attributes:
      history: one dict per epoch run: ``epoch`` (1-based), ``loss`` (mean over
        the epoch's batches; ``None`` for models without trainable weights),
        ``val_<metric>`` for every validation metric, ``seconds`` (training +
        validation wall time of the epoch), ``train_seconds`` (training alone).
      best_epoch: the epoch whose weights the model holds after ``fit``.
      best_metrics: that epoch's validation metrics, without the ``val_`` prefix.
      train_seconds: wall time of the whole fit, the interrupted fits it resumed included.
      epochs_run: number of epochs trained, those before a resume included.
      stopped_early: True when early stopping ended training before ``epochs``.
    """

    history: tuple[dict[str, Any], ...]
    best_epoch: int
    best_metrics: dict[str, float]
    train_seconds: float
    epochs_run: int
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(row) for row in self.history],
            "best_epoch": self.best_epoch,
            "best_metrics": dict(self.best_metrics),
            "train_seconds": self.train_seconds,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
        }


class L2Adam(tf.keras.optimizers.Adam):
    """Adam with coupled L2 weight decay: ``g <- g + weight_decay * w`` before the moments.

    This is PyTorch's ``torch.optim.Adam(weight_decay=...)``, which RecBole uses,
    so its ``weight_decay`` values carry over (AdamW's decoupled decay differs).
    Under a strategy each replica adds its ``1 / replicas`` of the term before the
    gradients are summed over replicas, so the decay counts once.
    """

    def __init__(self, weight_decay_l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight_decay_l2 = float(weight_decay_l2)

    def apply_gradients(
        self, grads_and_vars: Iterable[tuple[Any, tf.Variable]], *args: Any, **kwargs: Any
    ) -> Any:
        if self.weight_decay_l2:
            context = tf.distribute.get_replica_context()  # None in cross-replica context: not summed
            decay = self.weight_decay_l2 / (context.num_replicas_in_sync if context is not None else 1)
            grads_and_vars = [
                (None if g is None else tf.convert_to_tensor(g) + decay * v, v)
                for g, v in grads_and_vars
            ]
        return super().apply_gradients(grads_and_vars, *args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight_decay_l2": self.weight_decay_l2}


def make_optimizer(config: TrainConfig) -> tf.keras.optimizers.Optimizer:
    """Adam(``learning_rate``), with RecBole's L2 ``weight_decay`` when it is > 0."""
    if config.weight_decay < 0:
        raise ConfigError(f"TrainConfig.weight_decay must be >= 0, got {config.weight_decay}")
    if config.weight_decay:
        return L2Adam(weight_decay_l2=config.weight_decay, learning_rate=config.learning_rate)
    return tf.keras.optimizers.Adam(learning_rate=config.learning_rate)


def metric_cutoff(valid_metric: str) -> int:
    """The K of a metric name: ``"ndcg@10"`` -> 10; a metric without a cut-off (``mrr``) -> 10,
    the K whose metrics the progress lines show beside it."""
    from tfseq.metrics.ranking import UNCUT_METRICS

    if valid_metric in UNCUT_METRICS:
        return 10
    try:
        return int(valid_metric.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        raise ConfigError(
            f"TrainConfig.valid_metric must look like 'ndcg@10', got {valid_metric!r}"
        ) from None


def validation_ks(valid_metric: str, ks: Sequence[int] = DEFAULT_KS) -> tuple[int, ...]:
    """The cut-offs to evaluate: ``ks`` plus the one ``valid_metric`` needs."""
    return tuple(sorted({*ks, metric_cutoff(valid_metric)}))


class _Validation(tf.keras.callbacks.Callback):
    """Epoch-mean training loss, ``val_<metric>`` logs and the history rows.

    The Keras logs (progress bar, TensorBoard) get the metrics at the
    ``valid_metric``'s K, the history rows every K. ``agree`` maps the metrics
    to the ones every worker uses (the chief's, :func:`tfseq.distribute.chief_values`).
    """

    # Batch logs stay tensors (no host sync per step) and edits to them reach the progress bar.
    _supports_tf_logs = True

    def __init__(
        self, valid_data: tf.data.Dataset, ks: Sequence[int], log_k: int, exclude_history: bool,
        agree: Any = dict,
    ) -> None:
        super().__init__()
        self.valid_data = valid_data
        self.ks = tuple(ks)
        self.log_suffix = f"@{log_k}"
        self.exclude_history = exclude_history
        self.agree = agree
        self.rows: list[dict[str, Any]] = []
        self._evaluator: Evaluator | None = None

    def validate(self) -> dict[str, float]:
        """``{"val_ndcg@10": ..., ...}`` for every metric and K on the validation batches."""
        if self._evaluator is None:  # one traced ranking function for the whole fit
            self._evaluator = Evaluator(self.model, exclude_history=self.exclude_history)
        metrics = self._evaluator(self.valid_data, self.ks)
        metrics.pop(NUM_USERS, None)
        return self.agree({f"val_{name}": float(value) for name, value in metrics.items()})

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()
        self._loss_sum: Any = 0.0
        self._batches = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None  # Keras always passes the step's logs
        self._loss_sum += logs["loss"]
        self._batches += 1
        for extra in TFRS_EXTRAS:
            logs.pop(extra, None)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None
        loss = float(self._loss_sum) / max(self._batches, 1)  # the float() waits for the last step
        train_seconds = time.perf_counter() - self._start
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"epoch {epoch + 1}: mean training loss is {loss}; try a lower learning_rate"
            )
        metrics = self.validate()
        for extra in TFRS_EXTRAS:
            logs.pop(extra, None)
        logs["loss"] = loss
        logs.update({k: v for k, v in metrics.items() if k.endswith(self.log_suffix) or "@" not in k})
        seconds = time.perf_counter() - self._start
        self.rows.append(
            {"epoch": epoch + 1, "loss": loss, **metrics, "seconds": seconds, "train_seconds": train_seconds}
        )


def _clock(seconds: float) -> str:
    """``1:02:03``, ``2:03`` or ``42s``: a duration as a person reads it."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"


class _Progress(tf.keras.callbacks.Callback):
    """Training progress a person can follow, in a terminal or in a log file.

    Inside an epoch: in a terminal, one line rewritten in place (step, running
    loss, time left in the epoch); without one (``out`` redirected to a file),
    a plain line every ``every_seconds``. After each epoch, one line with the
    loss, the validation metric (``(best)`` on the kept epoch), the epoch's time
    and an estimate of the time left for the remaining epochs (an upper bound:
    early stopping may end sooner).
    """

    def __init__(self, epochs: int, steps: int | None, monitor: str, best: "_BestWeights", *,
                 terminal: bool, every_seconds: float = 30.0, out: Any = None) -> None:
        super().__init__()
        self.epochs, self.steps, self.monitor, self.best = epochs, steps, monitor, best
        self.terminal, self.every_seconds = terminal, every_seconds
        self.out = out
        self._epoch_start = self._last_line = 0.0
        self._epoch_seconds: list[float] = []
        self._epoch = 0

    def _print(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.out or sys.stdout, flush=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_start = self._last_line = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if now - self._last_line < (0.2 if self.terminal else self.every_seconds):
            return
        self._last_line = now
        step, elapsed = batch + 1, now - self._epoch_start
        loss = (logs or {}).get("loss")
        of_steps = f"/{self.steps}" if self.steps else ""
        text = f"  step {step}{of_steps} of epoch {self._epoch + 1}/{self.epochs}"
        if loss is not None:
            text += f", loss {float(loss):.4f}"
        if self.steps:
            text += f", {_clock(elapsed * (self.steps - step) / step)} left in the epoch"
        if self.terminal:
            self._print("\r" + text.ljust(79), end="")
        else:
            self._print(text)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        self._epoch_seconds.append(seconds)
        value = logs.get(self.monitor)
        shown = f"{self.monitor[len('val_'):]} {float(value):.4f}" if value is not None else "-"
        marker = " (best)" if self.best.best_epoch == epoch + 1 else ""
        loss = logs.get("loss")
        loss_text = f"loss {float(loss):.4f}" if loss is not None else "loss -"
        remaining = self.epochs - epoch - 1
        eta = ""
        if remaining:
            recent = self._epoch_seconds[-5:]
            eta = f", at most {_clock(remaining * sum(recent) / len(recent))} left"
        if self.terminal:
            self._print("\r" + " " * 79 + "\r", end="")
        self._print(f"epoch {epoch + 1}/{self.epochs}: {loss_text}, valid {shown}{marker}, {_clock(seconds)}{eta}")


class _BestWeights(tf.keras.callbacks.Callback):
    """Keeps the best epoch's weights (``monitor`` maximised); stops after ``patience`` misses."""

    def __init__(self, monitor: str, patience: int) -> None:
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._weights: list[np.ndarray] | None = None
        self.misses = 0  # epochs in a row without a better value

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None
        if self.monitor not in logs:
            available = ", ".join(k[4:] for k in logs if k.startswith("val_"))
            raise ConfigError(f"TrainConfig.valid_metric {self.monitor[4:]!r} is not computed; "
                              f"available: {available}")
        value = float(logs[self.monitor])
        if value > self.best:  # NaN is never an improvement
            self.best, self.best_epoch, self.misses = value, epoch + 1, 0
            self._weights = self.model.get_weights()
            return
        self.misses += 1
        if self.misses >= self.patience:
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)

    @property
    def weights(self) -> list[np.ndarray] | None:
        """The best epoch's weights so far (None before the first epoch)."""
        return self._weights

    def state(self) -> dict[str, Any]:
        """The counters an :class:`EpochCheckpoint` keeps (the weights travel separately)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "misses": self.misses,
                "stopped_epoch": self.stopped_epoch}

    def restore(self, state: dict[str, Any], weights: list[np.ndarray] | None) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.misses, self.stopped_epoch = int(state["misses"]), int(state["stopped_epoch"])
        self._weights = weights


class _DecayOnPlateau(tf.keras.callbacks.Callback):
    """Multiplies the learning rate by ``factor`` after each ``patience`` epochs in a row that
    ``best`` counted as misses; records every epoch's learning rate in its history row."""

    def __init__(self, best: _BestWeights, patience: int, factor: float, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.best, self.patience, self.factor, self.rows = best, patience, factor, rows

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        learning_rate = self.model.optimizer.learning_rate
        if self.rows:
            self.rows[-1]["learning_rate"] = float(learning_rate.numpy())  # the rate this epoch trained at
        misses = self.best.misses
        if self.patience and misses and misses % self.patience == 0:
            learning_rate.assign(learning_rate * self.factor)


def epoch_seed(seed: int, epoch: int) -> int:
    """The TensorFlow seed of a fit seeded with ``seed`` that resumes at epoch ``epoch`` (0-based)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class _RunningEpoch(tf.keras.callbacks.Callback):
    """The epoch running (1-based), for the interruption line; the first callback, so set before
    any other one runs."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`. ``str()`` is the one line an entry point prints instead of a traceback.

    Attributes:
      epoch: the epoch that was running (1-based).
      epochs: ``TrainConfig.epochs``.
      resume_epoch: the epoch a re-run starts at (1-based); None when ``fit`` kept no checkpoint.
    """

    def __init__(self, epoch: int, epochs: int, resume_epoch: int | None) -> None:
        self.epoch, self.epochs, self.resume_epoch = epoch, epochs, resume_epoch
        text = f"interrupted at epoch {epoch} of {epochs}"
        if resume_epoch is not None and resume_epoch > 1:
            text += f"; run the same command again to resume from epoch {resume_epoch}"
        elif resume_epoch is not None:
            text += "; no epoch had finished, so running the same command again starts over"
        super().__init__(text)


class EpochCheckpoint:
    """The training state after the last finished epoch, from which an interrupted :func:`fit` resumes.

    ``directory`` holds ``state.json`` (``key``, the number of finished epochs,
    their history rows, the early-stopping counters, the elapsed seconds) and
    ``epoch-<n>/`` (the model's and the optimizer's variables, the learning
    rate included, as a TF checkpoint, and the best epoch's weights). ``state.json``
    is replaced, atomically, only once ``epoch-<n>/`` is complete, so an
    interruption while saving leaves the previous epoch's checkpoint in force.
    A checkpoint written under another ``key`` (another configuration, other
    data) is never resumed, and is overwritten by the next epoch saved.

    Args:
      directory: where the checkpoint lives; any TensorFlow file system path.
      key: what the checkpoint is valid for, e.g. a fingerprint of the config and data.
      read_from: where :meth:`load` and :meth:`restore` read (default ``directory``): a
        multi-worker job's other workers resume from the chief's checkpoint and save to their own.
    """

    STATE = "state.json"
    VARIABLES = "variables"  # TF checkpoint prefix inside epoch-<n>/
    BEST = "best_weights.npz"

    def __init__(self, directory: str, key: str, read_from: str | None = None) -> None:
        self.directory = directory
        self.key = key
        self.read_from = read_from or directory

    def _epoch_dir(self, epoch: int, directory: str | None = None) -> str:
        return posixpath.join(directory or self.directory, f"epoch-{epoch:04d}")

    def load(self) -> dict[str, Any] | None:
        """The saved state when there is one with this ``key``; None otherwise."""
        path = posixpath.join(self.read_from, self.STATE)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "r") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict) or state.get("key") != self.key:
            return None
        return state if tf.io.gfile.exists(self._epoch_dir(int(state["epoch"]), self.read_from)) else None

    def save(self, state: dict[str, Any], model: tf.keras.Model, best_weights: list[np.ndarray] | None) -> None:
        """Writes ``state`` (with ``epoch``: epochs finished) and the variables, then drops older epochs."""
        epoch_dir = self._epoch_dir(int(state["epoch"]))
        if tf.io.gfile.exists(epoch_dir):  # half written by an interrupted save
            tf.io.gfile.rmtree(epoch_dir)
        tf.io.gfile.makedirs(epoch_dir)
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(
            posixpath.join(epoch_dir, self.VARIABLES))
        if best_weights is not None:
            buffer = io.BytesIO()
            np.savez(buffer, *best_weights)
            with tf.io.gfile.GFile(posixpath.join(epoch_dir, self.BEST), "wb") as f:
                f.write(buffer.getvalue())
        path = posixpath.join(self.directory, self.STATE)
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            f.write(json.dumps({**state, "key": self.key}))
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        for name in tf.io.gfile.listdir(self.directory):
            name = name.rstrip("/")
            if name.startswith("epoch-") and posixpath.join(self.directory, name) != epoch_dir:
                tf.io.gfile.rmtree(posixpath.join(self.directory, name))

    def restore(self, state: dict[str, Any], model: tf.keras.Model) -> list[np.ndarray] | None:
        """Loads the model's and optimizer's variables of ``state``'s epoch; returns the best weights."""
        epoch_dir = self._epoch_dir(int(state["epoch"]), self.read_from)
        model.optimizer.build(model.trainable_variables)  # its slots must exist to be restored into
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(
            posixpath.join(epoch_dir, self.VARIABLES)).assert_existing_objects_matched()
        best = posixpath.join(epoch_dir, self.BEST)
        if not tf.io.gfile.exists(best):
            return None
        with tf.io.gfile.GFile(best, "rb") as f:
            arrays = np.load(io.BytesIO(f.read()))
            return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]

    def clear(self) -> None:
        """Deletes the checkpoint (a finished training's is of no further use)."""
        if tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)


class _SaveEpoch(tf.keras.callbacks.Callback):
    """Saves an :class:`EpochCheckpoint` after each epoch (after validation, best weights and the
    learning-rate decay); ``finished_epoch`` is the last epoch done, ``saved_epoch`` the last saved."""

    def __init__(
        self,
        checkpoint: EpochCheckpoint | None,
        validation: _Validation,
        best: _BestWeights,
        elapsed: float,
        saved_epoch: int,
    ) -> None:
        super().__init__()
        self.checkpoint, self.validation, self.best = checkpoint, validation, best
        self.elapsed = elapsed  # seconds of earlier, interrupted fits
        self.finished_epoch = self.saved_epoch = saved_epoch
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.finished_epoch = epoch + 1
        if self.checkpoint is None:
            return
        state = {
            "epoch": epoch + 1,
            "history": self.validation.rows,
            "early_stopping": self.best.state(),
            "train_seconds": self.elapsed + time.perf_counter() - self._start,
        }
        self.checkpoint.save(state, self.model, self.best.weights)
        self.saved_epoch = epoch + 1


def training_data(
    model: SequentialRecommender, transform_dir: str, metadata: DatasetMetadata, train: TrainConfig
) -> reader.TrainingData:
    """The train split in the layout ``model`` trains on: whole sequences when it is causal and
    ``train.all_positions`` is on, RecBole's separate prefixes otherwise; with the model's
    side inputs."""
    return reader.training_data(
        transform_dir, metadata, causal=model.causal and train.all_positions,
        max_seq_len=train.max_seq_len, batch_size=train.batch_size, seed=train.seed,
        side_inputs=model.side_inputs, by_targets=train.batch_by == "targets",
    )


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow; seed before building a model for identical weights."""
    tf.keras.utils.set_random_seed(seed)


def fit(
    model: SequentialRecommender,
    train_data: reader.TrainingData | tf.data.Dataset,
    valid_data: tf.data.Dataset,
    config: TrainConfig,
    *,
    log_dir: str | None = None,
    verbose: int = 1,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
    checkpoint: EpochCheckpoint | None = None,
    strategy: tf.distribute.Strategy | None = None,
    collective_timeout: float = distribute.DEFAULT_TIMEOUT,
) -> TrainResult:
    """Trains ``model`` with early stopping and leaves it holding its best validation weights.

    Seeds Python, NumPy and TensorFlow with ``config.seed`` first (build the
    model after seeding too, e.g. with ``tfseq.experiment.build_model``, for
    identical initial weights).

    Args:
      model: a SequentialRecommender with its loss, already ``adapt``-ed (built in
        ``strategy.scope()`` when there is a strategy).
      train_data: ``reader.TrainingData`` (prefix or causal, matching ``model.causal``), or
        a dataset of such batches whose every pass is the next epoch (not with ``checkpoint``
        or ``strategy``).
      valid_data: ``{"item_ids": [B, L], "target": [B]}`` validation batches.
      config: epochs, learning rate, weight decay, patience, ``valid_metric`` ...
      log_dir: TensorBoard directory (none when ``None``).
      verbose: 0 silent; 1 a progress line rewritten in place (terminals); 2 plain lines
        (logs): one every 30 s inside an epoch and one per epoch.
      callbacks: extra Keras callbacks, called before the validation each epoch
        (a timer placed here measures training alone).
      checkpoint: saved after every epoch; when it holds a state with its key,
        training resumes after that state's last finished epoch (and the result
        covers every epoch, those before the interruption included).
      strategy: a ``tf.distribute`` strategy (:func:`tfseq.distribute.make_strategy`):
        global batches of ``config.batch_size`` split over its replicas, the gradient
        of the global mean (:mod:`tfseq.distribute`). None: this process's one device.
      collective_timeout: the strategy's collective timeout, named in the error when it expires.

    Returns:
      The :class:`TrainResult`; ``model`` holds the weights of ``best_epoch``.

    Raises:
      TrainingInterrupted: Ctrl-C (a ``KeyboardInterrupt``) during training,
        naming the epoch a re-run resumes from.
      tfseq.distribute.WorkerLost: a multi-worker job lost a worker (every worker raises it).
    """
    seed_everything(config.seed)
    if strategy is not None and not isinstance(train_data, reader.TrainingData):
        raise ValueError("fit(strategy=...) needs train_data as a reader.TrainingData, whose batches it splits")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _fit(model, train_data, valid_data, config, log_dir=log_dir, verbose=verbose, callbacks=callbacks,
                    checkpoint=checkpoint, strategy=strategy, collective_timeout=collective_timeout)


def _fit(
    model: SequentialRecommender,
    train_data: reader.TrainingData | tf.data.Dataset,
    valid_data: tf.data.Dataset,
    config: TrainConfig,
    *,
    log_dir: str | None,
    verbose: int,
    callbacks: Sequence[tf.keras.callbacks.Callback],
    checkpoint: EpochCheckpoint | None,
    strategy: tf.distribute.Strategy | None,
    collective_timeout: float,
) -> TrainResult:
    start = time.perf_counter()
    ks = validation_ks(config.valid_metric, config.topk)
    cutoff = metric_cutoff(config.valid_metric)
    validation = _Validation(valid_data, ks, cutoff, config.exclude_history, distribute.chief_values(strategy))
    monitor = f"val_{config.valid_metric}"
    build_variables(model)
    if not model.trainable_variables:  # pop: nothing to learn, the counts came from adapt()
        validation.set_model(model)
        with distribute.lost_worker_errors(strategy, collective_timeout):
            metrics = validation.validate()
        if monitor not in metrics:
            raise ConfigError(f"TrainConfig.valid_metric {config.valid_metric!r} is not computed")
        seconds = time.perf_counter() - start
        row = {"epoch": 1, "loss": None, **metrics, "seconds": seconds}
        if verbose:
            shown = [f"{k}: {v:.4f}" for k, v in metrics.items() if k.endswith(f"@{cutoff}")]
            print(" - ".join(["no trainable weights, no training", *shown]), flush=True)
        return TrainResult((row,), 1, _strip(metrics), seconds, 1, False)

    best = _BestWeights(monitor, config.patience)
    state = checkpoint.load() if checkpoint is not None else None
    first_epoch = int(state["epoch"]) if state else 0  # epochs already finished
    steps_per_epoch = train_data.num_batches if isinstance(train_data, reader.TrainingData) else None
    if strategy is not None:
        assert isinstance(train_data, reader.TrainingData)  # fit() checked
        train_data = distribute.distributed_batches(strategy, train_data, first_epoch)
    elif isinstance(train_data, reader.TrainingData):
        train_data = train_data.dataset(first_epoch=first_epoch)
    elif checkpoint is not None:  # a resumed epoch's batches could not be rebuilt
        raise ValueError("fit(checkpoint=...) needs train_data as a reader.TrainingData, not a dataset")
    saver = _SaveEpoch(checkpoint, validation, best, float(state["train_seconds"]) if state else 0.0, first_epoch)
    running = _RunningEpoch()
    callbacks = [running, *callbacks, validation, best,
                 _DecayOnPlateau(best, config.lr_decay_patience, config.lr_decay_factor, validation.rows), saver]
    if log_dir:
        callbacks.append(
            tf.keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0)
        )
    if verbose:  # after the validation, so the epoch line shows its metric
        callbacks.append(_Progress(config.epochs, steps_per_epoch, monitor, best, terminal=verbose == 1))
    model.compile(optimizer=make_optimizer(config))
    if state and checkpoint is not None:
        best.restore(state["early_stopping"], checkpoint.restore(state, model))
        validation.rows.extend(state["history"])
        tf.random.set_seed(epoch_seed(config.seed, first_epoch))  # before the train step is traced
    worker = distribute.worker_index(strategy)
    if worker:  # its own dropout masks and negatives, not the chief's
        tf.random.set_seed(distribute.worker_seed(config.seed, first_epoch, worker))

    def resume_hint() -> str:
        if checkpoint is None:
            return "restart every worker with the same command"
        return (f"restart every worker with the same command to resume from epoch {saver.saved_epoch + 1}"
                if saver.saved_epoch else "restart every worker with the same command (no epoch had finished)")

    if first_epoch < config.epochs and not best.stopped_epoch:
        if strategy is not None:  # the global batch's mean, split over the replicas
            model.train_step = distribute.global_mean_train_step(model)
        try:
            with distribute.lost_worker_errors(
                strategy, collective_timeout, where=lambda: f"at epoch {running.epoch} of {config.epochs}",
                resume=resume_hint,
            ):
                model.fit(train_data, epochs=config.epochs, initial_epoch=first_epoch, verbose=0,
                          callbacks=callbacks, steps_per_epoch=steps_per_epoch if strategy is not None else None)
        except KeyboardInterrupt:
            if verbose == 1:
                print(flush=True)  # end the progress line
            raise TrainingInterrupted(max(running.epoch, saver.finished_epoch + 1), config.epochs,
                                      saver.saved_epoch + 1 if checkpoint is not None else None) from None
        finally:
            if "train_step" in vars(model):
                del model.train_step  # the class's own step again
    else:  # the checkpoint is of a finished training: only the best weights are left to restore
        best.set_model(model)
        best.on_train_end()
    history = tuple(validation.rows)
    best_row = history[best.best_epoch - 1] if best.best_epoch else history[-1]
    return TrainResult(
        history=history,
        best_epoch=best.best_epoch or len(history),
        best_metrics=_strip({k: v for k, v in best_row.items() if k.startswith("val_")}),
        train_seconds=saver.elapsed + time.perf_counter() - start,
        epochs_run=len(history),
        stopped_early=bool(best.stopped_epoch) and len(history) < config.epochs,
    )


def _strip(metrics: dict[str, float]) -> dict[str, float]:
    return {k[len("val_"):]: v for k, v in metrics.items()}


def training_curve_png(history: Sequence[dict[str, Any]], metric: str = "ndcg@10") -> bytes:
    """PNG of the training loss and the validation ``metric`` per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key: str) -> list[float]:
        return [np.nan if row.get(key) is None else float(row[key]) for row in history]

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)  # Agg rendering without pyplot's global state
    loss_axes, metric_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, series("loss"), marker="o")
    loss_axes.set(title="training loss", xlabel="epoch", ylabel="loss")
    metric_axes.plot(epochs, series(f"val_{metric}"), marker="o", color="tab:green")
    metric_axes.set(title=f"validation {metric}", xlabel="epoch", ylabel=metric)
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
