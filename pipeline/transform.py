"""The Transform stage: k-core, vocabularies, time-ordered sequences, leave-one-out SequenceExamples.

Input: ExampleGen's Interaction TSV shards. Output (``<root>/Transform/``):

* ``train|valid|test/part-SSSSS-of-NNNNN.tfrecord[.gz]``: SequenceExamples (tfseq.data.schema);
* ``item_vocab.txt`` and ``user_vocab.txt`` (tfseq.data.vocab);
* ``metadata.json`` (DatasetMetadata) and ``stats.json`` (RecBole's dataset figures, rows
  dropped by reason).

Everything row-level runs in Beam and is runner-agnostic. Iterative k-core
filtering is a fixed point Beam cannot loop over, so the driver runs one small
pipeline per round until a round removes nothing. Only the final summary files
are assembled on the driver, from a one-element summary the pipeline writes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import artifacts
from tfseq.config import ConfigError
from tfseq.data import schema, vocab
from tfseq.data.vocab import DatasetMetadata, SplitInfo

NAMESPACE = "tfseq.transform"
SUMMARY = "_summary.json"
DEDUPE_MODES = ("keep-all", "keep-first")
COMPRESSIONS = {"none": ("", CompressionTypes.UNCOMPRESSED, ".tfrecord"),
                "gzip": ("GZIP", CompressionTypes.GZIP, ".tfrecord.gz")}

# An event inside a user's group: (timestamp, source, line, position, item). Tuples sort in
# time order with input order breaking ties, and are cheap to pickle between stages.
Event = tuple[float, int, int, int, str]


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """Transform flags (field names are the CLI flags).

    Attributes:
      min_rating: keep rows with rating >= this (rows without a rating are dropped); None = off.
      dedupe: "keep-all" (RecBole's default) or "keep-first" (the earliest (user, item) event).
      min_user_inter, min_item_inter: iterative k-core thresholds; 0 = off.
      num_shards: TFRecord shards per split.
      compression: "none" or "gzip".
    """

    min_rating: float | None = None
    dedupe: str = "keep-all"
    min_user_inter: int = 0
    min_item_inter: int = 0
    num_shards: int = 4
    compression: str = "none"

    def __post_init__(self) -> None:
        if self.dedupe not in DEDUPE_MODES:
            raise ConfigError(f"--dedupe must be one of {', '.join(DEDUPE_MODES)}, got {self.dedupe!r}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"--compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )
        if self.min_user_inter < 0 or self.min_item_inter < 0 or self.num_shards < 1:
            raise ConfigError("--min_user_inter/--min_item_inter must be >= 0 and --num_shards >= 1")

    @property
    def kcore(self) -> bool:
        return self.min_user_inter > 0 or self.min_item_inter > 0


# -- row-level steps ------------------------------------------------------------------------
def parse_row(line: str, min_rating: float | None) -> Iterator[tuple[str, Event]]:
    """One Interaction TSV line -> ``(user, event)``; drops (and counts) rows below ``min_rating``."""
    user, item, ts, rating, source, line_no, position = line.split("\t")
    if min_rating is not None:
        value = float(rating)
        if math.isnan(value) or value < min_rating:
            Metrics.counter(NAMESPACE, "dropped_rating").inc()
            return
    yield user, (float(ts), int(source), int(line_no), int(position), item)


def order_events(events: Iterable[Event], dedupe: str) -> list[Event]:
    """A user's events in time order (ties: input order); keep-first drops repeated items."""
    ordered = sorted(events)
    if dedupe == "keep-first":
        seen: set[str] = set()
        kept = []
        for event in ordered:
            if event[4] not in seen:
                seen.add(event[4])
                kept.append(event)
        Metrics.counter(NAMESPACE, "dropped_duplicate").inc(len(ordered) - len(kept))
        ordered = kept
    return ordered


class ReadEvents(beam.PTransform):
    """TSV rows -> ``(user, event)`` pairs, after the rating threshold."""

    def __init__(self, pattern: str, min_rating: float | None):
        super().__init__()
        self.pattern, self.min_rating = pattern, min_rating

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadRows" >> beam.io.ReadFromText(self.pattern)
            | "Parse" >> beam.FlatMap(parse_row, self.min_rating)
        )


