"""SavedModel export: a trained model as the TF Serving servable ``<dir>/<model_name>/<version>/``.

The servable maps raw item IDs to top-K raw item IDs with standard TF ops only
(hash-table lookups, the model's layers, a brute-force matmul or a search over
item clusters, and ``tf.math.top_k``), so ``tensorflow_model_server`` loads it
unchanged and a process that imports only TensorFlow answers the same as the
Keras model. Signatures (names in ``serving/signature.py``):

* ``serving_default``: ``history`` string ``[B, L]`` -> ``item_ids`` string
  ``[B, K]``, ``scores`` float32 ``[B, K]``, ``fallback`` bool ``[B]``. IDs
  outside the vocabulary are skipped; the last ``max_seq_len`` known IDs are
  encoded, right-padded as the models expect. The padding item is never
  returned; with ``exclude_history`` neither is any item of the history. A row
  with fewer than K eligible items is filled with ``""`` and ``-inf``.
* ``embed``: ``history`` -> ``embedding`` float32 ``[B, D]``, the model's query
  (zeros for a history with no known ID: there is no query to give).

A history with no known ID (empty, padding only, or unknown IDs only) is the
popularity fallback, and its row says so: ``fallback`` is True. It is ranked
by the model's own scores for the *popularity query* ``q_pop = sum_j p_j
q([j])``, the popularity-weighted mean (``p_j`` = item ``j``'s share of the
training counts) of the model's queries for the one-item histories ``[j]``.
Why: ``q_pop . e_i = E_{j~p}[score(i | [j])]``, the score the model gives item
``i``, on average, after a one-item history whose item is drawn by training
popularity (scores are linear in the query). So the
fallback's scores are real model scores, on the same scale as every other
row's (a raw training count such as 369.0 is not), its ranking is the model's
expected answer for a user we know nothing about, and nothing is rescaled by a
made-up rule. It is computed once, at export, from the one-item history of
every item with a training count (side inputs unknown), in batches.

A model with side inputs (its ``side_inputs``) gets one more input per side
input in both signatures, named by ``serving.signature.side_input_name``, in
the model's order after ``history``; each is optional (its SignatureDef
default is an empty tensor, which TF Serving substitutes for a missing input)
and is turned into the model's feature here, in the graph:

* ``user_id`` (string ``[B]``, one raw user ID per history) -> ``user_ids``,
  looked up in the asset ``assets/user_index.tsv`` (``raw<TAB>index`` for every
  user with training records). ``""``, an ID not in it, or no ``user_id`` at
  all is no user: the model's sequence-only path, the answer the evaluation
  gives a user with ``user_ids`` 0 (``hrm``). ``serving_default`` then also
  returns ``unknown_user`` bool ``[B]``: True where a non-empty ``user_id`` was
  sent that is not a training user (``""`` and no input at all ask for no user,
  and are not flagged);
* a per-event column's input (int64 ``[B, L]``, one raw value per ``history``
  entry, e.g. ``hour``) -> its stored indices (``value + 1``, 0 for unknown
  values or no input), masked and truncated exactly as the history's items.

ID-only models keep ``history`` as their only input.

Top-K search: exact by default (``approximate_clusters`` 0): ``query @
candidates.T`` over the whole catalogue, ranked by ``tfseq.scoring``. For a
large catalogue ``approximate_clusters C`` and ``approximate_probes P`` export
an inverted-file search instead (:mod:`serving.clusters` builds the index by
seeded k-means): the query is scored against the C centroids ``[C, D]``, the P
best clusters' items (a CSR table: ``items [N-1]``, ``offsets [C+1]``) are
gathered and scored exactly, and the top K of them are returned, with the
padding item and (``exclude_history``) the history's items at -inf as in
``tfseq.scoring``. P = C searches every item and answers as the exact search
does. Which search runs is recorded in ``tfseq_export.json`` (``top_k_search``)
and shown in the server's status.

The vocabulary travels as the asset ``assets/item_vocab.txt``: the lines of the
Transform vocabulary after its padding line (TF's text-file tables reject empty
lines), so asset line ``n`` (0-based) holds the raw ID of index ``n + 1``.

A version is written into a hidden temporary directory beside its final place
and renamed once complete (with its warm-up requests), so a server polling
``<serving_dir>/<model_name>/`` never sees half a model. Versions are integers;
the default is one more than the highest present.

Command line::

    python -m serving.export --trainer_dir ROOT/runs/RUN/Trainer --transform_dir ROOT/Transform \\
        --serving_dir DIR --model_name NAME [--top_k 10] [--version N] [--exclude_history true|false] \\
        [--approximate_clusters C --approximate_probes P]
"""

