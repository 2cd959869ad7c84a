"""ExperimentConfig: model name + loss name + their configs + TrainConfig, from one flat dict.

Users write hyperparameters the way RecBole users do, as one flat namespace
(``learning_rate``, ``hidden_size``, ``temperature``, ``num_negatives`` ...),
on the command line or in a JSON file. Each key is routed to every config
section that declares it (``max_seq_len`` sizes both the reader and SASRec's
positional table); a key no section declares is rejected by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any, Mapping

from tfseq.aliases import model_width_names
from tfseq.config import (
    CONFIG_FILE,
    MAX_COUNT,
    MAX_SEQ_LEN,
    WEIGHTS,
    ConfigError,
    TrainConfig,
    field_names,
    from_dict,
    load_json,
    shown,
    to_dict,
)
from tfseq.losses import LOSSES
from tfseq.models import MODELS

if TYPE_CHECKING:
    from tfseq.data.vocab import DatasetMetadata

# Keys declared by TrainConfig and by some model configs: one value that sizes both the reader's
# windows and the model's positional table (ExperimentConfig keeps them equal).
ROUTED_KEYS = ("max_seq_len",)
DEFAULT_MODEL = "sasrec"
DEFAULT_LOSS = "softmax"
# The upper ends of model and loss hyperparameters (their configs check the lower ends), far past any
# paper's settings: a value beyond is a slip that would otherwise fail late, out of memory, with a
# traceback. Any other integer is at most MAX_COUNT, and every float is finite.
MAX_WIDTH = 1 << 16
HYPERPARAMETER_MAXIMA = {
    "embedding_size": MAX_WIDTH, "hidden_size": MAX_WIDTH, "inner_size": MAX_WIDTH,
    "attribute_embedding_size": MAX_WIDTH, "num_layers": 1024, "num_heads": 1024, "num_negatives": 100_000,
    "kernel_width": MAX_SEQ_LEN, "window": MAX_SEQ_LEN, "dilation": MAX_SEQ_LEN, "dilation_multiplier": 16,
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    model: str = DEFAULT_MODEL
    loss: str = DEFAULT_LOSS
    model_config: Any = None
    loss_config: Any = None
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        model_entry, loss_entry = MODELS.get(self.model), LOSSES.get(self.loss)
        if self.model_config is None:
            object.__setattr__(self, "model_config", model_entry.config_cls())
        if self.loss_config is None:
            object.__setattr__(self, "loss_config", loss_entry.config_cls())
        for section in (self.model_config, self.loss_config):
            check_hyperparameters(section)
            for name in ROUTED_KEYS:
                value = getattr(section, name, getattr(self.train, name))
                if value != getattr(self.train, name):
                    raise ConfigError(
                        f"{name} is one setting: {type(section).__name__}.{name}={value} differs from "
                        f"TrainConfig.{name}={getattr(self.train, name)}"
                    )

    @classmethod
    def sections(cls, model: str, loss: str) -> dict[str, type]:
        return {
            "train": TrainConfig,
            "model_config": MODELS.get(model).config_cls,
            "loss_config": LOSSES.get(loss).config_cls,
        }

    @classmethod
    def known_keys(cls, model: str, loss: str) -> set[str]:
        keys = {"model", "loss"}
        for section in cls.sections(model, loss).values():
            keys.update(field_names(section))
        return keys

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        """Builds a config from ``{"model": ..., "loss": ..., <any hyperparameter>: ...}``.

        ``TrainConfig`` fields the values leave out take the model's own defaults
        (:func:`model_train_defaults`) where it has them, ``TrainConfig``'s otherwise.
        """
        model = str(values.get("model", DEFAULT_MODEL))
        loss = str(values.get("loss", DEFAULT_LOSS))
        try:
            sections = cls.sections(model, loss)
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        params = {k: v for k, v in values.items() if k not in ("model", "loss")}
        params = model_width_names(params, cls.known_keys(model, loss))
        unknown = sorted(set(params) - cls.known_keys(model, loss))
        if unknown:
            raise ConfigError(
                f"unknown hyperparameter(s) for model {model!r} with loss {loss!r}: "
                f"{', '.join(unknown)}; known: {', '.join(sorted(cls.known_keys(model, loss)))}"
            )
        defaults = {"train": model_train_defaults(model)}
        built: dict[str, Any] = {
            name: from_dict(section, {**defaults.get(name, {}),
                                      **{k: v for k, v in params.items() if k in field_names(section)}})
            for name, section in sections.items()
        }
        return cls(model=model, loss=loss, **built)

    @classmethod
    def from_json_file(cls, path: str, overrides: Mapping[str, Any] | None = None) -> "ExperimentConfig":
        values = load_json(path)
        values.update(overrides or {})
        try:
            return cls.from_flat(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"model": self.model, "loss": self.loss}
        for section in (self.train, self.model_config, self.loss_config):
            flat.update(to_dict(section))
        return flat

    def to_json(self) -> str:
        return json.dumps(self.to_flat(), indent=1, sort_keys=True)

    def replace(self, **flat_overrides: Any) -> "ExperimentConfig":
        values = self.to_flat()
        values.update(flat_overrides)
        return ExperimentConfig.from_flat(values)


def check_hyperparameters(config: Any) -> None:
    """Raises ConfigError naming ``<ConfigClass>.<field>`` for a model or loss hyperparameter past its upper
    end (:data:`HYPERPARAMETER_MAXIMA`, else ``MAX_COUNT``) or a float that is not finite."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, tuple) else (value,)
        most = HYPERPARAMETER_MAXIMA.get(field.name, MAX_COUNT)
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{type(config).__name__}.{field.name} must be a finite number, got {item}")
            if isinstance(item, int) and not isinstance(item, bool) and item > most:
                raise ConfigError(f"{type(config).__name__}.{field.name} must be at most {most}, got {shown(value)}")


