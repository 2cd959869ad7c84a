"""Transform: each PTransform on hand-made users, the stage against a plain-Python oracle, real datasets."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import random
import zlib
from pathlib import Path
from typing import Iterable

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # not collected by pytest
from apache_beam.testing.util import assert_that, equal_to

from pipeline import ptransforms as T
from pipeline.transform import TransformConfig, run_transform
from tfseq.config import ConfigError
from tfseq.data import schema
from tfseq.data.formats import DataError, Interaction
from tfseq.data.reader import load_evaluation_split, load_split
from tfseq.data.vocab import DatasetMetadata, read_vocabulary

NAN = math.nan
IN_MEMORY = ["--runner=DirectRunner"]
MULTI_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]


# ----------------------------------------------------------------------------- helpers


def write_example_gen(directory: Path, rows: Iterable[Interaction], shards: int = 2,
                      stats: dict | None = None) -> Path:
    """ExampleGen's output layout: rows dealt round-robin to ``interactions-*.tsv`` shards."""
    directory.mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [[] for _ in range(shards)]
    for n, row in enumerate(rows):
        lines[n % shards].append(row.to_tsv() + "\n")
    for shard, text in enumerate(lines):
        (directory / f"interactions-{shard:05d}-of-{shards:05d}.tsv").write_text("".join(text))
    if stats is not None:
        (directory / "stats.json").write_text(json.dumps(stats))
    return directory


def event(ts: float, item: str, line: int, source: int = 0, position: int = 0, rating: float = 1.0) -> T.Event:
    return (ts, source, line, position, item, rating)


def items_of(user_events: T.UserEvents) -> tuple[str, list[str]]:
    return user_events[0], [e[T.ITEM] for e in user_events[1]]


def read_records(directory: Path, split: str) -> list[tuple[str, list[int], int]]:
    files = sorted(str(p) for p in (directory / split).glob("part-*"))
    compression = "GZIP" if files and files[0].endswith(".gz") else None
    return sorted(schema.decode(r.numpy()) for r in tf.data.TFRecordDataset(files, compression))


def raw_records(directory: Path, split: str) -> list[bytes]:
    """A split's serialized records, sorted: byte-equal outputs, whatever the sharding."""
    files = sorted(str(p) for p in (directory / split).glob("part-*"))
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(files))


def records_in_raw_ids(directory: Path) -> dict[str, list]:
    """Every split as sorted (user, [raw items], raw target or '') through item_vocab.txt."""
    vocabulary = read_vocabulary(str(directory / "item_vocab.txt"))
    return {
        split: sorted((u, [vocabulary[i] for i in ids], vocabulary[t]) for u, ids, t in read_records(directory, split))
        for split in schema.SPLITS
    }


def reference_sequences(rows: list[Interaction], min_rating: float | None = None, dedupe: str = "keep-all",
                        min_user: int = 0, min_item: int = 0) -> dict[str, list[str]]:
    """The dataset in plain Python: sort, dedupe, rating threshold, then k-core until nothing changes."""
    by_user: dict[str, list[Interaction]] = collections.defaultdict(list)
    for row in rows:
        by_user[row.user].append(row)
    sequences = {}
    for user, events in by_user.items():
        events.sort(key=Interaction.sort_key)
        if dedupe == "keep-first":
            firsts: dict[str, Interaction] = {}
            for e in events:
                firsts.setdefault(e.item, e)
            events = [e for e in events if firsts[e.item] is e]
        if min_rating is not None:
            events = [e for e in events if e.rating >= min_rating]
        if events:
            sequences[user] = [e.item for e in events]
    while True:
        item_counts = collections.Counter(i for s in sequences.values() for i in s)
        rare = {i for i, n in item_counts.items() if n < min_item}
        short = {u for u, s in sequences.items() if len(s) < min_user}
        if not rare and not short:
            return sequences
        sequences = {u: [i for i in s if i not in rare] for u, s in sequences.items() if u not in short}
        sequences = {u: s for u, s in sequences.items() if s}


def reference_records(sequences: dict[str, list[str]]) -> dict[str, list]:
    """Leave-one-out as tfseq.data.schema documents it, in raw IDs ('' = no target)."""
    out: dict[str, list] = {split: [] for split in schema.SPLITS}
    for user, s in sequences.items():
        if len(s) < 3:
            out["train"].append((user, s, ""))
            continue
        out["train"].append((user, s[:-2], ""))
        out["valid"].append((user, s[:-2], s[-2]))
        out["test"].append((user, s[:-1], s[-1]))
    return {split: sorted(records) for split, records in out.items()}


