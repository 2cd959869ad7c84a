"""Raw-format parsers: every format, every malformed reason, file-level errors naming file:line."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import re
import zlib

import pytest

from tfseq.data import formats
from tfseq.data.formats import DataError, Interaction, Malformed


def parse(fmt_name: str, text: str | bytes, **cols: str) -> list[Interaction | Malformed]:
    """All records of ``text`` read as file ``log.txt`` with source index 3."""
    fmt = formats.text_format(fmt_name, **cols)
    data = text.encode() if isinstance(text, str) else text
    lines = io.BytesIO(data).readlines()  # split at b"\n" only, as a file's readline() does
    return list(formats.parse_lines(fmt, "log.txt", 3, lines))


def fields(rows: list, *names: str) -> list[tuple]:
    return [tuple(getattr(r, n) for n in names) for r in rows]


def test_recbole_finds_columns_by_name_in_any_order():
    header = "timestamp:float\titem_id:token\tuser_id:token\n"
    rows = parse("recbole", header + "20\ti9\tu1\n10\ti8\tu2\n")
    assert fields(rows, "user", "item", "timestamp", "source", "line", "position") == [
        ("u1", "i9", 20.0, 3, 2, 0),
        ("u2", "i8", 10.0, 3, 3, 0),
    ]
    assert all(math.isnan(r.rating) for r in rows)


def test_recbole_without_timestamp_uses_line_order_and_reads_rating():
    rows = parse("recbole", "rating:float\tuser_id:token\titem_id:token\n4\tu\ti\n\n2.5\tu\tj\n")
    # The blank line 3 is skipped but still counts: timestamps are line numbers 2 and 4.
    assert fields(rows, "item", "timestamp", "rating", "line") == [
        ("i", 2.0, 4.0, 2), ("j", 4.0, 2.5, 4)
    ]


def test_movielens_detects_tab_or_double_colon_per_file():
    tab = parse("movielens", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    colon = parse("movielens", "1::1193::5::978300760\r\n1::661::3::978302109\r\n")
    assert fields(tab, "user", "item", "rating", "timestamp", "line") == [
        ("196", "242", 3.0, 881250949.0, 1), ("186", "302", 3.0, 891717742.0, 2)
    ]
    assert fields(colon, "user", "item", "rating", "timestamp") == [
        ("1", "1193", 5.0, 978300760.0), ("1", "661", 3.0, 978302109.0)
    ]
    # A file is one or the other: a tab line in a '::' file has the wrong field count.
    (good, bad) = parse("movielens", "1::2::3::4\n1\t2\t3\t4\n")
    assert isinstance(bad, Malformed) and bad.reason == formats.WRONG_FIELD_COUNT


def test_sequence_line_gives_positions_in_order():
    rows = parse("sequence", "7 a b c\n8 d\n")
    assert fields(rows, "user", "item", "timestamp", "position", "line") == [
        ("7", "a", 0.0, 0, 1), ("7", "b", 1.0, 1, 1), ("7", "c", 2.0, 2, 1), ("8", "d", 0.0, 0, 2),
    ]


def test_sequence_line_without_items_is_malformed():
    (row,) = parse("sequence", "7 a\nlonely\n")[1:]
    assert isinstance(row, Malformed)
    assert (row.reason, row.where) == (formats.WRONG_FIELD_COUNT, "log.txt:2")


def test_pairs_use_line_order_as_time():
    rows = parse("pairs", "u1 i1\nu1\ti2\nu1 i3 extra\n")
    assert fields(rows[:2], "user", "item", "timestamp") == [("u1", "i1", 1.0), ("u1", "i2", 2.0)]
    assert (rows[2].reason, rows[2].where) == (formats.WRONG_FIELD_COUNT, "log.txt:3")


def test_csv_columns_by_flag_names_with_quoting_and_bom():
    text = "\ufeffts,who,what,stars\n5,\"u,1\",i1,4.5\n6,u2,i2,\n"
    rows = parse("csv", text, user_col="who", item_col="what", time_col="ts", rating_col="stars")
    assert fields(rows[:1], "user", "item", "timestamp", "rating", "line") == [
        ("u,1", "i1", 5.0, 4.5, 2)
    ]
    assert (rows[1].reason, rows[1].where) == (formats.BAD_RATING, "log.txt:3")
    # Without a time column the line number is the time.
    (row,) = parse("csv", "who,what\nu,i\n", user_col="who", item_col="what", time_col="")
    assert row.timestamp == 2.0


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"u1\ti1\t3\n", formats.WRONG_FIELD_COUNT),
        (b"u1\ti1\t3\t5\t6\n", formats.WRONG_FIELD_COUNT),
        (b"u1\ti1\t3\tyesterday\n", formats.BAD_TIMESTAMP),
        (b"u1\ti1\t3\tnan\n", formats.BAD_TIMESTAMP),
        (b"u1\ti1\tgood\t5\n", formats.BAD_RATING),
        (b"\ti1\t3\t5\n", formats.EMPTY_ID),
        (b"u1\t \t3\t5\n", formats.EMPTY_ID),
        (b"u\r1\ti1\t3\t5\n", formats.BAD_ID),
        (b"u\xff1\ti1\t3\t5\n", formats.NOT_UTF8),
    ],
)
def test_each_malformed_reason_is_reported_with_its_place(line, reason):
    header = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    rows = parse("recbole", header + b"u0\ti0\t1\t1\n" + line)
    assert isinstance(rows[0], Interaction)
    (row,) = rows[1:]
    assert isinstance(row, Malformed)
    assert (row.reason, row.where) == (reason, "log.txt:3")
    assert row.describe().startswith(f"log.txt:3: {reason}")


def test_id_with_a_tab_is_malformed_in_csv():
    (row,) = parse("csv", 'u,i,t\n"a\tb",x,1\n', user_col="u", item_col="i", time_col="t")
    assert (row.reason, row.where) == (formats.BAD_ID, "log.txt:2")


@pytest.mark.parametrize(
    "fmt, text, cols, message",
    [
        ("recbole", "a:token\tb:token\n1\t2\n", {}, r"^log\.txt:1: not a RecBole \.inter header"),
        ("recbole", "196\t242\t3\t881250949\n", {}, r"^log\.txt:1: not a RecBole"),
        ("recbole", b"\xff\xfe\x00junk\n", {}, r"^log\.txt:1: the header is not UTF-8"),
        ("csv", "user,item\nu,i\n", {"user_col": "user", "item_col": "item", "time_col": "ts"},
         r"^log\.txt:1: no column --time_col 'ts'; columns are \['user', 'item'\]"),
        ("csv", "user,item\nu,i\n", {"user_col": "", "item_col": "item", "time_col": ""},
         r"^log\.txt:1: --user_col is empty"),
        ("recbole", "", {}, r"^log\.txt: file is empty"),
        ("pairs", "", {}, r"^log\.txt: file is empty"),
    ],
)
def test_file_level_errors_name_the_file_and_line(fmt, text, cols, message):
    with pytest.raises(DataError, match=message):
        parse(fmt, text, **cols)


def test_unknown_format_lists_the_known_ones():
    known = "recbole, movielens, sequence, pairs, csv, parquet, tfds, synthetic"
    with pytest.raises(DataError, match=f"unknown input format 'xml'; known formats: {known}"):
        formats.text_format("xml")
    with pytest.raises(DataError, match="not line-based"):
        formats.text_format("parquet")


def parquet_bytes(table) -> io.BytesIO:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=2)  # several row groups, read batch by batch
    buffer.seek(0)
    return buffer


def test_parquet_rows_stream_with_row_numbers_as_lines():
    import datetime

    import pyarrow as pa

    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    table = pa.table({
        "u": ["a", "b", None, "d", "e"], "i": [1, 2, 3, 4, 5],
        "t": [when, when, when, None, when], "r": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    rows = list(formats.parquet_records(parquet_bytes(table), "log.parquet", 1, "u", "i", "t", "r"))
    assert fields(rows[:2], "user", "item", "timestamp", "rating", "source", "line") == [
        ("a", "1", when.timestamp(), 1.0, 1, 1), ("b", "2", when.timestamp(), 2.0, 1, 2)
    ]
    assert fields(rows[2:4], "reason", "where") == [
        (formats.EMPTY_ID, "log.parquet:3"), (formats.BAD_TIMESTAMP, "log.parquet:4")
    ]
    assert fields(rows[4:], "user", "line") == [("e", 5)]


def test_parquet_file_errors_name_the_file():
    import pyarrow as pa

    with pytest.raises(DataError, match=r"^log\.parquet: no column --time_col 'ts'"):
        list(formats.parquet_records(
            parquet_bytes(pa.table({"u": ["a"], "i": ["b"]})), "log.parquet", 0, "u", "i", "ts", ""
        ))
    with pytest.raises(DataError, match=r"^log\.parquet: not a readable parquet file"):
        list(formats.parquet_records(io.BytesIO(b"u,i\na,b\n"), "log.parquet", 0, "u", "i", "", ""))


def test_unknown_tfds_dataset_is_a_data_error():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match=r"^tfds:no_such_dataset/x: unknown tfds dataset"):
        formats.prepare_tfds("no_such_dataset/x")


def test_interaction_tsv_round_trip():
    row = Interaction("u 1", "i", 1.5e9, 4.0, 2, 10, 3)
    assert Interaction.from_tsv(row.to_tsv()) == row
    assert Interaction.from_tsv(Interaction("u", "i", 0.1).to_tsv())[:3] == ("u", "i", 0.1)


# ----------------------------------------------------------------------------- compressed input

LOG = b"".join(f"u{i % 97} i{i % 389}\n".encode() for i in range(20000))  # 20,000 lines, ~230 KB


def gzip_cut_after_full_flush(data: bytes, lines: int) -> bytes:
    """A gzip stream of the first ``lines`` lines, flushed (Z_FULL_FLUSH) and cut there: no trailer.

    Every byte up to the cut decompresses, so a reader that ignores the missing
    end of the stream sees a clean file of whole lines.
    """
    head = b"".join(data.splitlines(keepends=True)[:lines])
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)


def corrupt_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


def zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "lzma": lzma.compress,
    "deflate": zlib.compress,
    "zstd": zstd_compress,
}


def read_all(data: bytes, compression: str) -> bytes:
    with formats.decompressed(io.BytesIO(data), "log.gz", compression) as f:
        return b"".join(iter(f.readline, b""))


@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_decompressed_reads_whole_and_concatenated_streams(compression):
    compress = COMPRESSORS[compression]
    assert read_all(compress(LOG), compression) == LOG
    # Two streams back to back (gzip members, bzip2 streams, ...) read as one file, as Beam does.
    half = len(LOG) // 2
    assert read_all(compress(LOG[:half]) + compress(LOG[half:]), compression) == LOG
    assert read_all(b"", compression) == b""


@pytest.mark.parametrize(
    "compression, data",
    [
        ("gzip", gzip.compress(LOG)[:20000]),                   # cut mid-stream
        ("gzip", gzip_cut_after_full_flush(LOG, 5000)),         # cut on a line boundary, no trailer
        ("gzip", gzip.compress(LOG)[:-4]),                      # only the length field missing
        ("gzip", corrupt_middle(gzip.compress(LOG))),           # one byte flipped
        ("gzip", gzip.compress(LOG) + gzip.compress(LOG)[:100]),  # a second member cut short
        ("bzip2", bz2.compress(LOG)[:-10]),
        ("bzip2", corrupt_middle(bz2.compress(LOG))),
        ("lzma", lzma.compress(LOG)[:-10]),
        ("deflate", zlib.compress(LOG)[:-10]),
        ("zstd", zstd_compress(LOG)[:-10]),
    ],
    ids=["gzip-cut", "gzip-full-flush-cut", "gzip-no-isize", "gzip-corrupt", "gzip-second-member-cut",
         "bzip2-cut", "bzip2-corrupt", "lzma-cut", "deflate-cut", "zstd-cut"],
)
def test_truncated_or_corrupt_compressed_data_is_a_data_error_naming_the_file(compression, data):
    with pytest.raises(DataError, match=f"^log\\.gz: truncated or corrupt {compression} data: "):
        read_all(data, compression)


# ----------------------------------------------------------------------------- a file in another format

RECBOLE_FILE = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n"
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


@pytest.mark.parametrize("fmt", ["sequence", "pairs", "movielens"])
def test_a_recbole_header_in_a_headerless_format_is_refused_with_a_hint(fmt):
    with pytest.raises(DataError, match=(
        r"^log\.txt:1: a RecBole \.inter header \('user_id:token\\titem_id:token.*'\), "
        f"not a {fmt} file; use --input_format recbole$"
    )):
        parse(fmt, RECBOLE_FILE)


@pytest.mark.parametrize("fmt", ["sequence", "pairs"])
@pytest.mark.parametrize("text", [U_DATA, U_DATA.replace("\t", "::")])
def test_a_ratings_log_read_as_sequence_or_pairs_is_refused_with_a_hint(fmt, text):
    lines = io.BytesIO(text.encode()).readlines()
    first = text.splitlines()[0]
    with pytest.raises(DataError, match=(
        f"^log\\.txt: its first 3 lines are all 'user item rating timestamp' \\(line 1: {re.escape(repr(first))}\\), "
        f"a MovieLens ratings log, not a {fmt} file; use --input_format movielens$"
    )):
        formats.check_not_misread(formats.text_format(fmt), "log.txt", lines)


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("sequence", "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n3 4 12 13 14 15 16 17 18 19\n"),  # Beauty.txt
        ("sequence", "1 5 3 881250949\n2 7 3\n3 8 1 878887116\n"),  # not every line has 4 fields
        ("sequence", "1 5 3 81250949\n2 7 3 91717742\n3 8 1 78887116\n"),  # 8-digit last items
        ("sequence", "u1 A 3 881250949\nu2 B 3 891717742\nu3 C 1 878887116\n"),  # ids not numbers
        ("sequence", U_DATA.splitlines(keepends=True)[0] * 2),  # too few lines to tell
        ("pairs", "1 5\n1 881250949\n2 891717742\n"),
        ("movielens", U_DATA),
    ],
)
def test_genuine_files_are_not_mistaken_for_another_format(fmt, text):
    lines = io.BytesIO(text.encode()).readlines()
    formats.check_not_misread(formats.text_format(fmt), "log.txt", lines)
    assert any(isinstance(r, Interaction) for r in parse(fmt, text))