from __future__ import annotations

import argparse
import inspect
import json
import posixpath
import sys
import tempfile
import uuid
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from serving import warmup
from serving.clusters import ClusterIndex, build_cluster_index, check_search_options
from serving.signature import (
    EMBED_SIGNATURE,
    EMBEDDING,
    EXPORT_INFO_FILE,
    FALLBACK,
    HISTORY,
    MAX_VERSION,
    PAD_TOKEN,
    SCORES,
    SERVING_SIGNATURE,
    TOP_RAW_IDS,
    UNKNOWN_USER,
    list_versions,
    side_input_name,
)
from tfseq import storage
from tfseq.data import schema
from tfseq.data.vocab import ITEM_VOCAB, read_vocabulary
from tfseq.scoring import Recommender, score_items

ASSET_VOCAB = "item_vocab.txt"  # asset line n = raw ID of index n + 1
ASSET_USERS = "user_index.tsv"  # models that use users: "raw<TAB>user vocabulary index" per trained user

_HISTORY_SPEC = tf.TensorSpec([None, None], tf.string, name=HISTORY)
_QUERY_BATCH = 8192  # one-item histories encoded at a time for the popularity query


def side_input_signature(key: str) -> tuple[tf.TensorSpec, tf.Tensor]:
    """``(spec, default)`` of the signature input of side input ``key``; the default (empty) = not given."""
    name = side_input_name(key)
    if key == schema.USER_IDS:
        return tf.TensorSpec([None], tf.string, name=name), tf.constant([], tf.string)
    return tf.TensorSpec([None, None], tf.int64, name=name), tf.zeros([0, 0], tf.int64)


def user_index_text(user_index: Mapping[str, int], user_vocab_size: int) -> str:
    """The ``user_index.tsv`` asset: ``raw<TAB>index`` lines, by index; raw IDs must be single-line, tab-free."""
    lines = []
    for raw, index in sorted(user_index.items(), key=lambda item: item[1]):
        if not raw or any(c in raw for c in "\t\n\r"):
            raise ValueError(f"user IDs must be non-empty, without tabs or line breaks, got {raw!r}")
        if not 1 <= index < user_vocab_size:
            raise ValueError(f"user {raw!r} has index {index}, outside the model's 1..{user_vocab_size - 1}")
        lines.append(f"{raw}\t{index}\n")
    return "".join(lines)