class GroupUserEvents(beam.PTransform):
    """``(user, event)`` pairs -> ``(user, [events in time order])``."""

    def __init__(self, dedupe: str):
        super().__init__()
        self.dedupe = dedupe

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return (
            pairs
            | "GroupByUser" >> beam.GroupByKey()
            | "Order" >> beam.Map(_order_user, self.dedupe)
        )


def _order_user(user_events: tuple[str, Iterable[Event]], dedupe: str) -> tuple[str, list[Event]]:
    return user_events[0], order_events(user_events[1], dedupe)


def _item_counts(user_events: tuple[str, list[Event]]) -> Iterator[tuple[str, int]]:
    return iter(collections.Counter(e[4] for e in user_events[1]).items())


class CountItems(beam.PTransform):
    """``(user, events)`` -> ``(item, count)``, counting per user first (fewer elements to shuffle)."""

    def expand(self, users: beam.PCollection) -> beam.PCollection:
        return users | "PerUser" >> beam.FlatMap(_item_counts) | "Sum" >> beam.CombinePerKey(sum)


def kcore_filter(
    user_events: tuple[str, list[Event]], item_counts: dict[str, int], min_user: int, min_item: int
) -> Iterator[tuple[str, list[Event]]]:
    """One k-core round for one user: drop rare items, then the user if too few events remain."""
    user, events = user_events
    kept = [e for e in events if item_counts.get(e[4], 0) >= min_item]
    if len(kept) < min_user:
        kept = []
    removed = len(events) - len(kept)
    if removed:
        Metrics.counter(NAMESPACE, "dropped_kcore").inc(removed)
    if kept:
        yield user, kept


class KCoreRound(beam.PTransform):
    """One round of iterative k-core filtering over grouped users."""

    def __init__(self, min_user: int, min_item: int):
        super().__init__()
        self.min_user, self.min_item = min_user, min_item

    def expand(self, users: beam.PCollection) -> beam.PCollection:
        counts = users | "CountItems" >> CountItems()
        return users | "Filter" >> beam.FlatMap(
            kcore_filter, beam.pvalue.AsDict(counts), self.min_user, self.min_item
        )


def _event_rows(user_events: tuple[str, list[Event]]) -> Iterator[str]:
    user, events = user_events
    for ts, source, line, position, item in events:
        yield f"{user}\t{item}\t{ts!r}\tnan\t{source}\t{line}\t{position}"


# -- vocabularies and records ----------------------------------------------------------------
def order_vocabulary(counts: Iterable[tuple[str, int]]) -> list[str]:
    """Items by count descending, ties by raw ID: deterministic on every runner."""
    return [item for item, _ in sorted(counts, key=lambda kv: (-kv[1], kv[0]))]


def split_records(user: str, item_ids: list[int]) -> Iterator[tuple[str, bytes]]:
    """Leave-one-out records of one user (see tfseq.data.schema)."""
    if len(item_ids) < schema.MIN_EVAL_INTERACTIONS:
        yield "train", schema.encode(user, item_ids)
        return
    yield "train", schema.encode(user, item_ids[:-2])
    yield "valid", schema.encode(user, item_ids[:-2], target=item_ids[-2])
    yield "test", schema.encode(user, item_ids[:-1], target=item_ids[-1])


class MakeRecords(beam.DoFn):
    """``(user, events)`` -> serialized records on the train/valid/test outputs + a summary row."""

    SUMMARY_TAG = "summary"

    def process(self, user_events: tuple[str, list[Event]], index: dict[str, int]) -> Iterator[Any]:
        user, events = user_events
        item_ids = [index[e[4]] for e in events]
        for split, record in split_records(user, item_ids):
            yield beam.pvalue.TaggedOutput(split, record)
        train_ids = item_ids if len(item_ids) < schema.MIN_EVAL_INTERACTIONS else item_ids[:-2]
        yield beam.pvalue.TaggedOutput(self.SUMMARY_TAG, (len(item_ids), tuple(train_ids)))