def random_log(num_rows: int, num_users: int, num_items: int, seed: int) -> list[Interaction]:
    """Ratings 1-5 or missing, few distinct timestamps (many ties), repeated pairs, two sources."""
    rng = random.Random(seed)
    return [
        Interaction(
            f"u{rng.randrange(num_users)}", f"i{int(rng.paretovariate(1.2)) % num_items}",
            float(rng.randrange(40)), rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, NAN]), n % 2, n + 1, 0,
        )
        for n in range(num_rows)
    ]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("bad, flag", [
    ({"dedupe": "keep-last"}, "--dedupe"),
    ({"compression": "zip"}, "--compression"),
    ({"min_user_inter": -1}, "--min_user_inter"),
    ({"min_item_inter": -2}, "--min_item_inter"),
    ({"num_shards": 0}, "--num_shards"),
    ({"min_rating": NAN}, "--min_rating"),
    ({"split": "random"}, "--split must be one of leave_one_out, user"),
    ({"valid_fraction": 0.0}, "--valid_fraction"),
    ({"test_fraction": 1.0}, "--test_fraction"),
    ({"valid_fraction": 0.5, "test_fraction": 0.5}, "--valid_fraction \\+ --test_fraction must be < 1"),
])
def test_bad_config_names_the_flag(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        TransformConfig(**bad)


# ----------------------------------------------------------------------------- PTransforms


def test_read_and_group_orders_by_time_with_ties_in_input_order(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "CHUNK_EVENTS", 2)  # several chunks per file and user must merge
    rows = [
        Interaction("u1", "c", 20.0, NAN, 0, 3),
        Interaction("u1", "a", 10.0, NAN, 0, 1),
        Interaction("u1", "b", 20.0, NAN, 0, 2),   # ties with c at 20: line 2 before line 3
        Interaction("u1", "d", 20.0, NAN, 1, 1),   # ties too: source 1 after source 0
        Interaction("u2", "x", 5.0, NAN, 0, 4, 2),
        Interaction("u2", "y", 5.0, NAN, 0, 4, 1),  # same line (a sequence row): position 1 first
        Interaction("u2", "z", 1.0, NAN, 1, 9),
    ]
    write_example_gen(tmp_path, rows, shards=2)
    with BeamTestPipeline() as p:
        users, dropped = (
            p | T.ReadInteractions(str(tmp_path / "interactions-*.tsv")) | T.GroupUserEvents()
        )
        assert_that(users | beam.Map(items_of), equal_to([
            ("u1", ["a", "b", "c", "d"]),
            ("u2", ["z", "y", "x"]),
        ]))
        assert_that(dropped, equal_to([]), label="NoDrops")


def test_dedupe_keep_first_runs_before_the_rating_threshold():
    chunks = [
        ("u1", [event(3, "a", 3, rating=5.0), event(1, "a", 1, rating=1.0)]),
        ("u1", [event(2, "b", 2, rating=NAN), event(4, "c", 4, rating=3.0), event(5, "c", 5, rating=4.0)]),
        ("u2", [event(1, "a", 6, rating=2.0)]),
    ]
    with BeamTestPipeline() as p:
        users, dropped = p | beam.Create(chunks) | T.GroupUserEvents("keep-first", 3.0)
        # u1 in time order: a(1, r1) b(2, r-) a(3, r5) c(4, r3) c(5, r4). keep-first drops the later a
        # and c (2 duplicates); then a(r1) is below 3 and b has no rating; u2's only row is below 3.
        assert_that(users | beam.Map(items_of), equal_to([("u1", ["c"])]))
        assert_that((dropped,) | T.SumDropped(), equal_to([
            (T.DUPLICATE, 2), (T.RATING_BELOW, 2), (T.NO_RATING, 1),
        ]), label="Dropped")


def test_keep_all_keeps_repeats_and_no_threshold_keeps_unrated_rows():
    chunks = [("u1", [event(1, "a", 1, rating=NAN), event(2, "a", 2, rating=NAN)])]
    with BeamTestPipeline() as p:
        users, dropped = p | beam.Create(chunks) | T.GroupUserEvents()
        assert_that(users | beam.Map(items_of), equal_to([("u1", ["a", "a"])]))
        assert_that(dropped, equal_to([]), label="NoDrops")


# A chain where each k-core round (min 2 users / 2 items) exposes the next violation:
# R1 drops u4 (1 event) -> item c has 1 left; R2 drops c from u3 -> u3 has 1 event;
# R3 drops u3 -> item x has 1 left; R4 drops x from u1 -> nothing breaks a threshold.
CHAIN = {"u1": ["a", "b", "x"], "u2": ["a", "b"], "u3": ["x", "c"], "u4": ["c"]}


def chain_users() -> list[T.UserEvents]:
    return [(u, [event(t, item, t) for t, item in enumerate(items)]) for u, items in CHAIN.items()]


def test_one_kcore_round_judges_on_counts_at_its_start():
    with BeamTestPipeline() as p:
        kept, dropped, violations = p | beam.Create(chain_users()) | T.KCoreRound(2, 2)
        assert_that(kept | beam.Map(items_of), equal_to([
            ("u1", ["a", "b", "x"]), ("u2", ["a", "b"]), ("u3", ["x", "c"]),
        ]))
        assert_that(dropped, equal_to([(T.KCORE, 1)]), label="Dropped")
        assert_that(violations, equal_to([1]), label="Violations")  # item c now has one event


def test_kcore_rounds_reach_the_fixed_point_and_then_remove_nothing():
    with BeamTestPipeline() as p:
        users = p | beam.Create(chain_users())
        drops, violations = [], []
        for r in range(1, 6):
            users, dropped, left = users | f"Round{r}" >> T.KCoreRound(2, 2)
            drops.append(dropped | f"Tag{r}" >> beam.MapTuple(lambda reason, n, r=r: (r, reason, n)))
            violations.append(left | f"TagV{r}" >> beam.Map(lambda n, r=r: (r, n)))
        assert_that(users | beam.Map(items_of), equal_to([("u1", ["a", "b"]), ("u2", ["a", "b"])]))
        assert_that(drops | "AllDrops" >> beam.Flatten(),
                    equal_to([(r, T.KCORE, 1) for r in (1, 2, 3, 4)]), label="Drops")
        assert_that(violations | "AllViolations" >> beam.Flatten(),
                    equal_to([(1, 1), (2, 1), (3, 1), (4, 0), (5, 0)]), label="Violations")


# ----------------------------------------------------------------------------- portable blocks


def test_write_files_deals_lines_by_crc32_sorts_each_shard_and_writes_empty_shards(tmp_path):
    lines = ["pear", "apple", "fig", "kiwi", "plum"]
    with BeamTestPipeline() as p:
        written = p | beam.Create(lines) | T.WriteFiles(str(tmp_path / "out"), ".txt", num_shards=8)
        # 5 lines over 8 shards: at least 3 shards are empty and still written (count 0).
        oracle = collections.Counter(zlib.crc32(line.encode()) % 8 for line in lines)
        assert_that(written, equal_to([(str(tmp_path / f"out-{s:05d}-of-00008.txt"), oracle[s]) for s in range(8)]))
    for shard in range(8):
        mine = sorted(line for line in lines if zlib.crc32(line.encode()) % 8 == shard)
        assert (tmp_path / f"out-{shard:05d}-of-00008.txt").read_text() == "".join(f"{x}\n" for x in mine)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file is left


def test_write_files_exact_path_and_gzip_tfrecords_read_back_with_tf(tmp_path):
    records = [b"\x00b", b"a", b""]
    with BeamTestPipeline() as p:
        _ = p | "Text" >> beam.Create(["only line"]) | "One" >> T.WriteFiles(str(tmp_path / "x.json"), exact=True)
        _ = p | "Records" >> beam.Create(records) | "Gz" >> T.WriteFiles(
            str(tmp_path / "r"), ".tfrecord.gz", tfrecord=True, compression=T.COMPRESSIONS["gzip"][1])
    assert (tmp_path / "x.json").read_text() == "only line\n"
    back = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "r-00000-of-00001.tfrecord.gz"), "GZIP")]
    assert back == sorted(records)
    with pytest.raises(ValueError, match="one shard"):
        T.WriteFiles("x", exact=True, num_shards=2)


