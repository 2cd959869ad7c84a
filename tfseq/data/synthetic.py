"""The default dataset: a seeded, sparse Markov-chain interaction log.

In the spirit of Spotlight's ``generate_sequential``: each state has a few
likely successors whose weights follow a Dirichlet(``concentration``), and the
next item depends on the previous ``order`` items; with probability
``jump_prob`` a user jumps to a random item. Unlike a dense transition matrix
this stays small for large catalogues, and every user is generated
independently from ``(seed, user)``, so Beam can generate users in parallel on
any runner and get the same log.

Item popularity is long-tailed: successors and jumps are drawn from a Zipf law,
``P(rank r) ~ r^-POPULARITY_EXPONENT``. The exponent 0.8 is the slope of the
log-log rank-frequency curve of the 5-core Amazon Beauty log (about 0.76) and
close to ml-100k's (about 0.67), so a million-item catalogue has a head of
items that most events touch and a tail that few do, as real catalogues have.
A Zipf law alone would leave a third of a million-item tail out of a
ten-million-event log, and the catalogue is what the log holds, so every item
enters it once: user ``u`` of ``U`` opens with the items ``u, u + U, u + 2U, ...``
(as many as fit in its length), then follows the chain.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from tfseq.config import ConfigError
from tfseq.data.formats import Interaction

POPULARITY_EXPONENT = 0.8


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of the generated log.

    Attributes:
      num_users, num_items: how many users and items.
      num_interactions: the expected total (lengths are random per user, at least 3).
      concentration: Dirichlet concentration of successor weights (small = predictable).
      order: how many previous items determine the next one.
      branching: successors per state.
      jump_prob: probability of a random (Zipf-drawn) jump at each step.
      seed: the whole log is a function of this seed.
    """

    num_users: int = 3000
    num_items: int = 1000
    num_interactions: int = 60000
    concentration: float = 0.3
    order: int = 1
    branching: int = 6
    jump_prob: float = 0.1
    seed: int = 42

    def __post_init__(self) -> None:
        if self.num_users < 1 or self.num_items < 2:
            raise ConfigError(
                f"synthetic data needs at least 1 user and 2 items, got "
                f"num_users={self.num_users}, num_items={self.num_items}"
            )
        if self.num_interactions < 3 * self.num_users:
            raise ConfigError(
                f"synthetic num_interactions={self.num_interactions} is below 3 per user "
                f"({3 * self.num_users} for {self.num_users} users)"
            )
        if self.concentration <= 0:
            raise ConfigError(f"synthetic concentration must be > 0, got {self.concentration}")
        if self.order < 1 or self.branching < 1 or not 0 <= self.jump_prob <= 1:
            raise ConfigError(
                f"synthetic order and branching must be >= 1 and jump_prob in [0, 1], got "
                f"order={self.order}, branching={self.branching}, jump_prob={self.jump_prob}"
            )


@dataclasses.dataclass(frozen=True)
class _Chain:
    successors: np.ndarray  # [num_states, branching] item indices (0-based)
    cumulative: np.ndarray  # [num_states, branching] cumulative successor weights
    popularity: np.ndarray  # [num_items] cumulative Zipf distribution of jumps


@functools.lru_cache(maxsize=4)
def _chain(config: SyntheticConfig) -> _Chain:
    rng = np.random.default_rng(config.seed)
    num_states = config.num_items * config.order
    ranks = rng.permutation(config.num_items)
    popularity = 1.0 / (ranks + 1.0) ** POPULARITY_EXPONENT
    cumulative_popularity = np.cumsum(popularity / popularity.sum())
    draws = rng.random(size=(num_states, config.branching))
    successors = np.minimum(
        np.searchsorted(cumulative_popularity, draws), config.num_items - 1
    ).astype(np.int64)
    weights = rng.dirichlet([config.concentration] * config.branching, size=num_states)
    return _Chain(successors, np.cumsum(weights, axis=1), cumulative_popularity)


def _state(history: list[int], config: SyntheticConfig) -> int:
    recent = history[-config.order:]
    state = 0
    for item in recent:
        state = (state * 1_000_003 + item) % (config.num_items * config.order)
    return state


def user_interactions(config: SyntheticConfig, user_index: int) -> list[Interaction]:
    """The events of user ``user_index`` (0-based), a pure function of ``(config, user_index)``.

    The transition structure comes from ``config.seed`` alone and each user's
    draws from ``(seed, user_index)``, so any worker can generate any user.
    Users are named ``u<index>``, items ``i<index>``; timestamps increase by 60
    within a user; there is no rating (NaN); ``line`` is ``user_index + 1`` and
    ``position`` the step.
    """
    chain = _chain(config)
    rng = np.random.default_rng([config.seed, user_index])
    mean_extra = max(config.num_interactions / config.num_users - 3.0, 0.0)
    length = 3 + int(rng.poisson(mean_extra))
    history = list(range(user_index, config.num_items, config.num_users))[: length - 1]
    if not history:
        history.append(int(np.searchsorted(chain.popularity, rng.random())))
    while len(history) < length:
        if rng.random() < config.jump_prob:
            history.append(int(np.searchsorted(chain.popularity, rng.random())))
            continue
        row = _state(history, config)
        draw = rng.random() * chain.cumulative[row, -1]
        choice = int(np.searchsorted(chain.cumulative[row], draw))
        history.append(int(chain.successors[row, min(choice, config.branching - 1)]))
    start = 1_000_000 + int(rng.integers(0, 1_000_000))
    user = f"u{user_index}"
    return [
        Interaction(
            user, f"i{min(item, config.num_items - 1)}", float(start + 60 * step), math.nan,
            0, user_index + 1, step,
        )
        for step, item in enumerate(history)
    ]
