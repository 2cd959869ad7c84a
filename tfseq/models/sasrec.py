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

from typing import Callable

import tensorflow as tf

from tfseq.models.base import Features, SequentialRecommender, item_ids_of
from tfseq.models.configs import SASRecConfig
from tfseq.models.layers import TransformerBlock, causal_encoder, last_window, normal_init


class SASRec(SequentialRecommender):
    """Causal: ``encode_all`` gives the query after every position.

    Attributes:
      init: the weights' initialisers (RecBole's normal init).
    """

    causal = True
    train_defaults = SASRecConfig.train_defaults

    def __init__(self, config: SASRecConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        self.init = normal_init(config.initializer_range)
        self.item_embedding = self.init.embedding(num_items, config.embedding_size, name="item_embedding")
        # Positions counted back from the last item make the query after position t depend on how many
        # items follow it: such a model is not causal and trains on separate prefixes.
        self.causal = config.position_origin == "first"
        self.encoder = causal_encoder(config, config.embedding_size, self.init, block=self.encoder_block(config),
                                      positions_from_last=not self.causal)

    @staticmethod
    def encoder_block(config: SASRecConfig) -> Callable[..., TransformerBlock]:
        """Builds the encoder's blocks (a subclass may mix other sublayers in)."""
        return TransformerBlock

    def embed(self, item_ids: tf.Tensor) -> tf.Tensor:
        """``item_ids [B, L]`` -> the encoder's input ``[B, L, H]``: the items' embeddings."""
        return self.item_embedding(item_ids)

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (L <= max_seq_len) -> the query after every position ``[B, L, H]``.

        Longer inputs raise: they have no learned positions.
        """
        item_ids = item_ids_of(features)
        return self.encoder(self.embed(item_ids), item_ids, training=training)

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (any ``L``) -> the query after each history ``[B, H]``."""
        item_ids = item_ids_of(features)
        window = last_window(item_ids, self.config.max_seq_len)  # [B, W]
        return self.encoder(self.embed(window), window, training=training, last_only=True)

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The input item table ``[num_items, embedding_size]``."""
        return self.item_embedding.embeddings