class _Parity(beam.DoFn):
    def process(self, n, offset=0):
        if (n + offset) % 2:
            yield beam.pvalue.TaggedOutput("odd", n)
        else:
            yield n


def test_par_do_outputs_keep_each_tag_apart_and_join_a_singleton():
    with BeamTestPipeline() as p:
        numbers = p | "Numbers" >> beam.Create([1, 2, 3, 4])
        out = numbers | "Split" >> T.ParDoOutputs(_Parity(), tags=["odd"], main="even")
        assert_that(out["even"], equal_to([2, 4]), label="Even")
        assert_that(out["odd"], equal_to([1, 3]), label="Odd")
        keyed = p | "Keyed" >> beam.Create([("a", 1), ("b", 2), ("c", 3)])
        offset = p | "Offset" >> beam.Create([1])
        pairs = (keyed, offset) | "Join" >> T.JoinSingleton(keys=2)
        assert_that(pairs, equal_to([(("a", 1), 1), (("b", 2), 1), (("c", 3), 1)]), label="Pairs")


def test_gather_returns_one_dict_with_every_part_even_when_parts_are_empty():
    with BeamTestPipeline() as p:
        parts = {"counts": p | "Counts" >> beam.Create([3, 1, 2]), "none": p | "None" >> beam.Create([])}
        gathered = parts | T.Gather() | beam.Map(lambda g: {k: sorted(v) for k, v in g.items()})
        assert_that(gathered, equal_to([{"counts": [1, 2, 3], "none": []}]))


