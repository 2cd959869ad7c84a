"""The Transform stage's Beam building blocks: row-level functions, DoFns and composite PTransforms.

:mod:`pipeline.transform` wires them into pipelines and owns the driver. The
data model between the steps:

* an **event** is a plain tuple ``(timestamp, source, line, position, item,
  rating)``: tuples sort in time order with the input place breaking ties
  (``Interaction.sort_key``), and plain tuples are the cheapest thing Beam's
  coders move between stages;
* a **user** element is ``(raw_user, [events in time order])``: after one
  GroupByKey every later step (k-core, vocabulary counts, records) works per user,
  so a million events cross the shuffle once;
* a **dropped** element is ``(reason, rows)``; summed per reason they become
  ``stats.json``'s ``dropped`` figures, counted by the pipeline itself (no
  metrics), so every runner reports the same numbers.

Nothing here touches local files: reads and writes go through ``beam.io`` /
``fileio`` (Beam FileSystems), so any runner and any file system Beam supports works.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import math
from typing import Any, Final, Iterable, Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from pipeline.artifacts import join
from tfseq.data import schema, vocab
from tfseq.data.formats import DataError, Interaction

# Event = (timestamp, source, line, position, item, rating); positions of the fields read by name.
Event = tuple[float, int, int, int, str, float]
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

LEAVE_ONE_OUT = "leave_one_out"
USER_SPLIT = "user"
SPLIT_MODES = (LEAVE_ONE_OUT, USER_SPLIT)
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


def split_records(user: str, item_ids: list[int]) -> Iterator[tuple[str, bytes]]:
    """Leave-one-out ``(split, serialized SequenceExample)`` of one user (see tfseq.data.schema)."""
    if len(item_ids) < schema.MIN_EVAL_INTERACTIONS:
        yield "train", schema.encode(user, item_ids)
        return
    yield "train", schema.encode(user, item_ids[:-2])
    yield "valid", schema.encode(user, item_ids[:-2], target=item_ids[-2])
    yield "test", schema.encode(user, item_ids[:-1], target=item_ids[-1])


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

    def records(self, user: str, item_ids: list[int]) -> tuple[list[tuple[str, bytes]], tuple[int, ...], bool]:
        """``(records, held_out, short)`` of one user.

        ``records`` are ``(split, serialized SequenceExample)`` pairs;
        ``held_out`` the item indices that are not in the user's training
        record (they are left out of the training counts); ``short``: the user
        has too few items to be evaluated and is trained on only.
        """
        if self.mode == LEAVE_ONE_OUT:
            short = len(item_ids) < schema.MIN_EVAL_INTERACTIONS
            return list(split_records(user, item_ids)), (() if short else tuple(item_ids[-2:])), short
        split = self.assign(user)
        if split == "train" or len(item_ids) < MIN_USER_SPLIT_ITEMS:
            return [("train", schema.encode(user, item_ids))], (), split != "train"
        record = schema.encode(user, item_ids[:-1], target=item_ids[-1])
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
    """A ``fileio.ReadableFile`` of Interaction TSV rows -> ``(user, [events])`` chunks.

    Parsing in the read step and grouping each file's rows by user before the
    shuffle (``CHUNK_EVENTS`` rows at a time, so memory stays bounded) turns a
    million single-event elements into a few per user.
    """

    def process(self, readable: fileio.ReadableFile) -> Iterator[tuple[str, list[Event]]]:
        path = readable.metadata.path
        chunk: dict[str, list[Event]] = collections.defaultdict(list)
        size = 0
        with readable.open() as f:
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
    """One k-core round over users, with the round's item counts as a side input."""

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
        accs = iter(accs)
        merged = next(accs)
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
    valid or test user).
    """

    def __init__(self, split: SplitSpec = SplitSpec()):
        super().__init__()
        self.split = split

    def process(self, user_events: UserEvents, index: dict[str, int]) -> Iterator[Any]:
        user, events = user_events
        item_ids = [index[e[ITEM]] for e in events]
        records, held_out, short = self.split.records(user, item_ids)
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


def dataset_summary(
    _: None, users: dict[str, Any], item_counts: dict[str, int], index: dict[str, int],
    records: dict[str, int], dropped: dict[str, int],
) -> dict[str, Any]:
    """The build pipeline's one-element result, from which the driver writes metadata and stats."""
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


def round_report(_: None, dropped: dict[str, int], violations: int, users: int) -> dict[str, Any]:
    """A k-core round's one-element result: drops, and what still breaks the thresholds afterwards."""
    return {"dropped": dropped, "violations": violations, "users": users}


def count_violations(counts: dict[str, int], min_item: int) -> int:
    return sum(1 for n in counts.values() if n < min_item)


def _short_user(user_events: UserEvents, min_user: int) -> int:
    return int(len(user_events[1]) < min_user)


# ----------------------------------------------------------------------------- PTransforms