def model_train_defaults(model: str) -> dict[str, Any]:
    """Registry model ``model``'s own ``TrainConfig`` defaults (its ``train_defaults``), checked by name."""
    defaults = dict(getattr(MODELS.get(model).config_cls, "train_defaults", {}))  # no TF import
    unknown = sorted(set(defaults) - set(field_names(TrainConfig)) | set(defaults) & set(ROUTED_KEYS))
    if unknown:
        raise ConfigError(f"model {model!r}: train_defaults names {', '.join(unknown)}, which are not "
                          f"TrainConfig fields it may set")
    return defaults


def build_model(config: ExperimentConfig, metadata: DatasetMetadata, item_features: Any = None):
    """The registry model of ``config`` with its registry loss, sized and adapted to ``metadata``.

    ``item_features`` (``tfseq.data.item_features.ItemFeatures``, aligned with the
    item vocabulary) goes to models that use side features; a model that needs
    them and gets none is an error naming ``--item_features``.
    """
    loss = LOSSES.build(config.loss, config.loss_config, item_counts=metadata.item_counts)
    extra: dict[str, Any] = {}
    if uses_item_features(config.model):
        if item_features is None:
            raise ConfigError(f"model {config.model} uses item side features: give --item_features PATH")
        extra["item_features"] = item_features
    model = MODELS.build(config.model, config.model_config, num_items=metadata.num_items, loss=loss,
                         user_vocab_size=metadata.num_users + 1, **extra)
    model.adapt(metadata.item_counts)
    build_variables(model)
    return model


def uses_item_features(model: str) -> bool:
    """Whether registry model ``model`` looks up item side features."""
    return bool(getattr(MODELS.get(model).config_cls, "uses_item_features", False))  # no TF import


def build_variables(model) -> None:
    """Creates every variable by running the model once on a one-item history."""
    import tensorflow as tf

    from tfseq.data import schema

    model.encode({schema.ITEM_IDS: tf.ones([1, 1], tf.int64)}, training=False)
    model.candidate_embeddings(training=False)


def load_trained_model(trainer_dir: str, transform_dir: str):
    """Rebuilds the Trainer's model from its ``config.json`` and restores its best weights."""
    import posixpath

    from tfseq.data.vocab import DatasetMetadata

    config = ExperimentConfig.from_json_file(posixpath.join(trainer_dir, CONFIG_FILE))
    features = load_item_features(transform_dir) if uses_item_features(config.model) else None
    model = build_model(config, DatasetMetadata.load(transform_dir), features)
    model.load_weights(posixpath.join(trainer_dir, WEIGHTS)).expect_partial()
    return model, config


def load_item_features(transform_dir: str) -> Any:
    """The Transform output's item feature table; ConfigError when it has none."""
    import posixpath

    import tensorflow as tf

    from tfseq.data.item_features import ItemFeatures
    from tfseq.data.vocab import ITEM_FEATURES_DIR

    directory = posixpath.join(transform_dir, ITEM_FEATURES_DIR)
    if not tf.io.gfile.isdir(directory):
        raise ConfigError(f"{transform_dir}: no item side features (Transform ran without --item_features)")
    return ItemFeatures.load(directory)


__all__ = [
    "CONFIG_FILE", "WEIGHTS", "ExperimentConfig", "build_model", "build_variables",
    "load_item_features", "load_trained_model", "uses_item_features",
]
