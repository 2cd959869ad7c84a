"""The Transform stage's Beam building blocks: row-level functions, DoFns and composite PTransforms.

:mod:`pipeline.transform` wires them into pipelines and owns the driver. The
data model between the steps:

* an **event** is a plain tuple ``(timestamp, source, line, position, item,
  rating)``: tuples sort in time order with the input place breaking ties
  (``Interaction.sort_key``), and plain tuples are the cheapest thing Beam's
  coders move between stages;
* a **user** element is ``(raw_user, [events in time order])``: after one
  GroupByKey every later step (k-core, vocabulary counts, records) works per user,
  and later GroupByKeys (:class:`JoinSingleton`) move whole users, not events;
* a **dropped** element is ``(reason, rows)``; summed per reason they become
  ``stats.json``'s ``dropped`` figures, counted by the pipeline itself (no
  metrics), so every runner reports the same numbers.

Nothing here touches local files: reads and writes go through Beam FileSystems,
so any file system Beam supports works. The pipelines use only what every runner
executes, Beam's DaskRunner included (it translates Create, ParDo, GroupByKey and
Flatten, and runs only what the pipeline's last step depends on):

* input files are listed on the driver (``FileSystems.match``) and read in a
  ParDo (:class:`ReadLines`, :class:`ReadInteractions`), never by a Beam source;
* a DoFn with several outputs runs through :class:`ParDoOutputs`, which tags its
  elements in one PCollection and selects each tag (the DaskRunner would hand every
  consumer all outputs mixed);
* no side inputs (the DaskRunner evaluates them apart from the pipeline, and its
  bundles then repeat outputs): a singleton such as the item counts reaches every
  element through a GroupByKey (:class:`JoinSingleton`), and global combines run
  ``without_defaults`` (their default is injected through a side input);
* files are written by :class:`WriteFiles` (GroupByKey per shard, then one DoFn
  per shard), not ``WriteToText``, whose temporary folder comes from a side input
  that a runner may evaluate more than once; each shard holds the elements its
  CRC-32 picks, sorted, so the files are the same bytes on every runner;
* a pipeline's result gathers every branch, the writes included, as main inputs
  (:class:`Gather`), so a runner that computes only the last step's inputs still
  runs them all.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import math
import uuid
import zlib
from typing import Any, Final, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from pipeline.artifacts import join
from pipeline.configs import LEAVE_ONE_OUT, SPLIT_MODES, USER_SPLIT  # noqa: F401  (the --split words)
from tfseq.data import schema, vocab
from tfseq.data.formats import DataError, Interaction

# Event = (timestamp, source, line, position, item, rating); positions of the fields read by name.
Event = tuple[float, int, int, int, str, float]
TIMESTAMP: Final = 0
ITEM: Final = 4
RATING: Final = 5
UserEvents = tuple[str, list[Event]]

DROPPED = "dropped"  # tag of the (reason, rows) outputs
SUMMARY = "summary"  # tag of MakeRecords' per-user summary rows
# Drop reasons, in the order stats.json lists them (ExampleGen's "malformed" comes first).
NO_RATING = "no_rating"  # --min_rating set and the row has no rating
RATING_BELOW = "rating"  # rating < --min_rating
DUPLICATE = "duplicate"  # --dedupe keep-first: a repeated (user, item) pair
KCORE = "kcore"  # removed by iterative k-core filtering
REASONS = (NO_RATING, RATING_BELOW, DUPLICATE, KCORE)

CHUNK_EVENTS = 200_000  # a file's rows are grouped by user in memory this many at a time

MIN_USER_SPLIT_ITEMS = 2  # a valid/test user needs a history and a target

COMPRESSIONS = {  # --compression -> (metadata value, Beam compression, file suffix)
    "none": ("", CompressionTypes.UNCOMPRESSED, ".tfrecord"),
    "gzip": ("GZIP", CompressionTypes.GZIP, ".tfrecord.gz"),
}


# ----------------------------------------------------------------------------- row level


def parse_event(text: str, where: str) -> tuple[str, Event]:
    """One ``Interaction.to_tsv()`` line -> ``(user, event)``; DataError citing ``where`` if it is not one."""
    try:
        row = Interaction.from_tsv(text)
    except ValueError:
        raise DataError(
            f"{where}: not an ExampleGen Interaction row (7 tab-separated fields: user, item, "
            f"timestamp, rating, source, line, position): {text[:120]!r}"
        ) from None
    return row.user, (row.timestamp, row.source, row.line, row.position, row.item, row.rating)


def keep_first(events: list[Event]) -> list[Event]:
    """Time-ordered events without repeated items: each item's earliest event survives."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event[ITEM] not in seen:
            seen.add(event[ITEM])
            kept.append(event)
    return kept


