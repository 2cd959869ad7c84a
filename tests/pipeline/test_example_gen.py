"""ExampleGen: DoFns and PTransforms under TestPipeline, the stage on hand-made files, bad input.

Bad-input cases fail on the driver before any pipeline runs, so they are cheap;
each test that runs the whole stage starts one DirectRunner pipeline (~1-2 s).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import math
import os
import random
import socket
import zlib
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import example_gen
from pipeline.example_gen import (
    FILES,
    MALFORMED,
    ROWS,
    ExampleGenConfig,
    FileStats,
    GenerateSynthetic,
    MalformedSummaryFn,
    ReadRecords,
    Summarize,
    read_records,
    run_example_gen,
)
from pipeline.ptransforms import WRITTEN
from tfseq.config import ConfigError
from tfseq.data import formats
from tfseq.data.formats import DataError, Interaction, Malformed
from tfseq.data.synthetic import SyntheticConfig, user_interactions

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def options() -> PipelineOptions:
    return PipelineOptions(["--runner=DirectRunner"])


def write(path: Path, content: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def output_rows(out: Path) -> list[Interaction]:
    rows = []
    for shard in sorted(out.glob("interactions-*-of-*.tsv")):
        rows += [Interaction.from_tsv(line) for line in shard.read_text().splitlines()]
    return rows


def where(rows: list[Interaction]) -> list[tuple]:
    """Comparable view of Interactions (NaN ratings never compare equal)."""
    return sorted((r.user, r.item, r.timestamp, r.source, r.line, r.position) for r in rows)


# ----------------------------------------------------------------------------- DoFn / PTransforms


def test_read_records_dofn_splits_rows_malformed_and_file_stats(tmp_path):
    path = write(tmp_path / "log.inter", RECBOLE_HEADER + (
        "u1\ti1\t5\t100\n"
        "u1\ti2\t4\t101\n"
        "u1\ti3\t3\tlater\n"      # line 4: non-numeric timestamp
        "u2\ti1\t5\t90\n"
        "\n"                      # line 6: blank, skipped
        "u2\ti4\t1\n"             # line 7: three fields
        "u2\ti5\t2\t91\n"
        "u3\ti1\tfive\t80\n"      # line 9: non-numeric rating
        "u3\t\t2\t81\n"           # line 10: empty item
        "u3\ti2\t2\t82\n"
        "u4\ti9\t1\t70\n"
        "u4\ti8\t1\t71\n"
    ))
    config = ExampleGenConfig(input=path, input_format="recbole")
    with test_pipeline.TestPipeline() as p:
        read = (
            p
            | beam.Create([(2, path)])
            | beam.ParDo(ReadRecords(config)).with_outputs(MALFORMED, FILES, main=ROWS)
        )
        got_rows = read[ROWS] | beam.Map(lambda r: (r.user, r.item, r.rating, r.timestamp, r.line))
        assert_that(got_rows, equal_to([
            ("u1", "i1", 5.0, 100.0, 2), ("u1", "i2", 4.0, 101.0, 3), ("u2", "i1", 5.0, 90.0, 5),
            ("u2", "i5", 2.0, 91.0, 8), ("u3", "i2", 2.0, 82.0, 11), ("u4", "i9", 1.0, 70.0, 12),
            ("u4", "i8", 1.0, 71.0, 13),
        ]), label="Rows")
        got_bad = read[MALFORMED] | beam.Map(lambda m: (m.reason, m.where))
        assert_that(got_bad, equal_to([
            (formats.BAD_TIMESTAMP, f"{path}:4"), (formats.WRONG_FIELD_COUNT, f"{path}:7"),
            (formats.BAD_RATING, f"{path}:9"), (formats.EMPTY_ID, f"{path}:10"),
        ]), label="Malformed")
        first = f"{path}:4: {formats.BAD_TIMESTAMP} ('later')"
        assert_that(read[FILES], equal_to([FileStats(2, path, 11, 7, 4, first)]), label="Files")


def test_generate_synthetic_matches_per_user_generation():
    config = SyntheticConfig(num_users=12, num_items=20, num_interactions=80, seed=7)
    expected = [e.to_tsv() for u in range(12) for e in user_interactions(config, u)]
    with test_pipeline.TestPipeline() as p:
        got = p | GenerateSynthetic(config) | beam.Map(Interaction.to_tsv)
        assert_that(got, equal_to(expected))


MALFORMED_ROWS = [  # a dozen rows in no particular order
    Malformed(formats.WRONG_FIELD_COUNT, "b.txt", 1),
    Malformed(formats.WRONG_FIELD_COUNT, "a.txt", 10),
    Malformed(formats.EMPTY_ID, "b.txt", 7),
    Malformed(formats.WRONG_FIELD_COUNT, "a.txt", 9),
    Malformed(formats.WRONG_FIELD_COUNT, "a.txt", 11),
    Malformed(formats.BAD_TIMESTAMP, "a.txt", 5, "'x'"),
    Malformed(formats.WRONG_FIELD_COUNT, "b.txt", 2),
    Malformed(formats.EMPTY_ID, "a.txt", 30),
    Malformed(formats.WRONG_FIELD_COUNT, "a.txt", 100),
    Malformed(formats.WRONG_FIELD_COUNT, "b.txt", 3),
    Malformed(formats.NOT_UTF8, "c.txt", 1),
    Malformed(formats.EMPTY_ID, "a.txt", 31),
]
# Sorted by file, then line as a number (a.txt:9 before a.txt:10), first five kept.
MALFORMED_SUMMARY = {
    formats.BAD_TIMESTAMP: {"count": 1, "examples": ["a.txt:5"]},
    formats.EMPTY_ID: {"count": 3, "examples": ["a.txt:30", "a.txt:31", "b.txt:7"]},
    formats.NOT_UTF8: {"count": 1, "examples": ["c.txt:1"]},
    formats.WRONG_FIELD_COUNT: {
        "count": 7, "examples": ["a.txt:9", "a.txt:10", "a.txt:11", "a.txt:100", "b.txt:1"]
    },
}


def test_malformed_summary_does_not_depend_on_how_rows_are_split():
    fn = MalformedSummaryFn()
    whole = fn.add_inputs(fn.create_accumulator(), MALFORMED_ROWS)
    assert fn.extract_output(whole) == MALFORMED_SUMMARY
    for seed in range(3):
        rows = MALFORMED_ROWS[:]
        random.Random(seed).shuffle(rows)
        parts = [fn.add_inputs(fn.create_accumulator(), rows[i::3]) for i in range(3)]
        assert fn.extract_output(fn.merge_accumulators(parts)) == MALFORMED_SUMMARY
    assert fn.extract_output(fn.create_accumulator()) == {}


def test_summarize_builds_stats_json_from_the_written_shards_malformed_rows_and_files():
    config = ExampleGenConfig(input="logs", input_format="pairs")
    files = [
        FileStats(1, "b.txt", 6, 3, 3, "b.txt:1: wrong_field_count"),
        FileStats(0, "a.txt", 12, 4, 9, "a.txt:5: non_numeric_timestamp ('x')"),
    ]
    with test_pipeline.TestPipeline() as p:
        parts = {
            WRITTEN: p | "Written" >> beam.Create([("interactions-00000-of-00002.tsv", 3),
                                                   ("interactions-00001-of-00002.tsv", 4)]),
            MALFORMED: p | "Bad" >> beam.Create(MALFORMED_ROWS),
            FILES: p | "Files" >> beam.Create(files),
        }
        got = parts | Summarize(config, ["a.txt", "b.txt"]) | beam.Map(json.loads)
        assert_that(got, equal_to([{
            "input_format": "pairs",
            "input": ["a.txt", "b.txt"],
            "rows_read": 18,  # 12 + 6
            "interactions": 7,  # 3 + 4 written
            "malformed_rows": 12,  # 1 + 3 + 1 + 7
            "malformed": MALFORMED_SUMMARY,
            "files": [  # in source order
                {"path": "a.txt", "rows_read": 12, "interactions": 4, "malformed_rows": 9,
                 "first_problem": "a.txt:5: non_numeric_timestamp ('x')", "read_error": ""},
                {"path": "b.txt", "rows_read": 6, "interactions": 3, "malformed_rows": 3,
                 "first_problem": "b.txt:1: wrong_field_count", "read_error": ""},
            ],
        }]))


# ----------------------------------------------------------------------------- each format's reader


@pytest.mark.parametrize(
    "name, fmt, content, expected",
    [
        ("u.data", "movielens", "1\t10\t5\t300\n2\t20\t3\t100\n",
         [("1", "10", 300.0, 1, 0), ("2", "20", 100.0, 2, 0)]),
        ("ratings.dat", "movielens", "1::10::5::300\n",
         [("1", "10", 300.0, 1, 0)]),
        ("log.inter", "recbole", "item_id:token\tuser_id:token\nA\tu\nB\tu\n",
         [("u", "A", 2.0, 2, 0), ("u", "B", 3.0, 3, 0)]),
        ("Beauty.txt", "sequence", "1 5 6\n2 7\n",
         [("1", "5", 0.0, 1, 0), ("1", "6", 1.0, 1, 1), ("2", "7", 0.0, 2, 0)]),
        ("pairs.txt", "pairs", "1 5\n1 6\n", [("1", "5", 1.0, 1, 0), ("1", "6", 2.0, 2, 0)]),
        ("log.csv", "csv", "user_id,timestamp,item_id\nu,9,x\n", [("u", "x", 9.0, 2, 0)]),
        ("u.data.gz", "movielens", gzip.compress(b"3\t30\t4\t77\n"), [("3", "30", 77.0, 1, 0)]),
    ],
)
def test_read_records_reads_each_format_through_beam_filesystems(
    tmp_path, name, fmt, content, expected
):
    path = write(tmp_path / name, content)
    records = list(read_records(ExampleGenConfig(input=path, input_format=fmt), 4, path))
    assert [(r.user, r.item, r.timestamp, r.line, r.position) for r in records] == expected
    assert {r.source for r in records} == {4}


def test_read_records_reads_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"who": ["a", "b"], "what": ["x", "y"], "when": [5, 4],
                             "stars": [1.5, None]}), path)
    config = ExampleGenConfig(input=str(path), input_format="parquet", user_col="who",
                              item_col="what", time_col="when", rating_col="stars")
    first, second = read_records(config, 0, str(path))
    assert first[:4] == ("a", "x", 5.0, 1.5) and first.line == 1
    assert (second.reason, second.where) == (formats.BAD_RATING, f"{path}:2")


# ----------------------------------------------------------------------------- the whole stage


@pytest.fixture
def two_logs(tmp_path) -> Path:
    """A directory of two RecBole files with every malformed reason, plus files to ignore."""
    logs = tmp_path / "logs"
    write(logs / "a.inter", RECBOLE_HEADER.encode() + b"".join([
        *[f"u{i}\ti{i}\t1\t{i}\n".encode() for i in range(7)],  # lines 2-8
        b"u7\ti7\t1\n", b"u7\ti7\n", b"u7\n",                    # lines 9-11: field count
        b"u8\ti8\t1\tmonday\n",                                  # line 12: timestamp
        b"u9\ti9\t1\t9\n",                                       # line 13
    ]))
    b_header = b"timestamp:float\tuser_id:token\titem_id:token\trating:float\n"
    write(logs / "b.inter", b_header + b"".join([
        b"20\tv0\tj0\t2\n",       # line 2
        b"21\tv1\n", b"22\n", b"23\tv1\tj1\t2\t9\n",  # lines 3-5: field count
        b"24\tv1\tj1\tgreat\n",   # line 6: rating
        b"25\t\tj1\t2\n",         # line 7: empty user
        b"26\tv\r1\tj1\t2\n",     # line 8: carriage return in the user
        b"27\tv\xe91\tj1\t2\n",   # line 9: Latin-1, not UTF-8
        b"28\tv2\tj2\t2\n",       # line 10
    ]))
    write(logs / "_SUCCESS", "")
    write(logs / ".a.inter.crc", b"\x00\x01")
    return logs


def test_stage_counts_every_malformed_reason_with_file_and_line(two_logs, tmp_path):
    out = tmp_path / "out"
    config = ExampleGenConfig(input=str(two_logs), input_format="recbole", example_gen_shards=2)
    console = io.StringIO()
    stats = run_example_gen(config, str(out), options(), log=console)
    a, b = str(two_logs / "a.inter"), str(two_logs / "b.inter")
    # Issue 22.7: skipped rows are on the console, not only in stats.json: a line per reason, most first.
    assert console.getvalue().splitlines() == [  # ties by reason key
        f"[ExampleGen] skipped 6 malformed row(s): {formats.WRONG_FIELD_COUNT} (first at {a}:9)",
        f"[ExampleGen] skipped 1 malformed row(s): {formats.EMPTY_ID} (first at {b}:7)",
        f"[ExampleGen] skipped 1 malformed row(s): {formats.BAD_ID} (first at {b}:8)",
        f"[ExampleGen] skipped 1 malformed row(s): {formats.BAD_RATING} (first at {b}:6)",
        f"[ExampleGen] skipped 1 malformed row(s): {formats.BAD_TIMESTAMP} (first at {a}:12)",
        f"[ExampleGen] skipped 1 malformed row(s): {formats.NOT_UTF8} (first at {b}:9)",
    ]
    assert stats["malformed"] == {
        formats.WRONG_FIELD_COUNT: {
            "count": 6, "examples": [f"{a}:9", f"{a}:10", f"{a}:11", f"{b}:3", f"{b}:4"]
        },
        formats.BAD_TIMESTAMP: {"count": 1, "examples": [f"{a}:12"]},
        formats.BAD_RATING: {"count": 1, "examples": [f"{b}:6"]},
        formats.EMPTY_ID: {"count": 1, "examples": [f"{b}:7"]},
        formats.BAD_ID: {"count": 1, "examples": [f"{b}:8"]},
        formats.NOT_UTF8: {"count": 1, "examples": [f"{b}:9"]},
    }
    assert (stats["rows_read"], stats["interactions"], stats["malformed_rows"]) == (21, 10, 11)
    assert stats["input"] == [a, b]
    assert [(f["path"], f["rows_read"], f["interactions"]) for f in stats["files"]] == [
        (a, 12, 8), (b, 9, 2)
    ]
    assert json.loads((out / "stats.json").read_text()) == stats
    assert sorted(os.listdir(out)) == [
        "interactions-00000-of-00002.tsv", "interactions-00001-of-00002.tsv", "stats.json"
    ]
    expected = [(f"u{i}", f"i{i}", float(i), 0, i + 2, 0) for i in range(7)]
    expected += [("u9", "i9", 9.0, 0, 13, 0)]
    expected += [("v0", "j0", 20.0, 1, 2, 0), ("v2", "j2", 28.0, 1, 10, 0)]
    assert where(output_rows(out)) == sorted(expected)


def test_strict_makes_the_first_malformed_row_an_error(two_logs, tmp_path):
    config = ExampleGenConfig(input=str(two_logs / "*.inter"), input_format="recbole", strict=True)
    first = f"{two_logs / 'a.inter'}:9: {formats.WRONG_FIELD_COUNT}"
    with pytest.raises(DataError, match=f"^{first} .*--strict.*11 malformed row"):
        run_example_gen(config, str(tmp_path / "out"), options())


def test_a_file_where_no_row_parses_is_an_error_even_past_the_sniff(tmp_path, monkeypatch):
    # With a 16-byte sniff the driver cannot tell; the pipeline's per-file count does.
    monkeypatch.setattr(example_gen, "SNIFF_BYTES", 16)
    write(tmp_path / "logs" / "a.txt", "u1 i1\nu1 i2\n")
    bad = write(tmp_path / "logs" / "b.txt", "".join(f"user{i}\n" for i in range(30)))
    config = ExampleGenConfig(input=str(tmp_path / "logs"), input_format="pairs")
    with pytest.raises(DataError, match=f"^{bad}:1: {formats.WRONG_FIELD_COUNT}.*"
                                        "not a pairs file: none of its 30 rows parses"):
        run_example_gen(config, str(tmp_path / "out"), options())


def test_synthetic_stage_writes_the_generated_log(tmp_path):
    config = ExampleGenConfig(synthetic_users=40, synthetic_items=30, synthetic_interactions=400)
    stats = run_example_gen(config, str(tmp_path), options())
    synthetic = config.synthetic()
    expected = [e for u in range(40) for e in user_interactions(synthetic, u)]
    assert where(output_rows(tmp_path)) == where(expected)
    assert (stats["interactions"], stats["rows_read"], stats["malformed_rows"]) == (
        len(expected), len(expected), 0
    )
    assert len(list(tmp_path.glob("interactions-*-of-00004.tsv"))) == 4


# ----------------------------------------------------------------------------- bad input


def _garbage() -> bytes:
    rng = random.Random(0)
    return bytes(rng.randrange(256) for _ in range(3000))


def _parquet(path: Path, **columns: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path.read_bytes()


PAIRS_LOG = b"".join(f"u{i % 97} i{i % 389}\n".encode() for i in range(20000))  # ~230 KB of pairs


def gzip_cut_after_full_flush(data: bytes, lines: int) -> bytes:
    """The first ``lines`` lines gzipped, flushed (Z_FULL_FLUSH) and cut there: whole lines, no trailer."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = b"".join(data.splitlines(keepends=True)[:lines])
    return compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)


