"""Configuration: frozen dataclasses, strict dict round-trips and config.json files."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Mapping, TypeVar

C = TypeVar("C")

# A trained model's files, inside the Trainer's folder (pipeline.artifacts names the rest of the layout).
CONFIG_FILE = "config.json"  # ExperimentConfig.to_json(): flat keys, loadable with --config
WEIGHTS = "weights/model"  # TF checkpoint prefix of the best epoch's weights


class ConfigError(ValueError):
    """A configuration key or value that tfseq does not accept."""


# Ranges the configs share: a seed (NumPy's and TensorFlow's take it), and a count or threshold of
# users, items or events (past any log's size).
MAX_SEED = 2**31 - 1
MAX_COUNT = 2**31 - 1


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Converts JSON/CLI values to the field's declared type (int -> float, str -> int, ...)."""
    hints = typing.get_type_hints(cls)
    kind = hints.get(name)
    if kind is None or value is None:
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
        origin = typing.get_origin(kind)
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            elif isinstance(value, (list, tuple)):  # ["5", "10,20"] from --topk 5 10,20
                value = [p for v in value for p in (str(v).replace(",", " ").split() if isinstance(v, str) else [v])]
            (item_kind, *_rest) = typing.get_args(kind) or (Any,)
            return tuple(item_kind(v) if item_kind is not Any else v for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{cls.__name__}.{name}: cannot read {shown(value)} as {getattr(kind, '__name__', kind)}"
        ) from None
    return value


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line never echoes a whole input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Builds dataclass ``cls`` from ``values``; an unknown key is an error that names it."""
    known = set(field_names(cls))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


def to_dict(config: Any) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def load_json(path: str) -> dict[str, Any]:
    import tensorflow as tf  # gfile reads local paths and every TF filesystem (gs://, s3://)

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


BATCH_UNITS = ("sequences", "targets")
MAX_EPOCHS = 100_000
MAX_SEQ_LEN = 100_000


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and validated (independent of which model or loss).

    Attributes:
      epochs: maximum number of passes over the training targets.
      batch_size: sequences (causal models with ``all_positions``) or prefixes per step;
        with ``batch_by="targets"``, targets per step in either layout.
      batch_by: ``sequences``: a causal batch holds ``batch_size`` sequences, whatever their
        lengths; ``targets``: as many sequences as fit in ``batch_size`` targets, so every
        step averages over about as many targets as a batch of prefixes.
      all_positions: causal models (every registry model) score every position of a
        sequence in one pass; False trains them on RecBole's separate (prefix, next
        item) examples instead, one dropout draw per prefix (slower; RecBole's setup).
      learning_rate: Adam learning rate.
      weight_decay: L2 penalty on all trainable weights (RecBole's ``weight_decay``).
      max_seq_len: histories are truncated to their last ``max_seq_len`` items.
      patience: epochs without a better validation metric before stopping.
      lr_decay_patience: after this many epochs in a row without a better validation metric
        (and again after each further run of as many), the learning rate is multiplied by
        ``lr_decay_factor``; 0 keeps it constant (RecBole's behaviour).
      lr_decay_factor: the learning rate's multiplier at each plateau, in (0, 1].
      valid_metric: the early-stopping metric, e.g. ``ndcg@10`` (maximised).
      topk: the cut-offs of every metric in validation, evaluation and the result table
        (RecBole's ``topk``; the valid_metric's is always added). The served K is ``top_k``.
      metrics: the metrics reported (RecBole's ``metrics``: recall, hit, ndcg, mrr, precision,
        map); empty: all of them. The valid_metric is always kept.
      eval_batch_size: users per full-ranking evaluation batch.
      eval_users: validate and evaluate on a seeded random sample of this many users of each
        split (0: every user); for large logs, where ranking every user's target against the
        whole catalogue costs more than it tells. The sample size is in ``metrics.json``.
      exclude_history: rank only items not in the user's history (off = RecBole's protocol), in
        validation, evaluation and, carried into the export, serving.
      seed: seeds Python, NumPy and TensorFlow; the same seed gives the same metrics on CPU.
    """

    epochs: int = 50
    batch_size: int = 256
    batch_by: str = "sequences"
    all_positions: bool = True
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    max_seq_len: int = 50
    patience: int = 10  # RecBole stopping_step
    lr_decay_patience: int = 0
    lr_decay_factor: float = 0.3
    valid_metric: str = "ndcg@10"
    topk: tuple[int, ...] = (5, 10, 20)
    metrics: tuple[str, ...] = ()
    eval_batch_size: int = 1024
    eval_users: int = 0
    exclude_history: bool = False
    seed: int = 2020

    def __post_init__(self) -> None:
        for name, most in (("epochs", MAX_EPOCHS), ("batch_size", 1 << 20), ("max_seq_len", MAX_SEQ_LEN),
                           ("eval_batch_size", 1 << 20)):
            if not 1 <= getattr(self, name) <= most:
                raise ConfigError(f"TrainConfig.{name} must be in 1..{most}, got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 10):
            raise ConfigError(f"TrainConfig.learning_rate must be a number in (0, 10], got {self.learning_rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"TrainConfig.seed must be in 0..{MAX_SEED}, got {self.seed}")
        if self.batch_by not in BATCH_UNITS:
            raise ConfigError(f"TrainConfig.batch_by must be one of {', '.join(BATCH_UNITS)}, got {self.batch_by!r}")
        for name in ("patience", "lr_decay_patience"):  # in epochs
            if not 0 <= getattr(self, name) <= MAX_EPOCHS:
                raise ConfigError(f"TrainConfig.{name} must be in 0..{MAX_EPOCHS}, got {getattr(self, name)}")
        if not 0 <= self.eval_users <= MAX_COUNT:
            raise ConfigError(
                f"TrainConfig.eval_users must be in 0..{MAX_COUNT} (0: every user), got {self.eval_users}"
            )
        if not 0 < self.lr_decay_factor <= 1:
            raise ConfigError(f"TrainConfig.lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        from tfseq.metrics import METRICS, UNCUT_METRICS

        if not self.topk or not all(isinstance(k, int) and 1 <= k <= 100_000 for k in self.topk):
            raise ConfigError(f"--topk must be cut-offs in 1..100000, e.g. --topk 5 10 20, got {list(self.topk)}")
        object.__setattr__(self, "topk", tuple(sorted(set(self.topk))))
        names = tuple(dict.fromkeys(str(m).strip().lower() for m in self.metrics))
        wrong = [m for m in names if m not in METRICS]
        if wrong:
            raise ConfigError(f"--metrics {wrong[0]!r} is not a metric; choose from {', '.join(METRICS)}")
        object.__setattr__(self, "metrics", names)

        name, _, k = self.valid_metric.partition("@")
        if self.valid_metric not in UNCUT_METRICS and (name not in METRICS or not k.isdigit() or int(k) < 1):
            raise ConfigError(
                f"--valid_metric must look like ndcg@10, with a metric in {', '.join(METRICS)}, "
                f"or be one of {', '.join(UNCUT_METRICS)} (no cut-off); got {self.valid_metric!r}"
            )
