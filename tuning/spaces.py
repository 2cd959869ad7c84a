"""Search spaces: one hyperparameter dimension per :class:`Param`, and the default space of each model.

A space is a tuple of params; each param knows where it came from (a
``hyper.test`` line or this module) so every error can name its source. The
four kinds are RecBole's ``hyper.test`` kinds with hyperopt's meanings:

* ``choice``: one of the listed values;
* ``uniform a b``: a float uniformly in ``[a, b]``;
* ``loguniform a b``: ``exp(uniform(a, b))`` -- the bounds are *exponents*
  (RecBole's ``learning_rate loguniform -8,0`` draws from ``[e^-8, 1]``);
* ``quniform a b q``: ``round(uniform(a, b) / q) * q``, i.e. one of
  ``a, a + q, ..., b`` (every grid value equally likely here; hyperopt gives
  the two end values half the weight of the others).

``choice`` and ``quniform`` are discrete (a grid search enumerates them);
``uniform`` and ``loguniform`` are continuous (random, Bayesian and Hyperband
sample them; a grid search rejects them, as RecBole's exhaustive search does).

Default spaces (the ``hyper.test`` RecBole publishes for the model, or the
paper's), used when no ``--params_file`` is given:

* CORE (``core_trm``, ``core_ave``): ``learning_rate`` x ``temperature``, the
  grid of Hou et al., "CORE: Simple and Effective Session-based
  Recommendation within Consistent Representation Space", SIGIR 2022
  (12 trials);
* GRU4Rec: RecBole's GRU4Rec ``hyper.test`` (learning rate, embedding
  dropout, layers) at ``hidden_size`` 128 (90 trials);
* SASRec: RecBole's SASRec ``hyper.test`` (learning rate, attention and hidden
  dropout 0.2 / 0.5 -- Kang & McAuley, ICDM 2018, use 0.2 on dense and 0.5 on
  sparse data --, 1 or 2 heads, 1-3 layers) at ``embedding_size`` 64, RecBole's
  default width (120 trials; prefer ``--oracle random`` or ``bayesian``);
* cnn: Spotlight's CNN search (Kula, 2017, ``movielens_sequence``): kernel
  width, 1-9 layers, dilation multiplier 1 or 2, tanh or relu, residual or
  not, embedding size, learning rate, L2 (``weight_decay``), without dropout
  as Spotlight (31,104 combinations: use ``--oracle random``; Spotlight drew
  100). Spotlight also searched the loss, batch size and epochs: run one
  search per ``--loss``;
* lstm, pooling: Spotlight's searches for them (embedding size, learning rate,
  L2, no dropout; 144 trials each);
* hrm: HRM's aggregation (average or max, both layers; Wang et al., SIGIR
  2015), the recent-item ``window`` (RecBole's ``high_order``), embedding
  size, learning rate and dropout (216 trials; prefer ``--oracle random``);
* difsr: DIF-SR's fusion type (sum, concat, gate), the attribute loss weight
  ``lambda_attr`` (the authors' ``lamdas``), learning rate and hidden dropout
  around the authors' Beauty run (gate, 10, 1e-4, 0.5) at tfseq's default
  2 x 128 shape (54 trials; prefer ``--oracle random``). Needs ``--item_features``;
* sasrec_f: SASRec's dropouts and learning rate at RecBole's SASRecF shape,
  and the attribute pooling (sum or mean) (24 trials). Needs ``--item_features``;
* pop: nothing to tune (one trial).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Iterable, Sequence

from tfseq.config import ConfigError

KINDS = ("choice", "uniform", "loguniform", "quniform")
DISCRETE = ("choice", "quniform")
_DIGITS = 12  # grid values are rounded to this many significant digits (0.1 * 3 -> 0.3)

Scalar = bool | int | float | str


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter.

    Attributes:
      name: the flat config key (``learning_rate``, ``num_layers`` ...).
      kind: one of :data:`KINDS`.
      values: the candidates of a ``choice``.
      low, high: the bounds of ``uniform`` / ``quniform``; the exponent bounds of ``loguniform``.
      q: the step of ``quniform``.
      source: where it was defined, e.g. ``hyper.test:3``, for error messages.
    """

    name: str
    kind: str
    values: tuple[Scalar, ...] = ()
    low: float = 0.0
    high: float = 0.0
    q: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if self.kind not in KINDS:
            raise ConfigError(f"{where}unknown kind {self.kind!r} for {self.name}; kinds: {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.values:
                raise ConfigError(f"{where}{self.name} choice needs at least one value")
            if any(not isinstance(v, (bool, int, float, str)) for v in self.values):
                raise ConfigError(f"{where}{self.name} choice values must be numbers, strings or booleans, "
                                  f"got {list(self.values)!r}")
            if len(set(self.values)) != len(self.values):
                raise ConfigError(f"{where}{self.name} choice lists a value twice: {list(self.values)!r}")
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(f"{where}{self.name} {self.kind} needs low < high, got {self.low}, {self.high}")
        if self.kind == "quniform" and not (math.isfinite(self.q) and self.q > 0):
            raise ConfigError(f"{where}{self.name} quniform needs a step q > 0, got {self.q}")

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE

    def grid(self) -> tuple[Scalar, ...]:
        """The candidate values of a discrete param, in order."""
        if self.kind == "choice":
            return _same_type(self.values)
        if self.kind == "quniform":
            first, last = round(self.low / self.q), round(self.high / self.q)
            values = [_clean(k * self.q) for k in range(first, last + 1)]
            if all(float(v).is_integer() for v in (self.low, self.high, self.q)):
                return tuple(int(v) for v in values)
            return tuple(float(v) for v in values)
        where = f"{self.source}: " if self.source else ""
        raise ConfigError(f"{where}{self.name} is {self.kind} (continuous): it has no grid; "
                          f"use --oracle random, bayesian or hyperband, or a choice / quniform")

    def bounds(self) -> tuple[float, float]:
        """The value range: ``[low, high]``, or ``[e^low, e^high]`` for ``loguniform``."""
        if self.kind == "loguniform":
            return math.exp(self.low), math.exp(self.high)
        if self.discrete:
            grid = self.grid()
            return min(grid), max(grid)  # type: ignore[return-value]
        return self.low, self.high

    def declare(self, hp: Any) -> None:
        """Adds this param to a ``keras_tuner.HyperParameters`` space."""
        if self.discrete:
            values = list(self.grid())
            ordered = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            hp.Choice(self.name, values, ordered=ordered and len(values) > 1)
        else:
            low, high = self.bounds()
            hp.Float(self.name, low, high, sampling="log" if self.kind == "loguniform" else "linear")

    def describe(self) -> str:
        """The ``hyper.test`` line of this param."""
        if self.kind == "choice":
            return f"{self.name} choice {list(self.values)!r}"
        if self.kind == "quniform":
            return f"{self.name} quniform {self.low:g},{self.high:g},{self.q:g}"
        return f"{self.name} {self.kind} {self.low:g},{self.high:g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without ``source``): what a search was started with, to check a resume."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "choice":
            out["values"] = list(self.values)
        else:
            out.update(low=self.low, high=self.high)
            if self.kind == "quniform":
                out["q"] = self.q
        return out


def choice(name: str, values: Sequence[Scalar], source: str = "tuning/spaces.py") -> Param:
    return Param(name, "choice", tuple(values), source=source)


def _clean(value: float) -> float:
    """``value`` rounded to :data:`_DIGITS` significant digits (float noise of ``k * q``)."""
    return float(f"{value:.{_DIGITS}g}")


def _same_type(values: Sequence[Scalar]) -> tuple[Scalar, ...]:
    """Ints mixed with floats become floats (KerasTuner's Choice holds one type)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values) and any(isinstance(v, float) for v in numbers):
        return tuple(float(v) for v in values)
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
        raise ConfigError(f"choice values must share one type, got {list(values)!r}")
    return tuple(values)


CORE_SPACE = (
    choice("learning_rate", [0.0005, 0.001, 0.003]),
    choice("temperature", [0.05, 0.07, 0.1, 0.2]),
)
# Spotlight's shared dimensions (its movielens_sequence experiment; l2 is TrainConfig.weight_decay).
SPOTLIGHT_LEARNING_RATES = [0.001, 0.01, 0.05, 0.1]
SPOTLIGHT_L2 = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
SPOTLIGHT_EMBEDDING_SIZES = [8, 16, 32, 64, 128, 256]
SPOTLIGHT_SPACE = (
    choice("learning_rate", SPOTLIGHT_LEARNING_RATES),
    choice("weight_decay", SPOTLIGHT_L2),
    choice("embedding_size", SPOTLIGHT_EMBEDDING_SIZES),
    choice("dropout_prob", [0.0]),
    choice("item_bias", [True, False]),  # Spotlight always has it; tfseq can leave it out
)
DEFAULT_SPACES: dict[str, tuple[Param, ...]] = {
    "core_trm": CORE_SPACE,
    "core_ave": (*CORE_SPACE, choice("window", [0, 1, 3, 5, 10])),
    "gru4rec": (
        choice("learning_rate", [0.01, 0.005, 0.001, 0.0005, 0.0001]),
        choice("dropout_prob", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        choice("num_layers", [1, 2, 3]),
        choice("hidden_size", [128]),
    ),
    "sasrec": (
        choice("learning_rate", [0.01, 0.005, 0.001, 0.0005, 0.0001]),
        choice("attn_dropout_prob", [0.2, 0.5]),
        choice("hidden_dropout_prob", [0.2, 0.5]),
        choice("num_heads", [1, 2]),
        choice("num_layers", [1, 2, 3]),
        choice("embedding_size", [64]),
    ),
    "bsarec": (  # the authors' grid
        choice("learning_rate", [0.001, 0.0005]),
        choice("alpha", [0.1, 0.3, 0.5, 0.7, 0.9]),
        choice("c", [1, 3, 5, 7, 9]),
        choice("num_heads", [1, 2, 4]),
    ),
    "cnn": (
        choice("learning_rate", SPOTLIGHT_LEARNING_RATES),
        choice("weight_decay", SPOTLIGHT_L2),
        choice("embedding_size", SPOTLIGHT_EMBEDDING_SIZES),
        choice("kernel_width", [3, 5, 7]),
        choice("num_layers", list(range(1, 10))),
        choice("dilation_multiplier", [1, 2]),
        choice("nonlinearity", ["tanh", "relu"]),
        choice("residual", [True, False]),
        choice("dropout_prob", [0.0]),
        choice("item_bias", [True, False]),
    ),
    "lstm": SPOTLIGHT_SPACE,
    "pooling": (*SPOTLIGHT_SPACE, choice("window", [0, 1, 3, 5, 10]), choice("tie_weights", [True, False])),
    "hrm": (
        choice("aggregation", ["average", "max"]),
        choice("window", [1, 2, 5, 10]),
        choice("embedding_size", [32, 64, 128]),
        choice("learning_rate", [0.01, 0.003, 0.001]),
        choice("dropout_prob", [0.0, 0.2, 0.4]),
    ),
    "difsr": (
        choice("fusion_type", ["sum", "concat", "gate"]),
        choice("lambda_attr", [5.0, 10.0, 15.0]),
        choice("learning_rate", [0.001, 0.0003, 0.0001]),
        choice("hidden_dropout_prob", [0.3, 0.5]),
    ),
    "sasrec_f": (
        choice("learning_rate", [0.005, 0.001, 0.0005]),
        choice("attn_dropout_prob", [0.2, 0.5]),
        choice("hidden_dropout_prob", [0.2, 0.5]),
        choice("pooling_mode", ["sum", "mean"]),
    ),
    "pop": (),
}


def resolve_model(name: str) -> str:
    """The registry key of a CLI model word (``core`` -> ``core_trm``, ``SASRec`` -> ``sasrec``)."""
    from tfseq.aliases import model_name

    return model_name(name)


def default_space(model: str) -> tuple[Param, ...]:
    """The default space of registry model ``model``."""
    from tfseq.models import MODELS

    model = resolve_model(model)
    MODELS.get(model)  # unknown model: KeyError listing the known ones
    if model not in DEFAULT_SPACES:
        raise ConfigError(f"model {model!r} has no default search space; give --params_file")
    return DEFAULT_SPACES[model]


def check_space(space: Iterable[Param], model: str, loss: str) -> tuple[Param, ...]:
    """``space`` as a tuple, after checking names are unique and known to ``model`` + ``loss``."""
    from tfseq.experiment import ExperimentConfig

    space = tuple(space)
    known = ExperimentConfig.known_keys(model, loss) - {"model", "loss"}
    seen: dict[str, Param] = {}
    for param in space:
        where = f"{param.source}: " if param.source else ""
        if param.name not in known:
            raise ConfigError(
                f"{where}unknown hyperparameter {param.name!r} for model {model!r} with loss {loss!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        if param.name in seen:
            raise ConfigError(f"{where}{param.name} is already searched ({seen[param.name].source})")
        seen[param.name] = param
    return space


def grid(space: Sequence[Param]) -> list[dict[str, Scalar]]:
    """Every combination of a discrete space, the last param varying fastest."""
    names = [p.name for p in space]
    return [dict(zip(names, combo)) for combo in itertools.product(*(p.grid() for p in space))]


def to_hyperparameters(space: Sequence[Param]) -> Any:
    """The ``keras_tuner.HyperParameters`` of ``space``."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for param in space:
        param.declare(hp)
    return hp


def clean_values(values: dict[str, Any]) -> dict[str, Any]:
    """Trial values with float noise removed and numpy scalars made plain Python."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if hasattr(value, "item"):  # numpy scalar
            value = value.item()
        out[name] = _clean(value) if isinstance(value, float) else value
    return out