def test_user_sequences_round_trip_through_json_lines(tmp_path):
    users = [
        ("ü ser", [event(0.1 + 0.2, "ítem\\1", 1, source=3, position=7, rating=4.5), event(1e-300, "b", 2)]),
        ("u2", [event(1.7976931348623157e308, "c", 3)]),
    ]
    with BeamTestPipeline() as p:
        _ = p | beam.Create(users) | T.WriteUserSequences(str(tmp_path / "users"))
    with BeamTestPipeline() as p:
        assert_that(p | T.ReadUserSequences(str(tmp_path / "users*.jsonl")), equal_to(users))
    back = T.parse_user_line(T.user_line(("u", [event(1, "a", 1, rating=NAN)])))
    assert math.isnan(back[1][0][T.RATING]) and isinstance(back[1][0], tuple)


def test_vocabularies_order_items_by_count_then_raw_id(tmp_path):
    users = [
        ("u2", [event(1, "b", 1), event(2, "a", 2), event(3, "z", 3)]),
        ("u10", [event(1, "c", 4), event(2, "b", 5)]),
        ("u1", [event(1, "c", 6), event(2, "b", 7), event(3, "a", 8)]),
    ]
    with BeamTestPipeline() as p:
        counts, index, written = p | beam.Create(users) | T.BuildVocabularies(str(tmp_path))
        assert_that(written, equal_to([(str(tmp_path / "item_vocab.txt"), 1),
                                       (str(tmp_path / "user_vocab.txt"), 1)]), label="Written")
        assert_that(counts, equal_to([{"b": 3, "a": 2, "c": 2, "z": 1}]))
        # b (3), then a and c (2 each, by raw ID), then z (1); index 0 is padding.
        assert_that(index, equal_to([{"b": 1, "a": 2, "c": 3, "z": 4}]), label="Index")
    assert (tmp_path / "item_vocab.txt").read_text() == "\nb\na\nc\nz\n"
    assert (tmp_path / "user_vocab.txt").read_text() == "\nu1\nu10\nu2\n"
    assert read_vocabulary(str(tmp_path / "item_vocab.txt")) == ["", "b", "a", "c", "z"]


def test_splits_follow_leave_one_out_and_short_users_train_only(tmp_path):
    index = {"a": 1, "b": 2, "c": 3, "d": 4}
    users = [
        ("one", [event(1, "a", 1)]),
        ("two", [event(1, "b", 2), event(2, "a", 3)]),
        ("three", [event(1, "c", 4), event(2, "a", 5), event(3, "b", 6)]),
        ("four", [event(1, "d", 7), event(2, "c", 8), event(3, "b", 9), event(4, "a", 10)]),
    ]
    with BeamTestPipeline() as p:
        records, rows = (
            (p | "Users" >> beam.Create(users), p | "Index" >> beam.Create([index]))
            | T.WriteSplits(str(tmp_path), num_shards=2, compression="none")
        )
        assert_that(records, equal_to([("train", 4), ("valid", 2), ("test", 2)]))
        # (events, held out = (valid target, test target), short); users under 3 events have no targets.
        assert_that(rows, equal_to([(1, (), True), (2, (), True), (3, (1, 2), False), (4, (2, 1), False)]),
                    label="Rows")
    assert sorted(os.listdir(tmp_path / "train")) == ["part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord"]
    assert read_records(tmp_path, "train") == sorted([
        ("one", [1], 0), ("two", [2, 1], 0), ("three", [3], 0), ("four", [4, 3], 0),
    ])
    assert read_records(tmp_path, "valid") == sorted([("three", [3], 1), ("four", [4, 3], 2)])
    assert read_records(tmp_path, "test") == sorted([("three", [3, 1], 2), ("four", [4, 3, 2], 1)])


# ----------------------------------------------------------------------------- the stage

