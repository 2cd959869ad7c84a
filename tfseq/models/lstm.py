"""``lstm``: Spotlight's recurrent sequence model (item embedding -> LSTM -> query).

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight), ``LSTMNet``,
a'la Hidasi et al., "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016: the item embeddings run through one LSTM whose width is
the embedding width, and the hidden state after a history is its query, scored
against the input item table (weight tying). No projection follows the LSTM.

Spotlight's best ML-1M LSTM (its ``movielens_sequence`` experiment, test MRR
0.0808): embedding 32, adaptive hinge loss, learning rate 0.05, batch 256,
11 epochs. As flags: ``--model lstm --embedding_size 32 --dropout_prob 0
--loss adaptive_hinge --learning_rate 0.05 --batch_by sequences --batch_size 256
--lr_decay_patience 0 --max_seq_len 200 --epochs 11``.

Scores carry Spotlight's per-item bias and training uses the Spotlight
families' defaults: see :mod:`tfseq.models.spotlight`.

Deviations from Spotlight:
  * the query at position t includes item t (tfseq's ``encode_all``
    contract); Spotlight prepends an empty step, so it also trains the empty
    history to predict the first item, which tfseq's reader never asks for;
  * training windows of ``max_seq_len`` (50) targets, right-padded, the state
    starting from zeros at each window's first item; Spotlight's experiment ran
    200-item chunks, left-padded, so its state first ran over the padding;
  * embedding dropout (``dropout_prob``; 0 = Spotlight), 0.2 by default;
  * initialisation: N(0, 1/embedding_size) table as Spotlight's
    ``ScaledEmbedding``; Keras's LSTM defaults (Glorot kernel, orthogonal
    recurrent kernel, forget-gate bias 1) instead of PyTorch's
    U(+-1/sqrt(width)) for every LSTM weight. These defaults keep Keras's
    cuDNN kernel on a GPU.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfseq.models.base import Features, item_ids_of
from tfseq.models.configs import LSTMConfig
from tfseq.models.spotlight import SpotlightRecommender


class LSTM(SpotlightRecommender):
    """Causal: ``encode_all`` gives the query after every position."""

    def __init__(self, config: LSTMConfig, num_items: int, **kwargs: Any) -> None:
        super().__init__(config, num_items, **kwargs)
        self.lstm = tf.keras.layers.LSTM(config.embedding_size, return_sequences=True, name="lstm")

    def representations(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the hidden state after every position ``[B, L, embedding_size]``.

        Right padding follows the real items, so it never reaches a real position's state.
        """
        item_ids = item_ids_of(features)
        return self.lstm(self.embed(item_ids, training=training), training=training)
