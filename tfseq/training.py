"""fit(): Adam, per-epoch full-ranking validation, early stopping, best weights, history, curve.

Training runs through ``tfrs.Model.compile/fit`` (Keras' progress bar with loss
and ETA when ``verbose``), with callbacks, in this order:

1. validation: the epoch's mean training loss replaces Keras' last-batch
   ``loss``, then full-ranking metrics on the validation batches
   (``tfseq.evaluation``) are added as ``val_<metric>`` (``val_ndcg@10`` ...,
   at the ``valid_metric``'s K; the history keeps every K);
2. best weights + early stopping on ``TrainConfig.valid_metric`` (maximised,
   strictly better to count as an improvement): a copy of the weights of the
   best epoch is kept and restored when training ends; training stops after
   ``patience`` consecutive epochs without improvement;
3. TensorBoard (when ``log_dir``), then the progress bar, so both see the
   validation metrics.

``weight_decay`` is RecBole's: PyTorch ``Adam(weight_decay=wd)`` adds
``wd * w`` to every gradient before the Adam moments (L2, not AdamW's
decoupled decay), which :class:`L2Adam` reproduces. Models without trainable
weights (``pop``) take no gradient step: one validation, one history row.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfseq.config import ConfigError, TrainConfig
from tfseq.data import reader
from tfseq.data.vocab import DatasetMetadata
from tfseq.evaluation import Evaluator
from tfseq.experiment import build_variables
from tfseq.metrics.ranking import DEFAULT_KS
from tfseq.models.base import SequentialRecommender

NUM_USERS = "num_users"  # the evaluator's count, not a metric
# tfrs.Model.train_step also reports these; SequentialRecommender.compute_loss already adds
# the layers' losses to ``loss``, so they only clutter the progress bar.
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
      train_seconds: wall time of the whole fit.
      epochs_run: number of epochs trained.
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
    """

    def __init__(self, weight_decay_l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight_decay_l2 = float(weight_decay_l2)

    def apply_gradients(
        self, grads_and_vars: Iterable[tuple[Any, tf.Variable]], *args: Any, **kwargs: Any
    ) -> Any:
        if self.weight_decay_l2:
            grads_and_vars = [
                (None if g is None else tf.convert_to_tensor(g) + self.weight_decay_l2 * v, v)
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
    ``valid_metric``'s K, the history rows every K.
    """

    # Batch logs stay tensors (no host sync per step) and edits to them reach the progress bar.
    _supports_tf_logs = True

    def __init__(
        self, valid_data: tf.data.Dataset, ks: Sequence[int], log_k: int, exclude_history: bool
    ) -> None:
        super().__init__()
        self.valid_data = valid_data
        self.ks = tuple(ks)
        self.log_suffix = f"@{log_k}"
        self.exclude_history = exclude_history
        self.rows: list[dict[str, Any]] = []
        self._evaluator: Evaluator | None = None

    def validate(self) -> dict[str, float]:
        """``{"val_ndcg@10": ..., ...}`` for every metric and K on the validation batches."""
        if self._evaluator is None:  # one traced ranking function for the whole fit
            self._evaluator = Evaluator(self.model, exclude_history=self.exclude_history)
        metrics = self._evaluator(self.valid_data, self.ks)
        metrics.pop(NUM_USERS, None)
        return {f"val_{name}": float(value) for name, value in metrics.items()}

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


class _EpochLine(tf.keras.callbacks.Callback):
    """One plain line per epoch (logs, pipes): no progress bar, no backspaces."""

    def __init__(self, epochs: int, monitor: str, best: "_BestWeights") -> None:
        super().__init__()
        self.epochs = epochs
        self.monitor = monitor
        self.best = best
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        shown = f"{self.monitor[len('val_'):]} {float(value):.4f}" if value is not None else ""
        marker = " (best)" if self.best.best_epoch == epoch + 1 else ""
        loss = logs.get("loss")
        loss_text = f"loss {float(loss):.4f}" if loss is not None else "loss -"
        print(f"epoch {epoch + 1}/{self.epochs}: {loss_text}, valid {shown}{marker}, "
              f"{time.perf_counter() - self._start:.1f}s", flush=True)


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


def training_data(
    model: SequentialRecommender, transform_dir: str, metadata: DatasetMetadata, train: TrainConfig
) -> reader.TrainingData:
    """The train split in the layout ``model`` trains on: whole sequences when it is causal and
    ``train.all_positions`` is on, RecBole's separate prefixes otherwise; with ``user_ids`` when
    the model uses users."""
    return reader.training_data(
        transform_dir, metadata, causal=model.causal and train.all_positions,
        max_seq_len=train.max_seq_len, batch_size=train.batch_size, seed=train.seed,
        users=model.uses_user,
    )


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow; seed before building a model for identical weights."""
    tf.keras.utils.set_random_seed(seed)


def fit(
    model: SequentialRecommender,
    train_data: tf.data.Dataset,
    valid_data: tf.data.Dataset,
    config: TrainConfig,
    *,
    log_dir: str | None = None,
    verbose: int = 1,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
) -> TrainResult:
    """Trains ``model`` with early stopping and leaves it holding its best validation weights.

    Seeds Python, NumPy and TensorFlow with ``config.seed`` first (build the
    model after seeding too, e.g. with ``tfseq.experiment.build_model``, for
    identical initial weights).

    Args:
      model: a SequentialRecommender with its loss, already ``adapt``-ed.
      train_data: batches from ``tfseq.data.reader`` (prefix or causal, matching ``model.causal``).
      valid_data: ``{"item_ids": [B, L], "target": [B]}`` validation batches.
      config: epochs, learning rate, weight decay, patience, ``valid_metric`` ...
      log_dir: TensorBoard directory (none when ``None``).
      verbose: 0 silent, 1 progress bar per epoch, 2 one line per epoch.
      callbacks: extra Keras callbacks, called before the validation each epoch
        (a timer placed here measures training alone).

    Returns:
      The :class:`TrainResult`; ``model`` holds the weights of ``best_epoch``.
    """
    seed_everything(config.seed)
    start = time.perf_counter()
    ks = validation_ks(config.valid_metric)
    cutoff = metric_cutoff(config.valid_metric)
    validation = _Validation(valid_data, ks, cutoff, config.exclude_history)
    monitor = f"val_{config.valid_metric}"
    build_variables(model)
    if not model.trainable_variables:  # pop: nothing to learn, the counts came from adapt()
        validation.set_model(model)
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
    callbacks = [*callbacks, validation, best,
                 _DecayOnPlateau(best, config.lr_decay_patience, config.lr_decay_factor, validation.rows)]
    if log_dir:
        callbacks.append(
            tf.keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0)
        )
    if verbose == 1:  # after the validation, so the epoch line shows val_ metrics
        callbacks.append(tf.keras.callbacks.ProgbarLogger(count_mode="steps"))
    elif verbose:
        callbacks.append(_EpochLine(config.epochs, monitor, best))
    model.compile(optimizer=make_optimizer(config))
    model.fit(train_data, epochs=config.epochs, verbose=1 if verbose == 1 else 0, callbacks=callbacks)
    history = tuple(validation.rows)
    best_row = history[best.best_epoch - 1] if best.best_epoch else history[-1]
    return TrainResult(
        history=history,
        best_epoch=best.best_epoch or len(history),
        best_metrics=_strip({k: v for k, v in best_row.items() if k.startswith("val_")}),
        train_seconds=time.perf_counter() - start,
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