class RecommenderModule(tf.Module):
    """The servable: vocabulary tables + the model's weights + top-K.

    Only the model's variables are tracked (not the Keras object), so the
    SavedModel holds plain functions and loads without tfseq or Keras.

    Args:
      model: the model, with built variables.
      vocab_asset: a file with the raw IDs of indices ``1 .. num_items-1``, one a line.
      popularity: ``[num_items]`` training counts: they weight the query of a history with no known
        item (:func:`popularity_query`, computed here).
      top_k: K, the number of items returned per history.
      exclude_history: never return an item of the (known part of the) history, older items included.
      max_seq_len: only the last ``max_seq_len`` known items are encoded.
      user_asset: models that read ``user_ids``: the ``user_index.tsv`` file (:func:`user_index_text`).
      cluster_index: the approximate search's index (:func:`serving.clusters.build_cluster_index`);
        ``None`` ranks the whole catalogue exactly.

    ``recommend`` and ``embed`` take ``(history, <one optional input per side input>)``,
    by position in the model's ``side_inputs`` order or by input name (:attr:`input_names`).
    """

    def __init__(
        self,
        model: Recommender,
        *,
        vocab_asset: str,
        popularity: np.ndarray,
        top_k: int,
        exclude_history: bool,
        max_seq_len: int,
        user_asset: str | None = None,
        cluster_index: ClusterIndex | None = None,
    ) -> None:
        super().__init__(name="tfseq_servable")
        object.__setattr__(self, "_model", model)  # untracked: its variables are tracked below
        self.model_variables = list(model.variables)
        self.vocabulary = tf.saved_model.Asset(vocab_asset)
        self.raw_to_line = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        self.line_to_raw = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value=PAD_TOKEN,
        )
        # Stored as variables (the checkpoint), not graph constants: at a million items they are megabytes.
        query = popularity_query(model, popularity)  # [D]
        candidates = tf.cast(model.candidate_embeddings(training=False), tf.float32)  # [N, D]
        # The candidate table, computed once (CORE's normalisation included) and kept apart from the
        # model's item embeddings: once the model's lookups gather from a variable, TensorFlow copies
        # it at every whole read (copy-on-read mode), and the exact search reads the table whole at
        # every request. Its own variable costs the table's size again and spares that copy.
        self.candidate_table = tf.Variable(candidates, trainable=False, name="candidate_table")  # [N, D]
        self.fallback_query = tf.Variable(query, trainable=False, name="fallback_query")  # [D]
        self.fallback_scores = tf.Variable(  # [N]: the model's scores for the fallback query
            tf.linalg.matvec(candidates, tf.constant(query)), trainable=False, name="fallback_scores"
        )
        self.cluster_index = cluster_index
        if cluster_index is not None:
            self.probes = cluster_index.probes
            self.centroids = tf.Variable(cluster_index.centroids, trainable=False, name="centroids")  # [C, D]
            self.cluster_offsets = tf.Variable(cluster_index.offsets, trainable=False, name="offsets")  # [C+1]
            self.cluster_items = tf.Variable(cluster_index.items, trainable=False, name="items")  # [N-1]
        self.top_k = int(top_k)
        self.exclude_history = bool(exclude_history)
        self.max_seq_len = int(max_seq_len)
        self.side_inputs = tuple(model.side_inputs)
        if schema.USER_IDS in self.side_inputs:
            if user_asset is None:
                raise ValueError(f"{type(model).__name__} reads user_ids: give user_asset (the user index)")
            self.user_index = tf.saved_model.Asset(user_asset)
            self.raw_to_user = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(
                    self.user_index, tf.string, 0, tf.int64, 1, delimiter="\t"
                ),
                default_value=schema.PAD_ID,  # unknown user
            )
        self.recommend = self._signature_function(self._recommend)
        self.embed = self._signature_function(self._embed)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The signature inputs after ``history``, one per side input of the model, in its order."""
        return tuple(side_input_name(key) for key in self.side_inputs)

    def _signature_function(self, body: Any) -> Any:
        """``body(history, {side input: raw tensor})`` as a tf.function of ``(history, *optional inputs)``.

        Its Python signature names each input and gives it its empty default, which
        the SavedModel records as the SignatureDef default TF Serving substitutes.
        """
        specs, parameters = [_HISTORY_SPEC], [inspect.Parameter(HISTORY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for key in self.side_inputs:
            spec, default = side_input_signature(key)
            specs.append(spec)
            parameters.append(inspect.Parameter(spec.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
        keys = self.side_inputs

        def function(history: tf.Tensor, *given: tf.Tensor) -> dict[str, tf.Tensor]:
            return body(history, dict(zip(keys, given)))

        function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return tf.function(function, input_signature=specs)

    def _known_mask(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(index [B, L], known [B, L] bool)``: vocabulary indices of ``history`` and which are known items."""
        index = self.raw_to_line.lookup(history) + 1  # [B, L]; 0 = padding or unknown
        return index, tf.not_equal(index, schema.PAD_ID)

    def _model_input(self, known: tf.RaggedTensor) -> tf.Tensor:
        """The last ``max_seq_len`` known items, right-padded: ``[B, max(1, L')]`` int64."""
        item_ids = known[:, -self.max_seq_len :].to_tensor(default_value=schema.PAD_ID)
        missing_width = tf.maximum(1 - tf.shape(item_ids)[1], 0)
        return tf.pad(item_ids, [[0, 0], [0, missing_width]])

    def _features(
        self, history: tf.Tensor, given: dict[str, tf.Tensor]
    ) -> tuple[dict[str, tf.Tensor], tf.RaggedTensor, tf.Tensor | None]:
        """``({"item_ids": [B, W], side inputs...}, known items ragged [B, (n)], unknown_user [B] or None)``.

        ``unknown_user`` (models that read users): a non-empty ``user_id`` that is not a training user.
        """
        index, mask = self._known_mask(history)
        known = tf.ragged.boolean_mask(index, mask)
        item_ids = self._model_input(known)  # [B, W]
        features = {schema.ITEM_IDS: item_ids}
        unknown_user = None
        for key, raw in given.items():
            if key == schema.USER_IDS:
                features[key], unknown_user = self._user_ids(raw, tf.shape(history)[0])
            else:
                features[key] = self._event_ids(key, raw, history, mask, tf.shape(item_ids)[1])
        return features, known, unknown_user

    def _event_ids(self, key: str, raw: tf.Tensor, history: tf.Tensor, mask: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
        """Per-event column ``key`` of the model input ``[B, width]``: ``raw [B, L]`` values aligned with
        ``history [B, L]`` (or ``[0, 0]`` = not given) as stored indices, kept where the items are."""
        column = schema.EVENT_COLUMNS[key]
        name = side_input_name(key)
        given = tf.size(raw) > 0
        check = tf.debugging.Assert(
            tf.logical_or(tf.logical_not(given), tf.reduce_all(tf.equal(tf.shape(raw), tf.shape(history)))),
            [f"{name} must hold one value per history entry (or none); got shape", tf.shape(raw),
             "for history of shape", tf.shape(history)],
        )
        with tf.control_dependencies([check]):
            ids = tf.cond(
                given,
                lambda: tf.where((raw >= 0) & (raw < column.size), raw + 1, tf.zeros_like(raw)),
                lambda: tf.zeros(tf.shape(history), tf.int64),
            )  # [B, L]
        kept = tf.ragged.boolean_mask(ids, mask)[:, -self.max_seq_len :].to_tensor(default_value=schema.PAD_ID)
        return tf.pad(kept, [[0, 0], [0, width - tf.shape(kept)[1]]])  # [B, width], as the items

    def _user_ids(self, user_id: tf.Tensor, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``([B] user vocabulary indices, [B] bool unknown)`` of ``user_id`` (``[B]``, or ``[0]`` = no users).

        Index 0 is no user. ``unknown`` marks a non-empty ID that is not a training user: the row is
        answered without a user although one was named. ``""`` and no ``user_id`` at all ask for no user.
        """
        given = tf.size(user_id)
        check = tf.debugging.Assert(
            tf.logical_or(tf.equal(given, 0), tf.equal(given, batch)),
            ["user_id must hold one user per history (or none); got", given, "users for", batch, "histories"],
        )
        with tf.control_dependencies([check]):
            user_ids = tf.cond(
                tf.equal(given, 0),
                lambda: tf.zeros([batch], tf.int64),
                lambda: self.raw_to_user.lookup(user_id),
            )
            unknown = tf.cond(
                tf.equal(given, 0),
                lambda: tf.zeros([batch], tf.bool),
                lambda: tf.not_equal(user_id, "") & tf.equal(user_ids, schema.PAD_ID),
            )
        return user_ids, unknown

    def _recommend(self, history: tf.Tensor, given: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features, known, unknown_user = self._features(history, given)
        fallback = tf.equal(known.row_lengths(), 0)  # [B]: no known item, the popularity fallback
        history_ids = known.to_tensor(default_value=schema.PAD_ID) if self.exclude_history else None  # [B, H]
        if self.cluster_index is None:
            scores = score_items(
                self._model, features, exclude_history=self.exclude_history, candidates=self.candidate_table,
                fallback=self.fallback_scores, history_ids=history_ids,
            )  # [B, N], the evaluation's scores; a fallback row gets the fallback query's
            top_scores, top_ids = tf.math.top_k(scores, k=self.top_k)  # [B, K]
        else:
            top_scores, top_ids = self._cluster_top_k(features, fallback, history_ids)
        raw = self.line_to_raw.lookup(tf.cast(top_ids, tf.int64) - 1)
        eligible = tf.math.is_finite(top_scores)
        outputs = {TOP_RAW_IDS: tf.where(eligible, raw, PAD_TOKEN), SCORES: top_scores, FALLBACK: fallback}
        if unknown_user is not None:
            outputs[UNKNOWN_USER] = unknown_user
        return outputs

    def _cluster_top_k(
        self, features: dict[str, tf.Tensor], fallback: tf.Tensor, history_ids: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(scores [B, K], item indices [B, K])``: the top K of the ``probes`` best clusters' items.

        The query (the fallback query on ``fallback [B]`` rows) is scored against the centroids
        ``[C, D]``; the best P clusters' items (CSR: ``items[offsets[c]:offsets[c+1]]``) are gathered,
        scored exactly and ranked. As in ``tfseq.scoring``, the padding item (in no cluster; also the
        filler of rows shorter than the longest) and, with ``exclude_history``, ``history_ids [B, H]``
        are at -inf.
        """
        query = tf.cast(self._model.encode(features, training=False), tf.float32)  # [B, D]
        query = tf.where(fallback[:, tf.newaxis], self.fallback_query[tf.newaxis, :], query)
        coarse = tf.linalg.matmul(query, self.centroids, transpose_b=True)  # [B, C]
        _, probed = tf.math.top_k(coarse, k=self.probes)  # [B, P]
        probed = tf.cast(probed, tf.int64)
        starts = tf.gather(self.cluster_offsets, probed)  # [B, P]
        limits = tf.gather(self.cluster_offsets, probed + 1)  # [B, P]
        slots = tf.ragged.range(tf.reshape(starts, [-1]), tf.reshape(limits, [-1]))  # [B * P, (size)]
        slots = tf.RaggedTensor.from_uniform_row_length(slots, self.probes).merge_dims(1, 2)  # [B, (T)]
        items = tf.gather(self.cluster_items, slots)  # [B, (T)] item indices
        vectors = tf.gather(self.candidate_table, items.flat_values)  # [sum T, D], rows only: no whole read
        rows = tf.gather(query, items.value_rowids())  # [sum T, D]
        flat_scores = tf.reduce_sum(rows * vectors, axis=1)  # [sum T]
        scores = items.with_flat_values(flat_scores).to_tensor(default_value=-np.inf)  # [B, S]
        ids = items.to_tensor(default_value=schema.PAD_ID)  # [B, S]
        masked = tf.equal(ids, schema.PAD_ID)
        if history_ids is not None:
            history = tf.sort(history_ids, axis=1)  # [B, H]
            history = tf.pad(history, [[0, 0], [0, tf.maximum(1 - tf.shape(history)[1], 0)]])  # H >= 1
            at = tf.searchsorted(history, ids)  # [B, S]: where each slot's item would sit in the history
            at = tf.minimum(at, tf.shape(history, out_type=at.dtype)[1] - 1)
            masked |= tf.equal(tf.gather(history, at, batch_dims=1), ids)
        scores = tf.where(masked, tf.constant(-np.inf, tf.float32), scores)
        short = tf.maximum(self.top_k - tf.shape(scores)[1], 0)  # fewer slots than K: pad with -inf
        scores = tf.pad(scores, [[0, 0], [0, short]], constant_values=-np.inf)
        ids = tf.pad(ids, [[0, 0], [0, short]], constant_values=schema.PAD_ID)
        top_scores, at = tf.math.top_k(scores, k=self.top_k)  # [B, K]
        return top_scores, tf.gather(ids, at, batch_dims=1)

    def _embed(self, history: tf.Tensor, given: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features, known, _ = self._features(history, given)
        query = tf.cast(self._model.encode(features, training=False), tf.float32)  # [B, D]
        empty = tf.equal(known.row_lengths(), 0)
        return {EMBEDDING: tf.where(empty[:, tf.newaxis], tf.zeros_like(query), query)}


def _check_export_args(
    model: Recommender,
    raw_ids: list[str],
    vocab_path: str,
    counts: np.ndarray,
    model_name: str,
    version: int | None,
    top_k: int,
    max_seq_len: int,
    approximate_clusters: int,
    approximate_probes: int,
) -> None:
    if len(raw_ids) != model.num_items:
        raise ValueError(
            f"{vocab_path}: {len(raw_ids)} lines (padding included) but the model has "
            f"{model.num_items} items; export the model with the vocabulary it was trained on"
        )
    if counts.shape != (model.num_items,):
        raise ValueError(
            f"item_counts must have shape [{model.num_items}], got {list(counts.shape)}"
        )
    _check_counts(counts)
    check_search_options(approximate_clusters, approximate_probes, model.num_items)
    if not 1 <= top_k <= model.num_items - 1:
        raise ValueError(
            f"top_k must be in 1..{model.num_items - 1} (the number of items), got {top_k}"
        )
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain directory name, got {model_name!r}")
    if version is not None and not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version must be in 1..{MAX_VERSION} (TF Serving's int64), got {version}")


def _check_counts(counts: np.ndarray) -> None:
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or not np.any(counts[1:] > 0):
        raise ValueError(
            "item_counts must be finite, >= 0 and positive for at least one item (they weight the popularity "
            "fallback)"
        )


def popularity_query(model: Recommender, item_counts: np.ndarray, batch_size: int = _QUERY_BATCH) -> np.ndarray:
    """The fallback query ``q_pop = sum_j p_j q([j])`` ``[D]`` float32 (see the module docstring for why).

    Args:
      model: the model; ``encode`` is called on one-item histories ``[[j]]``, every side input unknown
        (``user_ids`` 0, per-event columns 0).
      item_counts: ``[N]`` training counts; ``p_j`` is item ``j``'s share of items ``1 .. N-1``'s total.
      batch_size: one-item histories encoded per call.

    Returns:
      The popularity-weighted mean of the model's one-item queries, so that ``q_pop . candidate_i``
      is the expected score of item ``i`` after one item drawn by popularity.
    """
    counts = np.asarray(item_counts, np.float64)
    _check_counts(counts)
    items = np.flatnonzero(counts[1:] > 0) + 1  # the padding row is never an item
    weights = counts[items] / counts[items].sum()  # [n]

    total = None
    for start in range(0, len(items), batch_size):
        item_ids = tf.constant(items[start : start + batch_size, np.newaxis], tf.int64)  # [b, 1]
        features = {schema.ITEM_IDS: item_ids}
        for key in model.side_inputs:  # unknown: user 0, per-event index 0
            features[key] = tf.zeros([len(item_ids)], tf.int64) if key == schema.USER_IDS else tf.zeros_like(item_ids)
        queries = tf.cast(model.encode(features, training=False), tf.float32).numpy()  # [b, D]
        part = weights[start : start + batch_size] @ queries.astype(np.float64)  # [D]
        total = part if total is None else total + part
    assert total is not None  # _check_counts: some item has a positive count
    return total.astype(np.float32)


PUBLISH_ATTEMPTS = 20  # concurrent exports to one model name each take the next free version


def export_saved_model(
    model: Recommender,
    *,
    item_vocab_path: str,
    item_counts: Sequence[int] | np.ndarray,
    serving_dir: str,
    model_name: str,
    version: int | None = None,
    top_k: int = 10,
    exclude_history: bool = False,
    max_seq_len: int = 50,
    info: dict[str, Any] | None = None,
    user_index: Mapping[str, int] | None = None,
    approximate_clusters: int = 0,
    approximate_probes: int = 0,
) -> str:
    """Exports ``model`` as version ``version`` (default: next free) of ``model_name``.

    Args:
      model: the model, with built variables (trained weights).
      item_vocab_path: the Transform vocabulary (line ``n`` = raw ID of index ``n``).
      item_counts: ``[num_items]`` training counts: they weight the popularity fallback's query
        (:func:`popularity_query`) and pick the warm-up items.
      serving_dir: the model base directory's parent; TF Serving's ``--model_base_path``
        is ``<serving_dir>/<model_name>``.
      model_name: the servable name.
      version: a positive integer; ``None`` takes one more than the highest present.
      top_k: K, fixed in the signature.
      exclude_history: never return items of the request's history.
      max_seq_len: histories are truncated to their last ``max_seq_len`` known items.
      info: extra JSON-able facts stored in ``assets.extra/tfseq_export.json``.
      user_index: models that read ``user_ids``: raw user -> user vocabulary index of the
        users with training records (``tfseq.data.reader.training_user_index``);
        any other user is unknown to the SavedModel.
      approximate_clusters: 0 = exact top-K over every item; C > 0 = the cluster search over C
        k-means clusters of the candidate table (1 .. number of items).
      approximate_probes: P, clusters searched per request (1 .. C; 0 with the exact search).

    Returns:
      The path of the new version directory.

    Raises:
      FileExistsError: ``version`` exists already (a version is never overwritten).
      ValueError: vocabulary, counts and model disagree, or a bad argument.
    """
    raw_ids = read_vocabulary(item_vocab_path)
    counts = np.asarray(item_counts, dtype=np.float64)
    _check_export_args(
        model, raw_ids, item_vocab_path, counts, model_name, version, top_k, max_seq_len,
        approximate_clusters, approximate_probes,
    )
    reads_users = schema.USER_IDS in model.side_inputs
    if reads_users and user_index is None:
        raise ValueError(f"{type(model).__name__} reads user_ids: give user_index (the training users)")
    users_text = user_index_text(user_index or {}, model.user_vocab_size) if reads_users else None
    cluster_index = None
    if approximate_clusters:
        candidates = tf.cast(model.candidate_embeddings(training=False), tf.float32).numpy()  # [N, D]
        cluster_index = build_cluster_index(candidates, approximate_clusters, approximate_probes)
    search = cluster_index.facts() if cluster_index is not None else {"method": "exact"}
    model_dir = posixpath.join(serving_dir, model_name)
    requested = version
    if version is None:
        version = max(list_versions(model_dir), default=0) + 1
    final = posixpath.join(model_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(
            f"{final} exists; versions are never overwritten (omit --version for the next)"
        )
    tf.io.gfile.makedirs(model_dir)
    staging = posixpath.join(
        model_dir, f".{version}.tmp-{uuid.uuid4().hex[:8]}"
    )  # not an integer: ignored
    try:
        tf.io.gfile.makedirs(staging)
        owner = posixpath.join(staging, storage.OWNER)  # a killed export's folder is removed by the next push
        with tf.io.gfile.GFile(owner, "w") as f:
            f.write(storage.owner_record())
        with tempfile.TemporaryDirectory(prefix="tfseq-export-") as scratch:
            asset = posixpath.join(scratch, ASSET_VOCAB)
            with open(asset, "w", encoding="utf-8") as f:
                f.write("".join(raw + "\n" for raw in raw_ids[1:]))
            user_asset = None
            if users_text is not None:
                user_asset = posixpath.join(scratch, ASSET_USERS)
                with open(user_asset, "w", encoding="utf-8") as f:
                    f.write(users_text)
            module = RecommenderModule(
                model,
                vocab_asset=asset,
                popularity=counts,
                top_k=top_k,
                exclude_history=exclude_history,
                max_seq_len=max_seq_len,
                user_asset=user_asset,
                cluster_index=cluster_index,
            )
            tf.saved_model.save(
                module,
                staging,
                signatures={SERVING_SIGNATURE: module.recommend, EMBED_SIGNATURE: module.embed},
            )
        histories = warmup.warmup_histories(
            raw_ids, counts.astype(np.int64), max_seq_len=max_seq_len
        )
        known_users = sorted(user_index or {}, key=lambda raw: (user_index or {})[raw])[:1]
        users = warmup.warmup_users(known_users[0] if known_users else "") if reads_users else None
        event_inputs = [side_input_name(key) for key in model.side_inputs if key in schema.EVENT_COLUMNS]
        warmup.write_warmup_requests(staging, histories, model_name=model_name, users=users,
                                     event_inputs=event_inputs)
        description = {
            "model_name": model_name,
            "version": version,
            "top_k": top_k,
            "exclude_history": exclude_history,
            "max_seq_len": max_seq_len,
            "num_items": int(model.num_items),
            "model_class": type(model).__name__,
            "top_k_search": search,
            "fallback": "popularity query: the popularity-weighted mean of the model's one-item queries",
            "outputs": sorted(module.recommend.get_concrete_function().structured_outputs),
            **({"inputs": [HISTORY, *module.input_names]} if model.side_inputs else {}),
            **(info or {}),
        }
        tf.io.gfile.remove(owner)
        for _ in range(PUBLISH_ATTEMPTS):
            with tf.io.gfile.GFile(posixpath.join(staging, EXPORT_INFO_FILE), "w") as f:
                f.write(json.dumps({**description, "version": version}, indent=1, sort_keys=True))
            try:
                storage.publish_folder(staging, final)  # fails, never replaces, when another export took it
                break
            except FileExistsError:
                if requested is not None:
                    raise FileExistsError(f"{final} exists; versions are never overwritten") from None
                # Another export took this number meanwhile: take the next free one.
                version = max(list_versions(model_dir), default=0) + 1
                final = posixpath.join(model_dir, str(version))
        else:
            raise FileExistsError(f"{model_dir}: no free version after {PUBLISH_ATTEMPTS} tries")
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    return final


def export_from_trainer(
    trainer_dir: str,
    transform_dir: str,
    serving_dir: str,
    model_name: str,
    *,
    version: int | None = None,
    top_k: int = 10,
    exclude_history: bool | None = None,
    approximate_clusters: int = 0,
    approximate_probes: int = 0,
) -> str:
    """Exports the Trainer stage's best weights; histories are truncated as in training.

    ``exclude_history`` None takes the run's own (``TrainConfig.exclude_history``),
    so the model is served as it was evaluated. ``approximate_clusters`` /
    ``approximate_probes``: the top-K search (:func:`export_saved_model`; 0 = exact).
    """
    from tfseq.data.reader import training_user_index
    from tfseq.data.vocab import DatasetMetadata
    from tfseq.experiment import load_trained_model

    metadata = DatasetMetadata.load(transform_dir)
    model, config = load_trained_model(trainer_dir, transform_dir)
    user_index = training_user_index(transform_dir, metadata) if schema.USER_IDS in model.side_inputs else None
    return export_saved_model(
        model,
        item_vocab_path=posixpath.join(transform_dir, ITEM_VOCAB),
        item_counts=metadata.item_counts,
        serving_dir=serving_dir,
        model_name=model_name,
        version=version,
        top_k=top_k,
        exclude_history=config.train.exclude_history if exclude_history is None else exclude_history,
        max_seq_len=config.train.max_seq_len,
        info={"model": config.model, "loss": config.loss, "trainer_dir": trainer_dir},
        user_index=user_index,
        approximate_clusters=approximate_clusters,
        approximate_probes=approximate_probes,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.export", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("--trainer_dir", required=True, help="<pipeline root>/runs/<run>/Trainer")
    parser.add_argument("--transform_dir", required=True, help="<pipeline root>/Transform")
    parser.add_argument(
        "--serving_dir", required=True, help="versions go to <serving_dir>/<model_name>/"
    )
    parser.add_argument("--model_name", default="tfseq")
    parser.add_argument("--top_k", "--k", type=int, default=10, help="K, fixed in the signature")
    parser.add_argument("--version", type=int, default=None, help="default: highest present + 1")
    parser.add_argument(
        "--exclude_history", choices=("true", "false"), default=None,
        help="never return history items (default: as the run was trained and evaluated)",
    )
    parser.add_argument(
        "--approximate_clusters", type=int, default=0,
        help="0 = exact top-K over every item (default); C = search C k-means clusters of the items instead",
    )
    parser.add_argument(
        "--approximate_probes", type=int, default=0,
        help="with --approximate_clusters C: clusters searched per request, 1..C (C = every item, exact answers)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ranges = {"top_k": (1, None), "version": (1, MAX_VERSION), "approximate_clusters": (0, None),
              "approximate_probes": (0, args.approximate_clusters)}  # the catalogue bounds K and C once loaded
    for name, (least, most) in ranges.items():
        value = getattr(args, name)
        if value is not None and not (least <= value and (most is None or value <= most)):
            parser.error(f"--{name} must be {least} or more{'' if most is None else f' and at most {most}'}, "
                         f"got {value}")
    try:
        with storage.disk_errors():  # TensorFlow's report of a full disk, as the OSError it is
            path = export_from_trainer(
                args.trainer_dir,
                args.transform_dir,
                args.serving_dir,
                args.model_name,
                version=args.version,
                top_k=args.top_k,
                exclude_history=None if args.exclude_history is None else args.exclude_history == "true",
                approximate_clusters=args.approximate_clusters,
                approximate_probes=args.approximate_probes,
            )
    except (OSError, ValueError) as e:  # a file refused or the disk full; ConfigError, DataError too
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tf.errors.NotFoundError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