def corrupt_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


DAMAGED = {  # file name -> (content, compression): cut or corrupt copies of PAIRS_LOG
    "cut.gz": (gzip.compress(PAIRS_LOG)[:5000], "gzip"),  # 14 KB of lines, then mid-stream
    "flushed.gz": (gzip_cut_after_full_flush(PAIRS_LOG, 5000), "gzip"),
    "corrupt.gz": (corrupt_middle(gzip.compress(PAIRS_LOG)), "gzip"),
    "cut.bz2": (bz2.compress(PAIRS_LOG)[:-10], "bzip2"),
}


def case(files: dict, input: str, input_format: str, message: str):
    """A bad-input case: files to write ({name: text, bytes or writer}), the flags, the error."""
    return files, {"input": input, "input_format": input_format}, message


BAD_INPUTS = {
    "missing file": case(
        {}, "{tmp}/missing.inter", "recbole", r"missing\.inter: no such file"),
    "glob matching nothing": case(
        {}, "{tmp}/logs/*.csv", "csv", r"logs/\*\.csv: no such file"),
    "empty directory": case(
        {"d/_SUCCESS": ""}, "{tmp}/d", "pairs", r"/d: directory has no input files"),
    "empty file": case(
        {"empty.inter": ""}, "{tmp}/empty.inter", "recbole", r"empty\.inter: file is empty"),
    "second file empty": case(
        {"d/a.inter": RECBOLE_HEADER + "u\ti\t1\t1\n", "d/b.inter": ""}, "{tmp}/d", "recbole",
        r"/d/b\.inter: file is empty"),
    "unknown format": case(
        {"u.data": "1\t2\t5\t9\n"}, "{tmp}/u.data", "xml",
        r"unknown input format 'xml'; known formats: recbole, movielens"),
    "recbole header mismatch": case(
        {"noheader.inter": "196\t242\t3\t881250949\n"}, "{tmp}/noheader.inter", "recbole",
        r"noheader\.inter:1: not a RecBole \.inter header"),
    "header only": case(
        {"h.inter": RECBOLE_HEADER}, "{tmp}/h.inter", "recbole",
        r"h\.inter: a header but no data rows"),
    "header not utf-8": case(
        {"l1.csv": b"us\xe9r,item\n"}, "{tmp}/l1.csv", "csv",
        r"l1\.csv:1: the header is not UTF-8"),
    "csv missing column": case(
        {"log.csv": "user_id,item_id,when\nu,i,1\n"}, "{tmp}/log.csv", "csv",
        r"log\.csv:1: no column --time_col 'timestamp'; columns are"),
    "binary garbage": case(
        {"garbage.bin": _garbage()}, "{tmp}/garbage.bin", "pairs",
        r"garbage\.bin:\d+: binary data \(a NUL byte\), not a pairs text file"),
    "latin-1 text": case(
        {"l1.txt": "caf\xe9 cr\xe8me\n\xe9t\xe9 br\xfbl\xe9e\n".encode("latin-1")}, "{tmp}/l1.txt",
        "pairs", r"l1\.txt:1: not_utf8 .*not a pairs file: its first 2 row\(s\) are all malformed"),
    "text in the wrong format": case(
        {"notes.txt": "this is not a rating log\nneither is this\n"}, "{tmp}/notes.txt",
        "movielens",
        r"notes\.txt:1: wrong_field_count .*not a movielens file: its first 2 row\(s\) are all"),
    "blank lines only": case(
        {"blank.txt": "\n  \n\n"}, "{tmp}/blank.txt", "sequence", r"blank\.txt: only blank lines"),
    "csv as parquet": case(
        {"fake.parquet": "user_id,item_id\n1,2\n"}, "{tmp}/fake.parquet", "parquet",
        r"fake\.parquet: not a readable parquet file"),
    "empty parquet file": case(
        {"zero.parquet": ""}, "{tmp}/zero.parquet", "parquet", r"zero\.parquet: file is empty"),
    "parquet missing column": case(
        {"cols.parquet": lambda p: _parquet(p, user_id=["u"], timestamp=[1])},
        "{tmp}/cols.parquet", "parquet", r"cols\.parquet: no column --item_col 'item_id'"),
    "parquet without rows": case(
        {"norows.parquet": lambda p: _parquet(p, user_id=[], item_id=[], timestamp=[])},
        "{tmp}/norows.parquet", "parquet", r"norows\.parquet: parquet file has no rows"),
    "input given for synthetic": case(
        {}, "{tmp}/x.txt", "synthetic", r"x\.txt given with --input_format synthetic"),
    "no input for a file format": case({}, "", "csv", r"--input_format csv needs --input"),
    **{
        f"damaged {name}": case({name: content}, f"{{tmp}}/{name}", "pairs",
                                rf"^\S+/{name}: truncated or corrupt {compression} data: ")
        for name, (content, compression) in DAMAGED.items()
    },
    "recbole .inter read as sequence": case(
        {"ml.inter": RECBOLE_HEADER + "196\t242\t3\t881250949\n"}, "{tmp}/ml.inter", "sequence",
        r"ml\.inter:1: a RecBole \.inter header \('user_id:token.*'\), not a sequence file; "
        r"use --input_format recbole$"),
    "recbole .inter read as pairs": case(
        {"ml.inter": RECBOLE_HEADER + "196\t242\t3\t881250949\n"}, "{tmp}/ml.inter", "pairs",
        r"ml\.inter:1: a RecBole \.inter header .* not a pairs file; use --input_format recbole$"),
    "u.data read as sequence": case(
        {"u.data": "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"},
        "{tmp}/u.data", "sequence",
        r"u\.data:1: its first 3 lines are all 'user item rating timestamp' .*a MovieLens ratings log, "
        r"not a sequence file; use --input_format movielens .*--check_format false reads it as it is$"),
    # Issue 23.4: 100,000 such rows were 300,000 "interactions", exit code 0.
    "millisecond ratings log read as sequence": case(
        {"ratings.txt": "".join(f"{u} {100 + u} 4 {1600000000000 + u}\n" for u in range(30))},
        "{tmp}/ratings.txt", "sequence",
        r"ratings\.txt:1: its first 30 lines are all 'user item rating timestamp' \('0 100 4 1600000000000', "
        r"a timestamp '1600000000000'\), a ratings log, not a sequence file"),
    "ratings log with a header read as sequence": case(
        {"ratings.txt": "user item rating timestamp\n1 5 3 881250949\n2 7 3 891717742\n"},
        "{tmp}/ratings.txt", "sequence",
        r"ratings\.txt:1: a header row \('user item rating timestamp': column names user, item, rating, "
        r"timestamp\), not sequence data"),
    "pairs with a header": case(
        {"pairs.txt": "user_id item_id\nu1 i1\nu1 i2\n"}, "{tmp}/pairs.txt", "pairs",
        r"pairs\.txt:1: a header row .*not pairs data"),
    # Issue 22.8: a timestamp spelled neither as a number nor as ISO 8601 names --time_format.
    "dates in another spelling": case(
        {"log.csv": "user_id,item_id,timestamp\nu,i,04/12/1997\nu,j,05/12/1997\n"}, "{tmp}/log.csv", "csv",
        r"log\.csv:2: non_numeric_timestamp \('04/12/1997'\); not a csv file: .*"
        r"timestamps are numbers or ISO 8601 dates unless --time_format names their format$"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_data_error_naming_the_file_before_any_pipeline(tmp_path, name):
    files, kwargs, message = BAD_INPUTS[name]
    for file_name, content in files.items():
        path = tmp_path / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        else:
            write(path, content)
    config = ExampleGenConfig(**{k: v.format(tmp=tmp_path) for k, v in kwargs.items() if v})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=message):
        run_example_gen(config, str(out), options())
    assert os.listdir(out) == []  # failed before the pipeline wrote anything


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_compressed_file_past_the_sniff_is_an_error_with_or_without_strict(
    tmp_path, monkeypatch, name, strict
):
    # A 16-byte sniff cannot reach the damage: the pipeline's read finds it and the driver reports it.
    monkeypatch.setattr(example_gen, "SNIFF_BYTES", 16)
    content, compression = DAMAGED[name]
    write(tmp_path / "logs" / "a.txt", "u1 i1\nu1 i2\n")
    damaged = write(tmp_path / "logs" / name, content)
    config = ExampleGenConfig(input=str(tmp_path / "logs"), input_format="pairs", strict=strict)
    with pytest.raises(DataError, match=f"^{damaged}: truncated or corrupt {compression} data: "):
        run_example_gen(config, str(tmp_path / "out"), options())


def test_read_records_dofn_reports_a_truncated_file_in_its_file_stats(tmp_path):
    path = write(tmp_path / "flushed.gz", DAMAGED["flushed.gz"][0])
    config = ExampleGenConfig(input=path, input_format="pairs")
    with pytest.raises(DataError, match=f"^{path}: truncated or corrupt gzip data: "):
        list(read_records(config, 0, path))
    outputs = list(ReadRecords(config).process((0, path)))
    (stats,) = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == FILES]
    # All 5,000 lines before the cut parse; the file is still marked unreadable.
    assert (stats.rows_read, stats.interactions, stats.malformed_rows) == (5000, 5000, 0)
    assert stats.read_error.startswith(f"{path}: truncated or corrupt gzip data: ")


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_whole_compressed_files_are_read_in_full(tmp_path, compress):
    path = write(tmp_path / ("log.gz" if compress is gzip.compress else "log.bz2"), compress(PAIRS_LOG))
    rows = list(read_records(ExampleGenConfig(input=path, input_format="pairs"), 0, path))
    assert len(rows) == 20000 and all(isinstance(r, Interaction) for r in rows)
    assert (rows[-1].user, rows[-1].item, rows[-1].line) == (f"u{19999 % 97}", f"i{19999 % 389}", 20000)