# Hand-made log: u1 has a repeat (a) and a tie at t=20 (line order b, c); u2's tie at t=6 spans
# two files (source 0 before source 1); u3 is short; ratings include one missing.
HAND = [
    Interaction("u1", "a", 10.0, 5.0, 0, 1),
    Interaction("u1", "c", 20.0, 3.0, 0, 3),
    Interaction("u1", "b", 20.0, 4.0, 0, 2),
    Interaction("u1", "a", 30.0, 5.0, 0, 4),
    Interaction("u1", "d", 40.0, 2.0, 0, 5),
    Interaction("u2", "b", 5.0, NAN, 0, 6),
    Interaction("u2", "d", 6.0, 3.0, 1, 1),
    Interaction("u2", "a", 6.0, 4.0, 0, 7),
    Interaction("u2", "c", 7.0, 5.0, 0, 8),
    Interaction("u3", "a", 1.0, 1.0, 0, 9),
    Interaction("u3", "c", 2.0, 4.0, 0, 10),
]
EXAMPLE_GEN_STATS = {
    "malformed_rows": 3,
    "malformed": {"wrong_field_count": {"count": 2, "examples": ["x:1", "x:2"]},
                  "empty_id": {"count": 1, "examples": ["x:3"]}},
}


def test_stage_on_a_hand_made_log(tmp_path):
    eg = write_example_gen(tmp_path / "eg", HAND, shards=2, stats=EXAMPLE_GEN_STATS)
    out = tmp_path / "tr"
    stats = run_transform(TransformConfig(num_shards=2), str(eg), str(out), PipelineOptions(IN_MEMORY))

    # u1: a b c a d; u2: b a d c; u3: a c. Counts a4 c3 b2 d2 -> vocab a c b d (b before d by ID).
    assert (out / "item_vocab.txt").read_text() == "\na\nc\nb\nd\n"
    assert (out / "user_vocab.txt").read_text() == "\nu1\nu2\nu3\n"
    a, c, b, d = 1, 2, 3, 4
    assert read_records(out, "train") == sorted([("u1", [a, b, c], 0), ("u2", [b, a], 0), ("u3", [a, c], 0)])
    assert read_records(out, "valid") == sorted([("u1", [a, b, c], a), ("u2", [b, a], d)])
    assert read_records(out, "test") == sorted([("u1", [a, b, c, a], d), ("u2", [b, a, d], c)])

    metadata = DatasetMetadata.load(str(out))
    # Training records: u1 a b c, u2 b a, u3 a c -> a 3, c 2, b 2, d 0.
    assert metadata.item_counts == (0, 3, 2, 2, 0)
    assert (metadata.num_items, metadata.num_users, metadata.max_length, metadata.compression) == (5, 3, 5, "")
    assert {s: (i.pattern, i.records) for s, i in metadata.splits.items()} == {
        "train": ("train/part-*.tfrecord", 3), "valid": ("valid/part-*.tfrecord", 2),
        "test": ("test/part-*.tfrecord", 2),
    }
    assert len(tf.io.gfile.glob(metadata.split_pattern(str(out), "train"))) == 2

    expected = {
        "users": 3, "items": 4, "interactions": 11,
        "avg_actions_per_user": 11 / 3, "avg_actions_per_item": 11 / 4, "sparsity": 1 - 11 / 12,
        "max_length": 5, "users_short": 1, "records": {"train": 3, "valid": 2, "test": 2},
        "dropped": {"malformed": 3, "no_rating": 0, "rating": 0, "duplicate": 0, "kcore": 0},
        "malformed": {"empty_id": 1, "wrong_field_count": 2}, "kcore_rounds": 0,
    }
    assert {k: stats[k] for k in expected} == expected
    assert json.loads((out / "stats.json").read_text()) == stats
    assert sorted(os.listdir(out)) == [
        "item_vocab.txt", "metadata.json", "stats.json", "test", "train", "user_vocab.txt", "valid",
    ]


def test_stage_filters_in_recbole_order_and_writes_gzip(tmp_path):
    eg = write_example_gen(tmp_path / "eg", HAND, shards=3)
    out = tmp_path / "tr"
    config = TransformConfig(min_rating=3.0, dedupe="keep-first", min_user_inter=2, min_item_inter=2,
                             num_shards=1, compression="gzip")
    stats = run_transform(config, str(eg), str(out), PipelineOptions(IN_MEMORY))
    # keep-first drops u1's second a; then ratings: u1 d (2) and u3 a (1) below 3, u2 b unrated.
    # Left u1 a b c, u2 a d c, u3 c. k-core round 1: u3 (1 event), b and d (1 each) go -> 3 rows;
    # u1 a c and u2 a c break nothing: one round.
    assert stats["dropped"] == {"malformed": 0, "no_rating": 1, "rating": 2, "duplicate": 1, "kcore": 3}
    assert (stats["kcore_rounds"], stats["users_short"], stats["records"]) == (
        1, 2, {"train": 2, "valid": 0, "test": 0})
    assert stats["malformed"] == {}  # no ExampleGen stats.json: nothing to merge
    assert read_records(out, "train") == [("u1", [1, 2], 0), ("u2", [1, 2], 0)]
    assert sorted(os.listdir(out / "train")) == ["part-00000-of-00001.tfrecord.gz"]
    assert DatasetMetadata.load(str(out)).compression == "GZIP"
    assert DatasetMetadata.load(str(out)).splits["test"].pattern == "test/part-*.tfrecord.gz"
    assert "_work" not in os.listdir(out)


