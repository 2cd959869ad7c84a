"""SequentialRecommender: the tfrs.Model every tfseq model subclasses; the history helpers it needs.

A model owns the item embedding table (row 0 = padding), which is both its
input embedding and its candidate tower (weight tying), and maps a batch's
feature dict -- right-padded histories ``item_ids [B, L]`` plus the side inputs
it lists in ``side_inputs`` -- to a query vector ``[B, D]``, as
``tfrs.Model.compute_loss(features)`` takes the batch. Scores are
``query @ candidate_embeddings().T``; the loss (a ``RetrievalLoss`` from the
``LOSSES`` registry) turns queries and candidates into a scalar, so any model
trains with any loss. :class:`EmbeddingRecommender` is the setup the models
whose encoder reads the (dropped-out) item embeddings share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence, TypeAlias

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfseq.data import schema
from tfseq.losses.base import RetrievalLoss

if TYPE_CHECKING:
    from tfseq.data.item_features import ItemFeatures

# Feature names of training batches produced by tfseq.data.reader.
ITEM_IDS = schema.ITEM_IDS  # [B, L] int: right-padded histories
TARGET = schema.TARGET  # [B] int: the next item of each history (prefix batches)
TARGETS = schema.TARGETS  # [B, L] int: the next item after every position (causal batches)

# A batch's feature dict: ITEM_IDS and the model's side inputs (plus TARGET/TARGETS in training).
# Wherever a model takes one, a bare [B, L] tensor stands for {ITEM_IDS: it} (ID-only callers).
Features: TypeAlias = Mapping[str, tf.Tensor] | tf.Tensor


def as_features(features: Features) -> Mapping[str, tf.Tensor]:
    """``features`` as a dict: a bare ``item_ids [B, L]`` tensor (or array) becomes ``{"item_ids": it}``."""
    if isinstance(features, Mapping):
        return features
    return {ITEM_IDS: features}


def item_ids_of(features: Features) -> tf.Tensor:
    """The right-padded histories ``item_ids [B, L]`` of a feature dict (or of a bare tensor)."""
    return as_features(features)[ITEM_IDS]


class SequentialRecommender(tfrs.Model):
    """Base class: item table + ``encode(features) -> query`` + a pluggable loss.

    Class attributes:
      causal: True when the query at position t depends only on items <= t, so
        one pass over a sequence yields a query for every prefix and training
        uses ``encode_all`` on causal batches (``targets [B, L]``). Otherwise
        training uses prefix batches (``target [B]``), one per prefix. A model may set it
        per instance from its config (``sasrec``'s ``position_origin``).
      side_inputs: the batch keys beyond ``item_ids`` the model reads
        (``tfseq.data.schema.SIDE_INPUTS`` names): the reader, the evaluator and
        the export supply exactly these. ``user_ids [B]`` needs ``user_vocab_size``;
        a per-event column ``[B, L]`` is aligned with ``item_ids``.
      uses_item_features: the model looks up item side features and must be built
        with ``item_features``; other models accept and ignore them.
      train_defaults: the model's own defaults for ``TrainConfig`` fields (e.g. a learning
        rate or a batch layout its size needs); a value the user gives still wins
        (``ExperimentConfig.from_flat`` applies them).

    Args:
      config: the model's frozen config dataclass.
      num_items: vocabulary size including padding.
      loss: the training loss; ``None`` means full softmax (RecBole's CE).
      item_features: the item side-feature table aligned with the item vocabulary
        (``tfseq.data.item_features``), for models that use it.
      user_vocab_size: the user vocabulary size including the unknown/padding index 0
        (``DatasetMetadata.num_users + 1``), for models that read ``user_ids``.
    """

    causal: bool = False  # a class default; a model whose config decides sets it per instance
    side_inputs: ClassVar[tuple[str, ...]] = ()
    uses_item_features: ClassVar[bool] = False
    train_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        config: Any,
        num_items: int,
        *,
        loss: RetrievalLoss | None = None,
        item_features: ItemFeatures | None = None,
        user_vocab_size: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if num_items < 2:
            raise ValueError(f"num_items counts padding and must be >= 2, got {num_items}")
        schema.check_side_inputs(self.side_inputs, f"{type(self).__name__}.side_inputs")
        if self.uses_item_features:
            if item_features is None:
                raise ValueError(f"{type(self).__name__} uses item side features: build it with item_features= "
                                 f"(--item_features PATH)")
            if item_features.num_items != num_items:
                raise ValueError(f"{type(self).__name__}: the item feature table has {item_features.num_items} "
                                 f"rows, expected num_items={num_items} (one per item vocabulary index)")
        reads_users = schema.USER_IDS in self.side_inputs
        if reads_users and (user_vocab_size is None or user_vocab_size < 1):
            raise ValueError(f"{type(self).__name__} reads {schema.USER_IDS}: build it with user_vocab_size= (the user "
                             f"vocabulary size including index 0), got {user_vocab_size}")
        self.config = config
        self.num_items = int(num_items)
        self.user_vocab_size = int(user_vocab_size) if reads_users and user_vocab_size is not None else 0
        self.loss_fn = loss
        self.item_features = item_features if self.uses_item_features else None

    # -- what subclasses implement -------------------------------------------------
    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """Query ``[B, D]`` for right-padded histories ``features["item_ids"] [B, L]`` (and the side inputs).

        Causal models get this for free from ``encode_all`` (the last valid position).
        """
        if not self.causal:
            raise NotImplementedError
        queries = self.encode_all(features, training=training)  # [B, L, D]
        return gather_last(queries, item_ids_of(features))

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """Causal models only: the query after every position ``[B, L, D]``."""
        raise NotImplementedError(f"{type(self).__name__} is not causal")

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The candidate table ``[num_items, D]``; row 0 is padding."""
        raise NotImplementedError

    def adapt(self, item_counts: Sequence[int] | np.ndarray) -> None:
        """Receives training-split item counts before training (``pop`` uses them)."""

    def auxiliary_loss(self, query: tf.Tensor, positive_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """A model's own scalar loss term, added to the retrieval loss (default 0).

        Args:
          query: the queries the retrieval loss scores ``[T, D]``.
          positive_ids: their next items ``[T]``.
          training: as in ``compute_loss``.
        """
        return tf.constant(0.0)

    # -- shared behaviour ---------------------------------------------------------
    def call(self, features: Features, training: bool = False) -> tf.Tensor:
        return self.encode(features, training=training)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """The training loss of a reader batch: ``item_ids``, ``target [B]`` or ``targets [B, L]``, side inputs."""
        if self.loss_fn is None:
            raise ValueError(f"{type(self).__name__} has no loss; pass loss= to train it")
        if TARGETS in features:  # causal batch: a target after every position
            targets = features[TARGETS]  # [B, L]
            valid = tf.not_equal(targets, schema.PAD_ID)
            query = tf.boolean_mask(self.encode_all(features, training=training), valid)  # [T, D]
            positive_ids = tf.boolean_mask(targets, valid)  # [T]
        else:
            query = self.encode(features, training=training)  # [B, D]
            positive_ids = features[TARGET]  # [B]
        candidates = self.candidate_embeddings(training=training)
        # Layer regularisers (self.losses) are added by tfrs.Model.train_step, not here.
        loss = self.loss_fn(query, positive_ids, candidates, training=training)
        return loss + tf.cast(self.auxiliary_loss(query, positive_ids, training=training), loss.dtype)


class EmbeddingRecommender(SequentialRecommender):
    """An item table ``[num_items, embedding_size]`` read with dropout by the model's encoder, and scored
    against as it is (weight tying): the setup of ``gru4rec``, ``cnn``, ``lstm`` and ``pooling``.

    A causal subclass implements ``encode_all``; ``encode`` runs it on each
    history's last :attr:`history_window` items and returns the last real
    position's output.

    Args:
      config: a config with ``embedding_size`` and ``dropout_prob`` (on the looked-up embeddings).
      num_items: vocabulary size including padding.
      embedding_stddev: the table's N(0, stddev) initialiser; None: ``1 / embedding_size``
        (Spotlight's ``ScaledEmbedding``).
      **kwargs: as :class:`SequentialRecommender`.
    """

    def __init__(self, config: Any, num_items: int, *, embedding_stddev: float | None = None, **kwargs: Any) -> None:
        super().__init__(config, num_items, **kwargs)
        width = config.embedding_size
        stddev = 1.0 / width if embedding_stddev is None else embedding_stddev
        self.item_embedding = tf.keras.layers.Embedding(
            num_items, width, name="item_embedding",
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=stddev),
        )
        self.embedding_dropout = tf.keras.layers.Dropout(config.dropout_prob)

    @property
    def history_window(self) -> int | None:
        """How many last items of a history can reach its query (None: all); ``encode`` keeps only those."""
        return None

    def embed(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` -> their embeddings after dropout ``[B, L, embedding_size]``."""
        return self.embedding_dropout(self.item_embedding(item_ids), training=training)

    def encode(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (and side inputs) -> the query after each history ``[B, embedding_size]``.

        Only each row's last :attr:`history_window` items (and their per-event
        columns) are encoded, and columns that are padding in every row are
        dropped: neither can change a real position's output.
        """
        window = window_features(as_features(features), self.history_window)  # item_ids [B, W]
        return gather_last(self.encode_all(window, training=training), window[ITEM_IDS])

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The input item table ``[num_items, embedding_size]``."""
        return self.item_embedding.embeddings


def sequence_lengths(item_ids: tf.Tensor) -> tf.Tensor:
    """Number of non-padding items per right-padded row ``[B]``."""
    return tf.reduce_sum(tf.cast(tf.not_equal(item_ids, schema.PAD_ID), tf.int32), axis=1)


def gather_last(sequence: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    """``sequence [B, L, D]`` at each row's last valid position of ``item_ids [B, L]`` -> ``[B, D]``.

    A row with no valid item takes position 0.
    """
    last = tf.maximum(sequence_lengths(item_ids) - 1, 0)
    return tf.gather(sequence, last, axis=1, batch_dims=1)


def _window_positions(item_ids: tf.Tensor, width: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """``(positions [B, W], kept [B, W] bool)``: where each row's last ``width`` items sit in ``item_ids [B, L]``."""
    lengths = sequence_lengths(item_ids)  # [B]
    kept = lengths if width is None else tf.minimum(lengths, width)
    columns = tf.maximum(tf.reduce_max(tf.concat([kept, [1]], axis=0)), 1)  # W (>= 1 if B = 0)
    start = lengths - kept  # [B]: first kept position
    offsets = tf.range(columns)[tf.newaxis, :]  # [1, W]
    positions = tf.minimum(start[:, tf.newaxis] + offsets, tf.shape(item_ids)[1] - 1)  # [B, W]
    return positions, offsets < kept[:, tf.newaxis]


def _gather_window(values: tf.Tensor, positions: tf.Tensor, kept: tf.Tensor) -> tf.Tensor:
    window = tf.gather(values, positions, batch_dims=1)
    return tf.where(kept, window, tf.zeros_like(window))


def last_window(item_ids: tf.Tensor, width: int | None = None) -> tf.Tensor:
    """Each row's last ``width`` items (all when None), right-padded to the longest row.

    Drops the columns that are padding in every row, and applies the reader's
    truncation (a history keeps its last ``max_seq_len`` items) to longer
    inputs, e.g. serving requests. ``item_ids [B, L]`` with ``L >= 1`` ->
    ``[B, W]``, ``1 <= W <= min(L, width)``.
    """
    positions, kept = _window_positions(item_ids, width)
    return _gather_window(item_ids, positions, kept)


def window_features(features: Mapping[str, tf.Tensor], width: int | None = None) -> dict[str, tf.Tensor]:
    """:func:`last_window` of ``item_ids`` and, position for position, of every per-event column
    (``[B, L]`` -> ``[B, W]``, padding 0); other keys (``user_ids [B]``) pass unchanged."""
    item_ids = features[ITEM_IDS]
    positions, kept = _window_positions(item_ids, width)
    out = dict(features)
    for name in (ITEM_IDS, *schema.EVENT_COLUMNS):
        if name in features:
            out[name] = _gather_window(features[name], positions, kept)
    return out