def test_genuine_sequence_and_ratings_files_pass_the_driver_checks(tmp_path):
    beauty_like = write(tmp_path / "Beauty.txt", "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n3 4 12 13 14 15 16\n" * 10)
    u_data = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n" * 10)
    inter = write(tmp_path / "ml.inter", RECBOLE_HEADER + "196\t242\t3\t881250949\n" * 10)
    for path, fmt in ((beauty_like, "sequence"), (u_data, "movielens"), (inter, "recbole")):
        assert example_gen.check_input(ExampleGenConfig(input=path, input_format=fmt)) == [path]
    gz = write(tmp_path / "Beauty.txt.gz", gzip.compress(Path(beauty_like).read_bytes()))
    assert example_gen.check_input(ExampleGenConfig(input=gz, input_format="sequence")) == [gz]


def test_check_format_false_reads_a_suspicious_sequence_file_as_it_is(tmp_path):
    path = write(tmp_path / "triples.txt", "".join(f"{u} {u + 1} 2.5\n" for u in range(10)))
    with pytest.raises(DataError, match=r"triples\.txt:1: .*a decimal number '2\.5'"):
        example_gen.check_input(ExampleGenConfig(input=path, input_format="sequence"))
    assert example_gen.check_input(ExampleGenConfig(input=path, input_format="sequence", check_format=False)) == [path]


