"""``hour_of_day``: a test model that reads one per-event side input, the hour of each event.

Not shipped (tests register it in ``MODELS`` only while they run). It shows
what a new side input costs: this file, and the ``hour_ids`` entry of
``tfseq.data.schema.EVENT_COLUMNS`` that the Transform writes when its
``event_columns`` name it. The reader, the evaluator and the export take the
new key from :attr:`HourOfDay.side_inputs`; nothing else names it.

The query after position t is ``item[i_t] + hour[h_t]``: the embedding of the
last item plus that of the hour at which it was seen (``hour_ids`` = UTC hour
+ 1, 0 = unknown, whose row is kept at zero), so the next item may depend on
the time of day. A batch without ``hour_ids`` is answered from the items alone.
Candidates have their own table. Causal: the query at t reads only position t.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseq.data import schema
from tfseq.models.base import Features, SequentialRecommender, as_features

NAME = "hour_of_day"  # its registry key while a test registers it


@dataclasses.dataclass(frozen=True)
class HourOfDayConfig:
    """Attributes:
      embedding_size: width of the item, hour and candidate tables = query width.
    """

    embedding_size: int = 16


class HourOfDay(SequentialRecommender):
    """``encode_all(features)`` -> ``item[i_t] + hour[h_t]`` after every position ``[B, L, D]``."""

    causal = True
    side_inputs = (schema.HOUR_IDS,)

    def __init__(self, config: HourOfDayConfig, num_items: int, **kwargs) -> None:
        super().__init__(config, num_items, **kwargs)
        width = config.embedding_size
        hours = schema.EVENT_COLUMNS[schema.HOUR_IDS].size + 1  # + the unknown row 0

        def table(rows: int, name: str) -> tf.keras.layers.Embedding:
            init = tf.keras.initializers.RandomNormal(stddev=0.1)
            return tf.keras.layers.Embedding(rows, width, embeddings_initializer=init, name=name)

        self.item_embedding = table(num_items, "item_embedding")
        self.hour_embedding = table(hours, "hour_embedding")
        self.candidate_embedding = table(num_items, "candidate_embedding")
        self.hour_embedding(tf.zeros([0], tf.int64))
        self.candidate_embedding(tf.zeros([0], tf.int64))

    def encode_all(self, features: Features, training: bool = False) -> tf.Tensor:
        """``item_ids [B, L]`` (and ``hour_ids [B, L]``) -> ``[B, L, embedding_size]``."""
        features = as_features(features)
        item_ids = features[schema.ITEM_IDS]
        query = self.item_embedding(item_ids)  # [B, L, D]
        hour_ids = features.get(schema.HOUR_IDS)
        if hour_ids is not None:
            hour_ids = tf.cast(hour_ids, tf.int64)
            known = hour_ids > 0  # [B, L]; 0 = unknown or padding: no hour vector
            hours = self.hour_embedding(tf.where(known, hour_ids, tf.zeros_like(hour_ids)))
            query += tf.where(known[..., tf.newaxis], hours, tf.zeros_like(hours))
        return query

    def candidate_embeddings(self, training: bool = False) -> tf.Tensor:
        """The candidate table ``[num_items, embedding_size]``."""
        return self.candidate_embedding.embeddings
