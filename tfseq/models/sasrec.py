"""``sasrec``: SASRec, a causal self-attention next-item model, as RecBole configures it.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018, in
RecBole's version: item embedding + learned position embedding (position 0 =
the first item), LayerNorm, dropout, ``num_layers`` post-LN blocks (multi-head
causal self-attention, GELU feed-forward); a position attends to itself, the
positions before it, and never to padding. The query after a history is the
output at its last item, scored against the input item table (weight tying).
Initialisation is RecBole's: N(0, initializer_range) for tables and kernels,
zero biases.

Deviations from RecBole:
  * training scores every position of a sequence in one pass (the paper's
    setup), which trains RecBole's (prefix, next item) pairs with one dropout
    draw per sequence instead of one per prefix (``TrainConfig.all_positions=False``
    trains RecBole's separate prefixes, each with its own draw);
  * ``encode`` runs the last block for the last position only (the same
    numbers, less work), and keeps a history's last ``max_seq_len`` items
    when it is longer, as the reader does.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.models import MODELS
from tfseq.models.base import SequentialRecommender
from tfseq.models.layers import causal_encoder, check_config, check_transformer_config, last_window, normal_init


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """SASRec's hyperparameters; defaults are RecBole's.

    Attributes:
      hidden_size: item embedding width = every layer's width = the query width.
      num_layers: transformer blocks.
      num_heads: attention heads (RecBole's ``n_heads``); must divide ``hidden_size``.
      inner_size: feed-forward width.
      hidden_dropout_prob: dropout on the input embeddings and each sublayer's output.
      attn_dropout_prob: dropout on the attention weights.
      layer_norm_eps: LayerNorm epsilon.
      initializer_range: standard deviation of the normal initialiser.
      max_seq_len: number of learned positions (the reader's ``max_seq_len`` too).
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50

    def __post_init__(self) -> None:
        check_config(self, at_least_one=("hidden_size",), positive=("initializer_range",))
        check_transformer_config(self)


@MODELS.register("sasrec", SASRecConfig)
class SASRec(SequentialRecommender):
    """Causal: ``encode_all`` gives the query after every position.

    Attributes:
      init: the weights' initialisers (RecBole's normal init).
    """

    causal = True

    def __init__(self, config: SASRecConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        self.init = normal_init(config.initializer_range)
        self.item_embedding = self.init.embedding(num_items, config.hidden_size, name="item_embedding")
        self.encoder = causal_encoder(config, config.hidden_size, self.init)

    def embed(self, item_ids: tf.Tensor) -> tf.Tensor:
        """``item_ids [B, L]`` -> the encoder's input ``[B, L, H]``: the items' embeddings."""
        return self.item_embedding(item_ids)

    def encode_all(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (L <= max_seq_len) -> the query after every position ``[B, L, H]``.

        Longer inputs raise: they have no learned positions.
        """
        return self.encoder(self.embed(item_ids), item_ids, training=training)

    def encode(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (any ``L``) -> the query after each history ``[B, H]``."""
        window = last_window(item_ids, self.config.max_seq_len)  # [B, W]
        return self.encoder(self.embed(window), window, training=training, last_only=True)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The input item table ``[num_items, hidden_size]``."""
        return self.item_embedding.embeddings
