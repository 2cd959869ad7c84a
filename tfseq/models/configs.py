"""Every registry model's hyperparameters: frozen config dataclasses, importable without TensorFlow.

The flags (``--help`` lists every field with its default), config files and
``ExperimentConfig`` read these classes before any model is built, so they live
apart from the Keras layers: building the command line does not import
TensorFlow. Each model module imports its config from here (``SASRecConfig`` is
still ``tfseq.models.sasrec.SASRecConfig``); the registry
(:mod:`tfseq.models`) names the pair.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Iterable, Mapping

from tfseq.config import ConfigError

NONLINEARITIES = ("tanh", "relu")  # cnn: the activation after each convolution
AGGREGATIONS = ("average", "max")  # hrm: the pooling of both layers
FUSION_TYPES = ("sum", "concat", "gate")  # difsr: how the streams' attention scores are fused
ATTRIBUTE_PREDICTORS = ("linear", "none")  # difsr: the auxiliary attribute loss
POOLING_MODES = ("sum", "mean", "max")  # sasrec_f, difsr: an item's values of one field -> one vector
POSITION_ORIGINS = ("first", "last")  # sasrec and kin: position 0 is the first item, or the last is max_seq_len - 1

# The training defaults (``train_defaults``) of sasrec and its kin, gru4rec and Spotlight's cnn,
# lstm and pooling: one pass per sequence in steps of about 256 targets, so every target weighs the same and
# an epoch has as many steps as RecBole's, and the learning rate cut after 2 flat epochs
# (bench/ablation.py, bench/spotlight_defaults.py and bench/quality.py, in RESULTS.md).
TARGET_BATCHES: Mapping[str, Any] = {"batch_by": "targets", "batch_size": 256, "lr_decay_patience": 2}


# -- checks ------------------------------------------------------------------------------
def check_config(
    config: Any,
    *,
    at_least_one: Iterable[str] = (),
    positive: Iterable[str] = (),
    probabilities: Iterable[str] = (),
) -> None:
    """Raises ConfigError naming ``<ConfigClass>.<field>`` for the first value out of range.

    Args:
      config: a model config dataclass.
      at_least_one: integer fields that must be >= 1.
      positive: fields that must be > 0.
      probabilities: dropout rates, in [0, 1).
    """
    owner = type(config).__name__
    for field in at_least_one:
        value = getattr(config, field)
        if value < 1:
            raise ConfigError(f"{owner}.{field} must be >= 1, got {value}")
    for field in positive:
        value = getattr(config, field)
        if not value > 0:
            raise ConfigError(f"{owner}.{field} must be > 0, got {value}")
    for field in probabilities:
        value = getattr(config, field)
        if not 0 <= value < 1:
            raise ConfigError(f"{owner}.{field} must be in [0, 1), got {value}")


def check_heads(config: Any, hidden_field: str) -> None:
    """The attention heads must split ``hidden_field`` evenly."""
    hidden, heads = getattr(config, hidden_field), config.num_heads
    if hidden % heads:
        raise ConfigError(
            f"{type(config).__name__}.{hidden_field} ({hidden}) must be divisible by "
            f"num_heads ({heads})"
        )


def check_transformer_config(config: Any, hidden_field: str = "embedding_size") -> None:
    """:func:`check_config` of RecBole's transformer fields (those ``layers.causal_encoder`` reads), and
    :func:`check_heads` of ``hidden_field``."""
    check_config(
        config, at_least_one=("num_layers", "num_heads", "inner_size", "max_seq_len"),
        positive=("layer_norm_eps",), probabilities=("hidden_dropout_prob", "attn_dropout_prob"),
    )
    check_heads(config, hidden_field)


def check_pooling_mode(config: Any) -> None:
    """``config.pooling_mode`` must be one of :data:`POOLING_MODES`."""
    if config.pooling_mode not in POOLING_MODES:
        raise ConfigError(f"{type(config).__name__}.pooling_mode must be one of {', '.join(POOLING_MODES)}, "
                          f"got {config.pooling_mode!r}")


# -- cnn (tfseq.models.cnn) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """The causal CNN's hyperparameters; Spotlight's best ML-1M model but for the embedding width and dropout.

    Attributes:
      embedding_size: item embedding width = convolution filters = query width.
      kernel_width: width of every convolution.
      num_layers: stacked convolutions.
      dilation: per-layer dilation, ``num_layers`` values; empty means
        ``dilation_multiplier ** (i % 8)`` for layer ``i`` (1, 2, 4 for 3 layers).
      dilation_multiplier: see ``dilation`` (1 = no dilation).
      nonlinearity: ``"relu"`` or ``"tanh"``, after each convolution.
      residual: add each layer's input to its output.
      dropout_prob: dropout on the input item embeddings.
      item_bias: a learned per-item score added to ``query . item`` (Spotlight's ``item_biases``).
    """

    embedding_size: int = 64
    kernel_width: int = 3
    num_layers: int = 3
    dilation: tuple[int, ...] = ()
    dilation_multiplier: int = 2
    nonlinearity: str = "relu"
    residual: bool = True
    dropout_prob: float = 0.2
    item_bias: bool = True

    train_defaults: ClassVar[Mapping[str, Any]] = TARGET_BATCHES

    def __post_init__(self) -> None:
        check_config(
            self, at_least_one=("embedding_size", "kernel_width", "num_layers", "dilation_multiplier"),
            probabilities=("dropout_prob",),
        )
        if self.nonlinearity not in NONLINEARITIES:
            raise ConfigError(
                f"CNNConfig.nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {self.nonlinearity!r}"
            )
        if self.dilation and len(self.dilation) != self.num_layers:
            raise ConfigError(
                f"CNNConfig.dilation needs one value per layer ({self.num_layers}), got {list(self.dilation)}"
            )
        if any(d < 1 for d in self.dilation):
            raise ConfigError(f"CNNConfig.dilation values must be >= 1, got {list(self.dilation)}")

    @property
    def dilations(self) -> tuple[int, ...]:
        """The dilation of each layer."""
        if self.dilation:
            return tuple(self.dilation)
        return tuple(self.dilation_multiplier ** (i % 8) for i in range(self.num_layers))

    @property
    def receptive_field(self) -> int:
        """The span of last items a query can depend on (large dilations can leave gaps inside it)."""
        return 1 + sum((self.kernel_width - 1) * d for d in self.dilations)


# -- core (tfseq.models.core) -----------------------------------------------
@dataclasses.dataclass(frozen=True)
class COREConfig:
    """CORE's hyperparameters (all of ``core_ave``'s); defaults are RecBole's.

    Attributes:
      embedding_size: item embedding width = the query width.
      temperature: scores are cosine / temperature.
      sess_dropout: dropout on the session's item embeddings (training).
      item_dropout: dropout on the candidate table before normalisation (training).
    """

    embedding_size: int = 64
    temperature: float = 0.07
    sess_dropout: float = 0.2
    item_dropout: float = 0.2

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        check_config(
            self, at_least_one=("embedding_size",), positive=("temperature",),
            probabilities=("sess_dropout", "item_dropout"),
        )


@dataclasses.dataclass(frozen=True)
class COREAveConfig(COREConfig):
    """``core_ave``'s hyperparameters: CORE's and how many last items the session mean covers.

    Attributes:
      window: average the last ``window`` items of the history; 0 averages all of it (CORE's,
        RecBole's). Under leave-one-out without history masking a whole history's mean ranks its
        own items first, each a miss, as for ``pooling``.
    """

    window: int = 3

    def check(self) -> None:
        super().check()
        if self.window < 0:
            raise ConfigError(f"COREAveConfig.window must be >= 0 (0: the whole history), got {self.window}")


@dataclasses.dataclass(frozen=True)
class CORETrmConfig(COREConfig):
    """``core_trm``: COREConfig plus the transformer that weighs the items (RecBole's defaults).

    Attributes:
      num_layers: transformer blocks.
      num_heads: attention heads (RecBole's ``n_heads``); must divide ``embedding_size``.
      inner_size: feed-forward width.
      hidden_dropout_prob: dropout on the transformer's input and each sublayer's output.
      attn_dropout_prob: dropout on the attention weights.
      layer_norm_eps: LayerNorm epsilon.
      max_seq_len: number of learned positions (the reader's ``max_seq_len`` too).
    """

    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    layer_norm_eps: float = 1e-12
    max_seq_len: int = 50

    def check(self) -> None:
        super().check()
        check_transformer_config(self, "embedding_size")


# -- difsr (tfseq.models.difsr) ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class DIFSRConfig:
    """DIF-SR's hyperparameters; defaults fit an Amazon Beauty run in an hour on 2 CPU cores (module docstring).

    Attributes:
      embedding_size: item embedding width = every layer's width = the query width.
      attribute_embedding_size: width of each field's attribute embeddings and of its
        query/key projections; must be divisible by ``num_heads``.
      num_layers: transformer blocks.
      num_heads: attention heads; must divide ``embedding_size``.
      inner_size: feed-forward width.
      hidden_dropout_prob: dropout on the input embeddings and each sublayer's output.
      attn_dropout_prob: dropout on the attention weights.
      layer_norm_eps: LayerNorm epsilon.
      initializer_range: standard deviation of the normal initialiser.
      max_seq_len: number of learned positions (the reader's ``max_seq_len`` too).
      fusion_type: how the streams' attention scores are fused: sum, concat or gate.
      pooling_mode: how a multi-valued attribute becomes one vector: sum, mean or max.
      attribute_predictor: ``linear`` (the auxiliary attribute loss) or ``none``.
      lambda_attr: weight of the auxiliary attribute loss (the authors' ``lamdas``).
    """

    embedding_size: int = 128
    attribute_embedding_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.3
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50
    fusion_type: str = "gate"
    pooling_mode: str = "sum"
    attribute_predictor: str = "linear"
    lambda_attr: float = 10.0

    uses_item_features: ClassVar[bool] = True
    train_defaults: ClassVar[Mapping[str, Any]] = {
        "all_positions": False, "batch_size": 128, "lr_decay_patience": 3, "valid_metric": "recall@20", "epochs": 40,
    }

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("embedding_size", "attribute_embedding_size"), positive=("initializer_range",))
        check_transformer_config(self)
        check_heads(self, "attribute_embedding_size")
        check_pooling_mode(self)
        for name, allowed in (("fusion_type", FUSION_TYPES), ("attribute_predictor", ATTRIBUTE_PREDICTORS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"DIFSRConfig.{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if not (self.lambda_attr >= 0 and math.isfinite(self.lambda_attr)):
            raise ConfigError(f"DIFSRConfig.lambda_attr must be >= 0, got {self.lambda_attr}")


# -- gru4rec (tfseq.models.gru4rec) -----------------------------------------
@dataclasses.dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec's hyperparameters; defaults are RecBole's. Its training defaults are
    :data:`TARGET_BATCHES`: batches of 256 whole sequences give long sequences more weight and an
    epoch fewer steps, and learn less (bench/quality.py's Beauty rows, in RESULTS.md).

    Attributes:
      embedding_size: item embedding width, also the query width.
      hidden_size: GRU state width.
      num_layers: stacked GRU layers.
      dropout_prob: dropout on the input item embeddings.
    """

    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout_prob: float = 0.3

    train_defaults: ClassVar[Mapping[str, Any]] = TARGET_BATCHES

    def __post_init__(self) -> None:
        check_config(
            self, at_least_one=("embedding_size", "hidden_size", "num_layers"),
            probabilities=("dropout_prob",),
        )


# -- hrm (tfseq.models.hrm) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HRMConfig:
    """HRM's hyperparameters; defaults are RecBole's.

    Attributes:
      embedding_size: width of the item and user embeddings = query width.
      window: how many of the most recent items layer 1 pools (RecBole's ``high_order``).
      aggregation: ``"average"`` or ``"max"`` pooling, in both layers.
      dropout_prob: dropout on the user and item vectors before layer 2.
      tie_weights: score candidates with the input item table (RecBole); False keeps a
        separate candidate table (MetaSpore's item tower), which lets ``query . item``
        tell "i then j" from "j then i".
    """

    embedding_size: int = 64
    window: int = 2
    aggregation: str = "max"
    dropout_prob: float = 0.2
    tie_weights: bool = False

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("embedding_size", "window"), probabilities=("dropout_prob",))
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"HRMConfig.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )


# -- lstm (tfseq.models.lstm) -----------------------------------------------
@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """The LSTM model's hyperparameters.

    Attributes:
      embedding_size: item embedding width = LSTM width = query width (Spotlight's
        default 32, its best ML-1M model 32).
      dropout_prob: dropout on the input item embeddings (Spotlight: none).
      item_bias: a learned per-item score added to ``query . item`` (Spotlight's ``item_biases``).
    """

    embedding_size: int = 64
    dropout_prob: float = 0.2
    item_bias: bool = True

    train_defaults: ClassVar[Mapping[str, Any]] = TARGET_BATCHES

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("embedding_size",), probabilities=("dropout_prob",))


# -- pooling (tfseq.models.pooling) -----------------------------------------
@dataclasses.dataclass(frozen=True)
class PoolingConfig:
    """The pooling model's hyperparameters.

    Attributes:
      embedding_size: item embedding width = query width (Spotlight's default 32).
      dropout_prob: dropout on the item embeddings before averaging (Spotlight: none).
      item_bias: a learned per-item score added to ``query . item`` (Spotlight's ``item_biases``).
      tie_weights: score candidates with the averaged item table (Spotlight); False keeps a
        separate candidate table.
      window: average the last ``window`` items of the history; 0 averages all of it (Spotlight).
        The whole history's mean ranks its own items first, which leave-one-out counts as misses.
    """

    embedding_size: int = 64
    dropout_prob: float = 0.2
    item_bias: bool = True
    tie_weights: bool = True
    window: int = 3

    train_defaults: ClassVar[Mapping[str, Any]] = TARGET_BATCHES

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("embedding_size",), probabilities=("dropout_prob",))
        if self.window < 0:
            raise ConfigError(f"PoolingConfig.window must be >= 0 (0: the whole history), got {self.window}")


# -- pop (tfseq.models.pop) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PopConfig:
    """Popularity has no hyperparameters."""


# -- sasrec (tfseq.models.sasrec) -------------------------------------------
@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """SASRec's hyperparameters; defaults are RecBole's.

    Attributes:
      embedding_size: item embedding width = every layer's width = the query width.
      num_layers: transformer blocks.
      num_heads: attention heads (RecBole's ``n_heads``); must divide ``embedding_size``.
      inner_size: feed-forward width.
      hidden_dropout_prob: dropout on the input embeddings and each sublayer's output.
      attn_dropout_prob: dropout on the attention weights.
      layer_norm_eps: LayerNorm epsilon.
      initializer_range: standard deviation of the normal initialiser.
      max_seq_len: number of learned positions (the reader's ``max_seq_len`` too).
      position_origin: ``"first"``: position 0 is a window's first item (RecBole); ``"last"``: the
        last item is always position ``max_seq_len - 1``, as in the left-padded windows of SASRec's and
        BSARec's own code. ``"last"`` is not causal, so the model trains on separate prefixes.
    """

    embedding_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50
    position_origin: str = "first"

    train_defaults: ClassVar[Mapping[str, Any]] = TARGET_BATCHES

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("embedding_size",), positive=("initializer_range",))
        check_transformer_config(self)
        if self.position_origin not in POSITION_ORIGINS:
            raise ConfigError(f"{type(self).__name__}.position_origin must be one of {', '.join(POSITION_ORIGINS)}, "
                              f"got {self.position_origin!r}")


# -- bsarec (tfseq.models.bsarec) -------------------------------------------
@dataclasses.dataclass(frozen=True)
class BSARecConfig(SASRecConfig):
    """BSARec's hyperparameters: SASRec's, plus the frequency filter's; defaults are the
    authors' Amazon Beauty settings (one head, ``c`` 5, ``alpha`` 0.7).

    Attributes:
      c: the low-pass filter keeps the ``c // 2 + 1`` lowest frequencies of a
        ``max_seq_len`` window (the paper's ``c``); from ``max_seq_len`` on, all of them.
      alpha: each block's output mixes ``alpha`` of the filter branch with
        ``1 - alpha`` of the self-attention branch.
    """

    num_heads: int = 1
    c: int = 5
    alpha: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.c < 1:
            raise ConfigError(f"BSARecConfig.c must be >= 1, got {self.c}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"BSARecConfig.alpha must be in [0, 1], got {self.alpha}")


# -- sasrec_f (tfseq.models.sasrec_f) ---------------------------------------
@dataclasses.dataclass(frozen=True)
class SASRecFConfig(SASRecConfig):
    """SASRec's hyperparameters (RecBole's defaults) and how multi-valued attributes are pooled.

    Attributes:
      pooling_mode: sum, mean or max over an item's values of one field.
    """

    pooling_mode: str = "sum"

    uses_item_features: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pooling_mode(self)