def test_multi_round_kcore_matches_the_oracle(tmp_path):
    rows = random_log(3000, num_users=150, num_items=120, seed=7)
    eg = write_example_gen(tmp_path / "eg", rows, shards=3)
    config = TransformConfig(min_rating=2.0, dedupe="keep-first", min_user_inter=4, min_item_inter=4)
    stats = run_transform(config, str(eg), str(tmp_path / "tr"), PipelineOptions(IN_MEMORY))
    sequences = reference_sequences(rows, 2.0, "keep-first", 4, 4)
    assert len(sequences) > 50  # a non-trivial core survives (71 of 150 users)
    assert stats["kcore_rounds"] >= 2  # the case exercises the driver's loop
    assert records_in_raw_ids(tmp_path / "tr") == reference_records(sequences)
    kept = sum(len(s) for s in sequences.values())
    assert stats["interactions"] == kept and sum(stats["dropped"].values()) == len(rows) - kept


def test_bad_input_names_the_file_and_line(tmp_path):
    eg = write_example_gen(tmp_path / "eg", HAND[:2], shards=1)
    with open(eg / "interactions-00000-of-00001.tsv", "a") as f:
        f.write("u9\tonly three\tfields\n")
    with pytest.raises(DataError, match=r"interactions-00000-of-00001\.tsv:3"):
        run_transform(TransformConfig(), str(eg), str(tmp_path / "tr"), PipelineOptions(IN_MEMORY))
    with pytest.raises(DataError, match="no ExampleGen output"):
        run_transform(TransformConfig(), str(tmp_path), str(tmp_path / "tr2"), PipelineOptions(IN_MEMORY))


def test_filtering_everything_away_is_an_error(tmp_path):
    eg = write_example_gen(tmp_path / "eg", HAND, shards=1)
    with pytest.raises(DataError, match="no interactions left"):
        run_transform(TransformConfig(min_user_inter=6), str(eg), str(tmp_path / "tr"),
                      PipelineOptions(IN_MEMORY))


@pytest.mark.slow
def test_multi_processing_runner_writes_the_same_dataset(tmp_path):
    rows = random_log(1500, num_users=80, num_items=60, seed=3)
    eg = write_example_gen(tmp_path / "eg", rows, shards=3)
    config = TransformConfig(dedupe="keep-first", min_user_inter=6, min_item_inter=6, num_shards=2)
    outputs = {}
    for name, flags in (("memory", IN_MEMORY), ("processes", MULTI_PROCESS)):
        stats = run_transform(config, str(eg), str(tmp_path / name), PipelineOptions(flags))
        files = {f: (tmp_path / name / f).read_text() for f in
                 ("item_vocab.txt", "user_vocab.txt", "metadata.json", "stats.json")}
        outputs[name] = (stats, files, {s: raw_records(tmp_path / name, s) for s in schema.SPLITS})
    assert outputs["memory"][0]["kcore_rounds"] >= 2
    assert outputs["memory"] == outputs["processes"]


# ----------------------------------------------------------------------------- Spotlight's user split


def user_split_oracle(sequences: dict[str, list[str]], valid: float, test: float, seed: int) -> dict[str, list]:
    """The user split in plain Python, raw IDs ('' = no target): a user's hashed fraction picks its split;
    valid/test users give (all but the last item, the last item); a 1-item valid/test user trains."""
    out: dict[str, list] = {split: [] for split in schema.SPLITS}
    for user, s in sequences.items():
        fraction = T.user_fraction(user, seed)
        split = "test" if fraction < test else "valid" if fraction < test + valid else "train"
        if split == "train" or len(s) < 2:
            out["train"].append((user, s, ""))
        else:
            out[split].append((user, s[:-1], s[-1]))
    return {split: sorted(records) for split, records in out.items()}


