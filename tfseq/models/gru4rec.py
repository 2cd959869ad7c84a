"""``gru4rec``: GRU4Rec, a recurrent next-item model, as RecBole configures it.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, with the data augmentation of Tan et al., "Improved Recurrent
Neural Networks for Session-based Recommendations", DLRS 2016 (RecBole's
``GRU4Rec``): item embedding -> dropout -> stacked GRU without biases -> Dense
projection back to the embedding size; the query after a history is the
output at its last item, scored against the input item table (weight tying).
Initialisation is RecBole's: Glorot-normal item table, Glorot-uniform GRU
kernels, PyTorch's default Dense init.

Deviations from RecBole:
  * training scores every position of a sequence in one pass (the GRU is
    causal: right padding and later items never reach an earlier output),
    which trains the same (prefix, next item) pairs as RecBole's one example
    per prefix, with one embedding-dropout draw per sequence instead of one
    per prefix (``TrainConfig.all_positions=False`` trains RecBole's separate
    prefixes, each with its own draw);
  * GRU layers after the first are Glorot-initialised too (PyTorch leaves
    them at U(+-1/sqrt(hidden_size))).
A GRU without biases cannot use cuDNN's kernel on a GPU; Keras falls back to
its generic GRU there.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfseq.models.base import EmbeddingRecommender, Features, item_ids_of
from tfseq.models.configs import GRU4RecConfig


class GRU4Rec(EmbeddingRecommender):
    """Causal: ``encode_all`` gives the query after every position."""

    causal = True
    train_defaults = GRU4RecConfig.train_defaults

    def __init__(self, config: GRU4RecConfig, num_items: int, **kwargs) -> None:
        table_stddev = math.sqrt(2.0 / (num_items + config.embedding_size))  # xavier_normal_
        super().__init__(config, num_items, embedding_stddev=table_stddev, **kwargs)
        self.gru_layers = [
            tf.keras.layers.GRU(
                config.hidden_size, return_sequences=True, use_bias=False,
                kernel_initializer="glorot_uniform", recurrent_initializer="glorot_uniform",
                name=f"gru_{i}",
            )
            for i in range(config.num_layers)
        ]
        limit = 1.0 / math.sqrt(config.hidden_size)  # torch.nn.Linear's default init

        def uniform() -> tf.keras.initializers.Initializer:
            return tf.keras.initializers.RandomUniform(-limit, limit)

        self.projection = tf.keras.layers.Dense(
            config.embedding_size, kernel_initializer=uniform(), bias_initializer=uniform(),
            name="projection",
        )

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the query after every position ``[B, L, embedding_size]``."""
        item_ids = item_ids_of(features)
        x = self.embed(item_ids, training=training)  # [B, L, E]
        for gru in self.gru_layers:
            x = gru(x, training=training)  # [B, L, hidden]
        return self.projection(x)
