"""``bsarec``: BSARec, SASRec with a frequency-domain inductive bias beside self-attention.

Shin et al., "An Attentive Inductive Bias for Sequential Recommendation beyond
the Self-Attention", AAAI 2024. Each block mixes two branches of its input ``x``:

* the filter branch: ``low`` keeps the ``c // 2 + 1`` lowest frequencies of ``x``
  along the sequence (a Fourier low-pass), ``high = x - low``, and the branch is
  ``LayerNorm(x + dropout(low + beta^2 * high))`` with a learned ``beta [H]``;
* the attention branch: SASRec's self-attention sublayer (dropout, residual, LayerNorm);

as ``alpha * filter + (1 - alpha) * attention``, then SASRec's feed-forward sublayer.
Embeddings, positions, initialisation and weight tying are tfseq's SASRec.

Deviation from the authors' code, so that the model is causal and trains in one pass:
their filter runs over a whole left-padded window of ``max_seq_len`` items, so an
item's hidden state in a lower block mixes in the items after it (only the last
position's output is ever scored, so nothing leaks). Here position ``t`` low-passes
only the items up to ``t``, with the weights the authors' filter gives the last position
of a window: a causal filter ``low_t = sum_d h_d x_{t-d}`` (:func:`lowpass_weights`).
At the last position of a full window, the first block computes exactly their filter;
positions before a short history's start count as zeros instead of padding vectors.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfseq.models.configs import BSARecConfig
from tfseq.models.layers import Init, TransformerBlock
from tfseq.models.sasrec import SASRec


def lowpass_weights(window: int, c: int) -> np.ndarray:
    """``h [window]``: ``h[d]`` weighs the item ``d`` steps back in the Fourier low-pass of a
    ``window``-long sequence (``rfft``, the ``c // 2 + 1`` lowest bins kept, ``irfft``), read
    at the window's last position."""
    spectrum = np.fft.rfft(np.eye(window), axis=0, norm="ortho")
    spectrum[c // 2 + 1:] = 0
    lowpass = np.fft.irfft(spectrum, n=window, axis=0, norm="ortho")  # [output, input position]
    return lowpass[window - 1, ::-1].copy()


def causal_lowpass_matrix(window: int, c: int) -> np.ndarray:
    """``M [window, window]`` with ``(M x)_t = sum_{d <= t} h_d x_{t-d}``: the causal filter as a matrix."""
    weights = lowpass_weights(window, c)
    lags = np.arange(window)[:, None] - np.arange(window)[None, :]  # t - s
    return np.where(lags >= 0, weights[np.clip(lags, 0, window - 1)], 0.0).astype(np.float32)


class FrequencyFilter(tf.keras.layers.Layer):
    """The filter branch: ``LayerNorm(x + dropout(low + beta^2 * (x - low)))``, ``low`` causal."""

    def __init__(self, window: int, c: int, dropout: float, layer_norm_eps: float, init: Init,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.matrix = tf.constant(causal_lowpass_matrix(window, c))  # [W, W]
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.norm = init.layer_norm(layer_norm_eps, name="norm")

    def build(self, input_shape: tf.TensorShape) -> None:
        # The authors draw sqrt(beta) from N(0, 1).
        self.sqrt_beta = self.add_weight(
            name="sqrt_beta", shape=[int(input_shape[-1])],
            initializer=tf.keras.initializers.RandomNormal(stddev=1.0),
        )
        super().build(input_shape)

    def call(self, x: tf.Tensor, query_positions: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        """``x [B, L, H]`` (L <= window) -> ``[B, L, H]``, or ``[B, 1, H]`` at ``query_positions [B]``."""
        length = tf.shape(x)[1]
        matrix = self.matrix[:length, :length]
        if query_positions is None:
            low = tf.einsum("ts,bsh->bth", matrix, x)
            residual = x
        else:
            rows = tf.gather(matrix, query_positions)  # [B, L]
            low = tf.einsum("bs,bsh->bh", rows, x)[:, tf.newaxis]
            residual = tf.gather(x, query_positions[:, tf.newaxis], batch_dims=1)
        filtered = low + tf.square(self.sqrt_beta) * (residual - low)
        return self.norm(residual + self.dropout(filtered, training=training))


class BSARecBlock(TransformerBlock):
    """A :class:`TransformerBlock` whose attention sublayer is mixed with a :class:`FrequencyFilter`."""

    def __init__(self, *args: Any, alpha: float, c: int, window: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hidden_dropout_prob, layer_norm_eps, init = args[3], args[5], args[6]
        self.alpha = alpha
        self.frequency = FrequencyFilter(window, c, hidden_dropout_prob, layer_norm_eps, init, name="frequency")

    def call(
        self,
        x: tf.Tensor,
        mask: tf.Tensor,
        query_positions: tf.Tensor | None = None,
        training: bool = False,
        **attention_inputs: Any,
    ) -> tf.Tensor:
        """``x [B, L, H]``, ``mask [B, Q|1, L]`` -> ``[B, Q, H]`` (see ``TransformerBlock``)."""
        attention = self.attention_sublayer(x, mask, query_positions, training=training, **attention_inputs)
        frequency = self.frequency(x, query_positions, training=training)
        return self.feed_forward(self.alpha * frequency + (1.0 - self.alpha) * attention, training=training)


class BSARec(SASRec):
    """SASRec with :class:`BSARecBlock` s; causal, so it trains on every position in one pass."""

    @staticmethod
    def encoder_block(config: BSARecConfig) -> Callable[..., TransformerBlock]:  # type: ignore[override]
        return functools.partial(BSARecBlock, alpha=config.alpha, c=config.c, window=config.max_seq_len)