class SummaryFn(beam.CombineFn):
    """Per-user (length, train item ids) -> users, interactions, short users, max length, counts."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"users": 0, "interactions": 0, "short_users": 0, "max_length": 0,
                "train_item_counts": collections.Counter()}

    def add_input(self, acc: dict[str, Any], row: tuple[int, tuple[int, ...]]) -> dict[str, Any]:
        length, train_ids = row
        acc["users"] += 1
        acc["interactions"] += length
        acc["short_users"] += length < schema.MIN_EVAL_INTERACTIONS
        acc["max_length"] = max(acc["max_length"], length)
        acc["train_item_counts"].update(train_ids)
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accs:
            for key in ("users", "interactions", "short_users"):
                merged[key] += acc[key]
            merged["max_length"] = max(merged["max_length"], acc["max_length"])
            merged["train_item_counts"].update(acc["train_item_counts"])
        return merged

    def extract_output(self, acc: dict[str, Any]) -> str:
        out = dict(acc)
        out["train_item_counts"] = sorted(acc["train_item_counts"].items())
        return json.dumps(out)


class WriteSingleText(beam.PTransform):
    """One string element -> one file at exactly ``path``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, text: beam.PCollection) -> beam.pvalue.PDone:
        return text | beam.io.WriteToText(self.path, shard_name_template="", num_shards=1)


def _vocab_text(raw_ids: list[str]) -> str:
    return vocab.vocabulary_text(raw_ids).rstrip("\n")  # WriteToText adds the last newline


class BuildDataset(beam.PTransform):
    """Grouped users -> vocabularies, leave-one-out TFRecords and the summary, under ``output_dir``."""

    def __init__(self, output_dir: str, config: TransformConfig):
        super().__init__()
        self.output_dir, self.config = output_dir, config

    def expand(self, users: beam.PCollection) -> beam.pvalue.PDone:
        out = self.output_dir
        _, compression, suffix = COMPRESSIONS[self.config.compression]
        item_vocab = (
            users
            | "CountItems" >> CountItems()
            | "CollectItems" >> beam.combiners.ToList()
            | "OrderItems" >> beam.Map(order_vocabulary)
        )
        index = item_vocab | "Index" >> beam.Map(lambda items: {raw: i + 1 for i, raw in enumerate(items)})
        records = users | "Records" >> beam.ParDo(MakeRecords(), beam.pvalue.AsSingleton(index)).with_outputs(
            *schema.SPLITS, MakeRecords.SUMMARY_TAG
        )
        for split in schema.SPLITS:
            _ = records[split] | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                artifacts.join(out, split, "part"),
                file_name_suffix=suffix,
                num_shards=self.config.num_shards,
                compression_type=compression,
            )
        _ = (
            item_vocab
            | "ItemVocabText" >> beam.Map(_vocab_text)
            | "WriteItemVocab" >> WriteSingleText(artifacts.join(out, vocab.ITEM_VOCAB))
        )
        _ = (
            users
            | "Users" >> beam.Keys()
            | "CollectUsers" >> beam.combiners.ToList()
            | "UserVocabText" >> beam.Map(lambda u: _vocab_text(sorted(u)))
            | "WriteUserVocab" >> WriteSingleText(artifacts.join(out, vocab.USER_VOCAB))
        )
        return (
            records[MakeRecords.SUMMARY_TAG]
            | "Summarize" >> beam.CombineGlobally(SummaryFn())
            | "WriteSummary" >> WriteSingleText(artifacts.join(out, SUMMARY))
        )


# -- the stage -------------------------------------------------------------------------------
def _counter(result: beam.runners.runner.PipelineResult, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(name))
    return int(sum(c.committed or 0 for c in found["counters"]))


def _run(options: PipelineOptions, build: Any) -> beam.runners.runner.PipelineResult:
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _kcore(config: TransformConfig, pattern: str, work: str, options: PipelineOptions,
           dropped: collections.Counter) -> str:
    """Runs k-core rounds until one removes nothing; returns the final rows' file pattern."""
    rounds = 0
    while True:
        rounds += 1
        out_prefix = artifacts.join(work, f"round-{rounds:03d}", "rows")
        first = rounds == 1

        def build(p: beam.Pipeline, src: str = pattern, prefix: str = out_prefix, first: bool = first) -> None:
            users = (
                p
                | "Read" >> ReadEvents(src, config.min_rating if first else None)
                | "Group" >> GroupUserEvents(config.dedupe if first else "keep-all")
            )
            _ = (
                users
                | "KCore" >> KCoreRound(config.min_user_inter, config.min_item_inter)
                | "ToRows" >> beam.FlatMap(_event_rows)
                | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".tsv")
            )

        result = _run(options, build)
        for name in ("dropped_rating", "dropped_duplicate", "dropped_kcore"):
            dropped[name.removeprefix("dropped_")] += _counter(result, name)
        removed = _counter(result, "dropped_kcore")
        pattern = f"{out_prefix}*.tsv"
        if removed == 0:
            dropped["kcore_rounds"] = rounds
            return pattern