def test_iso_dates_pass_the_driver_checks_and_time_format_reads_others(tmp_path):
    iso = write(tmp_path / "iso.csv", "user_id,item_id,timestamp\nu,i,1997-12-04 15:55:49\nu,j,1997-12-04T16:00:00Z\n")
    assert example_gen.check_input(ExampleGenConfig(input=iso, input_format="csv")) == [iso]
    day_first = write(tmp_path / "dmy.csv", "user_id,item_id,timestamp\nu,i,04/12/1997\n")
    config = ExampleGenConfig(input=day_first, input_format="csv", time_format="%d/%m/%Y")
    assert example_gen.check_input(config) == [day_first]
    (row,) = read_records(config, 0, day_first)
    assert row.timestamp == 881193600.0  # 1997-12-04 00:00 UTC
    with pytest.raises(ConfigError, match="--time_format is a strptime format"):
        ExampleGenConfig(time_format="dd/mm/yyyy")


def test_a_recbole_dataset_folder_is_its_inter_file(tmp_path):
    # Issue 22.8: --input ml-100k/ read ml-100k.item and ml-100k.user as interactions too.
    folder = tmp_path / "ml-tiny"
    inter = write(folder / "ml-tiny.inter", RECBOLE_HEADER + "u\ti\t1\t1\n")
    write(folder / "ml-tiny.item", "item_id:token\tclass:token_seq\ni\tA\n")
    write(folder / "ml-tiny.user", "user_id:token\tage:token\nu\t20\n")
    assert example_gen.match_inputs(str(folder)) == [inter]
    assert example_gen.match_inputs(str(folder) + "/") == [inter]
    assert example_gen.check_input(ExampleGenConfig(input=str(folder) + "/", input_format="recbole")) == [inter]
    # A folder without <name>.inter is all its files, as before.
    other = write(tmp_path / "logs" / "a.inter", RECBOLE_HEADER + "u\ti\t1\t1\n")
    second = write(tmp_path / "logs" / "b.inter", RECBOLE_HEADER + "u\ti\t1\t1\n")
    assert example_gen.match_inputs(str(tmp_path / "logs")) == [other, second]