def filter_rating(events: list[Event], min_rating: float) -> tuple[list[Event], int, int]:
    """``(kept, no_rating, below)``: events rated ``>= min_rating``, and how many lacked / missed it."""
    kept = [e for e in events if e[RATING] >= min_rating]  # NaN >= x is False
    no_rating = sum(1 for e in events if math.isnan(e[RATING]))
    return kept, no_rating, len(events) - len(kept) - no_rating


def kcore_filter(events: list[Event], item_counts: dict[str, int], min_user: int, min_item: int) -> list[Event]:
    """One k-core round for one user, RecBole's rule: judged on the counts at the start of the round.

    The user goes if it has fewer than ``min_user`` events; otherwise its events
    of items with fewer than ``min_item`` events (over all users) go.
    """
    if len(events) < min_user:
        return []
    return [e for e in events if item_counts[e[ITEM]] >= min_item]


def event_ids(events: Sequence[Event], columns: Sequence[str]) -> dict[str, list[int]]:
    """The per-event columns ``columns`` (``tfseq.data.schema.EVENT_COLUMNS`` names) of time-ordered events."""
    timestamps = [e[TIMESTAMP] for e in events]
    return {name: schema.EVENT_COLUMNS[name].ids_of(timestamps) for name in columns}


def _head(events: Mapping[str, list[int]], end: int) -> dict[str, list[int]]:
    return {name: values[:end] for name, values in events.items()}


def split_records(
    user: str, item_ids: list[int], events: Mapping[str, list[int]] | None = None
) -> Iterator[tuple[str, bytes]]:
    """Leave-one-out ``(split, serialized SequenceExample)`` of one user (see tfseq.data.schema);
    ``events``: per-event columns aligned with ``item_ids``, cut as the items are."""
    events = events or {}
    if len(item_ids) < schema.MIN_EVAL_INTERACTIONS:
        yield "train", schema.encode(user, item_ids, events=events)
        return
    yield "train", schema.encode(user, item_ids[:-2], events=_head(events, -2))
    yield "valid", schema.encode(user, item_ids[:-2], target=item_ids[-2], events=_head(events, -2))
    yield "test", schema.encode(user, item_ids[:-1], target=item_ids[-1], events=_head(events, -1))


