"""``cnn``: Spotlight's causal convolutional sequence model (stacked dilated causal 1-D convolutions).

Kula, "Spotlight", 2017 (https://github.com/maciejkula/spotlight), ``CNNNet``,
after the causal, dilated ("atrous") convolutions of WaveNet (van den Oord et
al., 2016) and ByteNet (Kalchbrenner et al., 2016): item embedding ->
``num_layers`` 1-D convolutions of width ``kernel_width`` with ``embedding_size``
filters, each padded on the left only, so the output at position t sees the
items at positions <= t; ``tanh`` or ``relu`` after each convolution, and
optionally a residual connection around each layer (the first layer's residual
is the embeddings). The query after a history is the output at its last item,
scored against the input item table (weight tying).

The query depends on the last ``receptive_field = 1 + sum_l (kernel_width - 1)
* dilation_l`` items only; ``encode`` keeps just those, so a serving request
with a long history costs no more than a short one, with the same numbers.

Spotlight's best ML-1M model (its ``movielens_sequence`` experiment, test MRR
0.0795): relu, residual, 3 layers, kernel 3, dilation (1, 2, 4), embedding 256,
adaptive hinge loss, Adam at 1e-3 in batches of 32 sequences of up to 200 items,
9 epochs. As flags: ``--model cnn --embedding_size 256 --dropout_prob 0 --loss
adaptive_hinge --batch_by sequences --batch_size 32 --lr_decay_patience 0
--max_seq_len 200 --epochs 9`` (the other defaults are its values).
Spotlight searched kernel widths 3/5/7, 1-9 layers, dilation multipliers 1/2
(layer i dilated by ``multiplier ** (i % 8)``), tanh/relu, with or without
residuals (``tuning/spaces.py``).

Scores carry Spotlight's per-item bias and training uses the Spotlight
families' defaults: see :mod:`tfseq.models.spotlight`.

Deviations from Spotlight:
  * the query at position t includes item t (tfseq's ``encode_all``
    contract); Spotlight shifts its outputs one step, so its first output (the
    empty history) is also trained to predict the first item, which tfseq's
    reader never asks for;
  * training windows of ``max_seq_len`` (50) targets cut from the end of each
    sequence, right-padded; Spotlight's experiment cut 200-item chunks from the
    end, left-padded, and dropped chunks under 20 items;
  * embedding dropout (``dropout_prob``; 0 = Spotlight); the default 64-wide
    embedding with dropout 0.2 suits tfseq's default data better than 256 without;
  * initialisation: N(0, 1/embedding_size) table as Spotlight's
    ``ScaledEmbedding``, but the padding row is an ordinary (never used as a
    target) row rather than a frozen zero; convolutions U(+-1/sqrt(fan_in))
    as PyTorch's default; biases zero, as Spotlight's ``ZeroEmbedding``;
  * adaptive hinge draws its negatives from the real items and leaves out one
    equal to the positive (``tfseq.losses.hinge``); Spotlight's can draw the
    padding item and the positive itself.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from tfseq.models.base import Features, item_ids_of
from tfseq.models.configs import CNNConfig
from tfseq.models.spotlight import SpotlightRecommender

NONLINEARITIES = {"tanh": tf.math.tanh, "relu": tf.nn.relu}  # keyed by tfseq.models.configs.NONLINEARITIES


class CNN(SpotlightRecommender):
    """Causal: ``encode_all`` gives the query after every position; ``encode`` convolves only the last
    ``receptive_field`` items of each history, the only ones that can reach its query."""

    def __init__(self, config: CNNConfig, num_items: int, **kwargs: Any) -> None:
        super().__init__(config, num_items, **kwargs)
        width = config.embedding_size
        limit = 1.0 / math.sqrt(width * config.kernel_width)  # torch.nn.Conv default: 1/sqrt(fan_in)

        def uniform() -> tf.keras.initializers.Initializer:
            return tf.keras.initializers.RandomUniform(-limit, limit)

        self.convolutions = [
            tf.keras.layers.Conv1D(
                width, config.kernel_width, dilation_rate=dilation, padding="causal",
                kernel_initializer=uniform(), bias_initializer=uniform(), name=f"conv_{i}",
            )
            for i, dilation in enumerate(config.dilations)
        ]
        self.activation = NONLINEARITIES[config.nonlinearity]

    def representations(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> the last layer's output after every position ``[B, L, embedding_size]``."""
        item_ids = item_ids_of(features)
        x = self.embed(item_ids, training=training)  # [B, L, E]
        for convolution in self.convolutions:
            y = self.activation(convolution(x))  # [B, L, E]: position t sees inputs <= t
            x = x + y if self.config.residual else y
        return x

    @property
    def history_window(self) -> int:
        return self.config.receptive_field