def test_user_fraction_spreads_users_evenly_and_the_seed_reshuffles_them():
    users = [f"user{n}" for n in range(4000)]
    spec = T.SplitSpec(T.USER_SPLIT, valid_fraction=0.1, test_fraction=0.2, seed=3)
    splits = [spec.assign(u) for u in users]
    # Binomial(4000, p): standard deviations 19 (p = 0.1) and 25 (p = 0.2); 4 of them either side.
    assert abs(splits.count("valid") - 400) < 80 and abs(splits.count("test") - 800) < 100
    assert [spec.assign(u) for u in users] == splits  # seeded: the same every time
    assert T.user_fraction("user7", 3) == T.user_fraction("user7", 3) != T.user_fraction("user7", 4)
    other = [dataclasses.replace(spec, seed=4).assign(u) for u in users]
    # independent draws agree with probability 0.7^2 + 0.1^2 + 0.2^2 = 0.54
    assert 0.45 < np.mean([a == b for a, b in zip(splits, other)]) < 0.63


def test_user_split_records_by_hand():
    spec = T.SplitSpec(T.USER_SPLIT, valid_fraction=0.3, test_fraction=0.3, seed=0)
    first = {}
    for n in range(100):
        first.setdefault(spec.assign(f"u{n}"), f"u{n}")
    train, valid, test = first["train"], first["valid"], first["test"]
    decoded = lambda records: [(split, schema.decode(r)) for split, r in records]  # noqa: E731
    records, held_out, short = spec.records(train, [4, 1, 3])
    assert (decoded(records), held_out, short) == ([("train", (train, [4, 1, 3], 0))], (), False)
    records, held_out, short = spec.records(valid, [4, 1, 3])
    assert (decoded(records), held_out, short) == ([("valid", (valid, [4, 1], 3))], (4, 1, 3), False)
    records, held_out, short = spec.records(test, [2, 5])
    assert (decoded(records), held_out, short) == ([("test", (test, [2], 5))], (2, 5), False)
    # one item: nothing to predict, so the user trains and counts as short
    records, held_out, short = spec.records(test, [6])
    assert (decoded(records), held_out, short) == ([("train", (test, [6], 0))], (), True)


def test_stage_user_split_matches_the_oracle_and_trains_on_training_users_only(tmp_path):
    rows = random_log(3000, num_users=150, num_items=120, seed=7) + [Interaction("solo", "i1", 1.0, 5.0, 0, 9999)]
    eg = write_example_gen(tmp_path / "eg", rows, shards=2)
    out = tmp_path / "tr"
    config = TransformConfig(split="user", valid_fraction=0.2, test_fraction=0.2, split_seed=5, num_shards=2)
    stats = run_transform(config, str(eg), str(out), PipelineOptions(IN_MEMORY))
    sequences = reference_sequences(rows)
    expected = user_split_oracle(sequences, 0.2, 0.2, seed=5)
    assert records_in_raw_ids(out) == expected
    users = {split: {r[0] for r in records} for split, records in expected.items()}
    assert not users["train"] & users["valid"] and not users["train"] & users["test"]
    assert not users["valid"] & users["test"]
    assert users["train"] | users["valid"] | users["test"] == set(sequences)
    assert 15 < len(users["valid"]) < 45 and 15 < len(users["test"]) < 45  # about 30 each of 151
    # the training counts are the training users' items only
    vocabulary = read_vocabulary(str(out / "item_vocab.txt"))
    counts = collections.Counter(i for _, s, _ in expected["train"] for i in s)
    assert DatasetMetadata.load(str(out)).item_counts == tuple(counts.get(raw, 0) for raw in vocabulary)
    short = int(T.user_fraction("solo", 5) < 0.4)  # a 1-item user is short only if it was drawn to evaluate
    assert stats["users_short"] == short
    assert stats["records"] == {split: len(records) for split, records in expected.items()}
    assert stats["config"]["split"] == "user"
    # the reader takes it as it takes leave-one-out
    metadata = DatasetMetadata.load(str(out))
    for split in ("valid", "test"):
        loaded = load_evaluation_split(str(out), metadata, split)
        assert sorted(loaded.users) == sorted(users[split])
        assert all(vocabulary[t] == s[-1] for u, t in zip(loaded.users, loaded.targets) for s in [sequences[u]])
    assert len(load_split(str(out), metadata, "train")) == len(expected["train"])


def test_user_split_is_reproducible_and_its_seed_changes_it(tmp_path):
    rows = random_log(800, num_users=60, num_items=40, seed=2)
    eg = write_example_gen(tmp_path / "eg", rows, shards=2)
    outputs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        config = TransformConfig(split="user", split_seed=seed, valid_fraction=0.25, test_fraction=0.25)
        run_transform(config, str(eg), str(tmp_path / name), PipelineOptions(IN_MEMORY))
        outputs[name] = {s: raw_records(tmp_path / name, s) for s in schema.SPLITS}
    assert outputs["a"] == outputs["b"]
    test_users = {name: {schema.decode(r)[0] for r in out["test"]} for name, out in outputs.items()}
    assert test_users["a"] != test_users["c"]