class ReadInteractions(beam.PTransform):
    """ExampleGen's TSV shards matching ``pattern`` -> ``(user, [events])`` chunks (not yet merged)."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern)
            | "ReadMatches" >> fileio.ReadMatches()
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
            | "Order" >> beam.ParDo(OrderUserEvents(self.dedupe, self.min_rating)).with_outputs(
                DROPPED, main="users"
            )
        )
        return out.users, out[DROPPED]


class CountItems(beam.PTransform):
    """Users -> one ``{raw item: events}`` dict."""

    def expand(self, users: beam.PCollection) -> beam.PCollection:
        return users | "CountItems" >> beam.CombineGlobally(ItemCountsFn())


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
        out = users | "Filter" >> beam.ParDo(
            KCoreFilter(self.min_user, self.min_item), beam.pvalue.AsSingleton(counts)
        ).with_outputs(DROPPED, main="users")
        kept = out.users
        item_violations = (
            kept
            | "CountAfter" >> CountItems()
            | "RareItems" >> beam.Map(count_violations, self.min_item)
        )
        user_violations = (
            kept
            | "ShortUsers" >> beam.Map(_short_user, self.min_user)
            | "SumShortUsers" >> beam.CombineGlobally(sum)
        )
        violations = (
            (item_violations, user_violations)
            | "Violations" >> beam.Flatten()
            | "SumViolations" >> beam.CombineGlobally(sum)
        )
        return kept, out[DROPPED], violations


class SumDropped(beam.PTransform):
    """Any number of ``(reason, rows)`` PCollections -> one ``(reason, total)`` per reason."""

    def expand(self, dropped: tuple[beam.PCollection, ...]) -> beam.PCollection:
        return dropped | "FlattenDropped" >> beam.Flatten() | "SumByReason" >> beam.CombinePerKey(sum)


class WriteUserSequences(beam.PTransform):
    """Users -> JSON lines ``<prefix>-SSSSS-of-NNNNN.jsonl`` (k-core intermediates)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def expand(self, users: beam.PCollection) -> beam.pvalue.PDone:
        return (
            users
            | "ToJson" >> beam.Map(user_line)
            | "WriteUsers" >> beam.io.WriteToText(self.prefix, file_name_suffix=".jsonl")
        )


class ReadUserSequences(beam.PTransform):
    """JSON lines written by WriteUserSequences -> users."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadUsers" >> beam.io.ReadFromText(self.pattern)
            | "FromJson" >> beam.Map(parse_user_line)
        )


class WriteSingleText(beam.PTransform):
    """One string element -> one file at exactly ``path``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, text: beam.PCollection) -> beam.pvalue.PDone:
        return text | "WriteText" >> beam.io.WriteToText(self.path, shard_name_template="", num_shards=1)


class WriteJson(beam.PTransform):
    """One JSON-serializable element -> one file at exactly ``path``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, value: beam.PCollection) -> beam.pvalue.PDone:
        return value | "ToJson" >> beam.Map(json.dumps, sort_keys=True) | "Write" >> WriteSingleText(self.path)


class BuildVocabularies(beam.PTransform):
    """Users -> ``(item counts, item index)`` singletons; writes item_vocab.txt and user_vocab.txt."""

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def expand(self, users: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        counts = users | "CountItems" >> CountItems()
        items = counts | "OrderItems" >> beam.Map(order_vocabulary)
        index = items | "IndexItems" >> beam.Map(vocabulary_index)
        _ = (
            items
            | "ItemVocabText" >> beam.Map(_vocab_text)
            | "WriteItemVocab" >> WriteSingleText(join(self.output_dir, vocab.ITEM_VOCAB))
        )
        _ = (
            users
            | "Users" >> beam.Keys()
            | "CollectUsers" >> beam.combiners.ToList()
            | "UserVocabText" >> beam.Map(_user_vocab_text)
            | "WriteUserVocab" >> WriteSingleText(join(self.output_dir, vocab.USER_VOCAB))
        )
        return counts, index


class WriteSplits(beam.PTransform):
    """Users + item index -> ``<dir>/{train,valid,test}/part-SSSSS-of-NNNNN.tfrecord[.gz]``.

    Returns ``(records per split, summary rows)``: ``(split, records)`` pairs
    and MakeRecords' per-user ``(events, held_out, short)`` rows.
    """

    def __init__(self, output_dir: str, num_shards: int, compression: str, split: SplitSpec = SplitSpec()):
        super().__init__()
        self.output_dir, self.num_shards, self.compression = output_dir, num_shards, compression
        self.split = split

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> tuple[beam.PCollection, ...]:
        users, index = inputs
        _, compression, suffix = COMPRESSIONS[self.compression]
        make_records = MakeRecords(self.split)
        records = users | "Records" >> beam.ParDo(make_records, beam.pvalue.AsSingleton(index)).with_outputs(
            *schema.SPLITS, SUMMARY
        )
        counts = []
        for split in schema.SPLITS:
            name = split.title()
            _ = records[split] | f"Write{name}" >> beam.io.WriteToTFRecord(
                join(self.output_dir, split, "part"),
                file_name_suffix=suffix,
                num_shards=self.num_shards,
                compression_type=compression,
            )
            counts.append(
                records[split]
                | f"Count{name}" >> beam.combiners.Count.Globally()
                | f"Key{name}" >> beam.Map(_keyed, split)
            )
        return counts | "RecordCounts" >> beam.Flatten(), records[SUMMARY]


class BuildDataset(beam.PTransform):
    """Users + drops -> vocabularies and split TFRecords under ``output_dir``, and one summary dict.

    The summary (see :func:`dataset_summary`) is what the driver needs for
    metadata.json and stats.json; everything row-level stays in the pipeline.
    """

    def __init__(self, output_dir: str, num_shards: int, compression: str, split: SplitSpec = SplitSpec()):
        super().__init__()
        self.output_dir, self.num_shards, self.compression = output_dir, num_shards, compression
        self.split = split

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        users, dropped = inputs
        counts, index = users | "Vocabularies" >> BuildVocabularies(self.output_dir)
        records, rows = (users, index) | "Splits" >> WriteSplits(
            self.output_dir, self.num_shards, self.compression, self.split
        )
        summary = rows | "Summarize" >> beam.CombineGlobally(SummaryFn())
        AsSingleton, AsDict = beam.pvalue.AsSingleton, beam.pvalue.AsDict
        return (
            users.pipeline
            | "One" >> beam.Create([None])
            | "Summary" >> beam.Map(
                dataset_summary, AsSingleton(summary), AsSingleton(counts), AsSingleton(index),
                AsDict(records), AsDict(dropped),
            )
        )
