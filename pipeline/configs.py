"""The typed configs of one pipeline run, one per stage, as ``create_pipeline`` takes them.

Importable without TensorFlow or the stages' Beam code: the command line
(``--help``, flag errors, config files) is built and validated from these
classes before any stage module is loaded. ``ExampleGenConfig`` and
``TransformConfig`` are defined here (their stage modules re-export them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from pipeline.evaluator import EvaluatorConfig
from pipeline.pusher import PusherConfig
from tfseq.config import MAX_COUNT, MAX_SEED, ConfigError
from tfseq.data.formats import Format, text_format
from tfseq.experiment import ExperimentConfig

if TYPE_CHECKING:
    from pipeline.ptransforms import SplitSpec
    from tfseq.data.synthetic import SyntheticConfig

MAX_SHARDS = 1024  # files per split; more only slows every reader down
# --synthetic_*: the generated log's size. The chain holds items x order states of 6 successors each.
MAX_SYNTHETIC_USERS = 100_000_000
MAX_SYNTHETIC_INTERACTIONS = 1_000_000_000
MAX_SYNTHETIC_STATES = 10_000_000  # --synthetic_items x --synthetic_order
MAX_SYNTHETIC_ORDER = 10
MAX_CONCENTRATION = 1e6
LEAVE_ONE_OUT = "leave_one_out"  # --split: every user's last two items are its valid and test targets
USER_SPLIT = "user"  # --split: valid and test users are unseen in training (Spotlight)
SPLIT_MODES = (LEAVE_ONE_OUT, USER_SPLIT)
COMPRESSIONS = ("none", "gzip")  # --compression (pipeline.ptransforms.COMPRESSIONS: how each is written)
DEDUPE_MODES = ("keep-all", "keep-first")


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
    """ExampleGen flags (field names are the CLI flags).

    Attributes:
      input: a file, a directory (its files, except names starting with ``.``
        or ``_``), or a glob; for ``tfds`` the dataset name. Empty for synthetic.
      input_format: one of ``tfseq.data.formats.ALL_FORMATS``.
      user_col, item_col, time_col, rating_col: csv/parquet column names
        (``time_col`` empty: line order is time order; ``rating_col`` empty: no rating).
      time_format: a ``strptime`` format for timestamps such as ``%d/%m/%Y %H:%M`` ("" = numbers, or
        ISO 8601 dates such as ``1997-12-04 15:55:49``, read automatically; no time zone = UTC).
      strict: any malformed row is an error (otherwise counted and skipped).
      check_format: refuse a ``sequence`` or ``pairs`` file whose first lines look like another
        format (a header row, ratings, timestamps); false reads it as it is.
      example_gen_shards: output TSV shards.
      synthetic_*: the SyntheticConfig knobs; ``synthetic_seed`` seeds the synthetic log
        (the training seed is ``TrainConfig.seed``: no flag sets both).
    """

    input: str = ""
    input_format: str = "synthetic"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    time_format: str = ""
    strict: bool = False
    check_format: bool = True
    example_gen_shards: int = 4
    synthetic_users: int = 3000
    synthetic_items: int = 1000
    synthetic_interactions: int = 60000
    synthetic_concentration: float = 0.3
    synthetic_order: int = 1
    synthetic_seed: int = 42

    def __post_init__(self) -> None:
        if not 1 <= self.example_gen_shards <= MAX_SHARDS:
            raise ConfigError(f"--example_gen_shards must be in 1..{MAX_SHARDS}, got {self.example_gen_shards}")
        for name, least, most in (
                ("synthetic_users", 1, MAX_SYNTHETIC_USERS), ("synthetic_items", 2, MAX_SYNTHETIC_STATES),
                ("synthetic_interactions", 3, MAX_SYNTHETIC_INTERACTIONS), ("synthetic_order", 1, MAX_SYNTHETIC_ORDER),
                ("synthetic_seed", 0, MAX_SEED)):
            if not least <= getattr(self, name) <= most:
                raise ConfigError(f"--{name} must be in {least}..{most}, got {getattr(self, name)}")
        if self.synthetic_items * self.synthetic_order > MAX_SYNTHETIC_STATES:
            raise ConfigError(f"--synthetic_items x --synthetic_order must be at most {MAX_SYNTHETIC_STATES} (the "
                              f"chain's states), got {self.synthetic_items} x {self.synthetic_order}")
        if not (math.isfinite(self.synthetic_concentration) and 0 < self.synthetic_concentration <= MAX_CONCENTRATION):
            raise ConfigError(f"--synthetic_concentration must be in (0, {MAX_CONCENTRATION:g}], got "
                              f"{self.synthetic_concentration!r}")
        if self.synthetic_interactions < 3 * self.synthetic_users:  # SyntheticConfig's rule, before any stage runs
            raise ConfigError(f"--synthetic_interactions {self.synthetic_interactions} is below 3 per user "
                              f"(3 x --synthetic_users = {3 * self.synthetic_users})")
        if self.time_format and "%" not in self.time_format:
            raise ConfigError(f"--time_format is a strptime format such as '%d/%m/%Y %H:%M', got "
                              f"{self.time_format!r}")

    def synthetic(self) -> SyntheticConfig:
        from tfseq.data.synthetic import SyntheticConfig

        return SyntheticConfig(
            num_users=self.synthetic_users,
            num_items=self.synthetic_items,
            num_interactions=self.synthetic_interactions,
            concentration=self.synthetic_concentration,
            order=self.synthetic_order,
            seed=self.synthetic_seed,
        )

    def text_format(self) -> Format:
        return text_format(
            self.input_format, self.user_col, self.item_col, self.time_col, self.rating_col,
            self.time_format,
        )


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """Transform flags (field names are the CLI flags).

    Attributes:
      min_rating: keep rows rated ``>= min_rating``; rows without a rating are then dropped
        too (counted as ``no_rating``). None = off.
      dedupe: "keep-all" (RecBole's default) or "keep-first" (only the earliest event of
        each (user, item) pair).
      min_user_inter, min_item_inter: iterative k-core thresholds; 0 = off.
      num_shards: TFRecord shards per split.
      compression: "none" or "gzip".
      split: "leave_one_out" (every user's last two items are its valid and test targets) or
        "user" (Spotlight's protocol: valid and test users are unseen in training; each one's
        last item is its target). See :class:`pipeline.ptransforms.SplitSpec`.
      valid_fraction, test_fraction: expected shares of users in valid and test (``--split user``).
      split_seed: seeds which users go to valid and test (``--split user``).
      item_features: an item side-feature table beside the log: S3-Rec ``*_item2attributes.json``,
        RecBole ``.item``, or csv/parquet with ``item_feature_cols``; "" = none.
      item_feature_fields: the fields to use (default: every categorical one).
      item_feature_cols: csv/parquet only: the feature columns (cells may hold ``a|b`` lists).
      item_feature_id_col: csv/parquet/.item: the item ID column of the feature table.
      max_attributes_per_item: per item and field, the values kept (the first ones, in file order);
        the items cut are counted in stats.json. It bounds the padded attribute table the models hold.
      min_feature_coverage: the share of the log's items the feature file must describe, else an error
        (a file of another dataset whose numeric IDs happen to overlap); 0 accepts any overlap.
      event_columns: per-event columns to write beside ``item_ids`` in every record, from
        ``tfseq.data.schema.EVENT_COLUMNS`` (e.g. ``hour_ids``), for models whose side inputs
        read them. Off by default: a record without them is byte-identical to one written
        before they existed, and costs nothing for the ID-only models.
    """

    min_rating: float | None = None
    dedupe: str = "keep-all"
    min_user_inter: int = 0
    min_item_inter: int = 0
    num_shards: int = 4
    compression: str = "none"
    split: str = LEAVE_ONE_OUT
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    item_features: str = ""
    item_feature_fields: tuple[str, ...] = ()
    item_feature_cols: tuple[str, ...] = ()
    item_feature_id_col: str = "item_id"
    max_attributes_per_item: int = 64
    min_feature_coverage: float = 0.5
    event_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.event_columns:
            from tfseq.data import schema  # TensorFlow's: only when the flag is given

            unknown = [name for name in self.event_columns if name not in schema.EVENT_COLUMNS]
            if unknown:
                raise ConfigError(f"--event_columns: unknown column {unknown[0]!r}; known: "
                                  f"{', '.join(schema.EVENT_COLUMNS)}")
        if self.max_attributes_per_item < 1:
            raise ConfigError(f"--max_attributes_per_item must be >= 1, got {self.max_attributes_per_item}")
        if not 0 <= self.min_feature_coverage <= 1:
            raise ConfigError(f"--min_feature_coverage must be in [0, 1], got {self.min_feature_coverage!r}")
        if self.dedupe not in DEDUPE_MODES:
            raise ConfigError(f"--dedupe must be one of {', '.join(DEDUPE_MODES)}, got {self.dedupe!r}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"--compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise ConfigError(f"--min_rating must be a finite number, got {self.min_rating!r}")
        for name in ("min_user_inter", "min_item_inter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if not 1 <= self.num_shards <= MAX_SHARDS:
            raise ConfigError(f"--num_shards must be in 1..{MAX_SHARDS}, got {self.num_shards}")
        for name, least, most in (("min_user_inter", 0, MAX_COUNT), ("min_item_inter", 0, MAX_COUNT),
                                  ("max_attributes_per_item", 1, MAX_COUNT), ("split_seed", 0, MAX_SEED)):
            if not least <= getattr(self, name) <= most:
                raise ConfigError(f"--{name} must be in {least}..{most}, got {getattr(self, name)}")
        if self.split not in SPLIT_MODES:
            raise ConfigError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {self.split!r}")
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(f"--{name} must be in (0, 1), got {value!r}")
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"--valid_fraction + --test_fraction must be < 1 to leave training users, got "
                f"{self.valid_fraction} + {self.test_fraction}"
            )

    @property
    def kcore(self) -> bool:
        """Whether k-core filtering runs at all."""
        return self.min_user_inter > 0 or self.min_item_inter > 0

    @property
    def split_spec(self) -> SplitSpec:
        """How the build pipeline splits each user."""
        from pipeline.ptransforms import SplitSpec

        return SplitSpec(self.split, self.valid_fraction, self.test_fraction, self.split_seed)


@dataclasses.dataclass(frozen=True)
class PipelineConfigs:
    """Everything one pipeline run is built from (``pipeline.pipeline.create_pipeline``'s input).

    Attributes:
      example_gen: what to read and how to validate it.
      transform: k-core, splits and sequence layout.
      experiment: the model, the loss and how they are trained (the Trainer).
      evaluator: when a run is blessed for pushing.
      pusher: where and how the blessed model is exported.
    """

    example_gen: ExampleGenConfig = ExampleGenConfig()
    transform: TransformConfig = TransformConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    pusher: PusherConfig = PusherConfig()


DISTRIBUTE_MODES = ("none", "mirrored", "multi_worker")  # tfseq.distribute.MODES, without importing TensorFlow
MAX_COLLECTIVE_TIMEOUT = 86_400.0  # a day: a worker that long behind is lost


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """How the Trainer spreads one training over devices and machines (field names are the CLI flags).

    Not part of a run's identity: the same run trained on one device or on several
    lands in the same run folder (what changes with the number of replicas: tfseq.distribute).

    Attributes:
      distribute: "none" (one device); "mirrored" (synchronous over every GPU of this machine, the CPU
        when there is none); "multi_worker" (synchronous over the machines the TF_CONFIG environment
        variable lists: start the same command on each, the chief writes the outputs). The global batch
        stays batch_size, split over the replicas.
      collective_timeout: multi_worker: seconds a worker waits for the others at each synchronisation
        (every step, every validation) before training fails on every worker; a dead worker is noticed
        sooner (its connection or heartbeats stop).
    """

    distribute: str = "none"
    collective_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.distribute not in DISTRIBUTE_MODES:
            raise ConfigError(f"--distribute must be one of {', '.join(DISTRIBUTE_MODES)}, got {self.distribute!r}")
        if not (math.isfinite(self.collective_timeout) and 0 < self.collective_timeout <= MAX_COLLECTIVE_TIMEOUT):
            raise ConfigError(f"--collective_timeout must be a number of seconds in (0, {MAX_COLLECTIVE_TIMEOUT:g}], "
                              f"got {self.collective_timeout!r}")
