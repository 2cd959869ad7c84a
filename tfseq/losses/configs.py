"""Every registry loss's hyperparameters: frozen config dataclasses, importable without TensorFlow.

As :mod:`tfseq.models.configs` for the models: the flags, config files and
``ExperimentConfig`` read them before any loss is built. Each loss module
imports its config from here; the registry (:mod:`tfseq.losses`) names the pair.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfseq.config import ConfigError

SAMPLERS = ("uniform", "popularity")
# sampled_softmax's default sampler is "auto": uniform on smaller catalogues, where the tuned
# results were measured, and popularity (with the logQ correction) from this many items on,
# where uniform draws are almost all tail items that no query ranks high: easy negatives.
POPULARITY_SAMPLER_ITEMS = 100_000


def check_sampler(kind: str) -> None:
    """Raises ConfigError (a ValueError) unless ``kind`` is one of :data:`SAMPLERS`."""
    if kind not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")


def check_pairwise_config(config: Any) -> None:
    """Raises ConfigError naming ``<ConfigClass>.<field>`` unless ``num_negatives`` and ``chunk_size`` are
    >= 1 and ``sampler`` is known."""
    owner = type(config).__name__
    for field in ("num_negatives", "chunk_size"):
        value = getattr(config, field)
        if value < 1:
            raise ConfigError(f"{owner}.{field} must be >= 1, got {value}")
    check_sampler(config.sampler)


# -- bpr (tfseq.losses.bpr) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BPRConfig:
    """Attributes:
    num_negatives: negatives drawn for each positive (RecBole: 1).
    sampler: "uniform" or "popularity" (smoothed training counts).
    remove_accidental_hits: leave out sampled negatives equal to the row's positive.
    chunk_size: queries per Retrieval call (memory and speed only; the loss is the same).
    """

    num_negatives: int = 1
    sampler: str = "uniform"
    remove_accidental_hits: bool = True
    chunk_size: int = 512

    def __post_init__(self) -> None:
        check_pairwise_config(self)


# -- softmax (tfseq.losses.softmax) -----------------------------------------
@dataclasses.dataclass(frozen=True)
class SoftmaxConfig:
    """Attributes:
    max_items: the largest catalogue it trains on. Each target is scored against every item,
      so an epoch costs targets x items dot products: above this, training would take days
      where ``sampled_softmax`` takes minutes, and the loss refuses to start.
    """

    max_items: int = 200_000

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ConfigError(f"SoftmaxConfig.max_items must be >= 1, got {self.max_items}")


# -- hinge (tfseq.losses.hinge) ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class HingeConfig:
    """Attributes:
    num_negatives: negatives drawn for each positive (Spotlight: 1).
    margin: the score gap below which a pair is penalised (Spotlight: 1).
    sampler: "uniform" (Spotlight's) or "popularity" (smoothed training counts).
    remove_accidental_hits: leave out sampled negatives equal to the row's positive.
    chunk_size: queries per Retrieval call (memory and speed only; the loss is the same).
    """

    num_negatives: int = 1
    margin: float = 1.0
    sampler: str = "uniform"
    remove_accidental_hits: bool = True
    chunk_size: int = 512

    def __post_init__(self) -> None:
        check_pairwise_config(self)
        if not self.margin > 0:
            raise ConfigError(f"{type(self).__name__}.margin must be > 0, got {self.margin}")


@dataclasses.dataclass(frozen=True)
class AdaptiveHingeConfig(HingeConfig):
    """:class:`HingeConfig` with Spotlight's ``num_negative_samples`` default: 5 negatives per positive,
    of which the highest-scoring is used."""

    num_negatives: int = 5


# -- sampled_softmax (tfseq.losses.sampled_softmax) -------------------------
@dataclasses.dataclass(frozen=True)
class SampledSoftmaxConfig:
    """Attributes:
    num_negatives: items drawn per batch, shared by all its queries, besides the in-batch ones.
    sampler: "uniform", "popularity" (smoothed training counts), or "auto": popularity when the
      catalogue has at least POPULARITY_SAMPLER_ITEMS items, uniform below.
    logq_correction: subtract log(proposal probability) from each column's logit.
    remove_accidental_hits: mask columns holding the row's own positive item.
    chunk_size: the most queries sharing their positives as in-batch negatives (consecutive targets).
    """

    num_negatives: int = 256
    sampler: str = "auto"
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    chunk_size: int = 2048

    def __post_init__(self) -> None:
        if self.num_negatives < 0:
            raise ConfigError(f"num_negatives must be >= 0, got {self.num_negatives}")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.sampler != "auto":
            check_sampler(self.sampler)

    def sampler_for(self, num_items: int) -> str:
        """The sampler drawn from for a catalogue of ``num_items`` rows (padding included)."""
        if self.sampler != "auto":
            return self.sampler
        return "popularity" if num_items - 1 >= POPULARITY_SAMPLER_ITEMS else "uniform"