def user_fraction(user: str, seed: int) -> float:
    """A number in ``[0, 1)`` fixed by the raw user ID and ``seed``: the same on every runner and run.

    The first 8 bytes of ``blake2b("<seed>:<user>")`` as a fraction of 2^64
    (Spotlight hashes the user ID with a seeded murmur hash the same way).
    """
    digest = hashlib.blake2b(f"{seed}:{user}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How a user's time-ordered items become train/valid/test records.

    * ``leave_one_out`` (default): :func:`split_records`, every user in every split;
    * ``user`` (Spotlight's protocol): each user goes whole to one split, chosen
      by :func:`user_fraction` -- test below ``test_fraction``, valid below
      ``test_fraction + valid_fraction``, train otherwise -- so valid and test
      users are unseen in training. A valid/test user's record holds all its
      items but the last as history and the last as target; one with a single
      item has nothing to predict and is trained on instead (counted short).
      The fractions hold in expectation over users, not exactly.

    Attributes:
      mode: one of :data:`SPLIT_MODES`.
      valid_fraction, test_fraction: expected shares of users (``user`` only).
      seed: seeds the user assignment (``user`` only).
    """

    mode: str = LEAVE_ONE_OUT
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def assign(self, user: str) -> str:
        """The split a user goes to whole (``user`` mode)."""
        fraction = user_fraction(user, self.seed)
        if fraction < self.test_fraction:
            return "test"
        if fraction < self.test_fraction + self.valid_fraction:
            return "valid"
        return "train"

    def records(
        self, user: str, item_ids: list[int], events: Mapping[str, list[int]] | None = None
    ) -> tuple[list[tuple[str, bytes]], tuple[int, ...], bool]:
        """``(records, held_out, short)`` of one user (``events``: per-event columns aligned with ``item_ids``).

        ``records`` are ``(split, serialized SequenceExample)`` pairs;
        ``held_out`` the item indices that are not in the user's training
        record (they are left out of the training counts); ``short``: the user
        has too few items to be evaluated and is trained on only.
        """
        events = events or {}
        if self.mode == LEAVE_ONE_OUT:
            short = len(item_ids) < schema.MIN_EVAL_INTERACTIONS
            return list(split_records(user, item_ids, events)), (() if short else tuple(item_ids[-2:])), short
        split = self.assign(user)
        if split == "train" or len(item_ids) < MIN_USER_SPLIT_ITEMS:
            return [("train", schema.encode(user, item_ids, events=events))], (), split != "train"
        record = schema.encode(user, item_ids[:-1], target=item_ids[-1], events=_head(events, -1))
        return [(split, record)], tuple(item_ids), False


def order_vocabulary(counts: dict[str, int]) -> list[str]:
    """Raw item IDs by count descending, ties by raw ID: the same order on every runner."""
    return sorted(counts, key=lambda raw: (-counts[raw], raw))


def vocabulary_index(raw_ids: list[str]) -> dict[str, int]:
    """``{raw: index}`` for a vocabulary without padding: the first ID gets index 1."""
    return {raw: i for i, raw in enumerate(raw_ids, start=1)}


def user_line(user_events: UserEvents) -> str:
    """One user as a JSON line (k-core rounds' intermediate files); floats round-trip exactly."""
    return json.dumps(user_events, ensure_ascii=False)


def parse_user_line(text: str) -> UserEvents:
    user, events = json.loads(text)
    return user, [tuple(e) for e in events]


def _keyed(value: Any, key: str) -> tuple[str, Any]:
    return key, value


def _vocab_text(raw_ids: list[str]) -> str:
    return vocab.vocabulary_text(raw_ids).rstrip("\n")  # WriteToText adds the last newline


def _user_vocab_text(users: list[str]) -> str:
    return _vocab_text(sorted(users))


# ----------------------------------------------------------------------------- DoFns / CombineFns


class ReadUserChunks(beam.DoFn):
    """The path of an Interaction TSV file -> ``(user, [events])`` chunks.

    Parsing in the read step and grouping each file's rows by user before the
    shuffle (``CHUNK_EVENTS`` rows at a time, so memory stays bounded) turns a
    million single-event elements into a few per user. The file is opened
    through Beam FileSystems (decompressed by its extension).
    """

    def process(self, path: str) -> Iterator[tuple[str, list[Event]]]:
        chunk: dict[str, list[Event]] = collections.defaultdict(list)
        size = 0
        with FileSystems.open(path) as f:
            for number, raw in enumerate(iter(f.readline, b""), start=1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{number}: not UTF-8 ({e.reason})") from None
                if not text:
                    continue
                user, event = parse_event(text, f"{path}:{number}")
                chunk[user].append(event)
                size += 1
                if size >= CHUNK_EVENTS:
                    yield from chunk.items()
                    chunk, size = collections.defaultdict(list), 0
        yield from chunk.items()


class OrderUserEvents(beam.DoFn):
    """``(user, [chunks])`` -> ``(user, events in time order)`` after dedupe and the rating threshold.

    The duplicate check runs before the rating threshold, as in RecBole
    (``_remove_duplication`` before ``_filter_by_field_value``). Drops go to
    the ``DROPPED`` output as ``(reason, rows)``; a user left with no events
    is dropped silently (its rows are counted).
    """

    def __init__(self, dedupe: str, min_rating: float | None):
        super().__init__()
        self.dedupe, self.min_rating = dedupe, min_rating

    def process(self, grouped: tuple[str, Iterable[list[Event]]]) -> Iterator[Any]:
        user, chunks = grouped
        events = sorted(itertools.chain.from_iterable(chunks))
        if self.dedupe == "keep-first":
            kept = keep_first(events)
            if len(kept) < len(events):
                yield beam.pvalue.TaggedOutput(DROPPED, (DUPLICATE, len(events) - len(kept)))
            events = kept
        if self.min_rating is not None:
            events, no_rating, below = filter_rating(events, self.min_rating)
            for reason, rows in ((NO_RATING, no_rating), (RATING_BELOW, below)):
                if rows:
                    yield beam.pvalue.TaggedOutput(DROPPED, (reason, rows))
        if events:
            yield user, events


class KCoreFilter(beam.DoFn):
    """One k-core round over users: ``process(user, item counts at the start of the round)``."""

    def __init__(self, min_user: int, min_item: int):
        super().__init__()
        self.min_user, self.min_item = min_user, min_item

    def process(self, user_events: UserEvents, item_counts: dict[str, int]) -> Iterator[Any]:
        user, events = user_events
        kept = kcore_filter(events, item_counts, self.min_user, self.min_item)
        if len(kept) < len(events):
            yield beam.pvalue.TaggedOutput(DROPPED, (KCORE, len(events) - len(kept)))
        if kept:
            yield user, kept


class ItemCountsFn(beam.CombineFn):
    """Users -> ``{raw item: events}`` over all of them (one Counter per bundle, merged)."""

    def create_accumulator(self) -> collections.Counter:
        return collections.Counter()

    def add_input(self, acc: collections.Counter, user_events: UserEvents) -> collections.Counter:
        acc.update(e[ITEM] for e in user_events[1])
        return acc

    def merge_accumulators(self, accs: Iterable[collections.Counter]) -> collections.Counter:
        merged: collections.Counter = collections.Counter()  # a new one: a runner may share accumulators
        for acc in accs:
            merged.update(acc)
        return merged

    def extract_output(self, acc: collections.Counter) -> dict[str, int]:
        return dict(acc)


class MakeRecords(beam.DoFn):
    """``(user, events)`` -> serialized records on the train/valid/test outputs, plus a summary row.

    The summary row is ``(events, held_out, short)`` (see :meth:`SplitSpec.records`):
    the training split's item counts are all counts minus the held-out items
    (leave-one-out: the valid and test targets; user split: every item of a
    valid or test user). ``event_columns`` (``tfseq.data.schema.EVENT_COLUMNS``
    names) are written beside ``item_ids``.
    """

    def __init__(self, split: SplitSpec = SplitSpec(), event_columns: tuple[str, ...] = ()):
        super().__init__()
        self.split, self.event_columns = split, tuple(event_columns)

    def process(self, user_events: UserEvents, index: dict[str, int]) -> Iterator[Any]:
        user, events = user_events
        item_ids = [index[e[ITEM]] for e in events]
        records, held_out, short = self.split.records(user, item_ids, event_ids(events, self.event_columns))
        for split, record in records:
            yield beam.pvalue.TaggedOutput(split, record)
        yield beam.pvalue.TaggedOutput(SUMMARY, (len(item_ids), held_out, short))


class SummaryFn(beam.CombineFn):
    """Summary rows -> users, interactions, short users, longest sequence, held-out item counts by index."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"users": 0, "interactions": 0, "users_short": 0, "max_length": 0,
                "targets": collections.Counter()}

    def add_input(self, acc: dict[str, Any], row: tuple[int, tuple[int, ...], bool]) -> dict[str, Any]:
        length, held_out, short = row
        acc["users"] += 1
        acc["interactions"] += length
        acc["users_short"] += bool(short)
        acc["max_length"] = max(acc["max_length"], length)
        acc["targets"].update(held_out)
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accs:
            for key in ("users", "interactions", "users_short"):
                merged[key] += acc[key]
            merged["max_length"] = max(merged["max_length"], acc["max_length"])
            merged["targets"].update(acc["targets"])
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def dataset_summary(parts: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The build pipeline's one-element result, from which the driver writes metadata and stats.

    Args:
      parts: :class:`Gather`'s dict: ``summary`` (SummaryFn's output), ``item_counts``
        and ``index`` (one dict each; all three absent without users),
        ``records`` (``(split, records)`` pairs), ``dropped`` (``(reason, rows)``
        pairs); the written files' parts only make the writes run first.
    """
    users = parts[SUMMARY][0] if parts[SUMMARY] else SummaryFn().create_accumulator()
    item_counts = parts[ITEM_COUNTS][0] if parts[ITEM_COUNTS] else {}  # none without users
    index = parts[INDEX][0] if parts[INDEX] else {}
    records, dropped = dict(parts[RECORDS]), dict(parts[DROPPED])
    train_counts = [0] * (len(index) + 1)
    for raw, count in item_counts.items():
        train_counts[index[raw]] = count
    for item_id, count in users["targets"].items():
        train_counts[item_id] -= count
    return {
        "users": users["users"],
        "interactions": users["interactions"],
        "users_short": users["users_short"],
        "max_length": users["max_length"],
        "num_items": len(index) + 1,
        "train_item_counts": train_counts,
        "records": {split: records.get(split, 0) for split in schema.SPLITS},
        "dropped": dropped,
    }


def round_report(parts: Mapping[str, list[Any]]) -> dict[str, Any]:
    """A k-core round's one-element result: drops, and what still breaks the thresholds afterwards.

    Args:
      parts: :class:`Gather`'s dict: ``dropped`` (``(reason, rows)`` pairs),
        ``violations`` (one int, none without users) and ``written`` (the kept users' files as
        ``(path, users)`` pairs).
    """
    return {"dropped": dict(parts[DROPPED]), "violations": sum(parts[VIOLATIONS]),
            "users": sum(count for _, count in parts[WRITTEN])}


def count_violations(counts: dict[str, int], min_item: int) -> int:
    return sum(1 for n in counts.values() if n < min_item)


def _short_user(user_events: UserEvents, min_user: int) -> int:
    return int(len(user_events[1]) < min_user)


# ----------------------------------------------------------------------------- portable blocks

SELECTED = "main"  # ParDoOutputs' tag of a DoFn's untagged outputs
ITEM_COUNTS, INDEX, RECORDS, VIOLATIONS, WRITTEN = "item_counts", "index", "records", "violations", "written"


def match_files(pattern: str) -> list[str]:
    """The files matching ``pattern`` (Beam FileSystems), sorted; listed on the driver."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def shard_of(data: bytes, num_shards: int) -> int:
    """The shard an encoded element goes to: its CRC-32 modulo ``num_shards`` (the same in every process)."""
    return zlib.crc32(data) % num_shards


class _TagOutputs(beam.DoFn):
    """Runs ``fn.process`` and emits ``(tag, value)``: ``SELECTED`` for untagged outputs.

    ``joined``: the elements are ``(element, singleton)`` pairs (:class:`JoinSingleton`)
    and ``fn.process(element, singleton)`` runs.
    """

    def __init__(self, fn: beam.DoFn, joined: bool):
        super().__init__()
        self.fn, self.joined = fn, joined

    def process(self, element):  # unannotated: Beam would check the hints against the elements
        outputs = self.fn.process(*element) if self.joined else self.fn.process(element)
        for out in outputs:
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out.tag, out.value
            else:
                yield SELECTED, out


def _select(tagged: tuple[str, Any], tag: str) -> Iterator[Any]:
    if tagged[0] == tag:
        yield tagged[1]


JOIN_KEYS = 16  # JoinSingleton's groups: the singleton is copied to each


def _join_key(element: tuple[str, Any], keys: int) -> tuple[int, tuple[bool, Any]]:
    return shard_of(element[0].encode("utf-8"), keys), (False, element)


def _to_every_key(value: Any, keys: int) -> Iterator[tuple[int, tuple[bool, Any]]]:
    for key in range(keys):
        yield key, (True, value)


def _pair_with_singleton(grouped: tuple[int, Iterable[tuple[bool, Any]]]) -> Iterator[tuple[Any, Any]]:
    values = list(grouped[1])
    singletons = [value for is_singleton, value in values if is_singleton]
    elements = [value for is_singleton, value in values if not is_singleton]
    if elements and len(singletons) != 1:
        raise ValueError(f"JoinSingleton needs exactly one singleton element, got {len(singletons)}")
    for element in elements:
        yield element, singletons[0]


class JoinSingleton(beam.PTransform):
    """``(keyed elements, a one-element PCollection)`` -> ``(element, singleton)`` pairs.

    What ``beam.pvalue.AsSingleton`` does, built from a GroupByKey: elements
    (``(str key, ...)`` tuples) go to ``JOIN_KEYS`` groups by their key's
    CRC-32 and the singleton to every group. Side inputs are not used because
    Beam's DaskRunner evaluates them apart from the pipeline, and its bundles
    then repeat outputs.
    """

    def __init__(self, keys: int = JOIN_KEYS):
        super().__init__()
        self.keys = keys

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        elements, singleton = inputs
        return (
            (
                elements | "KeyElements" >> beam.Map(_join_key, self.keys),
                singleton | "ToEveryKey" >> beam.FlatMap(_to_every_key, self.keys),
            )
            | "FlattenJoin" >> beam.Flatten()
            | "GroupJoin" >> beam.GroupByKey()
            | "Pair" >> beam.FlatMap(_pair_with_singleton)
        )


class ParDoOutputs(beam.PTransform):
    """``ParDo(fn).with_outputs(*tags, main=main)`` as a dict ``{tag: PCollection}``.

    ``fn`` yields plain values (the ``main`` output; ``None``: it yields none)
    and ``TaggedOutput`` s; they travel tagged in one PCollection and one
    FlatMap per tag selects them, so every consumer sees its own output on
    every runner (Beam's DaskRunner hands each consumer all outputs mixed).
    With ``singleton`` (a one-element PCollection), ``fn.process(element,
    singleton's element)`` runs through :class:`JoinSingleton`, for keyed
    elements. Only ``fn.process`` runs (no setup or bundle methods).
    """

    def __init__(self, fn: beam.DoFn, *, tags: Sequence[str], main: str | None = None,
                 singleton: beam.PCollection | None = None):
        super().__init__()
        self.fn, self.tags, self.main, self.singleton = fn, tuple(tags), main, singleton

    def expand(self, pcoll: beam.PCollection) -> dict[str, beam.PCollection]:
        if self.singleton is not None:
            pcoll = (pcoll, self.singleton) | "Join" >> JoinSingleton()
        tagged = pcoll | "Tag" >> beam.ParDo(_TagOutputs(self.fn, self.singleton is not None))
        outputs = {}
        if self.main is not None:
            outputs[self.main] = tagged | f"Select[{self.main}]" >> beam.FlatMap(_select, SELECTED)
        for tag in self.tags:
            outputs[tag] = tagged | f"Select[{tag}]" >> beam.FlatMap(_select, tag)
        return outputs


def _under(value: Any, name: str) -> tuple[None, tuple[str, Any]]:
    return None, (name, value)


def _parts(grouped: tuple[None, Iterable[tuple[str, Any] | None]], names: tuple[str, ...]) -> dict[str, list[Any]]:
    parts: dict[str, list[Any]] = {name: [] for name in names}
    for part in grouped[1]:
        if part is not None:
            parts[part[0]].append(part[1])
    return parts


class Gather(beam.PTransform):
    """``{name: PCollection}`` -> one ``{name: [its elements]}`` dict (lists in no particular order).

    A GroupByKey on one key, so every part is a main input of the result: a
    runner that computes only what the pipeline's last step depends on (Beam's
    DaskRunner) still runs each branch, writes included, before the result.
    Parts should be small (counts, summaries, written files).
    """

    def expand(self, parts: Mapping[str, beam.PCollection]) -> beam.PCollection:
        names = tuple(sorted(parts))
        pipeline = next(iter(parts.values())).pipeline
        tagged = [pipeline | "Seed" >> beam.Create([(None, None)])]  # the result exists when all parts are empty
        tagged += [parts[name] | f"Tag[{name}]" >> beam.Map(_under, name) for name in names]
        return (
            tagged
            | "FlattenParts" >> beam.Flatten()
            | "GroupParts" >> beam.GroupByKey()
            | "ToDict" >> beam.Map(_parts, names)
        )


def _read_lines(path: str) -> Iterator[str]:
    with FileSystems.open(path) as f:
        for raw in iter(f.readline, b""):
            yield raw.decode("utf-8").rstrip("\r\n")


class ReadLines(beam.PTransform):
    """The lines (without line endings) of the files matching ``pattern``, listed on the driver."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ListFiles" >> beam.Create(match_files(self.pattern))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadLines" >> beam.FlatMap(_read_lines)
        )


def _keyed_by_shard(element: str | bytes, num_shards: int) -> tuple[int, bytes]:
    data = element.encode("utf-8") if isinstance(element, str) else element
    return shard_of(data, num_shards), data


class _WriteShard(beam.DoFn):
    """``(shard, [encoded elements])`` -> the shard's file, sorted; yields ``(path, elements)``."""

    def __init__(self, path_of: Any, tfrecord: bool, compression: str):
        super().__init__()
        self.path_of, self.tfrecord, self.compression = path_of, tfrecord, compression

    def process(self, grouped: tuple[int, Iterable[bytes | None]]) -> Iterator[tuple[str, int]]:
        shard, values = grouped
        data = sorted(v for v in values if v is not None)
        path = self.path_of(shard)
        folder, name = FileSystems.split(path)
        temporary = FileSystems.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        with FileSystems.create(temporary, compression_type=self.compression) as f:
            for value in data:
                if self.tfrecord:
                    _TFRecordUtil.write_record(f, value)
                else:
                    f.write(value + b"\n")
        FileSystems.rename([temporary], [path])  # a retried bundle never leaves half a file
        yield path, len(data)


class _ShardPath:
    """``shard -> <prefix>-SSSSS-of-NNNNN<suffix>``, or ``prefix`` itself for a single exact file."""

    def __init__(self, prefix: str, suffix: str, num_shards: int, exact: bool):
        self.prefix, self.suffix, self.num_shards, self.exact = prefix, suffix, num_shards, exact

    def __call__(self, shard: int) -> str:
        if self.exact:
            return self.prefix + self.suffix
        return f"{self.prefix}-{shard:05d}-of-{self.num_shards:05d}{self.suffix}"


class WriteFiles(beam.PTransform):
    """Lines (``str``) or records (``bytes``, ``tfrecord=True``) -> ``num_shards`` files; yields ``(path, elements)``.

    Files are ``<prefix>-SSSSS-of-NNNNN<suffix>`` (Beam's default names), or
    with ``exact`` one file at ``prefix + suffix``. Each element goes to the
    shard its CRC-32 picks and each shard is written sorted, so the files are
    the same bytes on every runner; every shard is written, empty or not. A
    shard is written under a hidden temporary name beside it, then renamed.
    Text lines end in ``\\n``; records are TFRecord-framed as Beam's
    ``WriteToTFRecord`` frames them; ``compression`` is a Beam ``CompressionTypes``.
    """

    def __init__(self, prefix: str, suffix: str = "", num_shards: int = 1, *, exact: bool = False,
                 tfrecord: bool = False, compression: str = CompressionTypes.UNCOMPRESSED):
        super().__init__()
        if exact and num_shards != 1:
            raise ValueError(f"an exact file name is one shard, got num_shards={num_shards}")
        self.path_of = _ShardPath(prefix, suffix, num_shards, exact)
        self.num_shards, self.tfrecord, self.compression = num_shards, tfrecord, compression

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        every = pcoll.pipeline | "EveryShard" >> beam.Create([(s, None) for s in range(self.num_shards)])
        keyed = pcoll | "KeyByShard" >> beam.Map(_keyed_by_shard, self.num_shards)
        return (
            (keyed, every)
            | "AllShards" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShard(self.path_of, self.tfrecord, self.compression))
        )


# ----------------------------------------------------------------------------- PTransforms


class ReadInteractions(beam.PTransform):
    """ExampleGen's TSV shards matching ``pattern`` -> ``(user, [events])`` chunks (not yet merged).

    The shards are listed on the driver when the pipeline is built.
    """

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ListFiles" >> beam.Create(match_files(self.pattern))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ParseAndChunk" >> beam.ParDo(ReadUserChunks())
        )


class GroupUserEvents(beam.PTransform):
    """Chunks -> ``(users, dropped)``: one time-ordered event list per user, after dedupe and rating."""

    def __init__(self, dedupe: str = "keep-all", min_rating: float | None = None):
        super().__init__()
        self.dedupe, self.min_rating = dedupe, min_rating

    def expand(self, chunks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        out = (
            chunks
            | "GroupByUser" >> beam.GroupByKey()
            | "Order" >> ParDoOutputs(OrderUserEvents(self.dedupe, self.min_rating), tags=[DROPPED], main="users")
        )
        return out["users"], out[DROPPED]


class CountItems(beam.PTransform):
    """Users -> one ``{raw item: events}`` dict (none when there are no users)."""

    def expand(self, users: beam.PCollection) -> beam.PCollection:
        return users | "CountItems" >> beam.CombineGlobally(ItemCountsFn()).without_defaults()


class KCoreRound(beam.PTransform):
    """Users -> ``(kept users, dropped, violations)``: one round of k-core filtering.

    ``violations`` (one int) counts the users and items that still break a
    threshold after the round; 0 means the output is the k-core and another
    round would remove nothing.
    """

    def __init__(self, min_user: int, min_item: int):
        super().__init__()
        self.min_user, self.min_item = min_user, min_item

    def expand(self, users: beam.PCollection) -> tuple[beam.PCollection, ...]:
        counts = users | "CountBefore" >> CountItems()
        out = users | "Filter" >> ParDoOutputs(
            KCoreFilter(self.min_user, self.min_item), tags=[DROPPED], main="users", singleton=counts
        )
        kept = out["users"]
        item_violations = (
            kept
            | "CountAfter" >> CountItems()
            | "RareItems" >> beam.Map(count_violations, self.min_item)
        )
        user_violations = (
            kept
            | "ShortUsers" >> beam.Map(_short_user, self.min_user)
            | "SumShortUsers" >> beam.CombineGlobally(sum).without_defaults()
        )
        violations = (
            (item_violations, user_violations)
            | "Violations" >> beam.Flatten()
            | "SumViolations" >> beam.CombineGlobally(sum).without_defaults()
        )
        return kept, out[DROPPED], violations


class SumDropped(beam.PTransform):
    """Any number of ``(reason, rows)`` PCollections -> one ``(reason, total)`` per reason."""

    def expand(self, dropped: tuple[beam.PCollection, ...]) -> beam.PCollection:
        return dropped | "FlattenDropped" >> beam.Flatten() | "SumByReason" >> beam.CombinePerKey(sum)


class WriteUserSequences(beam.PTransform):
    """Users -> JSON lines ``<prefix>-SSSSS-of-NNNNN.jsonl`` (k-core intermediates); yields ``(path, users)``."""

    def __init__(self, prefix: str, num_shards: int = 4):
        super().__init__()
        self.prefix, self.num_shards = prefix, num_shards

    def expand(self, users: beam.PCollection) -> beam.PCollection:
        return (
            users
            | "ToJson" >> beam.Map(user_line)
            | "WriteUsers" >> WriteFiles(self.prefix, ".jsonl", self.num_shards)
        )


class ReadUserSequences(beam.PTransform):
    """JSON lines written by WriteUserSequences -> users."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadUsers" >> ReadLines(self.pattern)
            | "FromJson" >> beam.Map(parse_user_line)
        )


class WriteSingleText(beam.PTransform):
    """One string element -> one file at exactly ``path``; yields ``(path, 1)``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, text: beam.PCollection) -> beam.PCollection:
        return text | "WriteText" >> WriteFiles(self.path, exact=True)


class WriteJson(beam.PTransform):
    """One JSON-serializable element -> one file at exactly ``path``; yields ``(path, 1)``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, value: beam.PCollection) -> beam.PCollection:
        return value | "ToJson" >> beam.Map(json.dumps, sort_keys=True) | "Write" >> WriteSingleText(self.path)


class BuildVocabularies(beam.PTransform):
    """Users -> ``(item counts, item index, written)``: two singletons and the vocabulary files' ``(path, 1)``.

    Writes item_vocab.txt and user_vocab.txt.
    """

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def expand(self, users: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection]:
        counts = users | "CountItems" >> CountItems()
        items = counts | "OrderItems" >> beam.Map(order_vocabulary)
        index = items | "IndexItems" >> beam.Map(vocabulary_index)
        item_vocab = (
            items
            | "ItemVocabText" >> beam.Map(_vocab_text)
            | "WriteItemVocab" >> WriteSingleText(join(self.output_dir, vocab.ITEM_VOCAB))
        )
        user_vocab = (
            users
            | "Users" >> beam.Keys()
            | "CollectUsers" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
            | "UserVocabText" >> beam.Map(_user_vocab_text)
            | "WriteUserVocab" >> WriteSingleText(join(self.output_dir, vocab.USER_VOCAB))
        )
        return counts, index, (item_vocab, user_vocab) | "VocabFiles" >> beam.Flatten()


class WriteSplits(beam.PTransform):
    """Users + item index -> ``<dir>/{train,valid,test}/part-SSSSS-of-NNNNN.tfrecord[.gz]``.

    Returns ``(records per split, summary rows)``: ``(split, records)`` pairs,
    counted from the written files, and MakeRecords' per-user
    ``(events, held_out, short)`` rows.
    """

    def __init__(self, output_dir: str, num_shards: int, compression: str, split: SplitSpec = SplitSpec(),
                 event_columns: tuple[str, ...] = ()):
        super().__init__()
        self.output_dir, self.num_shards, self.compression = output_dir, num_shards, compression
        self.split, self.event_columns = split, tuple(event_columns)

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> tuple[beam.PCollection, ...]:
        users, index = inputs
        _, compression, suffix = COMPRESSIONS[self.compression]
        make_records = MakeRecords(self.split, self.event_columns)
        records = users | "Records" >> ParDoOutputs(make_records, tags=(*schema.SPLITS, SUMMARY), singleton=index)
        counts = []
        for split in schema.SPLITS:
            name = split.title()
            counts.append(
                records[split]
                | f"Write{name}" >> WriteFiles(
                    join(self.output_dir, split, "part"), suffix, self.num_shards, tfrecord=True,
                    compression=compression,
                )
                | f"Key{name}" >> beam.Map(lambda written, split: (split, written[1]), split)
            )
        return counts | "FlattenCounts" >> beam.Flatten() | "RecordCounts" >> beam.CombinePerKey(sum), records[SUMMARY]


class BuildDataset(beam.PTransform):
    """Users + drops -> vocabularies and split TFRecords under ``output_dir``, and one summary dict.

    The summary (see :func:`dataset_summary`) is what the driver needs for
    metadata.json and stats.json; everything row-level stays in the pipeline.
    """

    def __init__(self, output_dir: str, num_shards: int, compression: str, split: SplitSpec = SplitSpec(),
                 event_columns: tuple[str, ...] = ()):
        super().__init__()
        self.output_dir, self.num_shards, self.compression = output_dir, num_shards, compression
        self.split, self.event_columns = split, tuple(event_columns)

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        users, dropped = inputs
        counts, index, vocab_files = users | "Vocabularies" >> BuildVocabularies(self.output_dir)
        records, rows = (users, index) | "Splits" >> WriteSplits(
            self.output_dir, self.num_shards, self.compression, self.split, self.event_columns
        )
        summary = rows | "Summarize" >> beam.CombineGlobally(SummaryFn()).without_defaults()
        parts = {SUMMARY: summary, ITEM_COUNTS: counts, INDEX: index, RECORDS: records, DROPPED: dropped,
                 WRITTEN: vocab_files}
        return parts | "Gather" >> Gather() | "Summary" >> beam.Map(dataset_summary)