def test_bad_synthetic_knobs_and_shards_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="below 3 per user"):
        run_example_gen(ExampleGenConfig(synthetic_users=100, synthetic_interactions=10),
                        str(tmp_path), options())
    with pytest.raises(ConfigError, match=r"example_gen_shards must be in 1\.\."):
        ExampleGenConfig(example_gen_shards=0)


# ----------------------------------------------------------------------------- real datasets


def distinct(rows: list[Interaction]) -> tuple[int, int, int]:
    return len(rows), len({r.user for r in rows}), len({r.item for r in rows})


def test_ml100k(ml100k, tmp_path):
    config = ExampleGenConfig(input=str(ml100k), input_format="recbole")
    stats = run_example_gen(config, str(tmp_path), options())
    rows = output_rows(tmp_path)
    assert distinct(rows) == (100000, 943, 1682)
    assert stats["interactions"] == 100000 and stats["malformed_rows"] == 0
    assert all(1 <= r.rating <= 5 and r.timestamp > 8e8 for r in rows)


def test_beauty(beauty, tmp_path):
    config = ExampleGenConfig(input=str(beauty), input_format="sequence")
    stats = run_example_gen(config, str(tmp_path), options())
    rows = output_rows(tmp_path)
    assert distinct(rows) == (198502, 22363, 12101)
    assert (stats["rows_read"], stats["malformed_rows"]) == (22363, 0)
    assert all(math.isnan(r.rating) and r.timestamp == r.position for r in rows)


def _tfds_reachable(name: str) -> bool:
    import tensorflow_datasets as tfds

    if os.path.isdir(tfds.builder(name).data_dir):
        return True  # already downloaded and prepared
    try:
        socket.create_connection(("files.grouplens.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.network
def test_tfds_movielens_100k(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    if not _tfds_reachable("movielens/100k-ratings"):
        pytest.skip("offline and movielens/100k-ratings is not downloaded")
    config = ExampleGenConfig(input="movielens/100k-ratings", input_format="tfds")
    stats = run_example_gen(config, str(tmp_path), options())
    assert distinct(output_rows(tmp_path)) == (100000, 943, 1682)
    assert stats["files"][0]["path"] == "tfds:movielens/100k-ratings"