def run_transform(
    config: TransformConfig, example_gen_dir: str, output_dir: str, options: PipelineOptions
) -> dict[str, Any]:
    """Runs the stage into ``output_dir`` (a temporary directory) and returns its stats."""
    pattern = artifacts.join(example_gen_dir, "interactions-*.tsv")
    dropped: collections.Counter = collections.Counter()
    work = artifacts.join(output_dir, "_kcore")
    filtered = config.kcore
    if filtered:
        pattern = _kcore(config, pattern, work, options, dropped)

    def build(p: beam.Pipeline) -> None:
        users = (
            p
            | "Read" >> ReadEvents(pattern, None if filtered else config.min_rating)
            | "Group" >> GroupUserEvents("keep-all" if filtered else config.dedupe)
        )
        _ = users | "Build" >> BuildDataset(output_dir, config)

    result = _run(options, build)
    if not filtered:
        dropped["rating"] += _counter(result, "dropped_rating")
        dropped["duplicate"] += _counter(result, "dropped_duplicate")
    if FileSystems.exists(work):
        FileSystems.delete([work])
    return _write_summary_files(config, example_gen_dir, output_dir, dropped)


def _write_summary_files(
    config: TransformConfig, example_gen_dir: str, output_dir: str, dropped: collections.Counter
) -> dict[str, Any]:
    summary_path = artifacts.join(output_dir, SUMMARY)
    if not FileSystems.exists(summary_path):
        raise ValueError(f"{example_gen_dir}: no interactions left after filtering ({dict(dropped)})")
    summary = json.loads(artifacts.read_text(summary_path))
    FileSystems.delete([summary_path])
    items = vocab.read_vocabulary(artifacts.join(output_dir, vocab.ITEM_VOCAB))
    num_items = len(items)
    counts = [0] * num_items
    for index, count in summary["train_item_counts"]:
        counts[index] = count
    compression, _, suffix = COMPRESSIONS[config.compression]
    splits = {}
    for split in schema.SPLITS:
        splits[split] = SplitInfo(f"{split}/part-*{suffix}", _count_records(split, summary))
    metadata = DatasetMetadata(
        num_items=num_items,
        num_users=summary["users"],
        compression=compression,
        splits=splits,
        item_counts=tuple(counts),
        max_length=summary["max_length"],
    )
    artifacts.atomic_write_text(artifacts.join(output_dir, vocab.METADATA), metadata.to_json())
    users, inter, n_items = summary["users"], summary["interactions"], num_items - 1
    example_gen_stats = artifacts.join(example_gen_dir, "stats.json")
    malformed = 0
    if FileSystems.exists(example_gen_stats):
        malformed = int(json.loads(artifacts.read_text(example_gen_stats)).get("malformed_rows", 0))
    stats = {
        "users": users,
        "items": n_items,
        "interactions": inter,
        "avg_actions_per_user": inter / users,
        "avg_actions_per_item": inter / n_items,
        "sparsity": 1.0 - inter / (users * n_items),
        "max_length": summary["max_length"],
        "users_short": summary["short_users"],
        "records": {split: info.records for split, info in splits.items()},
        "dropped": {
            "malformed": malformed,
            "rating": dropped["rating"],
            "duplicate": dropped["duplicate"],
            "kcore": dropped["kcore"],
        },
        "kcore_rounds": dropped["kcore_rounds"],
        "config": dataclasses.asdict(config),
    }
    artifacts.atomic_write_text(artifacts.join(output_dir, vocab.STATS), json.dumps(stats, indent=1))
    return stats


def _count_records(split: str, summary: dict[str, Any]) -> int:
    evaluated = summary["users"] - summary["short_users"]
    return summary["users"] if split == "train" else evaluated