# ----------------------------------------------------------------------------- real datasets


def ml100k_rows(path: Path) -> list[Interaction]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = {name.split(":")[0]: i for i, name in enumerate(header)}
        rows = []
        for line, text in enumerate(f, start=2):
            fields = text.rstrip("\n").split("\t")
            rows.append(Interaction(fields[col["user_id"]], fields[col["item_id"]],
                                    float(fields[col["timestamp"]]), float(fields[col["rating"]]), 0, line))
    return rows


def test_ml100k_counts_and_5_core(ml100k, tmp_path):
    rows = ml100k_rows(ml100k)
    eg = write_example_gen(tmp_path / "eg", rows, shards=4)
    stats = run_transform(TransformConfig(), str(eg), str(tmp_path / "all"), PipelineOptions(IN_MEMORY))
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)

    kcore = run_transform(TransformConfig(min_user_inter=5, min_item_inter=5), str(eg), str(tmp_path / "k5"),
                          PipelineOptions(IN_MEMORY))
    sequences = reference_sequences(rows, min_user=5, min_item=5)
    items = {i for s in sequences.values() for i in s}
    assert (kcore["users"], kcore["items"], kcore["interactions"]) == (
        len(sequences), len(items), sum(len(s) for s in sequences.values()))
    assert kcore["dropped"]["kcore"] == 100000 - kcore["interactions"] > 0
    assert read_vocabulary(str(tmp_path / "k5" / "user_vocab.txt"))[1:] == sorted(sequences)


def test_beauty_counts_and_sequences_read_back_with_plain_tf(beauty, tmp_path):
    lines = beauty.read_text(encoding="utf-8").split("\n")
    source = {}
    rows = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        user, *items = text.split(" ")
        source[user] = items
        rows += [Interaction(user, item, float(p), NAN, 0, number, p) for p, item in enumerate(items)]
    eg = write_example_gen(tmp_path / "eg", rows, shards=4)
    out = tmp_path / "tr"
    stats = run_transform(TransformConfig(), str(eg), str(out), PipelineOptions(IN_MEMORY))
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)

    vocabulary = read_vocabulary(str(out / "item_vocab.txt"))
    context = {"user": tf.io.FixedLenFeature([], tf.string), "target": tf.io.FixedLenFeature([], tf.int64)}
    sequence = {"item_ids": tf.io.FixedLenSequenceFeature([], tf.int64)}
    files = sorted(str(p) for p in (out / "test").glob("part-*"))
    parsed = tf.data.TFRecordDataset(files).map(
        lambda r: tf.io.parse_single_sequence_example(r, context_features=context, sequence_features=sequence)
    )
    back = {}
    for ctx, seq in parsed.as_numpy_iterator():
        user = ctx["user"].decode()
        assert user not in back  # exactly one test record per user
        back[user] = [vocabulary[i] for i in [*seq["item_ids"], ctx["target"]]]
    assert back == {u: items for u, items in source.items() if len(items) >= 3}


def test_event_columns_are_cut_as_the_items_in_both_split_modes():
    events = [event(3600.0 * hour + 59, f"i{n}", n) for n, hour in enumerate([5, 6, 7, 30])]  # 30 h: 06:00
    columns = T.event_ids(events, (schema.HOUR_IDS,))
    assert columns == {schema.HOUR_IDS: [6, 7, 8, 7]}  # stored as hour + 1
    loo = {split: (schema.decode(r), schema.decode_events(r))
           for split, r in T.split_records("u", [1, 2, 3, 4], columns)}
    assert loo == {
        "train": (("u", [1, 2], 0), {schema.HOUR_IDS: [6, 7]}),
        "valid": (("u", [1, 2], 3), {schema.HOUR_IDS: [6, 7]}),
        "test": (("u", [1, 2, 3], 4), {schema.HOUR_IDS: [6, 7, 8]}),
    }
    spec = T.SplitSpec(T.USER_SPLIT, valid_fraction=0.3, test_fraction=0.3, seed=0)
    user = next(u for u in (f"u{n}" for n in range(100)) if spec.assign(u) == "test")
    (split, record), = spec.records(user, [1, 2, 3, 4], columns)[0]
    assert (split, schema.decode(record), schema.decode_events(record)) == (
        "test", (user, [1, 2, 3], 4), {schema.HOUR_IDS: [6, 7, 8]})
    # no columns asked: the records of a Transform without event columns
    assert list(T.split_records("u", [1, 2, 3, 4], T.event_ids(events, ()))) == list(T.split_records("u", [1, 2, 3, 4]))
